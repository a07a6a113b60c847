// CLIP image path against the fixture (clip.safetensors): image loading, bicubic resize +
// normalisation, and the ViT features; plus configuration/weight mismatches.
#include <gtest/gtest.h>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/image.h"
#include "io/model_config.h"
#include "models/clip.h"
#include "ops/resize.h"

namespace ib {
namespace {

std::string clip_path() { return test::model_dir() + "/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"; }

ClipConfig clip_config() { return ModelFolder::open(test::model_dir()).clip; }

TEST(ClipFixture, LoadImageMatchesFrames) {
  const auto fx = test::open_fixture("clip.safetensors");
  const Tensor frames = fx->get("frames");  // [2, 3, H, W]
  EXPECT_TENSOR_CLOSE_ABS(load_image(test::fixture_path("first.png")), frames.select(0), 0.0);
  EXPECT_TENSOR_CLOSE_ABS(load_image(test::fixture_path("last.png")), frames.select(1), 0.0);
}

// Bicubic resize to S x S, then x*0.5+0.5 and (x - mean)/std, written out here independently
// of ClipVision::preprocess.
TEST(ClipFixture, ResizeAndNormaliseMatchPixels) {
  const auto fx = test::open_fixture("clip.safetensors");
  const Tensor frames = fx->get("frames"), pixels = fx->get("pixels");
  const int64_t S = pixels.size(-1);
  Tensor x = ops::resize_bicubic(frames, S, S);  // [2, 3, S, S]
  const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  const float std_[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  float* p = x.data<float>();
  for (int64_t i = 0; i < x.numel(); ++i) {
    const int64_t c = (i / (S * S)) % 3;
    p[i] = (p[i] * 0.5f + 0.5f - mean[c]) / std_[c];
  }
  EXPECT_TENSOR_CLOSE(x, pixels, test::kComponentRel);
  const test::Closeness c = test::compare(x, pixels, 1.0);
  std::printf("resize + normalise vs pixels: max abs err %.3g (max |ref| %.3g)\n", c.max_abs_err, c.max_abs_ref);
}

TEST(ClipFixture, PreprocessAndEncodeMatch) {
  const auto fx = test::open_fixture("clip.safetensors");
  const Tensor frames = fx->get("frames"), pixels = fx->get("pixels"), features = fx->get("features");
  const auto store = open_tensor_store(clip_path());
  const ClipVision clip = ClipVision::load(*store, clip_config());
  EXPECT_EQ(clip.num_tokens(), features.size(1));
  for (int64_t i = 0; i < frames.size(0); ++i)
    EXPECT_TENSOR_CLOSE(clip.preprocess(frames.select(i)), pixels.select(i), test::kComponentRel);
  const Tensor out = clip.encode(pixels);
  EXPECT_TENSOR_CLOSE(out, features, test::kComponentRel);
  // One image at a time gives the same rows.
  EXPECT_TENSOR_CLOSE(clip.encode(pixels.slice(1, 2)), features.slice(1, 2), test::kComponentRel);
}

// Errors name what disagrees.
void expect_load_error(ClipConfig cfg, const std::string& part) {
  const auto store = open_tensor_store(clip_path());
  try {
    ClipVision::load(*store, cfg);
    ADD_FAILURE() << "no error for " << part;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
  }
}

TEST(ClipFixture, ConfigMustAgreeWithWeights) {
  const ClipConfig base = clip_config();
  ClipConfig c = base;
  c.dim = base.dim * 2;
  expect_load_error(c, "visual.patch_embedding.weight");
  c = base;
  c.num_layers = base.num_layers + 1;
  expect_load_error(c, "num_layers");
  c = base;
  c.image_size = base.image_size * 2;
  expect_load_error(c, "visual.pos_embedding");
  c = base;
  c.mlp_ratio = base.mlp_ratio + 1;
  expect_load_error(c, "mlp.0.weight");
  c = base;
  c.num_heads = base.dim + 1;
  expect_load_error(c, "num_heads");
  c = base;
  c.image_size = base.image_size + 1;
  expect_load_error(c, "patch_size");

  const auto store = open_tensor_store(clip_path());
  const ClipVision clip = ClipVision::load(*store, base);
  const int64_t S = base.image_size;
  const std::string pixels_msg = fmt::format("expected f32 pixels [N, 3, {}, {}]", S, S);
  test::expect_error([&] { clip.encode(Tensor::zeros({1, 3, S + 1, S})); },
                     {pixels_msg, fmt::format("[1, 3, {}, {}]", S + 1, S)});
  test::expect_error([&] { clip.encode(Tensor::zeros({3, S, S})); }, {pixels_msg});
  test::expect_error([&] { clip.encode(Tensor::zeros({1, 4, S, S})); }, {pixels_msg});
  test::expect_error([&] { clip.preprocess(Tensor::zeros({4, 8, 8})); },
                     {"expected an image [3, H, W] or [N, 3, H, W]", "[4, 8, 8]"});
}

}  // namespace
}  // namespace ib
