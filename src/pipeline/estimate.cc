#include "pipeline/estimate.h"

#include <cmath>
#include <vector>

namespace ib {

namespace {

// FLOPs (2 per multiply-add) of a k-tap convolution from cin to cout channels, per output position.
double conv(double taps, double cin, double cout) { return 2.0 * taps * cin * cout; }

// Per-frame single-head attention over P positions of c channels: q, k, v, the scores and the
// weighted sum, the projection.
double pixel_attention(double positions, double c) {
  return 2.0 * positions * 4.0 * c * c + 4.0 * positions * positions * c;
}

struct VaeWork {
  double encode = 0, decode = 0;
};

// The Wan-VAE's convolutions and middle attention, level by level (vae.cc's layer lists).
VaeWork vae_work(const VaeConfig& c, double frames, double height, double width) {
  const auto levels = static_cast<int64_t>(c.dim_mult.size());
  std::vector<double> dims{static_cast<double>(c.dim)};
  for (int64_t u : c.dim_mult) dims.push_back(static_cast<double>(c.dim * u));
  const double pixels = height * width, z = static_cast<double>(c.z_dim);
  VaeWork w;

  // Encoder: level i at 1/4^i of the pixels and 1/t of the frames.
  double t = 1.0, in = dims[0];
  w.encode += conv(27, 3, dims[0]) * pixels * frames;
  for (int64_t i = 0; i < levels; ++i) {
    const double pos = pixels / std::pow(4.0, static_cast<double>(i)) * frames / t;
    const double out = dims[static_cast<size_t>(i) + 1];
    for (int64_t r = 0; r < c.num_res_blocks; ++r) {
      w.encode += (conv(27, in, out) + conv(27, out, out)) * pos;
      in = out;
    }
    if (i + 1 < levels) {
      const bool temporal = c.temporal_downsample[static_cast<size_t>(i)];
      w.encode += conv(9, in, in) * pos / 4.0;
      if (temporal) {
        t *= 2.0;
        w.encode += conv(3, in, in) * pos / 8.0;
      }
    }
  }
  const double small = pixels / std::pow(4.0, static_cast<double>(levels - 1));
  w.encode += 2.0 * 2.0 * conv(27, in, in) * small * frames / t + pixel_attention(small, in) * frames / t;
  w.encode += conv(27, in, 2 * z) * small * frames / t;

  // Decoder: the same levels in reverse, num_res_blocks + 1 blocks each, from the latent's frames.
  std::vector<double> ddims{static_cast<double>(c.dim * c.dim_mult.back())};
  for (auto it = c.dim_mult.rbegin(); it != c.dim_mult.rend(); ++it) ddims.push_back(static_cast<double>(c.dim * *it));
  double dt = t, dpos = small;
  w.decode += conv(27, z, ddims[0]) * dpos * frames / dt;
  w.decode +=
      2.0 * 2.0 * conv(27, ddims[0], ddims[0]) * dpos * frames / dt + pixel_attention(dpos, ddims[0]) * frames / dt;
  for (int64_t i = 0; i < levels; ++i) {
    double d_in = ddims[static_cast<size_t>(i)] / (i > 0 ? 2.0 : 1.0);
    const double out = ddims[static_cast<size_t>(i) + 1];
    const double pos = dpos * frames / dt;
    for (int64_t r = 0; r <= c.num_res_blocks; ++r) {
      w.decode += (conv(27, d_in, out) + conv(27, out, out)) * pos;
      d_in = out;
    }
    if (i + 1 < levels) {
      const bool temporal = c.temporal_downsample[static_cast<size_t>(levels - 2 - i)];
      if (temporal) {
        w.decode += conv(3, out, 2 * out) * pos;
        dt /= 2.0;
      }
      dpos *= 4.0;
      w.decode += conv(9, out, out / 2) * dpos * frames / dt;
    }
  }
  w.decode += conv(27, ddims.back(), 3) * pixels * frames;
  return w;
}

}  // namespace

WorkCount count_work(const ModelFolder& f, int64_t frames, int64_t height, int64_t width, int steps,
                     int forwards_per_step) {
  WorkCount w;
  const DitConfig& d = f.dit;
  const bool image = d.model_type != "t2v";
  // umT5 over the prompt's own tokens (T5Encoder::encode_prefix), counted at text_len, their most
  // (the prompt is not tokenised here): its products and attention.
  const T5Config& t5 = f.t5;
  const double lt = static_cast<double>(d.text_len);
  const double t5_layer =
      2.0 * lt * (4.0 * static_cast<double>(t5.dim * t5.dim_attn) + 3.0 * static_cast<double>(t5.dim * t5.dim_ffn)) +
      4.0 * lt * lt * static_cast<double>(t5.dim_attn);
  w.text = t5_layer * static_cast<double>(t5.num_layers) * (forwards_per_step > 1 ? 2.0 : 1.0);
  // CLIP ViT over (image_size / patch)^2 + 1 tokens per keyframe.
  double image_tokens = 0;
  if (image) {
    const ClipConfig& c = f.clip;
    const auto n = static_cast<double>(c.image_tokens());
    const double dim = static_cast<double>(c.dim), mlp = dim * static_cast<double>(c.mlp_ratio);
    const double layer = 2.0 * n * (4.0 * dim * dim + 2.0 * dim * mlp) + 4.0 * n * n * dim;
    const double images = d.model_type == "flf2v" ? 2.0 : 1.0;
    w.clip = layer * static_cast<double>(c.num_layers - 1) * images;
    image_tokens = n * images;
  }
  // The VAE: the conditioning video in (image models), the video out.
  const VaeWork v =
      vae_work(f.vae, static_cast<double>(frames), static_cast<double>(height), static_cast<double>(width));
  if (image) w.vae_encode = v.encode;
  w.vae_decode = v.decode;
  // The DiT: L tokens of 2x2 latent pixels per latent frame.
  const double L =
      static_cast<double>((frames - 1) / 4 + 1) * static_cast<double>(height / 16) * static_cast<double>(width / 16);
  const double D = static_cast<double>(d.dim), F = static_cast<double>(d.ffn_dim);
  const double products = 2.0 * L * (6.0 * D * D + 2.0 * D * F),
               attention = 4.0 * L * L * D + 4.0 * L * (lt + image_tokens) * D;
  const double forwards = static_cast<double>(steps) * static_cast<double>(forwards_per_step);
  w.dit_forward = (products + attention) * static_cast<double>(d.num_layers);
  w.denoise = w.dit_forward * forwards;
  w.denoise_attention = attention * static_cast<double>(d.num_layers) * forwards;
  return w;
}

}  // namespace ib
