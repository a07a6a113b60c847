// synth-model: the official preset has the release's tensor counts, and a written tiny model
// loads through every component loader and generates.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/fixture.h"
#include "inbetween/pipeline.h"
#include "io/model_config.h"
#include "pipeline/synth_model.h"

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

  Pipeline pipeline(PipelineOptions{dir, "cpu", 0});
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

}  // namespace
}  // namespace ib
