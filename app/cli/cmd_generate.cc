// `inbetween generate`: two keyframes and a prompt in, a video file out. Everything that can be
// checked before computing is checked first, with the option's name in the message; SIGINT and
// SIGTERM stop the generation at the next step or VAE chunk (a second signal ends it at once).
#include <chrono>
#include <filesystem>
#include <memory>

#include "app_commands.h"
#include "core/check.h"
#include "generate_args.h"
#include "inbetween/error.h"
#include "inbetween/pipeline.h"
#include "progress_bar.h"

namespace ib::cli {

namespace {

void run(const GenerateArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  check_options(a);
  check_output(a.output);
  if (!a.gen.first_image.empty()) check_image_file("--first", a.gen.first_image);
  if (!a.gen.last_image.empty()) check_image_file("--last", a.gen.last_image);
  if (!a.gen.init_noise.empty())
    IB_CHECK(std::filesystem::is_regular_file(a.gen.init_noise), "--init-noise: noise file not found: '{}'",
             a.gen.init_noise);
  check_lora_files(a);
  Pipeline pipeline(a.pipeline);
  pipeline.validate(a.gen);
  if (!a.quiet) print_estimate(pipeline, a);
  // An MP4 is encoded while the decode makes its frames (the write then waits for the last few).
  std::unique_ptr<VideoFileWriter> writer = open_output(a);
  ProgressBar bar(a.quiet);
  GeneratedVideo v;
  {
    StopSignals signals;
    try {
      v = pipeline.generate(
          a.gen,
          [&](const Progress& p) {
            if (StopSignals::requested()) throw Cancelled();
            bar.update(p);
          },
          writer->frames());
    } catch (const Cancelled&) {
      bar.finish();
      fail("stopped by a signal; nothing was written");
    }
  }
  bar.update(Progress{"write", 0, 1, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), -1, -1});
  bar.finish();
  const double write_s = write_output(a, v, *writer);
  print_summary(a, v, write_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

void register_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Generate the video between a first and a last frame");
  // Required by flf2v models (i2v: --first only, t2v: neither); Pipeline::validate says which is missing.
  cmd->add_option("--first", a->gen.first_image, "First frame (PNG, JPEG or WebP)");
  cmd->add_option("--last", a->gen.last_image, "Last frame (PNG, JPEG or WebP)");
  cmd->add_option("--prompt", a->gen.prompt, "What happens in between");
  cmd->add_option("--init-noise", a->gen.init_noise, "safetensors file whose tensor `noise` [16,T,h,w] replaces the draw");
  add_generation_options(cmd, *a);
  cmd->callback([a] {
    finish_generation_options(*a);
    run(*a);
  });
}

}  // namespace ib::cli
