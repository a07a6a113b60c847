// `inbetween bench`: times the GPU engine's stages on a full-size synthetic model (random weights,
// the real shapes, made in GPU memory: no file needed) or on a model folder, at a given video size
// and frame count. Speed and memory are measured here, never in unit tests. Making the DiT is a
// row of its own (dit_load: its time, the host's peak resident memory before and after, the
// weights' bytes on the GPU and page-locked), and with a LoRA so is its merge (lora_merge).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "inbetween/pipeline.h"

namespace ib {

struct BenchOptions {
  std::string model_dir;  // empty: the synthetic model of `preset`
  std::string preset = "flf2v-14b";  // the release's sizes (dim 5120, 40 layers, 40 heads)
  int64_t width = 832, height = 480, frames = 81;
  int repeats = 3;  // timed runs per stage after one warm-up
  std::vector<std::string> stages;  // empty: t5, clip, vae, attention, gemm, dit (not generate, load, mp4)
  int steps = 50;          // the generate stage: denoising steps
  double guidance = 5.0;   // the generate stage: 1 runs one forward per step
  std::string attention = "auto";   // auto, flash, cudnn or hopper (bf16), fp8 (our Hopper kernel where it runs) or fp8-cudnn
  Precision vae_precision = Precision::BF16;  // the VAE's convolutions: BF16 or F32
  Precision precision = Precision::BF16;      // the DiT's block linear layers: BF16 or FP8
  double vram_budget_gib = 0;          // GPU memory budget (streams DiT blocks that do not fit); 0: none
  bool profile = true;              // a per-kernel profile of one forward
  // A synthetic LoRA of this rank on every linear layer of the DiT's blocks (kohya keys, bf16),
  // written to a temporary file and merged at load like --lora (0: none).
  int lora_rank = 0;
};

struct BenchRow {
  std::string stage;   // e.g. "dit_forward_cond"
  double seconds = 0;  // mean over the timed runs
  double min_seconds = 0;
  double tflops = 0;   // achieved, where the stage's FLOPs are known (0 otherwise)
  double peak_gib = 0; // peak GPU memory held by the engine during the stage
  std::string note;
};

struct BenchReport {
  std::string device;   // GPU name
  std::string setting;  // "832x480, 81 frames -> 21x30x52 = 32760 tokens"
  int64_t tokens = 0;
  double weights_gib = 0;
  std::vector<BenchRow> rows;
  std::vector<BenchRow> profile;  // per kernel kind, one forward
};

// Throws ib::Error with a clear message on a build without CUDA, no GPU, or too little memory.
BenchReport run_bench(const BenchOptions& o, const std::function<void(const std::string&)>& log = {});

}  // namespace ib
