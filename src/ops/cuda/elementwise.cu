// CUDA elementwise arithmetic: b repeats every b.numel() elements of a (trailing-dims broadcast);
// y may be a itself (the in-place form).
#include "ops/cuda/cuda_common.h"
#include "ops/elementwise.h"

namespace ib::ops::cuda {

namespace {
__global__ void binary_kernel(const float* a, const float* b, float* y, int64_t n, int64_t nb, Binary op) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float u = a[i], v = b[i % nb];
    y[i] = op == Binary::Add ? u + v : (op == Binary::Sub ? u - v : u * v);
  }
}

__global__ void affine_kernel(const float* x, float a, float b, float* y, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = a * x[i] + b;
}
}  // namespace

void binary(const Tensor& a, const Tensor& b, Binary op, const Tensor& y) {
  IB_CHECK(op == Binary::Add || op == Binary::Sub || op == Binary::Mul, "binary: unknown op {}", static_cast<int>(op));
  const int64_t n = a.numel(), nb = b.numel();
  if (n == 0 || nb == 0) return;
  binary_kernel<<<blocks_for(n), 256>>>(dev_f32(a, "binary"), dev_f32(b, "binary"), dev_f32(y, "binary"), n, nb, op);
  check_launch("binary");
}

void affine(const Tensor& x, float a, float b, const Tensor& y) {
  const int64_t n = x.numel();
  if (n == 0) return;
  affine_kernel<<<blocks_for(n), 256>>>(dev_f32(x, "affine"), a, b, dev_f32(y, "affine"), n);
  check_launch("affine");
}

}  // namespace ib::ops::cuda
