// CUDA channel RMS_norm (+SiLU) on channel-first x [C, N]: a block owns 32 positions and reads
// their C values once (rows of 32 consecutive floats, so every load is one 128-byte line), keeping
// them in shared memory for the second pass when C fits. The sum of squares is f32 (the CPU
// reference's is f64; the difference is far inside the f32 tolerance).
#include "ops/cuda/cuda_common.h"
#include "ops/vae_norm.h"

namespace ib::ops::cuda {

namespace {

constexpr int kPositions = 32;  // threads along the positions (one warp)
constexpr int kRows = 8;        // threads along the channels
constexpr int64_t kMaxCachedChannels = 1024;

struct NormParams {
  const float* x;
  const float* gamma;
  float* y;
  int64_t C, N;
  float scale;  // √C
  bool silu;
};

template <bool kCached>
__global__ void rms_norm_channels_kernel(NormParams p) {
  extern __shared__ float smem[];
  float* partial = smem;                         // [kRows][kPositions]
  float* cache = smem + kRows * kPositions;      // [C][kPositions] when kCached
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t n = static_cast<int64_t>(blockIdx.x) * kPositions + tx;
  const bool valid = n < p.N;
  float ss = 0.0f;
  for (int64_t c = ty; c < p.C; c += kRows) {
    const float v = valid ? p.x[c * p.N + n] : 0.0f;
    if (kCached) cache[c * kPositions + tx] = v;
    ss += v * v;
  }
  partial[ty * kPositions + tx] = ss;
  __syncthreads();
  float total = 0.0f;
#pragma unroll
  for (int r = 0; r < kRows; ++r) total += partial[r * kPositions + tx];
  // F.normalize: x / max(‖x‖, eps), then · √C · γ (in this order, as upstream).
  const float denom = fmaxf(sqrtf(total), 1e-12f);
  if (!valid) return;
  for (int64_t c = ty; c < p.C; c += kRows) {
    const float v = kCached ? cache[c * kPositions + tx] : p.x[c * p.N + n];
    float o = v / denom * p.scale * p.gamma[c];
    if (p.silu) o = o / (1.0f + expf(-o));
    p.y[c * p.N + n] = o;
  }
}

}  // namespace

void rms_norm_channels(const Tensor& x, const Tensor& gamma, bool silu, const Tensor& y) {
  NormParams p{};
  p.C = x.size(0);
  p.N = p.C > 0 ? x.numel() / p.C : 0;
  if (p.N == 0 || p.C == 0) return;
  p.x = dev_f32(x, "rms_norm_channels");
  p.gamma = dev_f32(gamma, "rms_norm_channels");
  p.y = dev_f32(y, "rms_norm_channels");
  p.scale = std::sqrt(static_cast<float>(p.C));
  p.silu = silu;
  const dim3 block(kPositions, kRows);
  const int64_t blocks = (p.N + kPositions - 1) / kPositions;
  IB_CHECK(blocks <= 0x7fffffff, "rms_norm_channels on CUDA: {} positions is too many", p.N);
  const size_t partial_bytes = kRows * kPositions * sizeof(float);
  if (p.C <= kMaxCachedChannels) {
    const size_t bytes = partial_bytes + static_cast<size_t>(p.C) * kPositions * sizeof(float);
    static const cudaError_t attr = cudaFuncSetAttribute(
        rms_norm_channels_kernel<true>, cudaFuncAttributeMaxDynamicSharedMemorySize,
        static_cast<int>(partial_bytes + kMaxCachedChannels * kPositions * sizeof(float)));
    check_cuda(attr, "cudaFuncSetAttribute (rms_norm_channels)");
    rms_norm_channels_kernel<true><<<static_cast<unsigned>(blocks), block, bytes>>>(p);
  } else {
    rms_norm_channels_kernel<false><<<static_cast<unsigned>(blocks), block, partial_bytes>>>(p);
  }
  check_launch("rms_norm_channels");
}

}  // namespace ib::ops::cuda
