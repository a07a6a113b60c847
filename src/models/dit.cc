// WanModel forward (spec 7.2-7.8). Shapes are written for one video: L tokens of width dim.
#include "models/dit.h"

#include <cmath>
#include <cstring>

#include "core/check.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace ib {

namespace {

constexpr float kImgEmbEps = 1e-5f;  // torch.nn.LayerNorm default in img_emb.proj

// A weight of any float dtype the linear op takes, with its shape checked.
Tensor weight(const TensorStore& s, const WeightIndex& list, const std::string& name) {
  Tensor t = require(s, name, list.shape(name));
  IB_CHECK(t.dtype() == DType::F32 || t.dtype() == DType::BF16 || t.dtype() == DType::F16,
           "tensor '{}' in {}: expected f32, bf16 or f16, found {}", name, s.source(name), dtype_name(t.dtype()));
  return t;
}

// A small parameter used in f32 arithmetic, converted to f32.
Tensor weight_f32(const TensorStore& s, const WeightIndex& list, const std::string& name) {
  Tensor t = weight(s, list, name);
  return t.to(DType::F32);
}

// [C, T, h, w] -> [T*(h/2)*(w/2), C*4]: token s = (f*(h/2) + a)*(w/2) + b, feature c*4 + 2p + q
// holds x[c, f, 2a+p, 2b+q] (the order of Conv3d's [dim, C, 1, 2, 2] weight flattened).
Tensor patchify(const Tensor& x) {
  const int64_t C = x.size(0), T = x.size(1), h = x.size(2), w = x.size(3);
  const int64_t hp = h / 2, wp = w / 2;
  Tensor out = Tensor::empty({T * hp * wp, C * 4}, DType::F32);
  const float* src = x.data<float>();
  float* dst = out.data<float>();
  for (int64_t f = 0; f < T; ++f)
    for (int64_t a = 0; a < hp; ++a)
      for (int64_t b = 0; b < wp; ++b) {
        float* row = dst + ((f * hp + a) * wp + b) * C * 4;
        for (int64_t c = 0; c < C; ++c)
          for (int64_t p = 0; p < 2; ++p)
            for (int64_t q = 0; q < 2; ++q)
              row[c * 4 + 2 * p + q] = src[((c * T + f) * h + 2 * a + p) * w + 2 * b + q];
      }
  return out;
}

// [L, 4*C] -> [C, T, 2*hp, 2*wp]: feature 32p + 16q + c (C = 16) of token (f, a, b) goes to
// v[c, f, 2a+p, 2b+q]; the channel is the fastest index here, unlike in patchify.
Tensor unpatchify(const Tensor& out, int64_t C, int64_t T, int64_t hp, int64_t wp) {
  const int64_t h = 2 * hp, w = 2 * wp;
  Tensor v = Tensor::empty({C, T, h, w}, DType::F32);
  const float* src = out.data<float>();
  float* dst = v.data<float>();
  for (int64_t f = 0; f < T; ++f)
    for (int64_t a = 0; a < hp; ++a)
      for (int64_t b = 0; b < wp; ++b) {
        const float* row = src + ((f * hp + a) * wp + b) * C * 4;
        for (int64_t p = 0; p < 2; ++p)
          for (int64_t q = 0; q < 2; ++q)
            for (int64_t c = 0; c < C; ++c)
              dst[((c * T + f) * h + 2 * a + p) * w + 2 * b + q] = row[(2 * p + q) * C + c];
      }
  return v;
}

Tensor host_f32(const Tensor& t) { return t.to(Device::CPU).to(DType::F32); }

// LN(x; eps, no affine) * (1 + scale) + shift, with scale/shift [dim] rows of a modulation.
Tensor modulate(const Tensor& x, const Tensor& shift, const Tensor& scale, float eps) {
  Tensor n = ops::layer_norm(x, Tensor(), Tensor(), eps);
  return ops::add(ops::mul(n, ops::affine(scale, 1.0f, 1.0f)), shift);
}

}  // namespace

Tensor sinusoidal_embedding(int64_t dim, double t) {
  IB_CHECK(dim > 0 && dim % 2 == 0, "sinusoidal_embedding: dim {} must be even", dim);
  const int64_t half = dim / 2;
  Tensor e = Tensor::empty({dim}, DType::F32);
  float* p = e.data<float>();
  for (int64_t i = 0; i < half; ++i) {
    const double phi = t * std::pow(10000.0, -(static_cast<double>(i) / static_cast<double>(half)));
    p[i] = static_cast<float>(std::cos(phi));  // cosine half first, as upstream
    p[half + i] = static_cast<float>(std::sin(phi));
  }
  return e;
}

WanDiT WanDiT::load(const TensorStore& s, const DitConfig& cfg) {
  WanDiT m;
  m.cfg_ = cfg;
  const std::string& type = cfg.model_type;
  IB_CHECK(type == "flf2v" || type == "i2v" || type == "t2v",
           "DiT config: model_type '{}' is not supported (expected flf2v, i2v or t2v)", type);
  const int64_t dim = cfg.dim, ffn = cfg.ffn_dim, heads = cfg.num_heads;
  IB_CHECK(dim > 0 && ffn > 0 && heads > 0 && cfg.num_layers > 0 && cfg.text_len > 0 && cfg.in_dim > 0 &&
               cfg.out_dim > 0,
           "DiT config: sizes must be positive (dim {}, ffn_dim {}, num_heads {}, num_layers {}, text_len {}, "
           "in_dim {}, out_dim {})",
           dim, ffn, heads, cfg.num_layers, cfg.text_len, cfg.in_dim, cfg.out_dim);
  IB_CHECK(dim % heads == 0 && (dim / heads) % 2 == 0,
           "DiT config: dim {} must split into {} heads of an even size", dim, heads);
  IB_CHECK(cfg.freq_dim > 0 && cfg.freq_dim % 2 == 0, "DiT config: freq_dim {} must be even", cfg.freq_dim);

  // The variant the weights hold must be the one config.json names.
  const std::string src = s.source("patch_embedding.weight");
  const bool has_img_emb = s.contains("img_emb.proj.0.weight");
  const bool has_emb_pos = s.contains("img_emb.emb_pos");
  const bool has_k_img = s.contains("blocks.0.cross_attn.k_img.weight");
  m.has_img_ = type != "t2v";
  if (type == "flf2v") {
    IB_CHECK(has_img_emb && has_emb_pos && has_k_img,
             "DiT config says model_type 'flf2v' but {} lacks the flf2v image tensors (img_emb.proj.*, "
             "img_emb.emb_pos, cross_attn.k_img)",
             src);
  } else if (type == "i2v") {
    IB_CHECK(has_img_emb && has_k_img, "DiT config says model_type 'i2v' but {} lacks img_emb.proj.* or cross_attn.k_img",
             src);
    IB_CHECK(!has_emb_pos, "DiT config says model_type 'i2v' but {} holds img_emb.emb_pos (an flf2v checkpoint)", src);
  } else {
    IB_CHECK(!has_img_emb && !has_emb_pos && !has_k_img,
             "DiT config says model_type 't2v' but {} holds image-conditioning tensors (img_emb / cross_attn.k_img)", src);
  }
  if (m.has_img_) {
    IB_CHECK(cfg.in_dim > cfg.out_dim, "DiT config: model_type '{}' needs in_dim ({}) > out_dim ({})", type,
             cfg.in_dim, cfg.out_dim);
  } else {
    IB_CHECK(cfg.in_dim == cfg.out_dim, "DiT config: model_type 't2v' needs in_dim ({}) == out_dim ({})", cfg.in_dim,
             cfg.out_dim);
  }
  const std::string extra = fmt::format("blocks.{}.modulation", cfg.num_layers);
  IB_CHECK(!s.contains(extra), "DiT config says num_layers = {} but {} holds '{}'", cfg.num_layers,
           s.source(extra), extra);

  // The widths the checkpoint brings (T5's, CLIP's) and its image token count, then the list of
  // what it must hold.
  auto size_of = [&](const std::string& name, size_t axis) -> int64_t {
    if (!s.contains(name)) return 0;
    const Shape shape = s.info(name).shape;
    return axis < shape.size() ? shape[axis] : 0;
  };
  const WeightIndex list(dit_weight_shapes(cfg, size_of("text_embedding.0.weight", 1), size_of("img_emb.proj.0.weight", 0),
                                           size_of("img_emb.emb_pos", 1)),
                         "DiT weights");

  WanDiTWeights& w = m.w_;
  w.patch_w = weight(s, list, "patch_embedding.weight").view({dim, cfg.in_dim * 4});
  w.patch_b = weight(s, list, "patch_embedding.bias");
  w.text0_w = weight(s, list, "text_embedding.0.weight");
  m.text_dim_ = w.text0_w.size(1);
  w.text0_b = weight(s, list, "text_embedding.0.bias");
  w.text2_w = weight(s, list, "text_embedding.2.weight");
  w.text2_b = weight(s, list, "text_embedding.2.bias");
  w.time0_w = weight(s, list, "time_embedding.0.weight");
  w.time0_b = weight(s, list, "time_embedding.0.bias");
  w.time2_w = weight(s, list, "time_embedding.2.weight");
  w.time2_b = weight(s, list, "time_embedding.2.bias");
  w.time_proj_w = weight(s, list, "time_projection.1.weight");
  w.time_proj_b = weight(s, list, "time_projection.1.bias");

  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    const std::string p = fmt::format("blocks.{}.", i);
    WanBlockWeights b;
    b.modulation = weight_f32(s, list, p + "modulation").view({6, dim});
    auto attn = [&](const std::string& a, auto& aw) {
      aw.q_w = weight(s, list, p + a + ".q.weight");
      aw.q_b = weight(s, list, p + a + ".q.bias");
      aw.k_w = weight(s, list, p + a + ".k.weight");
      aw.k_b = weight(s, list, p + a + ".k.bias");
      aw.v_w = weight(s, list, p + a + ".v.weight");
      aw.v_b = weight(s, list, p + a + ".v.bias");
      aw.o_w = weight(s, list, p + a + ".o.weight");
      aw.o_b = weight(s, list, p + a + ".o.bias");
      aw.norm_q = weight(s, list, p + a + ".norm_q.weight");
      aw.norm_k = weight(s, list, p + a + ".norm_k.weight");
    };
    attn("self_attn", b.self_attn);
    b.norm3_w = weight(s, list, p + "norm3.weight");
    b.norm3_b = weight(s, list, p + "norm3.bias");
    attn("cross_attn", b.cross_attn);
    if (m.has_img_) {
      b.cross_attn.k_img_w = weight(s, list, p + "cross_attn.k_img.weight");
      b.cross_attn.k_img_b = weight(s, list, p + "cross_attn.k_img.bias");
      b.cross_attn.v_img_w = weight(s, list, p + "cross_attn.v_img.weight");
      b.cross_attn.v_img_b = weight(s, list, p + "cross_attn.v_img.bias");
      b.cross_attn.norm_k_img = weight(s, list, p + "cross_attn.norm_k_img.weight");
    } else {
      IB_CHECK(!s.contains(p + "cross_attn.k_img.weight"), "DiT config says model_type 't2v' but {} holds '{}'",
               s.source(p + "cross_attn.k_img.weight"), p + "cross_attn.k_img.weight");
    }
    b.ffn0_w = weight(s, list, p + "ffn.0.weight");
    b.ffn0_b = weight(s, list, p + "ffn.0.bias");
    b.ffn2_w = weight(s, list, p + "ffn.2.weight");
    b.ffn2_b = weight(s, list, p + "ffn.2.bias");
    w.blocks.push_back(std::move(b));
  }

  w.head_modulation = weight_f32(s, list, "head.modulation").view({2, dim});
  w.head_w = weight(s, list, "head.head.weight");
  w.head_b = weight(s, list, "head.head.bias");

  if (m.has_img_) {
    w.img_ln0_w = weight(s, list, "img_emb.proj.0.weight");
    m.clip_dim_ = w.img_ln0_w.size(0);
    const int64_t cd = m.clip_dim_;
    w.img_ln0_b = weight(s, list, "img_emb.proj.0.bias");
    w.img1_w = weight(s, list, "img_emb.proj.1.weight");
    w.img1_b = weight(s, list, "img_emb.proj.1.bias");
    w.img3_w = weight(s, list, "img_emb.proj.3.weight");
    w.img3_b = weight(s, list, "img_emb.proj.3.bias");
    w.img_ln4_w = weight(s, list, "img_emb.proj.4.weight");
    w.img_ln4_b = weight(s, list, "img_emb.proj.4.bias");
    if (type == "flf2v") {
      w.emb_pos = weight_f32(s, list, "img_emb.emb_pos");
      m.img_tokens_ = w.emb_pos.size(1);
      w.emb_pos = w.emb_pos.view({m.img_tokens_, cd});
    }
  }
  return m;
}

std::vector<WanDiT::NamedWeight> WanDiT::named_weights() {
  WanDiTWeights& w = w_;
  // Shapes from the weight list the loader read (names of tensors this model does not hold,
  // such as a t2v model's image branch, are skipped before any lookup).
  const WeightIndex list(dit_weight_shapes(cfg_, text_dim_, clip_dim_, img_tokens_), "DiT weights");
  std::vector<NamedWeight> out;
  auto add = [&](const std::string& name, Tensor& t) {
    if (t.defined()) out.push_back({name, list.shape(name), &t});
  };
  add("patch_embedding.weight", w.patch_w);
  add("patch_embedding.bias", w.patch_b);
  add("text_embedding.0.weight", w.text0_w);
  add("text_embedding.0.bias", w.text0_b);
  add("text_embedding.2.weight", w.text2_w);
  add("text_embedding.2.bias", w.text2_b);
  add("time_embedding.0.weight", w.time0_w);
  add("time_embedding.0.bias", w.time0_b);
  add("time_embedding.2.weight", w.time2_w);
  add("time_embedding.2.bias", w.time2_b);
  add("time_projection.1.weight", w.time_proj_w);
  add("time_projection.1.bias", w.time_proj_b);
  for (size_t i = 0; i < w.blocks.size(); ++i) {
    WanBlockWeights& b = w.blocks[i];
    const std::string p = fmt::format("blocks.{}.", i);
    add(p + "modulation", b.modulation);
    auto attn = [&](const std::string& a, auto& aw) {
      add(a + "q.weight", aw.q_w);
      add(a + "q.bias", aw.q_b);
      add(a + "k.weight", aw.k_w);
      add(a + "k.bias", aw.k_b);
      add(a + "v.weight", aw.v_w);
      add(a + "v.bias", aw.v_b);
      add(a + "o.weight", aw.o_w);
      add(a + "o.bias", aw.o_b);
      add(a + "norm_q.weight", aw.norm_q);
      add(a + "norm_k.weight", aw.norm_k);
    };
    attn(p + "self_attn.", b.self_attn);
    add(p + "norm3.weight", b.norm3_w);
    add(p + "norm3.bias", b.norm3_b);
    WanCrossAttentionWeights& ca = b.cross_attn;
    const std::string c = p + "cross_attn.";
    attn(c, ca);
    add(c + "k_img.weight", ca.k_img_w);
    add(c + "k_img.bias", ca.k_img_b);
    add(c + "v_img.weight", ca.v_img_w);
    add(c + "v_img.bias", ca.v_img_b);
    add(c + "norm_k_img.weight", ca.norm_k_img);
    add(p + "ffn.0.weight", b.ffn0_w);
    add(p + "ffn.0.bias", b.ffn0_b);
    add(p + "ffn.2.weight", b.ffn2_w);
    add(p + "ffn.2.bias", b.ffn2_b);
  }
  add("head.modulation", w.head_modulation);
  add("head.head.weight", w.head_w);
  add("head.head.bias", w.head_b);
  add("img_emb.proj.0.weight", w.img_ln0_w);
  add("img_emb.proj.0.bias", w.img_ln0_b);
  add("img_emb.proj.1.weight", w.img1_w);
  add("img_emb.proj.1.bias", w.img1_b);
  add("img_emb.proj.3.weight", w.img3_w);
  add("img_emb.proj.3.bias", w.img3_b);
  add("img_emb.proj.4.weight", w.img_ln4_w);
  add("img_emb.proj.4.bias", w.img_ln4_b);
  add("img_emb.emb_pos", w.emb_pos);
  return out;
}

void WanDiT::to(Device device, DType linear_dtype) {
  IB_CHECK(linear_dtype == DType::F32 || linear_dtype == DType::BF16, "WanDiT::to: linear weights as {} are not supported",
           dtype_name(linear_dtype));
  WanDiTWeights& w = w_;
  auto move = [device](Tensor& t, DType dtype) {
    if (!t.defined()) return;
    t = (device == Device::CUDA ? t.to(Device::CPU).to(dtype) : t).to(device);
  };
  // The matrices of the linear layers, then the vectors (biases, norms, modulation, emb_pos).
  for (Tensor* t : {&w.patch_w, &w.text0_w, &w.text2_w, &w.time0_w, &w.time2_w, &w.time_proj_w, &w.head_w, &w.img1_w,
                    &w.img3_w})
    move(*t, linear_dtype);
  for (Tensor* t : {&w.patch_b, &w.text0_b, &w.text2_b, &w.time0_b, &w.time2_b, &w.time_proj_b, &w.head_modulation,
                    &w.head_b, &w.img_ln0_w, &w.img_ln0_b, &w.img1_b, &w.img3_b, &w.img_ln4_w, &w.img_ln4_b, &w.emb_pos})
    move(*t, DType::F32);
  for (WanBlockWeights& b : w.blocks) {
    WanSelfAttentionWeights& sa = b.self_attn;
    WanCrossAttentionWeights& ca = b.cross_attn;
    for (Tensor* t : {&sa.q_w, &sa.k_w, &sa.v_w, &sa.o_w, &ca.q_w, &ca.k_w, &ca.v_w, &ca.o_w, &ca.k_img_w, &ca.v_img_w,
                      &b.ffn0_w, &b.ffn2_w})
      move(*t, linear_dtype);
    for (Tensor* t : {&b.modulation, &sa.q_b, &sa.k_b, &sa.v_b, &sa.o_b, &sa.norm_q, &sa.norm_k, &b.norm3_w, &b.norm3_b,
                      &ca.q_b, &ca.k_b, &ca.v_b, &ca.o_b, &ca.norm_q, &ca.norm_k, &ca.k_img_b, &ca.v_img_b,
                      &ca.norm_k_img, &b.ffn0_b, &b.ffn2_b})
      move(*t, DType::F32);
  }
}

Tensor WanDiT::self_attn(const WanSelfAttentionWeights& w, const Tensor& x, int64_t T, int64_t hp,
                         int64_t wp) const {
  const int64_t heads = cfg_.num_heads;
  // RMSNorm over all dim features (before the split into heads), then RoPE per head.
  Tensor q = ops::rms_norm(ops::linear(x, w.q_w, w.q_b), w.norm_q, cfg_.eps);  // [L, dim]
  Tensor k = ops::rms_norm(ops::linear(x, w.k_w, w.k_b), w.norm_k, cfg_.eps);  // [L, dim]
  const Tensor v = ops::linear(x, w.v_w, w.v_b);                                // [L, dim]
  q = ops::rope_3d(q, heads, {T, hp, wp});
  k = ops::rope_3d(k, heads, {T, hp, wp});
  ops::AttentionArgs args;
  args.num_heads = heads;
  args.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(cfg_.dim / heads)));
  const Tensor o = ops::attention(q, k, v, args);  // [L, dim]
  return ops::linear(o, w.o_w, w.o_b);
}

Tensor WanDiT::cross_attn(const WanCrossAttentionWeights& w, const Tensor& x, const Tensor& ctx_txt,
                          const Tensor& ctx_img) const {
  ops::AttentionArgs args;
  args.num_heads = cfg_.num_heads;
  args.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(cfg_.dim / cfg_.num_heads)));
  const Tensor q = ops::rms_norm(ops::linear(x, w.q_w, w.q_b), w.norm_q, cfg_.eps);           // [L, dim]
  const Tensor k = ops::rms_norm(ops::linear(ctx_txt, w.k_w, w.k_b), w.norm_k, cfg_.eps);     // [text_len, dim]
  const Tensor v = ops::linear(ctx_txt, w.v_w, w.v_b);                                       // [text_len, dim]
  // No mask: the zero-padded text rows are attended to, as upstream does.
  Tensor o = ops::attention(q, k, v, args);  // [L, dim]
  if (has_img_) {
    const Tensor ki = ops::rms_norm(ops::linear(ctx_img, w.k_img_w, w.k_img_b), w.norm_k_img, cfg_.eps);  // [Li, dim]
    const Tensor vi = ops::linear(ctx_img, w.v_img_w, w.v_img_b);                                        // [Li, dim]
    ops::add_(o, ops::attention(q, ki, vi, args));  // o_txt + o_img, before the one output projection
  }
  return ops::linear(o, w.o_w, w.o_b);
}

Tensor WanDiT::forward(const Tensor& x, double t, const Tensor& context, const Tensor& clip_fea,
                       const Tensor& y) const {
  const DitConfig& c = cfg_;
  const WanDiTWeights& w = w_;
  const Device dev = w.patch_w.device();
  IB_CHECK(x.defined() && x.dim() == 4 && x.size(0) == c.out_dim,
           "DiT forward: latent must be [{}, T, h, w], got {}", c.out_dim, x.defined() ? x.str() : "undefined");
  const int64_t T = x.size(1), h = x.size(2), wd = x.size(3);
  IB_CHECK(T > 0 && h > 0 && wd > 0 && h % 2 == 0 && wd % 2 == 0,
           "DiT forward: latent {} must have frames and an even, non-zero height and width", x.str());
  const int64_t hp = h / 2, wp = wd / 2;  // the token grid (T, hp, wp): L = T*hp*wp tokens
  if (has_img_) {
    IB_CHECK(y.defined() && clip_fea.defined(), "DiT forward: model_type '{}' needs the conditioning y and CLIP features",
             c.model_type);
    IB_CHECK(y.shape() == (Shape{c.in_dim - c.out_dim, T, h, wd}), "DiT forward: conditioning must be {}, got {}",
             shape_str({c.in_dim - c.out_dim, T, h, wd}), y.str());
  } else {
    IB_CHECK(!y.defined() && !clip_fea.defined(), "DiT forward: model_type 't2v' takes no conditioning or CLIP features");
  }
  IB_CHECK(context.defined() && context.dim() == 2 && context.size(1) == text_dim_ && context.size(0) <= c.text_len,
           "DiT forward: context must be [Lt <= {}, {}], got {}", c.text_len, text_dim_,
           context.defined() ? context.str() : "undefined");

  // 7.2: x_in = [x ; y] along channels, patchified and embedded.
  Tensor x_in = Tensor::empty({c.in_dim, T, h, wd}, DType::F32);  // [in_dim, T, h, w]
  {
    const Tensor xf = host_f32(x);
    std::memcpy(x_in.raw(), xf.raw(), xf.nbytes());
    if (has_img_) {
      const Tensor yf = host_f32(y);
      std::memcpy(static_cast<char*>(x_in.raw()) + xf.nbytes(), yf.raw(), yf.nbytes());
    }
  }
  Tensor xs = ops::linear(patchify(x_in).to(dev), w.patch_w, w.patch_b);  // [L, dim]
  probe("patch_embedding", xs);

  // 7.3: timestep embedding, all f32.
  const Tensor sin_emb = sinusoidal_embedding(c.freq_dim, t).view({1, c.freq_dim}).to(dev);
  const Tensor e = ops::linear(ops::silu(ops::linear(sin_emb, w.time0_w, w.time0_b)), w.time2_w, w.time2_b);  // [1, dim]
  const Tensor e0 = ops::linear(ops::silu(e), w.time_proj_w, w.time_proj_b).view({6, c.dim});                 // [6, dim]
  probe("e", e);
  probe("e0", e0);

  // 7.4: text padded with exact zero rows to text_len, then embedded.
  Tensor ctx = Tensor::zeros({c.text_len, text_dim_}, DType::F32);  // [text_len, text_dim]
  {
    const Tensor cf = host_f32(context);
    std::memcpy(ctx.raw(), cf.raw(), cf.nbytes());
  }
  const Tensor ctx_txt = ops::linear(ops::gelu_tanh(ops::linear(ctx.to(dev), w.text0_w, w.text0_b)), w.text2_w,
                                     w.text2_b);  // [text_len, dim]
  probe("context_txt", ctx_txt);
  Tensor ctx_img;
  if (has_img_) {
    IB_CHECK(clip_fea.dim() >= 2 && clip_fea.size(-1) == clip_dim_,
             "DiT forward: CLIP features must be [tokens, {}] or [n, tokens, {}], got {}", clip_dim_, clip_dim_,
             clip_fea.str());
    Tensor ci = host_f32(clip_fea).view({-1, clip_dim_}).to(dev);  // [Li, clip_dim]
    if (w.emb_pos.defined()) {
      IB_CHECK(ci.size(0) == img_tokens_, "DiT forward: {} CLIP feature rows, the model's emb_pos has {}", ci.size(0),
               img_tokens_);
      ci = ops::add(ci, w.emb_pos.to(dev));
    }
    ci = ops::layer_norm(ci, w.img_ln0_w, w.img_ln0_b, kImgEmbEps);
    ci = ops::gelu(ops::linear(ci, w.img1_w, w.img1_b));
    ci = ops::linear(ci, w.img3_w, w.img3_b);
    ctx_img = ops::layer_norm(ci, w.img_ln4_w, w.img_ln4_b, kImgEmbEps);  // [Li, dim]
    probe("context_img", ctx_img);
  }

  // 7.5: blocks.
  for (size_t i = 0; i < w.blocks.size(); ++i) {
    const WanBlockWeights& b = w.blocks[i];
    const Tensor m = ops::add(b.modulation.to(dev), e0);  // [6, dim]: shift1 scale1 gate1 shift2 scale2 gate2
    const Tensor a = modulate(xs, m.select(0), m.select(1), c.eps);  // [L, dim]
    ops::add_(xs, ops::mul(self_attn(b.self_attn, a, T, hp, wp), m.select(2)));
    const Tensor n3 = ops::layer_norm(xs, b.norm3_w, b.norm3_b, c.eps);
    ops::add_(xs, cross_attn(b.cross_attn, n3, ctx_txt, ctx_img));
    const Tensor bb = modulate(xs, m.select(3), m.select(4), c.eps);
    const Tensor f = ops::linear(ops::gelu_tanh(ops::linear(bb, b.ffn0_w, b.ffn0_b)), b.ffn2_w, b.ffn2_b);
    ops::add_(xs, ops::mul(f, m.select(5)));
    probe(fmt::format("blocks.{}", i), xs);
  }

  // 7.8: head (modulated by e, not e0), then unpatchify.
  const Tensor hm = ops::add(w.head_modulation.to(dev), e.view({c.dim}));  // [2, dim]: shift, scale
  const Tensor out = ops::linear(modulate(xs, hm.select(0), hm.select(1), c.eps), w.head_w, w.head_b);  // [L, out*4]
  probe("head", out);
  return unpatchify(out.to(Device::CPU), c.out_dim, T, hp, wp).to(x.device());
}

// ---- The weight list: what load() reads and synthetic models write --------------------------

WeightShapes dit_weight_shapes(const DitConfig& c, int64_t text_dim, int64_t clip_dim, int64_t image_tokens) {
  const int64_t d = c.dim;
  WeightShapes s{{"patch_embedding.weight", {d, c.in_dim, 1, 2, 2}}, {"patch_embedding.bias", {d}},
          {"text_embedding.0.weight", {d, text_dim}},        {"text_embedding.0.bias", {d}},
          {"text_embedding.2.weight", {d, d}},               {"text_embedding.2.bias", {d}},
          {"time_embedding.0.weight", {d, c.freq_dim}},      {"time_embedding.0.bias", {d}},
          {"time_embedding.2.weight", {d, d}},               {"time_embedding.2.bias", {d}},
          {"time_projection.1.weight", {6 * d, d}},          {"time_projection.1.bias", {6 * d}}};
  const bool image = c.model_type != "t2v";
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = fmt::format("blocks.{}.", i);
    s.push_back({b + "modulation", {1, 6, d}});
    for (const char* a : {"self_attn", "cross_attn"}) {
      for (const char* m : {"q", "k", "v", "o"}) {
        s.push_back({b + a + "." + m + ".weight", {d, d}});
        s.push_back({b + a + "." + m + ".bias", {d}});
      }
      s.push_back({b + a + ".norm_q.weight", {d}});
      s.push_back({b + a + ".norm_k.weight", {d}});
    }
    if (image) {
      for (const char* m : {"k_img", "v_img"}) {
        s.push_back({b + "cross_attn." + m + ".weight", {d, d}});
        s.push_back({b + "cross_attn." + m + ".bias", {d}});
      }
      s.push_back({b + "cross_attn.norm_k_img.weight", {d}});
    }
    s.push_back({b + "norm3.weight", {d}});
    s.push_back({b + "norm3.bias", {d}});
    s.push_back({b + "ffn.0.weight", {c.ffn_dim, d}});
    s.push_back({b + "ffn.0.bias", {c.ffn_dim}});
    s.push_back({b + "ffn.2.weight", {d, c.ffn_dim}});
    s.push_back({b + "ffn.2.bias", {d}});
  }
  s.push_back({"head.modulation", {1, 2, d}});
  s.push_back({"head.head.weight", {c.out_dim * 4, d}});
  s.push_back({"head.head.bias", {c.out_dim * 4}});
  if (image) {
    s.push_back({"img_emb.proj.0.weight", {clip_dim}});
    s.push_back({"img_emb.proj.0.bias", {clip_dim}});
    s.push_back({"img_emb.proj.1.weight", {clip_dim, clip_dim}});
    s.push_back({"img_emb.proj.1.bias", {clip_dim}});
    s.push_back({"img_emb.proj.3.weight", {d, clip_dim}});
    s.push_back({"img_emb.proj.3.bias", {d}});
    s.push_back({"img_emb.proj.4.weight", {d}});
    s.push_back({"img_emb.proj.4.bias", {d}});
    if (c.model_type == "flf2v") s.push_back({"img_emb.emb_pos", {1, image_tokens, clip_dim}});
  }
  return s;
}

}  // namespace ib
