// Row-wise fp8 (e4m3) quantisation, the float32 reference of the GPU engine's fp8 products
// (gpu/fp8.h): each row of x [rows, cols] gets one f32 scale s = amax(row) / 448 and its values
// q = e4m3(x * (448 / amax)) (round to nearest even, saturating), so that x ~= q * s. A row of
// zeros gets s = 1 and q = 0. Weights are quantised per output channel (a row of w [out, in]) and
// activations per token (a row of x [tokens, in]) by the same rule.
#pragma once

#include "core/tensor.h"

namespace ib::ops {

struct QuantizedRows {
  Tensor q;      // F8E4M3 [rows, cols]
  Tensor scale;  // f32 [rows]
};

// x: CPU [rows, cols], any float dtype.
QuantizedRows quantize_rows_e4m3(const Tensor& x);
// q * scale per row, f32 [rows, cols].
Tensor dequantize_rows(const QuantizedRows& qr);

// One scale for a whole tensor (the fp8 attention's q, k and v, gpu/attention_fp8.h): s =
// amax(x) / 448 and q = e4m3(x * (448 / amax)), by the same f32 operations as the rows above.
struct QuantizedTensor {
  Tensor q;  // F8E4M3, x's shape
  float scale = 1.0f;
};
// x: CPU, any shape and float dtype.
QuantizedTensor quantize_tensor_e4m3(const Tensor& x);
// q * scale, f32, q's shape.
Tensor dequantize_tensor(const QuantizedTensor& qt);

// The largest finite e4m3fn value.
constexpr float kE4M3Max = 448.0f;

}  // namespace ib::ops
