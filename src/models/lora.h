// LoRA and weight-patch files for the Wan DiT (lightx2v's step/guidance distillations, style
// LoRAs), merged into the weights at load, in f32 and before any bf16 rounding:
//   low rank:  W' = W + scale·(alpha/rank)·up @ down   (alpha = rank when the file has none)
//   diff:      W' = W + scale·diff                     (full-weight patch, any parameter)
//   diff_b:    b' = b + scale·diff_b                   (bias patch)
// Key formats in circulation, all read from safetensors:
//   kohya            <stem>.lora_down.weight / .lora_up.weight / .alpha
//   PEFT, diffusers  <stem>.lora_A.weight / .lora_B.weight
//   patches          <stem>.diff / .diff_b
// with the stem in release names behind `diffusion_model.`, `model.diffusion_model.` or no prefix
// (`blocks.0.self_attn.q`), underscored behind `lora_unet_` (`lora_unet_blocks_0_self_attn_q`), or
// in diffusers' WanTransformer3DModel names behind `transformer.` (`blocks.0.attn1.to_q`, mapped
// with the table of diffusers' scripts/convert_wan_to_diffusers.py). A key that matches no weight,
// and a LoRA whose shapes do not fit the model, are errors that name them: nothing is dropped.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "io/tensor_store.h"

namespace ib {

class WanDiT;

struct LoraSpec {
  std::string path;
  double scale = 1.0;
  bool operator==(const LoraSpec&) const = default;
};

// "FILE" or "FILE:SCALE" (what --lora takes). A text that names an existing file is the file,
// colons and all; otherwise the part after the last ':' must be a finite number.
LoraSpec parse_lora_spec(const std::string& text);

// One file's patch of one model tensor.
struct LoraPatch {
  enum class Kind { LowRank, Diff };
  Kind kind = Kind::LowRank;
  std::string target;  // the model's checkpoint name, e.g. "blocks.0.self_attn.q.weight"
  std::string key;     // the file's key stem, for messages
  Tensor up, down;     // LowRank: [out, rank(, 1...)] / [rank, in...], as stored (any float dtype)
  Tensor diff;         // Diff: the target's checkpoint shape
  float factor = 1;    // LowRank: f32(scale·alpha/rank) formed in double; Diff: f32(scale)
};

// Reads spec.path and resolves every key against `catalog` (the model's checkpoint names and
// shapes), checking shapes and dtypes. Throws ib::Error naming the file and the problem: keys that
// match nothing (listed), a lora_down without its lora_up, a shape that does not fit (the tensor
// and both shapes), a truncated or malformed file.
std::vector<LoraPatch> read_lora(const LoraSpec& spec, const std::map<std::string, Shape>& catalog);

// read_lora for every file against a checkpoint's names and shapes, without merging (cheap: only
// headers and alpha scalars are read).
void check_loras(const TensorStore& dit_weights, const std::vector<LoraSpec>& specs);

// read_lora for every file, in order, against the DiT's weights (its checkpoint names and shapes):
// every file read and checked before anything is merged. The patches in the order they apply.
// What apply_loras merges on the CPU, and the GPU engine (gpu::DitRunner::load) on the device.
std::vector<LoraPatch> read_loras(WanDiT& dit, const std::vector<LoraSpec>& specs);
// The same against a weight list (checkpoint names and shapes), e.g. dit_weight_shapes'.
std::vector<LoraPatch> read_loras(const std::map<std::string, Shape>& catalog, const std::vector<LoraSpec>& specs);

// Merges the files, in order, into the DiT's weights, which must still be on the CPU (call it
// right after WanDiT::load, before WanDiT::to or the GPU engine takes the weights). Every file is
// read and checked before the first merge. Each patched tensor becomes a new f32 tensor; the
// others stay as loaded (memory-mapped). Returns the number of tensors patched.
size_t apply_loras(WanDiT& dit, const std::vector<LoraSpec>& specs);

}  // namespace ib
