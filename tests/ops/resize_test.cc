// resize_bicubic against hand-computed cases (PyTorch interpolate bicubic, align_corners=False,
// A = -0.75) and a direct double-precision evaluation of the same formulas.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "common/fixture.h"
#include "ops/resize.h"

namespace ib {
namespace {

Tensor random_tensor(const Shape& s, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Tensor t = Tensor::empty(s, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = u(rng);
  return t;
}

// The spec's formulas: source position u and t in f32 as the spec prescribes (its rounding is part of
// the result: ~1e-5 at u ~ 170), weights and sums in double.
double keys(double x) {
  const double A = -0.75;
  x = std::fabs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

Tensor naive_resize(const Tensor& x, int64_t oh, int64_t ow) {
  const int64_t H = x.size(-2), W = x.size(-1), planes = x.numel() / (H * W);
  Shape s = x.shape();
  s[s.size() - 2] = oh;
  s[s.size() - 1] = ow;
  Tensor y = Tensor::empty(s, DType::F32);
  auto taps = [](int64_t in, int64_t out, int64_t d, int64_t* idx, double* w) {
    const float scale = static_cast<float>(in) / static_cast<float>(out);
    const float u = scale * (static_cast<float>(d) + 0.5f) - 0.5f;
    const int64_t i = std::min(static_cast<int64_t>(std::floor(u)), in - 1);
    const double t = std::clamp(static_cast<double>(u - static_cast<float>(i)), 0.0, 1.0);
    for (int64_t k = 0; k < 4; ++k) {
      idx[k] = std::clamp<int64_t>(i - 1 + k, 0, in - 1);
      w[k] = keys(t - static_cast<double>(k - 1));
    }
  };
  for (int64_t p = 0; p < planes; ++p)
    for (int64_t oy = 0; oy < oh; ++oy)
      for (int64_t ox = 0; ox < ow; ++ox) {
        int64_t iy[4], ix[4];
        double wy[4], wx[4];
        taps(H, oh, oy, iy, wy);
        taps(W, ow, ox, ix, wx);
        double acc = 0;
        for (int a = 0; a < 4; ++a)
          for (int b = 0; b < 4; ++b) acc += wy[a] * wx[b] * x.data<float>()[p * H * W + iy[a] * W + ix[b]];
        y.data<float>()[(p * oh + oy) * ow + ox] = static_cast<float>(acc);
      }
  return y;
}

TEST(ResizeBicubic, IdentityWhenSizesAreEqual) {
  const Tensor x = random_tensor({3, 5, 7}, 1);
  EXPECT_TENSOR_CLOSE_ABS(ops::resize_bicubic(x, 5, 7), x, 0.0);  // t = 0: weights exactly 0, 1, 0, 0
}

TEST(ResizeBicubic, Downscale1D4To2) {
  // One row [1, 2, 4, 8], width 4 -> 2: scale 2, u(d) = 2(d + 0.5) - 0.5 = 0.5, 2.5, so t = 0.5.
  // Weights at t = 0.5: K2(1.5) = -0.09375, K1(0.5) = 0.59375, K1(0.5) = 0.59375, K2(1.5) = -0.09375.
  // d = 0: i = 0, taps (-1, 0, 1, 2) -> clamped (0, 0, 1, 2): values 1, 1, 2, 4
  //   -0.09375*1 + 0.59375*1 + 0.59375*2 - 0.09375*4 = 1.3125
  // d = 1: i = 2, taps (1, 2, 3, 4) -> (1, 2, 3, 3): values 2, 4, 8, 8
  //   -0.09375*2 + 0.59375*4 + 0.59375*8 - 0.09375*8 = 6.1875
  const Tensor x = Tensor::from_vector<float>({1, 2, 4, 8}, {1, 1, 4});
  EXPECT_TENSOR_CLOSE_ABS(ops::resize_bicubic(x, 1, 2), Tensor::from_vector<float>({1.3125f, 6.1875f}, {1, 1, 2}), 0.0);
}

TEST(ResizeBicubic, Upscale1D2To4) {
  // One row [0, 1], width 2 -> 4: scale 0.5, u(d) = 0.5(d + 0.5) - 0.5 = -0.25, 0.25, 0.75, 1.25.
  // K1(x) = (1.25x - 2.25)x^2 + 1, K2(x) = -0.75(x^3 - 5x^2 + 8x - 4):
  //   K1(0.25) = 0.87890625, K1(0.75) = 0.26171875, K2(1.25) = -0.10546875, K2(1.75) = -0.03515625.
  // d = 0: i = -1, t = 0.75; taps (-2, -1, 0, 1) -> (0, 0, 0, 1), values 0, 0, 0, 1:
  //   last weight K2((1 - 0.75) + 1) = K2(1.25) -> -0.10546875
  // d = 1: i = 0, t = 0.25; taps (-1, 0, 1, 2) -> (0, 0, 1, 1), values 0, 0, 1, 1:
  //   K1(0.75) + K2(1.75) = 0.2265625
  // d = 2: i = 0, t = 0.75: K1(0.25) + K2(1.25) = 0.7734375
  // d = 3: i = 1, t = 0.25; taps (0, 1, 2, 3) -> (0, 1, 1, 1), values 0, 1, 1, 1:
  //   K1(0.25) + K1(0.75) + K2(1.75) = 1 - K2(1.25) = 1.10546875
  const Tensor x = Tensor::from_vector<float>({0, 1}, {1, 1, 2});
  const Tensor want = Tensor::from_vector<float>({-0.10546875f, 0.2265625f, 0.7734375f, 1.10546875f}, {1, 1, 4});
  EXPECT_TENSOR_CLOSE_ABS(ops::resize_bicubic(x, 1, 4), want, 0.0);
  // The same along the vertical axis.
  EXPECT_TENSOR_CLOSE_ABS(ops::resize_bicubic(x.view({1, 2, 1}), 4, 1), want.view({1, 4, 1}), 0.0);
}

TEST(ResizeBicubic, ConstantStaysConstant) {
  // The four weights sum to 1 up to f32 rounding (a few ulp) for every t.
  const Tensor x = Tensor::full({2, 9, 13}, 0.375f);
  for (auto [oh, ow] : {std::pair<int64_t, int64_t>{4, 5}, {20, 31}, {9, 13}, {1, 1}, {28, 28}}) {
    const Tensor y = ops::resize_bicubic(x, oh, ow);
    EXPECT_TENSOR_CLOSE_ABS(y, Tensor::full({2, oh, ow}, 0.375f), 1e-6);
  }
}

TEST(ResizeBicubic, MatchesDoubleEvaluation) {
  for (auto [h, w, oh, ow] : {std::tuple<int64_t, int64_t, int64_t, int64_t>{180, 320, 28, 28},
                              {7, 11, 23, 5}, {1, 6, 3, 17}, {16, 16, 224, 224}, {33, 21, 33, 40}}) {
    const Tensor x = random_tensor({2, 3, h, w}, static_cast<uint32_t>(h * w));
    const Tensor y = ops::resize_bicubic(x, oh, ow);
    ASSERT_EQ(y.shape(), (Shape{2, 3, oh, ow}));
    EXPECT_TENSOR_CLOSE(y, naive_resize(x, oh, ow), 1e-6);
  }
}

TEST(ResizeBicubic, ChecksArguments) {
  EXPECT_THROW(ops::resize_bicubic(Tensor::zeros({4, 4}), 2, 2), Error);
  EXPECT_THROW(ops::resize_bicubic(Tensor::zeros({1, 4, 4}), 0, 2), Error);
  EXPECT_THROW(ops::resize_bicubic(Tensor::zeros({1, 4, 4}, DType::F64), 2, 2), Error);
  EXPECT_THROW(ops::resize_bicubic(Tensor::zeros({1, 0, 4}), 2, 2), Error);
}

}  // namespace
}  // namespace ib
