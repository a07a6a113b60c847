// LoRA patches (models/lora.h) merged into the GPU engine's weights while they load, one
// checkpoint tensor at a time: the tensor widened to f32 on the device, W += factor·up@down through
// cuBLAS's f32 product (no TF32), diff patches added in f32 (W += factor·diff), and only then
// rounded to bf16 or quantised to fp8 by the caller. The CPU merge (apply_loras) is the reference;
// the two sum the rank-r products in different orders, so they agree to f32 rounding.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "models/lora.h"

namespace ib::gpu {

class LoraMerge {
 public:
  LoraMerge() = default;
  // The patches in the order they apply (read_loras' order: file by file).
  explicit LoraMerge(std::vector<LoraPatch> patches);

  // `t` (host or device, any float dtype, as many values as checkpoint tensor `name`) with the
  // patches of `name` merged: a new f32 device tensor of t's shape. Without patches, t itself. Each
  // patch is used once and dropped (so are the LoRA file's pages once all of its patches are).
  Tensor apply(const std::string& name, const Tensor& t);

  // Patches not merged yet (a loader that never asked for their tensor).
  std::vector<std::string> pending() const;
  size_t patched_tensors() const { return patched_; }
  // Wall time spent merging: the patches' upload and widening, the products and sums, up to the
  // device's completion of each tensor's merge.
  double seconds() const { return seconds_; }

 private:
  std::map<std::string, std::vector<LoraPatch>> by_target_;
  size_t patched_ = 0;
  double seconds_ = 0;
};

}  // namespace ib::gpu
