// Picks the attention back-end for the GPU engine: cuDNN's fused SDPA where it takes the problem
// (Auto), else our flash kernel; Flash and Cudnn force one of them.
#include "gpu/attention.h"

#include <cmath>

#include "core/check.h"

namespace ib::gpu {

void attention(const AttentionProblem& p, AttentionBackend backend) {
  if (p.fp8_scales) {  // cuDNN's fp8 kernel is the only one
    IB_CHECK(backend != AttentionBackend::Flash, "attention: the flash kernel has no fp8 variant");
    IB_CHECK(cudnn_attention_supports(p),
             "fp8 attention needs cuDNN's fp8 flash attention (cuDNN 9.13.1+ on a Hopper or newer GPU), which "
             "does not take head dim {} here (see the warning above; use --attention bf16)",
             p.head_dim);
    cudnn_attention(p);
    return;
  }
  switch (backend) {
    case AttentionBackend::Flash:
      flash_attention(p);
      return;
    case AttentionBackend::Hopper:
      IB_CHECK(hopper_attention_supports(p),
               "attention: the Hopper kernel was asked for but does not take this problem (head dim {}; it needs "
               "head dim 128, an sm_90 GPU and 16-byte aligned rows)",
               p.head_dim);
      hopper_attention(p);
      return;
    case AttentionBackend::Cudnn:
      IB_CHECK(cudnn_attention_supports(p),
               "attention: cuDNN was asked for but does not take head dim {} (or this build has no cuDNN)",
               p.head_dim);
      cudnn_attention(p);
      return;
    case AttentionBackend::Auto:
      if (cudnn_attention_supports(p)) {
        cudnn_attention(p);
        return;
      }
      IB_CHECK(flash_attention_supports(p.head_dim),
               "attention: no back-end takes head dim {} (cuDNN refused it; the flash kernel is built for 16, 32, "
               "64, 128 and 256)",
               p.head_dim);
      flash_attention(p);
      return;
  }
  fail("attention: unknown back-end {}", static_cast<int>(backend));
}

AttentionProblem fused_self_attention(const void* qkv, void* out, int64_t tokens, int64_t heads, int64_t head_dim) {
  const int64_t dim = heads * head_dim;
  const auto* base = static_cast<const char*>(qkv);
  AttentionProblem p;
  p.q = base;
  p.k = base + dim * 2;  // bf16
  p.v = base + 2 * dim * 2;
  p.out = out;
  p.heads = heads;
  p.head_dim = head_dim;
  p.lq = p.lk = tokens;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = 3 * dim;
  p.o_row_stride = dim;
  p.scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(head_dim)));
  return p;
}

}  // namespace ib::gpu
