// Linear layers of the GPU engine through cuBLASLt: bf16 activations times a weight in one of the
// engine's formats, f32 accumulation, the bias and GELU applied in the product's epilogue (no
// separate pass over the output). The CPU reference is ops::cpu::linear (+ ops::cpu::gelu_tanh) on
// the same bf16-rounded operands.
#pragma once

#include <cuda_runtime.h>

#include "core/tensor.h"

namespace ib::gpu {

// A linear layer's weight as the GPU engine holds it. One struct for every format, so that a
// format added later (a LoRA merged at load, weights streamed from host memory) changes how it is
// filled, not the code that runs it.
//   BF16: w bf16 [out, in].
//   FP8:  w e4m3 [out, in] with one f32 scale per output channel (w ~= q * scale[row], the rule of
//         ops/quantize.h); the input is quantised per token before each product (by linear, or
//         already by the kernel that wrote it: Fp8Input), and cuBLASLt
//         applies both scale vectors (its outer-vector scaling) and the bias/GELU epilogue.
struct LinearWeight {
  enum class Format { BF16, FP8 };
  Format format = Format::BF16;
  Tensor w;      // device [out, in], bf16 or e4m3
  Tensor scale;  // device [out], f32 (FP8 only)
  Tensor bias;   // device [out], bf16 (the output's type), or undefined
  int64_t in_features() const { return w.size(1); }
  int64_t out_features() const { return w.size(0); }
  size_t bytes() const {
    return w.nbytes() + (scale.defined() ? scale.nbytes() : 0) + (bias.defined() ? bias.nbytes() : 0);
  }

  // From host (or device) tensors of any float dtype, rounded to bf16 once, on the device.
  static LinearWeight bf16(const Tensor& w, const Tensor& bias);
  // Several bf16 layers that read the same input stacked into one (e.g. q, k, v -> [3*dim, dim]).
  static LinearWeight stack(const std::vector<const LinearWeight*>& parts);
  // A bf16 layer quantised to FP8 per output channel, on the device (the bias stays bf16). A layer
  // whose input width cuBLASLt's fp8 products cannot take (not a multiple of 16) stays bf16.
  static LinearWeight fp8(const LinearWeight& bf16_layer);
  // Whether fp8() quantises a layer of this input width.
  static bool fp8_capable(int64_t in_features) { return in_features % 16 == 0; }
};

enum class Epilogue { None, Bias, BiasGelu };  // GELU: the tanh approximation, as upstream's FFN

// y[M, out] = epilogue(x[M, in] * w^T): x bf16 with row stride ldx, y bf16 with row stride ldy
// (elements). Runs on `stream`; no synchronisation. An FP8 weight quantises x per row into
// scratch from the caching allocator first (one extra pass over x; the Fp8Input overload below
// takes rows quantised already instead).
void linear(const void* x, int64_t M, int64_t ldx, const LinearWeight& w, Epilogue ep, void* y, int64_t ldy,
            cudaStream_t stream = nullptr);

// An input already quantised per row by quantize_rows_fp8's rule (gpu/fp8.h), e.g. residual_norm's
// fp8 copy of the rows it writes (gpu/kernels.h): e4m3 codes and one f32 scale per row.
struct Fp8Input {
  const void* q = nullptr;       // e4m3 [M, in], dense (row stride in)
  const float* scale = nullptr;  // f32 [M]
};

// The same product for an FP8 weight on an input quantised already: the product that the bf16
// overload runs after quantising (the same bits, given the codes and scales of the same rows),
// without its quantisation pass. Only the e4m3 input is read. A BF16 weight throws: it has no fp8
// product, and its caller must pass the bf16 rows instead.
void linear(const Fp8Input& x, int64_t M, const LinearWeight& w, Epilogue ep, void* y, int64_t ldy,
            cudaStream_t stream = nullptr);

// The same on dense tensors: x bf16 [M, in] -> a new bf16 [M, out].
Tensor linear(const Tensor& x, const LinearWeight& w, Epilogue ep = Epilogue::Bias);

// The bare product (no epilogue, same shapes) for benchmarks: what the epilogue costs.
void matmul_bare(const void* x, int64_t M, const LinearWeight& w, void* y, cudaStream_t stream = nullptr);

}  // namespace ib::gpu
