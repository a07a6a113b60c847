// The GPU engine's DiT (spec 7, precision map 7.9): the Wan2.1 transformer with bf16 activations
// between ops and an f32 residual stream, fused kernels (gpu/kernels.h), cuBLASLt products with
// their bias/GELU epilogues (gpu/gemm.h) and tensor-core attention (gpu/attention.h). Inputs and
// outputs stay on the device: one forward has no host synchronisation.
//
// The cross-attention keys and values of the text and image context do not change across steps:
// prepare() projects them once per generation into a DitContext, which each forward reuses.
//
// WanDiT (models/dit.h) stays the float32 reference; DitRunner takes its weights, a checkpoint's
// tensor by tensor (merging LoRAs on the device), or random ones of the real shapes (benchmarks)
// into its own device formats.
#pragma once

#include <array>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "gpu/attention.h"
#include "gpu/block_stream.h"
#include "gpu/gemm.h"
#include "gpu/kernels.h"
#include "io/model_config.h"
#include "models/dit.h"
#include "models/lora.h"

namespace ib::gpu {

struct DitBlockGpu {
  Tensor modulation;                 // f32 [6, dim]
  LinearWeight qkv, o;               // self-attention: q, k, v stacked [3*dim, dim]; o [dim, dim]
  Tensor norm_q, norm_k;             // f32 [dim]
  Tensor norm3_w, norm3_b;           // f32 [dim]
  LinearWeight cq, ckv, ckv_img, co; // cross-attention: q; k, v stacked; k_img, v_img stacked; o
  Tensor cnorm_q, cnorm_k, cnorm_k_img;  // f32 [dim]
  LinearWeight ffn0, ffn2;           // [ffn, dim] (+GELU), [dim, ffn]

  // The linear layers (what a VRAM budget streams; the f32 vectors stay on the device).
  std::array<LinearWeight*, 8> linears() { return {&qkv, &o, &cq, &ckv, &ckv_img, &co, &ffn0, &ffn2}; }
  std::array<const LinearWeight*, 8> linears() const { return {&qkv, &o, &cq, &ckv, &ckv_img, &co, &ffn0, &ffn2}; }
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

// Where each tensor of a block's linear layers sits in a streamed blob (256-byte aligned).
struct BlobEntry {
  size_t linear, part;  // index in DitBlockGpu::linears(); part 0: w, 1: scale, 2: bias
  size_t offset;
  Shape shape;
  DType dtype;
};

// One CFG branch's conditioning, projected for every block (bf16 [Lk, 2*dim] each, k normalised).
struct DitContext {
  std::vector<Tensor> kv_txt, kv_img;  // per block: [k | v] of the text and the image tokens
  // With DitRunner::set_contexts_per_block(true) prepare() keeps only the embedded text and image
  // tokens (bf16 [rows, dim]) and each forward projects one block's keys and values at a time.
  Tensor text_emb, image_emb;
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
  // resident: how many blocks (the first ones) keep their linear layers on the device; the others
  // go to page-locked host memory as they are converted, so the device never holds them all
  // (see place_blocks). Negative: all.
  static std::unique_ptr<DitRunner> create(const WanDiT& model, Format format = Format::BF16, int64_t resident = -1);
  // The same from a checkpoint, tensor by tensor: WanDiT::load's checks (and errors) on the
  // memory-mapped weights, then each tensor uploaded, its LoRA patches merged on the device in f32
  // (gpu/lora_merge.h; the files read and checked first, as apply_loras does), converted like
  // create() (the same bits when there is no LoRA), placed, and its pages of the map dropped
  // (TensorStore::release). Host memory holds one tensor at a time (plus the page-locked blobs
  // of streamed blocks), never the model; except for fp8 checkpoints (io/scaled_fp8_store.h),
  // whose weights WanDiT::load's checks dequantise on the host all at once.
  static std::unique_ptr<DitRunner> load(const TensorStore& store, const DitConfig& cfg,
                                         const std::vector<LoraSpec>& loras = {}, Format format = Format::BF16,
                                         int64_t resident = -1);
  // Random weights of the given shapes, made on the device (benchmarks; no file, no host copy),
  // with LoRAs for those shapes merged as load() merges them.
  static std::unique_ptr<DitRunner> synthetic(const DitConfig& cfg, int64_t text_dim, int64_t clip_dim,
                                              int64_t image_tokens, uint64_t seed = 1, Format format = Format::BF16,
                                              int64_t resident = -1, const std::vector<LoraSpec>& loras = {});
  // What the last create/load/synthetic took: the whole load, and the LoRA merge within it.
  struct LoadStats {
    double seconds = 0;
    double lora_seconds = 0;     // reading the LoRA files and merging them on the device
    size_t lora_tensors = 0;     // checkpoint tensors patched
  };
  const LoadStats& load_stats() const { return load_stats_; }

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
  // Whether both guidance branches fit one batched forward (forward_batch with two contexts) in
  // the device memory still free, with a quarter to spare.
  bool fits_batched_branches(int64_t tokens) const;
  // The FFN over chunks of this many token rows (0: all at once): its hidden activations (the
  // largest buffer of a forward, 27 KB a row at the release's width) then take one chunk. Same
  // numbers up to the products' accumulation order. What a tight VRAM budget asks for.
  void set_ffn_chunk_rows(int64_t rows) { ffn_chunk_rows_ = rows > 0 ? rows : 0; }
  int64_t ffn_chunk_rows() const { return ffn_chunk_rows_; }
  // Contexts prepared from now on hold only the embedded text and image tokens; each forward
  // projects a block's cross-attention keys and values just before that block's cross-attention
  // (two small products per block and branch: ~8 ms a forward at the release's width) instead of
  // holding all blocks' (~0.8 GiB per guidance branch). Same numbers. What a tight budget asks for.
  void set_contexts_per_block(bool on) { contexts_per_block_ = on; }
  bool contexts_per_block() const { return contexts_per_block_; }

  // The VRAM budget: keeps the first `resident` blocks' linear layers on the device and streams
  // the others' from page-locked host memory through two device slots, each block copied while
  // the previous one computes (gpu/block_stream.h). Same kernels, same numbers. Call once, before
  // the first prepare(); resident >= the layer count keeps everything on the device.
  void place_blocks(int64_t resident);
  int64_t resident_blocks() const;
  // Device bytes of one block's linear layers (the size of one streaming slot).
  size_t block_linear_bytes() const;
  // Device bytes of the weights that stay on the device whatever the placement.
  size_t fixed_bytes() const;
  // Host (page-locked) bytes of the streamed blocks; device ms spent copying them in the last pass.
  size_t streamed_host_bytes() const { return stream_ ? stream_->blob_bytes() * stream_->blobs() : 0; }
  double last_copy_ms() const { return stream_ ? stream_->copy_ms() : 0.0; }

  const DitConfig& config() const { return cfg_; }
  // The context widths and image tokens the weights take (T5's and CLIP's widths; emb_pos rows).
  int64_t text_dim() const { return text_dim_; }
  int64_t clip_dim() const { return clip_dim_; }
  int64_t image_tokens() const { return img_tokens_; }
  const DitWeightsGpu& weights() const { return w_; }
  Format format() const { return format_; }
  bool has_image() const { return has_img_; }
  void set_attention_backend(AttentionBackend b) { backend_ = b; }
  // Self-attention in fp8 (gpu/attention_fp8.h: q, k, v and the output in e4m3 with per-tensor
  // scales, through cuDNN) instead of bf16. Throws on GPUs without fp8 (compute capability < 8.9).
  void set_fp8_attention(bool on);
  bool fp8_attention() const { return fp8_attention_; }
  // FLOPs of one forward at L tokens (linear layers and attention, multiply-add = 2).
  double forward_flops(int64_t tokens) const;
  double self_attention_flops(int64_t tokens) const;

 private:
  DitConfig cfg_;
  DitWeightsGpu w_;
  int64_t text_dim_ = 0, clip_dim_ = 0, img_tokens_ = 0;
  bool has_img_ = false;
  AttentionBackend backend_ = AttentionBackend::Auto;
  bool fp8_attention_ = false;
  int64_t ffn_chunk_rows_ = 0;
  bool contexts_per_block_ = false;
  Format format_ = Format::BF16;
  LoadStats load_stats_;
  // The checkpoint's tensors by name, as the builder asks for them: host or device, any float
  // dtype, the checkpoint's values (LoRAs merged, for load and synthetic).
  using WeightFetch = std::function<Tensor(const std::string& name)>;
  // create, load and synthetic: every weight fetched once, in checkpoint order within a block,
  // and converted; each block then goes through add_block.
  static std::unique_ptr<DitRunner> build(const DitConfig& cfg, int64_t text_dim, int64_t clip_dim,
                                          int64_t image_tokens, const WeightFetch& fetch, Format format,
                                          int64_t resident);
  // Block g (linear layers in bf16) as the next block: quantised into format_ (block by block, so
  // the bf16 model is never whole on the device), appended, and past the first `resident` blocks
  // stashed to page-locked host memory (negative resident: none are).
  void add_block(DitBlockGpu g, int64_t resident);
  void count_bytes();
  // Block i as the kernels see it: its own tensors, or for a streamed block its vectors and the
  // linear layers in `slot` (call between acquire and release).
  const DitBlockGpu& block_view(size_t i, int slot, DitBlockGpu& scratch) const;
  // One pass over the blocks in order (prepare's and each forward's): enter(i) gives block i,
  // waiting for its copy when it is streamed; leave(i) once its kernels are queued.
  class BlockPass {
   public:
    explicit BlockPass(const DitRunner& r);
    const DitBlockGpu& enter(size_t i);
    void leave(size_t i);

   private:
    const DitRunner& r_;
    size_t next_ = 0;  // streamed blocks entered so far
    DitBlockGpu scratch_;
  };
  // Block b's linear layers into page-locked host memory (the first call makes the stream for
  // `streamed_blocks` blobs); finish_streaming() then makes the two slots' views.
  void stash_block(size_t b, size_t streamed_blocks);
  void finish_streaming();
  std::unique_ptr<BlobStream> stream_;
  std::vector<BlobEntry> stream_layout_;
  std::vector<int64_t> blob_of_;  // per block: -1 on the device, else its blob in stream_
  std::array<std::vector<LinearWeight>, 2> slot_linears_;  // views into the two slots
  // RoPE tables per token grid, made once (a host-to-device copy would synchronise the forward).
  struct Rope {
    Tensor store;
    RopeTables tables;
  };
  const RopeTables& rope_for(int64_t frames, int64_t height, int64_t width) const;
  Tensor project_context(const Tensor& src, const LinearWeight& kv, const Tensor& gamma) const;
  mutable std::mutex rope_mu_;
  mutable std::map<std::array<int64_t, 3>, Rope> rope_cache_;
};

}  // namespace ib::gpu
