// CPU pixel attention: the composition of the general ops on the token-major transpose (tokens =
// pixels, features = channels), exactly the sequence the VAE ran before this op existed.
#include "ops/attention.h"
#include "ops/linear.h"
#include "ops/vae_attention.h"
#include "ops/vae_layout.h"

namespace ib::ops::cpu {

void pixel_attention(const Tensor& x, const Tensor& qkv_w, const Tensor& qkv_b, float scale, const Tensor& y) {
  const int64_t C = x.size(0);
  const Tensor tokens = ops::transpose2d(x);  // [N, C]
  const Tensor q = ops::linear(tokens, qkv_w.slice(0, C), qkv_b.slice(0, C));
  const Tensor k = ops::linear(tokens, qkv_w.slice(C, 2 * C), qkv_b.slice(C, 2 * C));
  const Tensor v = ops::linear(tokens, qkv_w.slice(2 * C, 3 * C), qkv_b.slice(2 * C, 3 * C));  // [N, C]
  AttentionArgs args;
  args.num_heads = 1;
  args.scale = scale;
  copy_bytes(y, ops::transpose2d(ops::attention(q, k, v, args)));  // [C, N]
}

}  // namespace ib::ops::cpu
