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

}  // namespace ib::ops::cuda
