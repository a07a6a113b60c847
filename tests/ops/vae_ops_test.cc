// The Wan-VAE's small ops (channel RMS_norm + SiLU, layout helpers, latent scaling, clamp)
// against direct references on random data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "common/fixture.h"
#include "ops/vae_latent.h"
#include "ops/vae_layout.h"
#include "ops/vae_norm.h"

namespace ib {
namespace {

using test::random_tensor;

TEST(RmsNormChannels, MatchesReferenceWithAndWithoutSilu) {
  const int64_t C = 7, N = 3 * 5 * 37;  // N not a multiple of the kernel's block
  const Tensor x = random_tensor({C, 3, 5, 37}, 1), g = random_tensor({C, 1, 1, 1}, 2);
  for (bool silu : {false, true}) {
    Tensor ref = Tensor::empty(x.shape(), DType::F32);
    for (int64_t n = 0; n < N; ++n) {
      double ss = 0;
      for (int64_t c = 0; c < C; ++c) ss += std::pow(static_cast<double>(x.data<float>()[c * N + n]), 2);
      for (int64_t c = 0; c < C; ++c) {
        double v = x.data<float>()[c * N + n] / std::max(std::sqrt(ss), 1e-12) * std::sqrt(double(C)) *
                   g.data<float>()[c];
        if (silu) v = v / (1 + std::exp(-v));
        ref.data<float>()[c * N + n] = static_cast<float>(v);
      }
    }
    EXPECT_TENSOR_CLOSE(ops::rms_norm_channels(x, g, silu), ref, 1e-5);
  }
  // An all-zero position stays zero (the 1e-12 floor).
  const Tensor z = Tensor::zeros({4, 2, 2});
  const Tensor y = ops::rms_norm_channels(z, Tensor::full({4}, 1.0f), true);
  for (int64_t i = 0; i < y.numel(); ++i) EXPECT_EQ(y.data<float>()[i], 0.0f);
  EXPECT_THROW(ops::rms_norm_channels(x, Tensor::full({C + 1}, 1.0f)), Error);
}

TEST(VaeLayout, CatSliceInterleave) {
  const Tensor a = random_tensor({3, 2, 4, 5}, 3), b = random_tensor({3, 1, 4, 5}, 4);
  const Tensor c = ops::cat_frames({a, b});
  ASSERT_EQ(c.shape(), (Shape{3, 3, 4, 5}));
  for (int64_t ch = 0; ch < 3; ++ch)
    for (int64_t t = 0; t < 3; ++t)
      for (int64_t i = 0; i < 20; ++i) {
        const float want = t < 2 ? a.data<float>()[(ch * 2 + t) * 20 + i] : b.data<float>()[ch * 20 + i];
        ASSERT_EQ(c.data<float>()[(ch * 3 + t) * 20 + i], want);
      }
  EXPECT_TENSOR_CLOSE(ops::slice_frames(c, 2, 3), b, 0.0);
  EXPECT_TENSOR_CLOSE(ops::slice_frames(c, 0, 2), a, 0.0);
  EXPECT_THROW(ops::cat_frames({a, random_tensor({2, 1, 4, 5}, 5)}), Error);
  EXPECT_THROW(ops::slice_frames(c, 2, 4), Error);

  const Tensor x = random_tensor({6, 2, 3, 2}, 6);  // 2C = 6
  const Tensor y = ops::interleave_channel_halves(x);
  ASSERT_EQ(y.shape(), (Shape{3, 4, 3, 2}));
  for (int64_t ch = 0; ch < 3; ++ch)
    for (int64_t t = 0; t < 4; ++t)
      for (int64_t i = 0; i < 6; ++i)
        ASSERT_EQ(y.data<float>()[(ch * 4 + t) * 6 + i], x.data<float>()[((ch + 3 * (t % 2)) * 2 + t / 2) * 6 + i]);
}

TEST(VaeLayout, UpsampleAndTranspose) {
  const Tensor x = random_tensor({2, 3, 5, 7}, 7);
  const Tensor y = ops::upsample_nearest2x(x);
  ASSERT_EQ(y.shape(), (Shape{2, 3, 10, 14}));
  for (int64_t p = 0; p < 6; ++p)
    for (int64_t yy = 0; yy < 10; ++yy)
      for (int64_t xx = 0; xx < 14; ++xx)
        ASSERT_EQ(y.data<float>()[(p * 10 + yy) * 14 + xx], x.data<float>()[(p * 5 + yy / 2) * 7 + xx / 2]);

  const Tensor m = random_tensor({45, 70}, 8);
  const Tensor t = ops::transpose2d(m);
  ASSERT_EQ(t.shape(), (Shape{70, 45}));
  for (int64_t r = 0; r < 45; ++r)
    for (int64_t c = 0; c < 70; ++c) ASSERT_EQ(t.data<float>()[c * 45 + r], m.data<float>()[r * 70 + c]);
}

TEST(VaeLatent, NormalizeDenormalizeClamp) {
  const Tensor x = random_tensor({3, 2, 4}, 9);
  const std::vector<float> mean = {0.5f, -1.0f, 2.0f}, inv = {1.0f / 2.8f, 1.0f / 1.5f, 1.0f / 0.7f};
  const Tensor z = ops::latent_normalize(x, mean, inv);
  const Tensor back = ops::latent_denormalize(z, mean, inv);
  for (int64_t i = 0; i < x.numel(); ++i) {
    const auto c = static_cast<size_t>(i / 8);
    EXPECT_EQ(z.data<float>()[i], (x.data<float>()[i] - mean[c]) * inv[c]);
    EXPECT_EQ(back.data<float>()[i], z.data<float>()[i] / inv[c] + mean[c]);
  }
  EXPECT_TENSOR_CLOSE(back, x, 1e-6);
  EXPECT_THROW(ops::latent_normalize(x, {0.0f}, {1.0f}), Error);
  Tensor c = x.clone();
  ops::clamp_(c, -0.5f, 0.5f);
  for (int64_t i = 0; i < x.numel(); ++i) EXPECT_EQ(c.data<float>()[i], std::clamp(x.data<float>()[i], -0.5f, 0.5f));
}

}  // namespace
}  // namespace ib
