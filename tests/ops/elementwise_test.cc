#include <gtest/gtest.h>

#include <random>

#include "common/fixture.h"
#include "ops/elementwise.h"

namespace ib {
namespace {

using test::random_tensor;

Tensor naive(const Tensor& a, const Tensor& b, ops::Binary op) {
  Tensor y = Tensor::empty(a.shape(), DType::F32);
  const Tensor bf = b.to(DType::F32);
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double u = a.data<float>()[i], v = bf.data<float>()[i % bf.numel()];
    y.data<float>()[i] = static_cast<float>(op == ops::Binary::Add ? u + v : op == ops::Binary::Sub ? u - v : u * v);
  }
  return y;
}

TEST(Elementwise, BinaryWithBroadcast) {
  const Tensor a = random_tensor({3, 4, 50}, 1);
  for (const Shape& bs : {Shape{3, 4, 50}, Shape{4, 50}, Shape{50}, Shape{}}) {
    const Tensor b = bs.empty() ? Tensor::full({}, 2.5f) : random_tensor(bs, 2);
    for (auto op : {ops::Binary::Add, ops::Binary::Sub, ops::Binary::Mul})
      EXPECT_TENSOR_CLOSE(ops::binary(a, b, op), naive(a, b, op), 1e-6);
  }
  const Tensor bh = random_tensor({50}, 3).to(DType::BF16);
  EXPECT_TENSOR_CLOSE(ops::mul(a, bh), naive(a, bh, ops::Binary::Mul), 1e-6);
}

TEST(Elementwise, InPlace) {
  const Tensor a = random_tensor({7, 9}, 4), b = random_tensor({9}, 5);
  const Tensor expected = naive(a, b, ops::Binary::Add);
  ops::add_(a, b);
  EXPECT_TENSOR_CLOSE(a, expected, 1e-6);
  const Tensor c = random_tensor({7, 9}, 6);
  const Tensor expected2 = naive(a, c, ops::Binary::Mul);
  ops::binary_(a, c, ops::Binary::Mul);
  EXPECT_TENSOR_CLOSE(a, expected2, 1e-6);
}

TEST(Elementwise, Affine) {
  const Tensor x = random_tensor({11, 13}, 7);
  const Tensor y = ops::affine(x, 2.0f, -0.5f);
  ASSERT_EQ(y.shape(), x.shape());
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_FLOAT_EQ(y.data<float>()[i], 2.0f * x.data<float>()[i] - 0.5f);
}

TEST(Elementwise, ChecksShapes) {
  const Tensor a = random_tensor({3, 4}, 8);
  EXPECT_THROW(ops::add(a, random_tensor({3}, 9)), Error);
  EXPECT_THROW(ops::add(a, random_tensor({2, 3, 4}, 9)), Error);
  EXPECT_THROW(ops::add_(a, random_tensor({4, 4}, 9)), Error);
  EXPECT_THROW(ops::add(a.to(DType::BF16), a), Error);
  EXPECT_THROW(ops::affine(a.to(DType::F16), 1.0f, 0.0f), Error);
}

}  // namespace
}  // namespace ib
