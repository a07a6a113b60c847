// CUDA LayerNorm / RMSNorm over the last dimension: one block per row, f32 sums reduced across the
// block (the CPU reference sums in f64; the difference is far inside the f32 tolerance).
#include "ops/cuda/cuda_common.h"
#include "ops/norm.h"

namespace ib::ops::cuda {

namespace {

constexpr int kThreads = 256;

// Sum of v over the block; every thread gets the result.
__device__ float block_sum(float v, float* shared) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // `shared` may still be read from a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float t = 0;
  for (int w = 0; w < kThreads / 32; ++w) t += shared[w];
  return t;
}

// kRms: y = x / sqrt(mean(x^2) + eps) * w; else y = (x - mean) / sqrt(var + eps) * w + b.
template <bool kRms>
__global__ void norm_rows(const float* x, const float* w, const float* b, float eps, int64_t C, float* y) {
  __shared__ float shared[kThreads / 32];
  const float* xr = x + blockIdx.x * C;
  float* yr = y + blockIdx.x * C;
  float mean = 0;
  if (!kRms) {
    float s = 0;
    for (int64_t c = threadIdx.x; c < C; c += kThreads) s += xr[c];
    mean = block_sum(s, shared) / static_cast<float>(C);
  }
  float sq = 0;
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    const float d = xr[c] - mean;
    sq += d * d;
  }
  const float inv = rsqrtf(block_sum(sq, shared) / static_cast<float>(C) + eps);
  for (int64_t c = threadIdx.x; c < C; c += kThreads) {
    float v = (xr[c] - mean) * inv;
    if (w != nullptr) v *= w[c];
    if (b != nullptr) v += b[c];
    yr[c] = v;
  }
}

const float* optional(const Tensor& p, const char* op) { return p.defined() ? dev_f32(p, op) : nullptr; }

template <bool kRms>
void launch(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, const Tensor& y, const char* op) {
  const int64_t C = x.size(-1);
  const int64_t rows = C == 0 ? 0 : x.numel() / C;
  if (rows == 0) return;
  IB_CHECK(rows <= 0x7fffffff, "{} on CUDA: {} rows is too many", op, rows);
  norm_rows<kRms><<<static_cast<unsigned>(rows), kThreads>>>(dev_f32(x, op), optional(weight, op),
                                                              optional(bias, op), eps, C, dev_f32(y, op));
  check_launch(op);
}

}  // namespace

void layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps, const Tensor& y) {
  launch<false>(x, weight, bias, eps, y, "layer_norm");
}

void rms_norm(const Tensor& x, const Tensor& weight, float eps, const Tensor& y) {
  launch<true>(x, weight, Tensor(), eps, y, "rms_norm");
}

}  // namespace ib::ops::cuda
