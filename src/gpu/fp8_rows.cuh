// The e4m3 rule of ops/quantize.h as device functions, for every kernel that quantises a row
// (quantize_rows_fp8, and residual_norm's fp8 copy of the rows it writes) or a whole tensor with
// one amax (the fp8 attention's q, k and v, attention_fp8.cu): one definition, so that they all
// give the same bits. Device code only; include from .cu files compiled without
// fast math (the division must be IEEE's, as the CPU reference's is).
#pragma once

#include <cuda_fp8.h>

#include <cstdint>

namespace ib::gpu::fp8_rows {

constexpr float kE4M3Max = 448.0f;  // ops::kE4M3Max

// What a row of largest magnitude amax is multiplied by before rounding (1 for a zero row).
__device__ __forceinline__ float inverse_scale(float amax) { return amax > 0.0f ? kE4M3Max / amax : 1.0f; }
// The row's scale, x ~= q * scale (1 for a zero row).
__device__ __forceinline__ float scale(float amax) { return amax > 0.0f ? amax / kE4M3Max : 1.0f; }
// Maxes an amax slot: non-negative floats order like their bit patterns, so an integer atomicMax
// is a float max (the slot starts at 0). For the kernels that measure an amax across blocks.
__device__ inline void atomic_max_nonneg(float* at, float v) {
  atomicMax(reinterpret_cast<int*>(at), __float_as_int(v));
}

// One value's code: e4m3(v * inv), round to nearest even, saturating.
__device__ __forceinline__ uint8_t code(float v, float inv) {
  return static_cast<uint8_t>(__nv_cvt_float_to_fp8(__fmul_rn(v, inv), __NV_SATFINITE, __NV_E4M3));
}

}  // namespace ib::gpu::fp8_rows
