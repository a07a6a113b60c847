// Our Hopper (sm_90a) attention kernel for head dim 128, in the structure of FlashAttention-3:
// TMA loads into 128-byte-swizzled shared memory, warpgroup MMAs (wgmma) with f32 accumulators,
// a producer warpgroup and two consumer warpgroups.
//
// A work item is 128 query rows of one head of one batch entry. With many keys (>= 2048) a block
// takes one item; with few (the cross-attention's), persistent blocks (one per SM) take items in
// turn and run their key tiles as one stream, the next item's first logits overlapping the last
// P V of the one before (hopper_common.cuh: consume_kv). A block has 3 warpgroups, 384 threads:
// - warpgroup 0 is the producer: one thread loads each item's Q tile, then every key and value tile
//   of the head (128 rows x 128 features each) into kStages buffers, each buffer guarded by a
//   "full" mbarrier (the TMA's bytes arrived) and an "empty" one (both consumers are done with
//   it). It gives most of its registers to the consumers (setmaxnreg).
// - warpgroups 1 and 2 are consumers, 64 query rows each. Per key tile j a consumer issues
//   S_j = Q K_j^T (wgmma from shared memory) and O += P_{j-1} V_{j-1} (P from registers: the
//   logits' accumulator layout is the A operand's register layout, so P never goes through shared
//   memory; V is read MN-major, transposed by the wgmma). It waits for both, computes the online
//   softmax of tile j (row max, exp2, row sums), rescales O and packs P_j to bf16. (The source
//   waits for S_j alone before the softmax, FlashAttention-3's "intra-warpgroup overlap", but
//   ptxas hoists the second wait above it; forcing the overlap measured slower.)
// - The two consumers take turns issuing their products (two named barriers, "ping-pong"), so
//   one's softmax runs while the tensor cores work on the other's products.
// - The key tiles run last tile first: only that one (it may be partial) masks keys, and the main
//   loop has no branch.
// The logits never leave registers; the softmax is in f32 in the exp2 domain, as in our flash
// kernel (flash_attention.cu), whose tests this kernel shares (tests/gpu/flash_attention_gpu_test.cc).
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "core/check.h"
#include "gpu/attention.h"
#include "gpu/hopper_common.cuh"

namespace ib::gpu {

namespace {

using namespace hopper;

constexpr int kD = kHeadDim;

// One tile shape: kBlockN keys per tile (128, 176 or 192, the N of the logits' wgmma), kStages key and
// value buffers each. A tile of R rows is stored as two column halves (features 0-63, 64-127) of
// R x 128 bytes, 128-byte swizzled. Shared memory: Q, kStages key tiles, kStages value tiles, then
// the pipeline's barriers (KvBarriers); 1024 spare bytes align the base.
template <int kBlockN_, int kStages_>
struct HopperConfig {
  static constexpr int kBlockN = kBlockN_, kStages = kStages_;
  static constexpr int kQHalf = kBlockM * 128, kQBytes = 2 * kQHalf;
  static constexpr int kKVHalf = kBlockN * 128, kKVBytes = 2 * kKVHalf;
  static constexpr int kKOff = kQBytes, kVOff = kKOff + kStages * kKVBytes, kBarOff = kVOff + kStages * kKVBytes;
  static constexpr int kSmemBytes = 1024 + kBarOff + kv_barrier_bytes(kStages);
  static_assert(kBlockN % 16 == 0 && kKVHalf % 1024 == 0 && kSmemBytes <= 232448, "tile shape");
};

struct HopperParams {
  __nv_bfloat16* out;
  int64_t o_row, o_batch;  // elements
  int lq, lk;
  float scale_log2;        // scale * log2(e)
  WorkGrid grid;
};

#ifdef IB_HOPPER_KERNEL

// ---- bf16 wgmma wrappers --------------------------------------------------------------

// d (64 x N f32: this thread's N / 2 values) (+)= A (64 x 16, shared memory) * B (16 x N, shared
// memory), N = 128, 176 or 192; accumulate = 0 overwrites d. Both operands K-major (the contraction
// dimension contiguous).
__device__ __forceinline__ void wgmma_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}
__device__ __forceinline__ void wgmma_ss(float (&d)[88], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %90, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n176k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87}, "
      "%88, %89, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}
__device__ __forceinline__ void wgmma_ss(float (&d)[96], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, "
      "%96, %97, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}

// d (64 x 128 f32) += A (64 x 16, registers: the m16n8k16 A fragment of this warp's 16 rows) *
// B (16 x 128, shared memory, MN-major: the N dimension contiguous, so transposed).
__device__ __forceinline__ void wgmma_rs(float (&d)[64], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "{%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

// ---- Kernel -------------------------------------------------------------------------------

template <class C, bool kStream>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_attention_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                            const __grid_constant__ CUtensorMap tv, const HopperParams p) {
  constexpr int kBlockN = C::kBlockN;
  extern __shared__ uint8_t smem_raw[];
  const BlockPlace<C> blk(smem_raw, p.lk, p.grid);

  if (blk.tid == 0) blk.bar.init(8);  // one arrival per consumer warp releases a buffer
  __syncthreads();

  if (blk.wg == 0) {  // ---- producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
    if (blk.tid == 0) {
      auto load_q = [&](int i, uint32_t full) {  // as two column halves (features 0-63, 64-127)
        const WorkItem it = blk.item(i);
        mbar_expect_tx(full, C::kQBytes);
        tma_load(blk.sq, &tq, it.head * kD, it.m_tile * kBlockM, it.batch, full);
        tma_load(blk.sq + C::kQHalf, &tq, it.head * kD + 64, it.m_tile * kBlockM, it.batch, full);
      };
      // Each key or value tile as two column halves too.
      auto load = [&](const CUtensorMap* map, uint32_t dst, int i, int j, uint32_t full) {
        const WorkItem it = blk.item(i);
        mbar_expect_tx(full, C::kKVBytes);
        tma_load(dst, map, it.head * kD, blk.first_key(j), it.batch, full);
        tma_load(dst + C::kKVHalf, map, it.head * kD + 64, blk.first_key(j), it.batch, full);
      };
      produce_kv(
          blk.bar, blk.items, blk.n_tiles, load_q,
          [&](int i, int j, int st, uint32_t full) { load(&tk, blk.sk + st * C::kKVBytes, i, j, full); },
          [&](int i, int j, int st, uint32_t full) { load(&tv, blk.sv + st * C::kKVBytes, i, j, full); });
    }
    return;
  }

  // ---- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
  const int c = blk.wg - 1;  // rows 64c .. 64c + 63 of the block's 128
  const int lane = blk.tid % 32;

  float s[kBlockN / 2], o[64];
  uint32_t pf[kBlockN / 4];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.0f;
  // The running row maxima and sums of the current item; done_sum: the previous item's sums, kept
  // by its successor's first softmax until finish stores that item.
  float row_max[2], row_sum[2] = {0.0f, 0.0f}, done_sum[2];
  const float sl = p.scale_log2;

  // This thread's logits and outputs: rows g and g + 8 of the warp's 16 (g = lane / 4), columns
  // 8 * jj + 2 * (lane % 4) + {0, 1}: s[4 jj + {0, 1}] in row g, s[4 jj + {2, 3}] in row g + 8.
  const uint32_t q_rows = blk.sq + static_cast<uint32_t>(c) * 8192u;  // 64 rows x 128 bytes in each half

  auto issue_logits = [&](int stage) {
    const uint32_t kt = blk.sk + stage * C::kKVBytes;
#pragma unroll
    for (int kk = 0; kk < kD / 16; ++kk) {  // 16 features a step: 4 steps per 128-byte half
      const uint32_t q_off = (kk / 4) * C::kQHalf + (kk % 4) * 32, k_off = (kk / 4) * C::kKVHalf + (kk % 4) * 32;
      wgmma_ss(s, smem_desc(q_rows + q_off, 16, 1024), smem_desc(kt + k_off, 16, 1024), kk > 0);
    }
  };
  auto issue_pv = [&](int stage) {
    const uint32_t vt = blk.sv + stage * C::kKVBytes;
#pragma unroll
    for (int kk = 0; kk < kBlockN / 16; ++kk) {  // 16 keys (rows of V, 2048 bytes) a step
      const uint32_t a[4] = {pf[4 * kk], pf[4 * kk + 1], pf[4 * kk + 2], pf[4 * kk + 3]};
      wgmma_rs(o, a, smem_desc(vt + kk * 2048, C::kKVHalf, 1024));
    }
  };
  // The softmax of the logits in s for one key tile, up to (not including) the rescale of O: the new
  // row maxima, the probabilities in place of the logits, the row sums. Returns the factors by
  // which O and the sums of the previous tiles shrink.
  auto softmax = [&](bool first, float (&corr)[2]) {
    if (first) {  // a new item: its rows start afresh (corr comes out 0)
      done_sum[0] = row_sum[0];
      done_sum[1] = row_sum[1];
      row_max[0] = row_max[1] = -INFINITY;
      if (blk.n_tiles * kBlockN > p.lk) mask_keys(s, blk.first_key(0), p.lk, lane);  // the partial tile
    }
    update_row_max(s, row_max, sl, corr);
    const float ms[2] = {row_max[0] * sl, row_max[1] * sl};
    float sum[2] = {0.0f, 0.0f};
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) {
      const int r = (i / 2) % 2;
      s[i] = fast_exp2(fmaf(s[i], sl, -ms[r]));
      sum[r] += s[i];
    }
    row_sum[0] = row_sum[0] * corr[0] + sum[0];
    row_sum[1] = row_sum[1] * corr[1] + sum[1];
  };
  auto rescale_and_pack = [&](const float (&corr)[2]) {
#pragma unroll
    for (int i = 0; i < 64; ++i) o[i] *= corr[(i / 2) % 2];
#pragma unroll
    for (int i = 0; i < kBlockN / 4; ++i) pf[i] = pack_bf16(s[2 * i], s[2 * i + 1]);
  };

  // Item i's O / row sum, rounded to bf16, straight to global memory (the last item's sums are
  // still the running ones).
  auto finish = [&](int i) {
    const bool last = i + 1 == blk.items;
    float inv[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float l = last ? row_sum[r] : done_sum[r];
      l += __shfl_xor_sync(0xffffffffu, l, 1);
      l += __shfl_xor_sync(0xffffffffu, l, 2);
      inv[r] = 1.0f / l;
    }
    blk.store(blk.item(i), o, inv, c, p.lq, p.out, p.o_batch, p.o_row);
  };

  consume_kv<kStream>(blk.bar, blk.items, blk.n_tiles, c, lane, s, o, issue_logits, issue_pv, softmax,
                      rescale_and_pack, finish);
}

#else  // host pass, or a device pass for an architecture without wgmma: never launched there

template <class C, bool kStream>
__global__ void hopper_attention_kernel(const __grid_constant__ CUtensorMap, const __grid_constant__ CUtensorMap,
                                        const __grid_constant__ CUtensorMap, const HopperParams) {}

#endif

// ---- Host side ----------------------------------------------------------------------------

// q, k or v as a [batch][rows][heads * 128] bf16 tensor map, boxes of box_rows rows x 64 features.
CUtensorMap make_map(const void* base, int64_t width, int64_t rows, int64_t batch, int64_t row_stride,
                     int64_t batch_stride, int box_rows) {
  return hopper::make_map(CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, base, width, rows, batch, row_stride, batch_stride, 64,
                          box_rows);
}

}  // namespace

bool hopper_attention_supports(const AttentionProblem& p) {
  if (p.fp8_scales || !hopper::problem_fits(p)) return false;
  for (int64_t s : {p.q_row_stride, p.k_row_stride, p.v_row_stride, p.q_batch_stride, p.k_batch_stride, p.v_batch_stride})
    if (s % 8 != 0) return false;  // the TMA's strides are multiples of 16 bytes
  return hopper::aligned16(p.q) && hopper::aligned16(p.k) && hopper::aligned16(p.v);
}

namespace {

template <class C>
void launch(const AttentionProblem& p) {
  const int64_t width = p.heads * kD;
  const CUtensorMap tq = make_map(p.q, width, p.lq, p.batch, p.q_row_stride, p.q_batch_stride, kBlockM);
  const CUtensorMap tk = make_map(p.k, width, p.lk, p.batch, p.k_row_stride, p.k_batch_stride, C::kBlockN);
  const CUtensorMap tv = make_map(p.v, width, p.lk, p.batch, p.v_row_stride, p.v_batch_stride, C::kBlockN);
  HopperParams hp{};
  hp.out = static_cast<__nv_bfloat16*>(p.out);
  hp.o_row = p.o_row_stride;
  hp.o_batch = p.o_batch_stride;
  hp.lq = static_cast<int>(p.lq);
  hp.lk = static_cast<int>(p.lk);
  hp.scale_log2 = p.scale * 1.4426950408889634f;
  hp.grid = hopper::work_grid(p);
  hopper::launch<hopper_attention_kernel<C, true>, hopper_attention_kernel<C, false>, C::kSmemBytes>(
      "hopper attention", p, hp.grid, tq, tk, tv, hp);
}

// The dev switch IB_HOPPER_VARIANT=<n> picks a tile shape other than the default (for timing them
// in `inbetween bench --stages attention` and testing them all): 0 128 keys x 2 stages, 1 128 x 3,
// 2 176 x 2, 3 192 x 2.
int hopper_variant() {
  const char* v = std::getenv("IB_HOPPER_VARIANT");
  return v ? std::atoi(v) : 2;
}

}  // namespace

void hopper_attention(const AttentionProblem& p) {
  IB_CHECK(p.q && p.k && p.v && p.out, "hopper attention: null q, k, v or out pointer");
  IB_CHECK(std::isfinite(p.scale) && p.scale > 0.0f, "hopper attention: scale must be finite and > 0, got {}", p.scale);
  IB_CHECK(hopper_attention_supports(p),
           "hopper attention: needs an sm_90 GPU, head dim 128, rows 16-byte aligned (head dim {}, Lq {}, Lk {})",
           p.head_dim, p.lq, p.lk);
  switch (hopper_variant()) {
    case 1:
      launch<HopperConfig<128, 3>>(p);
      return;
    case 3:
      launch<HopperConfig<192, 2>>(p);
      return;
    case 0:
      launch<HopperConfig<128, 2>>(p);
      return;
    default:  // 2, the fastest on the H200 (bench/NOTES.md)
      launch<HopperConfig<176, 2>>(p);
      return;
  }
}

}  // namespace ib::gpu
