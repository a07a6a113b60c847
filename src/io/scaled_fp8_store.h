// fp8 checkpoints as they circulate (ComfyUI's "fp8_scaled" files, Kijai's e4m3fn casts,
// compressed-tensors' per-channel files): linear weights stored as float8 (e4m3fn or e5m2) with an
// optional scale beside each, `<layer>.scale_weight` or `<layer>.weight_scale`, of one value or one
// per output channel ([out] or [out, 1]); w = code * scale (scale 1 when there is none).
//
// ScaledFp8Store wraps such a checkpoint so that every loader sees a plain release: each fp8
// weight reads as its f32 dequantisation (exact: an e4m3 code times an f32 scale rounds once),
// and the scales (with the activation scales `scale_input` / `input_scale` that some files carry,
// which the engine computes itself, and the `scaled_fp8` marker tensor) leave the tensor list. A
// scale whose shape fits no reading of its weight, and a weight scale without an fp8 weight, are
// errors that name them.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/tensor_store.h"

namespace ib {

class ScaledFp8Store : public TensorStore {
 public:
  explicit ScaledFp8Store(std::shared_ptr<TensorStore> base);
  bool contains(const std::string& name) const override;
  std::vector<std::string> names() const override;
  TensorInfo info(const std::string& name) const override;
  Tensor get(const std::string& name) const override;
  std::string source(const std::string& name) const override { return base_->source(name); }
  // The weight's (and its scale's) pages in the base's map.
  void release(const std::string& name) const override;

  // How many weights are stored in fp8 (for messages and tests).
  size_t fp8_weights() const { return scale_of_.size(); }

 private:
  std::shared_ptr<TensorStore> base_;
  std::map<std::string, std::string> scale_of_;  // fp8 weight -> its scale tensor ("" when none)
  std::vector<std::string> hidden_;              // sorted: the scales and markers left out
};

// base itself when it holds no float8 tensor, else base wrapped in a ScaledFp8Store.
std::shared_ptr<TensorStore> with_fp8_dequantisation(std::shared_ptr<TensorStore> base);

}  // namespace ib
