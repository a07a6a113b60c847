// Which fp8 (e4m3) product configurations this GPU's cuBLASLt offers at the DiT's shapes, and how
// fast each runs: the scaling modes (tensor-wide scalars, outer vectors, 128-blocks, an alpha
// vector), with and without the bias / GELU epilogues, bf16 or f32 output. Prints one line per
// configuration: found or not, and TFLOP/s (the mean of 20 back-to-back calls after 2 warm-ups).
// Development tool for choosing gpu/gemm.cc's fp8 path. The operands hold random e4m3 codes (no
// NaN): with zeros the tensor cores draw less power and the GPU holds higher clocks than it does
// on real data.
//   bench_fp8_gemm_probe_gpu [M N K]   (default 32760 15360 5120)
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <optional>
#include <vector>

#include "gpu/gemm_lt.h"

namespace gpu = ib::gpu;

namespace {

using Mode = std::optional<cublasLtMatmulMatrixScale_t>;  // nullopt: no scale

// One configuration: the engine's description of the product (gpu/gemm_lt.h) with other scaling
// modes, epilogues or output types.
struct Config {
  const char* name;
  Mode a_mode, b_mode;
  gpu::Epilogue ep;
  cudaDataType_t d_type;
  bool alpha_vector;
};

}  // namespace

int main(int argc, char** argv) {
  const long long M = argc > 3 ? std::atoll(argv[1]) : 32760, N = argc > 3 ? std::atoll(argv[2]) : 15360,
                  K = argc > 3 ? std::atoll(argv[3]) : 5120;
  std::printf("cuBLASLt version %zu, M %lld (tokens) N %lld (out) K %lld (in)\n", cublasLtGetVersion(), M, N, K);
  cublasLtHandle_t h;
  cublasLtCreate(&h);
  void *a, *b, *d, *bias, *sa, *sb, *ws;
  const size_t wsz = 64u << 20;
  cudaMalloc(&a, N * K);
  cudaMalloc(&b, M * K);
  cudaMalloc(&d, M * N * 4);
  cudaMalloc(&bias, N * 4);
  cudaMalloc(&sa, N * K / 16 * 4 + 4096);
  cudaMalloc(&sb, M * K / 16 * 4 + 4096);
  cudaMalloc(&ws, wsz);
  {  // random e4m3 codes in [-2, 2], none NaN (S.1111.111)
    std::mt19937 rng(7);
    std::vector<uint8_t> host(static_cast<size_t>(std::max(N, M) * K));
    for (uint8_t& v : host) v = static_cast<uint8_t>(rng() % 0x40) | static_cast<uint8_t>(rng() & 0x80);
    cudaMemcpy(a, host.data(), static_cast<size_t>(N * K), cudaMemcpyHostToDevice);
    cudaMemcpy(b, host.data(), static_cast<size_t>(M * K), cudaMemcpyHostToDevice);
  }
  cudaMemset(sa, 0, N * K / 16 * 4 + 4096);
  cudaMemset(sb, 0, M * K / 16 * 4 + 4096);
  const Mode S = CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F, O = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F,
             V = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F, B = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F, none;
  using E = gpu::Epilogue;
  const Config cfgs[] = {
      {"outer-vec, bias epilogue (the engine's)", O, O, E::Bias, CUDA_R_16BF, false},
      {"outer-vec, gelu+bias epilogue (the engine's)", O, O, E::BiasGelu, CUDA_R_16BF, false},
      {"outer-vec, no epilogue", O, O, E::None, CUDA_R_16BF, false},
      {"outer-vec, no epilogue, f32 out", O, O, E::None, CUDA_R_32F, false},
      {"scalar, no epilogue", S, S, E::None, CUDA_R_16BF, false},
      {"scalar, bias epilogue", S, S, E::Bias, CUDA_R_16BF, false},
      {"scalar, gelu+bias epilogue", S, S, E::BiasGelu, CUDA_R_16BF, false},
      {"no scales, f32 out", none, none, E::None, CUDA_R_32F, false},
      {"alpha vector + scalar b, no epilogue", none, S, E::None, CUDA_R_16BF, true},
      {"alpha vector + scalar b, bias epilogue", none, S, E::Bias, CUDA_R_16BF, true},
      {"blk128x128 a + vec128 b, no epilogue", B, V, E::None, CUDA_R_16BF, false},
      {"blk128x128 a + vec128 b, bias epilogue", B, V, E::Bias, CUDA_R_16BF, false},
  };
  std::vector<float> alpha_host(static_cast<size_t>(N), 1.0f);
  for (const Config& c : cfgs) {
    gpu::LtProductSpec spec;
    spec.M = M, spec.N = N, spec.K = K, spec.ldx = K, spec.ldy = N;
    spec.fp8 = true;
    spec.ep = c.ep;
    spec.a_scale_mode = c.a_mode;
    spec.b_scale_mode = c.b_mode;
    spec.d_type = c.d_type;
    spec.bias = bias;
    spec.a_scale = sa;
    spec.b_scale = sb;
    std::optional<gpu::LtProduct> made;
    try {
      made.emplace(spec);
    } catch (const std::exception& e) {
      std::printf("%-44s refused: %s\n", c.name, e.what());
      continue;
    }
    const gpu::LtProduct& prod = *made;
    void* alpha_dev = nullptr;
    if (c.alpha_vector) {
      const cublasLtPointerMode_t pm = CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO;
      cublasLtMatmulDescSetAttribute(prod.op, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof(pm));
      cudaMalloc(&alpha_dev, N * 4);
      cudaMemcpy(alpha_dev, alpha_host.data(), N * 4, cudaMemcpyHostToDevice);
    }
    const std::vector<cublasLtMatmulHeuristicResult_t> found = prod.heuristic(h, wsz, 1);
    if (found.empty()) {
      std::printf("%-44s none\n", c.name);
    } else {
      const cublasLtMatmulHeuristicResult_t& res = found[0];
      const float one = 1.0f, zero = 0.0f;
      const void* alpha = c.alpha_vector ? alpha_dev : static_cast<const void*>(&one);
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      cublasStatus_t rs = CUBLAS_STATUS_SUCCESS;
      for (int i = 0; i < 2; ++i)
        rs = cublasLtMatmul(h, prod.op, alpha, a, prod.a, b, prod.b, &zero, d, prod.d, d, prod.d, &res.algo, ws, wsz, nullptr);
      constexpr int kCalls = 20;
      cudaEventRecord(e0);
      for (int i = 0; i < kCalls; ++i)
        rs = cublasLtMatmul(h, prod.op, alpha, a, prod.a, b, prod.b, &zero, d, prod.d, d, prod.d, &res.algo, ws, wsz, nullptr);
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float total = 0;
      cudaEventElapsedTime(&total, e0, e1);
      const double t = total / kCalls;
      std::printf("%-44s found: %.3f ms = %.0f TFLOP/s (run status %d, %s)\n", c.name, t,
                  2.0 * M * N * K / (t * 1e-3) / 1e12, static_cast<int>(rs), cudaGetErrorString(cudaGetLastError()));
    }
    if (alpha_dev) cudaFree(alpha_dev);
  }
  return 0;
}
