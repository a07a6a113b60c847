// Ops that have a CPU reference but no CUDA kernel yet. A CUDA build links these so the CPU
// pipeline works; calling one on a GPU tensor fails with a message naming the op. Each entry is
// removed when its kernel lands in src/ops/cuda/<op>.cu.
#include "core/check.h"
#include "ops/conv.h"
#include "ops/embedding.h"
#include "ops/vae_latent.h"
#include "ops/vae_layout.h"
#include "ops/vae_norm.h"

namespace ib::ops::cuda {

namespace {
[[noreturn]] void no_kernel(const char* op) { fail("op {} has no CUDA kernel yet; run with --device cpu", op); }
}  // namespace

void conv3d(const Tensor&, const Tensor&, const Tensor&, const Conv3dArgs&, const Tensor&, const Tensor&) {
  no_kernel("conv3d");
}
void embedding(const Tensor&, const Tensor&, const Tensor&) { no_kernel("embedding"); }
void latent_scale(const Tensor&, const std::vector<float>&, const std::vector<float>&, bool, const Tensor&) {
  no_kernel("latent_scale");
}
void clamp_(const Tensor&, float, float) { no_kernel("clamp_"); }
void upsample_nearest2x(const Tensor&, const Tensor&) { no_kernel("upsample_nearest2x"); }
void transpose2d(const Tensor&, const Tensor&) { no_kernel("transpose2d"); }
void rms_norm_channels(const Tensor&, const Tensor&, bool, const Tensor&) { no_kernel("rms_norm_channels"); }

}  // namespace ib::ops::cuda
