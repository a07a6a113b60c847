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

}  // namespace ib::gpu
