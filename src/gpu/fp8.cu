// Row-wise e4m3 quantisation and the bias/GELU fallback epilogue (see fp8.h).
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>

#include "core/check.h"
#include "gpu/fp8.h"
#include "gpu/fp8_rows.cuh"
#include "ops/cuda/cuda_common.h"

namespace ib::gpu {

namespace {

constexpr int kThreads = 256;

__device__ float block_max(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = 0.0f;
  for (int i = 0; i < kThreads / 32; ++i) m = fmaxf(m, scratch[i]);
  return m;
}

// Element k of a row as quantize_rows_kernel reads it: x, or with x2 the bf16-rounded f32 sum.
template <bool kSum>
__device__ __forceinline__ float row_value(__nv_bfloat16 a, __nv_bfloat16 b) {
  if constexpr (kSum) return __bfloat162float(__float2bfloat16_rn(__bfloat162float(a) + __bfloat162float(b)));
  return __bfloat162float(a);
}

// V values of a row from element i * V on (V = 8: one 16-byte load from each input).
template <int V, bool kSum>
__device__ __forceinline__ void load_row(const __nv_bfloat16* x, const __nv_bfloat16* x2, int64_t i, float* f) {
  if constexpr (V == 8) {
    const uint4 t = *reinterpret_cast<const uint4*>(x + i * 8);
    uint4 t2 = t;
    if constexpr (kSum) t2 = *reinterpret_cast<const uint4*>(x2 + i * 8);
    const auto* h = reinterpret_cast<const __nv_bfloat16*>(&t);
    const auto* h2 = reinterpret_cast<const __nv_bfloat16*>(&t2);
#pragma unroll
    for (int k = 0; k < 8; ++k) f[k] = row_value<kSum>(h[k], h2[k]);
  } else {
    f[0] = row_value<kSum>(x[i], kSum ? x2[i] : x[i]);
  }
}

// One block per row. V = 8: 16-byte loads of 8 bf16 and 8-byte stores of 8 e4m3. kSum: the row is
// x + x2 (QuantizeRowsArgs::x2).
template <int V, bool kSum>
__global__ void quantize_rows_kernel(QuantizeRowsArgs a) {
  __shared__ float scratch[kThreads / 32];
  const int64_t r = blockIdx.x;
  const auto* x = static_cast<const __nv_bfloat16*>(a.x) + r * a.ld;
  const auto* x2 = kSum ? static_cast<const __nv_bfloat16*>(a.x2) + r * a.ld : x;
  auto* q = static_cast<uint8_t*>(a.q) + r * a.cols;
  const int64_t nv = a.cols / V;
  float m = 0.0f;
  for (int64_t i = threadIdx.x; i < nv; i += kThreads) {
    float f[V];
    load_row<V, kSum>(x, x2, i, f);
#pragma unroll
    for (int k = 0; k < V; ++k) m = fmaxf(m, fabsf(f[k]));
  }
  const float amax = block_max(m, scratch);
  // IEEE division (no fast math in this file): the CPU reference computes the same f32 values.
  const float inv = fp8_rows::inverse_scale(amax);
  if (threadIdx.x == 0) a.scale[r] = fp8_rows::scale(amax);
  for (int64_t i = threadIdx.x; i < nv; i += kThreads) {
    float f[V];
    load_row<V, kSum>(x, x2, i, f);
    if constexpr (V == 8) {
      uint8_t b[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) b[k] = fp8_rows::code(f[k], inv);
      *reinterpret_cast<uint2*>(q + i * 8) = *reinterpret_cast<const uint2*>(b);
    } else {
      q[i] = fp8_rows::code(f[0], inv);
    }
  }
}

__global__ void bias_act_kernel(__nv_bfloat16* y, int64_t rows, int64_t cols, int64_t ld,
                                const __nv_bfloat16* bias, bool gelu) {
  const int64_t n = rows * cols;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i % cols;
    float v = __bfloat162float(y[r * ld + c]) + __bfloat162float(bias[c]);
    if (gelu) v = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
    y[r * ld + c] = __float2bfloat16_rn(v);
  }
}

using ops::cuda::check_launch;

}  // namespace

void quantize_rows_fp8(const QuantizeRowsArgs& a, cudaStream_t stream) {
  IB_CHECK(a.x != nullptr && a.q != nullptr && a.scale != nullptr && a.cols > 0 && a.ld >= a.cols && a.rows >= 0,
           "quantize_rows_fp8: bad arguments ({} rows, {} columns, row stride {})", a.rows, a.cols, a.ld);
  if (a.rows == 0) return;
  const bool vec = a.cols % 8 == 0 && a.ld % 8 == 0 && reinterpret_cast<uintptr_t>(a.x) % 16 == 0 &&
                   reinterpret_cast<uintptr_t>(a.x2) % 16 == 0 && reinterpret_cast<uintptr_t>(a.q) % 8 == 0;
  const auto grid = static_cast<unsigned>(a.rows);
  if (a.x2 != nullptr) {
    vec ? quantize_rows_kernel<8, true><<<grid, kThreads, 0, stream>>>(a)
        : quantize_rows_kernel<1, true><<<grid, kThreads, 0, stream>>>(a);
  } else {
    vec ? quantize_rows_kernel<8, false><<<grid, kThreads, 0, stream>>>(a)
        : quantize_rows_kernel<1, false><<<grid, kThreads, 0, stream>>>(a);
  }
  check_launch("quantize_rows_fp8");
}

void bias_act_bf16(void* y, int64_t rows, int64_t cols, int64_t ld, const void* bias, bool gelu, cudaStream_t stream) {
  const int64_t n = rows * cols;
  if (n == 0) return;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535LL * 16);
  bias_act_kernel<<<static_cast<unsigned>(blocks), 256, 0, stream>>>(
      static_cast<__nv_bfloat16*>(y), rows, cols, ld, static_cast<const __nv_bfloat16*>(bias), gelu);
  check_launch("bias_act_bf16");
}

bool fp8_supported() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major * 10 + minor >= 89;
}

void require_fp8(const char* what) {
  if (fp8_supported()) return;
  int dev = 0, major = 0, minor = 0;
  cudaGetDevice(&dev);
  cudaDeviceProp p{};
  cudaGetDeviceProperties(&p, dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  fail("{}: fp8 needs a GPU of compute capability 8.9 or newer (Ada, Hopper, Blackwell); {} is {}.{} "
       "(use --precision bf16)",
       what, p.name, major, minor);
}

}  // namespace ib::gpu
