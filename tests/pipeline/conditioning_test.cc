#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "pipeline/conditioning.h"

namespace ib {
namespace {

TEST(TargetSize, MatchesUpstreamExamples) {
  struct Case { int64_t w0, h0; double area; int64_t w, h; };
  // Spec 4.2, including the 832x480 case that loses a row pair to double rounding.
  const Case cases[] = {{1280, 720, 921600, 1280, 720}, {1024, 1024, 921600, 960, 960},
                        {1920, 1080, 921600, 1280, 720}, {720, 1280, 921600, 720, 1280},
                        {1280, 720, 399360, 832, 464},  {832, 480, 399360, 832, 464},
                        {4032, 3024, 921600, 1104, 816}, {320, 180, 4096, 80, 48}};
  for (const Case& c : cases) {
    const VideoSize s = target_size(c.h0, c.w0, c.area);
    EXPECT_EQ(s.width, c.w) << c.w0 << "x" << c.h0 << " @" << c.area;
    EXPECT_EQ(s.height, c.h) << c.w0 << "x" << c.h0 << " @" << c.area;
  }
  test::expect_error([] { target_size(1, 10000, 4096); }, {"10000x1", "empty video"});
  test::expect_error([] { target_size(0, 10, 4096); }, {"image size 10x0 is empty"});
  test::expect_error([] { target_size(180, 320, 100); }, {"max area 100 is too small"});
}

TEST(FrameMask, FirstAndLastLatentFramesForAnyFrameCount) {
  for (int64_t frames : {1, 5, 9, 13, 17, 81}) {
    const Tensor m = frame_mask(frames, 2, 3);
    const int64_t t = (frames - 1) / 4 + 1;
    ASSERT_EQ(m.shape(), (Shape{4, t, 2, 3}));
    for (int64_t c = 0; c < 4; ++c)
      for (int64_t tau = 0; tau < t; ++tau) {
        float want = 0.0f;
        if (tau == 0) want = 1.0f;
        else if (tau == t - 1 && c == 3) want = 1.0f;
        EXPECT_EQ(m.item_f32(((c * t + tau) * 2 + 1) * 3 + 2), want) << frames << " c" << c << " t" << tau;
      }
  }
  test::expect_error([] { frame_mask(8, 2, 2); }, {"frame count 8", "4n+1"});
  test::expect_error([] { frame_mask(0, 2, 2); }, {"frame count 0", "4n+1"});
}

TEST(FitLastFrame, SameSizeUnchangedOtherSizeCoversAndCrops) {
  Tensor img = Tensor::empty({3, 4, 6}, DType::F32);
  for (int64_t i = 0; i < img.numel(); ++i) img.data<float>()[i] = static_cast<float>(i % 7) / 7.0f;
  EXPECT_EQ(fit_last_frame(img, 4, 6).raw(), img.raw());
  // A constant image stays constant whatever the scaling and crop.
  const Tensor flat = Tensor::full({3, 9, 16}, 0.25f);
  const Tensor fitted = fit_last_frame(flat, 12, 12);
  ASSERT_EQ(fitted.shape(), (Shape{3, 12, 12}));
  for (int64_t i = 0; i < fitted.numel(); ++i) ASSERT_NEAR(fitted.data<float>()[i], 0.25f, 1e-6f);
  // Twice the size in both directions: a bicubic 2x downscale of the same aspect ratio, no crop.
  EXPECT_EQ(fit_last_frame(Tensor::full({3, 8, 12}, 0.5f), 4, 6).shape(), (Shape{3, 4, 6}));
}

TEST(ConditioningVideo, FirstZerosLast) {
  const Tensor a = Tensor::full({3, 2, 2}, 0.5f), b = Tensor::full({3, 2, 2}, -0.5f);
  const Tensor v = conditioning_video(a, b, 5);
  ASSERT_EQ(v.shape(), (Shape{3, 5, 2, 2}));
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t f = 0; f < 5; ++f) {
      const float want = f == 0 ? 0.5f : (f == 4 ? -0.5f : 0.0f);
      EXPECT_EQ(v.item_f32(((c * 5 + f) * 2 + 1) * 2 + 1), want);
    }
  test::expect_error([&] { conditioning_video(a, Tensor::full({3, 2, 3}, 0.f), 5); },
                     {"of one size", "[3, 2, 3]"});
  // i2v: no last frame, frame F-1 stays zero.
  const Tensor only_first = conditioning_video(a, Tensor(), 5);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t f = 0; f < 5; ++f) EXPECT_EQ(only_first.item_f32(((c * 5 + f) * 2 + 1) * 2), f == 0 ? 0.5f : 0.0f);
}

TEST(FrameMask, I2VMarksOnlyTheFirstFrame) {
  for (int64_t frames : {5, 9, 81}) {
    const Tensor m = frame_mask(frames, 1, 1, /*with_last=*/false);
    const int64_t t = (frames - 1) / 4 + 1;
    for (int64_t c = 0; c < 4; ++c)
      for (int64_t tau = 0; tau < t; ++tau) EXPECT_EQ(m.item_f32(c * t + tau), tau == 0 ? 1.0f : 0.0f);
  }
}

// A [3, h, w] image whose value at (c, y, x) is 1000c + 100y + x + 1, so every source pixel (and
// the zero padding) can be told apart.
Tensor numbered(int64_t h, int64_t w) {
  Tensor t = Tensor::empty({3, h, w}, DType::F32);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x) t.data<float>()[(c * h + y) * w + x] = static_cast<float>(1000 * c + 100 * y + x + 1);
  return t;
}

// A [3, h, w] image that holds its own coordinates: channel 0 = x, channel 1 = y, channel 2 = 7.
Tensor coordinates(int64_t h, int64_t w) {
  Tensor t = Tensor::empty({3, h, w}, DType::F32);
  float* p = t.data<float>();
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      p[y * w + x] = static_cast<float>(x);
      p[(h + y) * w + x] = static_cast<float>(y);
      p[(2 * h + y) * w + x] = 7.0f;
    }
  return t;
}

// Checks that out [3, H, W] shows the source point (ys(Y), xs(X)) of a coordinates() image of
// h x w at every pixel whose bicubic taps lie inside the source (PyTorch's A = -0.75 cubic is not
// exact on a ramp: about 0.04 px off between pixels). Returns the pixels checked.
template <typename Ys, typename Xs>
int64_t expect_shows(const Tensor& out, int64_t h, int64_t w, Ys ys, Xs xs, double tol) {
  const int64_t H = out.size(1), W = out.size(2);
  const float* p = out.data<float>();
  int64_t checked = 0, wrong = 0;
  double max_err = 0;
  std::string first_wrong;
  for (int64_t Y = 0; Y < H; ++Y)
    for (int64_t X = 0; X < W; ++X) {
      const double y = ys(Y), x = xs(X);
      if (y < 1 || y > static_cast<double>(h) - 3 || x < 1 || x > static_cast<double>(w) - 3) continue;
      const double ex = std::fabs(p[Y * W + X] - x), ey = std::fabs(p[(H + Y) * W + X] - y);
      max_err = std::max({max_err, ex, ey});
      if (ex > tol || ey > tol || std::fabs(p[(2 * H + Y) * W + X] - 7.0f) > 1e-4f) {
        if (wrong++ == 0)
          first_wrong = fmt::format("output ({}, {}) shows source ({}, {}), expected ({:.3f}, {:.3f})", Y, X,
                                    p[(H + Y) * W + X], p[Y * W + X], y, x);
      }
      ++checked;
    }
  std::printf("[measured] %lld pixels checked, max coordinate error %.3g px\n", static_cast<long long>(checked),
              max_err);
  EXPECT_EQ(wrong, 0) << wrong << " pixels off by more than " << tol << " px; first: " << first_wrong;
  return checked;
}

// The cover fit against crop offsets and scales worked out by hand (spec 4.3, intended behaviour:
// r = max(W0/W1, H0/H1), scale to round(W1 r) x round(H1 r), centre crop with Python's round).
TEST(FitLastFrame, CoverScalesAndCentreCropsByHand) {
  {  // 41x28 (WxH) into 48x24: r = 48/41, scaled to 48 x round(32.78) = 33 rows; crop top
     // round((33 - 24) / 2) = round(4.5) = 4 (half to even), left 0.
    const Tensor out = fit_last_frame(coordinates(28, 41), 24, 48);
    ASSERT_EQ(out.shape(), (Shape{3, 24, 48}));
    const int64_t n = expect_shows(
        out, 28, 41, [](int64_t Y) { return (static_cast<double>(Y) + 4 + 0.5) * 28.0 / 33.0 - 0.5; },
        [](int64_t X) { return (static_cast<double>(X) + 0.5) * 41.0 / 48.0 - 0.5; }, 0.06);
    EXPECT_GT(n, 24 * 48 / 2);
  }
  {  // 90x30 into 48x24: r = max(48/90, 24/30) = 0.8, scaled to 72x24; crop left 12, top 0.
    const Tensor out = fit_last_frame(coordinates(30, 90), 24, 48);
    ASSERT_EQ(out.shape(), (Shape{3, 24, 48}));
    const int64_t n = expect_shows(
        out, 30, 90, [](int64_t Y) { return (static_cast<double>(Y) + 0.5) * 30.0 / 24.0 - 0.5; },
        [](int64_t X) { return (static_cast<double>(X) + 12 + 0.5) * 90.0 / 72.0 - 0.5; }, 0.06);
    EXPECT_GT(n, 24 * 48 / 2);
  }
  {  // 61x20 into 40x20: r = 1, no scaling; crop left round(10.5) = 10: exactly columns 10..49.
    const Tensor src = coordinates(20, 61);
    const Tensor out = fit_last_frame(src, 20, 40);
    ASSERT_EQ(out.shape(), (Shape{3, 20, 40}));
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 20; ++y)
        for (int64_t x = 0; x < 40; ++x)
          ASSERT_EQ(out.data<float>()[(c * 20 + y) * 40 + x], src.data<float>()[(c * 20 + y) * 61 + x + 10])
              << c << " " << y << " " << x;
  }
  {  // 16x36 (portrait) into 32x18 (landscape): r = max(32/16, 18/36) = 2, scaled to 32x72; crop top
     // round((72 - 18) / 2) = 27.
    const Tensor out = fit_last_frame(coordinates(36, 16), 18, 32);
    ASSERT_EQ(out.shape(), (Shape{3, 18, 32}));
    const int64_t n = expect_shows(
        out, 36, 16, [](int64_t Y) { return (static_cast<double>(Y) + 27 + 0.5) * 36.0 / 72.0 - 0.5; },
        [](int64_t X) { return (static_cast<double>(X) + 0.5) * 16.0 / 32.0 - 0.5; }, 0.06);
    EXPECT_GT(n, 18 * 32 / 2);
  }
}

TEST(FitLastFrameUpstream, CropsWithSwappedSidesAndPadsWithZeros) {
  const Tensor same = numbered(4, 6);
  EXPECT_EQ(fit_last_frame_upstream(same, 4, 6).raw(), same.raw());
  // Spec 4.3's example scaled down 40x: first 32x18 (W x H), last 48x27. r = 2/3, S = [32, 18]
  // read as 32 rows x 18 columns: rows padded by 2 on top and 3 below (27 -> 32), columns cropped
  // at round((48 - 18) / 2) = 15.
  {
    const Tensor out = fit_last_frame_upstream(numbered(27, 48), 18, 32);
    ASSERT_EQ(out.shape(), (Shape{3, 32, 18}));
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t y = 0; y < 32; ++y)
        for (int64_t x = 0; x < 18; ++x) {
          const float want = (y < 2 || y >= 29) ? 0.0f : static_cast<float>(1000 * c + 100 * (y - 2) + (x + 15) + 1);
          ASSERT_EQ(out.item_f32((c * 32 + y) * 18 + x), want) << c << " " << y << " " << x;
        }
  }
  // A smaller last image (first 4x2, last 2x2): r = 2, S = [4, 4]; padded by one on every side,
  // which is exactly the crop.
  {
    const Tensor out = fit_last_frame_upstream(numbered(2, 2), 2, 4);
    ASSERT_EQ(out.shape(), (Shape{3, 4, 4}));
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 4; ++x) {
        const bool inside = y >= 1 && y <= 2 && x >= 1 && x <= 2;
        EXPECT_EQ(out.item_f32(y * 4 + x), inside ? static_cast<float>(100 * (y - 1) + (x - 1) + 1) : 0.0f);
      }
  }
  // Odd differences: first 5x3, last 4x4. r = max(5/4, 3/4) = 1.25, S = [5, 5]: rows padded 0 on
  // top and 1 below (4 -> 5), columns padded 0 left and 1 right; crop offsets round(0 / 2) = 0.
  {
    const Tensor out = fit_last_frame_upstream(numbered(4, 4), 3, 5);
    ASSERT_EQ(out.shape(), (Shape{3, 5, 5}));
    for (int64_t y = 0; y < 5; ++y)
      for (int64_t x = 0; x < 5; ++x)
        EXPECT_EQ(out.item_f32(y * 5 + x), (y < 4 && x < 4) ? static_cast<float>(100 * y + x + 1) : 0.0f);
  }
  // Crop offsets round half to even: first 2x2 (W x H), last 7x1 (r = 2, S = [14, 2] -> 14 rows,
  // 2 columns); rows padded 6 + 7, columns cropped at round((7 - 2) / 2) = round(2.5) = 2.
  {
    const Tensor out = fit_last_frame_upstream(numbered(1, 7), 2, 2);
    ASSERT_EQ(out.shape(), (Shape{3, 14, 2}));
    EXPECT_EQ(out.item_f32(6 * 2 + 0), 3.0f);
    EXPECT_EQ(out.item_f32(6 * 2 + 1), 4.0f);
    EXPECT_EQ(out.item_f32(5 * 2 + 0), 0.0f);
    EXPECT_EQ(out.item_f32(7 * 2 + 0), 0.0f);
  }
}

}  // namespace
}  // namespace ib
