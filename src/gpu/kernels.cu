// The GPU engine's fused DiT kernels (see kernels.h for what each computes).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/check.h"
#include "gpu/fp8_rows.cuh"
#include "gpu/kernels.h"
#include "ops/cuda/cuda_common.h"

namespace ib::gpu {

namespace {

using ops::cuda::check_launch;

unsigned grid_for(int64_t n, int threads = 256) {
  const int64_t b = (n + threads - 1) / threads;
  return static_cast<unsigned>(b < 1 ? 1 : (b > 65535LL * 64 ? 65535LL * 64 : b));
}

__device__ __forceinline__ float bf(const __nv_bfloat16 v) { return __bfloat162float(v); }
__device__ __forceinline__ float round_bf(float v) { return __bfloat162float(__float2bfloat16_rn(v)); }

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ float block_sum(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float t = 0.0f;
  for (int i = 0; i < warps; ++i) t += scratch[i];
  return t;
}

// Max over the block (as block_sum); every thread gets it.
__device__ float block_max(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, warps = blockDim.x / 32;
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  float m = 0.0f;
  for (int i = 0; i < warps; ++i) m = fmaxf(m, scratch[i]);
  return m;
}

constexpr int kRowThreads = 512;

// Rows are held in shared memory as f32; up to this many columns fit one block.
constexpr int64_t kMaxRowCols = 48 * 1024;

void row_smem(const void* kernel, int64_t cols, const char* what) {
  IB_CHECK(cols > 0 && cols <= kMaxRowCols, "{}: rows of {} columns are not supported (at most {})", what, cols,
           kMaxRowCols);
  const size_t bytes = static_cast<size_t>(cols) * sizeof(float);
  if (bytes > 48 * 1024) {
    const cudaError_t e =
        cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
    IB_CHECK(e == cudaSuccess, "{}: cannot raise shared memory to {} bytes: {}", what, bytes, cudaGetErrorString(e));
  }
}

// V consecutive values per access: 4 (16-byte f32 and 8-byte bf16 accesses) when the widths and
// pointers allow it, else 1.
template <int V>
__device__ __forceinline__ void load_f32(const float* p, float* v) {
  if constexpr (V == 4) {
    const float4 t = *reinterpret_cast<const float4*>(p);
    v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
  } else {
    v[0] = *p;
  }
}
template <int V>
__device__ __forceinline__ void store_f32(float* p, const float* v) {
  if constexpr (V == 4) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  } else {
    *p = v[0];
  }
}
template <int V>
__device__ __forceinline__ void load_bf16(const __nv_bfloat16* p, float* v) {
  if constexpr (V == 4) {
    const uint2 t = *reinterpret_cast<const uint2*>(p);
    const float2 a = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&t.x));
    const float2 b = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&t.y));
    v[0] = a.x, v[1] = a.y, v[2] = b.x, v[3] = b.y;
  } else {
    v[0] = bf(*p);
  }
}
template <int V>
__device__ __forceinline__ void store_bf16(__nv_bfloat16* p, const float* v) {
  if constexpr (V == 4) {
    const __nv_bfloat162 a = __floats2bfloat162_rn(v[0], v[1]), b = __floats2bfloat162_rn(v[2], v[3]);
    uint2 t;
    t.x = *reinterpret_cast<const uint32_t*>(&a);
    t.y = *reinterpret_cast<const uint32_t*>(&b);
    *reinterpret_cast<uint2*>(p) = t;
  } else {
    *p = __float2bfloat16_rn(v[0]);
  }
}

template <int V>
__global__ void residual_norm_kernel(ResidualNormArgs a) {
  extern __shared__ float row[];  // [cols]
  __shared__ float scratch[32];
  const int64_t r = blockIdx.x;
  const int C = static_cast<int>(a.cols), nv = C / V;
  float* x = a.x + r * C;
  const auto* y = a.y != nullptr ? static_cast<const __nv_bfloat16*>(a.y) + r * a.ldy : nullptr;
  float s = 0.0f;
  for (int i = threadIdx.x; i < nv; i += blockDim.x) {
    float v[V];
    load_f32<V>(x + i * V, v);
    if (y != nullptr) {
      float d[V], g[V];
      load_bf16<V>(y + i * V, d);
      if (a.gate != nullptr) {
        load_f32<V>(a.gate + i * V, g);
      } else {
#pragma unroll
        for (int k = 0; k < V; ++k) g[k] = 1.0f;
      }
#pragma unroll
      for (int k = 0; k < V; ++k) v[k] = v[k] + d[k] * g[k];
      store_f32<V>(x + i * V, v);
    }
#pragma unroll
    for (int k = 0; k < V; ++k) {
      row[i * V + k] = v[k];
      s += v[k];
    }
  }
  const float mean = block_sum(s, scratch) / static_cast<float>(C);
  float q = 0.0f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const float d = row[c] - mean;
    q += d * d;
  }
  const float var = block_sum(q, scratch) / static_cast<float>(C);
  const float rstd = 1.0f / sqrtf(var + a.eps);
  const bool affine = a.mode == ResidualNormArgs::Mode::Affine;
  const bool fp8 = a.q8 != nullptr;
  float m = 0.0f;  // amax of the bf16 outputs (fp8 copy only)
  for (int i = threadIdx.x; i < nv; i += blockDim.x) {
    float p0[V], p1[V], o[V];
    load_f32<V>(a.p0 + i * V, p0);
    load_f32<V>(a.p1 + i * V, p1);
#pragma unroll
    for (int k = 0; k < V; ++k) {
      float n = (row[i * V + k] - mean) * rstd;
      if (a.round_norm) n = round_bf(n);
      o[k] = affine ? n * p0[k] + p1[k] : n * (1.0f + p0[k]) + p1[k];
    }
    if (a.out_bf16) {
      store_bf16<V>(static_cast<__nv_bfloat16*>(a.out) + r * C + i * V, o);
    } else {
      store_f32<V>(static_cast<float*>(a.out) + r * C + i * V, o);
    }
    if (fp8) {
      // The row slot now holds what out holds (this thread's own columns: no other reads them yet).
#pragma unroll
      for (int k = 0; k < V; ++k) {
        const float b = round_bf(o[k]);
        row[i * V + k] = b;
        m = fmaxf(m, fabsf(b));
      }
    }
  }
  if (!fp8) return;  // uniform over the block
  // The fp8 copy: quantize_rows_fp8's rule (gpu/fp8_rows.cuh) on the bf16 values just written.
  const float amax = block_max(m, scratch);  // its barriers publish the row's new values too
  const float inv = fp8_rows::inverse_scale(amax);
  if (threadIdx.x == 0) a.q8_scale[r] = fp8_rows::scale(amax);
  auto* codes = static_cast<uint8_t*>(a.q8) + r * C;
  for (int i = threadIdx.x; i < nv; i += blockDim.x) {
    if constexpr (V == 4) {
      uchar4 b;
      b.x = fp8_rows::code(row[i * 4], inv);
      b.y = fp8_rows::code(row[i * 4 + 1], inv);
      b.z = fp8_rows::code(row[i * 4 + 2], inv);
      b.w = fp8_rows::code(row[i * 4 + 3], inv);
      *reinterpret_cast<uchar4*>(codes + i * 4) = b;
    } else {
      codes[i] = fp8_rows::code(row[i], inv);
    }
  }
}

struct QkDev {
  __nv_bfloat16* x;
  int64_t cols, ld;
  const float* gamma;
  float eps;
  int64_t half;  // head_dim / 2
  bool rope;
  // Axis tables (cos and sin of pos * theta_j), [positions, pairs] each.
  const double *cf, *sf, *ch, *sh, *cw, *sw;
  int64_t gh, gw, pf, ph, pw;
  int64_t tokens;  // rows of one video
  float* amax;     // null, or where the rows' largest |bf16 output| is maxed
};

constexpr int kMaxHalf = 256;  // head dims up to 512

// |the larger half| of a bf16 pair, for the amax of what qk_norm writes.
__device__ __forceinline__ float abs_max2(__nv_bfloat162 v) {
  const float2 f = __bfloat1622float2(v);
  return fmaxf(fabsf(f.x), fabsf(f.y));
}

// One pair of a q/k row, as both kernels compute it (the CPU composition's arithmetic): the norm
// (x * rn, rounded to bf16, times gamma), then with `rope` the rotation by (c, s) in double.
__device__ __forceinline__ __nv_bfloat162 qk_pair(float x0, float x1, float rn, float g0, float g1, bool rope, double c,
                                                  double s) {
  const float v0 = round_bf(x0 * rn) * g0, v1 = round_bf(x1 * rn) * g1;
  if (!rope) return __floats2bfloat162_rn(v0, v1);
  const double re = v0, im = v1;
  return __floats2bfloat162_rn(static_cast<float>(re * c - im * s), static_cast<float>(re * s + im * c));
}

// Row r's head_dim/2 rotation angles (cos, sin; the same for every head) into cs and sn, by the
// block's threads; a barrier must follow before they are read.
__device__ void load_angles(const QkDev& a, int64_t r, double* cs, double* sn) {
  // This token's place in the grid: frame f, row ra, column cb.
  const int64_t rt = r % a.tokens;
  const int64_t f = rt / (a.gh * a.gw), ra = (rt / a.gw) % a.gh, cb = rt % a.gw;
  const int half = static_cast<int>(a.half), pf = static_cast<int>(a.pf), ph = static_cast<int>(a.ph),
            pw = static_cast<int>(a.pw);
  for (int j = threadIdx.x; j < half; j += blockDim.x) {
    if (j < pf) {
      cs[j] = a.cf[f * pf + j];
      sn[j] = a.sf[f * pf + j];
    } else if (j < pf + ph) {
      cs[j] = a.ch[ra * ph + (j - pf)];
      sn[j] = a.sh[ra * ph + (j - pf)];
    } else {
      cs[j] = a.cw[cb * pw + (j - pf - ph)];
      sn[j] = a.sw[cb * pw + (j - pf - ph)];
    }
  }
}

// One block per row. The row's pairs are read as bf16x2; the token's head_dim/2 rotation angles
// are looked up once per block into shared memory (they are the same for every head). The general
// path: rows whose columns or stride are not multiples of 8 (qk_norm_vec_kernel below takes the rest).
__global__ void qk_norm_kernel(QkDev a) {
  extern __shared__ float row[];
  __shared__ float scratch[32];
  __shared__ double cs[kMaxHalf], sn[kMaxHalf];
  const int64_t r = blockIdx.x;
  auto* x2 = reinterpret_cast<__nv_bfloat162*>(a.x + r * a.ld);
  const int cols = static_cast<int>(a.cols), pairs = cols / 2, half = static_cast<int>(a.half);
  float s = 0.0f;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const float2 v = __bfloat1622float2(x2[p]);
    row[2 * p] = v.x;
    row[2 * p + 1] = v.y;
    s += v.x * v.x + v.y * v.y;
  }
  if (a.rope) load_angles(a, r, cs, sn);
  const float ms = block_sum(s, scratch) / static_cast<float>(cols);  // its barriers publish cs/sn too
  const float rn = 1.0f / sqrtf(ms + a.eps);
  float m = 0.0f;
  for (int p = threadIdx.x; p < pairs; p += blockDim.x) {
    const int j = p % half;
    const __nv_bfloat162 o = qk_pair(row[2 * p], row[2 * p + 1], rn, a.gamma[2 * p], a.gamma[2 * p + 1], a.rope,
                                     a.rope ? cs[j] : 1.0, a.rope ? sn[j] : 0.0);
    x2[p] = o;
    m = fmaxf(m, abs_max2(o));
  }
  if (a.amax != nullptr) {
    m = block_max(m, scratch);
    if (threadIdx.x == 0) fp8_rows::atomic_max_nonneg(a.amax, m);
  }
}

// qk_norm_kernel for rows whose columns and stride are multiples of 8 and heads of a multiple of 8
// features (every DiT's): the row stays in registers, read and written as 16-byte vectors (8 bf16,
// four pairs of one head), by kQkThreads threads, up to kQkMaxVec vectors each; the gammas and the
// angles are read 16 bytes at a time too. The same arithmetic as qk_norm_kernel per element (only
// the order of the sum of squares differs). At 480p it moved the DiT's q/k norms from ~1.45 TB/s
// (55 ms a forward) to ~2.25 TB/s (36 ms; bench/NOTES.md, version 17).
constexpr int kQkThreads = 128, kQkMaxVec = 8;  // columns up to 128 * 8 * 8 = 8192
__global__ void __launch_bounds__(kQkThreads, 6) qk_norm_vec_kernel(QkDev a) {
  __shared__ float scratch[32];
  __shared__ alignas(16) double cs[kMaxHalf];
  __shared__ alignas(16) double sn[kMaxHalf];
  const int64_t r = blockIdx.x;
  auto* x8 = reinterpret_cast<uint4*>(a.x + r * a.ld);
  const int vecs = static_cast<int>(a.cols / 8), half = static_cast<int>(a.half);
  uint4 raw[kQkMaxVec];  // the row's bf16 as loaded (4 registers a vector, not 8 floats)
  float s = 0.0f;
#pragma unroll
  for (int k = 0; k < kQkMaxVec; ++k) {
    const int i = threadIdx.x + k * kQkThreads;
    if (i >= vecs) break;
    raw[k] = x8[i];
    const auto* h = reinterpret_cast<const __nv_bfloat162*>(&raw[k]);
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 f = __bfloat1622float2(h[e]);
      s += f.x * f.x + f.y * f.y;
    }
  }
  if (a.rope) load_angles(a, r, cs, sn);
  const float ms = block_sum(s, scratch) / static_cast<float>(a.cols);  // its barriers publish cs/sn too
  const float rn = 1.0f / sqrtf(ms + a.eps);
  float m = 0.0f;  // the largest |output| (for a.amax)
#pragma unroll
  for (int k = 0; k < kQkMaxVec; ++k) {
    const int i = threadIdx.x + k * kQkThreads;
    if (i >= vecs) break;
    auto* h = reinterpret_cast<__nv_bfloat162*>(&raw[k]);
    // The vector's 8 gammas and its four pairs' angles (j0 .. j0 + 3, one head: half % 4 == 0) as
    // 16-byte loads: one element at a time, these loads kept the L1 93% busy (Nsight Compute).
    float g[8];
    *reinterpret_cast<float4*>(g) = reinterpret_cast<const float4*>(a.gamma)[2 * i];
    *reinterpret_cast<float4*>(g + 4) = reinterpret_cast<const float4*>(a.gamma)[2 * i + 1];
    double c4[4] = {1.0, 1.0, 1.0, 1.0}, s4[4] = {0.0, 0.0, 0.0, 0.0};
    if (a.rope) {
      const int j0 = (4 * i) % half;
      *reinterpret_cast<double2*>(c4) = *reinterpret_cast<const double2*>(cs + j0);
      *reinterpret_cast<double2*>(c4 + 2) = *reinterpret_cast<const double2*>(cs + j0 + 2);
      *reinterpret_cast<double2*>(s4) = *reinterpret_cast<const double2*>(sn + j0);
      *reinterpret_cast<double2*>(s4 + 2) = *reinterpret_cast<const double2*>(sn + j0 + 2);
    }
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const float2 x = __bfloat1622float2(h[e]);
      h[e] = qk_pair(x.x, x.y, rn, g[2 * e], g[2 * e + 1], a.rope, c4[e], s4[e]);
      m = fmaxf(m, abs_max2(h[e]));
    }
    x8[i] = raw[k];
  }
  if (a.amax != nullptr) {
    m = block_max(m, scratch);
    if (threadIdx.x == 0) fp8_rows::atomic_max_nonneg(a.amax, m);
  }
}

template <typename From>
__global__ void to_bf16_kernel(const From* src, __nv_bfloat16* dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same_v<From, float>) {
      dst[i] = __float2bfloat16_rn(src[i]);
    } else {
      dst[i] = __float2bfloat16_rn(__half2float(src[i]));
    }
  }
}

template <typename From>
__global__ void to_f32_kernel(const From* src, float* dst, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    if constexpr (std::is_same_v<From, __nv_bfloat16>) {
      dst[i] = __bfloat162float(src[i]);
    } else {
      dst[i] = __half2float(src[i]);
    }
  }
}

__global__ void add_bf16_kernel(const __nv_bfloat16* a, const __nv_bfloat16* b, __nv_bfloat16* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __float2bfloat16_rn(bf(a[i]) + bf(b[i]));
}

// The same, 8 elements (16 bytes) a thread: n8 vectors.
__global__ void add_bf16_vec_kernel(const uint4* a, const uint4* b, uint4* out, int64_t n8) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n8;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint4 va = a[i], vb = b[i];
    uint4 vo;
    const auto* ha = reinterpret_cast<const __nv_bfloat16*>(&va);
    const auto* hb = reinterpret_cast<const __nv_bfloat16*>(&vb);
    auto* ho = reinterpret_cast<__nv_bfloat16*>(&vo);
#pragma unroll
    for (int k = 0; k < 8; ++k) ho[k] = __float2bfloat16_rn(bf(ha[k]) + bf(hb[k]));
    out[i] = vo;
  }
}

__global__ void patchify_kernel(const float* x, int64_t cx, const float* y, int64_t T, int64_t h, int64_t w,
                                int64_t F, __nv_bfloat16* tokens, int64_t n) {
  const int64_t hp = h / 2, wp = w / 2;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t s = i / F, fe = i % F;
    const int64_t c = fe / 4, p = (fe % 4) / 2, q = fe % 2;
    const int64_t f = s / (hp * wp), a = (s / wp) % hp, b = s % wp;
    const int64_t off = (f * h + 2 * a + p) * w + 2 * b + q;
    const float v = c < cx ? x[c * T * h * w + off] : y[(c - cx) * T * h * w + off];
    tokens[i] = __float2bfloat16_rn(v);
  }
}

__global__ void unpatchify_kernel(const float* out, int64_t C, int64_t T, int64_t hp, int64_t wp, float* v,
                                  int64_t n) {
  const int64_t h = 2 * hp, w = 2 * wp;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t xx = i % w, yy = (i / w) % h, f = (i / (w * h)) % T, c = i / (w * h * T);
    const int64_t a = yy / 2, p = yy % 2, b = xx / 2, q = xx % 2;
    const int64_t s = (f * hp + a) * wp + b;
    v[i] = out[s * 4 * C + (2 * p + q) * C + c];
  }
}

// [cos(t f_0) .. cos(t f_{n-1}), sin(t f_0) .. sin(t f_{n-1})], f_i = 10000^(-i/n), in double.
__global__ void sinusoid_kernel(float* out, int64_t half, double t) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < half;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const double phi = t * pow(10000.0, -(static_cast<double>(i) / static_cast<double>(half)));
    out[i] = static_cast<float>(cos(phi));
    out[half + i] = static_cast<float>(sin(phi));
  }
}

__device__ __forceinline__ uint64_t splitmix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

template <typename T>
__global__ void fill_uniform_kernel(T* p, int64_t n, uint64_t seed, float bound) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const uint64_t r = splitmix64(seed * 0x632be59bd9b4e019ull + static_cast<uint64_t>(i));
    const float u = static_cast<float>(r >> 40) * (1.0f / 16777216.0f);  // [0, 1)
    const float v = (2.0f * u - 1.0f) * bound;
    if constexpr (std::is_same_v<T, float>) {
      p[i] = v;
    } else {
      p[i] = __float2bfloat16_rn(v);
    }
  }
}

}  // namespace

Tensor to_bf16_device(const Tensor& t) {
  IB_CHECK(t.defined(), "to_bf16_device: undefined tensor");
  const Tensor src = t.device() == Device::CUDA ? t : t.to(Device::CUDA);
  if (src.dtype() == DType::BF16) return src.device() == t.device() ? src.clone() : src;
  Tensor out = Tensor::empty(src.shape(), DType::BF16, Device::CUDA);
  const int64_t n = src.numel();
  if (n == 0) return out;
  auto* dst = static_cast<__nv_bfloat16*>(out.raw());
  if (src.dtype() == DType::F32) {
    to_bf16_kernel<float><<<grid_for(n), 256>>>(static_cast<const float*>(src.raw()), dst, n);
  } else if (src.dtype() == DType::F16) {
    to_bf16_kernel<__half><<<grid_for(n), 256>>>(static_cast<const __half*>(src.raw()), dst, n);
  } else {
    fail("to_bf16_device: {} is not a float tensor", src.str());
  }
  check_launch("to_bf16");
  return out;
}

Tensor to_f32_device(const Tensor& t) {
  IB_CHECK(t.defined(), "to_f32_device: undefined tensor");
  const Tensor src = t.device() == Device::CUDA ? t : t.to(Device::CUDA);
  if (src.dtype() == DType::F32) return src.device() == t.device() ? src.clone() : src;
  Tensor out = Tensor::empty(src.shape(), DType::F32, Device::CUDA);
  const int64_t n = src.numel();
  if (n == 0) return out;
  if (src.dtype() == DType::BF16) {
    to_f32_kernel<__nv_bfloat16><<<grid_for(n), 256>>>(static_cast<const __nv_bfloat16*>(src.raw()),
                                                        out.data<float>(), n);
  } else if (src.dtype() == DType::F16) {
    to_f32_kernel<__half><<<grid_for(n), 256>>>(static_cast<const __half*>(src.raw()), out.data<float>(), n);
  } else {
    fail("to_f32_device: {} is not a float tensor", src.str());
  }
  check_launch("to_f32");
  return out;
}

void residual_norm(const ResidualNormArgs& a, cudaStream_t stream) {
  IB_CHECK(a.x != nullptr && a.out != nullptr && a.p0 != nullptr && a.p1 != nullptr,
           "residual_norm: missing x, out or norm parameters");
  IB_CHECK((a.q8 == nullptr) == (a.q8_scale == nullptr),
           "residual_norm: the fp8 copy needs both q8 and q8_scale (or neither)");
  IB_CHECK(a.q8 == nullptr || a.out_bf16, "residual_norm: the fp8 copy quantises a bf16 output, not an f32 one");
  if (a.rows == 0) return;
  IB_CHECK(a.rows <= 0x7fffffff, "residual_norm: {} rows are too many", a.rows);
  const auto aligned = [](const void* p, size_t n) { return reinterpret_cast<uintptr_t>(p) % n == 0; };
  const bool vec = a.cols % 4 == 0 && (a.y == nullptr || a.ldy % 4 == 0) && aligned(a.x, 16) &&
                   (a.y == nullptr || aligned(a.y, 8)) && (a.gate == nullptr || aligned(a.gate, 16)) &&
                   aligned(a.p0, 16) && aligned(a.p1, 16) && aligned(a.out, 16) &&
                   (a.q8 == nullptr || aligned(a.q8, 4));
  const void* kernel = vec ? reinterpret_cast<const void*>(residual_norm_kernel<4>)
                           : reinterpret_cast<const void*>(residual_norm_kernel<1>);
  row_smem(kernel, a.cols, "residual_norm");
  const size_t smem = static_cast<size_t>(a.cols) * sizeof(float);
  // About four accesses per thread, in whole warps.
  const int64_t accesses = vec ? a.cols / 4 : a.cols;
  const int threads = static_cast<int>(std::min<int64_t>(1024, std::max<int64_t>(64, (accesses / 4 + 31) / 32 * 32)));
  if (vec) {
    residual_norm_kernel<4><<<static_cast<unsigned>(a.rows), threads, smem, stream>>>(a);
  } else {
    residual_norm_kernel<1><<<static_cast<unsigned>(a.rows), threads, smem, stream>>>(a);
  }
  check_launch("residual_norm");
}

void qk_norm(const QkNormArgs& a, cudaStream_t stream) {
  IB_CHECK(a.x != nullptr && a.gamma != nullptr, "qk_norm: missing x or gamma");
  IB_CHECK(a.heads > 0 && a.cols % a.heads == 0 && (a.cols / a.heads) % 2 == 0 && a.cols / a.heads <= 2 * kMaxHalf,
           "qk_norm: {} columns do not split into {} heads of an even size up to {}", a.cols, a.heads, 2 * kMaxHalf);
  IB_CHECK(a.ld % 2 == 0 && reinterpret_cast<uintptr_t>(a.x) % 4 == 0,
           "qk_norm: rows must start on bf16 pairs (row stride {})", a.ld);
  if (a.rows == 0) return;
  IB_CHECK(a.rows <= 0x7fffffff, "qk_norm: {} rows are too many", a.rows);
  QkDev d{};
  d.x = static_cast<__nv_bfloat16*>(a.x);
  d.cols = a.cols;
  d.ld = a.ld;
  d.gamma = a.gamma;
  d.eps = a.eps;
  d.half = a.cols / a.heads / 2;
  d.rope = a.rope != nullptr;
  d.tokens = a.tokens > 0 ? a.tokens : a.rows;
  d.amax = a.amax;
  IB_CHECK(a.rows % d.tokens == 0, "qk_norm: {} rows are not whole videos of {} tokens", a.rows, d.tokens);
  if (d.rope) {
    const RopeTables& t = *a.rope;
    IB_CHECK(t.grid.frames * t.grid.height * t.grid.width == d.tokens,
             "qk_norm: RoPE grid {}x{}x{} does not match {} tokens", t.grid.frames, t.grid.height, t.grid.width,
             d.tokens);
    IB_CHECK(t.split.frames + t.split.height + t.split.width == d.half, "qk_norm: RoPE tables for another head dim");
    d.pf = t.split.frames;
    d.ph = t.split.height;
    d.pw = t.split.width;
    d.gh = t.grid.height;
    d.gw = t.grid.width;
    const int64_t nf = t.grid.frames * d.pf, nh = t.grid.height * d.ph;
    d.cf = t.cos;
    d.ch = t.cos + nf;
    d.cw = t.cos + nf + nh;
    d.sf = t.sin;
    d.sh = t.sin + nf;
    d.sw = t.sin + nf + nh;
  } else {
    d.gh = d.gw = 1;
  }
  if (a.cols % 8 == 0 && a.ld % 8 == 0 && d.half % 4 == 0 && reinterpret_cast<uintptr_t>(a.x) % 16 == 0 &&
      reinterpret_cast<uintptr_t>(a.gamma) % 16 == 0 && a.cols <= int64_t{8} * kQkThreads * kQkMaxVec) {
    qk_norm_vec_kernel<<<static_cast<unsigned>(a.rows), kQkThreads, 0, stream>>>(d);
    check_launch("qk_norm");
    return;
  }
  row_smem(reinterpret_cast<const void*>(qk_norm_kernel), a.cols, "qk_norm");
  qk_norm_kernel<<<static_cast<unsigned>(a.rows), kRowThreads, static_cast<size_t>(a.cols) * sizeof(float), stream>>>(
      d);
  check_launch("qk_norm");
}

Tensor make_rope_tables(const ops::RopeGrid& grid, int64_t head_dim, RopeTables& tables) {
  const ops::RopeSplit sp = ops::rope_split(head_dim);
  // cos/sin of pos * theta_j, theta_j = 1 / 10000^(2j / (2*pairs)), as ops::cpu::rope_3d builds them.
  std::vector<double> cs, sn;
  auto axis = [&](int64_t n, int64_t pairs) {
    const double width = static_cast<double>(2 * pairs);
    const size_t base = cs.size();
    cs.resize(base + static_cast<size_t>(n * pairs));
    sn.resize(cs.size());
    for (int64_t j = 0; j < pairs; ++j) {
      const double inv = 1.0 / std::pow(10000.0, static_cast<double>(2 * j) / width);
      for (int64_t p = 0; p < n; ++p) {
        const double angle = static_cast<double>(p) * inv;
        cs[base + static_cast<size_t>(p * pairs + j)] = std::cos(angle);
        sn[base + static_cast<size_t>(p * pairs + j)] = std::sin(angle);
      }
    }
  };
  axis(grid.frames, sp.frames);
  axis(grid.height, sp.height);
  axis(grid.width, sp.width);
  const int64_t n = static_cast<int64_t>(cs.size());
  Tensor host = Tensor::empty({2, n > 0 ? n : 1}, DType::F64);
  std::copy(cs.begin(), cs.end(), host.data<double>());
  std::copy(sn.begin(), sn.end(), host.data<double>() + host.size(1));
  Tensor dev = host.to(Device::CUDA);
  tables.cos = dev.data<double>();
  tables.sin = dev.data<double>() + host.size(1);
  tables.grid = grid;
  tables.split = sp;
  return dev;
}

void add_bf16(const void* a, const void* b, void* out, int64_t n, cudaStream_t stream) {
  if (n == 0) return;
  if (n % 8 == 0 && (reinterpret_cast<uintptr_t>(a) | reinterpret_cast<uintptr_t>(b) | reinterpret_cast<uintptr_t>(out)) % 16 == 0) {
    add_bf16_vec_kernel<<<grid_for(n / 8), 256, 0, stream>>>(static_cast<const uint4*>(a), static_cast<const uint4*>(b),
                                                             static_cast<uint4*>(out), n / 8);
    check_launch("add_bf16");
    return;
  }
  add_bf16_kernel<<<grid_for(n), 256, 0, stream>>>(static_cast<const __nv_bfloat16*>(a),
                                                   static_cast<const __nv_bfloat16*>(b),
                                                   static_cast<__nv_bfloat16*>(out), n);
  check_launch("add_bf16");
}

void patchify(const float* x, int64_t cx, const float* y, int64_t cy, int64_t T, int64_t h, int64_t w, void* tokens,
              cudaStream_t stream) {
  IB_CHECK(h % 2 == 0 && w % 2 == 0, "patchify: height {} and width {} must be even", h, w);
  IB_CHECK(cy == 0 || y != nullptr, "patchify: {} conditioning channels but no tensor", cy);
  const int64_t F = (cx + cy) * 4, n = T * (h / 2) * (w / 2) * F;
  if (n == 0) return;
  patchify_kernel<<<grid_for(n), 256, 0, stream>>>(x, cx, y, T, h, w, F, static_cast<__nv_bfloat16*>(tokens), n);
  check_launch("patchify");
}

void unpatchify(const float* out, int64_t C, int64_t T, int64_t hp, int64_t wp, float* v, cudaStream_t stream) {
  const int64_t n = C * T * 4 * hp * wp;
  if (n == 0) return;
  unpatchify_kernel<<<grid_for(n), 256, 0, stream>>>(out, C, T, hp, wp, v, n);
  check_launch("unpatchify");
}

Tensor sinusoidal_embedding_device(int64_t dim, double t, cudaStream_t stream) {
  IB_CHECK(dim > 0 && dim % 2 == 0, "sinusoidal_embedding: dim {} must be even", dim);
  Tensor e = Tensor::empty({1, dim}, DType::F32, Device::CUDA);
  sinusoid_kernel<<<grid_for(dim / 2), 256, 0, stream>>>(e.data<float>(), dim / 2, t);
  check_launch("sinusoid");
  return e;
}

void fill_uniform(const Tensor& t, uint64_t seed, float bound, cudaStream_t stream) {
  IB_CHECK(t.device() == Device::CUDA, "fill_uniform: {} is not on the device", t.str());
  const int64_t n = t.numel();
  if (n == 0) return;
  if (t.dtype() == DType::F32) {
    fill_uniform_kernel<float><<<grid_for(n), 256, 0, stream>>>(t.data<float>(), n, seed, bound);
  } else if (t.dtype() == DType::BF16) {
    fill_uniform_kernel<__nv_bfloat16><<<grid_for(n), 256, 0, stream>>>(static_cast<__nv_bfloat16*>(t.raw()), n,
                                                                        seed, bound);
  } else {
    fail("fill_uniform: {} is not f32 or bf16", t.str());
  }
  check_launch("fill_uniform");
}

}  // namespace ib::gpu
