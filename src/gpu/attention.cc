// Picks the attention back-end for the GPU engine (Auto): our Hopper kernel where it takes the
// problem (head dim 128 on sm_90: faster than cuDNN 9.14's fused SDPA there, bench/NOTES.md), else
// cuDNN's fused SDPA, else our flash kernel; Flash, Cudnn and Hopper force one of them. fp8
// problems go to the kernel whose layout they were quantised into.
#include "gpu/attention.h"

#include <cmath>

#include "core/check.h"

namespace ib::gpu {

namespace {
// The shortest key sequence for which fp8 self-attention is quantised into our Hopper kernel's
// layout (fp8_attention_uses_hopper).
constexpr int64_t kHopperMinKeys = 2048;
}  // namespace

void attention(const AttentionProblem& p, AttentionBackend backend) {
  if (p.fp8_scales) {
    IB_CHECK(backend != AttentionBackend::Flash, "attention: the flash kernel has no fp8 variant");
    if (p.v_transposed) {  // our Hopper kernel's layout
      IB_CHECK(backend != AttentionBackend::Cudnn,
               "attention: cuDNN was asked for, but q/k/v were quantised into the Hopper kernel's layout");
      hopper_attention_fp8(p);
      return;
    }
    IB_CHECK(backend != AttentionBackend::Hopper,
             "attention: the Hopper fp8 kernel was asked for, but v was not quantised into its transposed layout");
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
      // Short key sequences too (the cross-attention's 512 text and 514 image keys): our kernel
      // runs them as streams of persistent blocks, a few ms slower than cuDNN in a 480p forward
      // (64-67 against 60-63 ms), and spares each process cuDNN's runtime compilation of its
      // attention graphs (0.2 s, and 2.4 s on a machine's first run: bench/NOTES.md version 30).
      if (hopper_attention_supports(p)) {
        hopper_attention(p);
        return;
      }
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

bool fp8_attention_uses_hopper(int64_t head_dim, int64_t lk, AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::Hopper:
      return true;
    case AttentionBackend::Auto:
      return head_dim == 128 && lk >= kHopperMinKeys && hopper_fp8_available();
    default:
      return false;
  }
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
