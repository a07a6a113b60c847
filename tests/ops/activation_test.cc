#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/fixture.h"
#include "ops/activation.h"

namespace ib {
namespace {

Tensor wide_random(const Shape& s, uint32_t seed) { return test::random_tensor(s, seed, 3.0f); }

template <typename F>
Tensor naive(const Tensor& x, F f) {
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  for (int64_t i = 0; i < x.numel(); ++i) y.data<float>()[i] = static_cast<float>(f(static_cast<double>(x.data<float>()[i])));
  return y;
}

TEST(Activation, MatchesNaive) {
  const Tensor x = wide_random({5, 1000}, 1);
  EXPECT_TENSOR_CLOSE(ops::gelu(x), naive(x, [](double v) { return 0.5 * v * (1 + std::erf(v / std::sqrt(2.0))); }),
                      1e-5);
  EXPECT_TENSOR_CLOSE(ops::gelu_tanh(x), naive(x, [](double v) {
                        return 0.5 * v * (1 + std::tanh(std::sqrt(2 / M_PI) * (v + 0.044715 * v * v * v)));
                      }),
                      1e-5);
  EXPECT_TENSOR_CLOSE(ops::silu(x), naive(x, [](double v) { return v / (1 + std::exp(-v)); }), 1e-5);
}

TEST(Activation, KeepsShapeAndHandlesExtremes) {
  const Tensor x = Tensor::from_vector<float>({-1e4f, -100.0f, 0.0f, 100.0f, 1e4f, 1.0f}, {2, 3});
  for (auto a : {ops::Activation::Gelu, ops::Activation::GeluTanh, ops::Activation::Silu}) {
    const Tensor y = ops::activate(x, a);
    EXPECT_EQ(y.shape(), x.shape());
    EXPECT_FLOAT_EQ(y.data<float>()[0], 0.0f);  // -0 counts as 0
    EXPECT_FLOAT_EQ(y.data<float>()[2], 0.0f);
    EXPECT_FLOAT_EQ(y.data<float>()[4], 1e4f);
  }
  EXPECT_THROW(ops::gelu(x.to(DType::BF16)), Error);
}

}  // namespace
}  // namespace ib
