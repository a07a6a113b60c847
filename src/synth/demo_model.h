// The hand-built weights of `synth-model --preset demo`: not trained, constructed so that the
// real pipeline (upstream's architecture, unchanged) turns two keyframes into a video that starts
// at the first, ends at the last and crossfades in between.
//
// VAE: a linear autoencoder inside upstream's layers. The encoder keeps the last frame of each
// 4-frame chunk and averages 8x8 pixel blocks into latent channels 0-2 (RGB); the decoder
// interpolates linearly between consecutive latent frames and upsamples bilinearly. Residual
// branches and attention projections are zero; the two RMS_norm → SiLU heads are kept exact by a
// large constant channel (the norm then divides by a constant) and mirrored channels
// (SiLU(z) − SiLU(−z) = z).
//
// DiT: one block whose self-attention, through 3-D RoPE, reads the conditioning latents of the
// first and the last latent frame at the same spatial position and blends them with weights
// (L − i)/L and i/L (a fitted sum of cosines of the frame distance approximating −log|Δ|, so the
// softmax weights come out proportional to the distances); the head returns the flow-matching
// velocity (x_t − target)/σ, with 1/σ from a piecewise-linear time embedding. Every sampler's
// x0 prediction is then the blend itself.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/model_config.h"

namespace ib {

// The demo preset's component sizes (a tiny T5 and CLIP with random weights; their outputs do not
// reach the video: the DiT's cross-attention output projection is zero).
DitConfig demo_dit_config();
VaeConfig demo_vae_config();

// The tensors of vae_weight_shapes(c) / dit_weight_shapes(c, ...), hand-built as described above.
std::vector<std::pair<std::string, Tensor>> demo_vae_weights(const VaeConfig& c);
std::vector<std::pair<std::string, Tensor>> demo_dit_weights(const DitConfig& c, int64_t text_dim, int64_t clip_dim,
                                                             int64_t image_tokens);

// The blend weight of the last keyframe that the demo DiT gives latent frame i of 0..L (i/L up to
// the fit's error), computed from the same cosine sums as its attention; for tests.
double demo_blend_weight(int64_t i, int64_t L);

}  // namespace ib
