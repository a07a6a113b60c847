// The GPU engine's DiT (src/gpu/dit_runner.h) against the upstream oracle (dit.safetensors) with
// bf16 activations: the fixture's float32 numbers within the bf16 bound; both attention back-ends;
// and a warm forward that allocates no device memory and leaves its inputs alone.
#include <gtest/gtest.h>

#include "common/fixture.h"
#include "core/cuda_memory.h"
#include "gpu/dit_runner.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "models/dit.h"

namespace ib {
namespace {

struct Loaded {
  std::unique_ptr<gpu::DitRunner> runner;
  std::shared_ptr<SafetensorsFile> f;
};

Loaded load() {
  const ModelFolder folder = ModelFolder::open(test::model_dir());
  const WanDiT dit = WanDiT::load(*open_tensor_store(folder.dit_path), folder.dit);
  return {gpu::DitRunner::create(dit), test::open_fixture("dit.safetensors")};
}

Tensor forward(const Loaded& l, const char* t_name, gpu::AttentionBackend backend) {
  l.runner->set_attention_backend(backend);
  const Tensor clip = l.f->contains("clip_fea") ? l.f->get("clip_fea") : Tensor();
  const Tensor y = l.f->contains("y") ? l.f->get("y").to(Device::CUDA) : Tensor();
  const gpu::DitContext ctx = l.runner->prepare(l.f->get("context"), clip);
  const double t = static_cast<double>(l.f->get(t_name).data<int64_t>()[0]);
  return l.runner->forward(l.f->get("x").to(Device::CUDA), t, ctx, y).to(Device::CPU);
}

// bf16 activations: each linear's input and output rounded to bf16 (upstream's autocast). The
// bound is the one the bf16 DiT on the op layer met before (2e-2 x (1 + max|ref|)).
TEST(GpuEngineDit, MatchesOracleInBf16) {
  const Loaded l = load();
  for (const auto& [t_name, out_name] : {std::pair{"t", "out"}, std::pair{"t2", "out2"}}) {
    const Tensor out = forward(l, t_name, gpu::AttentionBackend::Flash);
    EXPECT_TENSOR_CLOSE(out, l.f->get(out_name), 2e-2) << out_name << " (flash attention)";
    const test::Closeness c = test::compare(out, l.f->get(out_name), 2e-2);
    std::printf("[measured] GPU engine DiT %s: max abs err %.3g (max|ref| %.3g)\n", out_name, c.max_abs_err,
                c.max_abs_ref);
    EXPECT_GT(c.max_abs_err, 0.0);  // really bf16, not the f32 path
  }
}

TEST(GpuEngineDit, AttentionBackendsAgree) {
  const Loaded l = load();
  const int64_t D = l.runner->config().dim / l.runner->config().num_heads;
  gpu::AttentionProblem probe;
  probe.head_dim = D;
  probe.heads = l.runner->config().num_heads;
  probe.lq = probe.lk = 64;
  probe.q_row_stride = probe.k_row_stride = probe.v_row_stride = probe.o_row_stride = l.runner->config().dim;
  if (!gpu::cudnn_attention_supports(probe)) GTEST_SKIP() << "cuDNN does not take head dim " << D << " here";
  const Tensor a = forward(l, "t", gpu::AttentionBackend::Flash);
  const Tensor b = forward(l, "t", gpu::AttentionBackend::Cudnn);
  EXPECT_TENSOR_CLOSE(b, l.f->get("out"), 2e-2);
  EXPECT_TENSOR_CLOSE(a, b, 2e-2);
}

TEST(GpuEngineDit, WarmForwardAllocatesNothingAndKeepsInputs) {
  const Loaded l = load();
  const Tensor clip = l.f->contains("clip_fea") ? l.f->get("clip_fea") : Tensor();
  const Tensor y = l.f->contains("y") ? l.f->get("y").to(Device::CUDA) : Tensor();
  const gpu::DitContext ctx = l.runner->prepare(l.f->get("context"), clip);
  const Tensor x = l.f->get("x").to(Device::CUDA);
  const Tensor first = l.runner->forward(x, 500.0, ctx, y).to(Device::CPU);
  (void)l.runner->forward(x, 500.0, ctx, y);  // the allocator's cache settles within two forwards
  const long long mallocs = cuda::memory_stats().cuda_mallocs;
  const Tensor second = l.runner->forward(x, 500.0, ctx, y).to(Device::CPU);
  EXPECT_EQ(cuda::memory_stats().cuda_mallocs, mallocs) << "a warm forward called cudaMalloc";
  // Same inputs, same kernels: the same numbers (x and the prepared context were not modified).
  EXPECT_TENSOR_CLOSE_ABS(second, first, 0.0);
  EXPECT_TENSOR_CLOSE_ABS(x.to(Device::CPU), l.f->get("x"), 0.0);
}

TEST(GpuEngineDit, RejectsHostLatentAndWrongConditioning) {
  const Loaded l = load();
  const Tensor clip = l.f->contains("clip_fea") ? l.f->get("clip_fea") : Tensor();
  const gpu::DitContext ctx = l.runner->prepare(l.f->get("context"), clip);
  const Tensor y = l.f->contains("y") ? l.f->get("y").to(Device::CUDA) : Tensor();
  EXPECT_THROW(l.runner->forward(l.f->get("x"), 500.0, ctx, y), Error);  // host latent
  if (y.defined()) {
    EXPECT_THROW(l.runner->forward(l.f->get("x").to(Device::CUDA), 500.0, ctx, Tensor()), Error);
  }
}

}  // namespace
}  // namespace ib
