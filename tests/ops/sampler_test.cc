// The sampler op's CPU backend (ops/sampler.h): every update, the data prediction and the guidance
// combination against the formulas written out here, bit for bit (one f32 rounding per operation,
// no fused multiply-add), and the argument checks.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>

#include "common/fixture.h"
#include "ops/sampler.h"

#ifdef __clang__
#pragma clang fp contract(off)
#endif

namespace ib {
namespace {

using test::random_tensor;
using ops::SamplerUpdate;

// Elements of `actual` that are not the bits of f(i).
int64_t mismatches(const Tensor& actual, const std::function<float(int64_t)>& f) {
  int64_t n = 0;
  for (int64_t i = 0; i < actual.numel(); ++i) {
    const float want = f(i);
    const float got = actual.data<float>()[i];
    n += !(got == want || (std::isnan(got) && std::isnan(want)));
  }
  return n;
}

TEST(Sampler, UpdatesMatchTheirFormulas) {
  const Shape s{3, 5, 7};
  const Tensor x = random_tensor(s, 1), m0 = random_tensor(s, 2), m1 = random_tensor(s, 3), mt = random_tensor(s, 4);
  const float* X = x.data<float>();
  const float* M0 = m0.data<float>();
  const float* M1 = m1.data<float>();
  const float* MT = mt.data<float>();
  ops::SamplerArgs a;
  a.c_x = 0.93f;
  a.c_m = -0.071f;
  a.c_b = -0.0693f;
  a.r = -1.37f;
  a.rho0 = 0.41f;
  a.rho1 = 0.27f;
  a.inv_r0 = 0.6f;
  auto base = [&](int64_t i) { return a.c_x * X[i] - a.c_m * M0[i]; };

  a.update = SamplerUpdate::UniPCPredictor1;
  const float zero_res = a.c_b * 0.0f;
  EXPECT_EQ(mismatches(ops::sampler_update(a, x, m0), [&](int64_t i) { return base(i) - zero_res; }), 0);

  a.update = SamplerUpdate::UniPCPredictor2;
  EXPECT_EQ(mismatches(ops::sampler_update(a, x, m0, m1),
                       [&](int64_t i) {
                         const float d1 = (M1[i] - M0[i]) / a.r;
                         return base(i) - a.c_b * (0.5f * d1);
                       }),
            0);

  a.update = SamplerUpdate::UniPCCorrector1;
  EXPECT_EQ(mismatches(ops::sampler_update(a, x, m0, Tensor(), mt),
                       [&](int64_t i) {
                         const float res = 0.0f + 0.5f * (MT[i] - M0[i]);
                         return base(i) - a.c_b * res;
                       }),
            0);

  a.update = SamplerUpdate::UniPCCorrector2;
  EXPECT_EQ(mismatches(ops::sampler_update(a, x, m0, m1, mt),
                       [&](int64_t i) {
                         const float d1 = (M1[i] - M0[i]) / a.r;
                         const float dt = MT[i] - M0[i];
                         const float res = a.rho0 * d1 + a.rho1 * dt;
                         return base(i) - a.c_b * res;
                       }),
            0);

  a.update = SamplerUpdate::DpmFirst;
  EXPECT_EQ(mismatches(ops::sampler_update(a, x, m0), base), 0);

  a.update = SamplerUpdate::DpmSecond;
  EXPECT_EQ(mismatches(ops::sampler_update(a, x, m0, m1),
                       [&](int64_t i) {
                         const float d1 = a.inv_r0 * (M0[i] - M1[i]);
                         return base(i) - a.c_b * d1;
                       }),
            0);
}

// The last UniPC/DPM++ step (σ_t = 0: c_x = 0, c_m = c_b = −1·α_t with α_t = 1) returns m0 exactly.
TEST(Sampler, FinalStepReturnsTheDataPrediction) {
  const Tensor x = random_tensor({100}, 5), m0 = random_tensor({100}, 6);
  ops::SamplerArgs a;
  a.c_x = 0.0f;
  a.c_m = -1.0f;
  a.c_b = -1.0f;
  for (SamplerUpdate u : {SamplerUpdate::UniPCPredictor1, SamplerUpdate::DpmFirst}) {
    a.update = u;
    EXPECT_EQ(mismatches(ops::sampler_update(a, x, m0), [&](int64_t i) { return m0.data<float>()[i]; }), 0);
  }
}

TEST(Sampler, DataPredictionAndGuidanceMatchTheirFormulas) {
  const Shape s{4, 1000};
  const Tensor v = random_tensor(s, 7), x = random_tensor(s, 8), vc = random_tensor(s, 9), vu = random_tensor(s, 10);
  const float sigma = 0.99866247f, g = 5.0f;
  EXPECT_EQ(mismatches(ops::flow_data_prediction(v, x, sigma),
                       [&](int64_t i) { return x.data<float>()[i] - sigma * v.data<float>()[i]; }),
            0);
  const float* pc = vc.data<float>();
  const float* pu = vu.data<float>();
  for (float gg : {g, 0.0f, 1.0f, -2.5f})
    EXPECT_EQ(mismatches(ops::cfg_combine(vc, vu, gg), [&](int64_t i) { return pu[i] + gg * (pc[i] - pu[i]); }), 0)
        << "g " << gg;
  // g = 0 gives the unconditional prediction exactly.
  EXPECT_EQ(mismatches(ops::cfg_combine(vc, vu, 0.0f), [&](int64_t i) { return pu[i]; }), 0);
  // Empty tensors are fine.
  EXPECT_EQ(ops::cfg_combine(Tensor::zeros({0, 3}), Tensor::zeros({0, 3}), g).shape(), (Shape{0, 3}));
}

TEST(Sampler, ChecksArguments) {
  const Tensor x = random_tensor({2, 3}, 11), m = random_tensor({2, 3}, 12), other = random_tensor({3, 2}, 13);
  ops::SamplerArgs a;
  a.update = SamplerUpdate::UniPCPredictor2;
  EXPECT_THROW(ops::sampler_update(a, x, m), Error);  // m1 missing
  a.update = SamplerUpdate::UniPCCorrector1;
  EXPECT_THROW(ops::sampler_update(a, x, m, m), Error);  // mt missing
  a.update = SamplerUpdate::DpmSecond;
  EXPECT_THROW(ops::sampler_update(a, x, m, other), Error);  // shape
  a.update = SamplerUpdate::DpmFirst;
  EXPECT_THROW(ops::sampler_update(a, x, Tensor()), Error);
  EXPECT_THROW(ops::sampler_update(a, x.to(DType::BF16), m), Error);
  EXPECT_THROW(ops::flow_data_prediction(other, x, 0.5f), Error);
  EXPECT_THROW(ops::flow_data_prediction(x.to(DType::F64), x, 0.5f), Error);
  EXPECT_THROW(ops::cfg_combine(x, other, 5.0f), Error);
  EXPECT_THROW(ops::cfg_combine(x, Tensor(), 5.0f), Error);
  EXPECT_THROW(ops::cfg_combine(x.to(DType::BF16), m, 5.0f), Error);
}

}  // namespace
}  // namespace ib
