// CLIP vision encoder on CUDA (label gpu): the clip.safetensors features from the GPU with f32
// linear weights (the fixture bound 1e-4 x (1 + max|ref|)) and with bf16 ones (2e-2), preprocessing
// on the host as the pipeline does. Every size comes from the fixture files.
#include <gtest/gtest.h>

#include <cstdio>

#include "common/fixture.h"
#include "io/model_config.h"
#include "models/clip.h"

namespace ib {
namespace {

constexpr double kBf16Rel = 2e-2;

ClipVision clip_on(Device device, DType linear_dtype) {
  static const auto store =
      open_tensor_store(test::model_dir() + "/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth");
  ClipVision clip = ClipVision::load(*store, ModelFolder::open(test::model_dir()).clip);
  clip.to(device, linear_dtype);
  return clip;
}

void check_features(DType linear_dtype, double rel) {
  const auto fx = test::open_fixture("clip.safetensors");
  const Tensor frames = fx->get("frames"), pixels = fx->get("pixels"), features = fx->get("features");
  const ClipVision clip = clip_on(Device::CUDA, linear_dtype);
  EXPECT_EQ(clip.device(), Device::CUDA);
  // The pipeline's way: preprocess each frame on the host, encode both on the GPU.
  Tensor px = Tensor::empty(pixels.shape(), DType::F32);
  for (int64_t i = 0; i < frames.size(0); ++i) copy_bytes(px.select(i), clip.preprocess(frames.select(i)));
  const Tensor out = clip.encode(px);
  EXPECT_EQ(out.device(), Device::CUDA);
  EXPECT_TENSOR_CLOSE(out, features, rel);
  const test::Closeness c = test::compare(out, features, rel);
  std::printf("[measured] CLIP cuda %s: max_abs_err=%.3g, err/(1+max|ref|)=%.3g (bound %.3g)\n",
              dtype_name(linear_dtype), c.max_abs_err, c.max_abs_err / (1.0 + c.max_abs_ref), rel);
  // The fixture's own pixels, given on the device; one image at a time gives the same rows.
  EXPECT_TENSOR_CLOSE(clip.encode(pixels.to(Device::CUDA)), features, rel);
  EXPECT_TENSOR_CLOSE(clip.encode(pixels.slice(1, 2)), features.slice(1, 2), rel);
}

TEST(ClipGpu, F32WeightsMatchFeatures) { check_features(DType::F32, test::kComponentRel); }

TEST(ClipGpu, Bf16WeightsMatchFeatures) { check_features(DType::BF16, kBf16Rel); }

TEST(ClipGpu, MovesBackToTheCpu) {
  const auto fx = test::open_fixture("clip.safetensors");
  ClipVision clip = clip_on(Device::CUDA, DType::F32);
  clip.to(Device::CPU);
  EXPECT_EQ(clip.device(), Device::CPU);
  const Tensor out = clip.encode(fx->get("pixels"));
  EXPECT_EQ(out.device(), Device::CPU);
  EXPECT_TENSOR_CLOSE(out, fx->get("features"), test::kComponentRel);
  EXPECT_THROW(clip_on(Device::CUDA, DType::F16), Error);
}

}  // namespace
}  // namespace ib
