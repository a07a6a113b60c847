// Wan-VAE (upstream wan/modules/vae.py: WanVAE_ with Encoder3d and Decoder3d): the causal 3-D
// video autoencoder, 8× spatial and 4× temporal compression (for the release's config). Both
// directions run chunk by chunk with per-layer feature caches (spec §6.4), so working memory is
// bounded by one chunk; only the input and the output grow with the frame count.
#pragma once

#include <functional>
#include <variant>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"
#include "io/tensor_store.h"

namespace ib {

namespace vae {

// Weights of a conv: [Cout, Cin, kt, kh, kw] (2-D resample convs are stored as kt = 1) and [Cout].
struct Conv {
  Tensor weight, bias;
};

// RMS_norm → SiLU → CausalConv3d → RMS_norm → SiLU → (dropout) → CausalConv3d, plus a 1×1×1
// shortcut when in_dim != out_dim (`residual.{0,2,3,6}`, `shortcut`).
struct ResidualBlock {
  int64_t in_dim = 0, out_dim = 0;
  Tensor norm1, norm2;  // gamma [C, 1, 1, 1]
  Conv conv1, conv2;    // [out, in, 3, 3, 3], [out, out, 3, 3, 3]
  Conv shortcut;        // [out, in, 1, 1, 1]; undefined when in_dim == out_dim
};

// Single-head self-attention over the pixels of each frame (`norm`, `to_qkv`, `proj`).
struct AttentionBlock {
  int64_t dim = 0;
  Tensor norm;           // gamma [C, 1, 1]
  Tensor qkv_w, qkv_b;   // to_qkv as [3C, C], [3C]: rows 0..C-1 are q, C..2C-1 k, 2C..3C-1 v
  Conv proj;             // [C, C, 1, 1, 1]
};

enum class ResampleMode { Upsample2d, Upsample3d, Downsample2d, Downsample3d };

struct Resample {
  ResampleMode mode = ResampleMode::Downsample2d;
  int64_t dim = 0;
  Conv resample;   // `resample.1`: [C, C, 1, 3, 3] (down) or [C/2, C, 1, 3, 3] (up)
  Conv time_conv;  // [C, C, 3, 1, 1] (downsample3d) or [2C, C, 3, 1, 1] (upsample3d); else undefined
};

using Layer = std::variant<ResidualBlock, AttentionBlock, Resample>;

struct Encoder3d {
  Conv conv1;                     // [dims[0], 3, 3, 3, 3]
  std::vector<Layer> downsamples;
  std::vector<Layer> middle;      // ResidualBlock, AttentionBlock, ResidualBlock
  Tensor head_norm;               // [C, 1, 1, 1]
  Conv head_conv;                 // [2·z_dim, C, 3, 3, 3]
};

struct Decoder3d {
  Conv conv1;                     // [dims[0], z_dim, 3, 3, 3]
  std::vector<Layer> middle;
  std::vector<Layer> upsamples;
  Tensor head_norm;               // [C, 1, 1, 1]
  Conv head_conv;                 // [3, C, 3, 3, 3]
};

}  // namespace vae

// Called after each chunk of an encode or decode with the chunks done and the chunks in all; it
// may throw (ib::Cancelled) to stop between chunks. On CUDA a chunk's kernels may still be running
// when it is called (nothing here synchronises), so it paces progress, not the device.
using VaeChunkFn = std::function<void(int64_t done, int64_t total)>;

class WanVAE {
 public:
  // Builds the layer list from cfg exactly as upstream's constructors do and checks every weight's
  // presence and shape (and that the checkpoint holds no tensor the config does not explain).
  // Only z_dim = 16 is supported (the latent normalisation constants exist only for it).
  static WanVAE load(const TensorStore& w, const VaeConfig& cfg);

  // Moves the weights to `device`. conv_dtype is the dtype of the conv and attention-projection
  // weights: f32 (exact) or, on CUDA only, bf16 (bf16 operands on the tensor cores with f32
  // accumulation, like upstream's bf16 autocast; half the weight memory). Norms and biases stay
  // f32, and so do the activations between the layers, except in the encoder's downsampling and
  // the decoder's upsampling levels with bf16 weights: there they are bf16 too (half the memory
  // and traffic, as under upstream's bf16 autocast).
  void to(Device device, DType conv_dtype = DType::F32);
  Device device() const { return device_; }
  DType conv_dtype() const { return conv_dtype_; }

  // video: f32 [3, F, H, W] in [-1, 1] with F = 1 + 4k and H, W multiples of 8. Returns the
  // normalised latent mean [z_dim, 1 + (F-1)/4, H/8, W/8] on the model's device (an input on
  // another device goes over a frame at a time, so a host video is never whole on the GPU).
  // Chunks: 1 + (F-1)/4.
  Tensor encode(const Tensor& video, const VaeChunkFn& on_chunk = {}) const;
  // The encoder's first levels (up to the first temporal downsampling) take this many frames of a
  // chunk at a time: 0 (the default) the whole chunk, 1 the least memory (a quarter of the encode's
  // full-resolution working set, ~15% slower on the GPU). Same result. What a tight VRAM budget
  // asks for (VramPlan::vae_encode_by_frame).
  void set_encode_frames_per_pass(int64_t frames) { encode_frames_per_pass_ = frames > 0 ? frames : 0; }
  // Diagnostic: the passes the encoder's first levels took in the last encode() that finished on
  // this model: one per chunk for whole chunks, one per frame at one frame a pass (so 1 + F-1 for F
  // frames). It shows which path ran, which the latent (the same either way) cannot. Written by
  // encode(), so it means something only while encodes on this model do not overlap (as
  // set_encode_frames_per_pass already assumes).
  int64_t last_encode_passes() const { return last_encode_passes_; }
  // Exact reuse of repeated work in encode() (on by default): a unit of the encoder (a conv, a
  // residual block, a resampling) whose input and cached frames are the same as at its previous
  // call is skipped and its previous output used, bit for bit what it would compute. FLF2V's
  // conditioning video (first frame, zeros, last frame) repeats chunk after chunk, so most of its
  // first levels' work goes. Only a host video's frames are compared; off, every unit runs.
  void set_encode_memo(bool on) { encode_memo_ = on; }
  // Diagnostic, as last_encode_passes(): the unit calls the last encode() skipped.
  int64_t last_encode_skipped() const { return last_encode_skipped_; }
  // latent: normalised f32 [z_dim, T, h, w]. Returns [3, 1 + 4(T-1), 8h, 8w] clamped to [-1, 1],
  // on the model's device. Chunks: T.
  Tensor decode(const Tensor& latent, const VaeChunkFn& on_chunk = {}) const;
  // decode() a chunk at a time: frames(chunk, first) gets each chunk's frames [3, n, 8h, 8w]
  // (clamped, on the model's device; the tensor may be reused once the call returns, so a caller
  // that keeps them copies them) and the index of its first frame; nothing else is assembled.
  // decode() is this with the chunks copied into one video.
  using FramesFn = std::function<void(const Tensor& frames, int64_t first_frame)>;
  // The video decode() makes of `latent`: [3, 1 + 4(T-1), 8h, 8w]; checks the latent (f32
  // [z_dim, T >= 1, h > 0, w > 0]) and fails with a message naming it otherwise.
  Shape decoded_shape(const Tensor& latent) const;
  void decode_frames(const Tensor& latent, const FramesFn& frames, const VaeChunkFn& on_chunk = {}) const;

  const VaeConfig& config() const { return cfg_; }
  int64_t temporal_factor() const { return temporal_factor_; }  // 4 for the release
  int64_t spatial_factor() const { return spatial_factor_; }    // 8 for the release

 private:
  VaeConfig cfg_;
  Device device_ = Device::CPU;
  DType conv_dtype_ = DType::F32;
  int64_t encode_frames_per_pass_ = 0;
  mutable int64_t last_encode_passes_ = 0;  // see last_encode_passes()
  bool encode_memo_ = true;
  mutable int64_t last_encode_skipped_ = 0;  // see last_encode_skipped()
  int64_t temporal_factor_ = 4, spatial_factor_ = 8;
  vae::Encoder3d encoder_;
  vae::Decoder3d decoder_;
  vae::Conv conv1_;  // top-level 1×1×1 on the encoder output; only its first z_dim rows (the mean)
  vae::Conv conv2_;  // top-level 1×1×1 on the latent before the decoder
  std::vector<float> mean_, inv_std_;
};

// The tensors (name, shape) of a Wan VAE checkpoint: exactly what WanVAE::load reads and what
// the synthetic model writer writes; declared once here.
WeightShapes vae_weight_shapes(const VaeConfig& c);

}  // namespace ib
