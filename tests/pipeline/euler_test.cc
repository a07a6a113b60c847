// The flow-matching Euler sampler (Scheduler with Solver::Euler, ops::flow_euler_step): the
// schedule of an explicit timestep list with the shift, and a whole trajectory, against values and
// a loop computed here independently; the default grid; refusals of bad lists and of --timesteps
// with the other solvers.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "ops/sampler.h"
#include "pipeline/scheduler.h"

namespace ib {
namespace {

TEST(Euler, ParsesAndNames) {
  EXPECT_EQ(parse_solver("euler"), Solver::Euler);
  EXPECT_STREQ(solver_name(Solver::Euler), "euler");
  test::expect_error([] { parse_solver("heun"); }, {"unknown solver 'heun'", "unipc, dpm++ or euler"});
}

// 1000, 750, 500, 250 at shift 5 (lightx2v's distilled setting): σ' = 5σ/(1 + 4σ) = 1, 15/16, 5/6, 5/8;
// the DiT sees trunc(1000·σ').
TEST(Euler, ExplicitTimestepsAreShifted) {
  auto s = Scheduler::create(Solver::Euler, std::vector<int64_t>{1000, 750, 500, 250}, 5.0);
  EXPECT_EQ(s->solver(), Solver::Euler);
  EXPECT_EQ(s->num_steps(), 4);
  EXPECT_EQ(s->timesteps(), (std::vector<int64_t>{1000, 937, 833, 625}));
  EXPECT_EQ(s->sigmas(), (std::vector<float>{1.0f, 0.9375f, static_cast<float>(5.0 / 6.0), 0.625f, 0.0f}));
  // Shift 1 leaves the list as it is.
  auto plain = Scheduler::create(Solver::Euler, std::vector<int64_t>{999, 400, 7}, 1.0);
  EXPECT_EQ(plain->timesteps(), (std::vector<int64_t>{999, 400, 7}));
  EXPECT_EQ(plain->sigmas(), (std::vector<float>{0.999f, 0.4f, 0.007f, 0.0f}));
}

TEST(Euler, DefaultGridIsTheDistilledList) {
  for (double shift : {1.0, 5.0, 16.0}) {
    auto grid = Scheduler::create(Solver::Euler, 4, shift);
    auto list = Scheduler::create(Solver::Euler, std::vector<int64_t>{1000, 750, 500, 250}, shift);
    EXPECT_EQ(grid->timesteps(), list->timesteps()) << shift;
    EXPECT_EQ(grid->sigmas(), list->sigmas()) << shift;
  }
  // The grid is DPM++'s.
  auto euler = Scheduler::create(Solver::Euler, 13, 7.0);
  auto dpm = Scheduler::create(Solver::DpmPP, 13, 7.0);
  EXPECT_EQ(euler->timesteps(), dpm->timesteps());
  EXPECT_EQ(euler->sigmas(), dpm->sigmas());
}

// A whole trajectory with a synthetic velocity field v_k = a_k·x + n_k against the reference loop
// x ← x + (σ'_{k+1} − σ'_k)·v with the sigmas computed here in double from the list and rounded to
// f32 (the product, then the sum, in f32 as upstream's tensor ops).
TEST(Euler, TrajectoryMatchesAnIndependentLoop) {
  const std::vector<int64_t> ts = {1000, 875, 600, 321, 40};
  const double shift = 3.0;
  const Shape shape{4, 3, 6, 10};
  Tensor x = test::random_tensor(shape, 5);
  std::vector<float> ref(x.data<float>(), x.data<float>() + x.numel());
  std::vector<float> sig;
  for (int64_t t : ts) {
    const double s = static_cast<double>(t) / 1000.0;
    sig.push_back(static_cast<float>(shift * s / (1.0 + (shift - 1.0) * s)));
  }
  sig.push_back(0.0f);
  auto sched = Scheduler::create(Solver::Euler, ts, shift);
  for (size_t k = 0; k < ts.size(); ++k) {
    const float a = -0.3f + 0.1f * static_cast<float>(k);
    const Tensor noise = test::random_tensor(shape, 100 + static_cast<uint32_t>(k));
    Tensor v = Tensor::empty(shape, DType::F32);
    for (int64_t i = 0; i < v.numel(); ++i) v.data<float>()[i] = a * x.data<float>()[i] + noise.data<float>()[i];
    std::vector<float> vr(ref.size());
    for (size_t i = 0; i < ref.size(); ++i) vr[i] = a * ref[i] + noise.data<float>()[i];
    const float dt = sig[k + 1] - sig[k];
    for (size_t i = 0; i < ref.size(); ++i) ref[i] = ref[i] + dt * vr[i];
    x = sched->step(v, x);
    ASSERT_EQ(sched->step_index(), static_cast<int>(k) + 1);
    int64_t differ = 0;
    for (int64_t i = 0; i < x.numel(); ++i) differ += x.data<float>()[i] != ref[static_cast<size_t>(i)];
    EXPECT_EQ(differ, 0) << "step " << k;
  }
  // The last step lands on σ = 0: x_0 = x − σ'_last·v there, and no step is left.
  EXPECT_THROW(sched->step(x, x), Error);
}

TEST(Euler, StepOp) {
  const Tensor x = test::random_tensor({3, 17}, 1), v = test::random_tensor({3, 17}, 2);
  const Tensor out = ops::flow_euler_step(v, x, -0.25f);
  for (int64_t i = 0; i < x.numel(); ++i)
    EXPECT_EQ(out.data<float>()[i], x.data<float>()[i] + -0.25f * v.data<float>()[i]);
  test::expect_error([&] { ops::flow_euler_step(test::random_tensor({3, 16}, 3), x, 0.1f); }, {"flow_euler_step", "v"});
}

TEST(Euler, RefusesBadListsAndOtherSolvers) {
  using test::expect_error;
  for (Solver s : {Solver::UniPC, Solver::DpmPP})
    expect_error([&] { Scheduler::create(s, std::vector<int64_t>{1000, 500}, 5.0); },
                 {"--timesteps works with the euler solver only", solver_name(s), "--solver euler"});
  auto make = [](std::vector<int64_t> ts, double shift = 5.0) { Scheduler::create(Solver::Euler, ts, shift); };
  expect_error([&] { make({}); }, {"timestep list is empty"});
  expect_error([&] { make({1000, 1000, 500}); }, {"strictly decreasing", "1000 follows 1000"});
  expect_error([&] { make({500, 750}); }, {"strictly decreasing", "750 follows 500"});
  expect_error([&] { make({1001, 500}); }, {"1001 is outside [1, 1000]"});
  expect_error([&] { make({1000, 0}); }, {"0 is outside [1, 1000]"});
  expect_error([&] { make({1000, 500}, 0.0); }, {"shift must be a finite number > 0"});
}

}  // namespace
}  // namespace ib
