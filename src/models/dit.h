// The Wan2.1 diffusion transformer (upstream WanModel, spec section 7): one forward pass from a
// noisy latent, a timestep, text and image context to the flow prediction. Supports the flf2v,
// i2v and t2v variants; every size comes from config.json and the weight shapes.
#pragma once

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"
#include "io/tensor_store.h"

namespace ib {

// Weights keep the dtype of the file (linears take f32/bf16/f16); the small per-block vectors
// used in f32 arithmetic (modulation, emb_pos) are held in f32.
struct WanSelfAttentionWeights {
  Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;  // [dim, dim] / [dim]
  Tensor norm_q, norm_k;                          // [dim]
};

struct WanCrossAttentionWeights {
  Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;  // [dim, dim] / [dim]
  Tensor norm_q, norm_k;                          // [dim]
  Tensor k_img_w, k_img_b, v_img_w, v_img_b;      // i2v/flf2v only
  Tensor norm_k_img;                              // i2v/flf2v only
};

struct WanBlockWeights {
  Tensor modulation;              // f32 [6, dim]
  WanSelfAttentionWeights self_attn;
  Tensor norm3_w, norm3_b;        // [dim]
  WanCrossAttentionWeights cross_attn;
  Tensor ffn0_w, ffn0_b;          // [ffn, dim] / [ffn]
  Tensor ffn2_w, ffn2_b;          // [dim, ffn] / [dim]
};

struct WanDiTWeights {
  Tensor patch_w, patch_b;         // [dim, in_dim*4] (viewed from [dim, in_dim, 1, 2, 2]) / [dim]
  Tensor text0_w, text0_b;         // [dim, text_dim] / [dim]
  Tensor text2_w, text2_b;         // [dim, dim] / [dim]
  Tensor time0_w, time0_b;         // [dim, freq_dim] / [dim]
  Tensor time2_w, time2_b;         // [dim, dim] / [dim]
  Tensor time_proj_w, time_proj_b; // [6*dim, dim] / [6*dim]
  std::vector<WanBlockWeights> blocks;
  Tensor head_modulation;          // f32 [2, dim]
  Tensor head_w, head_b;           // [out_dim*4, dim] / [out_dim*4]
  // img_emb (i2v/flf2v)
  Tensor img_ln0_w, img_ln0_b;     // [clip_dim]
  Tensor img1_w, img1_b;           // [clip_dim, clip_dim] / [clip_dim]
  Tensor img3_w, img3_b;           // [dim, clip_dim] / [dim]
  Tensor img_ln4_w, img_ln4_b;     // [dim]
  Tensor emb_pos;                  // f32 [img_tokens, clip_dim] (flf2v only)
};

class WanDiT {
 public:
  // Checks every tensor's presence and shape against `cfg`, and that the weights are of the
  // variant cfg.model_type names. Errors name the tensor and the file.
  static WanDiT load(const TensorStore& w, const DitConfig& cfg);

  // x: [out_dim, T, h, w] noisy latent (h, w even); t: the integer timestep; context: [Lt, text_dim]
  // trimmed T5 output (Lt <= text_len; zero-padded inside); clip_fea: CLIP features
  // [img_tokens, clip_dim] (or [n, tok, clip_dim]), undefined for t2v; y: [in_dim - out_dim, T, h, w]
  // conditioning, undefined for t2v. Returns f32 [out_dim, T, h, w].
  Tensor forward(const Tensor& x, double t, const Tensor& context, const Tensor& clip_fea, const Tensor& y) const;
  // Moves every weight to `device`; forward() then runs there, its inputs and output stay on the
  // host. On CUDA the weights of the linear layers become `linear_dtype` (f32, or bf16 for the
  // tensor cores, half the memory) and everything else f32.
  void to(Device device, DType linear_dtype = DType::F32);

  const DitConfig& config() const { return cfg_; }
  const WanDiTWeights& weights() const { return w_; }

  // Every loaded weight under its checkpoint name and checkpoint shape, with a pointer to the held
  // tensor (which may be a view of another shape: patch_embedding.weight is held as
  // [dim, in_dim*4], the modulations as [6, dim] / [2, dim], emb_pos as [tokens, clip_dim]). For
  // merging LoRAs after load (models/lora.h): replace a tensor with a new one of the held shape;
  // never write into it, it may be the read-only memory map.
  struct NamedWeight {
    std::string name;
    Shape shape;
    Tensor* tensor;
  };
  std::vector<NamedWeight> named_weights();
  int64_t text_dim() const { return text_dim_; }
  int64_t clip_dim() const { return clip_dim_; }
  // Image context rows the model expects (flf2v: emb_pos rows; i2v: any, 0 here; t2v: 0).
  int64_t image_tokens() const { return img_tokens_; }

  // Debug hook: called with the name and value of each named intermediate (e.g. "blocks.0.x",
  // "e0", "context_img") during forward. Off when empty.
  using Probe = std::function<void(const std::string& name, const Tensor& value)>;
  void set_probe(Probe p) { probe_ = std::move(p); }

 private:
  Tensor self_attn(const WanSelfAttentionWeights& w, const Tensor& x, int64_t T, int64_t hp, int64_t wp) const;
  Tensor cross_attn(const WanCrossAttentionWeights& w, const Tensor& x, const Tensor& ctx_txt,
                    const Tensor& ctx_img) const;
  void probe(const std::string& name, const Tensor& v) const {
    if (probe_) probe_(name, v);
  }

  DitConfig cfg_;
  WanDiTWeights w_;
  int64_t text_dim_ = 0;
  int64_t clip_dim_ = 0;
  int64_t img_tokens_ = 0;
  bool has_img_ = false;
  Probe probe_;
};

// The sinusoidal timestep embedding: [cos(t*f_0) ... cos(t*f_{n/2-1}), sin(...)] with
// f_i = 10000^(-i/(n/2)), computed in double and rounded to f32. Returns f32 [dim].
Tensor sinusoidal_embedding(int64_t dim, double t);

// The tensors (name, shape) of a DiT checkpoint of c.model_type (text_dim: T5's width, clip_dim
// and image_tokens: the CLIP features' width and count): exactly what WanDiT::load reads and what
// the synthetic model writer writes; declared once here.
WeightShapes dit_weight_shapes(const DitConfig& c, int64_t text_dim, int64_t clip_dim, int64_t image_tokens);

}  // namespace ib
