// CLIP vision encoder of open-clip XLM-RoBERTa-large ViT-H/14 as Wan2.1 uses it (spec 4.6, 5):
// bicubic preprocessing and the ViT up to (not including) its last block; no post-norm, no head.
#pragma once

#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"
#include "io/tensor_store.h"

namespace ib {

class ClipVision {
 public:
  // Reads the `visual.*` tensors (the text tower is never touched), checking presence and shapes
  // and that `cfg` agrees with them. Small tensors are converted to f32; the large linear weights
  // stay in the file's dtype (ops::linear widens f16/bf16).
  static ClipVision load(const TensorStore& w, const ClipConfig& cfg);

  // image: f32 [3, H, W] in [-1, 1] -> f32 [3, S, S]: bicubic to S x S, x*0.5+0.5, then
  // (x - mean_c) / std_c with the OpenAI CLIP constants.
  Tensor preprocess(const Tensor& image) const;

  // pixels: f32 [N, 3, S, S] (any device) -> f32 [N, tokens, dim], tokens = (S/patch)^2 + 1: the
  // hidden state after block num_layers-2 (upstream "use_31_block"), on the weights' device
  // (device()). The patches are cut on the host; everything from the patch embedding on runs on
  // the weights' device.
  Tensor encode(const Tensor& pixels) const;

  // Moves every weight to `device`; encode() then runs there. On CUDA the matrices of the linear
  // layers (patch embedding included) become `linear_dtype`: f32 (exact for the release's f16
  // weights; the default) or bf16 (half the memory, a coarser mantissa than upstream's f16).
  // Everything else is f32. Moving back to the CPU keeps the dtypes. Destroying the encoder frees
  // its device memory.
  void to(Device device, DType linear_dtype = DType::F32);
  Device device() const { return patch_weight_.device(); }

  const ClipConfig& config() const { return cfg_; }
  int64_t num_tokens() const { return grid_ * grid_ + 1; }

 private:
  struct Block {
    Tensor norm1_weight, norm1_bias;     // [dim]
    Tensor q_weight, k_weight, v_weight;  // [dim, dim] rows of attn.to_qkv.weight
    Tensor q_bias, k_bias, v_bias;        // [dim]
    Tensor proj_weight, proj_bias;        // [dim, dim], [dim]
    Tensor norm2_weight, norm2_bias;     // [dim]
    Tensor fc1_weight, fc1_bias;          // mlp.0: [mlp, dim], [mlp]
    Tensor fc2_weight, fc2_bias;          // mlp.2: [dim, mlp], [dim]
  };

  Tensor block_forward(const Block& b, const Tensor& x) const;

  ClipConfig cfg_;
  int64_t grid_ = 0;             // patches per side
  Tensor patch_weight_;          // [dim, 3 * patch * patch] (patch_embedding.weight flattened)
  Tensor cls_embedding_;         // [dim]
  Tensor pos_embedding_;         // [tokens, dim]
  Tensor pre_norm_weight_, pre_norm_bias_;
  std::vector<Block> blocks_;    // the num_layers - 1 blocks that run
};

// The tensors (name, shape) of the visual CLIP checkpoint: what ClipVision::load reads (all but
// the last block, post_norm and the head, which upstream's encoder does not use) and what the
// synthetic model writer writes; declared once here.
WeightShapes clip_weight_shapes(const ClipConfig& c);

}  // namespace ib
