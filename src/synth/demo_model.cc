// Hand-built weights of the demo preset (see demo_model.h for what they do and why).
#include "synth/demo_model.h"

#include <algorithm>
#include <cmath>
#include <map>

#include "ops/rope.h"
#include "synth/synth_model.h"

namespace ib {

namespace {

using Specs = std::vector<std::pair<std::string, Shape>>;

// The constant the VAE's constant channel and the DiT's constant stream dimensions carry: large
// against the content (|values| of a few units), so the norms divide by a constant to ~1e-5.
constexpr float kConst = 1000.0f;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The tensors of a spec list, all zero except norm weights (one); set entries by index.
class Weights {
 public:
  explicit Weights(const Specs& specs) {
    for (const auto& [name, shape] : specs) {
      Tensor t = Tensor::zeros(shape);
      const bool norm = ends_with(name, ".gamma") ||
                        (shape.size() == 1 && ends_with(name, ".weight") &&
                         (name.find("norm") != std::string::npos || name.find("img_emb.proj.0") != std::string::npos ||
                          name.find("img_emb.proj.4") != std::string::npos));
      if (norm) std::fill_n(t.data<float>(), t.numel(), 1.0f);
      order_.push_back(name);
      map_[name] = t;
    }
  }
  bool has(const std::string& name) const { return map_.count(name) > 0; }
  Tensor& operator[](const std::string& name) {
    auto it = map_.find(name);
    IB_CHECK(it != map_.end(), "demo model: no tensor '{}' in the layout", name);
    return it->second;
  }
  // Element at a multi-index of tensor `name`.
  float& at(const std::string& name, std::initializer_list<int64_t> idx) {
    Tensor& t = (*this)[name];
    IB_CHECK(static_cast<int64_t>(idx.size()) == t.dim(), "demo model: {} indices for {} {}", idx.size(), name,
             t.str());
    int64_t off = 0, d = 0;
    for (int64_t i : idx) {
      IB_CHECK(i >= 0 && i < t.size(d), "demo model: index {} out of {} in {}", i, t.size(d), name);
      off = off * t.size(d++) + i;
    }
    return t.data<float>()[off];
  }
  std::vector<std::pair<std::string, Tensor>> take() {
    std::vector<std::pair<std::string, Tensor>> out;
    for (const std::string& n : order_) out.emplace_back(n, map_.at(n));
    return out;
  }

 private:
  std::vector<std::string> order_;
  std::map<std::string, Tensor> map_;
};

// ---------------------------------------------------------------------------------------------
// VAE

// A channel map of a conv: output channel `to` gets `scale` times input channel `from`.
struct Route {
  int64_t from, to;
  float scale = 1.0f;
};

// [1/4, 1/2, 1/4] in both directions after the nearest ×2 upsampling: bilinear ×2 (align_corners
// false). Borders see zero padding; the constant channel is padded alike and the head's norm
// divides by it, which turns the zero padding into a normalised average.
void bilinear(Weights& w, const std::string& name, const std::vector<Route>& routes) {
  const float k[3] = {0.25f, 0.5f, 0.25f};
  for (const Route& r : routes)
    for (int64_t a = 0; a < 3; ++a)
      for (int64_t b = 0; b < 3; ++b) w.at(name, {r.to, r.from, a, b}) = r.scale * k[a] * k[b];
}

// The current-frame tap (index 2 of the causal kernel) of a time_conv [Cout, Cin, 3, 1, 1].
void time_tap(Weights& w, const std::string& name, const std::vector<Route>& routes) {
  for (const Route& r : routes) w.at(name, {r.to, r.from, 2, 0, 0}) = r.scale;
}

std::vector<Route> channels(int64_t from, int64_t to, int64_t n, float scale = 1.0f) {
  std::vector<Route> r;
  for (int64_t i = 0; i < n; ++i) r.push_back({from + i, to + i, scale});
  return r;
}

std::vector<Route> operator+(std::vector<Route> a, const std::vector<Route>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

}  // namespace

VaeConfig demo_vae_config() {
  VaeConfig c;
  c.dim = 8;  // the decoder's last level needs 7 channels: RGB, its mirror, the constant
  c.num_res_blocks = 1;
  return c;  // z_dim 16, dim_mult {1, 2, 4, 4}, temporal_downsample {false, true, true}
}

std::vector<std::pair<std::string, Tensor>> demo_vae_weights(const VaeConfig& c) {
  const VaeConfig d = demo_vae_config();
  IB_CHECK(c.dim == d.dim && c.z_dim == d.z_dim && c.dim_mult == d.dim_mult &&
               c.temporal_downsample == d.temporal_downsample && c.num_res_blocks >= 1,
           "demo VAE: built for dim {}, dim_mult {}, temporal_downsample (false, true, true)", d.dim, d.dim_mult);
  const Specs specs = vae_weight_shapes(c);
  Weights w(specs);

  // Shortcuts (channel count changes) embed the channels as they are; residual branches stay zero.
  for (const auto& [name, shape] : specs)
    if (ends_with(name, ".shortcut.weight"))
      for (int64_t i = 0; i < std::min(shape[0], shape[1]); ++i) w.at(name, {i, i, 0, 0, 0}) = 1.0f;

  // Encoder. Channels: RGB 0-2, −RGB 3-5 (for the head's SiLU), the constant 6.
  w.at("encoder.conv1.bias", {6}) = kConst;
  for (int64_t ch = 0; ch < 3; ++ch) {
    w.at("encoder.conv1.weight", {ch, ch, 2, 1, 1}) = 1.0f;
    w.at("encoder.conv1.weight", {3 + ch, ch, 2, 1, 1}) = -1.0f;
  }
  std::vector<std::string> up;  // decoder resample prefixes, in order
  for (const auto& [name, shape] : specs) {
    if (name.rfind("encoder.downsamples.", 0) == 0 && ends_with(name, ".resample.1.weight")) {
      // ZeroPad2d(0, 1, 0, 1) + 3x3 stride 2: the taps (0, 0), (0, 1), (1, 0), (1, 1) average 2x2
      // (even sides never reach the padding).
      for (int64_t ch = 0; ch < shape[0]; ++ch)
        for (int64_t a = 0; a < 2; ++a)
          for (int64_t b = 0; b < 2; ++b) w.at(name, {ch, ch, a, b}) = 0.25f;
    } else if (name.rfind("encoder.downsamples.", 0) == 0 && ends_with(name, ".time_conv.weight")) {
      // Stride 2 over [previous, chunk]: the tap on the newest frame keeps the last frame of each
      // chunk (frame 4k becomes latent frame k).
      time_tap(w, name, channels(0, 0, shape[0]));
    } else if (name.rfind("decoder.upsamples.", 0) == 0 && ends_with(name, ".resample.1.weight")) {
      up.push_back(name.substr(0, name.size() - std::string(".resample.1.weight").size()));
    }
  }
  const int64_t top = c.dim * c.dim_mult.back();
  const float enc_gain = kConst / std::sqrt(static_cast<float>(top));  // undoes the norm's √C / ‖x‖
  for (int64_t ch = 0; ch < 3; ++ch) {
    w.at("encoder.head.2.weight", {ch, ch, 2, 1, 1}) = enc_gain;
    w.at("encoder.head.2.weight", {ch, 3 + ch, 2, 1, 1}) = -enc_gain;
  }
  for (int64_t ch = 0; ch < 2 * c.z_dim; ++ch) w.at("conv1.weight", {ch, ch, 0, 0, 0}) = 1.0f;
  for (int64_t ch = 0; ch < c.z_dim; ++ch) w.at("conv2.weight", {ch, ch, 0, 0, 0}) = 1.0f;

  // Decoder. conv1 sees latent frames k−2, k−1, k (taps 0, 1, 2) and writes the four
  // interpolations m_j = (j/4)·u_k + (1 − j/4)·u_{k−1} for the pixel frames 4k−4+j: m4 (= u_k) in
  // 0-2, m3 in 3-5, m2 in 6-8, m1 in 9-11, and the constant in 12.
  w.at("decoder.conv1.bias", {12}) = kConst;
  for (int64_t j = 1; j <= 4; ++j)
    for (int64_t ch = 0; ch < 3; ++ch) {
      const int64_t out = 3 * (4 - j) + ch;
      w.at("decoder.conv1.weight", {out, ch, 2, 1, 1}) = static_cast<float>(j) / 4.0f;
      w.at("decoder.conv1.weight", {out, ch, 1, 1, 1}) = 1.0f - static_cast<float>(j) / 4.0f;
    }
  IB_CHECK(up.size() == 3, "demo VAE: expected 3 decoder upsamplers, found {}", up.size());
  // Upsample3d #1, per latent frame: the earlier half (pixel frame 4k−2) holds m2 as its own value
  // and m1 as the helper; the later half (4k) holds m4 and m3. The first chunk skips the time_conv
  // (upstream's causal start) and keeps conv1's layout, whose own value is m4 = u_0.
  const int64_t c0 = top;  // channels of the first upsampler
  time_tap(w, up[0] + ".time_conv.weight",
           channels(6, 0, 3) + channels(9, 3, 3) + channels(12, 12, 1) + channels(0, c0, 3) + channels(3, c0 + 3, 3) +
               channels(12, c0 + 12, 1));
  bilinear(w, up[0] + ".resample.1.weight", channels(0, 0, 6) + channels(12, 6, 1));
  // Upsample3d #2: own value 0-2, helper 3-5, constant 6 -> the earlier frame takes the helper,
  // the later one its own value.
  const int64_t c1 = w[up[1] + ".time_conv.weight"].size(1);
  time_tap(w, up[1] + ".time_conv.weight",
           channels(3, 0, 3) + channels(6, 6, 1) + channels(0, c1, 3) + channels(6, c1 + 6, 1));
  bilinear(w, up[1] + ".resample.1.weight", channels(0, 0, 3) + channels(6, 6, 1));
  // Upsample2d: RGB 0-2, its mirror 3-5 for the head's SiLU, the constant 6.
  bilinear(w, up[2] + ".resample.1.weight", channels(0, 0, 3) + channels(0, 3, 3, -1.0f) + channels(6, 6, 1));
  const float dec_gain = kConst / std::sqrt(static_cast<float>(c.dim));
  for (int64_t ch = 0; ch < 3; ++ch) {
    w.at("decoder.head.2.weight", {ch, ch, 2, 1, 1}) = dec_gain;
    w.at("decoder.head.2.weight", {ch, 3 + ch, 2, 1, 1}) = -dec_gain;
  }
  return w.take();
}

// ---------------------------------------------------------------------------------------------
// DiT

namespace {

// The stream of a token (one 2x2 patch of the latent, 64 values per 16-channel tensor, feature
// c·4 + 2p + q as the patch embedding orders them).
constexpr int64_t kX = 0;     // x_t
constexpr int64_t kC = 64;    // the conditioning latent
constexpr int64_t kB = 128;   // the blend, written by the self-attention
constexpr int64_t kM0 = 192;  // mask channel 0 (first frame), then 193: mask channel 3 (first or last)
constexpr int64_t kZero = 194;  // always 0: after LayerNorm it holds −mean/std, which readers subtract
constexpr int64_t kK = 195;     // +kConst, 196: −kConst
constexpr int64_t kDemoDim = 256;  // one head of 256, the widest the CUDA attention takes

// Frame-axis RoPE pairs of a head of `d` features: theta_j = 10000^(-2j / width).
std::vector<double> axis_thetas(int64_t pairs) {
  std::vector<double> th;
  for (int64_t j = 0; j < pairs; ++j)
    th.push_back(1.0 / std::pow(10000.0, static_cast<double>(2 * j) / static_cast<double>(2 * pairs)));
  return th;
}

// Least squares with a ridge: minimises |A x − b|² + ridge·|x|² (normal equations, Gaussian
// elimination with partial pivoting; tiny systems only).
std::vector<double> ridge_solve(std::vector<double> ata, std::vector<double> atb, size_t n, double ridge) {
  for (size_t i = 0; i < n; ++i) ata[i * n + i] += ridge;
  for (size_t col = 0; col < n; ++col) {
    size_t piv = col;
    for (size_t r = col + 1; r < n; ++r)
      if (std::fabs(ata[r * n + col]) > std::fabs(ata[piv * n + col])) piv = r;
    for (size_t j = 0; j < n; ++j) std::swap(ata[col * n + j], ata[piv * n + j]);
    std::swap(atb[col], atb[piv]);
    for (size_t r = col + 1; r < n; ++r) {
      const double f = ata[r * n + col] / ata[col * n + col];
      for (size_t j = col; j < n; ++j) ata[r * n + j] -= f * ata[col * n + j];
      atb[r] -= f * atb[col];
    }
  }
  std::vector<double> x(n);
  for (size_t col = n; col-- > 0;) {
    double v = atb[col];
    for (size_t j = col + 1; j < n; ++j) v -= ata[col * n + j] * x[j];
    x[col] = v / ata[col * n + col];
  }
  return x;
}

// Amplitudes A_j of s(Δ) = Σ_j A_j cos(θ_j Δ) over the frame-axis frequencies, fitted so that
// s(i) − s(L − i) = log((L − i)/i) for L up to 96 (385 frames): the softmax over the first (at
// distance i) and the last keyframe's tokens (distance L − i) then weighs them (L − i)/L and i/L.
// The rows are weighted a(1 − a)/√L so that the blend, not the logit, is fitted. The frequencies
// (at most 1 rad per frame, ratio 1.23) cannot follow −log between distances 1 and 3 exactly: the
// blend is within 0.15 of i/L, and monotone up to L = 64 (257 frames, the server's limit).
const std::vector<double>& blend_amplitudes() {
  static const std::vector<double> amps = [] {
    const int64_t frame_pairs = ops::rope_split(kDemoDim).frames;
    const std::vector<double> th = axis_thetas(frame_pairs);
    const size_t n = th.size();
    std::vector<double> ata(n * n, 0.0), atb(n, 0.0), f(n);
    for (int64_t L = 2; L <= 96; ++L)
      for (int64_t i = 1; i < L; ++i) {
        for (size_t k = 0; k < n; ++k)
          f[k] = std::cos(th[k] * static_cast<double>(i)) - std::cos(th[k] * static_cast<double>(L - i));
        const double y = std::log(static_cast<double>(L - i) / static_cast<double>(i));
        const double a = static_cast<double>(i) / static_cast<double>(L);
        const double wgt = a * (1 - a) / std::sqrt(static_cast<double>(L));
        for (size_t r = 0; r < n; ++r) {
          atb[r] += wgt * f[r] * y;
          for (size_t col = 0; col < n; ++col) ata[r * n + col] += wgt * f[r] * f[col];
        }
      }
    return ridge_solve(ata, atb, n, 1e-3);
  }();
  return amps;
}

double blend_score(int64_t delta) {
  const std::vector<double>& a = blend_amplitudes();
  const std::vector<double> th = axis_thetas(static_cast<int64_t>(a.size()));
  double s = 0;
  for (size_t j = 0; j < a.size(); ++j) s += a[j] * std::cos(th[j] * static_cast<double>(delta));
  return s;
}

// 1000/t as a function of u = sin(t·ω) (the last entry of the sinusoidal embedding, monotone for
// t ≤ 1000): its piecewise-linear interpolant on knots t = 1000 ... 2 (ratio 1.05), written as
// f(u_0) + Σ_k c_k·ReLU(u_k − u) with every c_k > 0 (1/t is convex), so the sum has no
// cancellation. Each ReLU is SiLU(α_k(u_k − u))/α_k with α_k making the hinge 1/20 of its segment.
struct Hinges {
  std::vector<double> u, c, alpha;
  double f0 = 1.0;
};

Hinges inverse_time_hinges(int64_t freq_dim) {
  const int64_t half = freq_dim / 2;
  const double omega = std::pow(10000.0, -(static_cast<double>(half - 1) / static_cast<double>(half)));
  constexpr int kKnots = 129;
  std::vector<double> t(kKnots), u(kKnots), f(kKnots);
  for (int k = 0; k < kKnots; ++k) {
    t[static_cast<size_t>(k)] = 1000.0 * std::pow(2.0 / 1000.0, static_cast<double>(k) / (kKnots - 1));
    u[static_cast<size_t>(k)] = std::sin(t[static_cast<size_t>(k)] * omega);
    f[static_cast<size_t>(k)] = 1000.0 / t[static_cast<size_t>(k)];
  }
  Hinges h;
  h.f0 = f[0];
  double prev_slope = 0;
  for (size_t k = 0; k + 1 < static_cast<size_t>(kKnots); ++k) {
    const double slope = (f[k + 1] - f[k]) / (u[k + 1] - u[k]);  // negative, steeper as k grows
    h.u.push_back(u[k]);
    h.c.push_back(prev_slope - slope);
    h.alpha.push_back(20.0 / (u[k] - u[k + 1]));
    prev_slope = slope;
  }
  return h;
}

}  // namespace

double demo_blend_weight(int64_t i, int64_t L) {
  if (L <= 0) return 0.0;
  if (i <= 0) return 0.0;
  if (i >= L) return 1.0;
  return 1.0 / (1.0 + std::exp(blend_score(i) - blend_score(L - i)));
}

DitConfig demo_dit_config() {
  DitConfig c;
  c.model_type = "flf2v";
  c.text_len = 16;
  c.dim = kDemoDim;  // the stream layout above needs 197 dimensions
  c.ffn_dim = 32;
  c.num_heads = 1;
  c.num_layers = 1;
  return c;  // in_dim 36, out_dim 16, freq_dim 256, eps 1e-6
}

std::vector<std::pair<std::string, Tensor>> demo_dit_weights(const DitConfig& c, int64_t text_dim, int64_t clip_dim,
                                                             int64_t image_tokens) {
  const DitConfig d = demo_dit_config();
  IB_CHECK(c.model_type == "flf2v" && c.dim == d.dim && c.num_heads == 1 && c.num_layers == 1 && c.in_dim == 36 &&
               c.out_dim == 16 && c.freq_dim == 256,
           "demo DiT: built for an flf2v DiT of dim {}, one head, one layer", d.dim);
  Weights w(dit_weight_shapes(c, text_dim, clip_dim, image_tokens));
  const int64_t D = c.dim;
  auto patch = [](int64_t ch, int64_t p, int64_t q) { return ch * 4 + 2 * p + q; };

  // Patch embedding [D, 36, 1, 2, 2]: input feature ch·4 + 2p + q of x_in = [x_t (16); mask (4);
  // cond latent (16)].
  for (int64_t ch = 0; ch < 16; ++ch)
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t q = 0; q < 2; ++q) {
        const int64_t f = patch(ch, p, q);
        w.at("patch_embedding.weight", {kX + f, ch, 0, p, q}) = 1.0f;
        w.at("patch_embedding.weight", {kC + f, 20 + ch, 0, p, q}) = 1.0f;
      }
  for (int64_t p = 0; p < 2; ++p)
    for (int64_t q = 0; q < 2; ++q) {
      w.at("patch_embedding.weight", {kM0, 16, 0, p, q}) = 0.25f;
      w.at("patch_embedding.weight", {kM0 + 1, 19, 0, p, q}) = 0.25f;
    }
  w.at("patch_embedding.bias", {kK}) = kConst;
  w.at("patch_embedding.bias", {kK + 1}) = -kConst;
  // LayerNorm's standard deviation of every token: the two constants dominate it.
  const float rho = kConst * std::sqrt(2.0f / static_cast<float>(D));

  // Block 0: modulation rows shift1, scale1, gate1, shift2, scale2, gate2 (time_projection is zero,
  // so they are constants). scale1 = rho − 1 undoes the LayerNorm: the attention sees the stream.
  for (int64_t k = 0; k < D; ++k) {
    w.at("blocks.0.modulation", {0, 1, k}) = rho - 1.0f;
    w.at("blocks.0.modulation", {0, 2, k}) = 1.0f;
  }

  // Self-attention. Token types from the mask: F (first frame: channels 0 and 3 set), L (last:
  // channel 3 only), M (between: none). Queries and keys are fixed vectors per type (RMSNorm makes
  // their size exact); M tokens have no key at all (zero: they are never attended to).
  const ops::RopeSplit split = ops::rope_split(D);
  const int64_t pairs_h0 = split.frames, pairs_w0 = split.frames + split.height;  // first pair of each axis
  const double sqrt_d = std::sqrt(static_cast<double>(D));
  // Spatial sharpness: the highest 16 frequencies of the height and width axes in every query and
  // key; a key one token off loses at least `margin`·amp of score.
  constexpr int64_t kSpatialPairs = 16;
  const std::vector<double> th_hw = axis_thetas(split.height);
  double margin = 1e9;
  for (int64_t delta = 1; delta < 1024; ++delta) {
    double m = 0;
    for (int64_t j = 0; j < kSpatialPairs; ++j)
      m += 1.0 - std::cos(th_hw[static_cast<size_t>(j)] * static_cast<double>(delta));
    margin = std::min(margin, m);
  }
  const double spatial_amp = 45.0 / margin, type_amp = 45.0;
  std::vector<double> qm(static_cast<size_t>(D), 0.0), qf = qm, ql = qm, kf = qm, kl = qm;
  // A pair's real feature with score amplitude a between a query and a key vector.
  auto put = [&](std::vector<double>& qv, std::vector<double>& kv, int64_t pair, double a) {
    const double m = std::sqrt(std::fabs(a) * sqrt_d);
    qv[static_cast<size_t>(2 * pair)] = m;
    kv[static_cast<size_t>(2 * pair)] = a < 0 ? -m : m;
  };
  for (int64_t j = 0; j < kSpatialPairs; ++j)
    for (int64_t base : {pairs_h0, pairs_w0})
      for (auto* qv : {&qm, &qf, &ql}) {
        put(*qv, kf, base + j, spatial_amp);
        put(*qv, kl, base + j, spatial_amp);
      }
  // Type pairs (the lowest height/width frequencies): F queries find the F key of their own
  // position, L queries the L key.
  put(qf, kf, pairs_h0 + split.height - 1, type_amp);
  put(ql, kl, pairs_w0 + split.width - 1, type_amp);
  // The blend on the frame axis: M queries against both keys.
  const std::vector<double>& amps = blend_amplitudes();
  for (size_t j = 0; j < amps.size(); ++j) {
    put(qm, kf, static_cast<int64_t>(j), amps[j]);
    put(qm, kl, static_cast<int64_t>(j), amps[j]);
  }
  // RMSNorm leaves every vector with rms G (its weight): pad each to that energy in a pair only
  // queries (or only keys) use.
  auto energy = [](const std::vector<double>& v) {
    double e = 0;
    for (double x : v) e += x * x;
    return e;
  };
  const double e_max = std::max({energy(qm), energy(qf), energy(ql), energy(kf), energy(kl)});
  const double G = std::sqrt(1.05 * e_max / static_cast<double>(D));
  auto pad = [&](std::vector<double>& v, int64_t pair) {
    v[static_cast<size_t>(2 * pair)] = std::sqrt(G * G * static_cast<double>(D) - energy(v));
  };
  for (auto* qv : {&qm, &qf, &ql}) pad(*qv, pairs_h0 + split.height - 2);
  for (auto* kv : {&kf, &kl}) pad(*kv, pairs_w0 + split.width - 2);
  // q_pre = Q_M + m3·(Q_L − Q_M) + m0·(Q_F − Q_L) with m = a[m] − a[zero] (cancels the mean);
  // keys alike without a bias. The unit-rms vectors are the wanted ones over G.
  for (int64_t k = 0; k < D; ++k) {
    const auto uk = static_cast<size_t>(k);
    const auto g = static_cast<float>(1.0 / G);
    w.at("blocks.0.self_attn.q.bias", {k}) = static_cast<float>(qm[uk]) * g;
    const float q3 = static_cast<float>(ql[uk] - qm[uk]) * g, q0 = static_cast<float>(qf[uk] - ql[uk]) * g;
    const float k3 = static_cast<float>(kl[uk]) * g, k0 = static_cast<float>(kf[uk] - kl[uk]) * g;
    w.at("blocks.0.self_attn.q.weight", {k, kM0 + 1}) = q3;
    w.at("blocks.0.self_attn.q.weight", {k, kM0}) = q0;
    w.at("blocks.0.self_attn.q.weight", {k, kZero}) = -(q3 + q0);
    w.at("blocks.0.self_attn.k.weight", {k, kM0 + 1}) = k3;
    w.at("blocks.0.self_attn.k.weight", {k, kM0}) = k0;
    w.at("blocks.0.self_attn.k.weight", {k, kZero}) = -(k3 + k0);
    w.at("blocks.0.self_attn.norm_q.weight", {k}) = static_cast<float>(G);
    w.at("blocks.0.self_attn.norm_k.weight", {k}) = static_cast<float>(G);
  }
  // Values: C (as a[C] − a[zero]), straight into the blend's dimensions; the output projection keeps them.
  for (int64_t f = 0; f < 64; ++f) {
    w.at("blocks.0.self_attn.v.weight", {kB + f, kC + f}) = 1.0f;
    w.at("blocks.0.self_attn.v.weight", {kB + f, kZero}) = -1.0f;
    w.at("blocks.0.self_attn.o.weight", {kB + f, kB + f}) = 1.0f;
  }
  // Cross-attention and FFN stay zero (their outputs are zero); text and image embeddings too.

  // Time embedding: e(t) = 1000/t on the X and B dimensions (see Hinges).
  const Hinges h = inverse_time_hinges(c.freq_dim);
  IB_CHECK(static_cast<int64_t>(h.u.size()) <= D, "demo DiT: {} hinges for {} hidden units", h.u.size(), D);
  for (size_t k = 0; k < h.u.size(); ++k) {
    const auto row = static_cast<int64_t>(k);
    w.at("time_embedding.0.weight", {row, c.freq_dim - 1}) = static_cast<float>(-h.alpha[k]);
    w.at("time_embedding.0.bias", {row}) = static_cast<float>(h.alpha[k] * h.u[k]);
    for (int64_t base : {kX, kB})
      for (int64_t f = 0; f < 64; ++f)
        w.at("time_embedding.2.weight", {base + f, row}) = static_cast<float>(h.c[k] / h.alpha[k]);
  }
  for (int64_t base : {kX, kB})
    for (int64_t f = 0; f < 64; ++f) w.at("time_embedding.2.bias", {base + f}) = static_cast<float>(h.f0);

  // Head: LN(x)·(1 + scale) + shift with scale = −1 + e and shift = e on X and B: out =
  // rho·e·(LN_X − LN_B) = (x_t − B)/σ; the shifts cancel. Output feature (2p + q)·16 + c.
  for (int64_t base : {kX, kB})
    for (int64_t f = 0; f < 64; ++f) w.at("head.modulation", {0, 1, base + f}) = -1.0f;
  for (int64_t ch = 0; ch < 16; ++ch)
    for (int64_t p = 0; p < 2; ++p)
      for (int64_t q = 0; q < 2; ++q) {
        const int64_t out = (2 * p + q) * 16 + ch;
        w.at("head.head.weight", {out, kX + patch(ch, p, q)}) = rho;
        w.at("head.head.weight", {out, kB + patch(ch, p, q)}) = -rho;
      }
  return w.take();
}

}  // namespace ib
