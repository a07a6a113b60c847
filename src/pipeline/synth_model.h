// Writes a synthetic model folder in the official release layout (config.json, sharded DiT
// safetensors with an index, the T5 / CLIP / VAE .pth files, a SentencePiece tokenizer and
// inbetween.json), for demos, tests and benchmarks. Weights are uniform with the variance of
// PyTorch's default init scale (1/fan_in); norms are one, biases zero. The `demo` preset's VAE and
// DiT are hand-built instead (pipeline/demo_model.h): its videos go from the first keyframe to the
// last.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"

namespace ib {

struct SynthPreset {
  std::string name;
  DitConfig dit;
  T5Config t5;
  ClipConfig clip;
  VaeConfig vae;
  std::string dit_dtype = "f32";  // "f32" or "bf16"
  bool hand_built = false;        // the demo preset: VAE and DiT from pipeline/demo_model.h
};

std::vector<std::string> synth_preset_names();
SynthPreset synth_preset(const std::string& name);  // throws listing the valid names

struct SynthOptions {
  std::string out_dir;
  uint64_t seed = 0;
  bool overwrite = false;
  // Called with a line per file written, for progress.
  std::function<void(const std::string&)> on_file;
};

// Writes the folder; it is created fresh (or replaced when overwrite is set) and appears complete
// or not at all: files go to a temporary folder beside it that is renamed at the end.
void write_synth_model(const SynthPreset& preset, const SynthOptions& options);

// The tensors (name, shape) each component needs, the names the loaders expect.
std::vector<std::pair<std::string, Shape>> dit_weight_shapes(const DitConfig& c, int64_t text_dim, int64_t clip_dim,
                                                             int64_t image_tokens);
std::vector<std::pair<std::string, Shape>> t5_weight_shapes(const T5Config& c);
std::vector<std::pair<std::string, Shape>> clip_weight_shapes(const ClipConfig& c);
std::vector<std::pair<std::string, Shape>> vae_weight_shapes(const VaeConfig& c);

// Random weights for such a list, in `dtype`, the synthetic model's init (uniform with variance
// 1/fan_in, norms one, biases zero); made in parallel on the CPU.
std::vector<std::pair<std::string, Tensor>> make_weights(const std::vector<std::pair<std::string, Shape>>& specs,
                                                         DType dtype, uint64_t seed);

}  // namespace ib
