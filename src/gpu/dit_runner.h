// The GPU engine's DiT (spec 7, precision map 7.9): the Wan2.1 transformer with bf16 activations
// between ops and an f32 residual stream, fused kernels (gpu/kernels.h), cuBLASLt products with
// their bias/GELU epilogues (gpu/gemm.h) and tensor-core attention (gpu/attention.h). Inputs and
// outputs stay on the device: one forward has no host synchronisation.
//
// The cross-attention keys and values of the text and image context do not change across steps:
// prepare() projects them once per generation into a DitContext, which each forward reuses.
//
// WanDiT (models/dit.h) stays the float32 reference; DitRunner takes its weights (or random ones
// of the real shapes, for benchmarks) into its own device formats.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpu/attention.h"
#include "gpu/gemm.h"
#include "gpu/kernels.h"
#include "io/model_config.h"
#include "models/dit.h"

namespace ib::gpu {

struct DitBlockGpu {
  Tensor modulation;                 // f32 [6, dim]
  LinearWeight qkv, o;               // self-attention: q, k, v stacked [3*dim, dim]; o [dim, dim]
  Tensor norm_q, norm_k;             // f32 [dim]
  Tensor norm3_w, norm3_b;           // f32 [dim]
  LinearWeight cq, ckv, ckv_img, co; // cross-attention: q; k, v stacked; k_img, v_img stacked; o
  Tensor cnorm_q, cnorm_k, cnorm_k_img;  // f32 [dim]
  LinearWeight ffn0, ffn2;           // [ffn, dim] (+GELU), [dim, ffn]
};

// The rest runs once per step or per generation in f32 through the op layer (device tensors).
struct DitWeightsGpu {
  LinearWeight patch;                                   // [dim, in_dim*4]
  Tensor text0_w, text0_b, text2_w, text2_b;            // bf16 weights, f32 biases
  Tensor time0_w, time0_b, time2_w, time2_b;            // f32 (upstream keeps the time MLP in f32)
  Tensor time_proj_w, time_proj_b;                      // f32 [6*dim, dim]
  Tensor head_modulation, head_w, head_b;               // f32
  Tensor img_ln0_w, img_ln0_b, img1_w, img1_b, img3_w, img3_b, img_ln4_w, img_ln4_b, emb_pos;
  std::vector<DitBlockGpu> blocks;
  size_t bytes = 0;  // device bytes of all of the above
};

// One CFG branch's conditioning, projected for every block (bf16 [Lk, 2*dim] each, k normalised).
struct DitContext {
  std::vector<Tensor> kv_txt, kv_img;
  int64_t text_rows = 0, image_rows = 0;
};

// Where the time of one forward goes, from device events around each kind of op (summed over the
// blocks). Only when asked for: the events cost a little.
struct DitProfile {
  std::map<std::string, double> ms;
  double total_ms = 0;
};

class DitRunner {
 public:
  using Format = LinearWeight::Format;
  // The model's weights (host or device, any float dtype) converted into the engine's formats:
  // every block's linear layers in `format` (FP8: quantised per output channel from their bf16
  // rounding), the rest as spec 7.9 says.
  static std::unique_ptr<DitRunner> create(const WanDiT& model, Format format = Format::BF16);
  // Random weights of the given shapes, made on the device (benchmarks; no file, no host copy).
  static std::unique_ptr<DitRunner> synthetic(const DitConfig& cfg, int64_t text_dim, int64_t clip_dim,
                                              int64_t image_tokens, uint64_t seed = 1, Format format = Format::BF16);

  // context: [Lt <= text_len, text_dim] (zero-padded to text_len inside, as upstream); clip_fea:
  // [img_tokens, clip_dim] or [n, tok, clip_dim], undefined for t2v. Host or device tensors.
  DitContext prepare(const Tensor& context, const Tensor& clip_fea) const;

  // x: f32 device [out_dim, T, h, w]; y: f32 device [in_dim - out_dim, T, h, w] (undefined for
  // t2v). Returns the f32 device velocity [out_dim, T, h, w]. Queued on the default stream.
  Tensor forward(const Tensor& x, double t, const DitContext& ctx, const Tensor& y, DitProfile* profile = nullptr) const;
  // The same latent through several contexts in one forward (the two guidance branches: every
  // product, norm and self-attention runs once over the stacked rows). One velocity per context.
  std::vector<Tensor> forward_batch(const Tensor& x, double t, const std::vector<const DitContext*>& ctxs,
                                    const Tensor& y, DitProfile* profile = nullptr) const;
  // Device bytes of one forward's activations at L tokens for `batch` contexts.
  size_t activation_bytes(int64_t tokens, int64_t batch) const;

  const DitConfig& config() const { return cfg_; }
  const DitWeightsGpu& weights() const { return w_; }
  Format format() const { return format_; }
  bool has_image() const { return has_img_; }
  void set_attention_backend(AttentionBackend b) { backend_ = b; }
  // FLOPs of one forward at L tokens (linear layers and attention, multiply-add = 2).
  double forward_flops(int64_t tokens) const;
  double self_attention_flops(int64_t tokens) const;

 private:
  DitConfig cfg_;
  DitWeightsGpu w_;
  int64_t text_dim_ = 0, clip_dim_ = 0, img_tokens_ = 0;
  bool has_img_ = false;
  AttentionBackend backend_ = AttentionBackend::Auto;
  Format format_ = Format::BF16;
  // Each block's linear layers into format_, then w_.bytes counted.
  void finish_weights();
  // RoPE tables per token grid, made once (a host-to-device copy would synchronise the forward).
  struct Rope {
    Tensor store;
    RopeTables tables;
  };
  const RopeTables& rope_for(int64_t frames, int64_t height, int64_t width) const;
  mutable std::mutex rope_mu_;
  mutable std::map<std::array<int64_t, 3>, Rope> rope_cache_;
};

}  // namespace ib::gpu
