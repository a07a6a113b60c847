// Picks the attention back-end for the GPU engine: cuDNN's fused SDPA where it takes the problem
// (Auto), else our flash kernel; Flash and Cudnn force one of them.
#include "gpu/attention.h"

#include "core/check.h"

namespace ib::gpu {

void attention(const AttentionProblem& p, AttentionBackend backend) {
  switch (backend) {
    case AttentionBackend::Flash:
      flash_attention(p);
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

}  // namespace ib::gpu
