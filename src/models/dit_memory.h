// The GPU engine's working memory for one DiT forward (gpu/dit_runner.cc's buffers), in one place
// for the runner's own batching check and the VRAM planner (pipeline/vram_plan.cc), which must
// agree. CPU code: the planner runs before any device is touched.
#pragma once

#include <cstddef>
#include <cstdint>

namespace ib {

struct DitActivationBytes {
  size_t per_row = 0;      // bytes per token row of every video in the forward
  size_t per_ffn_row = 0;  // bytes per row of the FFN's hidden activations (all rows, or one chunk's)
};

// Per token row: the f32 residual stream (4 x dim), the normed input `a` (2 x dim, bf16; the
// attention outputs share it) and q | k | v (6 x dim, bf16; the o/FFN-down output, the image
// cross-attention's output and, after the last block, the head's f32 input share it); with fp8
// attention the e4m3 q | k | v and output (4 x dim: cuDNN's layout; our Hopper kernel's takes
// 3 x dim plus at most 63 padding rows of v per video, within the 4 x dim for the >= 2048 tokens it
// runs at); with fp8 products the e4m3 copy of the width-dim product inputs and its f32 row scale
// (dim + 4: written by the norms, or for o and co by a quantisation pass, and read by the
// products). Per FFN row: the bf16 hidden activations (2 x ffn_dim), with fp8 products their e4m3
// copy too (the FFN-down product's own scratch).
inline DitActivationBytes dit_activation_bytes(int64_t dim, int64_t ffn_dim, bool fp8_attention, bool fp8_products) {
  const auto d = static_cast<size_t>(dim), f = static_cast<size_t>(ffn_dim);
  DitActivationBytes b;
  b.per_row = d * 4 + d * 2 * 4 + (fp8_attention ? 4 * d : 0) + (fp8_products ? d + 4 : 0);
  b.per_ffn_row = f * 2 + (fp8_products ? f : 0);
  return b;
}

}  // namespace ib
