// Writes a synthetic model folder in the official release layout (config.json, sharded DiT
// safetensors with an index, the T5 / CLIP / VAE .pth files, a SentencePiece tokenizer and
// inbetween.json), for demos, tests and benchmarks. Weights are uniform with the variance of
// PyTorch's default init scale (1/fan_in); norms are one, biases zero. The `demo` preset's VAE and
// DiT are hand-built instead (synth/demo_model.h): its videos go from the first keyframe to the
// last.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"
#include "models/clip.h"
#include "models/dit.h"
#include "models/t5.h"
#include "models/random_weights.h"
#include "models/vae.h"

namespace ib {

struct SynthPreset {
  std::string name;
  DitConfig dit;
  T5Config t5;
  ClipConfig clip;
  VaeConfig vae;
  std::string dit_dtype = "f32";  // "f32" or "bf16"
  bool hand_built = false;        // the demo preset: VAE and DiT from synth/demo_model.h
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

// The weight lists (t5_weight_shapes, clip_weight_shapes, vae_weight_shapes, dit_weight_shapes)
// are declared beside their loaders in src/models.

}  // namespace ib
