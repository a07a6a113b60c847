// fp8 (e4m3) in the GPU engine: the row-wise quantisation of ops/quantize.h (the same bits) for
// weights (per output channel, once at load) and activations (per token, before each fp8 product),
// and the capability check. The products themselves are gpu::linear with an FP8 LinearWeight.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ib::gpu {

// q[r, :] = e4m3(x[r, :] * 448 / amax(x[r, :])), scale[r] = amax / 448 (1 and 0 for a zero row).
struct QuantizeRowsArgs {
  const void* x = nullptr;  // bf16 [rows, cols], row stride ld (elements)
  // Optional second bf16 input of x's layout: the rows quantised are then bf16(x + x2), added in
  // f32 and rounded once (add_bf16's values, which are never stored: the DiT's text and image
  // cross-attention outputs go to the co product this way).
  const void* x2 = nullptr;
  int64_t rows = 0, cols = 0, ld = 0;
  void* q = nullptr;       // e4m3 [rows, cols], dense
  float* scale = nullptr;  // f32 [rows]
};
void quantize_rows_fp8(const QuantizeRowsArgs& a, cudaStream_t stream = nullptr);

// y[r, c] = act(y[r, c] + bias[c]) in place on bf16 rows (row stride ld), act = GELU-tanh or none:
// the epilogue for fp8 products whose cuBLASLt algorithm has none.
void bias_act_bf16(void* y, int64_t rows, int64_t cols, int64_t ld, const void* bias, bool gelu,
                   cudaStream_t stream = nullptr);

// fp8 tensor-core products need compute capability 8.9 (Ada) or newer.
bool fp8_supported();
// Throws, naming the GPU and its compute capability, when fp8_supported() is false.
void require_fp8(const char* what);

}  // namespace ib::gpu
