// fp8 (e4m3) self-attention for the GPU engine (`--attention fp8`): the DiT's q, k and v are
// quantised with one scale per tensor (ops::quantize_tensor_e4m3's rule: the same bits), cuDNN's
// fp8 flash attention runs on them (softmax probabilities scaled by 448 into e4m3, products
// accumulated in f32, the output in e4m3 at a scale derived from amax(v)), and the output is
// dequantised to bf16 for the o product. Every scale stays on the device: no host sync.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "gpu/attention.h"

namespace ib::gpu {

// The device scales of one fp8 attention call (f32[kFp8ScaleCount]). The first eight are what
// cuDNN's fp8 graph reads and writes; the amax of q, k and v are the quantisation's.
enum Fp8Scale : int {
  kDescaleQ,  // amax(q) / 448: q ~= e4m3 * descale
  kDescaleK,
  kDescaleV,
  kDescaleS,  // 1 / 448: the probabilities' e4m3 scale
  kScaleS,    // 448
  kScaleO,    // 256 / amax(v): |out| <= amax(v) (a convex combination of v's rows), with headroom
  kAmaxS,     // written by cuDNN
  kAmaxO,     // written by cuDNN
  kDescaleO,  // amax(v) / 256: out ~= e4m3 * descale
  kAmaxQ,
  kAmaxK,
  kAmaxV,
  kFp8ScaleCount
};

// The headroom of the output's scale (kScaleO = kOutRange / amax(v)).
constexpr float kFp8AttentionOutRange = 256.0f;

// The q | k | v column blocks of a bf16 [rows, 3*dim] buffer (row stride ld elements) into e4m3
// [rows, 3*dim] (dense), one scale per block over all rows; fills scales[0, kFp8ScaleCount) except
// the two amax cuDNN writes. dim and ld multiples of 8, pointers 16-byte aligned.
void quantize_qkv_fp8(const void* qkv, int64_t rows, int64_t dim, int64_t ld, void* out, float* scales,
                      cudaStream_t stream = nullptr);

// bf16 out[r, c] = e4m3 in[r, c] * scales[kDescaleO] over rows x cols (both dense).
void dequantize_attention_fp8(const void* in, int64_t rows, int64_t cols, const float* scales, void* out,
                              cudaStream_t stream = nullptr);

// Self-attention over the e4m3 [L, 3*heads*head_dim] buffer quantize_qkv_fp8 wrote, output e4m3
// [L, heads*head_dim], scale 1/sqrt(head_dim).
AttentionProblem fp8_self_attention(const void* qkv8, void* out8, float* scales, int64_t tokens, int64_t heads,
                                    int64_t head_dim);

// ---- Our Hopper fp8 kernel's layout (hopper_attention_fp8.cu) ----
// q | k as e4m3 [rows, 2*dim] (dense), and v transposed per batch entry: vt[b][f][p] for feature f
// and key position p, vt_keys = fp8_vt_keys(tokens) positions a row (zeros past the last key).
// Within each group of 32 keys, key c sits at position fp8_vt_position(c): the order in which the
// kernel's P fragments hold the keys (four consecutive bytes of a register hold keys 2t, 2t+1,
// 8+2t, 9+2t, and the same + 16), so P never moves between threads. The codes and scales are
// quantize_qkv_fp8's, bit for bit.
constexpr int64_t fp8_vt_keys(int64_t tokens) { return (tokens + 63) / 64 * 64; }
constexpr int fp8_vt_position(int c) {
  const int r = c & 15;
  return (c & 16) + 4 * ((r & 7) >> 1) + ((r & 1) | ((r >> 3) << 1));
}

// The rows are `batch` entries of `tokens` tokens each; dim a multiple of 128 (the kernel's head
// dim), ld a multiple of 8, pointers 16-byte aligned. Fills the scales as quantize_qkv_fp8. With
// qk_amax_ready, scales[kAmaxQ] and scales[kAmaxK] already hold q's and k's amax (qk_norm's
// QkNormArgs::amax wrote them): only v's is measured.
void quantize_qkv_fp8_vt(const void* qkv, int64_t batch, int64_t tokens, int64_t dim, int64_t ld, void* qk8, void* vt,
                         float* scales, cudaStream_t stream = nullptr, bool qk_amax_ready = false);

// Self-attention of one batch entry over that layout, output bf16 [tokens, heads*head_dim]; for
// several entries set batch and the q/k batch strides (tokens * 2*dim) and o_batch_stride.
AttentionProblem fp8_self_attention_vt(const void* qk8, const void* vt, void* out, float* scales, int64_t tokens,
                                       int64_t heads, int64_t head_dim);

}  // namespace ib::gpu
