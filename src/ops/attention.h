// Multi-head softmax attention in the token x feature layout that linear layers produce:
// q [Lq, H*D], k and v [Lk, H*D], head n owning features n*D ... n*D+D-1. No causal mask.
#pragma once

#include "core/tensor.h"

namespace ib::ops {

struct AttentionArgs {
  int64_t num_heads = 1;
  float scale = 1.0f;  // logits = scale * q·k (T5 uses 1, others 1/sqrt(D))
  // Optional f32 [H, Lq, Lk] added to the logits (T5's position bias with the padding mask
  // already applied as the lowest finite value).
  Tensor bias;
};

// Returns f32 [Lq, H*D]. Softmax is computed in f32 with the max subtracted.
Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionArgs& args);

namespace cpu {
void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionArgs& args, const Tensor& out);
}
namespace cuda {
void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionArgs& args, const Tensor& out);
}

}  // namespace ib::ops
