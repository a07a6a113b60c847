// `inbetween bench`: times the GPU engine (include/inbetween/bench.h) and prints a table, or JSON.
#include <cstdio>
#include <nlohmann/json.hpp>

#include "app_commands.h"
#include "core/check.h"
#include "inbetween/bench.h"
#include "inbetween/error.h"

namespace ib::cli {

namespace {

struct BenchArgs {
  BenchOptions o;
  std::string size = "832x480";
  std::string stages;
  bool json = false;
};

void run(BenchArgs& a) {
  const SizeOption sz = parse_size_option(a.size);  // the rest is checked by run_bench
  a.o.width = sz.width;
  a.o.height = sz.height;
  if (!a.stages.empty()) {
    size_t p = 0;
    while (p <= a.stages.size()) {
      const size_t q = a.stages.find(',', p);
      a.o.stages.push_back(a.stages.substr(p, q == std::string::npos ? std::string::npos : q - p));
      if (q == std::string::npos) break;
      p = q + 1;
    }
  }
  const BenchReport r = run_bench(a.o, [&](const std::string& line) {
    if (!a.json) std::fprintf(stderr, "%s\n", line.c_str());
  });
  if (a.json) {
    nlohmann::json j;
    j["device"] = r.device;
    j["setting"] = r.setting;
    j["tokens"] = r.tokens;
    j["weights_gib"] = r.weights_gib;
    for (const char* key : {"rows", "profile"}) {
      nlohmann::json arr = nlohmann::json::array();
      for (const BenchRow& row : std::string(key) == "rows" ? r.rows : r.profile)
        arr.push_back({{"stage", row.stage}, {"seconds", row.seconds}, {"min_seconds", row.min_seconds},
                       {"tflops", row.tflops}, {"peak_gib", row.peak_gib}, {"note", row.note}});
      j[key] = arr;
    }
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("%s on %s (weights %.1f GiB)\n", r.setting.c_str(), r.device.c_str(), r.weights_gib);
  std::printf("%-26s %10s %10s %9s %9s  %s\n", "stage", "mean s", "min s", "TFLOP/s", "peak GiB", "note");
  for (const BenchRow& row : r.rows)
    std::printf("%-26s %10.4f %10.4f %9.1f %9.1f  %s\n", row.stage.c_str(), row.seconds, row.min_seconds, row.tflops,
                row.peak_gib, row.note.c_str());
  if (!r.profile.empty()) {
    std::printf("\nwhere one forward's time goes (device events per kind of kernel, all blocks):\n");
    for (const BenchRow& row : r.profile)
      std::printf("  %-22s %9.1f ms  %6s%s\n", row.stage.c_str(), row.seconds * 1e3, row.note.c_str(),
                  row.tflops > 0 ? fmt::format("  {:.0f} TFLOP/s", row.tflops).c_str() : "");
  }
}

}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand("bench", "Time the GPU engine's stages on a full-size synthetic model (or --model)");
  cmd->add_option("--model", a->o.model_dir, "Model folder to load instead of the synthetic model");
  cmd->add_option("--preset", a->o.preset, "Synthetic model: flf2v-14b (the release's shapes)")->capture_default_str();
  cmd->add_option("--size", a->size, "Video size WIDTHxHEIGHT")->capture_default_str();
  cmd->add_option("--frames", a->o.frames, "Frame count, 4n+1")->capture_default_str();
  cmd->add_option("--repeats", a->o.repeats, "Timed runs per stage after one warm-up")->capture_default_str();
  cmd->add_option("--stages", a->stages,
                  "Comma-separated subset of: t5, clip, vae, attention, gemm, dit, generate (with the MP4 write), load "
                  "(the DiT's load alone), mp4 (the MP4 writer alone on smooth and noisy video; default: all but "
                  "generate, load and mp4)");
  cmd->add_option("--steps", a->o.steps, "The generate stage's denoising steps")->capture_default_str();
  cmd->add_option("--guidance", a->o.guidance, "The generate stage's guidance scale (1: one forward per step)")
      ->capture_default_str();
  // Precision's names; run_bench refuses the one each does not take (fp8 VAE, f32 DiT).
  add_named_option(cmd, "--vae-precision", a->o.vae_precision, parse_precision, precision_name,
                   "The VAE's convolutions: bf16 or f32");
  add_named_option(cmd, "--precision", a->o.precision, parse_precision, precision_name,
                   "The DiT's block linear layers: bf16 or fp8 (e4m3, compute capability 8.9+)");
  cmd->add_option("--vram-budget", a->o.vram_budget_gib,
                  "GPU memory budget in GiB: DiT blocks that do not fit are streamed from host memory (0: none)")
      ->capture_default_str();
  cmd->add_option("--attention", a->o.attention,
                  "Attention of the DiT: auto, flash, cudnn or hopper (bf16 back-ends), fp8 (e4m3 q/k/v: our Hopper "
                  "kernel on an sm_90 GPU, else cuDNN's) or fp8-cudnn (cuDNN's fp8 kernel)")
      ->check(CLI::IsMember({"auto", "flash", "cudnn", "hopper", "fp8", "fp8-cudnn"}))
      ->capture_default_str();
  cmd->add_option("--lora-rank", a->o.lora_rank,
                  "A synthetic LoRA of this rank on every linear layer of the DiT's blocks, written to a temporary "
                  "file and merged at load (its time: the lora_merge row; 0: none)")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "Print the results as JSON on stdout");
  cmd->callback([a] { run(*a); });
}

}  // namespace ib::cli
