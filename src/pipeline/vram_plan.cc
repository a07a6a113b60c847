// plan_vram (see vram_plan.h). The activation and VAE figures are the GPU engine's buffers as
// DitRunner allocates them (models/dit_memory.h) and the VAE decode's measured peak per output
// pixel (BENCHMARKS.md, bf16 decoder: 4.16 GiB at 832x480, 9.20 GiB at 1280x720 with cuDNN's padded
// output channels, 10.9 / 10.7 KB a pixel of one frame: the decode is chunked in time, so its peak
// does not grow with the frame count), and
// the VAE encode's the same way.
#include "pipeline/vram_plan.h"

#include <algorithm>
#include <cmath>

#include "core/check.h"
#include "models/dit_memory.h"

namespace ib {

namespace {
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
constexpr size_t kMargin = 512ull << 20;           // cuBLASLt/cuDNN workspaces, RoPE tables, rounding
constexpr size_t kVaeDecodePerPixel = 11u * 1024;  // bytes of decode peak per pixel of one frame
// bf16 encoder with a host video, its first levels one frame at a time: 4.4 KB a pixel besides the
// weights (bench/NOTES.md version 12: 1.90 / 3.98 GiB at 832x480 / 1280x720, the bench's device
// video taken off its peak). Whole chunks of four frames (faster): at most 12 KB a pixel, the f32
// encoder's measured 5.2-5.5 GiB at 832x480 with the device video and weights taken off (the bf16
// levels take less; not measured on their own).
constexpr size_t kVaeEncodeByFramePerPixel = 4608;
constexpr size_t kVaeEncodePerPixel = 12u * 1024;
constexpr size_t kVaeWeights = 512ull << 20;
double gib(size_t b) { return static_cast<double>(b) / kGiB; }
}  // namespace

std::string VramPlan::describe() const {
  return fmt::format(
      "VRAM plan: {} of {} DiT blocks on the GPU ({} streamed from host memory, {:.2f} GiB each); fixed weights "
      "{:.2f} GiB, activations {:.2f} GiB{}, contexts {:.2f} GiB{}, VAE encode {:.2f} GiB{}, VAE {:.2f} GiB{}; T5 on the {}",
      resident_blocks, blocks, blocks - resident_blocks, gib(block_bytes), gib(fixed_bytes), gib(activation_bytes),
      ffn_chunk_rows > 0 ? fmt::format(" (the FFN in chunks of {} rows)", ffn_chunk_rows) : "", gib(context_bytes),
      contexts_per_block ? " (keys and values projected per block)" : "", gib(vae_encode_bytes),
      vae_encode_by_frame ? " (its first levels a frame at a time)" : "",
      gib(vae_bytes),
      vae_tile > 0 ? fmt::format(" (decoded in tiles of {}x{} latent pixels, {} shared)", vae_tile, vae_tile_w, vae_overlap)
                   : "",
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
                   T5Placement t5_device, bool fp8_attention) {
  IB_CHECK(bytes_per_weight == 1 || bytes_per_weight == 2, "plan_vram: {} bytes per weight", bytes_per_weight);
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
  const DitActivationBytes act = dit_activation_bytes(c.dim, c.ffn_dim, fp8_attention, bytes_per_weight == 1);
  const size_t per_row = act.per_row, per_ffn_row = act.per_ffn_row;
  p.activation_bytes = (per_row + per_ffn_row) * L + kMargin;
  // Both guidance branches' cross-attention keys and values for every block; projected per block
  // (DitRunner::set_contexts_per_block), both branches' embedded tokens and one block's keys and
  // values for each.
  const auto ctx_rows = static_cast<size_t>(c.text_len + (img ? std::max<int64_t>(image_tokens, 257) : 0));
  p.context_bytes = 2 * static_cast<size_t>(c.num_layers) * ctx_rows * 2 * d * 2;
  const size_t context_per_block_bytes = 2 * ctx_rows * d * 2 + 2 * ctx_rows * 2 * d * 2;
  const size_t pixels = static_cast<size_t>(width) * static_cast<size_t>(height);
  p.vae_bytes = kVaeWeights + kVaeDecodePerPixel * pixels;
  const size_t encode_whole = kVaeWeights + kVaeEncodePerPixel * pixels;
  const size_t encode_by_frame = kVaeWeights + kVaeEncodeByFramePerPixel * pixels;
  p.vae_encode_bytes = encode_whole;
  p.t5_bytes = t5_gpu_bytes(t5, c.text_len);

  // The denoising holds the placed weights, the activations and the contexts; the encode before it
  // and the decode after it hold the placed weights and the VAE (the activations are returned to
  // the driver in between). The encode is not tiled: it is a floor of every squeeze. Two
  // squeezes, taken in this order when the budget needs them: the FFN in chunks of kFfnChunk rows
  // (its hidden activations shrink to one chunk's), then the contexts projected per block.
  constexpr int64_t kFfnChunk = 4096;
  const size_t ffn_saving =
      L > static_cast<size_t>(kFfnChunk) ? per_ffn_row * (L - static_cast<size_t>(kFfnChunk)) : 0;
  // The decode in tiles whose peak fits the denoising's working set, when whole frames take more
  // than that: strips across the whole short side where one at least 16 latent pixels wide fits
  // (the fewest tiles, so the least overlap decoded twice), else squares of at least 16 latent
  // pixels a side; neighbours share a quarter of a tile.
  const int64_t lat_h = height / 8, lat_w = width / 8;
  const size_t vae_frames = p.vae_bytes;
  struct Decode {
    int64_t tile_h = 0, tile_w = 0, overlap = 0;
    size_t bytes = 0;
  };
  const auto decode_within = [&](size_t denoise) {
    Decode dec{0, 0, 0, vae_frames};
    if (vae_frames <= denoise) return dec;
    const double px = static_cast<double>(denoise - kVaeWeights) / static_cast<double>(kVaeDecodePerPixel);
    const auto area = static_cast<int64_t>(px / 64.0);  // latent pixels a tile may hold
    const int64_t short_side = std::min(lat_h, lat_w), long_side = std::max(lat_h, lat_w);
    int64_t th = 0, tw = 0, overlap = 0;
    if (short_side * 16 <= area) {
      // n strips of width w sharing `overlap` cover the long side: n w - (n - 1) overlap >= long.
      int64_t w = long_side;
      for (int64_t n = 2; n <= long_side; ++n) {
        const int64_t base = (long_side + n - 1) / n;
        overlap = std::max<int64_t>(2, base / 4);
        w = (long_side + (n - 1) * overlap + n - 1) / n;
        if (short_side * w <= area || w <= 16) break;
      }
      w = std::max<int64_t>(w, 16);
      th = lat_h <= lat_w ? lat_h : w;
      tw = lat_h <= lat_w ? w : lat_w;
    } else {
      const int64_t side = std::max<int64_t>(16, static_cast<int64_t>(std::sqrt(static_cast<double>(area))));
      th = std::min(side, lat_h);
      tw = std::min(side, lat_w);
      overlap = std::max<int64_t>(2, side / 4);
    }
    if (th < lat_h || tw < lat_w)
      dec = {th, tw, overlap,
             kVaeWeights + kVaeDecodePerPixel * static_cast<size_t>(th * 8) * static_cast<size_t>(tw * 8)};
    return dec;
  };
  struct Squeeze {
    bool chunk_ffn = false, contexts_per_block = false;
    size_t denoise = 0;  // activations, contexts and the VAE's weights
    Decode dec;
  };
  const auto squeeze = [&](bool chunk_ffn, bool per_block) {
    Squeeze q{chunk_ffn, per_block, 0, {}};
    q.denoise = p.activation_bytes - (chunk_ffn ? ffn_saving : 0) +
                (per_block ? context_per_block_bytes : p.context_bytes) + kVaeWeights;
    q.dec = decode_within(q.denoise);
    return q;
  };
  const Squeeze levels[3] = {squeeze(false, false), squeeze(true, false), squeeze(true, true)};
  // The VAE's weights stay loaded through the denoising (CLIP leaves the GPU after encoding). The
  // minimum takes both squeezes and tiles; a budget that holds more uses whole frames, a whole FFN
  // and held contexts where it can.
  const size_t dit_min = p.fixed_bytes + 2 * p.block_bytes;
  const auto needs = [&](const Squeeze& q, size_t encode) {
    return dit_min + std::max({q.denoise, q.dec.bytes, encode});
  };
  p.minimum_bytes = needs(levels[2], encode_by_frame);
  if (budget == 0) {
    p.resident_blocks = p.blocks;
    p.t5_on_gpu = t5_device != T5Placement::CPU;
    return p;
  }
  IB_CHECK(budget >= p.minimum_bytes,
           "a GPU memory budget of {:.2f} GiB is too small for this generation ({}x{}, {} frames, {} weights): it needs "
           "at least {:.2f} GiB (DiT fixed weights {:.2f}, two streaming slots {:.2f}, and the larger of activations "
           "with contexts and VAE weights {:.2f} (the FFN in chunks of {} rows, the cross-attention's keys and values "
           "projected block by block), the VAE decode {:.2f}, in tiles where whole frames take more, and the VAE "
           "encode {:.2f})",
           gib(budget), width, height, frames, bytes_per_weight == 1 ? "fp8" : "bf16", gib(p.minimum_bytes),
           gib(p.fixed_bytes), gib(2 * p.block_bytes), gib(levels[2].denoise), kFfnChunk, gib(levels[2].dec.bytes),
           gib(encode_by_frame));
  // The squeezes in order (the encode one frame at a time only where even the last is not enough).
  int level = 0;
  while (level < 2 && budget < needs(levels[level], encode_by_frame)) ++level;
  const Squeeze& q = levels[level];
  if (budget < needs(q, encode_whole)) {
    p.vae_encode_by_frame = true;
    p.vae_encode_bytes = encode_by_frame;
  }
  if (q.chunk_ffn && ffn_saving > 0) {
    p.ffn_chunk_rows = kFfnChunk;
    p.activation_bytes -= ffn_saving;
  }
  if (q.contexts_per_block) {
    p.contexts_per_block = true;
    p.context_bytes = context_per_block_bytes;
  }
  const size_t denoise = q.denoise;
  const Decode dec = q.dec;
  if (dec.tile_h > 0 && budget < p.fixed_bytes + static_cast<size_t>(p.blocks) * p.block_bytes + vae_frames) {
    p.vae_tile = dec.tile_h;
    p.vae_tile_w = dec.tile_w;
    p.vae_overlap = dec.overlap;
    p.vae_bytes = dec.bytes;
  }
  const size_t working = std::max({denoise, p.vae_bytes, p.vae_encode_bytes});
  const size_t room = budget - p.fixed_bytes - working;  // for the blocks' linear layers
  if (room >= static_cast<size_t>(p.blocks) * p.block_bytes) {
    p.resident_blocks = p.blocks;
  } else {
    p.resident_blocks = std::min<int64_t>(p.blocks, static_cast<int64_t>((room - 2 * p.block_bytes) / p.block_bytes));
  }
  p.t5_on_gpu = t5_device == T5Placement::CUDA || (t5_device == T5Placement::Auto && p.t5_bytes <= budget);
  return p;
}

}  // namespace ib
