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
#include <random>
#include <vector>

namespace {

struct Config {
  const char* name;
  int a_mode, b_mode;  // cublasLtMatmulMatrixScale_t, -1: no scale pointer
  cublasLtEpilogue_t ep;
  bool bias_type;
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
  const int S = CUBLASLT_MATMUL_MATRIX_SCALE_SCALAR_32F, O = CUBLASLT_MATMUL_MATRIX_SCALE_OUTER_VEC_32F,
            V = CUBLASLT_MATMUL_MATRIX_SCALE_VEC128_32F, B = CUBLASLT_MATMUL_MATRIX_SCALE_BLK128x128_32F;
  const Config cfgs[] = {
      {"outer-vec, bias epilogue", O, O, CUBLASLT_EPILOGUE_BIAS, true, CUDA_R_16BF, false},
      {"outer-vec, gelu+bias epilogue", O, O, CUBLASLT_EPILOGUE_GELU_BIAS, true, CUDA_R_16BF, false},
      {"outer-vec, no epilogue", O, O, CUBLASLT_EPILOGUE_DEFAULT, false, CUDA_R_16BF, false},
      {"outer-vec, no epilogue, f32 out", O, O, CUBLASLT_EPILOGUE_DEFAULT, false, CUDA_R_32F, false},
      {"scalar, no epilogue", S, S, CUBLASLT_EPILOGUE_DEFAULT, false, CUDA_R_16BF, false},
      {"scalar, bias epilogue", S, S, CUBLASLT_EPILOGUE_BIAS, true, CUDA_R_16BF, false},
      {"scalar, gelu+bias epilogue", S, S, CUBLASLT_EPILOGUE_GELU_BIAS, true, CUDA_R_16BF, false},
      {"no scales, f32 out", -1, -1, CUBLASLT_EPILOGUE_DEFAULT, false, CUDA_R_32F, false},
      {"alpha vector + scalar b, no epilogue", -1, S, CUBLASLT_EPILOGUE_DEFAULT, false, CUDA_R_16BF, true},
      {"alpha vector + scalar b, bias epilogue", -1, S, CUBLASLT_EPILOGUE_BIAS, true, CUDA_R_16BF, true},
      {"blk128x128 a + vec128 b, no epilogue", B, V, CUBLASLT_EPILOGUE_DEFAULT, false, CUDA_R_16BF, false},
      {"blk128x128 a + vec128 b, bias epilogue", B, V, CUBLASLT_EPILOGUE_BIAS, true, CUDA_R_16BF, false},
  };
  std::vector<float> alpha_host(static_cast<size_t>(N), 1.0f);
  for (const Config& c : cfgs) {
    cublasLtMatmulDesc_t op;
    cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta));
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb));
    cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &c.ep, sizeof(c.ep));
    if (c.bias_type) {
      const cudaDataType_t bt = CUDA_R_16BF;
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof(bt));
    }
    if (c.ep != CUBLASLT_EPILOGUE_DEFAULT)
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias));
    if (c.a_mode >= 0) {
      const auto m = static_cast<cublasLtMatmulMatrixScale_t>(c.a_mode);
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, &m, sizeof(m));
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &sa, sizeof(sa));
    }
    if (c.b_mode >= 0) {
      const auto m = static_cast<cublasLtMatmulMatrixScale_t>(c.b_mode);
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, &m, sizeof(m));
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &sb, sizeof(sb));
    }
    void* alpha_dev = nullptr;
    if (c.alpha_vector) {
      const cublasLtPointerMode_t pm = CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO;
      cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_POINTER_MODE, &pm, sizeof(pm));
      cudaMalloc(&alpha_dev, N * 4);
      cudaMemcpy(alpha_dev, alpha_host.data(), N * 4, cudaMemcpyHostToDevice);
    }
    cublasLtMatrixLayout_t la, lb, lc, ld;
    cublasLtMatrixLayoutCreate(&la, CUDA_R_8F_E4M3, K, N, K);
    cublasLtMatrixLayoutCreate(&lb, CUDA_R_8F_E4M3, K, M, K);
    cublasLtMatrixLayoutCreate(&lc, c.d_type == CUDA_R_32F ? CUDA_R_32F : CUDA_R_16BF, N, M, N);
    cublasLtMatrixLayoutCreate(&ld, c.d_type, N, M, N);
    cublasLtMatmulPreference_t pref;
    cublasLtMatmulPreferenceCreate(&pref);
    cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsz, sizeof(wsz));
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(h, op, la, lb, lc, ld, pref, 1, &res, &found);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0) {
      std::printf("%-44s none (status %d)\n", c.name, static_cast<int>(st));
    } else {
      const float one = 1.0f, zero = 0.0f;
      const void* alpha = c.alpha_vector ? alpha_dev : static_cast<const void*>(&one);
      cudaEvent_t e0, e1;
      cudaEventCreate(&e0);
      cudaEventCreate(&e1);
      cublasStatus_t rs = CUBLAS_STATUS_SUCCESS;
      for (int i = 0; i < 2; ++i)
        rs = cublasLtMatmul(h, op, alpha, a, la, b, lb, &zero, d, lc, d, ld, &res.algo, ws, wsz, nullptr);
      constexpr int kCalls = 20;
      cudaEventRecord(e0);
      for (int i = 0; i < kCalls; ++i)
        rs = cublasLtMatmul(h, op, alpha, a, la, b, lb, &zero, d, lc, d, ld, &res.algo, ws, wsz, nullptr);
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float total = 0;
      cudaEventElapsedTime(&total, e0, e1);
      const double t = total / kCalls;
      std::printf("%-44s found: %.3f ms = %.0f TFLOP/s (run status %d, %s)\n", c.name, t,
                  2.0 * M * N * K / (t * 1e-3) / 1e12, static_cast<int>(rs), cudaGetErrorString(cudaGetLastError()));
    }
    if (alpha_dev) cudaFree(alpha_dev);
    cublasLtMatmulPreferenceDestroy(pref);
    cublasLtMatrixLayoutDestroy(la);
    cublasLtMatrixLayoutDestroy(lb);
    cublasLtMatrixLayoutDestroy(lc);
    cublasLtMatrixLayoutDestroy(ld);
    cublasLtMatmulDescDestroy(op);
  }
  return 0;
}
