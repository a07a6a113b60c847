// Checks before computing (Pipeline::validate and check_files): each broken input fails with a
// message naming the file (or option) at fault, and nothing runs first: no progress report, no
// intermediate tensor.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <fstream>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "inbetween/pipeline.h"
#include "io/pth_writer.h"
#include "io/safetensors.h"
#include "pipeline/generate_internal.h"
#include "synth/synth_model.h"

namespace ib {
namespace {

namespace fs = std::filesystem;

const std::string kShard1 = "diffusion_pytorch_model-00001-of-00002.safetensors";
const std::string kShard2 = "diffusion_pytorch_model-00002-of-00002.safetensors";
const std::string kT5 = "models_t5_umt5-xxl-enc-bf16.pth";
const std::string kClip = "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth";
const std::string kVae = "Wan2.1_VAE.pth";

// A fresh tiny model folder per case (the cases break it).
std::string tiny_model() {
  static int n = 0;
  SynthOptions o;
  o.out_dir = test::temp_dir() + "/model" + std::to_string(n++);
  write_synth_model(synth_preset("tiny"), o);
  return o.out_dir;
}

GenerateOptions options() {
  GenerateOptions g;
  g.first_image = test::repo_root() + "/assets/first.png";
  g.last_image = test::repo_root() + "/assets/last.png";
  g.frames = 5;
  g.width = 64;
  g.height = 32;
  g.steps = 1;
  g.seed = 1;
  return g;
}

void write_text(const std::string& path, const std::string& text) { std::ofstream(path, std::ios::binary) << text; }

// generate() must throw an Error containing every part, before any stage reported progress or
// produced an intermediate.
void expect_refused_before_compute(const std::string& model, const GenerateOptions& g,
                                   const std::vector<std::string>& parts) {
  SCOPED_TRACE(parts.front());
  std::string message;
  int reports = 0, intermediates = 0;
  try {
    Pipeline pipeline(PipelineOptions{model, ComputeDevice::CPU, 0});
    set_intermediate_callback(pipeline, [&](const std::string&, const Tensor&) { ++intermediates; });
    pipeline.generate(g, [&](const Progress&) { ++reports; });
  } catch (const Error& e) {
    message = e.what();
  }
  ASSERT_FALSE(message.empty()) << "no error";
  for (const std::string& p : parts)
    EXPECT_NE(message.find(p), std::string::npos) << "lacks '" << p << "': " << message;
  EXPECT_EQ(reports, 0) << message;
  EXPECT_EQ(intermediates, 0) << message;
}

TEST(Validate, TheIntactModelGenerates) {
  const std::string model = tiny_model();
  Pipeline pipeline(PipelineOptions{model, ComputeDevice::CPU, 0});
  int reports = 0;
  pipeline.generate(options(), [&](const Progress&) { ++reports; });
  EXPECT_GT(reports, 5);
}

TEST(Validate, MissingDitShard) {
  const std::string model = tiny_model();
  fs::remove(model + "/" + kShard2);
  expect_refused_before_compute(model, options(), {kShard2, "missing"});
}

TEST(Validate, BrokenDitShardHeader) {
  const std::string model = tiny_model();
  {
    std::fstream f(model + "/" + kShard1, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f << "{\"broken";  // the JSON header no longer parses
  }
  expect_refused_before_compute(model, options(), {kShard1});
}

TEST(Validate, ConfigJsonDisagreesWithTheDitShards) {
  const std::string model = tiny_model();
  std::ifstream in(model + "/config.json");
  std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const size_t pos = cfg.find("\"ffn_dim\": 256");
  ASSERT_NE(pos, std::string::npos) << cfg;
  cfg.replace(pos, 14, "\"ffn_dim\": 128");
  write_text(model + "/config.json", cfg);
  expect_refused_before_compute(
      model, options(), {"DiT weights", "diffusion_pytorch_model-0000", "ffn.0.weight", "config.json", "[128, 128]"});
}

TEST(Validate, DitTextWidthDisagreesWithT5) {
  // The DiT's text embedding must take what T5 puts out: inbetween.json's t5.dim.
  const std::string model = tiny_model();
  std::ifstream in(model + "/inbetween.json");
  std::string cfg((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Replace the T5 weights by a T5 of width 32 that agrees with a t5.dim of 32.
  T5Config t5 = synth_preset("tiny").t5;
  t5.dim = 32;
  save_pth(model + "/" + kT5, make_weights(t5_weight_shapes(t5), DType::BF16, 0));
  const size_t pos = cfg.find("\"dim\": 64");
  ASSERT_NE(pos, std::string::npos) << cfg;
  cfg.replace(pos, 9, "\"dim\": 32");
  write_text(model + "/inbetween.json", cfg);
  expect_refused_before_compute(model, options(), {"DiT weights", "text_embedding.0.weight", "T5 dim 32"});
}

TEST(Validate, T5FileWithOtherTensors) {
  const std::string model = tiny_model();
  fs::copy_file(model + "/" + kVae, model + "/" + kT5, fs::copy_options::overwrite_existing);
  expect_refused_before_compute(model, options(), {"T5 weights", kT5, "token_embedding.weight", "missing"});
}

TEST(Validate, TruncatedClipFile) {
  const std::string model = tiny_model();
  fs::resize_file(model + "/" + kClip, fs::file_size(model + "/" + kClip) / 2);
  expect_refused_before_compute(model, options(), {"CLIP weights", kClip, "cannot be read"});
}

TEST(Validate, VaeFileWithAnExtraTensor) {
  const std::string model = tiny_model();
  auto weights = make_weights(vae_weight_shapes(synth_preset("tiny").vae), DType::F32, 0);
  weights.emplace_back("decoder.extra.weight", Tensor::zeros({4}));
  save_pth(model + "/" + kVae, weights);
  expect_refused_before_compute(model, options(), {"VAE weights", kVae, "unexpected tensor 'decoder.extra.weight'"});
}

TEST(Validate, BrokenTokenizer) {
  const std::string model = tiny_model();
  write_text(model + "/google/umt5-xxl/spiece.model", "not a sentencepiece model");
  expect_refused_before_compute(model, options(), {"tokenizer", "spiece.model"});
}

TEST(Validate, ImagesThatDoNotDecode) {
  const std::string model = tiny_model();
  const std::string text = test::temp_dir() + "/notes.png";
  write_text(text, "these are not pixels");
  GenerateOptions g = options();
  g.last_image = text;
  expect_refused_before_compute(model, g, {"last image", text});
  g = options();
  g.first_image = test::temp_dir() + "/absent.png";
  expect_refused_before_compute(model, g, {"first image", "absent.png", "not found"});
}

TEST(Validate, OptionsNameTheOptionAndSuggest) {
  const std::string model = tiny_model();
  GenerateOptions g = options();
  g.frames = 80;
  expect_refused_before_compute(model, g, {"frames", "80", "77", "81"});
  g = options();
  g.width = 50;
  expect_refused_before_compute(model, g, {"size", "50x32", "multiples of 16"});
  g = options();
  g.shift = -1;
  expect_refused_before_compute(model, g, {"shift", "-1"});
}

// Each refused option comes as an OptionError naming its GenerateOptions member, so front ends map
// it to their own flag or field without reading the message; a broken model file does not. (solver
// and last_frame_fit are enums: their parse functions refuse unknown names, options_test.cc.)
TEST(Validate, RefusedOptionsCarryTheirField) {
  const std::string model = tiny_model();
  Pipeline pipeline(PipelineOptions{model, ComputeDevice::CPU, 0});
  const std::string noise = test::temp_dir() + "/noise.safetensors";
  save_safetensors(noise, {{"noise", Tensor::zeros({16, 3, 4, 8})}});
  const std::string not_image = test::temp_dir() + "/notes.png";
  write_text(not_image, "these are not pixels");
  const std::vector<std::pair<std::string, std::function<void(GenerateOptions&)>>> cases = {
      {"frames", [](GenerateOptions& g) { g.frames = 80; }},
      {"steps", [](GenerateOptions& g) { g.steps = 0; }},
      {"shift", [](GenerateOptions& g) { g.shift = -1; }},
      {"guidance", [](GenerateOptions& g) { g.guidance = -2; }},
      {"timesteps", [](GenerateOptions& g) {
         g.solver = Solver::Euler;
         g.timesteps = {500, 750};
       }},
      {"width", [](GenerateOptions& g) { g.width = 50; }},
      {"max_area", [](GenerateOptions& g) {
         g.width = g.height = 0;
         g.max_area = 10;
       }},
      {"first_image", [](GenerateOptions& g) { g.first_image = test::temp_dir() + "/absent.png"; }},
      {"last_image", [&](GenerateOptions& g) { g.last_image = not_image; }},
      {"init_noise", [&](GenerateOptions& g) { g.init_noise = noise; }},
      {"loras", [](GenerateOptions& g) { g.loras = {{test::temp_dir() + "/absent.safetensors", 1.0}}; }},
  };
  for (const auto& [field, change] : cases) {
    GenerateOptions g = options();
    change(g);
    try {
      pipeline.validate(g);
      ADD_FAILURE() << field << ": accepted";
    } catch (const OptionError& e) {
      EXPECT_EQ(e.field(), field) << e.what();
    } catch (const Error& e) {
      ADD_FAILURE() << field << ": a plain Error: " << e.what();
    }
  }
  // estimate() says the same for what it checks.
  GenerateOptions g = options();
  g.frames = 6;
  try {
    pipeline.estimate(g);
    ADD_FAILURE() << "estimate accepted frames 6";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.field(), "frames");
  }
  // A model file broken after the pipeline opened is no option's fault.
  fs::remove(model + "/" + kShard2);
  Pipeline fresh(PipelineOptions{model, ComputeDevice::CPU, 0});
  try {
    fresh.validate(options());
    ADD_FAILURE() << "a missing shard was accepted";
  } catch (const OptionError& e) {
    ADD_FAILURE() << "a model file error as an option error: " << e.field();
  } catch (const Error&) {
  }
}

// --attention fp8 needs the GPU engine (device cuda, precision bf16 or fp8): refused when the
// pipeline is made, naming the option, on the CPU and with the f32 precision alike. (Its names:
// tests/pipeline/options_test.cc.)
TEST(Validate, Fp8AttentionOnlyOnTheGpuEngine) {
  const std::string model = tiny_model();
  for (const ComputeDevice device : {ComputeDevice::CPU, ComputeDevice::CUDA}) {
    SCOPED_TRACE(device_option_name(device));
    PipelineOptions po{model, device, 0, Precision::F32};
    po.attention = AttentionPrecision::FP8;
    test::expect_error([&] { Pipeline p(po); }, {"--attention fp8 runs on the GPU engine only"});
  }
}

TEST(Validate, InitNoiseOfAnotherVideo) {
  const std::string model = tiny_model();
  const std::string noise = test::temp_dir() + "/noise.safetensors";
  save_safetensors(noise, {{"noise", Tensor::zeros({16, 3, 4, 8})}});  // 9 frames' latent, not 5
  GenerateOptions g = options();
  g.init_noise = noise;
  expect_refused_before_compute(model, g, {"noise file", noise, "[16, 2, 4, 8]", "[16, 3, 4, 8]"});
}

TEST(Validate, CheckFilesRunsOnceAndNamesTheFile) {
  const std::string model = tiny_model();
  Pipeline pipeline(PipelineOptions{model, ComputeDevice::CPU, 0});
  pipeline.check_files();
  // Checked once: a file broken afterwards is found by its loader, not by a second check.
  fs::remove(model + "/" + kShard2);
  EXPECT_NO_THROW(pipeline.check_files());
  Pipeline fresh(PipelineOptions{model, ComputeDevice::CPU, 0});
  EXPECT_THROW(fresh.check_files(), Error);
}

}  // namespace
}  // namespace ib
