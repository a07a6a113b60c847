#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/fixture.h"
#include "ops/norm.h"

namespace ib {
namespace {

Tensor shifted_random(const Shape& s, uint32_t seed, float mean = 0.0f) {
  return test::random_tensor(s, seed, 1.0f, mean);
}

Tensor naive_norm(const Tensor& x, const Tensor& w, const Tensor& b, double eps, bool rms) {
  const int64_t C = x.size(-1), rows = x.numel() / C;
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  const Tensor wf = w.defined() ? w.to(DType::F32) : Tensor(), bf = b.defined() ? b.to(DType::F32) : Tensor();
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x.data<float>() + r * C;
    double mean = 0, var = 0;
    if (!rms) {
      for (int64_t c = 0; c < C; ++c) mean += xr[c];
      mean /= static_cast<double>(C);
    }
    for (int64_t c = 0; c < C; ++c) var += (xr[c] - mean) * (xr[c] - mean);
    var /= static_cast<double>(C);
    for (int64_t c = 0; c < C; ++c) {
      double v = (xr[c] - mean) / std::sqrt(var + eps);
      if (wf.defined()) v *= wf.data<float>()[c];
      if (bf.defined()) v += bf.data<float>()[c];
      y.data<float>()[r * C + c] = static_cast<float>(v);
    }
  }
  return y;
}

TEST(Norm, LayerNormMatchesNaive) {
  const Tensor x = shifted_random({3, 5, 37}, 1, 3.0f), w = shifted_random({37}, 2), b = shifted_random({37}, 3);
  EXPECT_TENSOR_CLOSE(ops::layer_norm(x, w, b, 1e-5f), naive_norm(x, w, b, 1e-5, false), 1e-5);
  EXPECT_TENSOR_CLOSE(ops::layer_norm(x, Tensor(), Tensor(), 1e-6f), naive_norm(x, Tensor(), Tensor(), 1e-6, false),
                      1e-5);
  const Tensor wh = w.to(DType::BF16), bh = b.to(DType::F16);
  EXPECT_TENSOR_CLOSE(ops::layer_norm(x, wh, bh, 1e-5f), naive_norm(x, wh, bh, 1e-5, false), 1e-5);
}

TEST(Norm, RmsNormMatchesNaive) {
  const Tensor x = shifted_random({4, 64}, 4, 0.5f), w = shifted_random({64}, 5);
  EXPECT_TENSOR_CLOSE(ops::rms_norm(x, w, 1e-6f), naive_norm(x, w, Tensor(), 1e-6, true), 1e-5);
  EXPECT_TENSOR_CLOSE(ops::rms_norm(x, Tensor(), 1e-6f), naive_norm(x, Tensor(), Tensor(), 1e-6, true), 1e-5);
  const Tensor wh = w.to(DType::BF16);
  EXPECT_TENSOR_CLOSE(ops::rms_norm(x, wh, 1e-6f), naive_norm(x, wh, Tensor(), 1e-6, true), 1e-5);
}

TEST(Norm, ChecksShapesAndDtypes) {
  const Tensor x = shifted_random({4, 8}, 6);
  EXPECT_THROW(ops::rms_norm(x, shifted_random({7}, 7), 1e-6f), Error);
  EXPECT_THROW(ops::layer_norm(x, shifted_random({8}, 7), shifted_random({4}, 8), 1e-6f), Error);
  EXPECT_THROW(ops::rms_norm(x.to(DType::BF16), Tensor(), 1e-6f), Error);
  EXPECT_THROW(ops::layer_norm(x, shifted_random({2, 4}, 9), Tensor(), 1e-6f), Error);
}

}  // namespace
}  // namespace ib
