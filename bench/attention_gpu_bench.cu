// Times ib::gpu::attention at the Wan 14B DiT's self-attention shape (40 heads of 128, bf16,
// Lq = Lk = tokens) for our flash kernel and for cuDNN when it takes the problem. Random bf16
// q, k, v made on the device; one or two warm-up calls, then the median of 7 timed calls (3 at
// 50,000 tokens and more), CUDA events. FLOPs = 4 * L^2 * head_dim * heads.
//   bench_attention_gpu [--variants] [tokens ...]   (default 7800 32760 75600)
// --variants also times every head dim 128 tile variant of the flash kernel (IB_FLASH_VARIANT).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gpu/attention.h"

namespace {

constexpr int64_t kHeads = 40, kHeadDim = 128;
constexpr int kD128Variants = 9;

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    std::fprintf(stderr, "bench_attention_gpu: %s: %s\n", what, cudaGetErrorString(e));
    std::exit(1);
  }
}

// Uniform in [-1.7, 1.7) (sd ~1, so logits at scale 1/sqrt(D) have sd ~1) from a hash of the index.
__global__ void fill_random(__nv_bfloat16* x, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t{blockDim.x} + threadIdx.x; i < n; i += int64_t{gridDim.x} * blockDim.x) {
    uint32_t h = static_cast<uint32_t>(i) * 0x9E3779B1u ^ (static_cast<uint32_t>(i >> 32) + seed) * 0x85EBCA77u;
    h ^= h >> 15, h *= 0x2C1B3C6Du, h ^= h >> 12, h *= 0x297A2D39u, h ^= h >> 15;
    x[i] = __float2bfloat16((static_cast<float>(h >> 8) / 16777216.0f - 0.5f) * 3.4f);
  }
}

struct Buffers {
  __nv_bfloat16 *q = nullptr, *k = nullptr, *v = nullptr, *out = nullptr;
  int64_t elems = 0;
  explicit Buffers(int64_t L) : elems(L * kHeads * kHeadDim) {
    const size_t bytes = static_cast<size_t>(elems) * 2;
    check(cudaMalloc(&q, bytes), "cudaMalloc");
    check(cudaMalloc(&k, bytes), "cudaMalloc");
    check(cudaMalloc(&v, bytes), "cudaMalloc");
    check(cudaMalloc(&out, bytes), "cudaMalloc");
    fill_random<<<1024, 256>>>(q, elems, 1);
    fill_random<<<1024, 256>>>(k, elems, 2);
    fill_random<<<1024, 256>>>(v, elems, 3);
    check(cudaGetLastError(), "fill_random");
  }
  ~Buffers() {
    cudaFree(q);
    cudaFree(k);
    cudaFree(v);
    cudaFree(out);
  }
  ib::gpu::AttentionProblem problem(int64_t L) const {
    ib::gpu::AttentionProblem p;
    p.q = q, p.k = k, p.v = v, p.out = out;
    p.heads = kHeads, p.head_dim = kHeadDim, p.lq = L, p.lk = L;
    p.q_row_stride = p.k_row_stride = p.v_row_stride = p.o_row_stride = kHeads * kHeadDim;
    p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = p.o_batch_stride = L * kHeads * kHeadDim;
    p.scale = 1.0f / std::sqrt(static_cast<float>(kHeadDim));
    return p;
  }
  std::vector<float> output() const {
    std::vector<__nv_bfloat16> h(static_cast<size_t>(elems));
    check(cudaMemcpy(h.data(), out, h.size() * 2, cudaMemcpyDeviceToHost), "copy out");
    std::vector<float> f(h.size());
    for (size_t i = 0; i < h.size(); ++i) f[i] = __bfloat162float(h[i]);
    return f;
  }
};

double median_ms(const ib::gpu::AttentionProblem& p, ib::gpu::AttentionBackend backend) {
  const int warm = p.lq >= 50000 ? 1 : 2, runs = p.lq >= 50000 ? 3 : 7;
  for (int i = 0; i < warm; ++i) ib::gpu::attention(p, backend);
  check(cudaDeviceSynchronize(), "warm-up");
  cudaEvent_t e0, e1;
  cudaEventCreate(&e0);
  cudaEventCreate(&e1);
  std::vector<double> ms;
  for (int i = 0; i < runs; ++i) {
    cudaEventRecord(e0);
    ib::gpu::attention(p, backend);
    cudaEventRecord(e1);
    check(cudaEventSynchronize(e1), "attention");
    float t = 0;
    cudaEventElapsedTime(&t, e0, e1);
    ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

void print_row(int64_t L, const std::string& backend, double ms) {
  const double flops = 4.0 * static_cast<double>(L) * static_cast<double>(L) * kHeadDim * kHeads;
  std::printf("%-8lld %-12s %10.3f %10.1f\n", static_cast<long long>(L), backend.c_str(), ms, flops / (ms * 1e-3) / 1e12);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool variants = false;
  std::vector<int64_t> tokens;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--variants") == 0)
      variants = true;
    else
      tokens.push_back(std::atoll(argv[i]));
  }
  if (tokens.empty()) tokens = {7800, 32760, 75600};
  std::printf("heads %lld, head dim %lld, bf16, Lq = Lk\n", static_cast<long long>(kHeads),
              static_cast<long long>(kHeadDim));
  std::printf("%-8s %-12s %10s %10s\n", "tokens", "backend", "ms", "TFLOP/s");
  try {
    for (int64_t L : tokens) {
      Buffers buf(L);
      const ib::gpu::AttentionProblem p = buf.problem(L);
      const bool cudnn = ib::gpu::cudnn_attention_supports(p);
      std::vector<float> out_flash, out_cudnn;
      for (int v = 0; v < (variants ? kD128Variants : 1); ++v) {
        if (variants) setenv("IB_FLASH_VARIANT", std::to_string(v).c_str(), 1);
        print_row(L, variants ? "flash v" + std::to_string(v) : "flash", median_ms(p, ib::gpu::AttentionBackend::Flash));
        if (v == 0 && L == 7800 && cudnn) out_flash = buf.output();
      }
      unsetenv("IB_FLASH_VARIANT");
      if (cudnn) {
        print_row(L, "cudnn", median_ms(p, ib::gpu::AttentionBackend::Cudnn));
        if (L == 7800) out_cudnn = buf.output();
      } else {
        std::printf("%-8lld %-12s (cuDNN does not take this problem)\n", static_cast<long long>(L), "cudnn");
      }
      if (!out_flash.empty() && !out_cudnn.empty()) {
        double diff = 0, max_ref = 0;
        for (size_t i = 0; i < out_flash.size(); ++i) {
          diff = std::max(diff, static_cast<double>(std::fabs(out_flash[i] - out_cudnn[i])));
          max_ref = std::max(max_ref, static_cast<double>(std::fabs(out_cudnn[i])));
        }
        std::printf("max|flash - cudnn| at %lld tokens: %.3g (max|cudnn| %.3g)\n", static_cast<long long>(L), diff,
                    max_ref);
      }
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_attention_gpu: %s\n", e.what());
    return 1;
  }
  return 0;
}
