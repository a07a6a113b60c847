#include <gtest/gtest.h>

#include <random>

#include "common/fixture.h"
#include "ops/linear.h"

namespace ib {
namespace {

using test::random_tensor;

Tensor naive_linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  const int64_t M = x.size(0), K = x.size(1), N = w.size(0);
  Tensor y = Tensor::zeros({M, N});
  const Tensor wf = w.to(DType::F32);
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = b.defined() ? b.data<float>()[n] : 0.0;
      for (int64_t k = 0; k < K; ++k) acc += static_cast<double>(x.data<float>()[m * K + k]) * wf.data<float>()[n * K + k];
      y.data<float>()[m * N + n] = static_cast<float>(acc);
    }
  return y;
}

TEST(Linear, MatchesNaiveForEveryWeightDtype) {
  const Tensor x = random_tensor({7, 33}, 1), w = random_tensor({19, 33}, 2), b = random_tensor({19}, 3);
  for (DType wt : {DType::F32, DType::BF16, DType::F16}) {
    const Tensor wq = w.to(wt);
    EXPECT_TENSOR_CLOSE(ops::linear(x, wq, b), naive_linear(x, wq, b), 1e-5);
    EXPECT_TENSOR_CLOSE(ops::linear(x, wq), naive_linear(x, wq, Tensor()), 1e-5);
  }
}

TEST(Linear, KeepsLeadingDimsAndChecksShapes) {
  const Tensor x = random_tensor({2, 3, 8}, 4), w = random_tensor({5, 8}, 5);
  EXPECT_EQ(ops::linear(x, w).shape(), (Shape{2, 3, 5}));
  EXPECT_THROW(ops::linear(x, random_tensor({5, 7}, 6)), Error);
  EXPECT_THROW(ops::linear(x, w, random_tensor({4}, 7)), Error);
}

}  // namespace
}  // namespace ib
