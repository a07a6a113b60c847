// plan_vram (see vram_plan.h). The activation and VAE figures are the GPU engine's buffers as
// DitRunner allocates them and the VAE decode's measured peak per output pixel (BENCHMARKS.md:
// 7.4 GiB at 832x480, 16.4 GiB at 1280x720, ~20 KB a pixel of one frame: the decode is chunked in
// time, so its peak does not grow with the frame count).
#include "pipeline/vram_plan.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"

namespace ib {

namespace {
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr size_t kMargin = 512ull << 20;           // cuBLASLt/cuDNN workspaces, RoPE tables, rounding
constexpr size_t kVaeDecodePerPixel = 20u * 1024;  // bytes of decode peak per pixel of one frame
constexpr size_t kVaeWeights = 512ull << 20;
double gib(size_t b) { return static_cast<double>(b) / kGiB; }
}  // namespace

std::string VramPlan::describe() const {
  return fmt::format(
      "VRAM plan: {} of {} DiT blocks on the GPU ({} streamed from host memory, {:.2f} GiB each); fixed weights "
      "{:.2f} GiB, activations {:.2f} GiB{}, contexts {:.2f} GiB, VAE {:.2f} GiB{}; T5 on the {}",
      resident_blocks, blocks, blocks - resident_blocks, gib(block_bytes), gib(fixed_bytes), gib(activation_bytes),
      ffn_chunk_rows > 0 ? fmt::format(" (the FFN in chunks of {} rows)", ffn_chunk_rows) : "", gib(context_bytes),
      gib(vae_bytes),
      vae_tile > 0 ? fmt::format(" (decoded in tiles of {} latent pixels, {} shared)", vae_tile, vae_overlap) : "",
      t5_on_gpu ? "GPU" : "CPU");
}

size_t t5_gpu_bytes(const T5Config& t5, int64_t text_len) {
  // bf16 weights (the embedding table included) and the activations at text_len.
  const auto td = static_cast<size_t>(t5.dim);
  return (static_cast<size_t>(t5.vocab) * td +
          static_cast<size_t>(t5.num_layers) *
              (4 * td * static_cast<size_t>(t5.dim_attn) + 3 * td * static_cast<size_t>(t5.dim_ffn))) *
             2 +
         static_cast<size_t>(text_len) * static_cast<size_t>(t5.dim_ffn) * 4 * 8;
}

VramPlan plan_vram(const DitConfig& c, const T5Config& t5, int64_t clip_dim, int64_t image_tokens, int64_t text_dim,
                   int bytes_per_weight, int64_t width, int64_t height, int64_t frames, size_t budget,
                   const std::string& t5_device, bool fp8_attention) {
  IB_CHECK(bytes_per_weight == 1 || bytes_per_weight == 2, "plan_vram: {} bytes per weight", bytes_per_weight);
  IB_CHECK(t5_device == "auto" || t5_device == "cpu" || t5_device == "cuda",
           "--t5-device '{}': expected auto, cpu or cuda", t5_device);
  const auto d = static_cast<size_t>(c.dim), f = static_cast<size_t>(c.ffn_dim);
  const bool img = c.model_type != "t2v";
  VramPlan p;
  p.blocks = c.num_layers;
  // One block's linear layers: q/k/v, o, cross q, k/v, (image k/v), o, FFN up and down; fp8 adds
  // an f32 scale per output row; the biases stay bf16.
  const size_t rows = 3 * d + d + d + 2 * d + (img ? 2 * d : 0) + d + f + d;
  const size_t weights = (10 * d * d - (img ? 0 : 2 * d * d) + 2 * d * f) * static_cast<size_t>(bytes_per_weight);
  p.block_bytes = weights + rows * (2 + (bytes_per_weight == 1 ? 4 : 0));
  const auto cd = static_cast<size_t>(clip_dim);
  p.fixed_bytes = d * static_cast<size_t>(c.in_dim) * 4 * 2 + (d * static_cast<size_t>(text_dim) + d * d) * 2 +
                  (d * static_cast<size_t>(c.freq_dim) + d * d + 6 * d * d) * 4 +
                  static_cast<size_t>(c.out_dim) * 4 * d * 4 + (img ? (cd * cd + cd * d) * 2 : 0) +
                  static_cast<size_t>(image_tokens) * cd * 4 + static_cast<size_t>(c.num_layers) * 13 * d * 4;
  const int64_t lat_t = (frames - 1) / 4 + 1;
  const auto L = static_cast<size_t>(lat_t * (height / 16) * (width / 16));
  // DitRunner's buffers per row (the f32 stream; bf16 a, qkv (later the head's f32 input), att,
  // att2, proj; with fp8 attention the e4m3 q | k | v and output; with fp8 products the e4m3 copy
  // of a width-d input), and per FFN row its hidden activations (with fp8, their e4m3 copy too).
  const size_t per_row = d * 4 + d * 2 * 7 + (fp8_attention ? 4 * d : 0) + (bytes_per_weight == 1 ? d : 0);
  const size_t per_ffn_row = f * 2 + (bytes_per_weight == 1 ? f : 0);
  p.activation_bytes = (per_row + per_ffn_row) * L + kMargin;
  p.context_bytes = 2 * static_cast<size_t>(c.num_layers) *
                    static_cast<size_t>(c.text_len + (img ? std::max<int64_t>(image_tokens, 257) : 0)) * 2 * d * 2;
  p.vae_bytes = kVaeWeights + kVaeDecodePerPixel * static_cast<size_t>(width) * static_cast<size_t>(height);
  p.t5_bytes = t5_gpu_bytes(t5, c.text_len);

  // The denoising holds the placed weights, the activations and the contexts; the decode holds the
  // placed weights and the VAE (the activations are returned to the driver in between). With the
  // FFN in chunks of kFfnChunk rows its hidden activations shrink to one chunk's.
  constexpr int64_t kFfnChunk = 4096;
  const size_t ffn_saving =
      L > static_cast<size_t>(kFfnChunk) ? per_ffn_row * (L - static_cast<size_t>(kFfnChunk)) : 0;
  const size_t denoise_whole = p.activation_bytes + p.context_bytes + kVaeWeights;
  const size_t denoise_chunked = denoise_whole - ffn_saving;
  // The decode in square tiles whose peak fits the denoising's working set (at least 16 latent
  // pixels a side, a quarter of a tile shared), when whole frames take more than that.
  const int64_t lat_h = height / 8, lat_w = width / 8;
  const size_t vae_frames = p.vae_bytes;
  struct Decode {
    int64_t tile = 0;
    size_t bytes = 0;
  };
  const auto decode_within = [&](size_t denoise) {
    Decode dec{0, vae_frames};
    if (vae_frames <= denoise) return dec;
    const double px = static_cast<double>(denoise - kVaeWeights) / static_cast<double>(kVaeDecodePerPixel);
    const int64_t side = std::max<int64_t>(16, static_cast<int64_t>(std::sqrt(px)) / 8);
    if (side < lat_h || side < lat_w)
      dec = {side, kVaeWeights + kVaeDecodePerPixel * static_cast<size_t>(std::min(side, lat_h) * 8) *
                                     static_cast<size_t>(std::min(side, lat_w) * 8)};
    return dec;
  };
  // The VAE's weights stay loaded through the denoising (CLIP leaves the GPU after encoding). The
  // minimum allows tiles and the FFN in chunks; a budget that holds more uses whole frames and a
  // whole FFN where it can.
  const size_t dit_min = p.fixed_bytes + 2 * p.block_bytes;
  const Decode dec_whole = decode_within(denoise_whole), dec_chunked = decode_within(denoise_chunked);
  p.minimum_bytes = dit_min + std::max(denoise_chunked, dec_chunked.bytes);
  if (budget == 0) {
    p.resident_blocks = p.blocks;
    p.t5_on_gpu = t5_device != "cpu";
    return p;
  }
  IB_CHECK(budget >= p.minimum_bytes,
           "a GPU memory budget of {:.2f} GiB is too small for this generation ({}x{}, {} frames, {} weights): it needs "
           "at least {:.2f} GiB (DiT fixed weights {:.2f}, two streaming slots {:.2f}, and the larger of activations "
           "with contexts and VAE weights {:.2f} (the FFN in chunks of {} rows) and the VAE decode {:.2f}, in tiles "
           "where whole frames take more)",
           gib(budget), width, height, frames, bytes_per_weight == 1 ? "fp8" : "bf16", gib(p.minimum_bytes),
           gib(p.fixed_bytes), gib(2 * p.block_bytes), gib(denoise_chunked), kFfnChunk, gib(dec_chunked.bytes));
  const bool chunk = ffn_saving > 0 && budget < dit_min + std::max(denoise_whole, dec_whole.bytes);
  if (chunk) {
    p.ffn_chunk_rows = kFfnChunk;
    p.activation_bytes -= ffn_saving;
  }
  const size_t denoise = chunk ? denoise_chunked : denoise_whole;
  const Decode dec = chunk ? dec_chunked : dec_whole;
  if (dec.tile > 0 && budget < p.fixed_bytes + static_cast<size_t>(p.blocks) * p.block_bytes + vae_frames) {
    p.vae_tile = dec.tile;
    p.vae_overlap = std::max<int64_t>(2, dec.tile / 4);
    p.vae_bytes = dec.bytes;
  }
  const size_t working = std::max(denoise, p.vae_bytes);
  const size_t room = budget - p.fixed_bytes - working;  // for the blocks' linear layers
  if (room >= static_cast<size_t>(p.blocks) * p.block_bytes) {
    p.resident_blocks = p.blocks;
  } else {
    p.resident_blocks = std::min<int64_t>(p.blocks, static_cast<int64_t>((room - 2 * p.block_bytes) / p.block_bytes));
  }
  p.t5_on_gpu = t5_device == "cuda" || (t5_device == "auto" && p.t5_bytes <= budget);
  return p;
}

}  // namespace ib
