// How far cuBLASLt's first heuristic choice is from the fastest of its candidates, at the DiT's
// product shapes, in the configuration gpu/gemm.cc runs: e4m3 weight and input with outer-vector
// scales, the bias (or GELU + bias) epilogue, bf16 output; or bf16 operands. For each shape it
// times the first kCandidates algorithms the heuristic offers for the engine's own description of
// the product (gpu/gemm_lt.h) (median of 9 after 2 warm-ups, the
// operands random: the power a product draws, and so the clock, depends on the values) and prints
// them in the heuristic's order. Development tool for choosing whether gemm.cc should time its
// candidates.
//   bench_gemm_algos_gpu [M ...]   (tokens; default 32760 75600)
#include <cublasLt.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "gpu/gemm_lt.h"

namespace gpu = ib::gpu;

namespace {

constexpr int kCandidates = 16;

struct Shape {
  const char* name;
  long long N, K;
  gpu::Epilogue ep;
};

void fill_random(void* p, size_t bytes, uint64_t seed, bool fp8) {
  std::vector<uint8_t> h(bytes);
  uint64_t s = 0x9E3779B97F4A7C15ull * (seed + 1);
  for (size_t i = 0; i < bytes; ++i) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    uint8_t b = static_cast<uint8_t>(s >> 32);
    // e4m3: |x| < 16 (exponent field below 11), never NaN; bf16: the high byte (sign and
    // exponent) of each element keeps |x| within 2^-8 .. 2.
    if (fp8) b = static_cast<uint8_t>((b & 0x80) | (b & 0x7F) % 0x58);
    else if (i & 1) b = static_cast<uint8_t>((b & 0x80) | (0x3B + (b & 0x7F) % 5));
    h[i] = b;
  }
  cudaMemcpy(p, h.data(), bytes, cudaMemcpyHostToDevice);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<long long> Ms;
  for (int i = 1; i < argc; ++i) Ms.push_back(std::atoll(argv[i]));
  if (Ms.empty()) Ms = {32760, 75600};
  const Shape shapes[] = {
      {"qkv", 15360, 5120, gpu::Epilogue::Bias},       {"o", 5120, 5120, gpu::Epilogue::Bias},
      {"ffn up", 13824, 5120, gpu::Epilogue::BiasGelu}, {"ffn down", 5120, 13824, gpu::Epilogue::Bias},
      {"cross q", 5120, 5120, gpu::Epilogue::Bias},
  };
  cublasLtHandle_t h;
  cublasLtCreate(&h);
  const size_t wsz = 64u << 20;
  void* ws;
  cudaMalloc(&ws, wsz);
  std::printf("cuBLASLt %zu\n", cublasLtGetVersion());
  for (const bool fp8 : {true, false}) {
    for (const long long M : Ms) {
      double heur_total = 0, best_total = 0;
      for (const Shape& sh : shapes) {
        if (!fp8 && sh.name[0] == 'c') continue;  // cross q: same shape as o
        const long long N = sh.N, K = sh.K;
        const size_t esz = fp8 ? 1 : 2;
        void *a, *b, *d, *bias, *sa, *sb;
        cudaMalloc(&a, N * K * esz);
        cudaMalloc(&b, M * K * esz);
        cudaMalloc(&d, M * N * 2);
        cudaMalloc(&bias, N * 2);
        cudaMalloc(&sa, N * 4);
        cudaMalloc(&sb, M * 4);
        fill_random(a, N * K * esz, 1, fp8);
        fill_random(b, M * K * esz, 2, fp8);
        fill_random(bias, N * 2, 3, false);
        std::vector<float> ones(std::max(M, N), 0.01f);
        cudaMemcpy(sa, ones.data(), N * 4, cudaMemcpyHostToDevice);
        cudaMemcpy(sb, ones.data(), M * 4, cudaMemcpyHostToDevice);
        // The engine's own description of the product (gpu/gemm_lt.h), every candidate asked for.
        gpu::LtProductSpec spec;
        spec.M = M, spec.N = N, spec.K = K, spec.ldx = K, spec.ldy = N;
        spec.fp8 = fp8;
        spec.ep = sh.ep;
        spec.bias = bias;
        if (fp8) spec.a_scale = sa, spec.b_scale = sb;
        const gpu::LtProduct prod(spec);
        const std::vector<cublasLtMatmulHeuristicResult_t> res = prod.heuristic(h, wsz, kCandidates);
        const int found = static_cast<int>(res.size());
        cudaEvent_t e0, e1;
        cudaEventCreate(&e0);
        cudaEventCreate(&e1);
        const float one = 1.0f, zero = 0.0f;
        double first = 0, best = 1e30;
        int best_i = -1;
        std::printf("%s M %lld %-8s N %5lld K %5lld: %d candidates\n", fp8 ? "fp8 " : "bf16", M, sh.name, N, K, found);
        for (int c = 0; c < found; ++c) {
          std::vector<float> ms;
          cublasStatus_t rs = CUBLAS_STATUS_SUCCESS;
          for (int i = 0; i < 11 && rs == CUBLAS_STATUS_SUCCESS; ++i) {
            cudaEventRecord(e0);
            rs = cublasLtMatmul(h, prod.op, &one, a, prod.a, b, prod.b, &zero, d, prod.d, d, prod.d, &res[c].algo, ws, wsz,
                                nullptr);
            cudaEventRecord(e1);
            cudaEventSynchronize(e1);
            float t = 0;
            cudaEventElapsedTime(&t, e0, e1);
            if (i >= 2) ms.push_back(t);
          }
          if (rs != CUBLAS_STATUS_SUCCESS || ms.empty()) {
            std::printf("  #%2d failed (status %d)\n", c, static_cast<int>(rs));
            continue;
          }
          std::sort(ms.begin(), ms.end());
          const double t = ms[ms.size() / 2];
          if (c == 0) first = t;
          if (t < best) best = t, best_i = c;
          int tile = 0, stages = 0, splitk = 0, swizzle = 0, cluster = 0;
          size_t sz = 0;
          cublasLtMatmulAlgoConfigGetAttribute(&res[c].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof(tile), &sz);
          cublasLtMatmulAlgoConfigGetAttribute(&res[c].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof(stages), &sz);
          cublasLtMatmulAlgoConfigGetAttribute(&res[c].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof(splitk), &sz);
          cublasLtMatmulAlgoConfigGetAttribute(&res[c].algo, CUBLASLT_ALGO_CONFIG_CTA_SWIZZLING, &swizzle, sizeof(swizzle), &sz);
          cublasLtMatmulAlgoConfigGetAttribute(&res[c].algo, CUBLASLT_ALGO_CONFIG_CLUSTER_SHAPE_ID, &cluster, sizeof(cluster), &sz);
          std::printf("  #%2d %.3f ms %6.0f TFLOP/s (spread %.3f-%.3f) tile %d stages %d splitk %d swizzle %d cluster %d ws %zu KiB\n",
                      c, t, 2.0 * M * N * K / (t * 1e-3) / 1e12, ms.front(), ms.back(), tile, stages, splitk, swizzle,
                      cluster, res[c].workspaceSize >> 10);
        }
        std::printf("  first %.3f ms, best #%d %.3f ms: %.1f%%\n", first, best_i, best, 100.0 * (first - best) / first);
        heur_total += first;
        best_total += best;
        cudaFree(a), cudaFree(b), cudaFree(d), cudaFree(bias), cudaFree(sa), cudaFree(sb);
      }
      std::printf("SUMMARY %s M %lld: per block first %.2f ms, best %.2f ms (x40: %.0f -> %.0f ms a forward)\n",
                  fp8 ? "fp8" : "bf16", M, heur_total, best_total, 40 * heur_total, 40 * best_total);
    }
  }
  return 0;
}
