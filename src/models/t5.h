// umT5 encoder (upstream wan/modules/t5.py, T5Encoder with per-layer relative position bias):
// token ids -> f32 [L, dim] hidden states for every position. Weights stay in the checkpoint's
// dtype (bf16 in the release); activations are f32. Spec sections 3.6-3.8.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"
#include "io/tensor_store.h"

namespace ib {

// Bucket of the relative position rel = key - query (bidirectional T5 bucketing, spec 3.7):
// half of the buckets for rel > 0, exact buckets for |rel| < num_buckets/4, logarithmic ones
// (computed in f32 as upstream does) up to max_distance, clamped to the last bucket.
int64_t t5_relative_position_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance);

struct T5Block {
  Tensor norm1;          // [dim]
  Tensor q, k, v;        // [dim_attn, dim]
  Tensor o;              // [dim, dim_attn]
  Tensor norm2;          // [dim]
  Tensor gate, fc1;      // ffn.gate.0, ffn.fc1: [dim_ffn, dim]
  Tensor fc2;            // [dim, dim_ffn]
  Tensor pos_embedding;  // pos_embedding.embedding.weight: [num_buckets, num_heads]
};

class T5Encoder {
 public:
  // Checks every tensor's presence and shape against `cfg` (and that the config agrees with
  // the weights), keeping the tensors as stored.
  static T5Encoder load(const TensorStore& weights, const T5Config& cfg);

  // ids, mask: [L] (mask 1 = token, 0 = padding). Returns f32 [L, dim], all positions.
  Tensor encode(const std::vector<int32_t>& ids, const std::vector<int32_t>& mask) const;

  // Debug hook: when set, called with each named intermediate ("blocks.0.attn.q", ...). The
  // tensor may be updated in place afterwards (the residual stream): copy it to keep it.
  using Trace = std::function<void(const std::string& name, const Tensor& value)>;
  void set_trace(Trace trace) { trace_ = std::move(trace); }

  const T5Config& config() const { return cfg_; }

 private:
  // Per-layer position bias with the padding mask applied: f32 [num_heads, L, L].
  Tensor position_bias(const T5Block& block, const std::vector<int64_t>& buckets,
                       const std::vector<int32_t>& mask) const;

  T5Config cfg_;
  Tensor token_embedding_;  // [vocab, dim]
  std::vector<T5Block> blocks_;
  Tensor norm_;  // [dim]
  Trace trace_;
};

}  // namespace ib
