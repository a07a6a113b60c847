// `inbetween generate`: two keyframes and a prompt in, a video file out. Everything that can be
// checked before computing is checked first, with the option's name in the message; SIGINT and
// SIGTERM stop the generation at the next step or VAE chunk (a second signal ends it at once).
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "app_commands.h"
#include "inbetween/error.h"
#include "inbetween/pipeline.h"
#include "inbetween/video.h"
#include "io/image.h"
#include "models/lora.h"
#include "progress_bar.h"

namespace ib::cli {

namespace {

struct GenerateArgs {
  PipelineOptions pipeline;
  GenerateOptions gen;
  std::string size;
  std::vector<std::string> loras;  // FILE[:SCALE]
  bool steps_given = false;
  std::string output;
  int fps = 16;
  bool quiet = false;
};

// The options' ranges, named as on the command line (Pipeline::validate checks them again).
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

// The files the options name: they exist and the images decode.
void check_input_files(const GenerateArgs& a) {
  namespace fs = std::filesystem;
  for (const auto& [flag, path] : {std::pair{"--first", &a.gen.first_image}, std::pair{"--last", &a.gen.last_image}}) {
    if (path->empty()) continue;
    IB_CHECK(fs::is_regular_file(*path), "{} '{}': no such file", flag, *path);
    try {
      read_image(*path);
    } catch (const Error& e) {
      fail("{} '{}': not a readable PNG, JPEG or WebP image ({})", flag, *path, e.what());
    }
  }
  if (!a.gen.init_noise.empty())
    IB_CHECK(fs::is_regular_file(a.gen.init_noise), "--init-noise: noise file not found: '{}'", a.gen.init_noise);
  for (const LoraFile& l : a.gen.loras) IB_CHECK(fs::is_regular_file(l.path), "--lora '{}': no such file", l.path);
}

// Checks the output path before any heavy work, so a typo or a read-only folder does not cost a
// whole generation.
void check_output(const std::string& out) {
  try {
    check_video_output(out);
  } catch (const Error& e) {
    fail("--output: {}", e.what());
  }
}

// How long this will take, and a warning with a quicker setting when it is long (past 10 minutes).
void print_estimate(const Pipeline& pipeline, const GenerateArgs& a) {
  const TimeEstimate e = pipeline.estimate(a.gen);
  const int steps = a.gen.timesteps.empty() ? a.gen.steps : static_cast<int>(a.gen.timesteps.size());
  std::fprintf(stderr, "%lldx%lld, %lld frames, %d steps: about %s on %s (estimate)\n",
               static_cast<long long>(e.width), static_cast<long long>(e.height), static_cast<long long>(a.gen.frames),
               steps, format_duration(e.seconds).c_str(), a.pipeline.device.c_str());
  if (e.seconds < 600) return;
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
               static_cast<long long>(quick.frames), quick.steps, format_duration(q.seconds).c_str());
}

// SIGINT / SIGTERM: the first asks the running generation to stop at its next step or chunk; the
// handler then returns to the default, so a second signal ends the process at once.
std::atomic<bool> g_stop{false};
extern "C" void on_stop_signal(int sig) {
  g_stop = true;
  std::signal(sig, SIG_DFL);
}

// --lora FILE[:SCALE] into the options; --timesteps fixes the step count (an explicit --steps must agree).
void apply_distill_options(GenerateArgs& a) {
  for (const std::string& text : a.loras) {
    const LoraSpec s = parse_lora_spec(text);
    a.gen.loras.push_back({s.path, s.scale});
  }
  if (a.gen.timesteps.empty()) return;
  const int n = static_cast<int>(a.gen.timesteps.size());
  IB_CHECK(!a.steps_given || a.gen.steps == n, "--steps {} but --timesteps lists {} timesteps", a.gen.steps, n);
  a.gen.steps = n;
}

void run(const GenerateArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  check_options(a);
  check_output(a.output);
  check_input_files(a);
  Pipeline pipeline(a.pipeline);
  pipeline.validate(a.gen);
  if (!a.quiet) print_estimate(pipeline, a);
  ProgressBar bar(a.quiet);
  g_stop = false;
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  GeneratedVideo v;
  try {
    v = pipeline.generate(a.gen, [&](const Progress& p) {
      if (g_stop) throw Cancelled();
      bar.update(p);
    });
  } catch (const Cancelled&) {
    bar.finish();
    fail("stopped by a signal; nothing was written");
  }
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  const auto tw = std::chrono::steady_clock::now();
  bar.update(Progress{"write", 0, 1, std::chrono::duration<double>(tw - t0).count(), -1, -1});
  bar.finish();
  try {
    write_video(a.output, v, a.fps);
  } catch (const Error& e) {
    fail("--output: {}", e.what());
  }
  const double write_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - tw).count();
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!a.quiet) {
    std::fprintf(stderr, "wrote %s: %lld frames %lldx%lld at %d fps%s\n", a.output.c_str(),
                 static_cast<long long>(v.frames), static_cast<long long>(v.width), static_cast<long long>(v.height),
                 a.fps, v.seed >= 0 ? fmt::format(", seed {}", v.seed).c_str() : "");
    std::fprintf(stderr, "stage timings:\n");
    for (const StageTime& s : v.timings) std::fprintf(stderr, "  %-12s %s\n", s.stage.c_str(), format_duration(s.seconds).c_str());
    std::fprintf(stderr, "  %-12s %s\n  %-12s %s\n", "write", format_duration(write_s).c_str(), "total",
                 format_duration(total_s).c_str());
  }
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Generate the video between a first and a last frame");
  add_pipeline_options(cmd, a->pipeline);
  // Required by flf2v models (i2v: --first only, t2v: neither); Pipeline::validate says which is missing.
  cmd->add_option("--first", a->gen.first_image, "First frame (PNG, JPEG or WebP)");
  cmd->add_option("--last", a->gen.last_image, "Last frame (PNG, JPEG or WebP)");
  cmd->add_option("--last-frame-fit", a->gen.last_frame_fit,
                  "A last frame of another size: cover (scale and centre-crop) or upstream (reproduce upstream's "
                  "crop-and-pad)")
      ->check(CLI::IsMember({"cover", "upstream"}))
      ->capture_default_str();
  cmd->add_option("--prompt", a->gen.prompt, "What happens in between");
  cmd->add_option("--negative-prompt", a->gen.negative_prompt, "What to avoid (default: the model's own)");
  cmd->add_option("--frames", a->gen.frames, "Frame count, 4n+1")
      ->check(integer_check("--frames", "a whole number (a frame count 4n+1, e.g. 81)"))
      ->capture_default_str();
  auto* area = cmd->add_option("--max-area", a->gen.max_area, "Pixel budget; the size follows the first frame's aspect ratio")
                   ->capture_default_str();
  auto* size = cmd->add_option("--size", a->size, "Explicit size WIDTHxHEIGHT (multiples of 16)");
  area->excludes(size);
  auto* steps = cmd->add_option("--steps", a->gen.steps, "Denoising steps")
                    ->check(integer_check("--steps", "a whole number of steps (e.g. 50)"))
                    ->capture_default_str();
  cmd->add_option("--shift", a->gen.shift, "Noise schedule shift")
      ->check(number_check("--shift", "a number (e.g. 16)"))
      ->capture_default_str();
  cmd->add_option("--guidance", a->gen.guidance,
                  "Classifier-free guidance scale (1: no unconditional pass, one DiT forward a step)")
      ->check(number_check("--guidance", "a number (e.g. 5)"))
      ->capture_default_str();
  cmd->add_option("--solver", a->gen.solver, "unipc, dpm++ or euler (flow-matching Euler, for distilled models)")
      ->capture_default_str();
  cmd->add_option("--timesteps", a->gen.timesteps,
                  "With --solver euler: explicit training timesteps, e.g. 1000,750,500,250 (shifted by --shift)")
      ->delimiter(',');
  cmd->add_option("--lora", a->loras,
                  "LoRA safetensors file merged into the DiT at load, FILE or FILE:SCALE (repeatable; kohya, "
                  "PEFT/diffusers, diff patches)");
  cmd->add_option("--seed", a->gen.seed, "Random seed (negative: random)")
      ->check(integer_check("--seed", "a whole number (0 to 9223372036854775807, or -1 for a random seed)"))
      ->capture_default_str();
  cmd->add_option("--init-noise", a->gen.init_noise, "safetensors file whose tensor `noise` [16,T,h,w] replaces the draw");
  cmd->add_option("--fps", a->fps, "Frame rate of the MP4")
      ->check(integer_check("--fps", "a whole number of frames per second (e.g. 16)"))
      ->capture_default_str();
  cmd->add_option("-o,--output", a->output, "Output: .mp4, .safetensors (tensor `video`), or a folder for PNG frames")
      ->required();
  cmd->add_flag("-q,--quiet", a->quiet, "No progress or timings on stderr");
  cmd->callback([a, steps] {
    if (!a->size.empty()) {
      const SizeOption sz = parse_size_option(a->size);
      a->gen.width = sz.width;
      a->gen.height = sz.height;
    }
    a->steps_given = steps->count() > 0;
    apply_distill_options(*a);
    run(*a);
  });
}

}  // namespace ib::cli
