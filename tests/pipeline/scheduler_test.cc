// Scheduler tests. Built twice (see scheduler.cmake): without IB_SCHEDULER_FIXTURE_TESTS the unit
// tests (spec §9 numbers, edge cases, argument checks); with it the fixture tests, which replay
// every sched_<solver>_<steps>_<shift>.safetensors trajectory of the fixture folder.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "pipeline/sched_cases.h"
#include "pipeline/scheduler.h"

namespace ib {
namespace {

#ifdef IB_SCHEDULER_FIXTURE_TESTS

// Distance in units in the last place between two finite floats.
int64_t ulp_distance(float a, float b) {
  auto key = [](float f) {
    const int32_t i = std::bit_cast<int32_t>(f);
    return i < 0 ? static_cast<int64_t>(INT32_MIN) - i : static_cast<int64_t>(i);
  };
  const int64_t d = key(a) - key(b);
  return d < 0 ? -d : d;
}


using test::SchedCase;

TEST(SchedulerFixture, ReplaysEveryTrajectory) {
  const std::vector<SchedCase> cases = test::find_sched_cases();
  ASSERT_FALSE(cases.empty()) << "no sched_*.safetensors in " << test::fixture_dir();
  for (const SchedCase& c : cases) {
    SCOPED_TRACE(c.file);
    const auto f = test::open_fixture(c.file);
    auto sched = Scheduler::create(c.solver, c.steps, c.shift);

    // Timesteps: exact.
    const Tensor ts = f->get("timesteps");
    ASSERT_EQ(ts.numel(), c.steps);
    const std::vector<int64_t> want_ts(ts.data<int64_t>(), ts.data<int64_t>() + ts.numel());
    EXPECT_EQ(sched->timesteps(), want_ts);

    // Sigmas: f32, measured in ulps (expected exact).
    const Tensor sg = f->get("sigmas");
    ASSERT_EQ(sg.numel(), c.steps + 1);
    ASSERT_EQ(sched->sigmas().size(), static_cast<size_t>(c.steps + 1));
    int64_t max_ulp = 0;
    for (int64_t i = 0; i < sg.numel(); ++i)
      max_ulp = std::max(max_ulp, ulp_distance(sched->sigmas()[static_cast<size_t>(i)], sg.data<float>()[i]));
    EXPECT_LE(max_ulp, 1);

    // The trajectory, run on our own samples from latent_0.
    Tensor x = f->get("latent_0");
    double max_err = 0, max_rel = 0;
    int64_t n_diff = 0;  // elements not bit-identical to the reference
    for (int i = 0; i < c.steps; ++i) {
      SCOPED_TRACE("step " + std::to_string(i));
      ASSERT_EQ(sched->step_index(), i);
      x = sched->step(f->get("model_output_" + std::to_string(i)), x);
      const Tensor want = f->get("latent_" + std::to_string(i + 1));
      EXPECT_TENSOR_CLOSE(x, want, test::kComponentRel);
      const test::Closeness cl = test::compare(x, want, test::kComponentRel);
      max_err = std::max(max_err, cl.max_abs_err);
      max_rel = std::max(max_rel, cl.max_abs_err / (1.0 + cl.max_abs_ref));
      for (int64_t j = 0; j < want.numel(); ++j) n_diff += x.data<float>()[j] != want.data<float>()[j];
    }
    EXPECT_EQ(sched->step_index(), c.steps);
    std::printf("[measured] %s: sigmas max %lld ulp, trajectory max_abs_err=%.3g, max err/(1+max|ref|)=%.3g, "
                "%lld values not bit-identical\n",
                c.file.c_str(), static_cast<long long>(max_ulp), max_err, max_rel, static_cast<long long>(n_diff));
  }
}

TEST(SchedulerFixture, SchedulesJsonAgrees) {
  std::ifstream in(test::fixture_path("schedules.json"));
  ASSERT_TRUE(in) << "cannot open schedules.json";
  const nlohmann::json j = nlohmann::json::parse(in);
  const std::vector<SchedCase> cases = test::find_sched_cases();
  ASSERT_FALSE(cases.empty());
  for (const SchedCase& c : cases) {
    SCOPED_TRACE(c.key);
    ASSERT_TRUE(j.contains(c.key));
    const auto sched = Scheduler::create(c.solver, c.steps, c.shift);
    EXPECT_EQ(j[c.key]["timesteps"].get<std::vector<int64_t>>(), sched->timesteps());
    const auto sig = j[c.key]["sigmas"].get<std::vector<double>>();
    ASSERT_EQ(sig.size(), sched->sigmas().size());
    for (size_t i = 0; i < sig.size(); ++i) EXPECT_EQ(static_cast<float>(sig[i]), sched->sigmas()[i]) << i;
  }
  // Every schedule in the JSON has its trajectory file.
  EXPECT_EQ(j.size(), cases.size());
}

#else  // unit tests

Tensor random_tensor(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Tensor t = Tensor::empty(s, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t;
}

bool all_finite(const Tensor& t) {
  for (int64_t i = 0; i < t.numel(); ++i)
    if (!std::isfinite(t.data<float>()[i])) return false;
  return true;
}

TEST(Scheduler, ParseSolver) {
  EXPECT_EQ(parse_solver("unipc"), Solver::UniPC);
  EXPECT_EQ(parse_solver("dpm++"), Solver::DpmPP);
  EXPECT_EQ(parse_solver(solver_name(Solver::DpmPP)), Solver::DpmPP);
  test::expect_error([] { parse_solver("no-such-solver"); },
                     {"unknown solver 'no-such-solver'", "unipc, dpm++"});
  test::expect_error([] { parse_solver("UniPC"); }, {"'UniPC'"});
  test::expect_error([] { parse_solver("dpm"); }, {"'dpm'", "unipc, dpm++"});
}

TEST(Scheduler, DefaultUniPCSchedule) {
  const auto s = Scheduler::create(Solver::UniPC, 50, 16.0);
  const std::vector<int64_t> want = {999, 998, 997, 995, 994, 993, 991, 989, 988, 986, 984, 982, 980,
                                     978, 976, 973, 971, 968, 965, 963, 959, 956, 953, 949, 945, 941,
                                     936, 931, 926, 920, 914, 907, 899, 891, 882, 872, 861, 848, 834,
                                     818, 799, 778, 752, 722, 685, 639, 581, 504, 399, 245};
  EXPECT_EQ(s->timesteps(), want);
  const auto& sig = s->sigmas();
  ASSERT_EQ(sig.size(), 51u);
  const float first[] = {0.99993742f, 0.99866247f, 0.99733776f, 0.99596047f, 0.99452734f};
  for (size_t i = 0; i < 5; ++i) EXPECT_FLOAT_EQ(sig[i], first[i]) << i;
  const float last[] = {0.63974386f, 0.58155358f, 0.50499713f, 0.3997499f, 0.24596445f, 0.0f};
  for (size_t i = 0; i < 6; ++i) EXPECT_FLOAT_EQ(sig[45 + i], last[i]) << i;
  EXPECT_EQ(sig[50], 0.0f);
}

TEST(Scheduler, DpmStartsAtOne) {
  const auto s = Scheduler::create(Solver::DpmPP, 50, 16.0);
  EXPECT_EQ(s->timesteps().front(), 1000);
  EXPECT_EQ(s->sigmas().front(), 1.0f);
  EXPECT_EQ(s->sigmas().back(), 0.0f);
  const auto s3 = Scheduler::create(Solver::DpmPP, 3, 5.0);
  EXPECT_EQ(s3->timesteps(), (std::vector<int64_t>{1000, 909, 714}));
}

TEST(Scheduler, RejectsBadArguments) {
  using test::expect_error;
  for (Solver so : {Solver::UniPC, Solver::DpmPP}) {
    SCOPED_TRACE(solver_name(so));
    expect_error([&] { Scheduler::create(so, 0, 16.0); }, {"steps must be >= 1, got 0"});
    expect_error([&] { Scheduler::create(so, -3, 16.0); }, {"steps must be >= 1, got -3"});
    const std::string shift = "shift must be a finite number > 0";
    expect_error([&] { Scheduler::create(so, 10, 0.0); }, {shift, "got 0"});
    expect_error([&] { Scheduler::create(so, 10, -1.0); }, {shift, "got -1"});
    expect_error([&] { Scheduler::create(so, 10, std::nan("")); }, {shift, "got nan"});
    expect_error([&] { Scheduler::create(so, 10, INFINITY); }, {shift, "got inf"});
    expect_error([&] { Scheduler::create(so, 10, 16.0, 1); }, {"num_train_timesteps must be >= 2, got 1"});
  }
  auto s = Scheduler::create(Solver::UniPC, 1, 16.0);
  const Tensor x = random_tensor({2, 3}, 1);
  expect_error([&] { s->step(random_tensor({3, 2}, 2), x); }, {"differ in shape", "[3, 2]", "[2, 3]"});
  expect_error([&] { s->step(x.to(DType::F64), x); }, {"must be f32 tensors on one device"});
  expect_error([&] { s->step(Tensor(), x); }, {"undefined tensor"});
  EXPECT_EQ(s->step_index(), 0);
  (void)s->step(random_tensor({2, 3}, 3), x);
  EXPECT_EQ(s->step_index(), 1);
  expect_error([&] { s->step(random_tensor({2, 3}, 3), x); }, {"all 1 steps have been taken"});
}

// One step to σ = 0 returns the data prediction x − σ_0·v exactly (h = +inf, φ = −1), for both.
TEST(Scheduler, SingleStepIsTheDataPrediction) {
  const Tensor x = random_tensor({4, 5}, 4), v = random_tensor({4, 5}, 5);
  for (Solver so : {Solver::UniPC, Solver::DpmPP}) {
    auto s = Scheduler::create(so, 1, 16.0);
    const float sig0 = s->sigmas()[0];
    const Tensor out = s->step(v, x);
    for (int64_t i = 0; i < x.numel(); ++i)
      EXPECT_EQ(out.data<float>()[i], x.data<float>()[i] - sig0 * v.data<float>()[i]) << solver_name(so) << " " << i;
  }
}

// The last UniPC step returns x − sig[S−1]·v of the uncorrected sample (the corrector has no effect),
// and the whole run is finite; same for DPM++, whose first two steps see λ(1) = −inf.
TEST(Scheduler, InfiniteLambdasGiveFiniteResults) {
  for (Solver so : {Solver::UniPC, Solver::DpmPP}) {
    SCOPED_TRACE(solver_name(so));
    const int S = 6;
    auto s = Scheduler::create(so, S, 16.0);
    Tensor x = random_tensor({3, 7}, 6);
    for (int k = 0; k < S; ++k) {
      const Tensor v = random_tensor({3, 7}, 100 + static_cast<uint32_t>(k));
      const Tensor out = s->step(v, x);
      ASSERT_TRUE(all_finite(out)) << "step " << k;
      if (k == S - 1) {
        const float sk = s->sigmas()[static_cast<size_t>(k)];
        for (int64_t i = 0; i < x.numel(); ++i)
          EXPECT_EQ(out.data<float>()[i], x.data<float>()[i] - sk * v.data<float>()[i]) << i;
      }
      x = out;
    }
  }
}

// DPM++ step 1 (previous σ = 1, so r0 = +inf and D1 = 0) equals a first-order step.
TEST(Scheduler, DpmSecondStepIsFirstOrder) {
  auto s = Scheduler::create(Solver::DpmPP, 5, 5.0);
  const Tensor x0 = random_tensor({8}, 7), v0 = random_tensor({8}, 8), v1 = random_tensor({8}, 9);
  const Tensor x1 = s->step(v0, x0);
  const Tensor x2 = s->step(v1, x1);
  const float ss = s->sigmas()[1], st = s->sigmas()[2];
  // The scheduler's f32 log/exp are correctly rounded (double, then rounded).
  auto lg = [](float v) { return static_cast<float>(std::log(static_cast<double>(v))); };
  const float at = 1.0f - st;
  const float h = (lg(at) - lg(st)) - (lg(1.0f - ss) - lg(ss));
  const float cm = at * (static_cast<float>(std::exp(static_cast<double>(-h))) - 1.0f), cx = st / ss;
  for (int64_t i = 0; i < 8; ++i) {
    const float m = x1.data<float>()[i] - ss * v1.data<float>()[i];
    EXPECT_EQ(x2.data<float>()[i], cx * x1.data<float>()[i] - cm * m) << i;
  }
}

// Spec §11 quirk 4: at shift 16 from 68 steps the first two timesteps are both 999. Upstream would
// start at index 1 and fail on the last step; we start at 0 and run all steps.
TEST(Scheduler, UniPCDuplicateFirstTimestepStartsAtZero) {
  auto s = Scheduler::create(Solver::UniPC, 68, 16.0);
  ASSERT_EQ(s->timesteps()[0], 999);
  ASSERT_EQ(s->timesteps()[1], 999);
  auto s67 = Scheduler::create(Solver::UniPC, 67, 16.0);
  EXPECT_NE(s67->timesteps()[0], s67->timesteps()[1]);
  Tensor x = random_tensor({5}, 10);
  EXPECT_EQ(s->step_index(), 0);
  for (int k = 0; k < 68; ++k) x = s->step(random_tensor({5}, 200 + static_cast<uint32_t>(k)), x);
  EXPECT_EQ(s->step_index(), 68);
  EXPECT_TRUE(all_finite(x));
}

#endif

}  // namespace
}  // namespace ib
