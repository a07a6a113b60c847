// The distilled fast path end to end on the fixture model: a generation with a synthetic LoRA
// equals one on a model folder whose DiT was merged beforehand by the test's own loops and written
// with save_safetensors; guidance 1 runs one DiT forward a step (counted), encodes no negative
// prompt and matches v_u + 1·(v_c − v_u) for every solver; the pipeline reloads the DiT when the
// LoRAs change; the CLI's distilled command line gives the library's video; bad LoRAs are refused
// by validate. Sizes, prompt and noise come from the fixture's e2e.json / e2e.safetensors.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <set>

#include <sys/wait.h>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "common/lora_files.h"
#include "e2e/e2e_settings.h"
#include "inbetween/pipeline.h"
#include "io/model_config.h"
#include "pipeline/generate_internal.h"

namespace ib {
namespace {

namespace fs = std::filesystem;
using test::LoraFormat;

// A LoRA over every linear layer of the blocks (rank 4, alpha 8) plus modulation and bias
// patches, dyadic values; `merged` receives the test's merge of each patched tensor at `scale`.
std::string synthetic_lora(const TensorStore& dit, int64_t layers, double scale, std::map<std::string, Tensor>& merged) {
  test::NamedTensors file;
  uint32_t seed = 1;
  for (int64_t i = 0; i < layers; ++i)
    for (const char* n : {"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                          "cross_attn.v", "cross_attn.o", "cross_attn.k_img", "cross_attn.v_img", "ffn.0", "ffn.2"}) {
      const std::string m = fmt::format("blocks.{}.{}", i, n);
      if (!dit.contains(m + ".weight")) continue;
      const test::LowRankPair p = test::add_low_rank(file, dit, LoraFormat::Kohya, m, 4, 8.0f, seed++);
      merged[m + ".weight"] =
          test::reference_low_rank(dit.get(m + ".weight"), p.up, p.down, static_cast<float>(scale * 8.0 / 4.0));
    }
  for (const auto& [key, target] : {std::pair<std::string, std::string>{"diffusion_model.blocks.0.modulation.diff",
                                                                        "blocks.0.modulation"},
                                    {"diffusion_model.blocks.1.ffn.0.diff_b", "blocks.1.ffn.0.bias"},
                                    {"diffusion_model.head.head.diff_b", "head.head.bias"}}) {
    if (!dit.contains(target)) continue;
    // Small values: the point is that they are applied, not that they change much.
    Tensor d = test::dyadic_tensor(dit.info(target).shape, seed++);
    for (int64_t k = 0; k < d.numel(); ++k) d.data<float>()[k] /= 16.0f;
    file.emplace_back(key, d);
    merged[target] = test::reference_patch(dit.get(target), d, static_cast<float>(scale));
  }
  const std::string path = test::temp_dir() + "/distill.safetensors";
  save_safetensors(path, file);
  return path;
}

// A copy of the fixture's model folder (links) whose DiT is one safetensors file holding `merged`
// in place of those tensors.
std::string premerged_folder(const TensorStore& dit, const std::map<std::string, Tensor>& merged) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& name : dit.names()) {
    const auto it = merged.find(name);
    tensors.emplace_back(name, it != merged.end() ? it->second : dit.get(name));
  }
  return test::model_with_dit("premerged", tensors);
}

struct Fixture {
  ModelFolder folder = ModelFolder::open(test::model_dir());
  std::shared_ptr<TensorStore> dit = open_tensor_store(folder.dit_path);
};

GenerateOptions distilled_options() {
  GenerateOptions o = test::fixture_options();
  o.solver = Solver::Euler;
  o.timesteps = {1000, 750, 500, 250};
  o.steps = 4;
  o.shift = 5.0;
  o.guidance = 1.0;
  return o;
}

Tensor video_of(const GeneratedVideo& v) { return Tensor::from_vector(v.data, {3, v.frames, v.height, v.width}); }

int64_t bit_differences(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return -1;
  int64_t n = 0;
  for (size_t i = 0; i < a.size(); ++i) n += a[i] != b[i];
  return n;
}

TEST(Distill, LoraGenerationEqualsPreMergedFolder) {
  const Fixture fx;
  std::map<std::string, Tensor> merged;
  const double scale = 0.75;
  const std::string lora = synthetic_lora(*fx.dit, fx.folder.dit.num_layers, scale, merged);
  ASSERT_GE(merged.size(), 12u * static_cast<size_t>(fx.folder.dit.num_layers));
  const std::string premerged = premerged_folder(*fx.dit, merged);

  GenerateOptions with_fixture_schedule = test::fixture_options();  // unipc with guidance, as e2e.json
  for (GenerateOptions o : {distilled_options(), with_fixture_schedule}) {
    SCOPED_TRACE(solver_name(o.solver));
    Pipeline base(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
    Pipeline pre(PipelineOptions{premerged, ComputeDevice::CPU, 0});
    const GeneratedVideo plain = base.generate(o);
    o.loras = {{lora, scale}};
    const GeneratedVideo with_lora = base.generate(o);
    o.loras.clear();
    const GeneratedVideo from_premerged = pre.generate(o);
    EXPECT_EQ(bit_differences(with_lora.data, from_premerged.data), 0);
    // The LoRA does change the video (the comparison above is not between two unpatched models).
    const test::Closeness c = test::compare(video_of(with_lora), video_of(plain), 0);
    std::printf("[measured] %s: LoRA vs no LoRA max |diff| %.3g\n", solver_name(o.solver), c.max_abs_err);
    EXPECT_GT(c.max_abs_err, 1e-3);
    // ... and leaves most of it unclamped, so the equality above compares real values.
    size_t inside = 0;
    for (float x : with_lora.data) {
      ASSERT_TRUE(std::isfinite(x));
      inside += std::fabs(x) < 0.999f;
    }
    std::printf("[measured] %zu of %zu values inside (-1, 1)\n", inside, with_lora.data.size());
    EXPECT_GT(inside, with_lora.data.size() / 2);
  }
}

TEST(Distill, ChangingTheLorasReloadsTheDiT) {
  const Fixture fx;
  std::map<std::string, Tensor> merged;
  const std::string lora = synthetic_lora(*fx.dit, fx.folder.dit.num_layers, 1.0, merged);
  GenerateOptions o = distilled_options();
  Pipeline fresh(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
  const GeneratedVideo plain = fresh.generate(o);

  Pipeline p(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
  o.loras = {{lora, 1.0}};
  const GeneratedVideo a = p.generate(o);
  o.loras = {{lora, 0.5}};
  const GeneratedVideo half = p.generate(o);
  o.loras.clear();
  const GeneratedVideo none = p.generate(o);
  o.loras = {{lora, 1.0}};
  const GeneratedVideo again = p.generate(o);
  EXPECT_EQ(bit_differences(none.data, plain.data), 0);
  EXPECT_EQ(bit_differences(again.data, a.data), 0);
  EXPECT_NE(bit_differences(half.data, a.data), 0);
}

TEST(Distill, GuidanceOneRunsOneForwardPerStepForEverySolver) {
  for (const Solver solver : {Solver::UniPC, Solver::DpmPP, Solver::Euler}) {
    SCOPED_TRACE(solver_name(solver));
    GenerateOptions o = test::fixture_options();
    o.solver = solver;
    o.steps = 4;
    o.guidance = 1.0;
    Pipeline p(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
    std::map<std::string, Tensor> skip, full;
    set_intermediate_callback(p, [&](const std::string& n, const Tensor& t) { skip[n] = t.clone(); });
    p.generate(o);
    EXPECT_EQ(dit_forwards(p), o.steps);
    EXPECT_EQ(skip.count("context_null"), 0u) << "the negative prompt was encoded";

    // The same at guidance 1 through the full formula v_u + 1·(v_c − v_u).
    set_always_unconditional(p, true);
    set_intermediate_callback(p, [&](const std::string& n, const Tensor& t) { full[n] = t.clone(); });
    p.generate(o);
    EXPECT_EQ(dit_forwards(p), 2 * o.steps);
    EXPECT_EQ(full.count("context_null"), 1u);
    for (int i = 1; i <= o.steps; ++i) {
      const std::string n = fmt::format("latent_{}", i);
      ASSERT_TRUE(skip.count(n) && full.count(n)) << n;
      // Equal up to the rounding of v_u + (v_c − v_u) against v_c, carried through the steps.
      EXPECT_TENSOR_CLOSE(skip[n], full[n], 1e-5) << n;
    }
    EXPECT_TENSOR_CLOSE(skip["video"], full["video"], 1e-5);

    // Any other guidance keeps both passes.
    set_always_unconditional(p, false);
    o.guidance = 3.0;
    p.generate(o);
    EXPECT_EQ(dit_forwards(p), 2 * o.steps);
  }
}

TEST(Distill, CliDistilledCommandLineMatchesTheLibrary) {
  const Fixture fx;
  std::map<std::string, Tensor> merged;
  const std::string lora = synthetic_lora(*fx.dit, fx.folder.dit.num_layers, 0.75, merged);
  GenerateOptions o = distilled_options();
  o.loras = {{lora, 0.75}};
  Pipeline p(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
  const GeneratedVideo lib = p.generate(o);

  const std::string out = test::temp_dir() + "/distilled.safetensors";
  const std::string cmd = fmt::format(
      "'{}/inbetween' generate --model '{}' --first '{}' --last '{}' --prompt '{}' --frames {} --max-area {} "
      "--init-noise '{}' --lora '{}:0.75' --steps 4 --guidance 1 --solver euler --timesteps 1000,750,500,250 "
      "--shift 5 --output '{}' --quiet 2>&1",
      test::binary_dir(), test::model_dir(), o.first_image, o.last_image, o.prompt, o.frames, o.max_area, o.init_noise,
      lora, out);
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) output.append(buf, n);
  ASSERT_EQ(::pclose(pipe), 0) << output;
  EXPECT_TENSOR_CLOSE_ABS(SafetensorsFile::open(out)->get("video"), video_of(lib), 1e-5);

  // The CLI's refusals: a bad scale, --steps against --timesteps, --timesteps with unipc.
  auto run = [&](const std::string& extra) {
    const std::string c = fmt::format("'{}/inbetween' generate --model '{}' --first '{}' --last '{}' --output '{}' {} 2>&1",
                                      test::binary_dir(), test::model_dir(), o.first_image, o.last_image, out, extra);
    FILE* f = ::popen(c.c_str(), "r");
    std::string s;
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) s.append(buf, n);
    const int st = ::pclose(f);
    return std::pair{WIFEXITED(st) ? WEXITSTATUS(st) : -1, s};
  };
  auto [st1, m1] = run("--lora '" + lora + ":strong'");
  EXPECT_EQ(st1, 1);
  EXPECT_NE(m1.find("the scale 'strong' is not a number"), std::string::npos) << m1;
  auto [st2, m2] = run("--solver euler --steps 8 --timesteps 1000,750,500,250");
  EXPECT_EQ(st2, 1);
  EXPECT_NE(m2.find("--steps 8 but --timesteps lists 4"), std::string::npos) << m2;
  auto [st3, m3] = run("--timesteps 1000,500");
  EXPECT_EQ(st3, 1);
  EXPECT_NE(m3.find("--timesteps works with the euler solver only"), std::string::npos) << m3;
}

TEST(Distill, ValidateRefusesBadLoras) {
  const Fixture fx;
  Pipeline p(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
  GenerateOptions o = distilled_options();
  // A LoRA for a wider model: refused before any work, naming the tensor and both shapes.
  const std::string q = "blocks.0.cross_attn.q";
  const Shape qs = fx.dit->info(q + ".weight").shape;
  test::NamedTensors t;
  t.emplace_back("diffusion_model." + q + ".lora_down.weight", test::dyadic_tensor({4, 2 * qs[1]}, 1));
  t.emplace_back("diffusion_model." + q + ".lora_up.weight", test::dyadic_tensor({2 * qs[0], 4}, 2));
  const std::string wide = test::temp_dir() + "/wide.safetensors";
  save_safetensors(wide, t);
  o.loras = {{wide, 1.0}};
  test::expect_error([&] { p.validate(o); }, {"does not fit this model", q + ".weight", shape_str(qs)});
  o.loras = {{test::temp_dir() + "/missing.safetensors", 1.0}};
  test::expect_error([&] { p.validate(o); }, {"LoRA file not found"});
  o.loras.clear();
  o.solver = Solver::DpmPP;
  test::expect_error([&] { p.validate(o); }, {"--timesteps works with the euler solver only"});
  o.solver = Solver::Euler;
  o.timesteps = {1000, 250, 500};
  test::expect_error([&] { p.validate(o); }, {"strictly decreasing"});
}

}  // namespace
}  // namespace ib
