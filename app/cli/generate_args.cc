#include "generate_args.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "app_commands.h"
#include "inbetween/error.h"
#include "io/image.h"
#include "inbetween/video.h"
#include "models/lora.h"
#include "progress_bar.h"

namespace ib::cli {

void check_options(const GenerateArgs& a) {
  const GenerateOptions& g = a.gen;
  if (g.frames < 1 || (g.frames - 1) % 4 != 0) {
    const int64_t below = g.frames < 1 ? 1 : g.frames - (g.frames - 1) % 4;
    if (g.frames <= 1) fail("--frames {}: the frame count must be 4n+1 (1, 5, 9, ..., 81)", g.frames);
    fail("--frames {}: the frame count must be 4n+1; use {} or {}", g.frames, below, below + 4);
  }
  IB_CHECK(g.frames <= 1025, "--frames {}: at most 1025", g.frames);
  IB_CHECK(g.steps >= 1 && g.steps <= 1000, "--steps {}: must be in 1..1000", g.steps);
  IB_CHECK(std::isfinite(g.shift) && g.shift > 0, "--shift {}: must be positive", g.shift);
  IB_CHECK(std::isfinite(g.guidance) && g.guidance >= 0, "--guidance {}: must be 0 or more", g.guidance);
  IB_CHECK(a.fps >= 1 && a.fps <= 240, "--fps {}: must be in 1..240", a.fps);
  if (g.width > 0 || g.height > 0)
    IB_CHECK(g.width >= 16 && g.height >= 16 && g.width % 16 == 0 && g.height % 16 == 0 && g.width <= 4096 &&
                 g.height <= 4096,
             "--size {}x{}: both sides must be multiples of 16 between 16 and 4096", g.width, g.height);
  else
    IB_CHECK(std::isfinite(g.max_area) && g.max_area >= 256 && g.max_area <= 4096.0 * 4096.0,
             "--max-area {}: must be between 256 and 16777216 pixels", g.max_area);
}

void check_image_file(const std::string& flag, const std::string& path) {
  IB_CHECK(std::filesystem::is_regular_file(path), "{} '{}': no such file", flag, path);
  try {
    read_image(path);
  } catch (const Error& e) {
    fail("{} '{}': not a readable PNG, JPEG or WebP image ({})", flag, path, e.what());
  }
}

void check_lora_files(const GenerateArgs& a) {
  for (const LoraFile& l : a.gen.loras)
    IB_CHECK(std::filesystem::is_regular_file(l.path), "--lora '{}': no such file", l.path);
}

void check_output(const std::string& out) {
  try {
    check_video_output(out);
  } catch (const Error& e) {
    fail("--output: {}", e.what());
  }
}

void print_estimate(const Pipeline& pipeline, const GenerateArgs& a, int runs) {
  const TimeEstimate e = pipeline.estimate(a.gen);
  const int steps = a.gen.timesteps.empty() ? a.gen.steps : static_cast<int>(a.gen.timesteps.size());
  const std::string times = runs > 1 ? fmt::format(" x {} segments", runs) : std::string();
  std::fprintf(stderr, "%lldx%lld, %lld frames%s, %d steps: about %s on %s (estimate)\n",
               static_cast<long long>(e.width), static_cast<long long>(e.height), static_cast<long long>(a.gen.frames),
               times.c_str(), steps, format_duration(e.seconds * runs).c_str(), device_option_name(a.pipeline.device));
  if (e.seconds * runs < 600) return;
  GenerateOptions quick = a.gen;
  quick.width = quick.height = 0;
  quick.max_area = 416 * 240;
  quick.frames = std::min<int64_t>(a.gen.frames, 17);
  quick.steps = std::min(steps, 10);
  quick.timesteps.clear();
  const TimeEstimate q = pipeline.estimate(quick);
  std::fprintf(stderr,
               "warning: this will take a long time on this device; for a quick look first, --max-area 99840 "
               "--frames %lld --steps %d takes about %s\n",
               static_cast<long long>(quick.frames), quick.steps, format_duration(q.seconds * runs).c_str());
}

namespace {
std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int sig) {
  g_stop = true;
  std::signal(sig, SIG_DFL);
}
}  // namespace

StopSignals::StopSignals() {
  g_stop = false;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
}

StopSignals::~StopSignals() {
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
}

bool StopSignals::requested() { return g_stop; }

void finish_generation_options(GenerateArgs& a) {
  if (!a.size.empty()) {
    const SizeOption sz = parse_size_option(a.size);
    a.gen.width = sz.width;
    a.gen.height = sz.height;
  }
  a.steps_given = a.steps_option != nullptr && a.steps_option->count() > 0;
  for (const std::string& text : a.loras) {
    const LoraSpec s = parse_lora_spec(text);
    a.gen.loras.push_back({s.path, s.scale});
  }
  if (a.gen.timesteps.empty()) return;
  const int n = static_cast<int>(a.gen.timesteps.size());
  IB_CHECK(!a.steps_given || a.gen.steps == n, "--steps {} but --timesteps lists {} timesteps", a.gen.steps, n);
  a.gen.steps = n;
}

std::unique_ptr<VideoFileWriter> open_output(const GenerateArgs& a) {
  try {
    return std::make_unique<VideoFileWriter>(a.output, a.fps);
  } catch (const Error& e) {
    fail("--output: {}", e.what());
  }
}

double write_output(const GenerateArgs& a, const GeneratedVideo& v, VideoFileWriter& writer) {
  const auto tw = std::chrono::steady_clock::now();
  try {
    writer.finish(v);
  } catch (const Error& e) {
    fail("--output: {}", e.what());
  }
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - tw).count();
}

void print_summary(const GenerateArgs& a, const GeneratedVideo& v, double write_s, double total_s) {
  if (a.quiet) return;
  std::fprintf(stderr, "wrote %s: %lld frames %lldx%lld at %d fps%s\n", a.output.c_str(),
               static_cast<long long>(v.frames), static_cast<long long>(v.width), static_cast<long long>(v.height),
               a.fps, v.seed >= 0 ? fmt::format(", seed {}", v.seed).c_str() : "");
  std::fprintf(stderr, "stage timings:\n");
  for (const StageTime& s : v.timings) std::fprintf(stderr, "  %-12s %s\n", s.stage.c_str(), format_duration(s.seconds).c_str());
  std::fprintf(stderr, "  %-12s %s\n  %-12s %s\n", "write", format_duration(write_s).c_str(), "total",
               format_duration(total_s).c_str());
}

void add_generation_options(CLI::App* cmd, GenerateArgs& a) {
  add_pipeline_options(cmd, a.pipeline);
  add_named_option(cmd, "--last-frame-fit", a.gen.last_frame_fit, parse_last_frame_fit, last_frame_fit_name,
                   "A last frame of another size: cover (scale and centre-crop) or upstream (reproduce upstream's "
                   "crop-and-pad)");
  cmd->add_option("--negative-prompt", a.gen.negative_prompt, "What to avoid (default: the model's own)");
  cmd->add_option("--frames", a.gen.frames, "Frame count, 4n+1")
      ->check(integer_check("--frames", "a whole number (a frame count 4n+1, e.g. 81)"))
      ->capture_default_str();
  auto* area = cmd->add_option("--max-area", a.gen.max_area, "Pixel budget; the size follows the first frame's aspect ratio")
                   ->capture_default_str();
  auto* size = cmd->add_option("--size", a.size, "Explicit size WIDTHxHEIGHT (multiples of 16)");
  area->excludes(size);
  a.steps_option = cmd->add_option("--steps", a.gen.steps, "Denoising steps")
                       ->check(integer_check("--steps", "a whole number of steps (e.g. 50)"))
                       ->capture_default_str();
  cmd->add_option("--shift", a.gen.shift, "Noise schedule shift")
      ->check(number_check("--shift", "a number (e.g. 16)"))
      ->capture_default_str();
  cmd->add_option("--guidance", a.gen.guidance,
                  "Classifier-free guidance scale (1: no unconditional pass, one DiT forward a step)")
      ->check(number_check("--guidance", "a number (e.g. 5)"))
      ->capture_default_str();
  add_named_option(cmd, "--solver", a.gen.solver, parse_solver, solver_name,
                   "unipc, dpm++ or euler (flow-matching Euler, for distilled models)");
  cmd->add_option("--timesteps", a.gen.timesteps,
                  "With --solver euler: explicit training timesteps, e.g. 1000,750,500,250 (shifted by --shift)")
      ->delimiter(',');
  cmd->add_option("--lora", a.loras,
                  "LoRA safetensors file merged into the DiT at load, FILE or FILE:SCALE (repeatable; kohya, "
                  "PEFT/diffusers, diff patches)");
  cmd->add_option("--seed", a.gen.seed, "Random seed (negative: random)")
      ->check(integer_check("--seed", "a whole number (0 to 9223372036854775807, or -1 for a random seed)"))
      ->capture_default_str();
  cmd->add_option("--fps", a.fps, "Frame rate of the MP4")
      ->check(integer_check("--fps", "a whole number of frames per second (e.g. 16)"))
      ->capture_default_str();
  cmd->add_option("-o,--output", a.output, "Output: .mp4, .safetensors (tensor `video`), or a folder for PNG frames")
      ->required();
  cmd->add_flag("-q,--quiet", a.quiet, "No progress or timings on stderr");
}

}  // namespace ib::cli
