// CUDA latent (de)normalisation and clamp, the CPU reference's formulas elementwise.
#include "ops/cuda/cuda_common.h"
#include "ops/vae_latent.h"

namespace ib::ops::cuda {

namespace {

// y[c, i] = x / inv[c] + mean[c] (inverse) or (x - mean[c]) * inv[c]; stats holds mean then inv.
__global__ void latent_scale_kernel(const float* __restrict__ x, const float* __restrict__ stats, int64_t C,
                                    int64_t N, bool inverse, float* __restrict__ y) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < C * N;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t c = i / N;
    const float m = stats[c], s = stats[C + c];
    y[i] = inverse ? x[i] / s + m : (x[i] - m) * s;
  }
}

// std::clamp's semantics (a NaN stays NaN).
__global__ void clamp_kernel(float* __restrict__ x, float lo, float hi, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float v = x[i];
    x[i] = v < lo ? lo : (hi < v ? hi : v);
  }
}

}  // namespace

void latent_scale(const Tensor& x, const std::vector<float>& mean, const std::vector<float>& inv, bool inverse,
                  const Tensor& y) {
  const int64_t C = x.size(0), N = C > 0 ? x.numel() / C : 0;
  if (C == 0 || N == 0) return;
  std::vector<float> stats(mean);
  stats.insert(stats.end(), inv.begin(), inv.end());
  const Tensor s = Tensor::from_vector(stats, {2 * C}).to(Device::CUDA);
  latent_scale_kernel<<<blocks_for(C * N), 256>>>(dev_f32(x, "latent_scale"), s.data<float>(), C, N, inverse,
                                                  dev_f32(y, "latent_scale"));
  check_launch("latent_scale");
}

void clamp_(const Tensor& x, float lo, float hi) {
  const int64_t n = x.numel();
  if (n == 0) return;
  clamp_kernel<<<blocks_for(n), 256>>>(dev_f32(x, "clamp_"), lo, hi, n);
  check_launch("clamp_");
}

}  // namespace ib::ops::cuda
