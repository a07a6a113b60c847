// The pieces our two Hopper (sm_90a) attention kernels share (hopper_attention.cu: bf16,
// hopper_attention_fp8.cu: e4m3): PTX wrappers for the TMA, mbarriers, named barriers and the
// warpgroup MMAs' bookkeeping, the shared-memory matrix descriptor, the key/value pipeline (its
// barriers, the producer's loop and the consumers' ping-pong loop, into which each kernel plugs
// its own products and softmax), and on the host the tensor maps and the device check. Included
// by CUDA files only.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>

#include <algorithm>
#include <cstdint>
#include <mutex>

#include "core/check.h"
#include "gpu/attention.h"

namespace ib::gpu::hopper {

// The block both kernels run: head dim 128, 128 query rows (two consumer warpgroups of 64), a
// producer warpgroup and the two consumers.
constexpr int kHeadDim = 128;
constexpr int kBlockM = 128;
constexpr int kThreads = 384;

// A launch's work items (WorkItem below): query tiles of 128 rows, heads, and their product with
// the batch entries. Both kernels take it in their parameters.
struct WorkGrid {
  int m_tiles, heads, items;
};

// The shared-memory bytes of a kStages-deep key/value pipeline's barriers (KvBarriers below).
constexpr int kv_barrier_bytes(int stages) { return 8 * (2 + 4 * stages); }

#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define IB_HOPPER_KERNEL 1
#endif

#ifdef IB_HOPPER_KERNEL

// ---- PTX wrappers -------------------------------------------------------------------------
__device__ __forceinline__ uint32_t smem_addr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void mbar_init(uint32_t bar, uint32_t count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count));
}
__device__ __forceinline__ void mbar_expect_tx(uint32_t bar, uint32_t bytes) {
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(bar), "r"(bytes) : "memory");
}
__device__ __forceinline__ void mbar_arrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
// Waits until the phase of parity `parity` of the barrier has completed.
__device__ __forceinline__ void mbar_wait(uint32_t bar, uint32_t parity) {
  uint32_t done = 0;
  do {
    asm volatile(
        "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
        : "=r"(done)
        : "r"(bar), "r"(parity)
        : "memory");
  } while (!done);
}

// One box of a 3-D tensor map (coordinates: feature, row, batch entry) into shared memory.
__device__ __forceinline__ void tma_load(uint32_t dst, const CUtensorMap* map, int c0, int c1, int c2, uint32_t bar) {
  asm volatile(
      "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(dst),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(bar)
      : "memory");
}

__device__ __forceinline__ void named_bar_sync(int id) { asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory"); }
__device__ __forceinline__ void named_bar_arrive(int id) { asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory"); }

__device__ __forceinline__ void wgmma_fence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void wgmma_commit() { asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void wgmma_wait() {
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}
// Pins the registers of an accumulator at this point of the instruction stream, so that the
// compiler reads them only after the wgmma_wait before it.
template <int N>
__device__ __forceinline__ void pin(float (&r)[N]) {
#pragma unroll
  for (int i = 0; i < N; ++i) asm volatile("" : "+f"(r[i])::"memory");
}

// A wgmma shared-memory matrix descriptor for a 128-byte-swizzled operand (the layout the TMA
// writes with CU_TENSOR_MAP_SWIZZLE_128B and a 64-element box width). lbo: the byte offset between
// swizzle atoms along M/N (MN-major operands only), sbo: between groups of 8 rows.
// swizzle_bytes: 128 (the default), 64 or 32, as the TMA wrote the operand.
__device__ __forceinline__ uint64_t smem_desc(uint32_t addr, uint32_t lbo, uint32_t sbo, int swizzle_bytes = 128) {
  const uint64_t layout = swizzle_bytes == 128 ? 1 : swizzle_bytes == 64 ? 2 : 3;
  return static_cast<uint64_t>((addr & 0x3FFFF) >> 4) | (static_cast<uint64_t>((lbo >> 4) & 0x3FFF) << 16) |
         (static_cast<uint64_t>((sbo >> 4) & 0x3FFF) << 32) | (layout << 62);
}

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// ---- The key/value pipeline both kernels run ------------------------------------------------

// The first key of the j-th key tile processed: the last tile (the only one that can be partial)
// first, so that only the first tile's softmax masks keys and the main loop has no branch (worth
// 3% in the fp8 kernel, bench/NOTES.md version 15).
__device__ __forceinline__ int tile_first_key(int j, int n_tiles, int block_n) {
  return (j == 0 ? n_tiles - 1 : j - 1) * block_n;
}

// The shared-memory barriers of a kStages-deep key/value pipeline, 8 bytes each from `base`:
// q_full, k_full[kStages], v_full[kStages] (the TMA's bytes arrived), k_empty[kStages],
// v_empty[kStages] (every consumer warp is done with the buffer), q_empty (every consumer warp has
// issued and waited for its work item's last logits product: the next item's Q may come in).
template <int kStages>
struct KvBarriers {
  uint32_t base;
  __device__ uint32_t q_full() const { return base; }
  __device__ uint32_t k_full(int s) const { return base + 8u * (1 + s); }
  __device__ uint32_t v_full(int s) const { return base + 8u * (1 + kStages + s); }
  __device__ uint32_t k_empty(int s) const { return base + 8u * (1 + 2 * kStages + s); }
  __device__ uint32_t v_empty(int s) const { return base + 8u * (1 + 3 * kStages + s); }
  __device__ uint32_t q_empty() const { return base + 8u * (1 + 4 * kStages); }
  // By one thread, before the block's first __syncthreads.
  __device__ void init(uint32_t consumer_warps) const {
    mbar_init(q_full(), 1);
    mbar_init(q_empty(), consumer_warps);
    for (int s = 0; s < kStages; ++s) {
      mbar_init(k_full(s), 1);
      mbar_init(v_full(s), 1);
      mbar_init(k_empty(s), consumer_warps);
      mbar_init(v_empty(s), consumer_warps);
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
};

// The producer's loop (one thread) over the block's work items (items: how many): for item i, Q
// (load_q(i, full_barrier), once the consumers have released the previous item's) and key and
// value tiles 0 .. n_tiles - 1, each into the next stage of the pipeline as soon as the consumers
// have released it. The stages and their phases run on from one item to the next (the t-th tile
// of the block goes to stage t % kStages), so the next item's Q and first tiles arrive while the
// consumers finish the current one. load_k(i, j, stage, full_barrier) and load_v(...) set the
// barrier's expected bytes and issue the TMA loads.
template <int kStages, class LoadQ, class LoadK, class LoadV>
__device__ __forceinline__ void produce_kv(const KvBarriers<kStages>& b, int items, int n_tiles, LoadQ load_q,
                                           LoadK load_k, LoadV load_v) {
  int t = 0;
  for (int i = 0; i < items; ++i) {
    for (int j = 0; j < n_tiles; ++j, ++t) {
      const int s = t % kStages;
      const uint32_t parity = ((t / kStages) & 1) ^ 1;  // a fresh barrier counts as released
      mbar_wait(b.k_empty(s), parity);
      load_k(i, j, s, b.k_full(s));
      if (j == 0) {
        mbar_wait(b.q_empty(), (i & 1) ^ 1);
        load_q(i, b.q_full());
      }
      mbar_wait(b.v_empty(s), parity);
      load_v(i, j, s, b.v_full(s));
    }
  }
}

// The loop of consumer warpgroup c (0 or 1) of two over the block's work items, with the logits
// in s and the output accumulator in o. The block's key tiles form one stream: the t-th, tile
// t % n_tiles of item t / n_tiles, sits in stage t % kStages. Per tile t the warpgroup issues
// S_t = Q K_t^T (issue_logits(stage)) and P_{t-1} V_{t-1} (issue_pv(stage)) while holding the
// tensor cores (the two warpgroups take turns: named barriers 1 and 2, "ping-pong"), waits for
// both, releases the buffers, runs softmax(first_tile_of_item, corr) on S_t and
// rescale_and_pack(corr) (O rescaled; P_t packed into the A registers of the next P V, unless the
// softmax did that). Tile 0 has no P V before it; the last tile's P V closes the stream.
// kStream (a persistent block, several items): an item's first tile overlaps the previous item's
// last P V; once that is in, finish(i) stores item i's output from o (the softmax of a first tile
// has already restarted the row state, and its corr of 0 then clears O), and Q is released once an
// item's last logits are in, so that the producer can load the next item's. Without kStream the
// block has one item, and none of these per-item branches is compiled into the loop (with many key
// tiles an item they cost more than the overlap gains: bench/NOTES.md version 30).
template <bool kStream, int kStages, int kS, int kO, class IssueS, class IssuePV, class Softmax, class Pack,
          class Finish>
__device__ __forceinline__ void consume_kv(const KvBarriers<kStages>& b, int items, int n_tiles, int c, int lane,
                                           float (&s)[kS], float (&o)[kO], IssueS issue_logits, IssuePV issue_pv,
                                           Softmax softmax, Pack rescale_and_pack, Finish finish) {
  const int my_bar = 1 + c, other_bar = 2 - c;  // named barriers 1 and 2 (0 is __syncthreads)
  // The phase parity of the stage's use by tile t.
  auto phase = [](int t) { return static_cast<uint32_t>((t / kStages) & 1); };
  // One warp's arrival on an "empty" barrier once all its lanes are past their wgmma wait.
  auto release = [&](uint32_t bar) {
    __syncwarp();
    if (lane == 0) mbar_arrive(bar);
  };
  if (c == 1) named_bar_arrive(1);  // consumer 0 issues first

  // Tile 0: logits only.
  float corr[2];
  mbar_wait(b.q_full(), 0);
  mbar_wait(b.k_full(0), 0);
  named_bar_sync(my_bar);
  wgmma_fence();
  issue_logits(0);
  wgmma_commit();
  named_bar_arrive(other_bar);
  wgmma_wait<0>();
  pin(s);
  release(b.k_empty(0));
  if (kStream && n_tiles == 1) release(b.q_empty());
  softmax(true, corr);
  rescale_and_pack(corr);

  const int total = items * n_tiles;
  // j = t % n_tiles
  for (int t = 1, j = 1 % n_tiles; t < total; ++t, j = j + 1 == n_tiles ? 0 : j + 1) {
    const int st = t % kStages, sp = (t - 1) % kStages;
    if (kStream && j == 0) mbar_wait(b.q_full(), static_cast<uint32_t>((t / n_tiles) & 1));  // its item's Q
    mbar_wait(b.k_full(st), phase(t));
    mbar_wait(b.v_full(sp), phase(t - 1));
    named_bar_sync(my_bar);
    wgmma_fence();
    issue_logits(st);
    wgmma_commit();
    issue_pv(sp);
    wgmma_commit();
    named_bar_arrive(other_bar);
    wgmma_wait<1>();  // the logits of tile t
    pin(s);
    release(b.k_empty(st));
    if (kStream && j == n_tiles - 1) release(b.q_empty());  // the item's last logits are in
    // P_{t-1} V_{t-1} too, before the softmax: so the softmax does not overlap this warpgroup's
    // own P V, only the other warpgroup's products. (ptxas moved this wait up here even when the
    // source had it after the softmax (the SASS, sixth session); forcing it below the softmax
    // measured slower in both kernels, bench/NOTES.md version 15.) The softmax may thus write
    // P's registers, which that P V read.
    wgmma_wait<0>();
    pin(o);
    release(b.v_empty(sp));
    softmax(kStream && j == 0, corr);
    if (kStream && j == 0) finish(t / n_tiles - 1);  // O holds the previous item's whole output
    rescale_and_pack(corr);
  }

  // The last tile's P V.
  const int sl = (total - 1) % kStages;
  mbar_wait(b.v_full(sl), phase(total - 1));
  named_bar_sync(my_bar);
  wgmma_fence();
  issue_pv(sl);
  wgmma_commit();
  named_bar_arrive(other_bar);
  wgmma_wait<0>();
  pin(o);
  release(b.v_empty(sl));
  finish(items - 1);
  if (c == 0) named_bar_sync(my_bar);  // consumer 1's last arrival
}

// ---- The consumers' softmax and output, on the wgmma accumulator layout ---------------------
// A thread holds rows g and g + 8 of its warp's 16 (g = lane / 4) and, of each group of 8
// columns jj, columns 8 jj + 2 (lane % 4) + {0, 1}: s[4 jj + {0, 1}] in row g, s[4 jj + {2, 3}]
// in row g + 8.

// Logits of keys at or past lk (this tile's first key: key0) get no weight.
template <int kS>
__device__ __forceinline__ void mask_keys(float (&s)[kS], int key0, int lk, int lane) {
#pragma unroll
  for (int jj = 0; jj < kS / 4; ++jj)
#pragma unroll
    for (int e = 0; e < 4; ++e)
      if (key0 + 8 * jj + 2 * (lane % 4) + (e & 1) >= lk) s[4 * jj + e] = -INFINITY;
}

// The maxima of rows g and g + 8 over this tile's values x (four independent chains a row, then
// the quad's shuffles: every thread of a row's quad gets the row's maximum).
template <int kS>
__device__ __forceinline__ void tile_row_max(const float (&x)[kS], float (&m)[2]) {
  static_assert(kS % 4 == 0 && kS >= 16, "whole column groups, at least 4");
  float m4[2][4];
#pragma unroll
  for (int q = 0; q < 4; ++q) {
    m4[0][q] = fmaxf(x[4 * q], x[4 * q + 1]);
    m4[1][q] = fmaxf(x[4 * q + 2], x[4 * q + 3]);
  }
#pragma unroll
  for (int jj = 4; jj < kS / 4; ++jj) {
    m4[0][jj % 4] = fmaxf(m4[0][jj % 4], fmaxf(x[4 * jj], x[4 * jj + 1]));
    m4[1][jj % 4] = fmaxf(m4[1][jj % 4], fmaxf(x[4 * jj + 2], x[4 * jj + 3]));
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = fmaxf(fmaxf(m4[r][0], m4[r][1]), fmaxf(m4[r][2], m4[r][3]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    m[r] = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
  }
}

// The running row maxima of rows g and g + 8 updated with this tile's logits; corr[r] =
// exp2((old - new) * sl), the factor by which the earlier tiles' sums and O shrink (0 on the first
// tile: the old maximum is -inf).
template <int kS>
__device__ __forceinline__ void update_row_max(const float (&s)[kS], float (&row_max)[2], float sl, float (&corr)[2]) {
  float m[2];
  tile_row_max(s, m);
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float mx = fmaxf(row_max[r], m[r]);
    corr[r] = fast_exp2((row_max[r] - mx) * sl);
    row_max[r] = mx;
  }
}

// The output's 128 features of rows row0 and row0 + 8 (those below lq) times inv[r], rounded to
// bf16, from o (the accumulator layout above) to out (this thread's first column; row stride
// o_row elements).
template <int kO>
__device__ __forceinline__ void store_rows_bf16(const float (&o)[kO], const float (&inv)[2], int row0, int lq,
                                                __nv_bfloat16* out, int64_t o_row) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int row = row0 + 8 * r;
    if (row >= lq) continue;
    __nv_bfloat16* dst = out + row * o_row;
#pragma unroll
    for (int jj = 0; jj < 16; ++jj)
      *reinterpret_cast<uint32_t*>(dst + 8 * jj) = pack_bf16(o[4 * jj + 2 * r] * inv[r], o[4 * jj + 2 * r + 1] * inv[r]);
  }
}

// A work item: 128 query rows (m_tile) of one head of one batch entry. Items are numbered with
// the query tiles fastest, then heads, then batch entries, so that blocks running side by side
// work on one head and share its keys and values in L2.
struct WorkItem {
  int m_tile, head, batch;
};

// Where a block of either kernel stands: its shared memory (smem_raw aligned up to the swizzle's
// 1024 bytes: q first, then C's key, value and barrier offsets), its thread and warpgroup (0 the
// producer, 1 and 2 the consumers), its work items (blockIdx.x, + gridDim.x, ... below
// grid.items: one, or several in a persistent grid) and the key tiles of each.
template <class C>
struct BlockPlace {
  uint32_t base, sq, sk, sv;
  KvBarriers<C::kStages> bar;
  int tid, wg, n_tiles, items;
  WorkGrid grid;

  __device__ BlockPlace(const uint8_t* smem_raw, int lk, const WorkGrid& g)
      : base((smem_addr(smem_raw) + 1023u) & ~1023u),
        sq(base),
        sk(base + C::kKOff),
        sv(base + C::kVOff),
        bar{base + C::kBarOff},
        tid(static_cast<int>(threadIdx.x)),
        wg(tid / 128),
        n_tiles((lk + C::kBlockN - 1) / C::kBlockN),
        items((g.items - static_cast<int>(blockIdx.x) + static_cast<int>(gridDim.x) - 1) /
              static_cast<int>(gridDim.x)),
        grid(g) {}

  // This block's i-th work item.
  __device__ WorkItem item(int i) const {
    const int w = static_cast<int>(blockIdx.x) + i * static_cast<int>(gridDim.x);
    return WorkItem{w % grid.m_tiles, (w / grid.m_tiles) % grid.heads, w / (grid.m_tiles * grid.heads)};
  }

  // The first key of the j-th key tile processed (tile_first_key).
  __device__ int first_key(int j) const { return tile_first_key(j, n_tiles, C::kBlockN); }

  // Consumer c's output rows of item it (its accumulator o, times inv) to out ([batch][rows][heads
  // * 128], strides o_batch and o_row elements) as bf16 (store_rows_bf16).
  template <int kO>
  __device__ void store(const WorkItem& it, const float (&o)[kO], const float (&inv)[2], int c, int lq,
                        __nv_bfloat16* out, int64_t o_batch, int64_t o_row) const {
    const int warp = (tid % 128) / 32, lane = tid % 32;
    const int row0 = it.m_tile * kBlockM + 64 * c + 16 * warp + lane / 4;
    store_rows_bf16(o, inv, row0, lq,
                    out + it.batch * o_batch + static_cast<int64_t>(it.head) * kHeadDim + 2 * (lane % 4), o_row);
  }
};

#endif  // IB_HOPPER_KERNEL

// ---- Host side ----------------------------------------------------------------------------

inline PFN_cuTensorMapEncodeTiled_v12000 tensor_map_encoder() {
  static PFN_cuTensorMapEncodeTiled_v12000 fn = [] {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) != cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      f = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
  }();
  return fn;
}

// Whether the current device runs the sm_90a instructions (sm_90 only) and the driver encodes
// tensor maps.
inline bool device_is_sm90() {
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) return false;
  if (cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) return false;
  return major == 9 && minor == 0 && tensor_map_encoder() != nullptr;
}

// A [batch][rows][width] tensor (elements of elem_bytes bytes; strides in elements) as a tensor
// map with boxes of box_width x box_rows (box_width * elem_bytes <= swizzle_bytes), swizzled in
// rows of swizzle_bytes (128, 64 or 32); reads past the end give zeros.
inline CUtensorMap make_map(CUtensorMapDataType type, int elem_bytes, const void* base, int64_t width, int64_t rows,
                            int64_t batch, int64_t row_stride, int64_t batch_stride, int box_width, int box_rows,
                            int swizzle_bytes = 128) {
  CUtensorMap map{};
  const cuuint64_t dims[3] = {static_cast<cuuint64_t>(width), static_cast<cuuint64_t>(rows),
                              static_cast<cuuint64_t>(batch)};
  const cuuint64_t strides[2] = {static_cast<cuuint64_t>(row_stride) * elem_bytes,
                                 static_cast<cuuint64_t>(batch > 1 ? batch_stride : rows * row_stride) * elem_bytes};
  const cuuint32_t box[3] = {static_cast<cuuint32_t>(box_width), static_cast<cuuint32_t>(box_rows), 1};
  const cuuint32_t elem[3] = {1, 1, 1};
  const CUresult r = tensor_map_encoder()(&map, type, 3, const_cast<void*>(base), dims, strides, box, elem,
                                          CU_TENSOR_MAP_INTERLEAVE_NONE,
                                          swizzle_bytes == 128  ? CU_TENSOR_MAP_SWIZZLE_128B
                                          : swizzle_bytes == 64 ? CU_TENSOR_MAP_SWIZZLE_64B
                                                                : CU_TENSOR_MAP_SWIZZLE_32B,
                                          CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  IB_CHECK(r == CUDA_SUCCESS, "hopper attention: cuTensorMapEncodeTiled failed ({})", static_cast<int>(r));
  return map;
}

inline bool aligned16(const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; }

// device_is_sm90() for the current device, asked once.
inline bool available() {
  static const bool ok = device_is_sm90();
  return ok;
}

// What both kernels need of a problem beside their own operands' layout: head dim 128, sizes the
// grid (heads and batch entries <= 65535) and the kernels' int positions hold, a bf16 output whose
// column pairs are 4-byte aligned, and an sm_90 device.
inline bool problem_fits(const AttentionProblem& p) {
  if (p.head_dim != kHeadDim || p.lq <= 0 || p.lk <= 0 || p.batch <= 0 || p.heads <= 0) return false;
  if (p.batch > 65535 || p.heads > 65535 || p.lq > (int64_t{1} << 30) || p.lk > (int64_t{1} << 30)) return false;
  if ((p.lq + kBlockM - 1) / kBlockM * p.heads * p.batch > (int64_t{1} << 30)) return false;  // work items in an int
  if (p.o_row_stride % 2 != 0 || p.o_batch_stride % 2 != 0 || reinterpret_cast<uintptr_t>(p.out) % 4 != 0) return false;
  return available();
}

// p's work items: one per 128 query rows, head and batch entry (problem_fits bounds their count).
inline WorkGrid work_grid(const AttentionProblem& p) {
  const auto m_tiles = static_cast<int>((p.lq + kBlockM - 1) / kBlockM);
  return WorkGrid{m_tiles, static_cast<int>(p.heads), m_tiles * static_cast<int>(p.heads) * static_cast<int>(p.batch)};
}

// The current device's SM count, asked once.
inline int sm_count() {
  static const int n = [] {
    int dev = 0, v = 0;
    return cudaGetDevice(&dev) == cudaSuccess &&
                   cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0
               ? v
               : 1;
  }();
  return n;
}

// Whether a problem's work items run as streams of persistent blocks (consume_kv's kStream):
// those with fewer keys than this (the cross-attention's 512 and 514: three key tiles an item,
// whose start and end a block of its own would leave exposed). Longer ones take a block each.
constexpr int64_t kStreamBelowKeys = 2048;
inline bool streams(const AttentionProblem& p) { return p.lk < kStreamBelowKeys; }

// Launches Kernel with one block per work item or, kStream, a persistent grid (one block per SM,
// each looping over the work items blockIdx.x, + gridDim.x, ...; fewer blocks when there are fewer
// items), with kSmemBytes of dynamic shared memory (the attribute set before its first launch) on
// p's stream; `what` names the kernel in errors.
template <auto Kernel, int kSmemBytes, bool kStream, class... Args>
void launch_form(const char* what, const AttentionProblem& p, const WorkGrid& work, const Args&... args) {
  static std::once_flag attr;
  std::call_once(attr, [what] {
    IB_CHECK(cudaFuncSetAttribute(Kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmemBytes) == cudaSuccess,
             "{}: cannot set {} bytes of shared memory", what, kSmemBytes);
  });
  const int blocks = kStream ? std::min(work.items, sm_count()) : work.items;
  Kernel<<<dim3(static_cast<unsigned>(blocks)), kThreads, kSmemBytes, p.stream>>>(args...);
  IB_CHECK(cudaGetLastError() == cudaSuccess, "{}: launch failed", what);
}

// Launches a kernel's stream form (StreamKernel, a persistent grid) where p's work items stream
// (streams(p)), else its one-block-per-item form (ItemKernel).
template <auto StreamKernel, auto ItemKernel, int kSmemBytes, class... Args>
void launch(const char* what, const AttentionProblem& p, const WorkGrid& work, const Args&... args) {
  if (streams(p)) {
    launch_form<StreamKernel, kSmemBytes, true>(what, p, work, args...);
  } else {
    launch_form<ItemKernel, kSmemBytes, false>(what, p, work, args...);
  }
}

}  // namespace ib::gpu::hopper
