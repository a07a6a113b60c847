// `inbetween generate`: two keyframes and a prompt in, a video file out.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <regex>

#include "app_commands.h"
#include "core/tensor.h"
#include "inbetween/error.h"
#include "inbetween/pipeline.h"
#include "io/video_writer.h"
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

void parse_size(const std::string& s, GenerateOptions& g) {
  static const std::regex re(R"((\d{1,5})[x\*](\d{1,5}))");
  std::smatch m;
  IB_CHECK(std::regex_match(s, m, re), "--size '{}' must be WIDTHxHEIGHT, e.g. 832x480", s);
  g.width = std::stoll(m[1]);
  g.height = std::stoll(m[2]);
}

// Checks the output path before any heavy work, so a typo does not cost a whole generation.
void check_output(const std::string& out) {
  IB_CHECK(!out.empty(), "--output is required");
  namespace fs = std::filesystem;
  const fs::path p(out);
  const std::string ext = p.extension().string();
  const bool folder = out.back() == '/' || ext.empty() || fs::is_directory(p);
  IB_CHECK(folder || ext == ".mp4" || ext == ".safetensors",
           "--output '{}': use a .mp4 or .safetensors file, or a folder for PNG frames", out);
  const fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  IB_CHECK(fs::is_directory(parent) || (folder && fs::is_directory(parent.parent_path().empty() ? "." : parent.parent_path())),
           "--output '{}': folder '{}' does not exist", out, parent.string());
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
  check_output(a.output);
  IB_CHECK(a.fps >= 1 && a.fps <= 240, "--fps must be in 1..240, got {}", a.fps);
  Pipeline pipeline(a.pipeline);
  pipeline.validate(a.gen);
  ProgressBar bar(a.quiet);
  GeneratedVideo v = pipeline.generate(a.gen, [&](const Progress& p) { bar.update(p); });
  bar.finish();
  const auto tw = std::chrono::steady_clock::now();
  Tensor video = Tensor::empty({3, v.frames, v.height, v.width}, DType::F32);
  std::copy(v.data.begin(), v.data.end(), video.data<float>());
  write_video(a.output, video, a.fps);
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
  cmd->add_option("--frames", a->gen.frames, "Frame count, 4n+1")->capture_default_str();
  auto* area = cmd->add_option("--max-area", a->gen.max_area, "Pixel budget; the size follows the first frame's aspect ratio")
                   ->capture_default_str();
  auto* size = cmd->add_option("--size", a->size, "Explicit size WIDTHxHEIGHT (multiples of 16)");
  area->excludes(size);
  auto* steps = cmd->add_option("--steps", a->gen.steps, "Denoising steps")->capture_default_str();
  cmd->add_option("--shift", a->gen.shift, "Noise schedule shift")->capture_default_str();
  cmd->add_option("--guidance", a->gen.guidance,
                  "Classifier-free guidance scale (1: no unconditional pass, one DiT forward a step)")
      ->capture_default_str();
  cmd->add_option("--solver", a->gen.solver, "unipc, dpm++ or euler (flow-matching Euler, for distilled models)")
      ->capture_default_str();
  cmd->add_option("--timesteps", a->gen.timesteps,
                  "With --solver euler: explicit training timesteps, e.g. 1000,750,500,250 (shifted by --shift)")
      ->delimiter(',');
  cmd->add_option("--lora", a->loras,
                  "LoRA safetensors file merged into the DiT at load, FILE or FILE:SCALE (repeatable; kohya, "
                  "PEFT/diffusers, diff patches)");
  cmd->add_option("--seed", a->gen.seed, "Random seed (negative: random)")->capture_default_str();
  cmd->add_option("--init-noise", a->gen.init_noise, "safetensors file whose tensor `noise` [16,T,h,w] replaces the draw");
  cmd->add_option("--fps", a->fps, "Frame rate of the MP4")->capture_default_str();
  cmd->add_option("-o,--output", a->output, "Output: .mp4, .safetensors (tensor `video`), or a folder for PNG frames")
      ->required();
  cmd->add_flag("-q,--quiet", a->quiet, "No progress or timings on stderr");
  cmd->callback([a, steps] {
    if (!a->size.empty()) parse_size(a->size, a->gen);
    a->steps_given = steps->count() > 0;
    apply_distill_options(*a);
    run(*a);
  });
}

}  // namespace ib::cli
