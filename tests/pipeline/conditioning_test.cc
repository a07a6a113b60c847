#include <gtest/gtest.h>

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
  EXPECT_THROW(target_size(1, 10000, 4096), Error);
  EXPECT_THROW(target_size(0, 10, 4096), Error);
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
  EXPECT_THROW(frame_mask(8, 2, 2), Error);
  EXPECT_THROW(frame_mask(0, 2, 2), Error);
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
  EXPECT_THROW(conditioning_video(a, Tensor::full({3, 2, 3}, 0.f), 5), Error);
}

}  // namespace
}  // namespace ib
