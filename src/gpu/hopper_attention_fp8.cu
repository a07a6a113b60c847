// Our Hopper (sm_90a) fp8 attention kernel for head dim 128 (`--attention fp8` on an sm_90 GPU):
// hopper_attention.cu's structure (TMA loads into 128-byte-swizzled shared memory, a producer
// warpgroup and two consumer warpgroups taking turns on the tensor cores, the partial key tile
// first) with e4m3 operands and f32 accumulation:
// - q and k are e4m3 with one scale each, v is e4m3 transposed per head (features x keys, the keys
//   contiguous): e4m3 wgmma reads both shared-memory operands K-major only, and in P V the
//   contraction runs over the keys. quantize_qkv_fp8_vt (attention_fp8.h) writes this layout.
// - P goes from the logits' f32 accumulator registers straight into the A operand registers of
//   P V. The 8-bit A fragment holds, per thread, four consecutive keys (4t .. 4t + 3 and
//   16 + 4t .. 19 + 4t of each 32) where the accumulator holds pairs (2t, 2t + 1 and 8 + 2t,
//   9 + 2t). Instead of trading bytes between threads, the transposed v stores the keys of each
//   32-key group in that order (fp8_vt_position), so the sum over the keys pairs each P byte with
//   its own v row.
// - The probabilities are scaled by 2^7 .. 2^8.75 (a power of two per row, exact) into e4m3's
//   range; after a row's first tile they are computed before the tile's row maxima, which only
//   decide whether to redo them (the softmax below). The output divides by the row sum of the same
//   scaled values, so the factor cancels. The output is bf16:
//   O * descale(v) / row sum, straight to global memory (no e4m3 output, no dequantisation pass).
// Tests: tests/gpu/attention_fp8_gpu_test.cc (against the CPU composition: per-tensor e4m3 q, k, v
// dequantised, then ops::cpu::attention in f32).
#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>

#include "core/check.h"
#include "gpu/attention.h"
#include "gpu/attention_fp8.h"
#include "gpu/hopper_common.cuh"

namespace ib::gpu {

namespace {

using namespace hopper;

constexpr int kD = kHeadDim;
constexpr int kOnesRows = 8;   // rows of ones under each value box: P V also sums P's rows

// One tile shape: kBlockN keys per tile, kStages key and value buffers each. Rows of q and k are 128
// bytes (one 128-byte swizzle row). A value tile is kBlockN / kVtBox boxes of 128 features x kVtBox
// keys (128, 64 or 32: the box's rows are one swizzle row of that many bytes), each followed by 8
// rows of e4m3 ones written once at the start: the P V product's columns 128 .. 135 are then P's
// row sums (of the e4m3 probabilities it multiplies), which spares the softmax its additions. Each
// box starts on a 1024-byte boundary. Shared memory: q, kStages key tiles, kStages value tiles,
// then the pipeline's barriers (KvBarriers); 1024 spare bytes align the base. kTileBytes: what the
// TMA brings of a key tile, and of a value tile (the same 128 x kBlockN bytes, transposed).
template <int kBlockN_, int kStages_, int kVtBox_>
struct Fp8Config {
  static constexpr int kBlockN = kBlockN_, kStages = kStages_, kVtBox = kVtBox_;
  static constexpr int kQBytes = kBlockM * kD, kTileBytes = kBlockN * kD;
  static constexpr int kVBox = ((kD + kOnesRows) * kVtBox + 1023) / 1024 * 1024, kVBytes = kBlockN / kVtBox * kVBox;
  static constexpr int kKOff = kQBytes, kVOff = kKOff + kStages * kTileBytes, kBarOff = kVOff + kStages * kVBytes;
  static constexpr int kSmemBytes = 1024 + kBarOff + kv_barrier_bytes(kStages);
  static_assert(kBlockN % kVtBox == 0 && kVtBox % 32 == 0 && kBlockN % 32 == 0 && kTileBytes % 1024 == 0 &&
                    kTileBytes < kVBytes && kSmemBytes <= 232448,
                "tile shape");
};

struct Fp8Params {
  __nv_bfloat16* out;
  int64_t o_row, o_batch;  // elements
  int lq, lk;
  float scale_log2;        // scale * log2(e), before the descales of q and k
  const float* scales;     // the device scales (Fp8Scale)
  WorkGrid grid;
};

#ifdef IB_HOPPER_KERNEL

// ---- e4m3 wgmma wrappers --------------------------------------------------------------

// d (64 x N f32: this thread's N / 2 values) (+)= A (64 x 32, shared memory) * B (32 x N, shared
// memory), both K-major, N = 128, 192 or 224; accumulate = 0 overwrites d.
__device__ __forceinline__ void wgmma_fp8_ss(float (&d)[64], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, "
      "%64, %65, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}
__device__ __forceinline__ void wgmma_fp8_ss(float (&d)[96], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %98, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n192k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95}, "
      "%96, %97, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}
__device__ __forceinline__ void wgmma_fp8_ss(float (&d)[112], uint64_t desc_a, uint64_t desc_b, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %114, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n224k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111}, "
      "%112, %113, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111])
      : "l"(desc_a), "l"(desc_b), "r"(accumulate));
}
// d (64 x 136 f32) += A (64 x 32 e4m3, registers: four bytes of keys per register, rows g and
// g + 8 of the warp's 16) * B (32 x 136, shared memory, K-major): v's 128 features and 8 rows of
// ones, whose columns of d are the row sums of P.
__device__ __forceinline__ void wgmma_fp8_rs(float (&d)[68], const uint32_t (&a)[4], uint64_t desc_b) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, 1, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n136k32.f32.e4m3.e4m3 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67}, "
      "{%68, %69, %70, %71}, %72, p, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b));
}

// Four floats to four e4m3 bytes, the first in the lowest byte.
__device__ __forceinline__ uint32_t pack_e4m3(float a, float b, float c, float d) {
  const uint32_t lo = __nv_cvt_float2_to_fp8x2(make_float2(a, b), __NV_SATFINITE, __NV_E4M3);
  const uint32_t hi = __nv_cvt_float2_to_fp8x2(make_float2(c, d), __NV_SATFINITE, __NV_E4M3);
  return lo | (hi << 16);
}

// This tile's probabilities 2^(x - jump of the row) (x: the logits after the row's offset, s's
// accumulator layout) into the A fragments of P V: per 32 keys (x[16 kk ..]), register 0 holds row
// g's keys 2t, 2t+1, 8+2t, 9+2t (positions 4t .. 4t+3 of the permuted v), register 1 row g + 8's,
// registers 2 and 3 the same for keys 16 ... kShift = false: no jump (j0, j1 unused).
template <bool kShift, int kS>
__device__ __forceinline__ void pack_probabilities(const float (&x)[kS], uint32_t (&pf)[kS / 4], float j0, float j1) {
  auto e = [&](float v, float j) { return fast_exp2(kShift ? v - j : v); };
#pragma unroll
  for (int kk = 0; kk < kS / 16; ++kk) {
    const float* v = x + 16 * kk;
    pf[4 * kk + 0] = pack_e4m3(e(v[0], j0), e(v[1], j0), e(v[4], j0), e(v[5], j0));
    pf[4 * kk + 1] = pack_e4m3(e(v[2], j1), e(v[3], j1), e(v[6], j1), e(v[7], j1));
    pf[4 * kk + 2] = pack_e4m3(e(v[8], j0), e(v[9], j0), e(v[12], j0), e(v[13], j0));
    pf[4 * kk + 3] = pack_e4m3(e(v[10], j1), e(v[11], j1), e(v[14], j1), e(v[15], j1));
  }
}

// ---- Kernel -------------------------------------------------------------------------------

template <class C, bool kStream>
__global__ void __launch_bounds__(kThreads, 1)
    hopper_fp8_kernel(const __grid_constant__ CUtensorMap tq, const __grid_constant__ CUtensorMap tk,
                      const __grid_constant__ CUtensorMap tvt, const Fp8Params p) {
  constexpr int kBlockN = C::kBlockN, kStages = C::kStages;
  extern __shared__ uint8_t smem_raw[];
  const BlockPlace<C> blk(smem_raw, p.lk, p.grid);

  if (blk.tid == 0) blk.bar.init(8);  // one arrival per consumer warp releases a buffer
  {  // the rows of ones under every value box (e4m3 1.0 = 0x38), seen by the tensor cores' proxy
    constexpr int kVtBox = C::kVtBox, kWords = kOnesRows * kVtBox / 4, kBoxes = kStages * (kBlockN / kVtBox);
    uint8_t* const smem_base = smem_raw + (blk.base - smem_addr(smem_raw));
    for (int i = blk.tid; i < kBoxes * kWords; i += kThreads) {
      const int box = i / kWords, w = i % kWords;
      reinterpret_cast<uint32_t*>(smem_base + C::kVOff + box * C::kVBox + kD * kVtBox)[w] = 0x38383838u;
    }
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
  }
  __syncthreads();

  if (blk.wg == 0) {  // ---- producer
    asm volatile("setmaxnreg.dec.sync.aligned.u32 24;\n");
    if (blk.tid == 0) {
      produce_kv(
          blk.bar, blk.items, blk.n_tiles,
          [&](int i, uint32_t full) {
            const WorkItem it = blk.item(i);
            mbar_expect_tx(full, C::kQBytes);
            tma_load(blk.sq, &tq, it.head * kD, it.m_tile * kBlockM, it.batch, full);
          },
          [&](int i, int j, int st, uint32_t full) {
            const WorkItem it = blk.item(i);
            mbar_expect_tx(full, C::kTileBytes);
            tma_load(blk.sk + st * C::kTileBytes, &tk, it.head * kD, blk.first_key(j), it.batch, full);
          },
          [&](int i, int j, int st, uint32_t full) {  // kBlockN / kVtBox boxes of the transposed v
            const WorkItem it = blk.item(i);
            mbar_expect_tx(full, C::kTileBytes);
#pragma unroll
            for (int b = 0; b < kBlockN / C::kVtBox; ++b)
              tma_load(blk.sv + st * C::kVBytes + b * C::kVBox, &tvt, blk.first_key(j) + b * C::kVtBox, it.head * kD,
                       it.batch, full);
          });
    }
    return;
  }

  // ---- consumers
  asm volatile("setmaxnreg.inc.sync.aligned.u32 240;\n");
  const int c = blk.wg - 1;  // rows 64c .. 64c + 63 of the block's 128
  const int lane = blk.tid % 32;

  // o[0 .. 63]: the output's 128 columns; o[64 .. 67]: columns 128 .. 135, the row sums.
  float s[kBlockN / 2], o[68];
  uint32_t pf[kBlockN / 8];
#pragma unroll
  for (int i = 0; i < 68; ++i) o[i] = 0.0f;
  const float sl = p.scale_log2 * p.scales[kDescaleQ] * p.scales[kDescaleK];

  // This thread's logits and outputs: rows g and g + 8 of the warp's 16 (g = lane / 4), columns
  // 8 * jj + 2 * (lane % 4) + {0, 1}: s[4 jj + {0, 1}] in row g, s[4 jj + {2, 3}] in row g + 8.
  const uint32_t q_rows = blk.sq + static_cast<uint32_t>(c) * 64u * kD;

  auto issue_logits = [&](int stage) {
    const uint32_t kt = blk.sk + stage * C::kTileBytes;
#pragma unroll
    for (int kk = 0; kk < kD / 32; ++kk)  // 32 features (bytes) a step
      wgmma_fp8_ss(s, smem_desc(q_rows + kk * 32, 16, 1024), smem_desc(kt + kk * 32, 16, 1024), kk > 0);
  };
  auto issue_pv = [&](int stage) {
    const uint32_t vt = blk.sv + stage * C::kVBytes;
    constexpr int kSteps = C::kVtBox / 32;  // 32 keys a step
#pragma unroll
    for (int kk = 0; kk < kBlockN / 32; ++kk) {
      const uint32_t a[4] = {pf[4 * kk], pf[4 * kk + 1], pf[4 * kk + 2], pf[4 * kk + 3]};
      wgmma_fp8_rs(o, a, smem_desc(vt + (kk / kSteps) * C::kVBox + (kk % kSteps) * 32, 16, 8 * C::kVtBox, C::kVtBox));
    }
  };
  // The online softmax of a tile, its probabilities packed into the A fragments of the next P V
  // (the row sums are left to P V). off[r]: row r's offset, (its maximum so far) * sl - 7, so that
  // P = 2^(s * sl - off) <= 2^7 at that maximum, in e4m3's range (the factor cancels in the row
  // sum). An item's first tile takes its maxima first. Later tiles do not wait for theirs: x = s *
  // sl - off replaces s, 2^x is packed at once, and the tile's maxima of x, taken alongside, only
  // decide afterwards whether a row passed the headroom kHeadroom above 7 (P up to 2^8.75 = 430 of
  // e4m3's 448). Only then does the warp pack again: that row's offset rises by J = max x - 7, its O
  // shrinks by 2^-J, its P = 2^(x - J). Exact whatever the jump (x is kept); bench/NOTES.md
  // version 31.
  constexpr float kTop = 7.0f, kHeadroom = 1.75f;
  float off[2];
  bool rescale = true;  // whether O must be multiplied by corr (a first tile or a redo), warp-uniform
  auto softmax = [&](bool first, float (&corr)[2]) {
    float m[2];
    if (first) {  // a new item: its rows start afresh, O is cleared (corr 0)
      if (blk.n_tiles * kBlockN > p.lk) mask_keys(s, blk.first_key(0), p.lk, lane);  // the partial tile
      tile_row_max(s, m);
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        off[r] = m[r] * sl - kTop;
        corr[r] = 0.0f;
      }
#pragma unroll
      for (int i = 0; i < kBlockN / 2; ++i) s[i] = fmaf(s[i], sl, -off[(i / 2) % 2]);
      pack_probabilities<false>(s, pf, 0.0f, 0.0f);
      rescale = true;
      return;
    }
#pragma unroll
    for (int i = 0; i < kBlockN / 2; ++i) s[i] = fmaf(s[i], sl, -off[(i / 2) % 2]);
    pack_probabilities<false>(s, pf, 0.0f, 0.0f);
    tile_row_max(s, m);
    const bool over[2] = {m[0] > kTop + kHeadroom, m[1] > kTop + kHeadroom};
    corr[0] = corr[1] = 1.0f;
    rescale = __any_sync(0xffffffffu, over[0] || over[1]);
    if (rescale) {
      float jump[2];
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        jump[r] = over[r] ? m[r] - kTop : 0.0f;
        off[r] += jump[r];
        if (over[r]) corr[r] = fast_exp2(-jump[r]);
      }
      pack_probabilities<true>(s, pf, jump[0], jump[1]);
    }
  };
  // O rescaled where the softmax moved a row's offset (a first tile, a redo); otherwise every corr
  // is 1 and the multiplications are skipped, on the softmax's own vote.
  auto rescale_o = [&](const float (&corr)[2]) {
    if (rescale) {
#pragma unroll
      for (int i = 0; i < 68; ++i) o[i] *= corr[(i / 2) % 2];
    }
  };

  // Item i's O * descale(v) / row sum, rounded to bf16, straight to global memory. Every column of
  // the ones gives the row sum: o[64] for row g, o[66] for row g + 8.
  const float dv = p.scales[kDescaleV];
  auto finish = [&](int i) {
    const float inv[2] = {dv / o[64], dv / o[66]};
    blk.store(blk.item(i), o, inv, c, p.lq, p.out, p.o_batch, p.o_row);
  };

  consume_kv<kStream>(blk.bar, blk.items, blk.n_tiles, c, lane, s, o, issue_logits, issue_pv, softmax, rescale_o,
                      finish);
}

#else  // host pass, or a device pass for an architecture without wgmma: never launched there

template <class C, bool kStream>
__global__ void hopper_fp8_kernel(const __grid_constant__ CUtensorMap, const __grid_constant__ CUtensorMap,
                                  const __grid_constant__ CUtensorMap, const Fp8Params) {}

#endif

template <class C>
void launch(const AttentionProblem& p) {
  const int64_t width = p.heads * kD, vt_keys = fp8_vt_keys(p.lk);
  const CUtensorMap tq = make_map(CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.q, width, p.lq, p.batch, p.q_row_stride,
                                  p.q_batch_stride, kD, kBlockM);
  const CUtensorMap tk = make_map(CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.k, width, p.lk, p.batch, p.k_row_stride,
                                  p.k_batch_stride, kD, C::kBlockN);
  // The transposed v: [batch][heads * 128 features][vt_keys keys].
  const CUtensorMap tvt = make_map(CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.v_transposed, vt_keys, width, p.batch, vt_keys,
                                   width * vt_keys, C::kVtBox, kD, C::kVtBox);
  Fp8Params hp{};
  hp.out = static_cast<__nv_bfloat16*>(p.out);
  hp.o_row = p.o_row_stride;
  hp.o_batch = p.o_batch_stride;
  hp.lq = static_cast<int>(p.lq);
  hp.lk = static_cast<int>(p.lk);
  hp.scale_log2 = p.scale * 1.4426950408889634f;
  hp.scales = p.fp8_scales;
  hp.grid = hopper::work_grid(p);
  hopper::launch<hopper_fp8_kernel<C, true>, hopper_fp8_kernel<C, false>, C::kSmemBytes>(
      "hopper fp8 attention", p, hp.grid, tq, tk, tvt, hp);
}

// The dev switch IB_HOPPER_FP8_VARIANT=<n> picks a tile shape other than the default (for timing
// them in `inbetween bench --stages attention` and testing them all): keys a tile x stages, keys a
// value box: 0 128 x 2, 128; 1 128 x 3, 128; 2 192 x 2, 64; 3 224 x 2, 32; 4 192 x 3, 64.
int variant() {
  const char* v = std::getenv("IB_HOPPER_FP8_VARIANT");
  return v ? std::atoi(v) : 2;
}

}  // namespace

bool hopper_attention_fp8_supports(const AttentionProblem& p) {
  if (!p.fp8_scales || !p.v_transposed || !hopper::problem_fits(p)) return false;
  for (int64_t s : {p.q_row_stride, p.k_row_stride, p.q_batch_stride, p.k_batch_stride})
    if (s % 16 != 0) return false;  // the TMA's strides are multiples of 16 bytes
  return aligned16(p.q) && aligned16(p.k) && aligned16(p.v_transposed);
}

bool hopper_fp8_available() { return hopper::available(); }

void hopper_attention_fp8(const AttentionProblem& p) {
  IB_CHECK(p.q && p.k && p.v_transposed && p.out && p.fp8_scales,
           "hopper fp8 attention: null q, k, transposed v, out or scales pointer");
  IB_CHECK(std::isfinite(p.scale) && p.scale > 0.0f, "hopper fp8 attention: scale must be finite and > 0, got {}",
           p.scale);
  IB_CHECK(hopper_attention_fp8_supports(p),
           "hopper fp8 attention: needs an sm_90 GPU, head dim 128, q/k rows and the transposed v 16-byte aligned "
           "(head dim {}, Lq {}, Lk {})",
           p.head_dim, p.lq, p.lk);
  switch (variant()) {
    case 1:
      launch<Fp8Config<128, 3, 128>>(p);
      return;
    case 0:
      launch<Fp8Config<128, 2, 128>>(p);
      return;
    case 3:
      launch<Fp8Config<224, 2, 32>>(p);
      return;
    case 4:
      launch<Fp8Config<192, 3, 64>>(p);
      return;
    default:  // 2, the fastest on the H200 (bench/NOTES.md, version 15)
      launch<Fp8Config<192, 2, 64>>(p);
      return;
  }
}

}  // namespace ib::gpu
