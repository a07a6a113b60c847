// GPU checks of cuDNN's fused attention (src/gpu/cudnn_attention.cc, label gpu): one table of
// problems in the token-major layout of attention.h (q, k, v as column slices of one fused buffer,
// padded rows, batch 2, lengths that are no multiple of 64 or 128, Lk = 1), each against
// ops::cpu::attention on the same bf16 values in f32; a plan shared by two threads; and
// DISABLED_TimeSelfAttention40x128, the release's self-attention at 32,760 tokens
// (--gtest_also_run_disabled_tests).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "core/log.h"
#include "core/tensor.h"
#include "gpu/attention_test_data.h"
#include "gpu/attention.h"
#include "ops/attention.h"

#if defined(INBETWEEN_HAVE_CUDNN)
#include <cudnn_graph.h>
#endif

namespace ib {
namespace {

using gpu::AttentionProblem;

constexpr uint16_t kPoison = 0xFFFF;  // a bf16 NaN: any element left unwritten shows

struct Case {
  int64_t batch, heads, d, lq, lk;
  bool fused;              // q, k, v as column slices of one [L, 3*H*D] buffer (self-attention)
  int64_t pad;             // extra elements at the end of every row of each buffer (0: dense rows)
  bool expect_unsupported; // cuDNN must refuse it (supports() false) instead of running it
};

// Sizes from 1 to 300 that are no multiple of 64 or 128; head dims 64 and 128 (the release's), 256.
const Case kCases[] = {
    {1, 1, 64, 37, 37, true, 0, false},     {2, 2, 64, 100, 100, true, 0, false},
    {2, 3, 128, 200, 77, false, 8, false},  {1, 4, 128, 130, 1, false, 0, false},
    {2, 4, 128, 257, 257, true, 16, false}, {1, 40, 128, 300, 300, true, 0, false},
    {1, 2, 64, 1, 65, false, 0, false},     {1, 2, 256, 70, 90, false, 0, false},
    {1, 2, 12, 20, 20, true, 0, true},      // head dim not a multiple of 8: no fused engine
};

std::string name_of(const Case& c) {
  return "batch " + std::to_string(c.batch) + ", heads " + std::to_string(c.heads) + ", d " + std::to_string(c.d) +
         ", Lq " + std::to_string(c.lq) + ", Lk " + std::to_string(c.lk) + (c.fused ? ", fused qkv" : "") +
         (c.pad ? ", padded rows" : "");
}

using test::block_f32;
using test::random_bf16;
using test::to_device;

void print_runtime_once() {
  static bool done = false;
  if (done) return;
  done = true;
  set_log_level("debug");  // the plan cache logs the graph and engine it picked
#if defined(INBETWEEN_HAVE_CUDNN)
  std::printf("cuDNN runtime %zu, headers %d\n", cudnnGetVersion(), CUDNN_VERSION);
#endif
}

TEST(CudnnAttention, MatchesCpuReference) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  print_runtime_once();
  for (const Case& c : kCases) {
    SCOPED_TRACE(name_of(c));
    const int64_t hd = c.heads * c.d;
    // Buffers: fused [B][L][3*hd + pad] for self-attention, else q [B][Lq][hd + pad] and a fused
    // kv [B][Lk][2*hd + pad]; out [B][Lq][hd + pad]. Rows and batches are consecutive.
    const int64_t q_stride = c.fused ? 3 * hd + c.pad : hd + c.pad;
    const int64_t kv_stride = c.fused ? q_stride : 2 * hd + c.pad;
    const int64_t o_stride = hd + c.pad;
    const auto q_host = random_bf16(static_cast<size_t>(c.batch * c.lq * q_stride), 1, 1.5f);
    const auto kv_host = c.fused ? q_host : random_bf16(static_cast<size_t>(c.batch * c.lk * kv_stride), 2, 1.5f);
    const Tensor q_dev = to_device(q_host);
    const Tensor kv_dev = c.fused ? q_dev : to_device(kv_host);
    const std::vector<uint16_t> poison(static_cast<size_t>(c.batch * c.lq * o_stride), kPoison);
    const Tensor out_dev = to_device(poison);

    const auto* qp = static_cast<const uint16_t*>(q_dev.raw());
    const auto* kvp = static_cast<const uint16_t*>(kv_dev.raw());
    AttentionProblem p;
    p.q = qp;
    p.k = c.fused ? qp + hd : kvp;
    p.v = c.fused ? qp + 2 * hd : kvp + hd;
    p.out = out_dev.raw();
    p.batch = c.batch, p.heads = c.heads, p.head_dim = c.d, p.lq = c.lq, p.lk = c.lk;
    p.q_row_stride = q_stride, p.k_row_stride = kv_stride, p.v_row_stride = kv_stride, p.o_row_stride = o_stride;
    p.q_batch_stride = c.lq * q_stride, p.k_batch_stride = c.lk * kv_stride, p.v_batch_stride = c.lk * kv_stride;
    p.o_batch_stride = c.lq * o_stride;
    p.scale = 1.0f / std::sqrt(static_cast<float>(c.d));

    if (c.expect_unsupported) {
      EXPECT_FALSE(gpu::cudnn_attention_supports(p));
      EXPECT_THROW(gpu::cudnn_attention(p), Error);
      continue;
    }
    ASSERT_TRUE(gpu::cudnn_attention_supports(p)) << "cuDNN refused a problem it must take (the log says why)";
    gpu::cudnn_attention(p);
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const Tensor out_host = out_dev.to(Device::CPU);
    const auto* o = out_host.data<uint16_t>();

    double max_err = 0, max_rounding = 0, max_ref = 0;
    int64_t unwritten = 0, overwritten = 0;
    for (int64_t b = 0; b < c.batch; ++b) {
      const int64_t kv_col = c.fused ? hd : 0;
      const Tensor q = block_f32(q_host, q_stride, b * c.lq, c.lq, 0, hd);
      const Tensor k = block_f32(kv_host, kv_stride, b * c.lk, c.lk, kv_col, hd);
      const Tensor v = block_f32(kv_host, kv_stride, b * c.lk, c.lk, kv_col + hd, hd);
      ops::AttentionArgs args;
      args.num_heads = c.heads;
      args.scale = p.scale;
      const Tensor ref = Tensor::empty({c.lq, hd}, DType::F32);
      ops::cpu::attention(q, k, v, args, ref);
      const float* r = ref.data<float>();
      for (int64_t i = 0; i < c.lq; ++i) {
        const uint16_t* row = o + (b * c.lq + i) * o_stride;
        for (int64_t j = 0; j < hd; ++j) {
          const float got = bf16_to_f32(row[j]), want = r[i * hd + j];
          if (std::isnan(got)) {
            ++unwritten;
            continue;
          }
          max_err = std::max(max_err, static_cast<double>(std::fabs(got - want)));
          max_rounding = std::max(max_rounding, static_cast<double>(std::fabs(round_bf16(want) - want)));
          max_ref = std::max(max_ref, static_cast<double>(std::fabs(want)));
        }
        for (int64_t j = hd; j < o_stride; ++j) overwritten += row[j] != kPoison;
      }
    }
    // The output is stored in bf16, so even exact arithmetic misses the f32 reference by the
    // rounding max|bf16(ref) - ref|; flash kernels also round the probabilities to bf16 before
    // P·V, which costs about as much again (flash-attention's tests allow twice the error of a
    // same-precision reference). 1e-3 * max|ref| covers f32 accumulation order and exp().
    const double bound = 2 * max_rounding + 1e-3 * max_ref;
    EXPECT_EQ(unwritten, 0) << "output elements left unwritten (still poison)";
    EXPECT_EQ(overwritten, 0) << "row padding beyond heads*head_dim was written";
    EXPECT_LE(max_err, bound) << "max|ref| " << max_ref;
    std::printf("  %-60s max err %.3g (bound %.3g, bf16 rounding %.3g, max|ref| %.3g)\n", name_of(c).c_str(), max_err,
                bound, max_rounding, max_ref);
  }
}

// A plan is built on the handle of the first thread that meets its signature and shared: another
// thread (with its own handle) must get the same bits.
TEST(CudnnAttention, PlanSharedAcrossThreads) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  print_runtime_once();
  const int64_t L = 190, H = 3, D = 128, hd = H * D;
  const Tensor qkv = to_device(random_bf16(static_cast<size_t>(L * 3 * hd), 3, 1.0f));
  const std::vector<uint16_t> poison(static_cast<size_t>(L * hd), kPoison);
  const Tensor out_main = to_device(poison), out_thread = to_device(poison);
  const auto* base = static_cast<const uint16_t*>(qkv.raw());
  AttentionProblem p;
  p.q = base, p.k = base + hd, p.v = base + 2 * hd;
  p.batch = 1, p.heads = H, p.head_dim = D, p.lq = L, p.lk = L;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = 3 * hd, p.o_row_stride = hd;
  p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = L * 3 * hd, p.o_batch_stride = L * hd;
  p.scale = 0.1f;
  ASSERT_TRUE(gpu::cudnn_attention_supports(p));
  p.out = out_main.raw();
  gpu::cudnn_attention(p);
  std::string error;
  std::thread([&] {
    try {
      AttentionProblem p2 = p;
      p2.out = out_thread.raw();
      gpu::cudnn_attention(p2);
      if (cudaDeviceSynchronize() != cudaSuccess) error = "cudaDeviceSynchronize failed";
    } catch (const std::exception& e) {
      error = e.what();
    }
  }).join();
  ASSERT_EQ(error, "");
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  const Tensor a = out_main.to(Device::CPU), b = out_thread.to(Device::CPU);
  EXPECT_EQ(std::memcmp(a.raw(), b.raw(), a.nbytes()), 0);
  EXPECT_EQ(std::count(a.data<uint16_t>(), a.data<uint16_t>() + a.numel(), kPoison), 0);
}

// The release's self-attention (40 heads of 128, q/k/v slices of one fused [L, 3*5120] buffer) at
// 32,760 tokens (81 frames of 832x480 latents). FLOPs = 4 * L^2 * 128 * 40.
TEST(CudnnAttention, DISABLED_TimeSelfAttention40x128) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  print_runtime_once();
  const int64_t L = 32760, H = 40, D = 128, hd = H * D;
  // Random bf16 in about [-2, 2) from a fast generator (the values do not matter for timing).
  std::vector<uint16_t> host(static_cast<size_t>(L * 3 * hd));
  uint64_t s = 0x9E3779B97F4A7C15ull;
  for (auto& x : host) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    x = f32_to_bf16(static_cast<float>(static_cast<int64_t>(s >> 40) - (1 << 23)) / (1 << 22));
  }
  const Tensor qkv = to_device(host);
  host.clear();
  host.shrink_to_fit();
  const Tensor out = Tensor::empty({L * hd}, DType::BF16, Device::CUDA);
  const auto* base = static_cast<const uint16_t*>(qkv.raw());
  AttentionProblem p;
  p.q = base, p.k = base + hd, p.v = base + 2 * hd, p.out = out.raw();
  p.batch = 1, p.heads = H, p.head_dim = D, p.lq = L, p.lk = L;
  p.q_row_stride = p.k_row_stride = p.v_row_stride = 3 * hd;
  p.o_row_stride = hd;
  p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = L * 3 * hd;
  p.o_batch_stride = L * hd;
  p.scale = 1.0f / std::sqrt(static_cast<float>(D));

  ASSERT_TRUE(gpu::cudnn_attention_supports(p)) << "cuDNN must take 40 heads of 128";
  for (int i = 0; i < 3; ++i) gpu::cudnn_attention(p);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaEvent_t t0, t1;
  cudaEventCreate(&t0);
  cudaEventCreate(&t1);
  float best = 1e30f;  // the best of 5 rounds of 10 calls
  for (int round = 0; round < 5; ++round) {
    const int reps = 10;
    cudaEventRecord(t0);
    for (int i = 0; i < reps; ++i) gpu::cudnn_attention(p);
    cudaEventRecord(t1);
    ASSERT_EQ(cudaEventSynchronize(t1), cudaSuccess);
    float ms = 0;
    cudaEventElapsedTime(&ms, t0, t1);
    best = std::min(best, ms / reps);
  }
  cudaEventDestroy(t0);
  cudaEventDestroy(t1);
  const double flops = 4.0 * static_cast<double>(L) * static_cast<double>(L) * D * H;
  std::printf("  L %lld, 40 heads x 128: %.3f ms, %.1f TFLOP/s\n", static_cast<long long>(L), best,
              flops / (best * 1e-3) / 1e12);
}

}  // namespace
}  // namespace ib
