// CUDA activations, the CPU reference's formulas in f32 (erf, tanh and exp are the accurate
// library functions, not the fast intrinsics).
#include "ops/activation.h"
#include "ops/cuda/cuda_common.h"

namespace ib::ops::cuda {

namespace {
__global__ void activate_kernel(const float* x, float* y, int64_t n, Activation a) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = x[i];
    switch (a) {
      case Activation::Gelu: y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
      case Activation::GeluTanh: y[i] = 0.5f * v * (1.0f + tanhf(0.79788456080286536f * (v + 0.044715f * v * v * v))); break;
      case Activation::Silu: y[i] = v / (1.0f + expf(-v)); break;
    }
  }
}
}  // namespace

void activate(const Tensor& x, Activation a, const Tensor& y) {
  IB_CHECK(a == Activation::Gelu || a == Activation::GeluTanh || a == Activation::Silu,
           "activate: unknown activation {}", static_cast<int>(a));
  const int64_t n = x.numel();
  if (n == 0) return;
  activate_kernel<<<blocks_for(n), 256>>>(dev_f32(x, "activate"), dev_f32(y, "activate"), n, a);
  check_launch("activate");
}

}  // namespace ib::ops::cuda
