// A progress display on stderr for long jobs: a story's segment k/N, stage, step i/N, bar, elapsed
// and time left (for the job once the denoising has started, before that for the running stage).
// On a terminal it redraws one line; otherwise it prints a line per step.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

#include "inbetween/pipeline.h"

namespace ib::cli {

class ProgressBar {
 public:
  explicit ProgressBar(bool quiet);
  ~ProgressBar();
  void update(const Progress& p);
  void finish();

 private:
  bool quiet_, tty_;
  bool open_line_ = false;
  std::string last_stage_;
  int last_step_ = -1;
  int last_segment_ = -1;
};

std::string format_duration(double seconds);  // "1m02s", "12.3s", "0.45s"

}  // namespace ib::cli
