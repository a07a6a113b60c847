// The cuBLASLt description of the GPU engine's products (gemm.cc), shared with the probes in
// bench/ that time cuBLASLt's alternatives to it (bench_gemm_algos_gpu: every algorithm its
// heuristic offers; bench_fp8_gemm_probe_gpu: other fp8 scaling modes and output types). A
// row-major y[M, N] = x[M, K] w[N, K]^T is the column-major D[N, M] = op_T(A)[N, K] B[K, M], A the
// stored weight (K x N, leading dimension K), B the input (K x M, leading dimension ldx), D the
// output (N x M, leading dimension ldy), also C (beta is 0). So the bias, a vector over N, is
// cuBLASLt's per-row bias of D, and fp8's per-output-channel weight scales are A's outer vector.
#pragma once

#include <cublasLt.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "gpu/gemm.h"

namespace ib::gpu {

struct LtProductSpec {
  int64_t M = 0, N = 0, K = 0, ldx = 0, ldy = 0;
  bool fp8 = false;  // e4m3 A and B, else bf16
  Epilogue ep = Epilogue::None;
  // fp8 only: how A (the weight) and B (the input) are scaled. The engine's: outer vectors, a_scale
  // [N] f32 and b_scale [M] f32 (cuBLASLt multiplies D[n, m] by a_scale[n] * b_scale[m]); nullopt
  // sets no scale at all.
  std::optional<cublasLtMatmulMatrixScale_t> a_scale_mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
  std::optional<cublasLtMatmulMatrixScale_t> b_scale_mode = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F;
  cudaDataType_t d_type = CUDA_R_16BF;
  // Set before the heuristic runs: with outer-vector scaling cuBLASLt offers no algorithm while the
  // scale pointers are null (cuBLASLt 13.1 on the H200). The bias is bf16.
  const void* bias = nullptr;
  const void* a_scale = nullptr;
  const void* b_scale = nullptr;
};

// The descriptors of one product (owned; freed with it). Throws ib::Error naming the call when
// cuBLASLt refuses a description.
class LtProduct {
 public:
  explicit LtProduct(const LtProductSpec& spec);
  ~LtProduct();
  LtProduct(LtProduct&& other) noexcept;
  LtProduct& operator=(LtProduct&& other) noexcept;
  LtProduct(const LtProduct&) = delete;
  LtProduct& operator=(const LtProduct&) = delete;

  // A later call's pointers (the descriptors keep them: set them before each run).
  void set_bias(const void* bias) const;
  void set_scales(const void* a_scale, const void* b_scale) const;
  // Up to `n` algorithms of cuBLASLt's heuristic for this description within `workspace` bytes,
  // its first choice first; empty when it offers none.
  std::vector<cublasLtMatmulHeuristicResult_t> heuristic(cublasLtHandle_t handle, size_t workspace, int n) const;

  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;

 private:
  void release();
};

}  // namespace ib::gpu
