// umT5 encoder (upstream wan/modules/t5.py, T5Encoder with per-layer relative position bias):
// token ids -> f32 [L, dim] hidden states for every position. Weights stay in the checkpoint's
// dtype (bf16 in the release); activations are f32. Runs on the CPU, or on CUDA after to().
// Spec sections 3.6-3.8.
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
  // pos_embedding.embedding.weight as f32, flattened (entry bucket*num_heads + head), followed by
  // one entry holding the mask value: [num_buckets*num_heads + 1, 1]. The bias [H, L, L] is then
  // one embedding lookup of this table (see encode).
  Tensor pos_embedding;
};

class T5Encoder {
 public:
  // Checks every tensor's presence and shape against `cfg` (and that the config agrees with
  // the weights), keeping the tensors as stored.
  static T5Encoder load(const TensorStore& weights, const T5Config& cfg);

  // ids, mask: [L] (mask 1 = token, 0 = padding). Returns f32 [L, dim], all positions, on the
  // device the weights are on (device()). On CUDA the only host work is checking the ids and
  // building the [H, L, L] index of the position-bias lookup; both are copied to the device once.
  Tensor encode(const std::vector<int32_t>& ids, const std::vector<int32_t>& mask) const;

  // The rows a prompt keeps (spec 3.9): ids padded after its first `length` tokens (mask 1 then
  // 0, as the tokenizer writes them) -> f32 [length, dim], encoding the `length` tokens alone.
  // The same numbers as encode(ids, mask).slice(0, length): padded keys get the mask value as
  // their bias, so they weigh exactly 0 in every kept row's softmax, and the position bias depends
  // on key - query only. The work is that of the prompt, not of text_len (512) tokens.
  Tensor encode_prefix(const std::vector<int32_t>& ids, int64_t length) const;

  // Moves every weight to `device`; encode() then runs there. On CUDA the matrices of the linear
  // layers become `linear_dtype` (bf16: the release's own dtype, as upstream runs T5; or f32,
  // exact but twice the memory: 22 GB for umT5-XXL), the token embedding keeps its stored float
  // dtype (the lookup widens it exactly) and the norm weights are f32. Moving back to the CPU
  // keeps the dtypes. To free the GPU memory after encoding, destroy the encoder (the device
  // copies are released with it); to(Device::CPU) instead keeps a host copy for later prompts.
  void to(Device device, DType linear_dtype = DType::BF16);
  Device device() const { return norm_.device(); }

  // Debug hook: when set, called with each named intermediate ("blocks.0.attn.q", ...), on the
  // encoder's device. The tensor may be updated in place afterwards (the residual stream): copy it
  // to keep it.
  using Trace = std::function<void(const std::string& name, const Tensor& value)>;
  void set_trace(Trace trace) { trace_ = std::move(trace); }

  const T5Config& config() const { return cfg_; }

 private:
  // Indices into every block's pos_embedding table that give the position bias with the padding
  // mask applied: i32 [num_heads * L * L] (head, query, key), on the CPU.
  Tensor position_bias_index(const std::vector<int32_t>& mask) const;

  T5Config cfg_;
  Tensor token_embedding_;  // [vocab, dim]
  std::vector<T5Block> blocks_;
  Tensor norm_;  // [dim]
  Trace trace_;
};

// The tensors (name, shape) of a umT5 encoder checkpoint: exactly what T5Encoder::load reads
// and what the synthetic model writer (synth/synth_model) writes; declared once here.
WeightShapes t5_weight_shapes(const T5Config& c);

}  // namespace ib
