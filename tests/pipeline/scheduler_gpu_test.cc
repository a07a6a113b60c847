// Schedulers on CUDA (label gpu): every sched_<solver>_<steps>_<shift>.safetensors trajectory of the
// fixture folder stepped with device tensors against its latent_{i+1} (bound 1e-5 x (1 + max|ref|))
// and against the same run on the CPU; the sampler op's updates and the guidance combination
// against their CPU backend. The kernels avoid fused multiply-adds, so the counts of values that
// are not bit-identical are printed (expected 0) beside the bounds.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "common/fixture.h"
#include "pipeline/sched_cases.h"
#include "ops/sampler.h"
#include "pipeline/scheduler.h"

namespace ib {
namespace {

constexpr double kRel = 1e-5;

Tensor gpu(const Tensor& t) { return t.defined() ? t.to(Device::CUDA) : t; }

int64_t bit_differences(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(Device::CPU), y = b.to(Device::CPU);
  int64_t n = 0;
  for (int64_t i = 0; i < x.numel(); ++i) n += x.data<float>()[i] != y.data<float>()[i];
  return n;
}

using test::SchedCase;

TEST(SchedulerGpu, ReplaysEveryTrajectory) {
  const std::vector<SchedCase> cases = test::find_sched_cases();
  ASSERT_FALSE(cases.empty()) << "no sched_*.safetensors in " << test::fixture_dir();
  for (const SchedCase& c : cases) {
    SCOPED_TRACE(c.file);
    const auto f = test::open_fixture(c.file);
    auto sched = Scheduler::create(c.solver, c.steps, c.shift);
    auto sched_cpu = Scheduler::create(c.solver, c.steps, c.shift);
    Tensor x = gpu(f->get("latent_0"));
    Tensor x_cpu = f->get("latent_0");
    double max_rel = 0;
    int64_t diff_ref = 0, diff_cpu = 0;
    for (int i = 0; i < c.steps; ++i) {
      SCOPED_TRACE("step " + std::to_string(i));
      const Tensor v = f->get("model_output_" + std::to_string(i));
      x = sched->step(gpu(v), x);
      ASSERT_EQ(x.device(), Device::CUDA);
      x_cpu = sched_cpu->step(v, x_cpu);
      const Tensor want = f->get("latent_" + std::to_string(i + 1));
      const test::Closeness cl = test::compare(x, want, kRel);
      ASSERT_TRUE(cl.shape_ok);
      EXPECT_LE(cl.max_abs_err, cl.bound) << "max abs err " << cl.max_abs_err;
      max_rel = std::max(max_rel, cl.max_abs_err / (1.0 + cl.max_abs_ref));
      diff_ref += bit_differences(x, want);
      diff_cpu += bit_differences(x, x_cpu);
    }
    EXPECT_EQ(sched->step_index(), c.steps);
    std::printf("[measured] %s on CUDA: max err/(1+max|ref|)=%.3g (bound %.0e), %lld values not bit-identical to "
                "the fixture, %lld to the CPU run\n",
                c.file.c_str(), max_rel, kRel, static_cast<long long>(diff_ref), static_cast<long long>(diff_cpu));
  }
}

TEST(SchedulerGpu, RejectsMixedDevices) {
  auto s = Scheduler::create(Solver::UniPC, 2, 5.0);
  const Tensor x = test::random_tensor({4, 5}, 1);
  EXPECT_THROW(s->step(gpu(x), x), Error);
  EXPECT_EQ(s->step_index(), 0);
  (void)s->step(gpu(x), gpu(x));
  EXPECT_THROW(s->step(x, x), Error);  // the history is on the device
}

TEST(SamplerGpu, UpdatesMatchCpu) {
  const Shape s{16, 3, 10, 18};
  const Tensor x = test::random_tensor(s, 1), m0 = test::random_tensor(s, 2), m1 = test::random_tensor(s, 3),
               mt = test::random_tensor(s, 4);
  ops::SamplerArgs a;
  a.c_x = 0.93f;
  a.c_m = -0.071f;
  a.c_b = -0.0693f;
  a.r = -1.37f;
  a.rho0 = 0.41f;
  a.rho1 = 0.27f;
  a.inv_r0 = 0.6f;
  using U = ops::SamplerUpdate;
  for (U u : {U::UniPCPredictor1, U::UniPCPredictor2, U::UniPCCorrector1, U::UniPCCorrector2, U::DpmFirst,
              U::DpmSecond}) {
    a.update = u;
    const Tensor want = ops::sampler_update(a, x, m0, m1, mt);
    const Tensor got = ops::sampler_update(a, gpu(x), gpu(m0), gpu(m1), gpu(mt));
    EXPECT_EQ(got.device(), Device::CUDA);
    EXPECT_TENSOR_CLOSE(got, want, kRel) << static_cast<int>(u);
    std::printf("[measured] sampler_update %d: %lld values not bit-identical to the CPU\n", static_cast<int>(u),
                static_cast<long long>(bit_differences(got, want)));
  }
  const Tensor v = test::random_tensor(s, 5);
  const Tensor m = ops::flow_data_prediction(gpu(v), gpu(x), 0.99866247f);
  EXPECT_TENSOR_CLOSE(m, ops::flow_data_prediction(v, x, 0.99866247f), kRel);
  EXPECT_EQ(bit_differences(m, ops::flow_data_prediction(v, x, 0.99866247f)), 0);
}

TEST(SamplerGpu, CfgCombineMatchesCpu) {
  const Shape s{16, 21, 12, 20};
  const Tensor vc = test::random_tensor(s, 6), vu = test::random_tensor(s, 7);
  for (float g : {5.0f, 1.0f, 0.0f, 7.5f}) {
    const Tensor want = ops::cfg_combine(vc, vu, g);
    const Tensor got = ops::cfg_combine(gpu(vc), gpu(vu), g);
    EXPECT_EQ(got.device(), Device::CUDA);
    EXPECT_TENSOR_CLOSE(got, want, kRel) << "g " << g;
    std::printf("[measured] cfg_combine g=%g: %lld values not bit-identical to the CPU\n", g,
                static_cast<long long>(bit_differences(got, want)));
  }
  EXPECT_THROW(ops::cfg_combine(gpu(vc), vu, 5.0f), Error);
}

}  // namespace
}  // namespace ib
