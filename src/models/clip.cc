// CLIP ViT-H/14 vision tower (upstream wan/modules/clip.py: VisionTransformer with
// use_31_block), computed in f32. Weight names follow the checkpoint: visual.patch_embedding,
// visual.cls_embedding, visual.pos_embedding, visual.pre_norm, visual.transformer.{i}.*.
#include "models/clip.h"

#include <cmath>
#include <string>

#include "core/check.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/resize.h"

namespace ib {

namespace {

// OpenAI CLIP normalisation (open_clip's OPENAI_DATASET_MEAN / _STD), rounded to f32 as torch does.
constexpr float kMean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
constexpr float kStd[3] = {0.26862954f, 0.26130258f, 0.27577711f};

std::string config_str(const ClipConfig& c) {
  return fmt::format("image_size={}, patch_size={}, dim={}, mlp_ratio={}, num_heads={}, num_layers={}", c.image_size,
                     c.patch_size, c.dim, c.mlp_ratio, c.num_heads, c.num_layers);
}

// Loads one tensor with its shape from the weight list; a mismatch error also names the
// configuration it was checked against.
Tensor need(const TensorStore& w, const ClipConfig& cfg, const WeightIndex& list, const std::string& name,
            bool to_f32) {
  Tensor t;
  try {
    t = require(w, name, list.shape(name), to_f32 ? std::optional<DType>(DType::F32) : std::nullopt);
  } catch (const Error& e) {
    fail("CLIP: {} (CLIP config: {})", e.what(), config_str(cfg));
  }
  if (!to_f32) {
    IB_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16,
             "CLIP: tensor '{}' in {} is {}, expected a float type", name, w.source(name), dtype_name(t.dtype()));
  }
  return t;
}

}  // namespace

ClipVision ClipVision::load(const TensorStore& w, const ClipConfig& cfg) {
  IB_CHECK(cfg.patch_size > 0 && cfg.image_size > 0 && cfg.image_size % cfg.patch_size == 0,
           "CLIP config: image_size {} is not a positive multiple of patch_size {}", cfg.image_size, cfg.patch_size);
  IB_CHECK(cfg.dim > 0 && cfg.num_heads > 0 && cfg.dim % cfg.num_heads == 0,
           "CLIP config: dim {} is not a positive multiple of num_heads {}", cfg.dim, cfg.num_heads);
  IB_CHECK(cfg.mlp_ratio > 0, "CLIP config: invalid mlp_ratio {}", cfg.mlp_ratio);
  IB_CHECK(cfg.num_layers >= 2, "CLIP config: num_layers {} < 2 (the encoder runs all blocks but the last)",
           cfg.num_layers);

  ClipVision m;
  m.cfg_ = cfg;
  const WeightIndex list(clip_weight_shapes(cfg), "CLIP weights");
  const int64_t dim = cfg.dim, p = cfg.patch_size;
  m.grid_ = cfg.image_size / p;
  const int64_t tokens = m.num_tokens();

  // Block count: the checkpoint must hold exactly num_layers blocks.
  const auto block_key = [](int64_t i) { return fmt::format("visual.transformer.{}.norm1.weight", i); };
  IB_CHECK(w.contains(block_key(cfg.num_layers - 1)) && !w.contains(block_key(cfg.num_layers)),
           "CLIP: the CLIP config says num_layers={}, but {} holds a different number of visual.transformer blocks",
           cfg.num_layers, w.source(block_key(0)));

  // conv 3 -> dim, kernel = stride = patch, no bias; as a linear over (c, kh, kw)-ordered patches.
  m.patch_weight_ = need(w, cfg, list, "visual.patch_embedding.weight", false).view({dim, 3 * p * p});
  m.cls_embedding_ = need(w, cfg, list, "visual.cls_embedding", true).view({dim});
  m.pos_embedding_ = need(w, cfg, list, "visual.pos_embedding", true).view({tokens, dim});
  m.pre_norm_weight_ = need(w, cfg, list, "visual.pre_norm.weight", true);
  m.pre_norm_bias_ = need(w, cfg, list, "visual.pre_norm.bias", true);

  for (int64_t i = 0; i + 1 < cfg.num_layers; ++i) {
    const std::string pre = fmt::format("visual.transformer.{}.", i);
    Block b;
    b.norm1_weight = need(w, cfg, list, pre + "norm1.weight", true);
    b.norm1_bias = need(w, cfg, list, pre + "norm1.bias", true);
    // to_qkv output feature f: q for f < dim, k for dim <= f < 2 dim, v above.
    const Tensor qkv_w = need(w, cfg, list, pre + "attn.to_qkv.weight", false);
    const Tensor qkv_b = need(w, cfg, list, pre + "attn.to_qkv.bias", true);
    b.q_weight = qkv_w.slice(0, dim);
    b.k_weight = qkv_w.slice(dim, 2 * dim);
    b.v_weight = qkv_w.slice(2 * dim, 3 * dim);
    b.q_bias = qkv_b.slice(0, dim);
    b.k_bias = qkv_b.slice(dim, 2 * dim);
    b.v_bias = qkv_b.slice(2 * dim, 3 * dim);
    b.proj_weight = need(w, cfg, list, pre + "attn.proj.weight", false);
    b.proj_bias = need(w, cfg, list, pre + "attn.proj.bias", true);
    b.norm2_weight = need(w, cfg, list, pre + "norm2.weight", true);
    b.norm2_bias = need(w, cfg, list, pre + "norm2.bias", true);
    b.fc1_weight = need(w, cfg, list, pre + "mlp.0.weight", false);
    b.fc1_bias = need(w, cfg, list, pre + "mlp.0.bias", true);
    b.fc2_weight = need(w, cfg, list, pre + "mlp.2.weight", false);
    b.fc2_bias = need(w, cfg, list, pre + "mlp.2.bias", true);
    m.blocks_.push_back(std::move(b));
  }
  return m;
}

void ClipVision::to(Device device, DType linear_dtype) {
  IB_CHECK(linear_dtype == DType::F32 || linear_dtype == DType::BF16,
           "ClipVision::to: linear weights as {} are not supported (f32 or bf16)", dtype_name(linear_dtype));
  auto move = [device](Tensor& t, DType dtype) {
    t = (device == Device::CUDA ? t.to(Device::CPU).to(dtype) : t).to(device);
  };
  move(patch_weight_, linear_dtype);
  for (Tensor* t : {&cls_embedding_, &pos_embedding_, &pre_norm_weight_, &pre_norm_bias_}) move(*t, DType::F32);
  for (Block& b : blocks_) {
    for (Tensor* t : {&b.q_weight, &b.k_weight, &b.v_weight, &b.proj_weight, &b.fc1_weight, &b.fc2_weight})
      move(*t, linear_dtype);
    for (Tensor* t : {&b.norm1_weight, &b.norm1_bias, &b.q_bias, &b.k_bias, &b.v_bias, &b.proj_bias, &b.norm2_weight,
                      &b.norm2_bias, &b.fc1_bias, &b.fc2_bias})
      move(*t, DType::F32);
  }
}

Tensor ClipVision::preprocess(const Tensor& image) const {
  IB_CHECK((image.dim() == 3 && image.size(0) == 3) || (image.dim() == 4 && image.size(1) == 3),
           "CLIP preprocess: expected an image [3, H, W] or [N, 3, H, W], got {}", image.str());
  const int64_t S = cfg_.image_size;
  Tensor x = ops::resize_bicubic(image.to(Device::CPU), S, S);  // [.., 3, S, S]
  float* px = x.data<float>();
  const int64_t plane = S * S;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = (i / plane) % 3;
    const float v = px[i] * 0.5f + 0.5f;  // back to [0, 1]
    px[i] = (v - kMean[c]) / kStd[c];
  }
  return x.to(image.device());
}

Tensor ClipVision::block_forward(const Block& b, const Tensor& x) const {
  const int64_t N = x.size(0), T = x.size(1), dim = cfg_.dim;
  const int64_t head_dim = dim / cfg_.num_heads;

  // x = x + Attn(LN1(x))
  const Tensor h = ops::layer_norm(x, b.norm1_weight, b.norm1_bias, cfg_.eps);  // [N, T, dim]
  const Tensor q = ops::linear(h, b.q_weight, b.q_bias);                        // [N, T, dim]
  const Tensor k = ops::linear(h, b.k_weight, b.k_bias);
  const Tensor v = ops::linear(h, b.v_weight, b.v_bias);
  ops::AttentionArgs args;
  args.num_heads = cfg_.num_heads;
  args.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  Tensor attn = Tensor::empty({N, T, dim}, DType::F32, x.device());
  for (int64_t n = 0; n < N; ++n) copy_bytes(attn.select(n), ops::attention(q.select(n), k.select(n), v.select(n), args));
  Tensor out = ops::add(x, ops::linear(attn, b.proj_weight, b.proj_bias));  // [N, T, dim]

  // x = x + MLP(LN2(x))
  const Tensor h2 = ops::layer_norm(out, b.norm2_weight, b.norm2_bias, cfg_.eps);
  const Tensor f = ops::gelu(ops::linear(h2, b.fc1_weight, b.fc1_bias));  // [N, T, mlp]
  ops::add_(out, ops::linear(f, b.fc2_weight, b.fc2_bias));
  return out;
}

Tensor ClipVision::encode(const Tensor& pixels) const {
  const int64_t S = cfg_.image_size, p = cfg_.patch_size, G = grid_, dim = cfg_.dim;
  IB_CHECK(pixels.dtype() == DType::F32 && pixels.dim() == 4 && pixels.size(1) == 3 && pixels.size(2) == S &&
               pixels.size(3) == S,
           "CLIP encode: expected f32 pixels [N, 3, {}, {}], got {}", S, S, pixels.str());
  const int64_t N = pixels.size(0), T = num_tokens();
  const Device device = patch_weight_.device();

  // Patches in conv-weight order (c, kh, kw), grid row-major: [N, G*G, 3*p*p].
  const Tensor src = pixels.to(Device::CPU);
  Tensor patches = Tensor::empty({N, G * G, 3 * p * p}, DType::F32);
  {
    const float* s = src.data<float>();
    float* d = patches.data<float>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t gr = 0; gr < G; ++gr)
        for (int64_t gc = 0; gc < G; ++gc)
          for (int64_t c = 0; c < 3; ++c)
            for (int64_t kh = 0; kh < p; ++kh) {
              const float* row = s + ((n * 3 + c) * S + gr * p + kh) * S + gc * p;
              std::copy(row, row + p, d);
              d += p;
            }
  }
  const Tensor emb = ops::linear(patches.to(device), patch_weight_);  // [N, G*G, dim]

  // Token 0 = class token, token 1 + G*r + c = patch (r, c); then the position embedding.
  Tensor x = Tensor::empty({N, T, dim}, DType::F32, device);  // [N, T, dim]
  for (int64_t n = 0; n < N; ++n) {
    copy_bytes(x.select(n).slice(0, 1), cls_embedding_);
    copy_bytes(x.select(n).slice(1, T), emb.select(n));
  }
  ops::add_(x, pos_embedding_);  // [T, dim], broadcast over the images

  Tensor h = ops::layer_norm(x, pre_norm_weight_, pre_norm_bias_, cfg_.eps);  // pre_norm
  for (const Block& b : blocks_) h = block_forward(b, h);
  return h;  // [N, T, dim]
}

// ---- The weight list: what load() reads and synthetic models write --------------------------

WeightShapes clip_weight_shapes(const ClipConfig& c) {
  const int64_t grid = c.image_size / c.patch_size, d = c.dim, mlp = c.dim * c.mlp_ratio;
  WeightShapes s{{"visual.patch_embedding.weight", {d, 3, c.patch_size, c.patch_size}},
          {"visual.cls_embedding", {1, 1, d}},
          {"visual.pos_embedding", {1, grid * grid + 1, d}},
          {"visual.pre_norm.weight", {d}},
          {"visual.pre_norm.bias", {d}}};
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = fmt::format("visual.transformer.{}.", i);
    for (const char* n : {"norm1", "norm2"}) {
      s.push_back({b + n + ".weight", {d}});
      s.push_back({b + n + ".bias", {d}});
    }
    s.push_back({b + "attn.to_qkv.weight", {3 * d, d}});
    s.push_back({b + "attn.to_qkv.bias", {3 * d}});
    s.push_back({b + "attn.proj.weight", {d, d}});
    s.push_back({b + "attn.proj.bias", {d}});
    s.push_back({b + "mlp.0.weight", {mlp, d}});
    s.push_back({b + "mlp.0.bias", {mlp}});
    s.push_back({b + "mlp.2.weight", {d, mlp}});
    s.push_back({b + "mlp.2.bias", {d}});
  }
  s.push_back({"visual.post_norm.weight", {d}});
  s.push_back({"visual.post_norm.bias", {d}});
  s.push_back({"visual.head", {d, 1024}});  // projection to the 1024-d joint space (unused)
  return s;
}

}  // namespace ib
