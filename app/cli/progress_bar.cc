#include "progress_bar.h"

#include <unistd.h>

#include <cmath>
#include <fmt/format.h>

namespace ib::cli {

std::string format_duration(double s) {
  if (s < 0) return "?";
  if (s < 10) return fmt::format("{:.2f}s", s);
  if (s < 60) return fmt::format("{:.1f}s", s);
  const auto total = static_cast<long>(std::lround(s));
  if (total < 3600) return fmt::format("{}m{:02d}s", total / 60, static_cast<int>(total % 60));
  return fmt::format("{}h{:02d}m", total / 3600, static_cast<int>((total % 3600) / 60));
}

ProgressBar::ProgressBar(bool quiet) : quiet_(quiet), tty_(::isatty(STDERR_FILENO) != 0) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(const Progress& p) {
  if (quiet_) return;
  if (p.stage == last_stage_ && p.step == last_step_ && p.segment == last_segment_) return;
  const bool new_stage = p.stage != last_stage_ || p.segment != last_segment_;
  last_stage_ = p.stage;
  last_step_ = p.step;
  last_segment_ = p.segment;
  // A story's segment first: "segment 2/4 denoise ...".
  std::string line = p.segments > 0 ? fmt::format("segment {}/{} ", p.segment, p.segments) : std::string();
  line += fmt::format("{:<10}", p.stage);
  if (p.total > 1) {
    constexpr int kWidth = 24;
    const int filled = p.total > 0 ? p.step * kWidth / p.total : 0;
    line += fmt::format(" {:>3}/{:<3} [{}{}]", p.step, p.total, std::string(static_cast<size_t>(filled), '#'),
                        std::string(static_cast<size_t>(kWidth - filled), '.'));
  }
  line += fmt::format("  {} elapsed", format_duration(p.elapsed_s));
  if (p.remaining_s >= 0) {
    line += fmt::format(", {} left", format_duration(p.remaining_s));
  } else if (p.stage_remaining_s >= 0) {
    line += fmt::format(", {} left in this stage", format_duration(p.stage_remaining_s));
  }
  if (tty_) {
    if (new_stage && open_line_) std::fputc('\n', stderr);
    std::fprintf(stderr, "\r%-92s", line.c_str());
    open_line_ = true;
  } else {
    std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::fflush(stderr);
}

void ProgressBar::finish() {
  if (open_line_) std::fputc('\n', stderr);
  open_line_ = false;
}

}  // namespace ib::cli
