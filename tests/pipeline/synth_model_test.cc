// synth-model: the official preset has the release's tensor counts, and a written tiny model
// loads through every component loader and generates.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>

#include "common/fixture.h"
#include "inbetween/pipeline.h"
#include "io/model_config.h"
#include "pipeline/generate_internal.h"
#include "synth/synth_model.h"

namespace ib {
namespace {

namespace fs = std::filesystem;

TEST(SynthModel, OfficialPresetHasTheReleaseTensorCounts) {
  const SynthPreset p = synth_preset("flf2v-14b");
  // Spec 7.10, 3.8, 6.7 and 5: 1304 DiT tensors, 242 T5, 194 VAE, 392 visual CLIP tensors.
  EXPECT_EQ(dit_weight_shapes(p.dit, 4096, 1280, 514).size(), 1304u);
  EXPECT_EQ(t5_weight_shapes(p.t5).size(), 242u);
  EXPECT_EQ(vae_weight_shapes(p.vae).size(), 194u);
  EXPECT_EQ(clip_weight_shapes(p.clip).size(), 392u);
  int64_t params = 0;
  for (const auto& [name, shape] : dit_weight_shapes(p.dit, 4096, 1280, 514)) params += shape_numel(shape);
  EXPECT_NEAR(static_cast<double>(params) / 1e9, 16.40, 0.01);  // ~16.40 G parameters
  EXPECT_THROW(synth_preset("huge"), Error);
}

TEST(SynthModel, TinyModelLoadsAndGenerates) {
  const std::string dir = test::temp_dir() + "/model";
  SynthOptions o;
  o.out_dir = dir;
  write_synth_model(synth_preset("tiny"), o);
  EXPECT_TRUE(fs::exists(dir + "/diffusion_pytorch_model.safetensors.index.json"));
  EXPECT_THROW(write_synth_model(synth_preset("tiny"), o), Error);  // exists, no overwrite
  for (const auto& e : fs::directory_iterator(fs::path(dir).parent_path()))
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();

  Pipeline pipeline(PipelineOptions{dir, ComputeDevice::CPU, 0});
  GenerateOptions g;
  g.first_image = test::repo_root() + "/assets/first.png";
  g.last_image = test::repo_root() + "/assets/last.png";
  g.prompt = "a sunset";
  g.frames = 5;
  g.width = 64;
  g.height = 32;
  g.steps = 2;
  g.seed = 1;
  const GeneratedVideo v = pipeline.generate(g);
  EXPECT_EQ(v.frames, 5);
  EXPECT_EQ(v.height, 32);
  EXPECT_EQ(v.width, 64);
  EXPECT_EQ(v.seed, 1);
  for (float x : v.data) ASSERT_TRUE(x >= -1.0f && x <= 1.0f);
  // The same seed gives the same video.
  const GeneratedVideo again = pipeline.generate(g);
  EXPECT_EQ(again.data, v.data);
}

// Writes the tiny preset as another model type (the DiT tensors follow the type).
std::string write_tiny(const std::string& model_type, int64_t in_dim) {
  SynthPreset p = synth_preset("tiny");
  p.dit.model_type = model_type;
  p.dit.in_dim = in_dim;
  SynthOptions o;
  o.out_dir = test::temp_dir() + "/" + model_type;
  write_synth_model(p, o);
  return o.out_dir;
}

TEST(SynthModel, I2VConditionsOnTheFirstFrameOnly) {
  Pipeline pipeline(PipelineOptions{write_tiny("i2v", 36), ComputeDevice::CPU, 0});
  std::map<std::string, Tensor> got;
  set_intermediate_callback(pipeline, [&](const std::string& name, const Tensor& t) { got[name] = t.clone(); });
  GenerateOptions g;
  g.first_image = test::repo_root() + "/assets/first.png";  // no last image: i2v does not need one
  g.frames = 9;
  g.width = 64;
  g.height = 32;
  g.steps = 1;
  g.seed = 1;
  const GeneratedVideo v = pipeline.generate(g);
  EXPECT_EQ(v.frames, 9);
  // CLIP saw one image; the conditioning video is the first frame and zeros; the mask marks latent
  // frame 0 only (upstream image2video: msk[:, 1:] = 0).
  ASSERT_EQ(got.at("clip_context").size(0), 1);
  const Tensor& cond = got.at("cond_video");  // [3, 9, 32, 64]
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t f = 1; f < 9; ++f)
      for (int64_t i = 0; i < 32 * 64; ++i) ASSERT_EQ(cond.item_f32((c * 9 + f) * 32 * 64 + i), 0.0f);
  const Tensor& y = got.at("y");  // [4 + 16, 3, 4, 8]
  for (int64_t c = 0; c < 4; ++c)
    for (int64_t t = 0; t < 3; ++t) EXPECT_EQ(y.item_f32((c * 3 + t) * 4 * 8), t == 0 ? 1.0f : 0.0f) << c << " " << t;
  g.first_image.clear();
  EXPECT_THROW(pipeline.validate(g), Error);
}

TEST(SynthModel, T2VNeedsNoImagesAndNoClipFile) {
  const std::string dir = write_tiny("t2v", 16);
  fs::remove(dir + "/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth");  // a T2V release has none
  Pipeline pipeline(PipelineOptions{dir, ComputeDevice::CPU, 0});
  GenerateOptions g;
  g.prompt = "a sunset";
  g.frames = 5;
  g.max_area = 4096;  // 16:9 landscape without an image: 80x48
  g.steps = 1;
  g.seed = 2;
  const GeneratedVideo v = pipeline.generate(g);
  EXPECT_EQ(v.frames, 5);
  EXPECT_EQ(v.width, 80);
  EXPECT_EQ(v.height, 48);
  g.width = 32;
  g.height = 64;
  const GeneratedVideo portrait = pipeline.generate(g);
  EXPECT_EQ(portrait.width, 32);
  EXPECT_EQ(portrait.height, 64);
}

}  // namespace
}  // namespace ib
