#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/fixture.h"
#include "ops/rope.h"

namespace ib {
namespace {

using test::random_tensor;

// Spec 7.6 evaluated element by element: pair j of every head rotates by pos * 10000^(-2i/width),
// with (axis, i, width) chosen from j by the split d/2 - 2*floor(d/6), floor(d/6), floor(d/6).
Tensor direct_rope(const Tensor& x, int64_t heads, int64_t T, int64_t Hp, int64_t Wp) {
  const int64_t C = x.size(1), d = C / heads, k = d / 6, nt = d / 2 - 2 * k;
  Tensor y = Tensor::empty(x.shape(), DType::F32);
  for (int64_t f = 0; f < T; ++f)
    for (int64_t a = 0; a < Hp; ++a)
      for (int64_t b = 0; b < Wp; ++b) {
        const int64_t s = (f * Hp + a) * Wp + b;
        for (int64_t h = 0; h < heads; ++h)
          for (int64_t j = 0; j < d / 2; ++j) {
            double pos, i, width;
            if (j < nt) {
              pos = static_cast<double>(f), i = static_cast<double>(j), width = static_cast<double>(d - 4 * k);
            } else if (j < nt + k) {
              pos = static_cast<double>(a), i = static_cast<double>(j - nt), width = static_cast<double>(2 * k);
            } else {
              pos = static_cast<double>(b), i = static_cast<double>(j - nt - k), width = static_cast<double>(2 * k);
            }
            const double th = pos * std::pow(10000.0, -2.0 * i / width);
            const int64_t e = s * C + h * d + 2 * j;
            const double re = x.data<float>()[e], im = x.data<float>()[e + 1];
            y.data<float>()[e] = static_cast<float>(re * std::cos(th) - im * std::sin(th));
            y.data<float>()[e + 1] = static_cast<float>(re * std::sin(th) + im * std::cos(th));
          }
      }
  return y;
}

TEST(Rope, SplitMatchesSpec) {
  EXPECT_EQ(ops::rope_split(128).frames, 22);
  EXPECT_EQ(ops::rope_split(128).height, 21);
  EXPECT_EQ(ops::rope_split(128).width, 21);
  EXPECT_EQ(ops::rope_split(12).frames, 2);
  EXPECT_EQ(ops::rope_split(16).frames, 4);
  EXPECT_EQ(ops::rope_split(16).height, 2);
  EXPECT_EQ(ops::rope_split(32).frames, 6);
  EXPECT_EQ(ops::rope_split(32).width, 5);
}

TEST(Rope, MatchesDirectEvaluation) {
  struct Case {
    int64_t heads, d, T, Hp, Wp;
  };
  for (const Case c : {Case{2, 12, 3, 4, 5}, Case{3, 16, 2, 3, 7}, Case{2, 32, 4, 3, 5}, Case{1, 128, 3, 9, 11},
                       Case{4, 32, 1, 1, 1}}) {
    SCOPED_TRACE(::testing::Message() << "heads " << c.heads << " d " << c.d);
    const Tensor x = random_tensor({c.T * c.Hp * c.Wp, c.heads * c.d}, static_cast<uint32_t>(c.d));
    const Tensor y = ops::rope_3d(x, c.heads, {c.T, c.Hp, c.Wp});
    EXPECT_TENSOR_CLOSE(y, direct_rope(x, c.heads, c.T, c.Hp, c.Wp), 1e-6);
    // Token (0, 0, 0) has every angle zero: unchanged bit for bit.
    for (int64_t i = 0; i < x.size(1); ++i) EXPECT_EQ(y.data<float>()[i], x.data<float>()[i]);
  }
}

TEST(Rope, LargePositionsStayAccurate) {
  // Angles up to ~1000 rad: the double path keeps the f32 result within rounding.
  const Tensor x = random_tensor({2 * 1000, 2 * 16}, 9);
  EXPECT_TENSOR_CLOSE(ops::rope_3d(x, 2, {2, 1, 1000}), direct_rope(x, 2, 2, 1, 1000), 1e-6);
}

TEST(Rope, ChecksShapes) {
  const Tensor x = random_tensor({12, 32}, 1);
  EXPECT_THROW(ops::rope_3d(x, 2, {2, 2, 2}), Error);      // 8 tokens expected
  EXPECT_THROW(ops::rope_3d(x, 3, {2, 2, 3}), Error);      // 32 not divisible by 3
  EXPECT_THROW(ops::rope_3d(random_tensor({12, 30}, 2), 2, {2, 2, 3}), Error);  // odd head dim 15
  EXPECT_THROW(ops::rope_3d(x.view({12, 2, 16}), 2, {2, 2, 3}), Error);
  EXPECT_NO_THROW(ops::rope_3d(x, 2, {2, 2, 3}));
}

}  // namespace
}  // namespace ib
