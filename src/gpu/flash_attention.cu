// Our flash-attention forward kernel (FlashAttention-2 style) for Hopper and later, on the
// tensor cores through mma.sync m16n8k16 bf16 with f32 accumulation. One block takes kBlockM
// query rows of one head of one batch entry; each warp owns 16 * kMT of those rows, and the block
// streams every key and value tile of the head through shared memory (cp.async, kStages buffers,
// rows padded by 16 bytes so ldmatrix is free of bank conflicts). Per key tile a warp computes its
// logits, updates the running row max and sum (online softmax in the exp2 domain), rescales its
// output accumulator and adds P V. The logits never leave registers.
//
// Head dim 128 has several tile shapes (launch_d128, with their timings); the dev switch
// IB_FLASH_VARIANT=<n> picks one other than the default, so bench_attention_gpu can time them all.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "core/check.h"
#include "gpu/attention.h"

namespace ib::gpu {

namespace {

using bf16 = __nv_bfloat16;

// ---- PTX wrappers -------------------------------------------------------------------------

__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

// 16 bytes global -> shared, bypassing L1; src_bytes = 0 writes zeros (rows past the end).
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  const int src_bytes = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

// c += a (16x16, row) * b (16x8, col), bf16 in, f32 accumulate.
__device__ __forceinline__ void mma_bf16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

// ---- Kernel -------------------------------------------------------------------------------

struct FlashParams {
  const bf16* q;
  const bf16* k;
  const bf16* v;
  bf16* out;
  int64_t q_row, k_row, v_row, o_row;
  int64_t q_batch, k_batch, v_batch, o_batch;
  int lq, lk;
  float scale_log2;  // scale * log2(e): the softmax runs on exp2
};

// kMT: m16 tiles per warp (each warp owns 16 * kMT query rows; two tiles let each K and V
// fragment read from shared memory feed two MMAs). kQInRegs: each warp copies its Q slice to
// registers once (the Q tile then shares its shared memory with the K/V buffers); else the Q
// fragments are re-read from shared memory for every key tile. kSkipRescale: leave the output
// accumulator alone when no row maximum of an m16 tile moved (a warp-uniform branch).
// kPipelined: a warp computes the logits of key tile j + 1 in the same straight-line code as the
// softmax and P V of tile j, so the tensor-core work can overlap the exp2s (needs 3 stages and
// registers for two logit tiles).
template <int D_, int kWarps_, int kMT_, int kBlockN_, int kStages_, bool kQInRegs_, bool kSkipRescale_ = false,
          bool kPipelined_ = false>
struct FlashConfig {
  static constexpr int D = D_, kWarps = kWarps_, kMT = kMT_, kBlockN = kBlockN_, kStages = kStages_;
  static constexpr bool kQInRegs = kQInRegs_, kSkipRescale = kSkipRescale_, kPipelined = kPipelined_;
  static constexpr int kBlockM = 16 * kMT * kWarps, kThreads = 32 * kWarps;
  static constexpr int kNT = kBlockN / 8;  // n8 tiles of logits per m16 tile
  static constexpr int kDT = D / 8;        // n8 tiles of output features
  static constexpr int kRow = D + 8;       // padded shared-memory row (elements): rows 16 bytes apart mod 128
  static constexpr int kQElems = kBlockM * kRow, kTileElems = kBlockN * kRow;
  static constexpr int kKVElems = 2 * kStages * kTileElems;
  static constexpr int kSmemBytes =
      2 * (kQInRegs ? (kQElems > kKVElems ? kQElems : kKVElems) : kQElems + kKVElems);
  static_assert(D % 16 == 0 && kBlockN % 16 == 0 && kStages >= 2, "tile shape");
  static_assert(!kPipelined || (kStages >= 3 && !kSkipRescale), "the pipelined loop needs 3 stages, no branches");
};

// Copies `rows` rows of D bf16 (row stride `stride` elements in global memory) into a padded
// shared tile; rows at or past `valid` are zero-filled, so a tail tile adds nothing to P V.
template <class C, int kRows>
__device__ __forceinline__ void load_tile(uint32_t dst, const bf16* src, int64_t stride, int valid, int tid) {
  constexpr int kChunks = C::D / 8;  // 16-byte chunks per row
  constexpr int kTotal = kRows * kChunks;
  constexpr int kIters = (kTotal + C::kThreads - 1) / C::kThreads;
#pragma unroll
  for (int it = 0; it < kIters; ++it) {
    const int i = it * C::kThreads + tid;
    if (kTotal % C::kThreads == 0 || i < kTotal) {
      const int r = i / kChunks, c = i % kChunks;
      const bool ok = r < valid;
      cp_async_16(dst + 2u * static_cast<uint32_t>(r * C::kRow + c * 8), ok ? src + r * stride + c * 8 : src, ok);
    }
  }
}

// Per-warp state and the three steps of one key tile.
template <class C>
struct WarpTile {
  using Logits = float[C::kMT][C::kNT][4];
  uint32_t qf[C::kQInRegs ? C::kMT : 1][C::kQInRegs ? C::D / 16 : 1][4];
  float o[C::kMT][C::kDT][4];
  // Rows g and g+8 of each m16 tile (g = lane / 4): running max of the raw logits, partial sums
  // of this lane's columns (summed over the quad at the end).
  float row_max[C::kMT][2], row_sum[C::kMT][2];
  uint32_t q_lane;  // byte address of this lane's first Q row for ldmatrix
  uint32_t k_lane_off, v_lane_off;

  // Per-lane ldmatrix offsets (bytes). A operand (Q, 16x16): lanes 0-15 rows 0-15 at column 0,
  // lanes 16-31 the same rows at column 8. K (B, non-transposed, two n8 tiles per x4): matrices
  // (keys 0-7, d 0-7), (keys 0-7, d 8-15), (keys 8-15, d 0-7), (keys 8-15, d 8-15). V (B,
  // transposed, two n8 tiles of features per x4): (keys 0-7, d 0-7), (keys 8-15, d 0-7), (keys 0-7,
  // d 8-15), (keys 8-15, d 8-15).
  __device__ __forceinline__ void init(uint32_t smem_q, int warp, int lane) {
    q_lane = smem_q + 2u * static_cast<uint32_t>((warp * 16 * C::kMT + lane % 16) * C::kRow + (lane / 16) * 8);
    k_lane_off = 2u * static_cast<uint32_t>((lane % 8 + (lane / 16) * 8) * C::kRow + ((lane / 8) % 2) * 8);
    v_lane_off = 2u * static_cast<uint32_t>((lane % 8 + ((lane / 8) % 2) * 8) * C::kRow + (lane / 16) * 8);
#pragma unroll
    for (int mt = 0; mt < C::kMT; ++mt) {
#pragma unroll
      for (int i = 0; i < C::kDT; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.0f;
      row_max[mt][0] = row_max[mt][1] = -INFINITY;
      row_sum[mt][0] = row_sum[mt][1] = 0.0f;
    }
  }

  static constexpr uint32_t kMTBytes = 2u * 16 * C::kRow;  // one m16 tile of Q rows

  __device__ __forceinline__ void load_q_fragments() {
#pragma unroll
    for (int mt = 0; mt < C::kMT; ++mt)
#pragma unroll
      for (int kk = 0; kk < C::D / 16; ++kk) ldmatrix_x4(qf[mt][kk], q_lane + mt * kMTBytes + kk * 32);
  }

  // s = Q K^T for the warp's rows and the key tile at byte address sk.
  __device__ __forceinline__ void logits(Logits& s, uint32_t sk) const {
#pragma unroll
    for (int mt = 0; mt < C::kMT; ++mt)
#pragma unroll
      for (int i = 0; i < C::kNT; ++i) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < C::D / 16; ++kk) {
      uint32_t a[C::kMT][4];
#pragma unroll
      for (int mt = 0; mt < C::kMT; ++mt) {
        if constexpr (C::kQInRegs) {
#pragma unroll
          for (int e = 0; e < 4; ++e) a[mt][e] = qf[mt][kk][e];
        } else {
          ldmatrix_x4(a[mt], q_lane + mt * kMTBytes + kk * 32);
        }
      }
#pragma unroll
      for (int nn = 0; nn < C::kNT / 2; ++nn) {
        uint32_t bk[4];
        ldmatrix_x4(bk, sk + k_lane_off + static_cast<uint32_t>(nn * 16 * C::kRow * 2 + kk * 32));
#pragma unroll
        for (int mt = 0; mt < C::kMT; ++mt) {
          mma_bf16(s[mt][2 * nn], a[mt], bk[0], bk[1]);
          mma_bf16(s[mt][2 * nn + 1], a[mt], bk[2], bk[3]);
        }
      }
    }
  }

  // Keys key0 + ... at or past lk get -inf before the max (only the last tile has any).
  __device__ __forceinline__ static void mask_tail(Logits& s, int key0, int lk, int lane) {
    const int c0 = key0 + 2 * (lane % 4);
#pragma unroll
    for (int mt = 0; mt < C::kMT; ++mt)
#pragma unroll
      for (int i = 0; i < C::kNT; ++i) {
        const int c = c0 + i * 8;
        if (c >= lk) s[mt][i][0] = s[mt][i][2] = -INFINITY;
        if (c + 1 >= lk) s[mt][i][1] = s[mt][i][3] = -INFINITY;
      }
  }

  // Online softmax, then O += P V with V at byte address sv. The max is taken on raw logits
  // (scale > 0 is checked on the host), so p = exp2(s * scale_log2 - max * scale_log2) is one FFMA
  // and one ex2 per logit.
  __device__ __forceinline__ void softmax_pv(const Logits& s, uint32_t sv, float sl2) {
    uint32_t pa[C::kMT][C::kNT / 2][4];
#pragma unroll
    for (int mt = 0; mt < C::kMT; ++mt) {
      float mx[2] = {row_max[mt][0], row_max[mt][1]};
#pragma unroll
      for (int i = 0; i < C::kNT; ++i) {
        mx[0] = fmaxf(mx[0], fmaxf(s[mt][i][0], s[mt][i][1]));
        mx[1] = fmaxf(mx[1], fmaxf(s[mt][i][2], s[mt][i][3]));
      }
      float corr[2], ms[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
        mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
        // Every tile holds at least one real key, so mx is finite; the guard keeps
        // exp2(-inf - -inf) out of reach all the same.
        ms[r] = mx[r] == -INFINITY ? 0.0f : mx[r] * sl2;
        corr[r] = fast_exp2(row_max[mt][r] * sl2 - ms[r]);  // 0 on the first tile (row_max = -inf)
        row_max[mt][r] = mx[r];
        row_sum[mt][r] *= corr[r];
      }
      // Once the row maxima settle, most tiles leave them alone; corr is then exactly 1.
      if (!C::kSkipRescale || !__all_sync(0xffffffffu, corr[0] == 1.0f && corr[1] == 1.0f)) {
#pragma unroll
        for (int i = 0; i < C::kDT; ++i) {
          o[mt][i][0] *= corr[0], o[mt][i][1] *= corr[0];
          o[mt][i][2] *= corr[1], o[mt][i][3] *= corr[1];
        }
      }
      // P as bf16 A fragments: the accumulator layout of two n8 tiles is the A layout of one k16.
#pragma unroll
      for (int i = 0; i < C::kNT; ++i) {
        const float p0 = fast_exp2(fmaf(s[mt][i][0], sl2, -ms[0])), p1 = fast_exp2(fmaf(s[mt][i][1], sl2, -ms[0]));
        const float p2 = fast_exp2(fmaf(s[mt][i][2], sl2, -ms[1])), p3 = fast_exp2(fmaf(s[mt][i][3], sl2, -ms[1]));
        row_sum[mt][0] += p0 + p1;
        row_sum[mt][1] += p2 + p3;
        pa[mt][i / 2][(i % 2) * 2 + 0] = pack_bf16(p0, p1);
        pa[mt][i / 2][(i % 2) * 2 + 1] = pack_bf16(p2, p3);
      }
    }
#pragma unroll
    for (int kk = 0; kk < C::kNT / 2; ++kk) {
#pragma unroll
      for (int dn = 0; dn < C::kDT / 2; ++dn) {
        uint32_t bv[4];
        ldmatrix_x4_trans(bv, sv + v_lane_off + static_cast<uint32_t>(kk * 16 * C::kRow * 2 + dn * 32));
#pragma unroll
        for (int mt = 0; mt < C::kMT; ++mt) {
          mma_bf16(o[mt][2 * dn], pa[mt][kk], bv[0], bv[1]);
          mma_bf16(o[mt][2 * dn + 1], pa[mt][kk], bv[2], bv[3]);
        }
      }
    }
  }

  // Normalises and stores rows g and g+8 of each m16 tile (bf16 pairs; rows past Lq are skipped).
  __device__ __forceinline__ void store(bf16* og, int64_t o_row, int row0, int lq, int lane) const {
    og += 2 * (lane % 4);
#pragma unroll
    for (int mt = 0; mt < C::kMT; ++mt)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float l = row_sum[mt][r];
        l += __shfl_xor_sync(0xffffffffu, l, 1);
        l += __shfl_xor_sync(0xffffffffu, l, 2);
        const float inv = 1.0f / l;
        const int row = row0 + mt * 16 + lane / 4 + r * 8;
        if (row < lq) {
          bf16* orow = og + row * o_row;
#pragma unroll
          for (int i = 0; i < C::kDT; ++i)
            *reinterpret_cast<__nv_bfloat162*>(orow + i * 8) =
                __floats2bfloat162_rn(o[mt][i][2 * r] * inv, o[mt][i][2 * r + 1] * inv);
        }
      }
  }
};

template <class C>
__global__ void __launch_bounds__(C::kThreads, C::kWarps >= 8 ? 1 : 2) flash_fwd_kernel(FlashParams p) {
  constexpr int kBlockN = C::kBlockN, kStages = C::kStages;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  const uint32_t smem_q = smem_addr(smem_raw);
  const uint32_t smem_kv = C::kQInRegs ? smem_q : smem_q + 2u * C::kQElems;
  // Stage s: K at smem_kv + s * 2 tiles, V right after it (byte addresses).
  constexpr uint32_t kTileBytes = 2u * C::kTileElems;
  auto stage_k = [&](int j) { return smem_kv + static_cast<uint32_t>(j % kStages) * 2u * kTileBytes; };

  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const int m0 = blockIdx.x * C::kBlockM;
  const int64_t h = blockIdx.y, b = blockIdx.z;
  const bf16* qg = p.q + b * p.q_batch + m0 * p.q_row + h * C::D;
  const bf16* kg = p.k + b * p.k_batch + h * C::D;
  const bf16* vg = p.v + b * p.v_batch + h * C::D;
  const int n_tiles = (p.lk + kBlockN - 1) / kBlockN;
  const bool tail = n_tiles * kBlockN > p.lk;
  const float sl2 = p.scale_log2;

  auto load_kv = [&](int j) {
    const int n0 = j * kBlockN, valid = min(kBlockN, p.lk - n0);
    load_tile<C, kBlockN>(stage_k(j), kg + n0 * p.k_row, p.k_row, valid, tid);
    load_tile<C, kBlockN>(stage_k(j) + kTileBytes, vg + n0 * p.v_row, p.v_row, valid, tid);
  };

  WarpTile<C> w;
  w.init(smem_q, warp, lane);
  load_tile<C, C::kBlockM>(smem_q, qg, p.q_row, p.lq - m0, tid);
  cp_async_commit();
  if constexpr (C::kQInRegs) {
    cp_async_wait<0>();
    __syncthreads();
    w.load_q_fragments();
    __syncthreads();  // the Q tile's memory becomes K/V buffers
  }
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < n_tiles) load_kv(s);
    cp_async_commit();
  }

  if constexpr (!C::kPipelined) {
    typename WarpTile<C>::Logits s;
    for (int j = 0; j < n_tiles; ++j) {
      cp_async_wait<kStages - 2>();
      __syncthreads();  // tile j is in for every thread; everyone is done with tile j - 1
      if (j + kStages - 1 < n_tiles) load_kv(j + kStages - 1);
      cp_async_commit();  // always, so the group count stays in step with j
      w.logits(s, stage_k(j));
      if (tail && j == n_tiles - 1) w.mask_tail(s, j * kBlockN, p.lk, lane);
      w.softmax_pv(s, stage_k(j) + kTileBytes, sl2);
    }
  } else {
    // Iteration j reads K of tile j + 1 and V of tile j and loads tile j + kStages - 1 into the
    // buffers of tile j - 1. On the last iteration the logits of the (absent) next tile are
    // computed from stale shared memory and dropped: cheaper than a branch in the loop body.
    typename WarpTile<C>::Logits s_cur, s_next;
    cp_async_wait<kStages - 2>();
    __syncthreads();
    w.logits(s_cur, stage_k(0));
    for (int j = 0; j < n_tiles; ++j) {
      if (tail && j == n_tiles - 1) w.mask_tail(s_cur, j * kBlockN, p.lk, lane);
      cp_async_wait<kStages - 3>();
      __syncthreads();  // tile j + 1 is in; everyone is done with tile j - 1
      if (j + kStages - 1 < n_tiles) load_kv(j + kStages - 1);
      cp_async_commit();
      w.logits(s_next, stage_k(j + 1));
      w.softmax_pv(s_cur, stage_k(j) + kTileBytes, sl2);
#pragma unroll
      for (int mt = 0; mt < C::kMT; ++mt)
#pragma unroll
        for (int i = 0; i < C::kNT; ++i)
#pragma unroll
          for (int e = 0; e < 4; ++e) s_cur[mt][i][e] = s_next[mt][i][e];
    }
  }
  cp_async_wait<0>();  // no copy may still be in flight when the block exits

  w.store(p.out + b * p.o_batch + h * C::D, p.o_row, m0 + warp * C::kMT * 16, p.lq, lane);
}

// ---- Host side ----------------------------------------------------------------------------

template <class C>
void launch(const AttentionProblem& a) {
  FlashParams p;
  p.q = static_cast<const bf16*>(a.q);
  p.k = static_cast<const bf16*>(a.k);
  p.v = static_cast<const bf16*>(a.v);
  p.out = static_cast<bf16*>(a.out);
  p.q_row = a.q_row_stride, p.k_row = a.k_row_stride, p.v_row = a.v_row_stride, p.o_row = a.o_row_stride;
  p.q_batch = a.q_batch_stride, p.k_batch = a.k_batch_stride, p.v_batch = a.v_batch_stride;
  p.o_batch = a.o_batch_stride;
  p.lq = static_cast<int>(a.lq), p.lk = static_cast<int>(a.lk);
  p.scale_log2 = a.scale * 1.4426950408889634f;
  auto* kernel = flash_fwd_kernel<C>;
  cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, C::kSmemBytes);
  IB_CHECK(e == cudaSuccess, "flash_attention: cannot give the head dim {} kernel {} bytes of shared memory: {}", C::D,
           C::kSmemBytes, cudaGetErrorString(e));
  const dim3 grid(static_cast<unsigned>((a.lq + C::kBlockM - 1) / C::kBlockM), static_cast<unsigned>(a.heads),
                  static_cast<unsigned>(a.batch));
  kernel<<<grid, C::kThreads, C::kSmemBytes, a.stream>>>(p);
  e = cudaGetLastError();
  IB_CHECK(e == cudaSuccess, "flash_attention: launch failed (head dim {}, heads {}, batch {}, Lq {}, Lk {}): {}", a.head_dim,
           a.heads, a.batch, a.lq, a.lk, cudaGetErrorString(e));
}

// Head dim 128 tile shapes: <D, warps, m16 tiles per warp, keys per tile, stages, Q in registers,
// skip rescale, pipelined>. Variant 0 is the default; the others are kept for bench_attention_gpu
// (IB_FLASH_VARIANT=n) and run the GPU test's table too. H200, 40 heads, Lq = Lk = 32,760 / 75,600,
// TFLOP/s (torch 2.11's flash SDPA, FlashAttention-2: 361 / 356; cuDNN: 571 / 571):
//   8 warps x 2 m16, N48 (the default; 255 registers, 48 bytes spilled)  365 / 358
//     the same with 3 stages                                             359 / 355
//   8 warps x 2 m16, N64 (~140 bytes spilled)                            340 / 340, 3 stages 336 / 338
//   8 warps x 2 m16, N32                                                 333 / 335
//   8 warps x 1 m16, N64, Q in registers (the textbook shape)           309 / 309
//   4 warps x 2 m16, N64 (FlashAttention-2's 128 x 64, 2 blocks per SM) 301 / 299
//   earlier runs: 4 x 2 N32 321 / 325; 4 x 1 N64 with Q in registers 281 / 282; 8 x 1 N64 3 stages
//   302 / 299; with the rescale skip N32 303 / 304, N48 343 / 345, N64 333 / 335
//   pipelined (logits of tile j+1 beside the softmax of tile j): 8 x 2 N32 309 / 310, 8 x 1 N64 Q
//   in registers 301 / 304, 4 x 2 N32 294 / 295
// Two m16 tiles per warp halve the shared-memory reads per MMA and 256-row blocks halve the K/V
// traffic from L2; both paid more than the spills cost. Branches in the loop body (the rescale
// skip) and the software pipelining cost more than they saved: ptxas interleaves less.
void launch_d128(const AttentionProblem& a, int variant) {
  switch (variant) {
    case 1: return launch<FlashConfig<128, 8, 2, 48, 2, false, true>>(a);
    case 2: return launch<FlashConfig<128, 8, 2, 64, 2, false>>(a);
    case 3: return launch<FlashConfig<128, 8, 2, 32, 2, false>>(a);
    case 4: return launch<FlashConfig<128, 8, 1, 64, 2, true>>(a);
    case 5: return launch<FlashConfig<128, 4, 2, 64, 2, false>>(a);
    case 6: return launch<FlashConfig<128, 8, 2, 32, 3, false, false, true>>(a);
    case 7: return launch<FlashConfig<128, 8, 2, 48, 3, false>>(a);
    case 8: return launch<FlashConfig<128, 8, 2, 64, 3, false>>(a);
    default: return launch<FlashConfig<128, 8, 2, 48, 2, false>>(a);
  }
}

int variant_from_env() {
  const char* s = std::getenv("IB_FLASH_VARIANT");
  return s ? std::atoi(s) : 0;
}

}  // namespace

bool flash_attention_supports(int64_t head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128 || head_dim == 256;
}

void flash_attention(const AttentionProblem& p) {
  IB_CHECK(flash_attention_supports(p.head_dim),
           "flash_attention: head dim {} is not supported (built for 16, 32, 64, 128, 256)", p.head_dim);
  IB_CHECK(p.q && p.k && p.v && p.out, "flash_attention: null q, k, v or out pointer");
  IB_CHECK(p.batch >= 1 && p.batch <= 65535 && p.heads >= 1 && p.heads <= 65535,
           "flash_attention: batch {} and heads {} must be in 1 ... 65535", p.batch, p.heads);
  IB_CHECK(p.lq >= 1 && p.lk >= 1 && p.lq < (int64_t{1} << 30) && p.lk < (int64_t{1} << 30),
           "flash_attention: Lq {} and Lk {} must be in 1 ... 2^30", p.lq, p.lk);
  IB_CHECK(std::isfinite(p.scale) && p.scale > 0.0f, "flash_attention: scale must be finite and > 0, got {}", p.scale);
  const int64_t width = p.heads * p.head_dim;
  IB_CHECK(p.o_row_stride >= width, "flash_attention: output row stride {} is below heads x head dim = {}",
           p.o_row_stride, width);
  // cp.async and the paired stores move 16 and 4 bytes: rows must start 16-byte aligned.
  const int64_t strides[] = {p.q_row_stride, p.k_row_stride, p.v_row_stride, p.o_row_stride,
                             p.q_batch_stride, p.k_batch_stride, p.v_batch_stride, p.o_batch_stride};
  for (int64_t s : strides)
    IB_CHECK(s >= 0 && s % 8 == 0,
             "flash_attention: strides must be non-negative multiples of 8 elements (16 bytes), got q {}/{}, "
             "k {}/{}, v {}/{}, out {}/{} (row/batch)",
             p.q_row_stride, p.q_batch_stride, p.k_row_stride, p.k_batch_stride, p.v_row_stride, p.v_batch_stride,
             p.o_row_stride, p.o_batch_stride);
  for (const void* ptr : {p.q, p.k, p.v, static_cast<const void*>(p.out)})
    IB_CHECK(reinterpret_cast<uintptr_t>(ptr) % 16 == 0, "flash_attention: q, k, v and out must be 16-byte aligned");
  switch (p.head_dim) {
    case 16: return launch<FlashConfig<16, 4, 1, 64, 2, true>>(p);
    case 32: return launch<FlashConfig<32, 4, 1, 64, 2, true>>(p);
    case 64: return launch<FlashConfig<64, 8, 1, 64, 2, true>>(p);
    case 128: return launch_d128(p, variant_from_env());
    case 256: return launch<FlashConfig<256, 4, 1, 32, 2, false>>(p);
  }
}

}  // namespace ib::gpu
