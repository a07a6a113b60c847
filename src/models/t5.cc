// umT5 encoder forward (spec 3.6): pre-RMSNorm blocks, unscaled attention with a per-layer
// relative position bias, gated GELU-tanh feed-forward, final RMSNorm.
#include "models/t5.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>

#include "core/parallel.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/embedding.h"
#include "ops/linear.h"
#include "ops/norm.h"

namespace ib {

int64_t t5_relative_position_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance) {
  const int64_t half = num_buckets / 2;  // bidirectional: one half per direction
  const int64_t base = rel > 0 ? half : 0;
  const int64_t n = rel < 0 ? -rel : rel;
  const int64_t max_exact = half / 2;
  if (n < max_exact) return base + n;
  // Upstream: log(n.float() / max_exact) / math.log(max_dist / max_exact) * (half - max_exact),
  // all in f32 (the Python scalar is rounded to f32), truncated by .long().
  const auto log_range = static_cast<float>(std::log(static_cast<double>(max_distance) / static_cast<double>(max_exact)));
  const float r = std::log(static_cast<float>(n) / static_cast<float>(max_exact)) / log_range *
                  static_cast<float>(half - max_exact);
  const int64_t large = max_exact + static_cast<int64_t>(r);
  return base + std::min(large, half - 1);
}

namespace {

// Shape of a stored tensor, for the config-versus-weights checks.
Shape stored_shape(const TensorStore& w, const std::string& name) {
  IB_CHECK(w.contains(name), "T5 weights: tensor '{}' is missing from {}", name, w.source(name));
  return w.info(name).shape;
}

// The config must describe these weights; say which value disagrees instead of a bare shape error.
void check_config_against_weights(const TensorStore& w, const T5Config& cfg) {
  IB_CHECK(cfg.vocab > 0 && cfg.dim > 0 && cfg.dim_attn > 0 && cfg.dim_ffn > 0 && cfg.num_heads > 0 &&
               cfg.num_layers > 0,
           "T5 config: sizes must be positive (vocab {}, dim {}, dim_attn {}, dim_ffn {}, num_heads {}, num_layers {})",
           cfg.vocab, cfg.dim, cfg.dim_attn, cfg.dim_ffn, cfg.num_heads, cfg.num_layers);
  IB_CHECK(cfg.dim_attn % cfg.num_heads == 0, "T5 config: num_heads {} does not divide dim_attn {}", cfg.num_heads,
           cfg.dim_attn);
  IB_CHECK(cfg.num_buckets >= 4 && cfg.num_buckets % 2 == 0 && cfg.max_distance > cfg.num_buckets / 4,
           "T5 config: num_buckets {} must be even and >= 4, and max_distance {} larger than num_buckets/4",
           cfg.num_buckets, cfg.max_distance);
  const std::string src = w.source("token_embedding.weight");
  auto mismatch = [&](const char* key, int64_t cfg_value, int64_t weight_value, const std::string& tensor,
                      const Shape& shape) {
    IB_CHECK(cfg_value == weight_value,
             "T5 config disagrees with the weights in {}: {} = {} but '{}' has shape {} (implies {})", src, key,
             cfg_value, tensor, shape_str(shape), weight_value);
  };
  const Shape emb = stored_shape(w, "token_embedding.weight");
  IB_CHECK(emb.size() == 2, "T5 weights: 'token_embedding.weight' in {} must be 2-D, found {}", src, shape_str(emb));
  mismatch("vocab", cfg.vocab, emb[0], "token_embedding.weight", emb);
  mismatch("dim", cfg.dim, emb[1], "token_embedding.weight", emb);
  const Shape q = stored_shape(w, "blocks.0.attn.q.weight");
  if (q.size() == 2) mismatch("dim_attn", cfg.dim_attn, q[0], "blocks.0.attn.q.weight", q);
  const Shape fc1 = stored_shape(w, "blocks.0.ffn.fc1.weight");
  if (fc1.size() == 2) mismatch("dim_ffn", cfg.dim_ffn, fc1[0], "blocks.0.ffn.fc1.weight", fc1);
  const Shape pos = stored_shape(w, "blocks.0.pos_embedding.embedding.weight");
  if (pos.size() == 2) {
    mismatch("num_buckets", cfg.num_buckets, pos[0], "blocks.0.pos_embedding.embedding.weight", pos);
    mismatch("num_heads", cfg.num_heads, pos[1], "blocks.0.pos_embedding.embedding.weight", pos);
  }
  int64_t layers = 0;
  while (w.contains(fmt::format("blocks.{}.norm1.weight", layers))) ++layers;
  IB_CHECK(layers == cfg.num_layers, "T5 config disagrees with the weights in {}: num_layers = {} but the file has {}",
           src, cfg.num_layers, layers);
}

// [num_buckets, num_heads] -> f32 [num_buckets*num_heads + 1, 1]: the weights in their own order,
// then the value that replaces the bias of padded keys, the lowest finite f32 (upstream: the
// lowest finite value of its compute dtype).
Tensor bias_table(const Tensor& pos_embedding) {
  const Tensor w = pos_embedding.to(DType::F32);
  Tensor t = Tensor::empty({w.numel() + 1, 1}, DType::F32);
  std::copy(w.data<float>(), w.data<float>() + w.numel(), t.data<float>());
  t.data<float>()[w.numel()] = std::numeric_limits<float>::lowest();
  return t;
}

}  // namespace

T5Encoder T5Encoder::load(const TensorStore& weights, const T5Config& cfg) {
  check_config_against_weights(weights, cfg);
  std::set<std::string> used;
  const WeightIndex list(t5_weight_shapes(cfg), "T5 weights");
  auto get = [&](const std::string& name) {
    Tensor t = require(weights, name, list.shape(name));
    IB_CHECK(dtype_is_float(t.dtype()), "T5 weights: tensor '{}' in {} must be a float tensor, found {}", name,
             weights.source(name), t.str());
    if (t.device() != Device::CPU) t = t.to(Device::CPU);
    used.insert(name);
    return t;
  };
  T5Encoder enc;
  enc.cfg_ = cfg;
  enc.token_embedding_ = get("token_embedding.weight");
  for (int64_t l = 0; l < cfg.num_layers; ++l) {
    const std::string p = fmt::format("blocks.{}.", l);
    T5Block b;
    b.norm1 = get(p + "norm1.weight");
    b.q = get(p + "attn.q.weight");
    b.k = get(p + "attn.k.weight");
    b.v = get(p + "attn.v.weight");
    b.o = get(p + "attn.o.weight");
    b.norm2 = get(p + "norm2.weight");
    b.gate = get(p + "ffn.gate.0.weight");
    b.fc1 = get(p + "ffn.fc1.weight");
    b.fc2 = get(p + "ffn.fc2.weight");
    b.pos_embedding = bias_table(get(p + "pos_embedding.embedding.weight"));
    enc.blocks_.push_back(std::move(b));
  }
  enc.norm_ = get("norm.weight");
  // Strict match, as upstream's load_state_dict: an unknown key means a different model.
  for (const std::string& name : weights.names())
    IB_CHECK(used.count(name) != 0, "T5 weights: unexpected tensor '{}' in {} (not a umT5 encoder key)", name,
             weights.source(name));
  return enc;
}

void T5Encoder::to(Device device, DType linear_dtype) {
  IB_CHECK(linear_dtype == DType::F32 || linear_dtype == DType::BF16,
           "T5Encoder::to: linear weights as {} are not supported (f32 or bf16)", dtype_name(linear_dtype));
  auto move = [device](Tensor& t, DType dtype) {
    t = (device == Device::CUDA ? t.to(Device::CPU).to(dtype) : t).to(device);
  };
  const DType emb = token_embedding_.dtype();
  move(token_embedding_, emb == DType::F32 || emb == DType::BF16 || emb == DType::F16 ? emb : DType::F32);
  move(norm_, DType::F32);
  for (T5Block& b : blocks_) {
    for (Tensor* t : {&b.q, &b.k, &b.v, &b.o, &b.gate, &b.fc1, &b.fc2}) move(*t, linear_dtype);
    for (Tensor* t : {&b.norm1, &b.norm2, &b.pos_embedding}) move(*t, DType::F32);
  }
}

Tensor T5Encoder::position_bias_index(const std::vector<int32_t>& mask) const {
  const int64_t H = cfg_.num_heads, L = static_cast<int64_t>(mask.size());
  const int64_t masked = cfg_.num_buckets * H;  // the table's last entry
  IB_CHECK(H * L * L <= std::numeric_limits<int32_t>::max(), "T5 encode: {} tokens are too many", L);
  // bucket_of[rel + L - 1] for rel = key - query in [-(L-1), L-1].
  std::vector<int32_t> bucket_of(static_cast<size_t>(2 * L - 1));
  for (int64_t rel = -(L - 1); rel < L; ++rel)
    bucket_of[static_cast<size_t>(rel + L - 1)] =
        static_cast<int32_t>(t5_relative_position_bucket(rel, cfg_.num_buckets, cfg_.max_distance));
  Tensor index = Tensor::empty({H * L * L}, DType::I32);  // [H, Lq, Lk]
  int32_t* ip = index.data<int32_t>();
  parallel_for(H * L, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t n = r / L, i = r % L;
      int32_t* row = ip + r * L;
      for (int64_t j = 0; j < L; ++j)
        row[j] = mask[static_cast<size_t>(j)] == 0
                     ? static_cast<int32_t>(masked)
                     : static_cast<int32_t>(bucket_of[static_cast<size_t>(j - i + L - 1)] * H + n);
    }
  });
  return index;
}

Tensor T5Encoder::encode(const std::vector<int32_t>& ids, const std::vector<int32_t>& mask) const {
  IB_CHECK(ids.size() == mask.size(), "T5 encode: {} ids but {} mask entries", ids.size(), mask.size());
  IB_CHECK(!ids.empty(), "T5 encode: no tokens");
  const auto L = static_cast<int64_t>(ids.size());
  auto trace = [&](const std::string& name, const Tensor& t) {
    if (trace_) trace_(name, t);
  };

  // The CUDA lookup cannot check ids on the device; check them here for both backends.
  for (size_t i = 0; i < ids.size(); ++i)
    IB_CHECK(ids[i] >= 0 && ids[i] < cfg_.vocab, "T5 encode: token id {} at position {} is outside the vocabulary of {}",
             ids[i], i, cfg_.vocab);
  const Device dev = device();
  const int64_t H = cfg_.num_heads;
  // Position bias of every layer: bias[n, i, j] = pos_embedding[bucket(j - i), n], or the mask
  // value for padded keys j, as one lookup per layer into the block's table with this index.
  const Tensor bias_index = position_bias_index(mask).to(dev);  // i32 [H*L*L]

  Tensor x = ops::embedding(token_embedding_, Tensor::from_vector(ids, {L}).to(dev));  // [L, dim]
  trace("token_embedding", x);
  ops::AttentionArgs args;
  args.num_heads = cfg_.num_heads;
  args.scale = 1.0f;  // T5: no 1/sqrt(head_dim)
  for (size_t l = 0; l < blocks_.size(); ++l) {
    const T5Block& b = blocks_[l];
    const std::string p = fmt::format("blocks.{}.", l);
    args.bias = ops::embedding(b.pos_embedding, bias_index).view({H, L, L});  // [H, L, L]
    trace(p + "pos_embedding", args.bias);
    // Self-attention.
    const Tensor a = ops::rms_norm(x, b.norm1, cfg_.eps);  // [L, dim]
    const Tensor q = ops::linear(a, b.q);                   // [L, dim_attn]
    const Tensor k = ops::linear(a, b.k);                   // [L, dim_attn]
    const Tensor v = ops::linear(a, b.v);                   // [L, dim_attn]
    trace(p + "norm1", a);
    trace(p + "attn.q", q);
    trace(p + "attn.k", k);
    trace(p + "attn.v", v);
    const Tensor attn = ops::attention(q, k, v, args);  // [L, dim_attn]
    trace(p + "attn.attn", attn);
    const Tensor attn_out = ops::linear(attn, b.o);  // [L, dim]
    trace(p + "attn", attn_out);
    ops::add_(x, attn_out);
    // Feed-forward: fc1(x) * gelu_tanh(gate(x)).
    const Tensor h = ops::rms_norm(x, b.norm2, cfg_.eps);              // [L, dim]
    const Tensor gate = ops::gelu_tanh(ops::linear(h, b.gate));        // [L, dim_ffn]
    const Tensor f = ops::mul(ops::linear(h, b.fc1), gate);            // [L, dim_ffn]
    trace(p + "norm2", h);
    trace(p + "ffn.gate", gate);
    trace(p + "ffn.fc1", f);
    const Tensor ffn_out = ops::linear(f, b.fc2);  // [L, dim]
    trace(p + "ffn", ffn_out);
    ops::add_(x, ffn_out);
    trace(p.substr(0, p.size() - 1), x);
  }
  Tensor out = ops::rms_norm(x, norm_, cfg_.eps);  // [L, dim]
  trace("norm", out);
  return out;
}

Tensor T5Encoder::encode_prefix(const std::vector<int32_t>& ids, int64_t length) const {
  IB_CHECK(length >= 1 && length <= static_cast<int64_t>(ids.size()),
           "T5 encode: the prompt's length {} must be in 1..{} (the ids given)", length, ids.size());
  const std::vector<int32_t> prompt(ids.begin(), ids.begin() + length);
  return encode(prompt, std::vector<int32_t>(prompt.size(), 1));
}

// ---- The weight list: what load() reads and synthetic models write --------------------------

WeightShapes t5_weight_shapes(const T5Config& c) {
  WeightShapes s{{"token_embedding.weight", {c.vocab, c.dim}}};
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string b = fmt::format("blocks.{}.", l);
    s.push_back({b + "norm1.weight", {c.dim}});
    for (const char* m : {"q", "k", "v"}) s.push_back({b + "attn." + m + ".weight", {c.dim_attn, c.dim}});
    s.push_back({b + "attn.o.weight", {c.dim, c.dim_attn}});
    s.push_back({b + "norm2.weight", {c.dim}});
    s.push_back({b + "ffn.gate.0.weight", {c.dim_ffn, c.dim}});
    s.push_back({b + "ffn.fc1.weight", {c.dim_ffn, c.dim}});
    s.push_back({b + "ffn.fc2.weight", {c.dim, c.dim_ffn}});
    s.push_back({b + "pos_embedding.embedding.weight", {c.num_buckets, c.num_heads}});
  }
  s.push_back({"norm.weight", {c.dim}});
  return s;
}

}  // namespace ib
