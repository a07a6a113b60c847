#include "app_commands.h"

#include <charconv>
#include <cmath>
#include <regex>

#include "core/check.h"

namespace ib::cli {

CLI::Validator integer_check(const std::string& flag, const std::string& expected) {
  return CLI::Validator(
      [flag, expected](std::string& text) -> std::string {
        int64_t v = 0;
        const char* end = text.data() + text.size();
        const auto [ptr, ec] = std::from_chars(text.data(), end, v);
        if (text.empty() || ec != std::errc() || ptr != end)
          return "'" + text + "' is not " + expected;
        return "";
      },
      "INT");
}

CLI::Validator number_check(const std::string& flag, const std::string& expected) {
  return CLI::Validator(
      [flag, expected](std::string& text) -> std::string {
        double v = 0;
        const char* end = text.data() + text.size();
        const auto [ptr, ec] = std::from_chars(text.data(), end, v);
        if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(v))
          return "'" + text + "' is not " + expected;
        return "";
      },
      "NUMBER");
}

void register_commands(CLI::App& app) {
  register_generate(app);
  register_story(app);
  register_serve(app);
  register_synth_model(app);
  register_encode_prompt(app);
  register_bench(app);
}

SizeOption parse_size_option(const std::string& s) {
  static const std::regex re(R"((\d{1,5})[x\*](\d{1,5}))");
  std::smatch m;
  IB_CHECK(std::regex_match(s, m, re), "--size '{}' must be WIDTHxHEIGHT, e.g. 832x480", s);
  return {std::stoll(m[1]), std::stoll(m[2])};
}

void add_pipeline_options(CLI::App* cmd, PipelineOptions& p) {
  cmd->add_option("--model", p.model_dir, "Model folder (Wan2.1 release layout)")->required();
  add_named_option(cmd, "--device", p.device, parse_device, device_option_name, "cpu or cuda");
  cmd->add_option("--threads", p.threads, "CPU threads (0: all cores)")
      ->check(integer_check("--threads", "a whole number (0: all cores)"))
      ->capture_default_str();
  add_named_option(cmd, "--precision", p.precision, parse_precision, precision_name,
                   "With --device cuda: the DiT's linear layers in bf16, fp8 (e4m3 weights and products; GPUs of "
                   "compute capability 8.9+) or f32 (exact)");
  add_named_option(cmd, "--attention", p.attention, parse_attention, attention_name,
                   "With --device cuda: the DiT's self-attention in bf16 or fp8 (e4m3 q, k, v and probabilities: "
                   "our Hopper fp8 kernel on sm_90, ~1.5x the bf16 kernel on an H200, else cuDNN's fp8 kernel; "
                   "compute capability 8.9+)");
  cmd->add_option("--vram-budget", p.vram_budget_gib,
                  "With --device cuda: the most GPU memory to use, GiB (0: all). DiT blocks that do not fit are "
                  "streamed from host memory; a budget too small is refused with the minimum")
      ->capture_default_str();
  add_named_option(cmd, "--t5-device", p.t5_device, parse_t5_placement, t5_placement_name,
                   "With --device cuda: where T5 runs: auto (the GPU if it fits), cpu, cuda");
}

}  // namespace ib::cli
