// End to end: the whole FLF2V generation on the fixture model, through the library (every
// intermediate checked, so a failure names the stage) and through the CLI (the README contract).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "common/expect_error.h"
#include "common/command.h"
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

using test::CommandResult;
using test::run_command;

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
         opt("--guidance", fmt::format("{}", o.guidance)) + opt("--solver", solver_name(o.solver));
  if (!o.negative_prompt.empty()) cmd += " --negative-prompt " + quote(o.negative_prompt);
  if (!o.init_noise.empty()) cmd += " --init-noise " + quote(o.init_noise);
  return cmd + " " + extra;
}

TEST(EndToEnd, LibraryMatchesEveryIntermediate) {
  const GenerateOptions o = fixture_options();
  Pipeline pipeline(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
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
  Pipeline pipeline(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
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
  // A last frame of another size and aspect ratio is fitted to the first one's size (cover: scaled
  // to cover it, centre-cropped) instead of failing. The image holds its own coordinates (red = x,
  // green = y), so the last conditioning frame shows which source point each pixel came from; the
  // scale and crop offsets are worked out here from spec 4.3, not with fit_last_frame.
  const Tensor first = load_image(test::fixture_path("first.png"));
  const int64_t H0 = first.size(1), W0 = first.size(2);
  const int64_t h1 = 40;
  int64_t w1 = 56;
  if (h1 * W0 == w1 * H0) w1 += 8;  // another aspect ratio than the first image's
  std::vector<uint8_t> rgb(static_cast<size_t>(h1 * w1 * 3));
  for (int64_t y = 0; y < h1; ++y)
    for (int64_t x = 0; x < w1; ++x) {
      uint8_t* px = &rgb[static_cast<size_t>((y * w1 + x) * 3)];
      px[0] = static_cast<uint8_t>(std::lround(static_cast<double>(x) * 255.0 / static_cast<double>(w1 - 1)));
      px[1] = static_cast<uint8_t>(std::lround(static_cast<double>(y) * 255.0 / static_cast<double>(h1 - 1)));
      px[2] = 128;
    }
  const std::string small = dir + "/last_coordinates.png";
  save_png(small, rgb.data(), w1, h1);
  const Tensor small_img = load_image(small);
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
  {
    // Cover: r = max(W0/w1, H0/h1); scaled to round(w1 r) x round(h1 r) (Python's round, half to
    // even); centre crop to W0 x H0 at round((scaled - target) / 2). Then the pipeline's resize of
    // W0 x H0 to width x height. Both are bicubic with align_corners=False: output pixel d of a
    // resize from I to O samples the input at (d + 0.5) I / O - 0.5.
    const double r = std::max(static_cast<double>(W0) / static_cast<double>(w1),
                              static_cast<double>(H0) / static_cast<double>(h1));
    const double sw = std::max(static_cast<double>(W0), std::nearbyint(static_cast<double>(w1) * r));
    const double sh = std::max(static_cast<double>(H0), std::nearbyint(static_cast<double>(h1) * r));
    const double left = std::nearbyint((sw - static_cast<double>(W0)) / 2.0);
    const double top = std::nearbyint((sh - static_cast<double>(H0)) / 2.0);
    std::printf("[settings] last %lldx%lld -> first %lldx%lld: scaled to %.0fx%.0f, crop left %.0f top %.0f, "
                "video %lldx%lld\n", static_cast<long long>(w1), static_cast<long long>(h1),
                static_cast<long long>(W0), static_cast<long long>(H0), sw, sh, left, top,
                static_cast<long long>(width), static_cast<long long>(height));
    // Source coordinate of a fitted pixel k, and of an output pixel d (through the second resize).
    auto D = [](int64_t n) { return static_cast<double>(n); };
    auto src_x = [&](double k) { return (k + left + 0.5) * D(w1) / sw - 0.5; };
    auto src_y = [&](double k) { return (k + top + 0.5) * D(h1) / sh - 0.5; };
    auto fit_x = [&](int64_t d) { return (D(d) + 0.5) * D(W0) / D(width) - 0.5; };
    auto fit_y = [&](int64_t d) { return (D(d) + 0.5) * D(H0) / D(height) - 0.5; };
    // Away from the borders, where no bicubic tap of either resize is clamped.
    auto inside = [&](double u, int64_t fit_len, auto src, int64_t src_len) {
      const double k0 = std::floor(u) - 1, k1 = std::floor(u) + 2;
      return k0 >= 0 && k1 <= D(fit_len - 1) && src(k0) >= 1 && src(k1) <= D(src_len - 3);
    };
    const Tensor last = last_cond_frame();
    const float* p = last.data<float>();
    const int64_t plane = height * width;
    // 8-bit coordinates: half a level is (side - 1) / 510 px; the A = -0.75 cubic adds up to ~0.05 px
    // per resize on a ramp.
    const double tol = 0.15 + static_cast<double>(std::max(w1, h1) - 1) / 510.0;
    int64_t checked = 0, wrong = 0;
    double max_err = 0;
    std::string first_wrong;
    for (int64_t Y = 0; Y < height; ++Y)
      for (int64_t X = 0; X < width; ++X) {
        if (!inside(fit_x(X), W0, src_x, w1) || !inside(fit_y(Y), H0, src_y, h1)) continue;
        const double want_x = src_x(fit_x(X)), want_y = src_y(fit_y(Y));
        const double got_x = (p[Y * width + X] + 1.0) * 127.5 * D(w1 - 1) / 255.0;
        const double got_y = (p[plane + Y * width + X] + 1.0) * 127.5 * D(h1 - 1) / 255.0;
        const double err = std::max(std::fabs(got_x - want_x), std::fabs(got_y - want_y));
        max_err = std::max(max_err, err);
        if (err > tol && wrong++ == 0)
          first_wrong = fmt::format("pixel ({}, {}) shows source ({:.2f}, {:.2f}), expected ({:.2f}, {:.2f})", Y, X,
                                    got_y, got_x, want_y, want_x);
        ++checked;
      }
    std::printf("[measured] cover fit: %lld pixels checked, max coordinate error %.3f px (bound %.3f)\n",
                static_cast<long long>(checked), max_err, tol);
    EXPECT_GT(checked, plane / 4) << "too few pixels away from the borders";
    EXPECT_EQ(wrong, 0) << wrong << " of " << checked << " pixels show another source point; first: " << first_wrong;
  }
  // --last-frame-fit upstream reproduces upstream's crop with swapped sides and grey padding instead.
  o.last_frame_fit = LastFrameFit::Upstream;
  const GeneratedVideo u = pipeline.generate(o);
  EXPECT_EQ(u.frames, o.frames);
  EXPECT_EQ(u.height, height);
  EXPECT_EQ(u.width, width);
  const Tensor upstream = fit_last_frame_upstream(small_img, H0, W0);
  EXPECT_TENSOR_CLOSE_ABS(last_cond_frame(), ops::resize_bicubic(upstream, height, width), 0.0);
  EXPECT_NE(u.data, v.data);
}

TEST(EndToEnd, BadOptionsFailClearly) {
  const GenerateOptions o = fixture_options();
  const std::string out = test::temp_dir() + "/x.mp4";
  struct Case { std::string extra; std::string expect; };
  const Case cases[] = {{"--frames 8", "4n+1"},
                        {"--steps 0", "steps"},
                        {"--guidance -1", "guidance"},
                        {"--solver no-such-solver", "solver"},
                        {"--size 100x48", "multiples of 16"},
                        {"--last-frame-fit stretch", "last-frame-fit"}};
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

// --init-noise: a missing file, a file without `noise`, and a noise tensor of another shape than
// the latent of these settings (e2e.json's latent_shape) fail naming the file and the shapes.
TEST(EndToEnd, BadInitNoiseFailsClearly) {
  const GenerateOptions o = fixture_options();
  const std::string dir = test::temp_dir(), out = dir + "/x.safetensors";
  const Shape latent = e2e_settings()["latent_shape"].get<Shape>();
  auto expect_failure = [&](const std::string& noise, const std::vector<std::string>& parts) {
    GenerateOptions bad = o;
    bad.init_noise = noise;
    const CommandResult r = run_command(generate_command(bad, out));
    EXPECT_NE(r.status, 0) << noise;
    for (const auto& part : parts)
      EXPECT_NE(r.output.find(part), std::string::npos) << "lacks " << part << ": " << r.output;
    EXPECT_FALSE(fs::exists(out));
  };
  expect_failure(dir + "/absent.safetensors", {"noise file not found", dir + "/absent.safetensors"});
  const std::string no_noise = dir + "/no_noise.safetensors";
  save_safetensors(no_noise, {{"latent", Tensor::zeros(latent)}});
  expect_failure(no_noise, {"tensor 'noise' is missing", no_noise});
  Shape other = latent;
  other[1] += 1;  // one latent frame more
  const std::string wrong = dir + "/wrong_shape.safetensors";
  save_safetensors(wrong, {{"noise", Tensor::zeros(other)}});
  expect_failure(wrong, {"tensor 'noise'", wrong, "expected shape " + shape_str(latent), "found " + shape_str(other)});
  const std::string f16 = dir + "/f16.safetensors";
  save_safetensors(f16, {{"noise", Tensor::zeros(latent, DType::F16)}});
  GenerateOptions half = o;
  half.init_noise = f16;
  const CommandResult r = run_command(generate_command(half, out));
  EXPECT_EQ(r.status, 0) << "an f16 noise tensor of the right shape is converted: " << r.output;
}

// --device, --precision and --t5-device take only their listed values (parse_device, ... name the
// option and the accepted names); the library refuses fp8 on the CPU.
TEST(EndToEnd, BadDeviceAndPrecisionFailClearly) {
  const GenerateOptions o = fixture_options();
  const std::string out = test::temp_dir() + "/x.safetensors";  // a format every build writes
  struct Case { std::string extra; std::vector<std::string> expect; };
  const Case cases[] = {{"--device gpu", {"--device", "gpu", "cpu", "cuda"}},
                        {"--device CPU", {"--device", "CPU"}},
                        {"--precision fp16", {"--precision", "fp16", "bf16", "f32"}},
                        {"--precision fp8", {"--precision fp8", "--device cuda"}},
                        {"--vram-budget 8", {"--vram-budget", "--device cuda"}},
                        {"--vram-budget -1", {"--vram-budget", "GiB"}},
                        {"--t5-device gpu", {"--t5-device", "unknown t5_device 'gpu'", "auto, cpu or cuda"}},
                        {"--precision", {"--precision"}}};
  for (const Case& c : cases) {
    const CommandResult r = run_command(generate_command(o, out, c.extra));
    EXPECT_NE(r.status, 0) << c.extra;
    for (const auto& part : c.expect) EXPECT_NE(r.output.find(part), std::string::npos) << c.extra << ": " << r.output;
    EXPECT_FALSE(fs::exists(out));
  }
  PipelineOptions po{test::model_dir(), ComputeDevice::CPU, 0};
  po.precision = Precision::FP8;  // fp8 is the GPU engine's; the CPU path is the f32 reference
  test::expect_error([&] { Pipeline p(po); }, {"--precision fp8", "--device cuda"});
}

}  // namespace
}  // namespace ib
