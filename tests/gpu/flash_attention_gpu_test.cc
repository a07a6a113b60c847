// GPU checks of the tensor-core attention (label gpu, run on the lent GPU machine): our flash
// kernel, our Hopper kernel (head dim 128), and Auto (cuDNN where it takes the problem), against
// ops::cpu::attention on the same
// bf16-rounded inputs in f32, over one table of cases (head dims 16 to 256, tails of both tiles,
// one query or one key, batch 2, q/k/v as column slices of a fused buffer, logits far past exp's
// range). Every head dim 128 tile variant (IB_FLASH_VARIANT) runs the same table.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"
#include "gpu/attention.h"
#include "inbetween/error.h"
#include "ops/attention.h"

namespace ib {
namespace {

void cuda_ok(cudaError_t e, const char* what) { ASSERT_EQ(e, cudaSuccess) << what << ": " << cudaGetErrorString(e); }

struct Case {
  const char* name;
  int64_t batch, heads, d, lq, lk;
  bool fused;   // q, k, v are column slices of one [L, 3*H*D] buffer (lq == lk)
  float scale;  // 0: 1/sqrt(D)
  float sd;     // standard deviation of q and k (v is always 1)
};

// BlockM is 64 or 128 query rows and BlockN 32, 64 or 128 keys: the lengths below leave tails.
const Case kCases[] = {
    {"d16", 1, 2, 16, 37, 53, false, 0, 1},
    {"d32 batch2", 2, 3, 32, 100, 77, false, 0, 1},
    {"d64 fused batch2", 2, 4, 64, 130, 130, true, 0, 1},
    {"d128 fused", 1, 2, 128, 300, 300, true, 0, 1},
    {"d128 fused batch2", 2, 3, 128, 129, 129, true, 0, 1},
    {"d128 lk1", 2, 1, 128, 70, 1, false, 0, 1},
    {"d128 lq1", 1, 3, 128, 1, 200, false, 0, 1},
    {"d128 lq1 lk1", 1, 1, 128, 1, 1, false, 0, 1},
    {"d128 scale 0.3", 1, 2, 128, 129, 65, false, 0.3f, 1},
    {"d128 many key tiles", 1, 4, 128, 257, 1000, false, 0, 1},
    // The Hopper kernel's two launch forms: more work items (3 x 48) than the H200's 132 SMs, so
    // that persistent blocks take several (keys < 2048), and one block per item (keys >= 2048).
    {"d128 many items", 1, 48, 128, 300, 129, false, 0, 1},
    {"d128 long keys", 1, 2, 128, 300, 2100, false, 0, 1},
    // Logits of sd 9*8 = 72 (max ~200): exp overflows f32 past 88, so without the running max
    // every row would be inf/inf. The row maxima also move between key tiles.
    {"d64 large logits", 1, 2, 64, 90, 390, false, 1.0f, 3},
    {"d128 large logits", 2, 2, 128, 200, 333, false, 0, 6},
    {"d256", 1, 2, 256, 67, 45, false, 0, 1},
    {"d256 fused", 2, 1, 256, 100, 100, true, 0, 1},
};

// The inputs of one case on the host (bf16 bits in one buffer, q, k and v at offsets with their
// strides) and the matching problem on the device.
struct Inputs {
  std::vector<uint16_t> host;
  int64_t q_off = 0, k_off = 0, v_off = 0;
  gpu::AttentionProblem p;
  int64_t out_elems = 0;
  uint16_t* d_in = nullptr;
  uint16_t* d_out = nullptr;
  ~Inputs() {
    cudaFree(d_in);
    cudaFree(d_out);
  }
};

void make_inputs(const Case& c, uint32_t seed, Inputs& in) {
  const int64_t W = c.heads * c.d;
  gpu::AttentionProblem& p = in.p;
  p.batch = c.batch, p.heads = c.heads, p.head_dim = c.d, p.lq = c.lq, p.lk = c.lk;
  p.scale = c.scale > 0 ? c.scale : 1.0f / std::sqrt(static_cast<float>(c.d));
  int64_t total = 0;
  if (c.fused) {
    // [batch][L + 3][3W]: rows hold q | k | v; three spare rows make the batch stride its own value.
    p.q_row_stride = p.k_row_stride = p.v_row_stride = 3 * W;
    p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = (c.lq + 3) * 3 * W;
    in.q_off = 0, in.k_off = W, in.v_off = 2 * W;
    total = c.batch * p.q_batch_stride;
  } else {
    p.q_row_stride = p.k_row_stride = p.v_row_stride = W;
    p.q_batch_stride = c.lq * W, p.k_batch_stride = p.v_batch_stride = c.lk * W;
    in.q_off = 0, in.k_off = c.batch * c.lq * W, in.v_off = in.k_off + c.batch * c.lk * W;
    total = in.v_off + c.batch * c.lk * W;
  }
  // The output has 8 spare columns per row and a spare row per batch entry: they must stay poisoned.
  p.o_row_stride = W + 8;
  p.o_batch_stride = (c.lq + 1) * p.o_row_stride;
  in.out_elems = c.batch * p.o_batch_stride;

  std::mt19937 rng(seed);
  std::normal_distribution<float> qk(0.0f, c.sd), vd(0.0f, 1.0f);
  in.host.assign(static_cast<size_t>(total), 0);
  for (int64_t i = 0; i < total; ++i) {
    // v's columns (fused) or v's region (separate) get sd 1, the rest sd c.sd.
    const bool is_v = c.fused ? (i % (3 * W)) >= 2 * W : i >= in.v_off;
    in.host[static_cast<size_t>(i)] = f32_to_bf16(is_v ? vd(rng) : qk(rng));
  }
  cuda_ok(cudaMalloc(&in.d_in, static_cast<size_t>(total) * 2), "cudaMalloc in");
  cuda_ok(cudaMalloc(&in.d_out, static_cast<size_t>(in.out_elems) * 2), "cudaMalloc out");
  cuda_ok(cudaMemcpy(in.d_in, in.host.data(), static_cast<size_t>(total) * 2, cudaMemcpyHostToDevice), "copy in");
  p.q = in.d_in + in.q_off, p.k = in.d_in + in.k_off, p.v = in.d_in + in.v_off;
  p.out = in.d_out;
}

// Rows [0, L) of batch entry b of one input as f32 [L, W].
Tensor extract(const Inputs& in, int64_t off, int64_t row_stride, int64_t batch_stride, int64_t b, int64_t L,
               int64_t W) {
  Tensor t = Tensor::empty({L, W}, DType::F32);
  float* dst = t.data<float>();
  for (int64_t r = 0; r < L; ++r)
    for (int64_t c = 0; c < W; ++c)
      dst[r * W + c] = bf16_to_f32(in.host[static_cast<size_t>(off + b * batch_stride + r * row_stride + c)]);
  return t;
}

// References per batch entry: ops::attention (CPU, f32) on the bf16 inputs.
std::vector<Tensor> references(const Case& c, const Inputs& in, float scale) {
  const int64_t W = c.heads * c.d;
  const gpu::AttentionProblem& p = in.p;
  std::vector<Tensor> refs;
  for (int64_t b = 0; b < c.batch; ++b) {
    ops::AttentionArgs args;
    args.num_heads = c.heads;
    args.scale = scale;
    refs.push_back(ops::attention(extract(in, in.q_off, p.q_row_stride, p.q_batch_stride, b, c.lq, W),
                                  extract(in, in.k_off, p.k_row_stride, p.k_batch_stride, b, c.lk, W),
                                  extract(in, in.v_off, p.v_row_stride, p.v_batch_stride, b, c.lk, W), args));
  }
  return refs;
}

struct Errors {
  double err = 0, ref_round = 0, max_ref = 0;
  int64_t unwritten = 0, clobbered = 0;
  // The kernel rounds P to bf16 before P V and rounds its output to bf16, so it may be off by about
  // twice the bf16 rounding of the reference itself (flash-attention's own tests allow 2x the
  // error of a same-precision reference); 1e-3 x max|ref| covers f32 summation order and the
  // approximate exp2. That is ~5e-3 of the largest output: a wrong max, a missed rescale or a
  // dropped key tile is off by 1e-1 or more.
  double bound() const { return 2 * ref_round + 1e-3 * max_ref; }
};

// Runs the problem with a poisoned output (0xFFFF = bf16 NaN) and compares with the references.
Errors run_and_compare(const Case& c, Inputs& in, const std::vector<Tensor>& refs, gpu::AttentionBackend backend,
                       std::vector<uint16_t>* out_copy = nullptr) {
  Errors e;
  const int64_t W = c.heads * c.d;
  const gpu::AttentionProblem& p = in.p;
  EXPECT_EQ(cudaMemset(in.d_out, 0xFF, static_cast<size_t>(in.out_elems) * 2), cudaSuccess);
  gpu::attention(p, backend);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << c.name;
  std::vector<uint16_t> out(static_cast<size_t>(in.out_elems));
  EXPECT_EQ(cudaMemcpy(out.data(), in.d_out, out.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  for (int64_t b = 0; b < c.batch; ++b) {
    const float* ref = refs[static_cast<size_t>(b)].data<float>();
    for (int64_t r = 0; r <= c.lq; ++r)
      for (int64_t col = 0; col < p.o_row_stride; ++col) {
        const uint16_t bits = out[static_cast<size_t>(b * p.o_batch_stride + r * p.o_row_stride + col)];
        if (r == c.lq || col >= W) {  // padding: must not be written
          e.clobbered += bits != 0xFFFF;
          continue;
        }
        const float x = bf16_to_f32(bits), y = ref[r * W + col];
        if (!std::isfinite(x)) {
          ++e.unwritten;
          continue;
        }
        e.err = std::max(e.err, static_cast<double>(std::fabs(x - y)));
        e.ref_round = std::max(e.ref_round, static_cast<double>(std::fabs(round_bf16(y) - y)));
        e.max_ref = std::max(e.max_ref, static_cast<double>(std::fabs(y)));
      }
  }
  if (out_copy) *out_copy = std::move(out);
  return e;
}

void expect_within(const Case& c, const Errors& e, const std::string& what) {
  EXPECT_EQ(e.unwritten, 0) << c.name << " " << what << ": outputs not written or not finite";
  EXPECT_EQ(e.clobbered, 0) << c.name << " " << what << ": writes outside the output rows";
  EXPECT_LE(e.err, e.bound()) << c.name << " " << what << ": max|gpu - ref| " << e.err << ", bound " << e.bound()
                              << " (max|bf16(ref) - ref| " << e.ref_round << ", max|ref| " << e.max_ref << ")";
  std::printf("  %-22s %-10s max|gpu-ref| %.3g  bound %.3g  max|bf16(ref)-ref| %.3g  max|ref| %.3g\n", c.name,
              what.c_str(), e.err, e.bound(), e.ref_round, e.max_ref);
}

// Sets a kernel's dev switch (IB_FLASH_VARIANT: the flash kernel's head dim 128 tile shapes,
// IB_HOPPER_VARIANT: the Hopper kernel's) for the scope of one run.
struct VariantScope {
  const char* name;
  VariantScope(int v, const char* env = "IB_FLASH_VARIANT") : name(env) { setenv(name, std::to_string(v).c_str(), 1); }
  ~VariantScope() { unsetenv(name); }
};
constexpr int kD128Variants = 9;
constexpr int kHopperVariants = 4;

TEST(GpuFlashAttention, CasesAgainstCpuReference) {
  uint32_t seed = 100;
  for (const Case& c : kCases) {
    Inputs in;
    make_inputs(c, seed++, in);
    const std::vector<Tensor> refs = references(c, in, in.p.scale);
    const int variants = c.d == 128 ? kD128Variants : 1;
    for (int v = 0; v < variants; ++v) {
      VariantScope scope(v);
      expect_within(c, run_and_compare(c, in, refs, gpu::AttentionBackend::Flash), "flash v" + std::to_string(v));
    }
  }
}

bool gpu_is_sm90() {
  int dev = 0, major = 0, minor = 0;
  cudaGetDevice(&dev);
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major == 9 && minor == 0;
}

// The Hopper kernel (TMA + wgmma, head dim 128 only), every tile shape, on every head dim 128 case
// of the table and on two longer ones (several query blocks and key tiles, tails of both, batch 2
// fused).
TEST(GpuHopperAttention, CasesAgainstCpuReference) {
  if (!gpu_is_sm90()) GTEST_SKIP() << "the Hopper kernel runs on sm_90 GPUs only";
  std::vector<Case> cases;
  for (const Case& c : kCases)
    if (c.d == 128) cases.push_back(c);
  cases.push_back({"d128 fused batch2 long", 2, 3, 128, 1000, 1000, true, 0, 1});
  cases.push_back({"d128 lq 513 lk 2000", 1, 2, 128, 513, 2000, false, 0, 2});
  uint32_t seed = 300;
  for (const Case& c : cases) {
    Inputs in;
    make_inputs(c, seed++, in);
    ASSERT_TRUE(gpu::hopper_attention_supports(in.p)) << c.name;
    const std::vector<Tensor> refs = references(c, in, in.p.scale);
    for (int v = 0; v < kHopperVariants; ++v) {
      VariantScope scope(v, "IB_HOPPER_VARIANT");
      expect_within(c, run_and_compare(c, in, refs, gpu::AttentionBackend::Hopper), "hopper v" + std::to_string(v));
    }
  }
}

TEST(GpuHopperAttention, WrongScaleFailsAndOtherHeadDimsRefused) {
  if (!gpu_is_sm90()) GTEST_SKIP() << "the Hopper kernel runs on sm_90 GPUs only";
  const Case& c = kCases[3];
  ASSERT_EQ(c.d, 128);
  Inputs in;
  make_inputs(c, 8, in);
  const std::vector<Tensor> refs = references(c, in, in.p.scale);
  in.p.scale *= 2;
  const Errors e = run_and_compare(c, in, refs, gpu::AttentionBackend::Hopper);
  EXPECT_EQ(e.unwritten, 0);
  EXPECT_GT(e.err, 10 * e.bound()) << "doubling the scale went unnoticed: error " << e.err << ", bound " << e.bound();
  gpu::AttentionProblem p = in.p;
  p.head_dim = 64, p.heads = 6;
  EXPECT_FALSE(gpu::hopper_attention_supports(p));
  EXPECT_THROW(gpu::attention(p, gpu::AttentionBackend::Hopper), Error);
  p = in.p;
  p.k = static_cast<const uint16_t*>(p.k) + 4;  // 8 bytes off: the TMA needs 16
  EXPECT_FALSE(gpu::hopper_attention_supports(p));
}

// The bound is tight enough to fail: a doubled scale must be far outside it.
TEST(GpuFlashAttention, WrongScaleFails) {
  const Case& c = kCases[3];
  Inputs in;
  make_inputs(c, 7, in);
  const std::vector<Tensor> refs = references(c, in, in.p.scale);
  in.p.scale *= 2;
  const Errors e = run_and_compare(c, in, refs, gpu::AttentionBackend::Flash);
  EXPECT_EQ(e.unwritten, 0);
  EXPECT_GT(e.err, 10 * e.bound()) << "doubling the scale went unnoticed: error " << e.err << ", bound " << e.bound();
}

TEST(GpuFlashAttention, AutoMatchesFlash) {
  const Case c{"d128 auto", 2, 4, 128, 300, 300, true, 0, 1};
  Inputs in;
  make_inputs(c, 11, in);
  if (!gpu::cudnn_attention_supports(in.p))
    GTEST_SKIP() << "cudnn_attention_supports() is false for head dim 128 (no cuDNN in this build, or cuDNN "
                    "refused the graph: see the log), so Auto is the flash kernel";
  const std::vector<Tensor> refs = references(c, in, in.p.scale);
  std::vector<uint16_t> out_auto, out_flash;
  const Errors ea = run_and_compare(c, in, refs, gpu::AttentionBackend::Auto, &out_auto);
  expect_within(c, ea, "auto");
  const Errors ef = run_and_compare(c, in, refs, gpu::AttentionBackend::Flash, &out_flash);
  expect_within(c, ef, "flash");
  double diff = 0;
  for (size_t i = 0; i < out_auto.size(); ++i) {
    const float a = bf16_to_f32(out_auto[i]), f = bf16_to_f32(out_flash[i]);
    if (std::isfinite(a) && std::isfinite(f)) diff = std::max(diff, static_cast<double>(std::fabs(a - f)));
  }
  std::printf("  max|auto - flash| %.3g\n", diff);
  EXPECT_LE(diff, ea.bound() + ef.bound());
}

TEST(GpuFlashAttention, RejectsBadArguments) {
  const Case c{"args", 1, 2, 64, 10, 10, true, 0, 1};
  Inputs in;
  make_inputs(c, 3, in);
  auto expect_throw = [&](auto&& edit, const char* what) {
    gpu::AttentionProblem p = in.p;
    edit(p);
    EXPECT_THROW(gpu::flash_attention(p), Error) << what;
  };
  expect_throw([](gpu::AttentionProblem& p) { p.head_dim = 48, p.heads = 1; }, "head dim 48");
  expect_throw([](gpu::AttentionProblem& p) { p.q_row_stride += 1; }, "row stride not a multiple of 8");
  expect_throw([](gpu::AttentionProblem& p) { p.v = static_cast<const uint16_t*>(p.v) + 4; }, "misaligned v");
  expect_throw([](gpu::AttentionProblem& p) { p.lq = 0; }, "Lq 0");
  expect_throw([](gpu::AttentionProblem& p) { p.lk = 0; }, "Lk 0");
  expect_throw([](gpu::AttentionProblem& p) { p.scale = 0; }, "scale 0");
  expect_throw([](gpu::AttentionProblem& p) { p.out = nullptr; }, "null out");
  expect_throw([](gpu::AttentionProblem& p) { p.o_row_stride = 64; }, "output rows overlap");
  EXPECT_FALSE(gpu::flash_attention_supports(48));
  EXPECT_TRUE(gpu::flash_attention_supports(128));
  gpu::AttentionProblem p = in.p;
  p.head_dim = 48, p.heads = 1;
  if (!gpu::cudnn_attention_supports(p)) {
    EXPECT_THROW(gpu::attention(p), Error) << "Auto with no back-end";
  }
}

}  // namespace
}  // namespace ib
