#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "common/fixture.h"
#include "ops/attention.h"

namespace ib {
namespace {

using test::random_tensor;

// Double-precision attention straight from the definition.
Tensor naive_attention(const Tensor& q, const Tensor& k, const Tensor& v, const ops::AttentionArgs& a) {
  const int64_t H = a.num_heads, Lq = q.size(0), Lk = k.size(0), D = q.size(1) / H, Dv = v.size(1) / H;
  Tensor o = Tensor::empty({Lq, H * Dv}, DType::F32);
  std::vector<double> s(static_cast<size_t>(Lk));
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < Lq; ++i) {
      double m = -INFINITY;
      for (int64_t j = 0; j < Lk; ++j) {
        double x = 0;
        for (int64_t c = 0; c < D; ++c)
          x += static_cast<double>(q.data<float>()[i * H * D + h * D + c]) * k.data<float>()[j * H * D + h * D + c];
        x *= a.scale;
        if (a.bias.defined()) x += a.bias.data<float>()[(h * Lq + i) * Lk + j];
        s[static_cast<size_t>(j)] = x;
        m = std::max(m, x);
      }
      double sum = 0;
      for (auto& x : s) sum += (x = std::exp(x - m));
      for (int64_t c = 0; c < Dv; ++c) {
        double acc = 0;
        for (int64_t j = 0; j < Lk; ++j) acc += s[static_cast<size_t>(j)] * v.data<float>()[j * H * Dv + h * Dv + c];
        o.data<float>()[i * H * Dv + h * Dv + c] = static_cast<float>(acc / sum);
      }
    }
  return o;
}

TEST(Attention, MatchesNaiveWithScale) {
  const Tensor q = random_tensor({13, 4 * 16}, 1), k = random_tensor({21, 4 * 16}, 2), v = random_tensor({21, 4 * 16}, 3);
  ops::AttentionArgs a;
  a.num_heads = 4;
  a.scale = 0.25f;
  EXPECT_TENSOR_CLOSE(ops::attention(q, k, v, a), naive_attention(q, k, v, a), 1e-5);
}

TEST(Attention, MatchesNaiveWithBiasAndMask) {
  // T5 style: no scaling, large logits, additive bias with masked keys at the lowest f32.
  const int64_t H = 3, D = 20, Lq = 17, Lk = 17;
  const Tensor q = random_tensor({Lq, H * D}, 4, 2.0f), k = random_tensor({Lk, H * D}, 5, 2.0f),
               v = random_tensor({Lk, H * D}, 6);
  ops::AttentionArgs a;
  a.num_heads = H;
  a.bias = random_tensor({H, Lq, Lk}, 7);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < Lq; ++i)
      for (int64_t j = 11; j < Lk; ++j) a.bias.data<float>()[(h * Lq + i) * Lk + j] = std::numeric_limits<float>::lowest();
  const Tensor out = ops::attention(q, k, v, a);
  EXPECT_TENSOR_CLOSE(out, naive_attention(q, k, v, a), 1e-5);
  // Masked keys have no influence: changing their values leaves the output unchanged.
  const Tensor v2 = v.clone();
  for (int64_t j = 11; j < Lk; ++j)
    for (int64_t c = 0; c < H * D; ++c) v2.data<float>()[j * H * D + c] = 1e6f;
  EXPECT_TENSOR_CLOSE(ops::attention(q, k, v2, a), out, 0.0);
}

TEST(Attention, ChecksShapes) {
  const Tensor q = random_tensor({5, 8}, 8), k = random_tensor({6, 8}, 9), v = random_tensor({6, 8}, 10);
  ops::AttentionArgs a;
  a.num_heads = 3;
  EXPECT_THROW(ops::attention(q, k, v, a), Error);  // 3 does not divide 8
  a.num_heads = 2;
  EXPECT_EQ(ops::attention(q, k, v, a).shape(), (Shape{5, 8}));
  EXPECT_THROW(ops::attention(q, random_tensor({6, 4}, 11), v, a), Error);
  EXPECT_THROW(ops::attention(q, k, random_tensor({5, 8}, 12), a), Error);
  a.bias = random_tensor({2, 5, 5}, 13);
  EXPECT_THROW(ops::attention(q, k, v, a), Error);
  a.bias = random_tensor({2, 5, 6}, 13).to(DType::BF16);
  EXPECT_THROW(ops::attention(q, k, v, a), Error);
  a.bias = Tensor();
  EXPECT_THROW(ops::attention(q.view({5, 2, 4}), k, v, a), Error);
}

}  // namespace
}  // namespace ib
