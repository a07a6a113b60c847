// End to end: the whole FLF2V generation on the fixture model, through the library (every
// intermediate checked, so a failure names the stage) and through the CLI (the README contract).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/fixture.h"
#include "e2e/e2e_settings.h"
#include "inbetween/error.h"
#include "inbetween/pipeline.h"
#include "io/image.h"
#include "ops/resize.h"
#include "pipeline/conditioning.h"
#include "pipeline/generate_internal.h"

namespace ib {
namespace {

namespace fs = std::filesystem;

using test::e2e_settings;
using test::fixture_options;

struct CommandResult {
  int status = -1;
  std::string output;
};

CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

std::string cli() { return test::binary_dir() + "/inbetween"; }

std::string quote(const std::string& s) { return "'" + s + "'"; }

// The CLI command for `o`; `extra` options replace the ones of the same name.
std::string generate_command(const GenerateOptions& o, const std::string& out, const std::string& extra = "") {
  auto opt = [&](const char* name, const std::string& value) {
    return extra.find(name) == std::string::npos ? fmt::format(" {} {}", name, value) : std::string();
  };
  std::string cmd = fmt::format("{} generate --model {} --first {} --last {} --prompt {} --output {} --quiet", cli(),
                                quote(test::model_dir()), quote(o.first_image), quote(o.last_image), quote(o.prompt),
                                quote(out));
  cmd += opt("--frames", std::to_string(o.frames));
  if (extra.find("--size") == std::string::npos) cmd += opt("--max-area", fmt::format("{}", o.max_area));
  cmd += opt("--steps", std::to_string(o.steps)) + opt("--shift", fmt::format("{}", o.shift)) +
         opt("--guidance", fmt::format("{}", o.guidance)) + opt("--solver", o.solver);
  if (!o.negative_prompt.empty()) cmd += " --negative-prompt " + quote(o.negative_prompt);
  if (!o.init_noise.empty()) cmd += " --init-noise " + quote(o.init_noise);
  return cmd + " " + extra;
}

TEST(EndToEnd, LibraryMatchesEveryIntermediate) {
  const GenerateOptions o = fixture_options();
  Pipeline pipeline(PipelineOptions{test::model_dir(), "cpu", 0});
  std::map<std::string, Tensor> got;
  set_intermediate_callback(pipeline, [&](const std::string& name, const Tensor& t) { got[name] = t.clone(); });
  const GeneratedVideo v = pipeline.generate(o);
  const auto ref = test::open_fixture("e2e.safetensors");
  for (const char* name : {"context", "context_null", "cond_video", "y"}) {
    ASSERT_TRUE(got.count(name)) << name;
    EXPECT_TENSOR_CLOSE(got[name], ref->get(name), test::kComponentRel) << name;
  }
  const Tensor clip_ref = ref->get("clip_context");
  EXPECT_TENSOR_CLOSE(got["clip_context"].view(clip_ref.shape()), clip_ref, test::kComponentRel);
  for (int i = 1; i <= o.steps; ++i) {
    const std::string name = fmt::format("latent_{}", i);
    ASSERT_TRUE(got.count(name)) << name;
    // The latents feed back through the DiT: allow the end-to-end bound.
    EXPECT_TENSOR_CLOSE_ABS(got[name], ref->get(name), 1e-3) << name;
  }
  const Tensor video_ref = ref->get("video");
  Tensor video = Tensor::from_vector(v.data, {3, v.frames, v.height, v.width});
  EXPECT_TENSOR_CLOSE_ABS(video, video_ref, 1e-3);
  const auto j = e2e_settings();
  EXPECT_EQ(v.height, j["height"].get<int64_t>());
  EXPECT_EQ(v.width, j["width"].get<int64_t>());
  EXPECT_FALSE(v.timings.empty());
}

TEST(EndToEnd, CliWithInitNoiseMatchesReferenceVideo) {
  const GenerateOptions o = fixture_options();
  const std::string out = test::temp_dir() + "/video.safetensors";
  const CommandResult r = run_command(generate_command(o, out));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto got = SafetensorsFile::open(out);
  EXPECT_TENSOR_CLOSE_ABS(got->get("video"), test::open_fixture("e2e.safetensors")->get("video"), 1e-3);
}

TEST(EndToEnd, CliWritesPlayableMp4) {
  GenerateOptions o = fixture_options();
  o.steps = 2;
  o.init_noise.clear();
  const std::string dir = test::temp_dir();
  const std::string out = dir + "/demo.mp4";
  CommandResult r = run_command(generate_command(o, out, "--seed 7"));
  ASSERT_EQ(r.status, 0) << r.output;
  r = run_command("ffprobe -v error -select_streams v:0 -count_frames -show_entries "
                  "stream=codec_name,pix_fmt,width,height,nb_read_frames -of json " + quote(out));
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output)["streams"][0];
  EXPECT_EQ(j["codec_name"], "h264");
  EXPECT_EQ(j["pix_fmt"], "yuv420p");
  const auto settings = e2e_settings();
  EXPECT_EQ(j["width"], settings["width"].get<int64_t>());
  EXPECT_EQ(j["height"], settings["height"].get<int64_t>());
  EXPECT_EQ(j["nb_read_frames"], std::to_string(o.frames));
  for (const auto& e : fs::directory_iterator(dir))  // nothing half-written left beside it
    EXPECT_EQ(e.path().filename().string().find(".partial"), std::string::npos) << e.path();
}

TEST(EndToEnd, OtherFrameCountsAndMismatchedLastFrame) {
  Pipeline pipeline(PipelineOptions{test::model_dir(), "cpu", 0});
  const int64_t height = e2e_settings()["height"].get<int64_t>(), width = e2e_settings()["width"].get<int64_t>();
  const std::string dir = test::temp_dir();
  for (int64_t frames : {5, 13, 17}) {
    GenerateOptions o = fixture_options();
    o.init_noise.clear();
    o.seed = 3;
    o.steps = 1;
    o.frames = frames;
    const GeneratedVideo v = pipeline.generate(o);
    EXPECT_EQ(v.frames, frames);
    EXPECT_EQ(v.height, height);
    EXPECT_EQ(v.width, width);
    for (float x : v.data) ASSERT_TRUE(x >= -1.0f && x <= 1.0f);
  }
  // A last frame of another size and aspect ratio (a 5/6 x 5/8 crop of last.png) is fitted to the
  // first one's size instead of failing; --last-frame-fit upstream reproduces upstream's crop and
  // grey padding instead. The last frame of the conditioning video shows which fit was used.
  const Tensor src = load_image(test::fixture_path("last.png"));  // [3, H, W]
  const int64_t H = src.size(1), W = src.size(2), h = H * 5 / 6, w = W * 5 / 8, y0 = H / 18, x0 = W * 5 / 32;
  std::vector<uint8_t> rgb(static_cast<size_t>(h * w * 3));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int64_t c = 0; c < 3; ++c) {
        const float v = src.item_f32((c * H + y + y0) * W + x + x0);
        rgb[static_cast<size_t>((y * w + x) * 3 + c)] = static_cast<uint8_t>(std::lround((v + 1.0f) * 127.5f));
      }
  const std::string small = dir + "/last_small.png";
  save_png(small, rgb.data(), w, h);
  const Tensor small_img = load_image(small);
  const Tensor first = load_image(test::fixture_path("first.png"));
  GenerateOptions o = fixture_options();
  o.init_noise.clear();
  o.steps = 1;
  o.seed = 5;
  o.last_image = small;
  std::map<std::string, Tensor> got;
  set_intermediate_callback(pipeline, [&](const std::string& name, const Tensor& t) {
    if (name == "cond_video") got[name] = t.clone();
  });
  auto last_cond_frame = [&] {
    const Tensor& c = got.at("cond_video");  // [3, F, height, width]
    const int64_t F = c.size(1), plane = height * width;
    Tensor f = Tensor::empty({3, height, width}, DType::F32);
    for (int64_t ch = 0; ch < 3; ++ch)
      std::copy_n(c.data<float>() + (ch * F + F - 1) * plane, plane, f.data<float>() + ch * plane);
    return f;
  };
  const GeneratedVideo v = pipeline.generate(o);
  EXPECT_EQ(v.frames, o.frames);
  EXPECT_EQ(v.height, height);
  EXPECT_EQ(v.width, width);
  const Tensor covered = fit_last_frame(small_img, first.size(1), first.size(2));
  EXPECT_EQ(covered.shape(), first.shape());
  EXPECT_TENSOR_CLOSE_ABS(last_cond_frame(), ops::resize_bicubic(covered, height, width), 0.0);
  o.last_frame_fit = "upstream";
  const GeneratedVideo u = pipeline.generate(o);
  EXPECT_EQ(u.frames, o.frames);
  EXPECT_EQ(u.height, height);
  EXPECT_EQ(u.width, width);
  const Tensor upstream = fit_last_frame_upstream(small_img, first.size(1), first.size(2));
  EXPECT_NE(upstream.shape(), first.shape());  // the swapped sides
  EXPECT_TENSOR_CLOSE_ABS(last_cond_frame(), ops::resize_bicubic(upstream, height, width), 0.0);
  EXPECT_NE(u.data, v.data);
}

TEST(EndToEnd, BadOptionsFailClearly) {
  const GenerateOptions o = fixture_options();
  const std::string out = test::temp_dir() + "/x.mp4";
  struct Case { std::string extra; std::string expect; };
  const Case cases[] = {{"--frames 8", "4n+1"},           {"--steps 0", "steps"},
                        {"--guidance -1", "guidance"},    {"--solver euler", "solver"},
                        {"--size 100x48", "multiples of 16"}, {"--last-frame-fit stretch", "last-frame-fit"}};
  for (const Case& c : cases) {
    const CommandResult r = run_command(generate_command(o, out, c.extra));
    EXPECT_NE(r.status, 0) << c.extra;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.extra << ": " << r.output;
  }
  GenerateOptions missing = o;
  missing.last_image = "/nonexistent/last.png";
  CommandResult r = run_command(generate_command(missing, out));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("/nonexistent/last.png"), std::string::npos) << r.output;
  GenerateOptions no_last = o;
  no_last.last_image.clear();
  r = run_command(generate_command(no_last, out));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("a first and a last image"), std::string::npos) << r.output;
  r = run_command(generate_command(o, test::temp_dir() + "/video.gif"));
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find(".mp4"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
}

}  // namespace
}  // namespace ib
