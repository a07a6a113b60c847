// The fp8 attention's quantisation and dequantisation kernels (see attention_fp8.h). The scales
// use the same f32 operations as ops::quantize_tensor_e4m3 (IEEE division, no fast math), so the
// e4m3 codes are the CPU reference's bit for bit.
#include <cuda_bf16.h>
#include <cuda_fp8.h>

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "gpu/attention_fp8.h"
#include "gpu/fp8_rows.cuh"
#include "ops/cuda/cuda_common.h"

namespace ib::gpu {
namespace {

constexpr int kThreads = 256;
// The per-tensor rule is the per-row rule with one amax for the whole tensor.
using fp8_rows::atomic_max_nonneg;
using fp8_rows::code;
using fp8_rows::inverse_scale;
using fp8_rows::kE4M3Max;

using ops::cuda::check_launch;

unsigned grid_for(int64_t n) { return static_cast<unsigned>(std::clamp<int64_t>((n + kThreads - 1) / kThreads, 1, 132 * 8)); }


// amax of each of the three column blocks from block `first` on (0: q, k and v; 2: v only); 8 bf16
// per load (dim % 8 == 0: a load never straddles).
__global__ void qkv_amax_kernel(const __nv_bfloat16* qkv, int64_t rows, int64_t dim, int64_t ld, int first,
                                float* amax3) {
  const int64_t per_row = (3 - first) * dim / 8, n = rows * per_row;
  float m[3] = {0.0f, 0.0f, 0.0f};
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / per_row, c = first * dim + (i % per_row) * 8;
    const uint4 t = *reinterpret_cast<const uint4*>(qkv + r * ld + c);
    const auto* h = reinterpret_cast<const __nv_bfloat162*>(&t);
    float v = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 f = __bfloat1622float2(h[k]);
      v = fmaxf(v, fmaxf(fabsf(f.x), fabsf(f.y)));
    }
    const int64_t seg = c / dim;
    m[0] = seg == 0 ? fmaxf(m[0], v) : m[0];
    m[1] = seg == 1 ? fmaxf(m[1], v) : m[1];
    m[2] = seg == 2 ? fmaxf(m[2], v) : m[2];
  }
  __shared__ float red[3][kThreads / 32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
#pragma unroll
  for (int s = 0; s < 3; ++s) {
    float v = m[s];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) red[s][warp] = v;
  }
  __syncthreads();
  if (threadIdx.x < 3 && threadIdx.x >= first) {
    float v = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) v = fmaxf(v, red[threadIdx.x][w]);
    atomic_max_nonneg(amax3 + threadIdx.x, v);
  }
}

// The first `blocks` column blocks (q | k | v, or q | k) into out (row stride blocks * dim).
__global__ void qkv_quantize_kernel(const __nv_bfloat16* qkv, int64_t rows, int64_t dim, int64_t ld, int blocks,
                                    uint8_t* out, float* scales) {
  const float inv[3] = {inverse_scale(scales[kAmaxQ]), inverse_scale(scales[kAmaxK]), inverse_scale(scales[kAmaxV])};
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    scales[kDescaleQ] = fp8_rows::scale(scales[kAmaxQ]);
    scales[kDescaleK] = fp8_rows::scale(scales[kAmaxK]);
    scales[kDescaleV] = fp8_rows::scale(scales[kAmaxV]);
    scales[kDescaleS] = 1.0f / kE4M3Max;
    scales[kScaleS] = kE4M3Max;
    const float av = scales[kAmaxV];
    scales[kScaleO] = av > 0.0f ? kFp8AttentionOutRange / av : 1.0f;
    scales[kDescaleO] = av > 0.0f ? av / kFp8AttentionOutRange : 1.0f;
  }
  const int64_t per_row = blocks * dim / 8, n = rows * per_row;
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    const int64_t r = i / per_row, c = (i % per_row) * 8;
    const float s = inv[c / dim];
    const uint4 t = *reinterpret_cast<const uint4*>(qkv + r * ld + c);
    const auto* h = reinterpret_cast<const __nv_bfloat162*>(&t);
    uint8_t b[8];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const float2 f = __bfloat1622float2(h[k]);
      b[2 * k] = code(f.x, s);
      b[2 * k + 1] = code(f.y, s);
    }
    *reinterpret_cast<uint2*>(out + r * blocks * dim + c) = *reinterpret_cast<const uint2*>(b);
  }
}

// v (column block 2 of qkv) into the transposed, permuted layout of attention_fp8.h. A block takes
// 64 key positions x 128 features of one batch entry into a shared tile [feature][position], whose
// rows then go out as 16-byte stores. A thread takes 8 features of the four keys that land on four
// consecutive positions (keys 2t, 2t+1, 8+2t, 9+2t of a 16-key half group: fp8_vt_position), so it
// writes each feature's four codes as one 32-bit word; the features are visited in an order rotated
// by the thread's chunk, which spreads a warp's stores over the banks (2-way instead of 16-way).
constexpr int kVtKeys = 64, kVtFeatures = 128, kVtPitch = kVtKeys + 16;
__global__ void v_transpose_kernel(const __nv_bfloat16* qkv, int64_t tokens, int64_t dim, int64_t ld, uint8_t* vt,
                                   int64_t vt_keys, const float* scales) {
  __shared__ alignas(16) uint8_t tile[kVtFeatures][kVtPitch];
  const float inv = inverse_scale(scales[kAmaxV]);
  const int64_t k0 = blockIdx.x * int64_t{kVtKeys}, f0 = blockIdx.y * int64_t{kVtFeatures}, b = blockIdx.z;
  for (int it = threadIdx.x; it < kVtKeys / 4 * kVtFeatures / 8; it += blockDim.x) {
    const int chunk = it % (kVtFeatures / 8), word = it / (kVtFeatures / 8);  // positions 4 word .. 4 word + 3
    const int half = word / 4, t = word % 4;                                   // 16-key half group, pair t
    const int keys[4] = {16 * half + 2 * t, 16 * half + 2 * t + 1, 16 * half + 8 + 2 * t, 16 * half + 9 + 2 * t};
    uint32_t w[8] = {0, 0, 0, 0, 0, 0, 0, 0};  // w[e]: feature chunk * 8 + e, byte j = keys[j]
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t tok = k0 + keys[j];
      if (tok >= tokens) continue;
      const uint4 x = *reinterpret_cast<const uint4*>(qkv + (b * tokens + tok) * ld + 2 * dim + f0 + chunk * 8);
      const auto* h = reinterpret_cast<const __nv_bfloat162*>(&x);
#pragma unroll
      for (int k = 0; k < 4; ++k) {
        const float2 f = __bfloat1622float2(h[k]);
        w[2 * k] |= uint32_t{code(f.x, inv)} << (8 * j);
        w[2 * k + 1] |= uint32_t{code(f.y, inv)} << (8 * j);
      }
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int e = (i + chunk) % 8;
      *reinterpret_cast<uint32_t*>(&tile[chunk * 8 + e][4 * word]) = w[e];
    }
  }
  __syncthreads();
  for (int it = threadIdx.x; it < kVtFeatures * kVtKeys / 16; it += blockDim.x) {
    const int f = it / (kVtKeys / 16), part = it % (kVtKeys / 16);
    *reinterpret_cast<uint4*>(vt + (b * dim + f0 + f) * vt_keys + k0 + part * 16) =
        *reinterpret_cast<const uint4*>(&tile[f][part * 16]);
  }
}

__global__ void dequantize_kernel(const uint8_t* in, int64_t n8, const float* scales, __nv_bfloat16* out) {
  const float s = scales[kDescaleO];
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n8; i += int64_t{gridDim.x} * blockDim.x) {
    const uint2 t = *reinterpret_cast<const uint2*>(in + i * 8);
    const auto* b = reinterpret_cast<const __nv_fp8_storage_t*>(&t);
    __nv_bfloat162 o[4];
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const __half2_raw h2 = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(b[2 * k] | (b[2 * k + 1] << 8)), __NV_E4M3);
      const float2 f = __half22float2(__half2(h2));
      o[k] = __floats2bfloat162_rn(__fmul_rn(f.x, s), __fmul_rn(f.y, s));
    }
    *reinterpret_cast<uint4*>(out + i * 8) = *reinterpret_cast<const uint4*>(o);
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

void quantize_qkv_fp8(const void* qkv, int64_t rows, int64_t dim, int64_t ld, void* out, float* scales,
                      cudaStream_t stream) {
  IB_CHECK(qkv != nullptr && out != nullptr && scales != nullptr && rows >= 0 && dim > 0 && dim % 8 == 0 &&
               ld >= 3 * dim && ld % 8 == 0 && aligned16(qkv) && aligned16(out),
           "quantize_qkv_fp8: bad arguments ({} rows, dim {}, row stride {}; dim and stride must be multiples of 8, "
           "pointers 16-byte aligned)",
           rows, dim, ld);
  const cudaError_t e = cudaMemsetAsync(scales + kAmaxQ, 0, 3 * sizeof(float), stream);
  IB_CHECK(e == cudaSuccess, "quantize_qkv_fp8: cudaMemsetAsync failed: {}", cudaGetErrorString(e));
  const int64_t n = rows * 3 * dim / 8;
  const auto* x = static_cast<const __nv_bfloat16*>(qkv);
  if (n > 0) {
    qkv_amax_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, rows, dim, ld, 0, scales + kAmaxQ);
    check_launch("quantize_qkv_fp8 (amax)");
  }
  // Also with no rows: the scales are then written (amax 0: scale 1).
  qkv_quantize_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, rows, dim, ld, 3, static_cast<uint8_t*>(out), scales);
  check_launch("quantize_qkv_fp8");
}

void quantize_qkv_fp8_vt(const void* qkv, int64_t batch, int64_t tokens, int64_t dim, int64_t ld, void* qk8, void* vt,
                         float* scales, cudaStream_t stream, bool qk_amax_ready) {
  const int64_t rows = batch * tokens;
  IB_CHECK(qkv != nullptr && qk8 != nullptr && vt != nullptr && scales != nullptr && batch > 0 && tokens > 0 &&
               batch <= 65535 && dim > 0 && dim % 128 == 0 && dim / 128 <= 65535 && ld >= 3 * dim && ld % 8 == 0 &&
               aligned16(qkv) && aligned16(qk8) && aligned16(vt),
           "quantize_qkv_fp8_vt: bad arguments ({} x {} rows, dim {}, row stride {}; dim a multiple of 128, the "
           "stride of 8, pointers 16-byte aligned)",
           batch, tokens, dim, ld);
  static_assert(kAmaxK == kAmaxQ + 1 && kAmaxV == kAmaxQ + 2, "the amax kernel writes q, k, v in a row");
  const int first = qk_amax_ready ? 2 : 0;  // the first column block whose amax is measured here
  const cudaError_t e = cudaMemsetAsync(scales + kAmaxQ + first, 0, (3 - first) * sizeof(float), stream);
  IB_CHECK(e == cudaSuccess, "quantize_qkv_fp8_vt: cudaMemsetAsync failed: {}", cudaGetErrorString(e));
  const auto* x = static_cast<const __nv_bfloat16*>(qkv);
  const int64_t n = rows * (3 - first) * dim / 8;
  qkv_amax_kernel<<<grid_for(n), kThreads, 0, stream>>>(x, rows, dim, ld, first, scales + kAmaxQ);
  check_launch("quantize_qkv_fp8_vt (amax)");
  qkv_quantize_kernel<<<grid_for(rows * 2 * dim / 8), kThreads, 0, stream>>>(x, rows, dim, ld, 2,
                                                                             static_cast<uint8_t*>(qk8), scales);
  check_launch("quantize_qkv_fp8_vt (q, k)");
  const int64_t vt_keys = fp8_vt_keys(tokens);
  const dim3 grid(static_cast<unsigned>(vt_keys / kVtKeys), static_cast<unsigned>(dim / kVtFeatures),
                  static_cast<unsigned>(batch));
  v_transpose_kernel<<<grid, kThreads, 0, stream>>>(x, tokens, dim, ld, static_cast<uint8_t*>(vt), vt_keys, scales);
  check_launch("quantize_qkv_fp8_vt (v transposed)");
}

void dequantize_attention_fp8(const void* in, int64_t rows, int64_t cols, const float* scales, void* out,
                              cudaStream_t stream) {
  IB_CHECK(in != nullptr && out != nullptr && scales != nullptr && rows >= 0 && cols > 0 && cols % 8 == 0 &&
               aligned16(in) && aligned16(out),
           "dequantize_attention_fp8: bad arguments ({} rows, {} columns; columns a multiple of 8, pointers "
           "16-byte aligned)",
           rows, cols);
  const int64_t n8 = rows * cols / 8;
  if (n8 == 0) return;
  dequantize_kernel<<<grid_for(n8), kThreads, 0, stream>>>(static_cast<const uint8_t*>(in), n8, scales,
                                                          static_cast<__nv_bfloat16*>(out));
  check_launch("dequantize_attention_fp8");
}

AttentionProblem fp8_self_attention(const void* qkv8, void* out8, float* scales, int64_t tokens, int64_t heads,
                                    int64_t head_dim) {
  // The bf16 problem's strides (in elements) with one-byte elements: k and v start dim bytes apart.
  AttentionProblem p = fused_self_attention(qkv8, out8, tokens, heads, head_dim);
  const int64_t dim = heads * head_dim;
  p.k = static_cast<const char*>(qkv8) + dim;
  p.v = static_cast<const char*>(qkv8) + 2 * dim;
  p.fp8_scales = scales;
  return p;
}

}  // namespace ib::gpu

namespace ib::gpu {

AttentionProblem fp8_self_attention_vt(const void* qk8, const void* vt, void* out, float* scales, int64_t tokens,
                                       int64_t heads, int64_t head_dim) {
  const int64_t dim = heads * head_dim;
  AttentionProblem p = fused_self_attention(qk8, out, tokens, heads, head_dim);
  p.k = static_cast<const char*>(qk8) + dim;  // one-byte elements
  p.v = nullptr;
  p.q_row_stride = p.k_row_stride = 2 * dim;
  p.v_row_stride = 0;
  p.fp8_scales = scales;
  p.v_transposed = vt;
  return p;
}

}  // namespace ib::gpu
