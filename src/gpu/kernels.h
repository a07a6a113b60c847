// The GPU engine's fused kernels for the DiT block (bf16 activations, f32 residual stream). Each
// does in one pass over memory what the CPU reference does as a composition of ops; the GPU tests
// (tests/gpu/kernels_gpu_test.cc) check each against that composition of CPU reference ops.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "core/tensor.h"
#include "ops/rope.h"

namespace ib::gpu {

// Any float tensor (host or device) as a new bf16 / f32 device tensor, converted on the device.
Tensor to_bf16_device(const Tensor& t);
Tensor to_f32_device(const Tensor& t);

// One row of the residual stream, then a LayerNorm of it (spec 7.5, 7.9):
//   x += y * gate            when y is given (gate f32 [C], or null for a plain add); x stays f32
//   n  = LN(x; eps)          f32 statistics (two passes over the row), no affine
//   n  = bf16(n)             when round_norm (block 0: its input is still bf16, so is its norm)
//   out = n * p0 + p1        Affine   (norm3's weight and bias)
//   out = n * (1 + p0) + p1  Modulate (scale and shift rows of the modulation)
// out is bf16 (the next linear's input) or f32 (the head's). With q8 and q8_scale set (bf16 out
// only), the kernel also writes the row-wise e4m3 quantisation of the bf16 values it wrote to out:
// the same bits quantize_rows_fp8 (gpu/fp8.h) would make of out, saving the fp8 product that reads
// out its own pass (gpu::linear's Fp8Input overload).
struct ResidualNormArgs {
  enum class Mode { Affine, Modulate };
  float* x = nullptr;  // [rows, cols] f32, updated in place when y is given
  int64_t rows = 0, cols = 0;
  const void* y = nullptr;  // bf16, row stride ldy
  int64_t ldy = 0;
  const float* gate = nullptr;  // [cols] or null
  Mode mode = Mode::Modulate;
  const float* p0 = nullptr;  // weight / scale [cols]
  const float* p1 = nullptr;  // bias / shift [cols]
  float eps = 1e-6f;
  bool round_norm = false;
  void* out = nullptr;  // [rows, cols], row stride cols
  bool out_bf16 = true;
  void* q8 = nullptr;          // e4m3 [rows, cols], dense; null: no fp8 copy
  float* q8_scale = nullptr;   // f32 [rows]: out[r, :] ~= q8[r, :] * q8_scale[r]
};
void residual_norm(const ResidualNormArgs& a, cudaStream_t stream = nullptr);

// The q/k RMSNorm of self- and cross-attention (spec 7.6, 7.9), in place on bf16 rows that hold
// one linear output each (row stride ld, width cols = heads * head_dim):
//   r = bf16(x / sqrt(mean(x^2) + eps)) * gamma      (f32)
//   r = rope(r)  when rope is set: pairs rotated in double by the token's (frame, row, column)
//                angles, rounded to f32 (ops::rope_3d's arithmetic)
//   x = bf16(r)
struct RopeTables {
  const double* cos = nullptr;  // per axis, [frames*pf | height*ph | width*pw]
  const double* sin = nullptr;
  ops::RopeGrid grid;
  ops::RopeSplit split{0, 0, 0};
};
struct QkNormArgs {
  void* x = nullptr;  // bf16
  int64_t rows = 0, cols = 0, ld = 0;
  const float* gamma = nullptr;  // [cols]
  float eps = 1e-6f;
  int64_t heads = 1;
  const RopeTables* rope = nullptr;  // null: no RoPE (cross-attention)
  int64_t tokens = 0;  // rows of one video (RoPE's grid); several videos may be stacked; 0: all rows
  // Non-null: the largest magnitude of the bf16 values written is maxed into *amax (which the
  // caller zeroes first): the fp8 attention's q or k amax, without a pass of its own
  // (quantize_qkv_fp8_vt's qk_amax_ready).
  float* amax = nullptr;
};
void qk_norm(const QkNormArgs& a, cudaStream_t stream = nullptr);

// Device RoPE tables for a token grid and head dim (ops::cpu::rope_3d's axis tables). The
// returned tensor owns the doubles `tables` points into.
Tensor make_rope_tables(const ops::RopeGrid& grid, int64_t head_dim, RopeTables& tables);

// out = bf16(f32(a) + f32(b)), bf16 [n] (cross-attention's o_txt + o_img).
void add_bf16(const void* a, const void* b, void* out, int64_t n, cudaStream_t stream = nullptr);

// [x ; y] along channels ([Cx, T, h, w] and [Cy, T, h, w], f32 device; y may be null) to patch
// tokens bf16 [T*(h/2)*(w/2), (Cx+Cy)*4], feature c*4 + 2p + q = v[c, f, 2a+p, 2b+q].
void patchify(const float* x, int64_t cx, const float* y, int64_t cy, int64_t T, int64_t h, int64_t w, void* tokens,
              cudaStream_t stream = nullptr);
// Head output f32 [T*hp*wp, 4*C] to the velocity f32 [C, T, 2hp, 2wp] (feature (2p+q)*C + c).
void unpatchify(const float* out, int64_t C, int64_t T, int64_t hp, int64_t wp, float* v,
                cudaStream_t stream = nullptr);

// The DiT's sinusoidal timestep embedding (models/dit.h sinusoidal_embedding) computed on the
// device in double, f32 [1, dim]: no host copy inside a forward.
Tensor sinusoidal_embedding_device(int64_t dim, double t, cudaStream_t stream = nullptr);

// Fills a bf16 or f32 device tensor with uniform values in [-bound, bound] from a counter-based
// hash of (seed, index) (synthetic models for benchmarks; not a statistical generator).
void fill_uniform(const Tensor& t, uint64_t seed, float bound, cudaStream_t stream = nullptr);

}  // namespace ib::gpu
