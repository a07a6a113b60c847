// The demo preset: its video starts at the first keyframe, ends at the last (PSNR against the
// keyframes as the pipeline resizes them) and changes monotonically in between; its hand-built
// pieces (the attention's blend weights, the VAE's reconstruction) do what demo_model.h says.
#include "synth/demo_model.h"

#include <gtest/gtest.h>

#include <cmath>

#include "common/fixture.h"
#include "inbetween/pipeline.h"
#include "io/image.h"
#include "io/tensor_store.h"
#include "models/vae.h"
#include "ops/resize.h"
#include "pipeline/conditioning.h"
#include "synth/synth_model.h"

namespace ib {
namespace {

// PSNR in dB of two [3, H, W] images in [-1, 1], on the [0, 1] scale.
double psnr(const float* a, const float* b, int64_t n) {
  double se = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = 0.5 * (static_cast<double>(a[i]) - static_cast<double>(b[i]));
    se += d * d;
  }
  return 10.0 * std::log10(1.0 / std::max(se / static_cast<double>(n), 1e-12));
}

double mse(const float* a, const float* b, int64_t n) {
  double se = 0;
  for (int64_t i = 0; i < n; ++i) se += (static_cast<double>(a[i]) - b[i]) * (static_cast<double>(a[i]) - b[i]);
  return se / static_cast<double>(n);
}

// Frame f of a [3, F, H, W] video as a [3, H, W] copy.
std::vector<float> frame(const std::vector<float>& v, int64_t F, int64_t H, int64_t W, int64_t f) {
  std::vector<float> out(static_cast<size_t>(3 * H * W));
  for (int64_t c = 0; c < 3; ++c) std::copy_n(v.begin() + (c * F + f) * H * W, H * W, out.begin() + c * H * W);
  return out;
}

TEST(DemoModel, BlendWeightsAreCloseToLinearAndMonotone) {
  for (int64_t L = 1; L <= 64; ++L) {
    double prev = -1;
    for (int64_t i = 0; i <= L; ++i) {
      const double a = demo_blend_weight(i, L);
      EXPECT_GT(a, prev) << "L " << L << " i " << i;
      EXPECT_NEAR(a, static_cast<double>(i) / static_cast<double>(L), 0.15) << "L " << L << " i " << i;
      prev = a;
    }
  }
}

TEST(DemoModel, VaeReconstructsABlurredImage) {
  const VaeConfig cfg = demo_vae_config();
  const MemoryTensorStore store(demo_vae_weights(cfg));
  const WanVAE vae = WanVAE::load(store, cfg);
  const Tensor img = ops::resize_bicubic(load_image(test::repo_root() + "/assets/first.png"), 96, 160);
  const Tensor video = conditioning_video(img, img, 9);  // first, 7 black frames, last
  const Tensor out = vae.decode(vae.encode(video));
  ASSERT_EQ(out.shape(), video.shape());
  const int64_t plane = 96 * 160;
  std::vector<float> v(out.data<float>(), out.data<float>() + out.numel());
  const std::vector<float> ref(img.data<float>(), img.data<float>() + img.numel());
  EXPECT_GT(psnr(frame(v, 9, 96, 160, 0).data(), ref.data(), 3 * plane), 20.0);
  EXPECT_GT(psnr(frame(v, 9, 96, 160, 8).data(), ref.data(), 3 * plane), 20.0);
  // Frames 5-7 interpolate between latent frame 1 (frame 4: black) and the last frame.
  const std::vector<float> black(static_cast<size_t>(3 * plane), 0.0f);
  EXPECT_LT(psnr(frame(v, 9, 96, 160, 4).data(), ref.data(), 3 * plane), 12.0);
  EXPECT_GT(psnr(frame(v, 9, 96, 160, 4).data(), black.data(), 3 * plane), 40.0);
  double prev = 1e9;
  for (int64_t f = 4; f <= 8; ++f) {
    const double d = mse(frame(v, 9, 96, 160, f).data(), ref.data(), 3 * plane);
    EXPECT_LT(d, prev) << f;
    prev = d;
  }
}

// The README's demo at a smaller size: frame 0 is the first keyframe, the last frame the last one,
// and every frame in between is further from the first and closer to the last than the one before.
TEST(DemoModel, VideoGoesFromTheFirstKeyframeToTheLast) {
  const std::string dir = test::temp_dir() + "/demo";
  SynthOptions o;
  o.out_dir = dir;
  write_synth_model(synth_preset("demo"), o);
  Pipeline pipeline(PipelineOptions{dir, ComputeDevice::CPU, 0});
  GenerateOptions g;
  g.first_image = test::repo_root() + "/assets/first.png";
  g.last_image = test::repo_root() + "/assets/last.png";
  g.prompt = "The sun sets slowly over a calm sea";
  g.frames = 33;
  g.width = 192;
  g.height = 112;
  g.steps = 6;
  g.seed = 42;
  const GeneratedVideo v = pipeline.generate(g);
  ASSERT_EQ(v.frames, 33);
  const int64_t H = v.height, W = v.width, n = 3 * H * W;
  auto keyframe = [&](const std::string& name) {
    const Tensor t = ops::resize_bicubic(load_image(test::repo_root() + "/assets/" + name), H, W);
    return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
  };
  const std::vector<float> first = keyframe("first.png"), last = keyframe("last.png");
  const double p_first = psnr(frame(v.data, 33, H, W, 0).data(), first.data(), n);
  const double p_last = psnr(frame(v.data, 33, H, W, 32).data(), last.data(), n);
  std::printf("demo: frame 0 vs first.png %.2f dB, frame 32 vs last.png %.2f dB\n", p_first, p_last);
  EXPECT_GE(p_first, 20.0);
  EXPECT_GE(p_last, 20.0);
  EXPECT_LT(psnr(frame(v.data, 33, H, W, 0).data(), last.data(), n), p_first - 3);  // the keyframes differ
  double prev_first = -1, prev_last = 1e9;
  for (int64_t f = 0; f < 33; ++f) {
    const std::vector<float> fr = frame(v.data, 33, H, W, f);
    const double to_first = mse(fr.data(), first.data(), n), to_last = mse(fr.data(), last.data(), n);
    EXPECT_GT(to_first, prev_first) << "frame " << f;
    EXPECT_LT(to_last, prev_last) << "frame " << f;
    prev_first = to_first;
    prev_last = to_last;
  }
}

}  // namespace
}  // namespace ib
