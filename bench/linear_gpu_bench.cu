// Times ops::linear on the GPU at the DiT's shapes (q/k/v/o, FFN up, FFN down) for f32 and bf16
// weights, the whole op as the model calls it (input conversion, GEMM, bias, output allocation).
// Median of 20 timed calls after 3 warm-up calls, CUDA events. Prints one line per case:
//   bench_linear_gpu [tokens ...]      (default 32760 = 480p and 75600 = 720p)
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "ops/linear.h"

namespace {

ib::Tensor random_device(const ib::Shape& shape, uint32_t seed, ib::DType dtype) {
  // Uniform in [-0.05, 0.05) from a xorshift generator: cheap for billions of values, never zeros.
  uint64_t st = 0x9E3779B97F4A7C15ull * (seed + 1);
  ib::Tensor t = ib::Tensor::empty(shape, ib::DType::F32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    p[i] = (static_cast<float>(st >> 40) / 16777216.0f - 0.5f) * 0.1f;
  }
  return t.to(dtype).to(ib::Device::CUDA);
}

double median_ms(int64_t M, int64_t K, int64_t N, ib::DType wdt) {
  const ib::Tensor x = random_device({M, K}, 1, ib::DType::F32);
  const ib::Tensor w = random_device({N, K}, 2, wdt);
  const ib::Tensor b = random_device({N}, 3, ib::DType::F32);
  for (int i = 0; i < 3; ++i) (void)ib::ops::linear(x, w, b);
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> ms;
  for (int i = 0; i < 20; ++i) {
    cudaEventRecord(e0);
    const ib::Tensor y = ib::ops::linear(x, w, b);
    cudaEventRecord(e1);
    cudaEventSynchronize(e1);
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<int64_t> tokens;
  for (int i = 1; i < argc; ++i) tokens.push_back(std::atoll(argv[i]));
  if (tokens.empty()) tokens = {32760, 75600};
  struct Shape3 { const char* name; int64_t K, N; };
  const Shape3 shapes[] = {{"qkvo 5120->5120", 5120, 5120}, {"ffn up 5120->13824", 5120, 13824},
                           {"ffn down 13824->5120", 13824, 5120}};
  std::printf("%-8s %-22s %-5s %10s %10s\n", "tokens", "product", "w", "ms", "TFLOP/s");
  try {
    for (int64_t M : tokens)
      for (const Shape3& s : shapes)
        for (ib::DType wdt : {ib::DType::BF16, ib::DType::F32}) {
          const double ms = median_ms(M, s.K, s.N, wdt);
          const double tflops = 2.0 * static_cast<double>(M) * s.K * s.N / (ms * 1e-3) / 1e12;
          std::printf("%-8lld %-22s %-5s %10.3f %10.1f\n", static_cast<long long>(M), s.name, ib::dtype_name(wdt), ms,
                      tflops);
          std::fflush(stdout);
        }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_linear_gpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
