// CUDA conv3d. Every path writes f32 [Cout, To, Ho, Wo] with the bias and the residual added:
//  * cuDNN (builds with cuDNN): the input is packed once into a zero-padded channels-last copy
//    [Tp, Hp, Wp, Cin'] (every padding, causal and one-sided ones included, becomes real zeros, so
//    cuDNN convolves unpadded), the weight into [Cout', kt, kh, kw, Cin'] (Cin', Cout' rounded up
//    to 8 with zero channels, the tensor cores' granule), cuDNN runs NDHWC, and an epilogue
//    transposes back to channel-first adding bias and residual. The algorithm is chosen once per
//    shape and cached: cuDNN's timed search for bf16, its heuristics for f32. A bf16 stride-1 conv
//    with one tap in time is timed both as 3-D and as 2-D over the frames (same buffers).
//    Activations (input, cached frames, residual, output) may be f32 or bf16 (the VAE's
//    bf16 activations): the packing reads either, the epilogue adds in f32 and writes either.
//    upsample2x_conv3d's packing reads the input at half the coordinates (nearest ×2, never stored).
//    The packing and the epilogue move 16 bytes a thread where the rows allow it (pack_input_vec,
//    unpack_output_vec), 2-4 bytes otherwise (pack_input, pack_input_norm, unpack_output).
//  * im2col + cuBLAS GEMM: tiles of output positions, y[Cout, tile] += w[Cout, K] · col[K, tile]
//    (K = Cin·kt·kh·kw). Used without cuDNN, and for shapes cuDNN offers no algorithm for.
//  * 1×1×1 without stride or padding, f32 activations: the input already is the [Cin, P] matrix,
//    one GEMM. (The GEMM path widens bf16 activations to f32 around it.)
// norm_silu_conv3d (the VAE's RMS_norm → SiLU → CausalConv3d with cached frames) takes the cuDNN
// path with a packing kernel that also concatenates the cached frames and applies the norm and SiLU,
// so the normalised input never exists in f32; elsewhere it reports false and the op composes.
// Precision follows the weight: f32 weights give exact f32 (FMA kernels and SGEMM, never TF32);
// bf16 weights round the input to bf16 and multiply on the tensor cores with f32 accumulation
// (cuDNN then rounds its output to bf16 too, as a bf16-autocast conv does).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

#include "core/cache_file.h"
#include "core/cuda_memory.h"
#include "core/log.h"
#include "ops/conv.h"
#include "ops/convert.h"
#include "ops/cuda/cuda_common.h"

#ifdef IB_CUDA_HAVE_CUDNN
#include <cudnn.h>
#endif

namespace ib::ops::cuda {

namespace {

ConvBackend g_backend = ConvBackend::Auto;

struct ConvGeom {
  int64_t Cin, T, H, W;       // input [Cin, T, H, W]
  int64_t Cout, To, Ho, Wo;   // output [Cout, To, Ho, Wo]
  int64_t kt, kh, kw;         // kernel
  int64_t st, sh, sw;         // strides
  int64_t pad_front, pad_top, pad_left;
  int64_t Tp, Hp, Wp;         // padded input extent (cuDNN path)
  int64_t Cin_p, Cout_p;      // channel counts of the packed tensors (cuDNN path)
};

template <typename T> __device__ __forceinline__ T from_f32(float v);
template <> __device__ __forceinline__ float from_f32<float>(float v) { return v; }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }
__device__ __forceinline__ float to_f32(float v) { return v; }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }

// ---------------------------------------------------------------------------------------------
// Layout kernels of the cuDNN path. Both are 32×32 tile transposes through shared memory, so the
// channel-first side and the channels-last side are each read or written in whole rows.

// An activation tensor as the layout kernels read it: f32 or bf16 (the VAE's bf16
// activations), told apart at run time by a flag that is the same for the whole grid.
struct Act {
  const void* p = nullptr;
  bool bf16 = false;
  __device__ __forceinline__ float operator[](int64_t i) const {
    return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]) : static_cast<const float*>(p)[i];
  }
  __device__ __forceinline__ Act operator+(int64_t n) const {
    return {bf16 ? static_cast<const void*>(static_cast<const __nv_bfloat16*>(p) + n)
                 : static_cast<const void*>(static_cast<const float*>(p) + n),
            bf16};
  }
};

// An f32 or bf16 device tensor (or none) as an Act.
Act act(const Tensor& t, const char* op) {
  if (!t.defined()) return {};
  IB_CHECK(t.device() == Device::CUDA && (t.dtype() == DType::F32 || t.dtype() == DType::BF16),
           "{} on CUDA: expected an f32 or bf16 device tensor, got {}", op, t.str());
  return {t.raw(), t.dtype() == DType::BF16};
}

// The conv's input frames: frames 0 .. t_prefix-1 come from the cached frames, in up to two parts
// prefix[i] [Cin, prefix_t[i], H, W] (oldest first), the rest from x [Cin, T - t_prefix, H, W].
// With gamma, the packing applies RMS_norm (over the channels, ·√C·γ) and SiLU. With up = 1 the
// sources hold frames of H/2 × W/2 and the conv sees them nearest-upsampled ×2: pixel (h, w) reads
// (h/2, w/2).
struct InputSource {
  Act x;
  Act prefix[2];
  int64_t prefix_t[2] = {0, 0};
  int64_t t_prefix = 0;  // prefix_t[0] + prefix_t[1]
  const float* gamma = nullptr;
  float scale = 1.0f;  // √Cin
  int up = 0;          // 0, or 1 for the fused nearest ×2
};

// Row (c = 0, t, h) of the input frames (add c·channel_stride + (w >> s.up)); t in [0, T).
__device__ __forceinline__ Act source_row(const InputSource& s, const ConvGeom& g, int64_t t, int64_t h,
                                          int64_t* channel_stride) {
  const int64_t Hs = g.H >> s.up, Ws = g.W >> s.up, hs = h >> s.up;
  if (t < s.t_prefix) {
    const bool first = t < s.prefix_t[0];  // selects, not indexes: the parameters stay out of local memory
    const int64_t tt = first ? t : t - s.prefix_t[0];
    *channel_stride = (first ? s.prefix_t[0] : s.prefix_t[1]) * Hs * Ws;
    return (first ? s.prefix[0] : s.prefix[1]) + (tt * Hs + hs) * Ws;
  }
  *channel_stride = (g.T - s.t_prefix) * Hs * Ws;
  return s.x + ((t - s.t_prefix) * Hs + hs) * Ws;
}

// input [Cin, T, H, W] f32 -> xp [Tp, Hp, Wp, Cin_p] with the paddings (and the extra channels)
// zero. Grid: (Wp tiles, Cin_p tiles, padded rows tp·Hp + hp, strided); block 32×8.
template <typename T>
__global__ void pack_input(InputSource s, T* __restrict__ xp, ConvGeom g) {
  __shared__ float tile[32][33];
  const int64_t wp0 = static_cast<int64_t>(blockIdx.x) * 32, c0 = static_cast<int64_t>(blockIdx.y) * 32;
  for (int64_t row = blockIdx.z; row < g.Tp * g.Hp; row += gridDim.z) {
    const int64_t tp = row / g.Hp, hp = row % g.Hp;
    const int64_t t = tp - g.pad_front, h = hp - g.pad_top;
    const bool row_in = t >= 0 && t < g.T && h >= 0 && h < g.H;
    int64_t cs = 0;
    const Act src = row_in ? source_row(s, g, t, h, &cs) : Act{};
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
      const int64_t c = c0 + i, w = wp0 + threadIdx.x - g.pad_left;
      float v = 0.0f;
      if (row_in && c < g.Cin && w >= 0 && w < g.W) v = src[c * cs + (w >> s.up)];
      tile[i][threadIdx.x] = v;
    }
    __syncthreads();
    for (int i = threadIdx.y; i < 32; i += blockDim.y) {
      const int64_t wp = wp0 + i, c = c0 + threadIdx.x;
      if (wp < g.Wp && c < g.Cin_p) xp[((tp * g.Hp + hp) * g.Wp + wp) * g.Cin_p + c] = from_f32<T>(tile[threadIdx.x][i]);
    }
    __syncthreads();
  }
}

// The same packing with RMS_norm + SiLU: a block owns 32 positions of one padded row and all Cin
// channels (kept in shared memory, [Cin][33] so that both passes are free of bank conflicts), reads
// them once in rows of 32 consecutive floats, normalises each position and writes its Cin_p values
// contiguously. Padding positions stay zero, as upstream pads after the norm. Grid: (padded rows,
// Wp tiles); block 32×8; dynamic shared memory norm_pack_smem(Cin).
constexpr int64_t kNormPackMaxChannels = 1024;
size_t norm_pack_smem(int64_t cin) { return static_cast<size_t>(cin * 33 + 8 * 32 + 32) * sizeof(float); }

template <typename T>
__global__ void pack_input_norm(InputSource s, T* __restrict__ xp, ConvGeom g) {
  extern __shared__ float smem[];
  float* cache = smem;                      // [Cin][33]
  float* partial = smem + g.Cin * 33;       // [8][32]
  float* denom = partial + 8 * 32;          // [32]
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t row = blockIdx.x, wp0 = static_cast<int64_t>(blockIdx.y) * 32;
  const int64_t tp = row / g.Hp, hp = row % g.Hp;
  const int64_t t = tp - g.pad_front, h = hp - g.pad_top;
  const int64_t npos = min(static_cast<int64_t>(32), g.Wp - wp0);
  T* out = xp + (row * g.Wp + wp0) * g.Cin_p;  // npos · Cin_p contiguous values
  if (t < 0 || t >= g.T || h < 0 || h >= g.H) {
    for (int64_t i = ty * 32 + tx; i < npos * g.Cin_p; i += 32 * 8) out[i] = from_f32<T>(0.0f);
    return;
  }
  int64_t cs = 0;
  const Act src = source_row(s, g, t, h, &cs);
  const int64_t w = wp0 + tx - g.pad_left;
  const bool in = w >= 0 && w < g.W;
  float ss = 0.0f;
  for (int64_t c = ty; c < g.Cin; c += 8) {
    const float v = in ? src[c * cs + (w >> s.up)] : 0.0f;
    cache[c * 33 + tx] = v;
    ss += v * v;
  }
  partial[ty * 32 + tx] = ss;
  __syncthreads();
  if (ty == 0) {
    float total = 0.0f;
#pragma unroll
    for (int r = 0; r < 8; ++r) total += partial[r * 32 + tx];
    denom[tx] = fmaxf(sqrtf(total), 1e-12f);  // F.normalize: x / max(‖x‖, eps), then · √C · γ
  }
  __syncthreads();
  for (int64_t i = ty; i < npos; i += 8) {
    const int64_t wi = wp0 + i - g.pad_left;
    const bool col_in = wi >= 0 && wi < g.W;
    const float d = denom[i];
    for (int64_t c = tx; c < g.Cin_p; c += 32) {
      float o = 0.0f;
      if (col_in && c < g.Cin) {
        o = cache[c * 33 + i] / d * s.scale * s.gamma[c];
        o = o / (1.0f + expf(-o));
      }
      out[i * g.Cin_p + c] = from_f32<T>(o);
    }
  }
}

// ---- The packing and the epilogue with 16-byte accesses (the common case) ---------------------
// The kernels above move 2 or 4 bytes a thread and reached 0.6-1.1 TB/s at the decoder's shapes
// (bench/NOTES.md version 19); these move 16. They need every source row to start on 16 bytes
// (the width, at the source's resolution, a multiple of 8) and at most kVecMaxChannels channels;
// vec_pack_ok() checks, and the kernels above take the rest. Same arithmetic, element for element,
// but for the norm's division and the SiLU's exponential (the hardware's approximations here).

constexpr int64_t kVecMaxChannels = 512;

template <typename E> constexpr int kPerVec = 16 / static_cast<int>(sizeof(E));

template <typename E> __device__ __forceinline__ void from_vec(const uint4& v, float* out) {
  if constexpr (sizeof(E) == 4) {
    out[0] = __uint_as_float(v.x), out[1] = __uint_as_float(v.y), out[2] = __uint_as_float(v.z), out[3] = __uint_as_float(v.w);
  } else {
    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      out[2 * i] = __uint_as_float(w[i] << 16);
      out[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
    }
  }
}

template <typename E> __device__ __forceinline__ uint4 to_vec(const float* in) {
  if constexpr (sizeof(E) == 4) {
    return make_uint4(__float_as_uint(in[0]), __float_as_uint(in[1]), __float_as_uint(in[2]), __float_as_uint(in[3]));
  } else {
    uint32_t w[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const __nv_bfloat162 h = __floats2bfloat162_rn(in[2 * i], in[2 * i + 1]);
      w[i] = *reinterpret_cast<const uint32_t*>(&h);
    }
    return make_uint4(w[0], w[1], w[2], w[3]);
  }
}

// N consecutive elements from p (aligned to N elements) as floats: 8, 16 or 32 bytes.
template <typename E, int N> __device__ __forceinline__ void load_elems(const E* p, float* out) {
  if constexpr (N * sizeof(E) >= 16) {
#pragma unroll
    for (int k = 0; k < N; k += kPerVec<E>) from_vec<E>(*reinterpret_cast<const uint4*>(p + k), out + k);
  } else {
    static_assert(N * sizeof(E) == 8, "load_elems: 8, 16 or 32 bytes");
    const uint2 v = *reinterpret_cast<const uint2*>(p);
    float both[8];
    from_vec<E>(make_uint4(v.x, v.y, 0, 0), both);
#pragma unroll
    for (int k = 0; k < N; ++k) out[k] = both[k];
  }
}

size_t vec_pack_smem(int64_t cin, int cols) {
  return static_cast<size_t>(cin * (cols + 1) + 9 * cols) * sizeof(float);
}

// Zeros [begin, end) of a channels-last row segment, 16 bytes a store (both ends multiples of the
// vector: Cin_p is a multiple of 8).
template <typename T> __device__ __forceinline__ void zero_vec(T* out, int64_t begin, int64_t end) {
  uint4* o = reinterpret_cast<uint4*>(out);
  for (int64_t i = begin / kPerVec<T> + threadIdx.y * 32 + threadIdx.x; i < end / kPerVec<T>; i += 256)
    o[i] = make_uint4(0, 0, 0, 0);
}

// pack_input / pack_input_norm with 16-byte accesses. A block takes kCols input columns
// [w0, w0 + kCols) of one padded row (tp, hp) and all Cin channels: it loads them into shared
// memory ([Cin][kCols + 1] f32, so that the per-position reads are free of bank conflicts), with
// kNorm computes each position's RMS norm, and writes the positions' Cin_p values channels-last at
// wp = w + pad_left. The first column tile also writes the left padding columns, the last one the
// right padding; rows outside the input are zeros. TIn: the sources' element (all parts the same),
// T: the packed element. Grid: (padded rows, column tiles); block 32×8; dynamic shared memory
// vec_pack_smem(Cin, kCols). Indices are 32-bit inside a row (the caller checks the sizes).
template <typename TIn, typename T, bool kNorm, int kCols>
__global__ void pack_input_vec(InputSource s, T* __restrict__ xp, ConvGeom g) {
  constexpr int kStride = kCols + 1;
  extern __shared__ float smem[];
  float* cache = smem;                             // [Cin][kStride]
  float* partial = smem + g.Cin * kStride;         // [8][kCols]
  float* denom = partial + 8 * kCols;              // [kCols]
  const int tx = threadIdx.x, ty = threadIdx.y, tid = ty * 32 + tx;
  const int cin = static_cast<int>(g.Cin), cin_p = static_cast<int>(g.Cin_p);
  const int64_t row = blockIdx.x;
  const int w0 = static_cast<int>(blockIdx.y) * kCols;
  const int64_t tp = row / g.Hp, hp = row % g.Hp;
  const int64_t t = tp - g.pad_front, h = hp - g.pad_top;
  T* out_row = xp + row * g.Wp * g.Cin_p;
  const bool first_tile = blockIdx.y == 0, last_tile = blockIdx.y + 1 == gridDim.y;
  // This block's output columns: [wp_begin, wp_end).
  const int64_t wp_begin = first_tile ? 0 : w0 + g.pad_left;
  const int64_t wp_end = min(g.Wp, last_tile ? g.Wp : w0 + kCols + g.pad_left);
  if (t < 0 || t >= g.T || h < 0 || h >= g.H) {
    zero_vec(out_row, wp_begin * g.Cin_p, wp_end * g.Cin_p);
    return;
  }
  if (first_tile) zero_vec(out_row, 0, min(g.pad_left, g.Wp) * g.Cin_p);
  if (last_tile) zero_vec(out_row, min(g.W + g.pad_left, g.Wp) * g.Cin_p, g.Wp * g.Cin_p);

  int64_t cs = 0;
  const Act src_act = source_row(s, g, t, h, &cs);
  const TIn* src = static_cast<const TIn*>(src_act.p);
  // The source columns of the tile: [w0, w0 + kCols) at full resolution, half that with up.
  const int sw0 = w0 >> s.up, sw_end = static_cast<int>(min(g.W >> s.up, static_cast<int64_t>((w0 + kCols) >> s.up)));
  const int vec_shift = (s.up ? (kCols == 64 ? 5 : 4) : (kCols == 64 ? 6 : 5)) - (sizeof(TIn) == 2 ? 3 : 2);
  const int vecs_per_row = 1 << vec_shift;  // (kCols >> up) / kPerVec<TIn>: a power of two
  for (int i = tid; i < cin * vecs_per_row; i += 256) {
    const int c = i >> vec_shift, v = i & (vecs_per_row - 1);
    const int sw = sw0 + v * kPerVec<TIn>;
    float vals[kPerVec<TIn>];
    if (sw < sw_end) {
      from_vec<TIn>(*reinterpret_cast<const uint4*>(src + c * cs + sw), vals);
    } else {
#pragma unroll
      for (int j = 0; j < kPerVec<TIn>; ++j) vals[j] = 0.0f;
    }
    float* dst = cache + c * kStride + ((sw - sw0) << s.up);
#pragma unroll
    for (int j = 0; j < kPerVec<TIn>; ++j) {
      dst[j << s.up] = vals[j];
      if (s.up) dst[(j << 1) + 1] = vals[j];
    }
  }
  __syncthreads();
  if constexpr (kNorm) {
#pragma unroll
    for (int part = 0; part < kCols; part += 32) {
      float ss = 0.0f;
      for (int c = ty; c < cin; c += 8) {
        const float v = cache[c * kStride + part + tx];
        ss += v * v;
      }
      partial[ty * kCols + part + tx] = ss;
    }
    __syncthreads();
    if (ty < kCols / 32) {
      const int lp = ty * 32 + tx;
      float total = 0.0f;
#pragma unroll
      for (int r = 0; r < 8; ++r) total += partial[r * kCols + lp];
      denom[lp] = fmaxf(sqrtf(total), 1e-12f);  // F.normalize: x / max(‖x‖, eps), then · √C · γ
    }
    __syncthreads();
  }
  // Each warp writes 8 positions × 4 vectors a step (lane = position · 4 + vector): 64 contiguous
  // bytes per position, and shared-memory reads spread over all 32 banks.
  const int n_pos = static_cast<int>(min(static_cast<int64_t>(kCols), g.W - w0));
  const int vecs = cin_p / kPerVec<T>;  // vectors per position
  const int groups = (vecs + 3) / 4;
  const int lp_in = tx >> 2, q = tx & 3;
  for (int item = ty; item < (kCols / 8) * groups; item += 8) {
    const int lp = (item % (kCols / 8)) * 8 + lp_in, vec = (item / (kCols / 8)) * 4 + q;
    if (lp >= n_pos || vec >= vecs) continue;
    const int64_t wp = w0 + lp + g.pad_left;
    if (wp >= g.Wp) continue;
    float o[kPerVec<T>];
    float inv_denom = 0.0f;
    if constexpr (kNorm) inv_denom = denom[lp];
#pragma unroll
    for (int j = 0; j < kPerVec<T>; ++j) {
      const int c = vec * kPerVec<T> + j;
      float v = 0.0f;
      if (c < cin) {
        v = cache[c * kStride + lp];
        if constexpr (kNorm) {
          // The hardware's approximate division and exponential (2 ulp): the IEEE ones made
          // the arithmetic, not the memory, this kernel's bound (0.86 -> 0.84 s a 480p decode).
          v = __fdividef(v, inv_denom) * s.scale * s.gamma[c];
          v = __fdividef(v, 1.0f + __expf(-v));
        }
      }
      o[j] = v;
    }
    reinterpret_cast<uint4*>(out_row + wp * g.Cin_p)[vec] = to_vec<T>(o);
  }
}

// unpack_output with 16-byte accesses: a block takes 64 positions × 64 channels, reads them
// channels-last a vector at a time into shared memory ([64][65] f32), and writes each channel's 64
// positions (with bias and residual) a vector at a time. Needs P a multiple of 8. Grid: (position
// tiles, channel tiles); block 256.
template <typename T, typename TR, typename TY>
__global__ void unpack_output_vec(const T* __restrict__ yp, const float* __restrict__ bias, const TR* residual,
                                  TY* __restrict__ y, ConvGeom g) {
  __shared__ float tile[64][65];
  const int64_t P = g.To * g.Ho * g.Wo;
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * 64, c0 = static_cast<int64_t>(blockIdx.y) * 64;
  constexpr int kIn = kPerVec<T>, kOut = kPerVec<TY>;
  const int tid = threadIdx.x;
  for (int i = tid; i < 64 * (64 / kIn); i += 256) {
    const int pl = i / (64 / kIn), cl = (i % (64 / kIn)) * kIn;
    const int64_t p = p0 + pl, c = c0 + cl;
    float v[kIn];
    if (p < P && c < g.Cout_p) {
      from_vec<T>(*reinterpret_cast<const uint4*>(yp + p * g.Cout_p + c), v);
    } else {
#pragma unroll
      for (int j = 0; j < kIn; ++j) v[j] = 0.0f;
    }
#pragma unroll
    for (int j = 0; j < kIn; ++j) tile[cl + j][pl] = v[j];
  }
  __syncthreads();
  for (int i = tid; i < 64 * (64 / kOut); i += 256) {
    const int cl = i / (64 / kOut), pl = (i % (64 / kOut)) * kOut;
    const int64_t c = c0 + cl, p = p0 + pl;
    if (c >= g.Cout || p >= P) continue;
    float v[kOut], r[kOut];
    if (residual != nullptr) load_elems<TR, kOut>(residual + c * P + p, r);
    const float b = bias != nullptr ? bias[c] : 0.0f;
#pragma unroll
    for (int j = 0; j < kOut; ++j) {
      v[j] = tile[cl][pl + j];
      if (bias != nullptr) v[j] += b;
      if (residual != nullptr) v[j] += r[j];
    }
    *reinterpret_cast<uint4*>(y + c * P + p) = to_vec<TY>(v);
  }
}

// yp [To, Ho, Wo, Cout_p] -> y [Cout, To, Ho, Wo] (f32, or bf16 with y_bf16), plus bias[c] and
// residual (f32 or bf16), added in f32. Grid: (position tiles, Cout tiles); block 32×8.
template <typename T>
__global__ void unpack_output(const T* __restrict__ yp, const float* __restrict__ bias, Act residual, void* y,
                              bool y_bf16, ConvGeom g) {
  __shared__ float tile[32][33];
  const int64_t P = g.To * g.Ho * g.Wo;
  const int64_t p0 = static_cast<int64_t>(blockIdx.x) * 32, c0 = static_cast<int64_t>(blockIdx.y) * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t p = p0 + i, c = c0 + threadIdx.x;
    tile[i][threadIdx.x] = (p < P && c < g.Cout) ? to_f32(yp[p * g.Cout_p + c]) : 0.0f;
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t c = c0 + i, p = p0 + threadIdx.x;
    if (c >= g.Cout || p >= P) continue;
    float v = tile[threadIdx.x][i];
    if (bias != nullptr) v += bias[c];
    if (residual.p != nullptr) v += residual[c * P + p];
    if (y_bf16) {
      static_cast<__nv_bfloat16*>(y)[c * P + p] = __float2bfloat16_rn(v);
    } else {
      static_cast<float*>(y)[c * P + p] = v;
    }
  }
}

// w [Cout, Cin, kt, kh, kw] -> wp [Cout_p, kt, kh, kw, Cin_p], zero outside the real channels.
template <typename Tin, typename T>
__global__ void pack_weight(const Tin* __restrict__ w, T* __restrict__ wp, ConvGeom g) {
  const int64_t taps = g.kt * g.kh * g.kw, n = g.Cout_p * taps * g.Cin_p;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t ci = i % g.Cin_p, r = i / g.Cin_p, tap = r % taps, co = r / taps;
    const float v = (co < g.Cout && ci < g.Cin) ? to_f32(w[(co * g.Cin + ci) * taps + tap]) : 0.0f;
    wp[i] = from_f32<T>(v);
  }
}

// ---------------------------------------------------------------------------------------------
// Kernels of the GEMM path.

// y[c, p] = residual[c, p] + bias[c] (either may be absent): the GEMMs accumulate onto it.
__global__ void fill_bias_residual(const float* __restrict__ bias, const float* __restrict__ residual,
                                   float* __restrict__ y, int64_t P, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float b = bias != nullptr ? bias[i / P] : 0.0f;
    y[i] = residual != nullptr ? residual[i] + b : b;
  }
}

// col[k, j] for output positions p0 + j, j < np (p = (to·Ho + oy)·Wo + ox; k = ((ci·kt + dt)·kh +
// dy)·kw + dx, the weight's own order).
template <typename T>
__global__ void im2col(const float* __restrict__ x, T* __restrict__ col, ConvGeom g, int64_t p0, int64_t np) {
  const int64_t K = g.Cin * g.kt * g.kh * g.kw, n = K * np;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t j = i % np, k = i / np, p = p0 + j;
    const int64_t ox = p % g.Wo, r = p / g.Wo, oy = r % g.Ho, to = r / g.Ho;
    const int64_t dx = k % g.kw, dy = (k / g.kw) % g.kh, dt = (k / (g.kw * g.kh)) % g.kt, ci = k / (g.kw * g.kh * g.kt);
    const int64_t ti = to * g.st + dt - g.pad_front, iy = oy * g.sh + dy - g.pad_top, ix = ox * g.sw + dx - g.pad_left;
    float v = 0.0f;
    if (ti >= 0 && ti < g.T && iy >= 0 && iy < g.H && ix >= 0 && ix < g.W) v = x[((ci * g.T + ti) * g.H + iy) * g.W + ix];
    col[i] = from_f32<T>(v);
  }
}

const float* optional_f32(const Tensor& t) { return t.defined() ? dev_f32(t, "conv3d") : nullptr; }

int to_int(int64_t v, const char* what) {
  IB_CHECK(v >= 0 && v <= 0x7fffffff, "conv3d on CUDA: {} = {} is too large", what, v);
  return static_cast<int>(v);
}

// y[Cout, p0 .. p0+np) (row stride P) += w[Cout, K] · a[K, np] (row stride lda), in f32 or with
// bf16 operands (a and w both bf16) and f32 accumulation.
void gemm_accumulate(const void* a, int64_t lda, const Tensor& w, bool bf16, int64_t np, int64_t K, float* y,
                     int64_t P) {
  const float one = 1.0f;
  const int64_t Cout = w.size(0);
  // Column-major view: y^T[np, Cout] (ld P) += a^T[np, K] (ld lda) · w^T[K, Cout] (ld K).
  if (!bf16) {
    check_cublas(cublasSgemm(cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, to_int(np, "tile"), to_int(Cout, "Cout"),
                             to_int(K, "K"), &one, static_cast<const float*>(a), to_int(lda, "lda"), w.data<float>(),
                             to_int(K, "K"), &one, y, to_int(P, "positions")),
                 "cublasSgemm (conv3d)");
  } else {
    check_cublas(cublasGemmEx(cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, to_int(np, "tile"), to_int(Cout, "Cout"),
                              to_int(K, "K"), &one, a, CUDA_R_16BF, to_int(lda, "lda"), w.raw(), CUDA_R_16BF,
                              to_int(K, "K"), &one, y, CUDA_R_32F, to_int(P, "positions"), CUBLAS_COMPUTE_32F,
                              CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (conv3d, bf16)");
  }
}

// The GEMM path (and the 1×1×1 shortcut). The weight's dtype picks the precision.
void conv_gemm(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& residual, const Tensor& y,
               const ConvGeom& g, bool pointwise) {
  const bool bf16 = w.dtype() == DType::BF16;
  const int64_t P = g.To * g.Ho * g.Wo, K = g.Cin * g.kt * g.kh * g.kw;
  float* yp = dev_f32(y, "conv3d");
  fill_bias_residual<<<blocks_for(g.Cout * P), 256>>>(optional_f32(b), optional_f32(residual), yp, P, g.Cout * P);
  check_launch("fill_bias_residual");
  if (K == 0) return;
  const float* xp = dev_f32(x, "conv3d");
  if (pointwise) {  // the input is the [Cin, P] matrix already
    if (!bf16) return gemm_accumulate(xp, P, w, false, P, K, yp, P);
    const Tensor xb = Tensor::empty({K, P}, DType::BF16, Device::CUDA);
    convert_f32_to_bf16(xp, xb.raw(), K * P);
    return gemm_accumulate(xb.raw(), P, w, true, P, K, yp, P);
  }
  constexpr int64_t kColBudget = int64_t{128} << 20;  // elements of the col buffer
  const int64_t tile = std::clamp<int64_t>(kColBudget / K, 1, P);
  const Tensor col = Tensor::empty({K, tile}, bf16 ? DType::BF16 : DType::F32, Device::CUDA);
  for (int64_t p0 = 0; p0 < P; p0 += tile) {
    const int64_t np = std::min(tile, P - p0);
    if (bf16) {
      im2col<<<blocks_for(K * np), 256>>>(xp, static_cast<__nv_bfloat16*>(col.raw()), g, p0, np);
    } else {
      im2col<<<blocks_for(K * np), 256>>>(xp, col.data<float>(), g, p0, np);
    }
    check_launch("im2col");
    gemm_accumulate(col.raw(), np, w, bf16, np, K, yp + p0, P);
  }
}

// conv_gemm for any activation dtypes: bf16 inputs are widened to f32 first and a bf16 output is
// computed in f32 and rounded (the GEMM path is the fallback; the VAE's bf16 activations take
// cuDNN).
void conv_gemm_any(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& residual, const Tensor& y,
                   const ConvGeom& g, bool pointwise) {
  const Tensor x32 = to_dtype(x, DType::F32), r32 = to_dtype(residual, DType::F32);
  const Tensor y32 = y.dtype() == DType::F32 ? y : Tensor::empty(y.shape(), DType::F32, Device::CUDA);
  conv_gemm(x32, w, b, r32, y32, g, pointwise);
  if (y.dtype() != DType::F32) convert_dtype(y32, y);
}

// ---------------------------------------------------------------------------------------------
// The cuDNN path.

#ifdef IB_CUDA_HAVE_CUDNN

void check_cudnn(cudnnStatus_t s, const char* what) {
  IB_CHECK(s == CUDNN_STATUS_SUCCESS, "cuDNN error in {}: {}", what, cudnnGetErrorString(s));
}

cudnnHandle_t cudnn_handle() {
  thread_local cudnnHandle_t h = [] {
    cudnnHandle_t handle = nullptr;
    check_cudnn(cudnnCreate(&handle), "cudnnCreate");
    return handle;
  }();
  return h;
}

struct Descriptors {
  cudnnTensorDescriptor_t x = nullptr, y = nullptr;
  cudnnFilterDescriptor_t w = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;

  // as_2d (kt = 1 and stride_t = 1 only): the same buffers described as a 2-D conv over Tp images:
  // [Tp, Hp, Wp, Cin_p] is NHWC with N = Tp, the weight [Cout_p, 1, kh, kw, Cin_p] is KRSC, the
  // output [To = Tp, Ho, Wo, Cout_p] NHWC. Same arithmetic; cuDNN's 2-D kernels are sometimes faster.
  Descriptors(const ConvGeom& g, cudnnDataType_t dt, bool as_2d = false) {
    check_cudnn(cudnnCreateTensorDescriptor(&x), "cudnnCreateTensorDescriptor");
    check_cudnn(cudnnCreateTensorDescriptor(&y), "cudnnCreateTensorDescriptor");
    check_cudnn(cudnnCreateFilterDescriptor(&w), "cudnnCreateFilterDescriptor");
    check_cudnn(cudnnCreateConvolutionDescriptor(&conv), "cudnnCreateConvolutionDescriptor");
    if (as_2d) {
      IB_CHECK(g.kt == 1 && g.st == 1 && g.To == g.Tp, "conv3d on CUDA: a 2-D description needs kt = 1, stride_t = 1");
      const int xd[4] = {to_int(g.Tp, "T"), to_int(g.Cin_p, "Cin"), to_int(g.Hp, "H"), to_int(g.Wp, "W")};
      const int wd[4] = {to_int(g.Cout_p, "Cout"), to_int(g.Cin_p, "Cin"), to_int(g.kh, "kh"), to_int(g.kw, "kw")};
      const int yd[4] = {to_int(g.To, "To"), to_int(g.Cout_p, "Cout"), to_int(g.Ho, "Ho"), to_int(g.Wo, "Wo")};
      const int pad[2] = {0, 0}, stride[2] = {to_int(g.sh, "stride"), to_int(g.sw, "stride")}, dilation[2] = {1, 1};
      check_cudnn(cudnnSetTensorNdDescriptorEx(x, CUDNN_TENSOR_NHWC, dt, 4, xd),
                  "cudnnSetTensorNdDescriptorEx (x, 2-D)");
      check_cudnn(cudnnSetFilterNdDescriptor(w, dt, CUDNN_TENSOR_NHWC, 4, wd), "cudnnSetFilterNdDescriptor (2-D)");
      check_cudnn(cudnnSetTensorNdDescriptorEx(y, CUDNN_TENSOR_NHWC, dt, 4, yd),
                  "cudnnSetTensorNdDescriptorEx (y, 2-D)");
      check_cudnn(cudnnSetConvolutionNdDescriptor(conv, 2, pad, stride, dilation, CUDNN_CROSS_CORRELATION,
                                                  CUDNN_DATA_FLOAT),
                  "cudnnSetConvolutionNdDescriptor (2-D)");
      int out[4] = {};
      check_cudnn(cudnnGetConvolutionNdForwardOutputDim(conv, x, w, 4, out), "cudnnGetConvolutionNdForwardOutputDim");
      IB_CHECK(std::equal(out, out + 4, yd), "conv3d on CUDA: cuDNN's 2-D output {}x{}x{}x{} differs from {}x{}x{}x{}",
               out[0], out[1], out[2], out[3], yd[0], yd[1], yd[2], yd[3]);
      return;
    }
    // Dimensions in NCDHW order; the NHWC format makes the layout [N, D, H, W, C].
    const int xd[5] = {1, to_int(g.Cin_p, "Cin"), to_int(g.Tp, "T"), to_int(g.Hp, "H"), to_int(g.Wp, "W")};
    const int wd[5] = {to_int(g.Cout_p, "Cout"), to_int(g.Cin_p, "Cin"), to_int(g.kt, "kt"), to_int(g.kh, "kh"),
                       to_int(g.kw, "kw")};
    const int yd[5] = {1, to_int(g.Cout_p, "Cout"), to_int(g.To, "To"), to_int(g.Ho, "Ho"), to_int(g.Wo, "Wo")};
    const int pad[3] = {0, 0, 0}, stride[3] = {to_int(g.st, "stride"), to_int(g.sh, "stride"), to_int(g.sw, "stride")},
              dilation[3] = {1, 1, 1};
    check_cudnn(cudnnSetTensorNdDescriptorEx(x, CUDNN_TENSOR_NHWC, dt, 5, xd), "cudnnSetTensorNdDescriptorEx (x)");
    check_cudnn(cudnnSetFilterNdDescriptor(w, dt, CUDNN_TENSOR_NHWC, 5, wd), "cudnnSetFilterNdDescriptor");
    check_cudnn(cudnnSetTensorNdDescriptorEx(y, CUDNN_TENSOR_NHWC, dt, 5, yd), "cudnnSetTensorNdDescriptorEx (y)");
    check_cudnn(cudnnSetConvolutionNdDescriptor(conv, 3, pad, stride, dilation, CUDNN_CROSS_CORRELATION,
                                                CUDNN_DATA_FLOAT),
                "cudnnSetConvolutionNdDescriptor");
    int out[5] = {};
    check_cudnn(cudnnGetConvolutionNdForwardOutputDim(conv, x, w, 5, out), "cudnnGetConvolutionNdForwardOutputDim");
    IB_CHECK(std::equal(out, out + 5, yd), "conv3d on CUDA: cuDNN's output {}x{}x{}x{} differs from {}x{}x{}x{}", out[1],
             out[2], out[3], out[4], yd[1], yd[2], yd[3], yd[4]);
  }
  ~Descriptors() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyTensorDescriptor(x);
  }
  Descriptors(const Descriptors&) = delete;
  Descriptors& operator=(const Descriptors&) = delete;
};

struct Plan {
  bool ok = false;
  bool as_2d = false;  // run through the 2-D description (Descriptors)
  cudnnConvolutionFwdAlgo_t algo = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  cudnnMathType_t math = CUDNN_FMA_MATH;
  size_t workspace = 0;
  float ms = 0.0f;  // cuDNN's timing of it (bf16 search only)
  int64_t cout_p = 0;  // the output channels it computes (ConvGeom::Cout_p, or more: see plan_for)
};

// The GEMM-like algorithms only: FFT and Winograd trade accuracy for speed.
bool allowed_algo(cudnnConvolutionFwdAlgo_t a) {
  return a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || a == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
         a == CUDNN_CONVOLUTION_FWD_ALGO_GEMM;
}

using PlanKey = std::array<int64_t, 12>;
std::mutex g_plans_mutex;
std::map<PlanKey, Plan> g_plans;
int64_t g_searches = 0;  // plan_for's searches in this process (conv_plan_searches)

// ---- Plans kept across processes ----------------------------------------------------------------
// cuDNN's timed search costs ~1 s in a 480p decode's first run (once per conv shape per process,
// bench_vae_gpu's "first run"). The bf16 plans found are kept in <cache_dir>/cudnn-conv-plans.txt
// (core/cache_file.h), under a header naming the GPU, its compute capability and the cuDNN version
// (a file from another GPU or cuDNN is ignored and replaced), one line per shape and output-padding
// mode; a later process takes its plans from there instead of searching. A kept plan whose
// workspace would not fit what the device (or the --vram-budget) has now is searched again.
struct DiskPlans {
  bool loaded = false;
  std::string path, header;
  std::map<std::pair<int, PlanKey>, Plan> plans;  // (ConvOutputPadding, shape)
};
DiskPlans g_disk;  // under g_plans_mutex

std::string plans_header() {
  cudaDeviceProp prop{};
  int device = 0;
  if (cudaGetDevice(&device) != cudaSuccess || cudaGetDeviceProperties(&prop, device) != cudaSuccess) return "";
  return fmt::format("inbetween cudnn conv plans v1 | {} | sm {}.{} | cudnn {}", prop.name, prop.major, prop.minor,
                     cudnnGetVersion());
}

void load_disk_plans_locked() {
  if (g_disk.loaded) return;
  g_disk.loaded = true;
  const std::string dir = ::ib::cache_dir();
  g_disk.header = plans_header();
  if (dir.empty() || g_disk.header.empty()) return;
  g_disk.path = dir + "/cudnn-conv-plans.txt";
  const std::vector<std::string> lines = read_cache_lines(g_disk.path);
  if (lines.empty() || lines[0] != g_disk.header) return;
  for (size_t i = 1; i < lines.size(); ++i) {
    std::istringstream in(lines[i]);
    int mode = 0, ok = 0, as_2d = 0, algo = 0, math = 0;
    PlanKey key{};
    Plan p;
    in >> mode;
    for (int64_t& k : key) in >> k;
    in >> ok >> as_2d >> algo >> math >> p.workspace >> p.ms >> p.cout_p;
    // Only what a search can produce (an edited or damaged line is searched again, never run): an
    // allowed algorithm, a math type cuDNN knows, the output channels of cout_candidates, a 2-D
    // description only where the conv has one tap and no stride in time.
    const bool math_ok = math == CUDNN_DEFAULT_MATH || math == CUDNN_TENSOR_OP_MATH ||
                         math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION || math == CUDNN_FMA_MATH;
    const bool cout_ok = p.cout_p >= key[2] && p.cout_p % 8 == 0 && p.cout_p <= std::max<int64_t>(64, 2 * key[2]);
    const bool as_2d_ok = as_2d == 0 || (key[3] == 1 && key[6] == 1);
    if (!in || mode < 0 || mode > 2 || algo < 0 || algo >= CUDNN_CONVOLUTION_FWD_ALGO_COUNT ||
        !allowed_algo(static_cast<cudnnConvolutionFwdAlgo_t>(algo)) || !math_ok || !cout_ok || !as_2d_ok) {
      spdlog::debug("conv3d: line {} of '{}' is not a plan; ignored", i + 1, g_disk.path);
      continue;
    }
    p.ok = ok != 0;
    p.as_2d = as_2d != 0;
    p.algo = static_cast<cudnnConvolutionFwdAlgo_t>(algo);
    p.math = static_cast<cudnnMathType_t>(math);
    g_disk.plans[{mode, key}] = p;
  }
  spdlog::debug("conv3d: {} cuDNN plans read from '{}'", g_disk.plans.size(), g_disk.path);
}

void save_disk_plans_locked() {
  if (g_disk.path.empty()) return;
  std::vector<std::string> lines{g_disk.header};
  for (const auto& [mk, p] : g_disk.plans) {
    std::string line = std::to_string(mk.first);
    for (const int64_t k : mk.second) line += " " + std::to_string(k);
    line += fmt::format(" {} {} {} {} {} {} {}", p.ok ? 1 : 0, p.as_2d ? 1 : 0, static_cast<int>(p.algo),
                        static_cast<int>(p.math), p.workspace, p.ms, p.cout_p);
    lines.push_back(line);
  }
  if (!write_cache_lines(g_disk.path, lines)) spdlog::debug("conv3d: cannot write '{}'", g_disk.path);
}

constexpr size_t kMaxWorkspace = size_t{1} << 30;

// Picks (once per shape) the algorithm: bf16 by cuDNN's timed search over the real buffers, f32 by
// its heuristics restricted to FMA kernels (exact f32; TF32 tensor cores are never allowed).
PlanKey plan_key(const ConvGeom& g, bool bf16) {
  return {bf16, g.Cin_p, g.Cout_p, g.kt, g.kh, g.kw, g.st, g.sh, g.sw, g.Tp, g.Hp, g.Wp};
}

// The cached plan of a shape: 1 usable, 0 refused (the GEMM path takes it), -1 not searched yet.
int known_plan(const ConvGeom& g, bool bf16) {
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  const auto it = g_plans.find(plan_key(g, bf16));
  return it == g_plans.end() ? -1 : it->second.ok ? 1 : 0;
}

// The best allowed algorithm for one description of the conv.
Plan search(const ConvGeom& g, bool bf16, bool as_2d, const void* xp, const void* wp, void* yp) {
  Descriptors d(g, bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT, as_2d);
  Plan plan;
  plan.as_2d = as_2d;
  cudnnConvolutionFwdAlgoPerf_t perf[CUDNN_CONVOLUTION_FWD_ALGO_COUNT] = {};
  int n = 0;
  if (bf16) {
    check_cudnn(cudnnSetConvolutionMathType(d.conv, CUDNN_TENSOR_OP_MATH), "cudnnSetConvolutionMathType");
    // A quarter of what the device (or the --vram-budget) still has: the search must not be what
    // breaks a budget.
    const size_t ws_bytes = std::min(kMaxWorkspace, ::ib::cuda::available_bytes() / 4);
    const Tensor ws = Tensor::empty({static_cast<int64_t>(ws_bytes)}, DType::U8, Device::CUDA);
    check_cudnn(cudnnFindConvolutionForwardAlgorithmEx(cudnn_handle(), d.x, xp, d.w, wp, d.conv, d.y, yp,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf, ws.raw(), ws_bytes),
                "cudnnFindConvolutionForwardAlgorithmEx");
  } else {
    check_cudnn(cudnnSetConvolutionMathType(d.conv, CUDNN_FMA_MATH), "cudnnSetConvolutionMathType");
    check_cudnn(cudnnGetConvolutionForwardAlgorithm_v7(cudnn_handle(), d.x, d.w, d.conv, d.y,
                                                       CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &n, perf),
                "cudnnGetConvolutionForwardAlgorithm_v7");
  }
  for (int i = 0; i < n; ++i)
    spdlog::trace("conv3d cuDNN search {}->{} k{}x{}x{} in {}x{}x{} Cout_p {}{}: #{} algo {} math {} status {} {:.3f} ms, {} KiB",
                  g.Cin, g.Cout, g.kt, g.kh, g.kw, g.Tp, g.Hp, g.Wp, g.Cout_p, as_2d ? " as 2-D" : "", i,
                  static_cast<int>(perf[i].algo), static_cast<int>(perf[i].mathType), static_cast<int>(perf[i].status),
                  perf[i].time, perf[i].memory >> 10);
  for (int i = 0; i < n; ++i) {
    const cudnnConvolutionFwdAlgoPerf_t& p = perf[i];
    if (p.status != CUDNN_STATUS_SUCCESS || !allowed_algo(p.algo)) continue;
    if (!bf16 && p.mathType != CUDNN_FMA_MATH && p.mathType != CUDNN_DEFAULT_MATH) continue;
    plan.ok = true;
    plan.algo = p.algo;
    plan.math = bf16 ? p.mathType : CUDNN_FMA_MATH;
    plan.ms = p.time;
    check_cudnn(cudnnSetConvolutionMathType(d.conv, plan.math), "cudnnSetConvolutionMathType");
    if (cudnnGetConvolutionForwardWorkspaceSize(cudnn_handle(), d.x, d.w, d.conv, d.y, plan.algo, &plan.workspace) !=
            CUDNN_STATUS_SUCCESS ||
        plan.workspace > kMaxWorkspace) {
      plan.ok = false;
      continue;
    }
    spdlog::debug("conv3d cuDNN {}{}: {}->{} k{}x{}x{} s{}x{}x{} in {}x{}x{}: algo {} math {} ({:.3f} ms, {} KiB)",
                  bf16 ? "bf16" : "f32", as_2d ? " as 2-D" : "", g.Cin, g.Cout, g.kt, g.kh, g.kw, g.st, g.sh, g.sw,
                  g.Tp, g.Hp, g.Wp, static_cast<int>(p.algo), static_cast<int>(plan.math), p.time,
                  plan.workspace >> 10);
    break;
  }
  return plan;
}

// w [Cout, Cin, kt, kh, kw] (f32 or bf16) into a new [g.Cout_p, kt, kh, kw, Cin_p] tensor.
template <typename T>
Tensor packed_weight(const Tensor& w, const ConvGeom& g, DType dt) {
  const Tensor wp = Tensor::empty({g.Cout_p, g.kt, g.kh, g.kw, g.Cin_p}, dt, Device::CUDA);
  if (w.dtype() == DType::BF16) {
    pack_weight<<<blocks_for(wp.numel()), 256>>>(static_cast<const __nv_bfloat16*>(w.raw()), static_cast<T*>(wp.raw()), g);
  } else {
    pack_weight<<<blocks_for(wp.numel()), 256>>>(w.data<float>(), static_cast<T*>(wp.raw()), g);
  }
  check_launch("pack_weight");
  return wp;
}

ConvOutputPadding g_output_padding = ConvOutputPadding::Search;  // set_conv_output_padding

// The output channel counts a bf16 search tries: the real ones rounded to 8, and rounded up to 64
// or 128 where that adds at most half as many again. cuDNN's Hopper kernels take output channels
// in tiles of 64-128: at 96 channels (the decoder's last level) it offered only an sm80 kernel
// with tiles of 32 channels (~300 TFLOP/s, bench/NOTES.md version 19); the extra channels are
// zero weights whose outputs the epilogue never reads. A few output channels (the decoder's head,
// 96 -> 3) also try 16, 32 and 64: there the input's bytes, not the products, set the time.
// Never keeps the first, Always drops it.
std::vector<int64_t> cout_candidates(const ConvGeom& g, bool bf16) {
  std::vector<int64_t> c{g.Cout_p};
  if (!bf16 || g_output_padding == ConvOutputPadding::Never) return c;
  for (const int64_t q : {int64_t{16}, int64_t{32}, int64_t{64}, int64_t{128}}) {
    const int64_t r = (g.Cout + q - 1) / q * q;
    const bool few = g.Cout_p <= 8 && q <= 64;  // at most 64 computed channels for a handful
    if (r != c.back() && (few || (q >= 64 && 2 * r <= 3 * g.Cout_p))) c.push_back(r);
  }
  if (g_output_padding == ConvOutputPadding::Always && c.size() > 1) c.erase(c.begin());
  return c;
}

// The plan of a conv (cached per shape): for each output channel count of cout_candidates, the
// weight packed to it and searched; the fastest by cuDNN's timing kept.
template <typename T>
Plan plan_for(const ConvGeom& g, bool bf16, const void* xp, const Tensor& w) {
  const PlanKey key = plan_key(g, bf16);
  const int mode = static_cast<int>(g_output_padding);
  {
    std::lock_guard<std::mutex> lock(g_plans_mutex);
    if (auto it = g_plans.find(key); it != g_plans.end()) return it->second;
    if (bf16) {  // a plan an earlier process found (see DiskPlans)
      load_disk_plans_locked();
      if (auto it = g_disk.plans.find({mode, key}); it != g_disk.plans.end()) {
        const size_t room = std::min(kMaxWorkspace, ::ib::cuda::available_bytes() / 4);
        if (!it->second.ok || it->second.workspace <= room) return g_plans[key] = it->second;
      }
    }
  }
  const DType dt = bf16 ? DType::BF16 : DType::F32;
  Plan plan;
  for (const int64_t cout_p : cout_candidates(g, bf16)) {
    ConvGeom gc = g;
    gc.Cout_p = cout_p;
    const Tensor wp = packed_weight<T>(w, gc, dt);
    const Tensor yp = Tensor::empty({gc.To, gc.Ho, gc.Wo, gc.Cout_p}, dt, Device::CUDA);
    Plan p = search(gc, bf16, false, xp, wp.raw(), yp.raw());
    // A bf16 stride-1 conv with one tap in time (the decoder's upsampling 1×3×3 convs, the 1×1×1
    // shortcut) is also timed as a 2-D conv over the frames, and the faster description kept: at
    // 480p cuDNN's 2-D kernels ran the 384 -> 192 1×3×3 in 0.99 ms against 2.3 ms as 3-D. (The
    // encoder's stride-2 downsampling convs keep the 3-D description: the one device run that let
    // them choose measured the encode 1.6% slower, within noise but not better.)
    if (bf16 && g.kt == 1 && g.st == 1 && g.sh == 1 && g.sw == 1) {
      const Plan p2 = search(gc, bf16, true, xp, wp.raw(), yp.raw());
      if (p2.ok && (!p.ok || p2.ms < p.ms)) p = p2;
    }
    p.cout_p = cout_p;
    if (p.ok && (!plan.ok || p.ms < plan.ms)) plan = p;
  }
  if (!plan.ok) {  // expected for f32 at large sizes (cuDNN offers no FMA kernel there)
    spdlog::debug("conv3d: cuDNN has no {} algorithm for {}->{} k{}x{}x{} on {}x{}x{}; using im2col + GEMM",
                  bf16 ? "bf16" : "f32", g.Cin, g.Cout, g.kt, g.kh, g.kw, g.Tp, g.Hp, g.Wp);
  } else if (plan.cout_p != g.Cout_p) {
    spdlog::debug("conv3d cuDNN: {}->{} k{}x{}x{} computes {} output channels ({:.3f} ms)", g.Cin, g.Cout, g.kt,
                  g.kh, g.kw, plan.cout_p, plan.ms);
  }
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  ++g_searches;
  g_plans[key] = plan;
  if (bf16) {
    g_disk.plans[{mode, key}] = plan;
    save_disk_plans_locked();
  }
  return plan;
}

// IB_CONV_SCALAR_PACKING=1 (a development switch, read once) keeps every conv on the scalar
// packing and epilogue, to time the two in one build.
bool vec_kernels_enabled() {
  static const bool on = [] {
    const char* e = std::getenv("IB_CONV_SCALAR_PACKING");
    return e == nullptr || std::string(e) != "1";
  }();
  return on;
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15) == 0; }

// Whether pack_input_vec can take this packing: every source row on 16 bytes, the channels in
// shared memory, all source parts of one dtype.
bool vec_pack_ok(const InputSource& s, const ConvGeom& g) {
  if (!vec_kernels_enabled() || g.Cin > kVecMaxChannels || (g.W >> s.up) % 8 != 0 || !aligned16(s.x.p)) return false;
  for (int i = 0; i < 2; ++i)
    if (s.prefix_t[i] > 0 && (s.prefix[i].bf16 != s.x.bf16 || !aligned16(s.prefix[i].p))) return false;
  return true;
}

// Input columns a packing block takes: 64 up to kWideTileChannels channels (fewer, larger
// blocks), else 32 (the shared memory of 512 channels).
constexpr int64_t kWideTileChannels = 256;

template <typename TIn, typename T, bool kNorm, int kCols>
void launch_pack_vec(const InputSource& src, T* xp, const ConvGeom& g) {
  static const cudaError_t attr = cudaFuncSetAttribute(
      pack_input_vec<TIn, T, kNorm, kCols>, cudaFuncAttributeMaxDynamicSharedMemorySize,
      static_cast<int>(vec_pack_smem(kCols == 64 ? kWideTileChannels : kVecMaxChannels, kCols)));
  check_cuda(attr, "cudaFuncSetAttribute (pack_input_vec)");
  IB_CHECK(g.Tp * g.Hp <= 0x7fffffff && (g.W + kCols - 1) / kCols <= 65535,
           "conv3d on CUDA: input {}x{}x{} is too large", g.Tp, g.Hp, g.Wp);
  const dim3 grid(static_cast<unsigned>(g.Tp * g.Hp), static_cast<unsigned>((g.W + kCols - 1) / kCols));
  pack_input_vec<TIn, T, kNorm, kCols><<<grid, dim3(32, 8), vec_pack_smem(g.Cin, kCols)>>>(src, xp, g);
  check_launch("pack_input_vec");
}

template <typename TIn, typename T, bool kNorm>
void launch_pack_vec(const InputSource& src, T* xp, const ConvGeom& g) {
  if (g.Cin <= kWideTileChannels) return launch_pack_vec<TIn, T, kNorm, 64>(src, xp, g);
  launch_pack_vec<TIn, T, kNorm, 32>(src, xp, g);
}

template <typename T>
void pack_input_fast(const InputSource& src, T* xp, const ConvGeom& g) {
  const bool norm = src.gamma != nullptr;
  if (src.x.bf16) {
    norm ? launch_pack_vec<__nv_bfloat16, T, true>(src, xp, g) : launch_pack_vec<__nv_bfloat16, T, false>(src, xp, g);
  } else {
    norm ? launch_pack_vec<float, T, true>(src, xp, g) : launch_pack_vec<float, T, false>(src, xp, g);
  }
}

template <typename T, typename TR, typename TY>
void launch_unpack_vec(const T* yp, const float* bias, const void* residual, void* y, const ConvGeom& g) {
  const int64_t P = g.To * g.Ho * g.Wo;
  IB_CHECK((P + 63) / 64 <= 0x7fffffff, "conv3d on CUDA: output of {} positions is too large", P);
  const dim3 grid(static_cast<unsigned>((P + 63) / 64), static_cast<unsigned>((g.Cout + 63) / 64));
  unpack_output_vec<T, TR, TY><<<grid, 256>>>(yp, bias, static_cast<const TR*>(residual), static_cast<TY*>(y), g);
  check_launch("unpack_output_vec");
}

// The epilogue through unpack_output_vec when the positions come in whole vectors; false otherwise.
template <typename T>
bool unpack_output_fast(const T* yp, const float* bias, const Act& residual, const Act& y, const ConvGeom& g) {
  const int64_t P = g.To * g.Ho * g.Wo;
  if (!vec_kernels_enabled() || P % 8 != 0 || !aligned16(yp) || !aligned16(y.p) || !aligned16(residual.p)) return false;
  using bf = __nv_bfloat16;
  const bool rb = residual.p != nullptr ? residual.bf16 : y.bf16;  // no residual: any type
  void* out = const_cast<void*>(y.p);
  if (y.bf16) {
    rb ? launch_unpack_vec<T, bf, bf>(yp, bias, residual.p, out, g) : launch_unpack_vec<T, float, bf>(yp, bias, residual.p, out, g);
  } else {
    rb ? launch_unpack_vec<T, bf, float>(yp, bias, residual.p, out, g)
       : launch_unpack_vec<T, float, float>(yp, bias, residual.p, out, g);
  }
  return true;
}

template <typename T>
bool conv_cudnn_typed(const InputSource& src, const Tensor& w, const Tensor& b, const Tensor& residual, const Tensor& y,
                      const ConvGeom& g, bool bf16) {
  if (known_plan(g, bf16) == 0) return false;
  const DType dt = bf16 ? DType::BF16 : DType::F32;
  const Tensor xp = Tensor::empty({g.Tp, g.Hp, g.Wp, g.Cin_p}, dt, Device::CUDA);
  const dim3 block(32, 8);
  if (vec_pack_ok(src, g)) {
    pack_input_fast<T>(src, static_cast<T*>(xp.raw()), g);
  } else if (src.gamma != nullptr) {
    static const cudaError_t attr = cudaFuncSetAttribute(pack_input_norm<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                         static_cast<int>(norm_pack_smem(kNormPackMaxChannels)));
    check_cuda(attr, "cudaFuncSetAttribute (pack_input_norm)");
    IB_CHECK(g.Tp * g.Hp <= 0x7fffffff && (g.Wp + 31) / 32 <= 65535, "conv3d on CUDA: input {}x{}x{} is too large",
             g.Tp, g.Hp, g.Wp);
    const dim3 grid_in(static_cast<unsigned>(g.Tp * g.Hp), static_cast<unsigned>((g.Wp + 31) / 32));
    pack_input_norm<T><<<grid_in, block, norm_pack_smem(g.Cin)>>>(src, static_cast<T*>(xp.raw()), g);
    check_launch("pack_input_norm");
  } else {
    const dim3 grid_in(static_cast<unsigned>((g.Wp + 31) / 32), static_cast<unsigned>((g.Cin_p + 31) / 32),
                       static_cast<unsigned>(std::min<int64_t>(g.Tp * g.Hp, 65535)));
    pack_input<T><<<grid_in, block>>>(src, static_cast<T*>(xp.raw()), g);
    check_launch("pack_input");
  }
  const Plan plan = plan_for<T>(g, bf16, xp.raw(), w);
  if (!plan.ok) return false;
  ConvGeom gr = g;  // as the plan runs it: maybe more output channels than g.Cout_p
  gr.Cout_p = plan.cout_p;
  const Tensor wp = packed_weight<T>(w, gr, dt);
  const Tensor yp = Tensor::empty({gr.To, gr.Ho, gr.Wo, gr.Cout_p}, dt, Device::CUDA);
  Descriptors d(gr, bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT, plan.as_2d);
  check_cudnn(cudnnSetConvolutionMathType(d.conv, plan.math), "cudnnSetConvolutionMathType");
  Tensor ws;
  if (plan.workspace > 0) ws = Tensor::empty({static_cast<int64_t>(plan.workspace)}, DType::U8, Device::CUDA);
  const float one = 1.0f, zero = 0.0f;
  const cudnnStatus_t st = cudnnConvolutionForward(cudnn_handle(), &one, d.x, xp.raw(), d.w, wp.raw(), d.conv,
                                                   plan.algo, ws.defined() ? ws.raw() : nullptr, plan.workspace, &zero,
                                                   d.y, yp.raw());
  if (st == CUDNN_STATUS_NOT_SUPPORTED || st == CUDNN_STATUS_BAD_PARAM) {  // the shape goes to the GEMM path
    spdlog::warn("conv3d: cuDNN refused algo {} for {}->{} k{}x{}x{} ({}); using im2col + GEMM", static_cast<int>(plan.algo),
                 g.Cin, g.Cout, g.kt, g.kh, g.kw, cudnnGetErrorString(st));
    std::lock_guard<std::mutex> lock(g_plans_mutex);
    g_plans[plan_key(g, bf16)].ok = false;
    if (g_disk.plans.erase({static_cast<int>(g_output_padding), plan_key(g, bf16)}) > 0) save_disk_plans_locked();
    return false;
  }
  check_cudnn(st, "cudnnConvolutionForward");

  const int64_t P = gr.To * gr.Ho * gr.Wo;
  const dim3 grid_out(static_cast<unsigned>((P + 31) / 32), static_cast<unsigned>((gr.Cout + 31) / 32));
  const Act y_act = act(y, "conv3d"), r_act = act(residual, "conv3d");
  if (unpack_output_fast<T>(static_cast<const T*>(yp.raw()), optional_f32(b), r_act, y_act, gr)) return true;
  unpack_output<T><<<grid_out, block>>>(static_cast<const T*>(yp.raw()), optional_f32(b), r_act,
                                        const_cast<void*>(y_act.p), y_act.bf16, gr);
  check_launch("unpack_output");
  return true;
}

bool conv_cudnn(const InputSource& src, const Tensor& w, const Tensor& b, const Tensor& residual, const Tensor& y,
                const ConvGeom& g) {
  if (w.dtype() == DType::BF16) return conv_cudnn_typed<__nv_bfloat16>(src, w, b, residual, y, g, true);
  return conv_cudnn_typed<float>(src, w, b, residual, y, g, false);
}

#endif  // IB_CUDA_HAVE_CUDNN

}  // namespace

void set_conv_backend(ConvBackend backend) {
  IB_CHECK(conv_backend_available(backend), "conv3d on CUDA: this build has no cuDNN");
  g_backend = backend;
}

void set_conv_output_padding(ConvOutputPadding mode) {
#ifdef IB_CUDA_HAVE_CUDNN
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  g_output_padding = mode;
  g_plans.clear();
#else
  (void)mode;
#endif
}

int64_t conv_plan_searches() {
#ifdef IB_CUDA_HAVE_CUDNN
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  return g_searches;
#else
  return 0;
#endif
}

void forget_conv_plans() {
#ifdef IB_CUDA_HAVE_CUDNN
  std::lock_guard<std::mutex> lock(g_plans_mutex);
  g_plans.clear();
  g_disk = DiskPlans{};
#endif
}

bool conv_backend_available(ConvBackend backend) {
#ifdef IB_CUDA_HAVE_CUDNN
  (void)backend;
  return true;
#else
  return backend != ConvBackend::Cudnn;
#endif
}

namespace {

// The geometry of a conv of an input [Cin, T, H, W] with w into y.
ConvGeom geometry(int64_t Cin, int64_t T, int64_t H, int64_t W, const Tensor& w, const Conv3dArgs& a, const Tensor& y) {
  IB_CHECK(w.device() == Device::CUDA && (w.dtype() == DType::F32 || w.dtype() == DType::BF16),
           "conv3d on CUDA: weight {} must be an f32 or bf16 device tensor", w.str());
  ConvGeom g{};
  g.Cin = Cin, g.T = T, g.H = H, g.W = W;
  g.Cout = y.size(0), g.To = y.size(1), g.Ho = y.size(2), g.Wo = y.size(3);
  g.kt = w.size(2), g.kh = w.size(3), g.kw = w.size(4);
  g.st = a.stride_t, g.sh = a.stride_h, g.sw = a.stride_w;
  g.pad_front = a.pad_front, g.pad_top = a.pad_top, g.pad_left = a.pad_left;
  // Only the padded extent that the output reads: trailing rows/columns a stride skips are dropped.
  g.Tp = (g.To - 1) * g.st + g.kt;
  g.Hp = (g.Ho - 1) * g.sh + g.kh;
  g.Wp = (g.Wo - 1) * g.sw + g.kw;
  g.Cin_p = (g.Cin + 7) / 8 * 8;
  g.Cout_p = (g.Cout + 7) / 8 * 8;
  return g;
}

}  // namespace

void conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& a, const Tensor& residual,
            const Tensor& y) {
  const ConvGeom g = geometry(x.size(0), x.size(1), x.size(2), x.size(3), w, a, y);
  if (y.numel() == 0) return;
  const bool pointwise = g.kt == 1 && g.kh == 1 && g.kw == 1 && g.st == 1 && g.sh == 1 && g.sw == 1 &&
                         a.pad_front == 0 && a.pad_top == 0 && a.pad_bottom == 0 && a.pad_left == 0 &&
                         a.pad_right == 0;
  const bool all_f32 = x.dtype() == DType::F32 && y.dtype() == DType::F32 &&
                       (!residual.defined() || residual.dtype() == DType::F32);
  // A 1×1×1 conv on f32 activations is one GEMM on the input as it lies; with bf16 activations it
  // takes the cuDNN path, whose packing reads bf16 and whose epilogue writes it.
  if (g.Cin == 0 || (pointwise && all_f32)) return conv_gemm_any(x, w, b, residual, y, g, pointwise);
#ifdef IB_CUDA_HAVE_CUDNN
  InputSource src;
  src.x = act(x, "conv3d");
  if (g_backend != ConvBackend::Gemm && conv_cudnn(src, w, b, residual, y, g)) return;
  IB_CHECK(g_backend != ConvBackend::Cudnn, "conv3d on CUDA: cuDNN has no algorithm for {} with weight {}", x.str(),
           w.str());
#endif
  conv_gemm_any(x, w, b, residual, y, g, pointwise);
}

bool norm_silu_conv3d(const std::vector<Tensor>& prefix, const Tensor& x, const Tensor& gamma, const Tensor& w,
                      const Tensor& b, const Conv3dArgs& a, const Tensor& residual, const Tensor& y) {
#ifdef IB_CUDA_HAVE_CUDNN
  IB_CHECK(prefix.size() <= 2, "norm_silu_conv3d on CUDA: cached frames in {} parts", prefix.size());
  InputSource src;
  for (size_t i = 0; i < prefix.size(); ++i) {
    src.prefix_t[i] = prefix[i].size(1);
    src.prefix[i] = src.prefix_t[i] > 0 ? act(prefix[i], "norm_silu_conv3d") : Act{};
    src.t_prefix += src.prefix_t[i];
  }
  const ConvGeom g = geometry(x.size(0), src.t_prefix + x.size(1), x.size(2), x.size(3), w, a, y);
  if (g_backend == ConvBackend::Gemm || g.Cin == 0 || g.Cin > kNormPackMaxChannels || y.numel() == 0) return false;
  src.x = act(x, "norm_silu_conv3d");
  src.gamma = dev_f32(gamma, "norm_silu_conv3d");
  src.scale = std::sqrt(static_cast<float>(g.Cin));
  return conv_cudnn(src, w, b, residual, y, g);
#else
  (void)prefix, (void)x, (void)gamma, (void)w, (void)b, (void)a, (void)residual, (void)y;
  return false;
#endif
}

bool upsample2x_conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& a, const Tensor& y) {
#ifdef IB_CUDA_HAVE_CUDNN
  // The geometry of the upsampled input; the packing reads the source at half the coordinates.
  const ConvGeom g = geometry(x.size(0), x.size(1), 2 * x.size(2), 2 * x.size(3), w, a, y);
  if (g_backend == ConvBackend::Gemm || g.Cin == 0 || y.numel() == 0) return false;
  InputSource src;
  src.x = act(x, "upsample2x_conv3d");
  src.up = 1;
  return conv_cudnn(src, w, b, Tensor(), y, g);
#else
  (void)x, (void)w, (void)b, (void)a, (void)y;
  return false;
#endif
}

}  // namespace ib::ops::cuda
