// The VRAM budget (--vram-budget): what the GPU engine must hold for one generation and how many
// of the DiT's blocks stay on the device, the others streamed from page-locked host memory
// (gpu/block_stream.h). Pure arithmetic on the model's shapes and the video size, so a budget that
// cannot be met is refused before any work starts, naming the minimum.
#pragma once

#include <cstdint>
#include <string>

#include "inbetween/pipeline.h"
#include "io/model_config.h"
#include "models/vae_tiling.h"

namespace ib {

struct VramPlan {
  int64_t blocks = 0;           // the DiT's blocks
  int64_t resident_blocks = 0;  // kept on the device (the rest streamed through two slots)
  bool t5_on_gpu = true;        // T5 runs on the GPU (else on the CPU, in f32)
  // Device bytes, each estimated from the shapes:
  size_t block_bytes = 0;       // one block's linear layers (one streaming slot)
  size_t fixed_bytes = 0;       // embeddings, head, the blocks' vectors
  size_t activation_bytes = 0;  // one forward's activations (one branch) and its workspaces
  size_t context_bytes = 0;     // the cross-attention keys/values of both guidance branches
  size_t vae_bytes = 0;         // the VAE's weights and its decode's peak (one temporal chunk)
  size_t vae_encode_bytes = 0;  // the VAE's weights and its encode's peak (a host video; one chunk)
  size_t t5_bytes = 0;          // T5 in bf16 with its activations
  size_t minimum_bytes = 0;     // the least budget that runs this generation (T5 on the CPU)
  // The VAE decode in spatial tiles of this many latent pixels (0: whole frames) sharing
  // vae_overlap: under a budget, tiles keep the decode's peak within the denoising's.
  int64_t vae_tile = 0, vae_overlap = 0;
  int64_t vae_tile_w = 0;  // the tiles' width (vae_tile is their height)
  VaeTiling vae_tiling() const { return {vae_tile, vae_overlap, vae_tile_w}; }
  // The FFN over chunks of this many token rows (0: all at once; DitRunner::set_ffn_chunk_rows):
  // chosen when the whole FFN's hidden activations would not fit the budget.
  int64_t ffn_chunk_rows = 0;
  // The cross-attention's keys and values projected block by block in each forward
  // (DitRunner::set_contexts_per_block) instead of held for all blocks: chosen after the FFN's
  // chunks when those are not enough. context_bytes is then the per-block figure.
  bool contexts_per_block = false;
  // The VAE encoder's first levels one frame at a time (WanVAE::set_encode_frames_per_pass(1)):
  // chosen when the whole-chunk encode would not fit; vae_encode_bytes is then that figure.
  bool vae_encode_by_frame = false;
  std::string describe() const;  // one line for the log
};

// Device bytes of T5 in bf16 with its activations at text_len (VramPlan::t5_bytes).
size_t t5_gpu_bytes(const T5Config& t5, int64_t text_len);

// bytes_per_weight: 2 (bf16) or 1 (fp8) for the blocks' linear layers. budget 0: no budget (every
// block resident, T5 on the GPU unless t5_device is CPU). fp8_attention: the self-attention's e4m3
// copies of q, k, v and its output. Throws when the budget is below the minimum, with both
// figures.
VramPlan plan_vram(const DitConfig& dit, const T5Config& t5, int64_t clip_dim, int64_t image_tokens,
                   int64_t text_dim, int bytes_per_weight, int64_t width, int64_t height, int64_t frames,
                   size_t budget, T5Placement t5_device, bool fp8_attention = false);

}  // namespace ib
