// The options `inbetween generate` and `inbetween story` share (sizes, schedule, solver, seed,
// LoRAs, output, ...), their checks with the command line's names, SIGINT/SIGTERM handling and
// the output and timings printed at the end.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "inbetween/pipeline.h"
#include "inbetween/video.h"

namespace ib::cli {

struct GenerateArgs {
  PipelineOptions pipeline;
  GenerateOptions gen;
  std::string size;
  std::vector<std::string> loras;  // FILE[:SCALE]
  bool steps_given = false;
  std::string output;
  int fps = 16;
  bool quiet = false;
  CLI::Option* steps_option = nullptr;
};

// Registers the pipeline options and every generation option but the images and the prompt (and
// --init-noise, which is generate's alone) on `cmd`.
void add_generation_options(CLI::App* cmd, GenerateArgs& a);
// After parsing: --size into the options, --lora FILE[:SCALE] parsed, --timesteps fixing the step
// count (an explicit --steps must agree).
void finish_generation_options(GenerateArgs& a);

// The options' ranges, named as on the command line (Pipeline::validate checks them again).
void check_options(const GenerateArgs& a);
// The output path can be written (before any heavy work, so a typo does not cost a generation).
void check_output(const std::string& out);
// An image option's file exists and decodes: "--first 'x.png': no such file".
void check_image_file(const std::string& flag, const std::string& path);
// The LoRA files exist.
void check_lora_files(const GenerateArgs& a);

// The run time estimate line, and past ten minutes a warning with a quicker setting. `runs`: how
// many generations of these options the command runs (a story's segments).
void print_estimate(const Pipeline& pipeline, const GenerateArgs& a, int runs = 1);

// SIGINT / SIGTERM while alive: the first asks the running generation to stop at its next step or
// chunk (requested() turns true); the handler then returns to the default, so a second signal ends
// the process at once.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static bool requested();
};

// The writer of a.output ("--output: ..." on failure), made before the generation so that an MP4
// is encoded while the video is decoded (pass its frames() to Pipeline::generate).
std::unique_ptr<VideoFileWriter> open_output(const GenerateArgs& a);
// Writes the video to a.output through open_output's writer (what is left of its early writing;
// the whole video when nothing came early; "--output: ..." on failure), and returns the seconds
// it took.
double write_output(const GenerateArgs& a, const GeneratedVideo& v, VideoFileWriter& writer);
// "wrote FILE: ..." and the stage timings table, with the write and the total.
void print_summary(const GenerateArgs& a, const GeneratedVideo& v, double write_s, double total_s);

}  // namespace ib::cli
