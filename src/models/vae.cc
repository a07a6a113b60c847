// Wan-VAE: loading (layer list derived from VaeConfig like upstream's Encoder3d/Decoder3d
// constructors), the chunked causal forward with feature caches (spec §6.4), and the latent
// normalisation (§6.6).
#include "models/vae.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>

#include "core/check.h"
#include "core/parallel.h"
#include "ops/conv.h"
#include "ops/convert.h"
#include "ops/vae_attention.h"
#include "ops/vae_latent.h"
#include "ops/vae_layout.h"
#include "ops/vae_norm.h"

namespace ib {
namespace {

using vae::AttentionBlock;
using vae::Conv;
using vae::Layer;
using vae::Resample;
using vae::ResampleMode;
using vae::ResidualBlock;

// Latent statistics of the release (upstream WanVAE.__init__), z_dim = 16 only.
constexpr float kLatentMean[16] = {-0.7571f, -0.7089f, -0.9113f, 0.1075f, -0.1745f, 0.9653f, -0.1517f, 1.5508f,
                                   0.4134f,  -0.0715f, 0.5517f,  -0.3632f, -0.1922f, -0.9497f, 0.2503f, -0.2921f};
constexpr float kLatentStd[16] = {2.8184f, 1.4541f, 2.3275f, 2.6558f, 1.2196f, 1.7708f, 2.6052f, 2.0743f,
                                  3.2687f, 2.1526f, 2.8652f, 1.5579f, 1.6382f, 1.1253f, 2.8251f, 1.9160f};

// ---------------------------------------------------------------------------------------------
// Loading

// Wraps the store: every lookup takes its shape from the weight list (vae_weight_shapes), is
// checked and converted to f32, and its name remembered so that leftover tensors (a config that
// does not match the checkpoint) can be reported.
class WeightLoader {
 public:
  WeightLoader(const TensorStore& s, const VaeConfig& cfg) : store_(s), list_(vae_weight_shapes(cfg), "VAE weights") {}

  Tensor get(const std::string& name) {
    used_.insert(name);
    return require(store_, name, list_.shape(name), DType::F32);
  }
  Conv conv(const std::string& prefix) { return Conv{get(prefix + ".weight"), get(prefix + ".bias")}; }
  // A 2-D conv [Cout, Cin, kh, kw], held as [Cout, Cin, 1, kh, kw].
  Conv conv2d(const std::string& prefix) {
    const Tensor w = get(prefix + ".weight");
    return Conv{w.view({w.size(0), w.size(1), 1, w.size(2), w.size(3)}), get(prefix + ".bias")};
  }

  ResidualBlock residual(const std::string& p, int64_t in, int64_t out) {
    ResidualBlock b;
    b.in_dim = in;
    b.out_dim = out;
    b.norm1 = get(p + ".residual.0.gamma");
    b.conv1 = conv(p + ".residual.2");
    b.norm2 = get(p + ".residual.3.gamma");
    b.conv2 = conv(p + ".residual.6");
    if (in != out) b.shortcut = conv(p + ".shortcut");
    return b;
  }

  AttentionBlock attention(const std::string& p, int64_t c) {
    AttentionBlock a;
    a.dim = c;
    a.norm = get(p + ".norm.gamma");
    a.qkv_w = get(p + ".to_qkv.weight").view({3 * c, c});
    a.qkv_b = get(p + ".to_qkv.bias");
    const Conv proj = conv2d(p + ".proj");
    a.proj = Conv{proj.weight.view({c, c, 1, 1, 1}), proj.bias};
    return a;
  }

  Resample resample(const std::string& p, int64_t c, ResampleMode mode) {
    Resample r;
    r.mode = mode;
    r.dim = c;
    r.resample = conv2d(p + ".resample.1");
    if (mode == ResampleMode::Downsample3d || mode == ResampleMode::Upsample3d) r.time_conv = conv(p + ".time_conv");
    return r;
  }

  // Names in the store that no lookup asked for.
  std::vector<std::string> unused() const {
    std::vector<std::string> out;
    for (const std::string& n : store_.names())
      if (!used_.count(n)) out.push_back(n);
    return out;
  }

 private:
  const TensorStore& store_;
  const WeightIndex list_;
  std::set<std::string> used_;
};

// ---------------------------------------------------------------------------------------------
// Feature cache (spec §6.4): one slot per cached site, taken in execution order each chunk.

struct Slot {
  enum class Kind { Empty, Rep, Frames } kind = Kind::Empty;
  Tensor frames;  // [C, 1 or 2 (or a whole first chunk), H, W]
  // A causal conv fed one frame at a time keeps that frame as the tensor it got (no copy) here,
  // after `frames` (then one frame): its cache is frames ; next.
  Tensor next;
};

class FeatCache {
 public:
  void start_chunk() { next_ = 0; }
  // The encoder runs its first levels frame by frame: the same slots again for every frame.
  size_t position() const { return next_; }
  void rewind(size_t position) { next_ = position; }
  Slot& take() {
    if (next_ == slots_.size()) slots_.emplace_back();
    return slots_[next_++];
  }

 private:
  std::vector<Slot> slots_;
  size_t next_ = 0;
};

Tensor last_frames(const Tensor& x, int64_t n) { return ops::slice_frames(x, x.size(1) - n, x.size(1)); }

// A 3×3×3 CausalConv3d site: convolve [old ; x] with 2 - len(old) leading zero frames, then keep the
// last two frames of the input history. `residual` (optional) is added to the output, which is
// `act` (the activation dtype, see decoder_chunk). With `norm` (a gamma), the conv's input is
// RMS_norm → SiLU of x, done by the conv op itself: the slot then holds frames from before the
// norm, which the op normalises again along with x. The norm acts per position, so the conv sees
// exactly the values upstream caches (after its norm). The slot keeps x's dtype.
Tensor causal_conv(const Conv& c, const Tensor& x, Slot& slot, DType act, const Tensor& norm = Tensor(),
                   const Tensor& residual = Tensor()) {
  ops::Conv3dArgs a = ops::Conv3dArgs::spatial_pad(1);
  std::vector<Tensor> old;  // the cached frames, oldest first
  if (slot.kind == Slot::Kind::Frames) {
    old.push_back(slot.frames);
    if (slot.next.defined()) old.push_back(slot.next);
  }
  a.pad_front = 2;
  for (const Tensor& o : old) a.pad_front -= o.size(1);
  Tensor y;
  if (norm.defined()) {
    y = ops::norm_silu_conv3d(old, x, norm, c.weight, c.bias, a, residual, act);
  } else {
    old.push_back(x);
    y = ops::conv3d(old.size() > 1 ? ops::cat_frames(old) : x, c.weight, c.bias, a, residual, act);
  }
  // The frames to keep are copied after the conv, so that the copy and the conv's working buffers
  // (the padded input, cuDNN's output) are never held at once: at full resolution each is a
  // sizeable part of the decoder's peak. An input of one or two frames is kept as it is (one
  // frame beside the newest cached frame), and nothing is copied.
  const int64_t n = x.size(1);
  if (n >= 2) {
    slot.frames = n == 2 ? x : last_frames(x, 2);
    slot.next = Tensor();
  } else if (slot.kind == Slot::Kind::Frames) {
    if (slot.next.defined()) {
      slot.frames = slot.next;
    } else if (slot.frames.size(1) > 1) {
      slot.frames = last_frames(slot.frames, 1);
    }
    slot.next = x;
  } else {
    slot.frames = x;
  }
  slot.kind = Slot::Kind::Frames;
  return y;
}

Tensor residual_block(const ResidualBlock& b, const Tensor& x, FeatCache& cache, DType act) {
  const Tensor h = causal_conv(b.conv1, x, cache.take(), act, b.norm1);  // [out, n, H, W]
  const Tensor shortcut =
      b.shortcut.weight.defined() ? ops::conv3d(x, b.shortcut.weight, b.shortcut.bias, {}, Tensor(), act) : x;
  return causal_conv(b.conv2, h, cache.take(), act, b.norm2, shortcut);  // R(x) + S(x)
}

// Per-frame single-head attention over the h·w pixels; x + proj(softmax(q·kᵀ/√C)·v).
Tensor attention_block(const AttentionBlock& a, const Tensor& x) {
  const int64_t C = x.size(0), T = x.size(1), H = x.size(2), W = x.size(3);
  const Tensor n = ops::rms_norm_channels(x, a.norm);  // per position, so all frames at once
  const float scale = 1.0f / std::sqrt(static_cast<float>(C));
  std::vector<Tensor> frames;
  for (int64_t t = 0; t < T; ++t) {
    const Tensor nt = ops::slice_frames(n, t, t + 1).view({C, H * W});                        // [C, HW]
    const Tensor o_cf = ops::pixel_attention(nt, a.qkv_w, a.qkv_b, scale).view({C, 1, H, W});  // [C, 1, H, W]
    const Tensor xt = T == 1 ? x : ops::slice_frames(x, t, t + 1);
    frames.push_back(ops::conv3d(o_cf, a.proj.weight, a.proj.bias, {}, xt));
  }
  return T == 1 ? frames.front() : ops::cat_frames(frames);
}

// A downsampling's spatial half: ZeroPad2d((0, 1, 0, 1)) then a 3×3 stride-2 conv on each frame.
Tensor downsample_spatial(const Resample& r, const Tensor& x, DType act) {
  ops::Conv3dArgs a;
  a.stride_h = a.stride_w = 2;
  a.pad_bottom = a.pad_right = 1;
  return ops::conv3d(x, r.resample.weight, r.resample.bias, a, Tensor(), act);  // [C, n, H/2, W/2]
}

// Downsample3d's temporal half on the spatial half's output y: a stride-2 conv over [last cached
// frame ; y] (none on the first chunk).
Tensor downsample_time(const Resample& r, const Tensor& y, FeatCache& cache, DType act) {
  Slot& slot = cache.take();
  if (slot.kind == Slot::Kind::Empty) {  // first chunk: no temporal step
    slot.kind = Slot::Kind::Frames;
    slot.frames = y;
    return y;
  }
  ops::Conv3dArgs t;
  t.stride_t = 2;
  Tensor out = ops::conv3d(ops::cat_frames({last_frames(slot.frames, 1), y}), r.time_conv.weight, r.time_conv.bias,
                           t, Tensor(), act);  // [C, n/2, H, W]
  slot.frames = last_frames(y, 1);
  return out;
}

// `act`: the dtype of the resample's output (and so of its cache).
Tensor resample(const Resample& r, Tensor x, FeatCache& cache, DType act) {
  switch (r.mode) {
    case ResampleMode::Downsample2d:
    case ResampleMode::Downsample3d: {
      const Tensor y = downsample_spatial(r, x, act);
      return r.mode == ResampleMode::Downsample2d ? y : downsample_time(r, y, cache, act);
    }
    case ResampleMode::Upsample2d:
    case ResampleMode::Upsample3d: {
      if (r.mode == ResampleMode::Upsample3d) {
        Slot& slot = cache.take();
        if (slot.kind == Slot::Kind::Empty) {
          slot.kind = Slot::Kind::Rep;  // first chunk: no temporal step, no frame doubling
        } else {
          const int64_t n = x.size(1);
          Tensor keep;
          if (n >= 2) {
            keep = last_frames(x, 2);
          } else if (slot.kind == Slot::Kind::Frames) {
            keep = ops::cat_frames({last_frames(slot.frames, 1), x});
          } else {  // "Rep": the first chunk's frame never enters the temporal context
            keep = ops::cat_frames({Tensor::zeros({x.size(0), 1, x.size(2), x.size(3)}, x.dtype(), x.device()), x});
          }
          ops::Conv3dArgs a;
          Tensor y;
          if (slot.kind == Slot::Kind::Rep) {
            a.pad_front = 2;
            y = ops::conv3d(x, r.time_conv.weight, r.time_conv.bias, a, Tensor(), act);
          } else {
            a.pad_front = 2 - slot.frames.size(1);
            y = ops::conv3d(ops::cat_frames({slot.frames, x}), r.time_conv.weight, r.time_conv.bias, a, Tensor(), act);
          }
          x = ops::interleave_channel_halves(y);  // [2C, n, H, W] -> [C, 2n, H, W]
          slot.kind = Slot::Kind::Frames;
          slot.frames = keep;
        }
      }
      // Nearest ×2, then a 3×3 conv (padding 1) C -> C/2 on each frame; one op, so that on CUDA the
      // upsampled frames (4x the input) are never stored.
      return ops::upsample2x_conv3d(x, r.resample.weight, r.resample.bias, ops::Conv3dArgs::spatial_pad(1), act);
    }
  }
  fail("vae: unknown resample mode");
}

// `act`: the dtype of the layer's output (an attention block's is f32: it runs in the middle only).
Tensor run_layer(const Layer& layer, const Tensor& x, FeatCache& cache, DType act = DType::F32) {
  if (const auto* b = std::get_if<ResidualBlock>(&layer)) return residual_block(*b, x, cache, act);
  if (const auto* a = std::get_if<AttentionBlock>(&layer)) return attention_block(*a, x);
  return resample(std::get<Resample>(layer), x, cache, act);
}

Tensor run_head(const Tensor& norm, const Conv& conv, const Tensor& x, FeatCache& cache) {
  return causal_conv(conv, x, cache.take(), DType::F32, norm);
}

// ---------------------------------------------------------------------------------------------
// The encoder's exact reuse of repeated work (WanVAE::set_encode_memo).
//
// A unit of the encoder (conv1, a residual block, a resampling, the attention, the head) computes
// its output from its input and the frames its cache slots hold, with deterministic ops. So when a
// unit gets the same input and holds the same frames as at its previous call, its output is the
// previous output and its slots end as they are: the call can be skipped. FLF2V's conditioning
// video is a first frame, zeros, a last frame: after a few chunks of zeros the first levels see
// the same thing chunk after chunk, and each deeper unit a chunk or two later.
//
// Equality is tracked symbolically, never by comparing activations: every frame of every tensor
// gets an id, equal ids meaning bitwise-equal frames. The video's frames get theirs by comparing
// each frame with the one before (a host video only; a device video's frames all get new ids, so
// nothing repeats). An output frame's id names what made it: the unit, the call's shape (its frame
// count), the frame's place in the output, and the ids of the frames it reads (a causal conv's
// three taps, a time conv's three, the frame itself for per-frame ops). That holds because every
// op here computes an output frame from the frames it reads alone, in an order fixed by the shape:
// the convs are GEMMs over the taps (on CUDA cuDNN's GEMM-like algorithms only, never FFT or
// Winograd, with every padding as real zeros; on the CPU im2col + sgemm), norms and SiLU act per
// position, the attention per frame. Tracking frames rather than whole tensors matters: a chunk's
// last frames settle a chunk before its first ones (they read no frame of the chunk before), and
// they are what the cache keeps, so each unit settles up to a chunk sooner.
//
// A unit's output is kept for reuse while the unit's input repeats (the unit is then about to
// become steady) and dropped once the next unit is steady too (it is then never read), so only a
// frontier of one or two outputs is held beyond what the plain path holds.
class EncodeMemo {
 public:
  enum class Kind { Conv, Residual, Stateless, DownTime, Down3d };
  using Frames = std::vector<int64_t>;  // the ids of a tensor's frames, in order

  // Frame ids of the video: equal to the previous frame's when bitwise equal (a host video).
  void set_video_frames(const Tensor& video) {
    const int64_t F = video.size(1), plane = video.size(2) * video.size(3);
    // Which frames equal the one before, compared in parallel (at 1280x720 the 79 zero frames of an
    // FLF2V video are 1.7 GB of reads).
    std::vector<char> same(static_cast<size_t>(F), 0);
    if (video.device() == Device::CPU) {
      parallel_for(F - 1, 1, [&](int64_t a, int64_t b) {
        for (int64_t t = a + 1; t < b + 1; ++t) {
          bool eq = true;
          for (int64_t c = 0; eq && c < 3; ++c) {
            const float* p = video.data<float>() + (c * F + t) * plane;
            eq = std::memcmp(p, p - plane, static_cast<size_t>(plane) * sizeof(float)) == 0;
          }
          same[static_cast<size_t>(t)] = eq;
        }
      });
    }
    video_.assign(static_cast<size_t>(F), 0);
    for (int64_t t = 0; t < F; ++t)
      video_[static_cast<size_t>(t)] = same[static_cast<size_t>(t)] ? video_[static_cast<size_t>(t - 1)] : intern({kFresh, t});
  }
  // The ids of frames [t0, t1) of the video.
  Frames video_frames(int64_t t0, int64_t t1) const { return {video_.begin() + t0, video_.begin() + t1}; }

  // Unit u of the chain (its slots taken from `cache` in order, as the unit itself takes them) on
  // the tensor x whose frames are `in`: compute(x) runs it (unit 0 reads the video itself; x is
  // undefined). Returns the output's frame ids and tensor (undefined when the unit was skipped and
  // its output dropped: then the next unit is skipped too).
  // `sole_input`: x is all the unit reads of the unit before it (not so for the temporal step after
  // frame-at-a-time passes, which reads every pass's output): the one before may then drop its
  // output once this unit is steady.
  std::pair<Frames, Tensor> run(size_t u, Kind kind, const Frames& in, const Tensor& x, FeatCache& cache,
                                const std::function<Tensor(const Tensor&)>& compute, bool sole_input = true) {
    if (units_.size() <= u) units_.resize(u + 1);
    Unit& unit = units_[u];
    const size_t slots = kind == Kind::Residual ? 2 : kind == Kind::Stateless ? 0 : 1;
    unit.slots.resize(slots);
    Frames key{static_cast<int64_t>(u), static_cast<int64_t>(in.size())};
    key.insert(key.end(), in.begin(), in.end());
    for (const Frames& sl : unit.slots) {
      key.push_back(static_cast<int64_t>(sl.size()));
      key.insert(key.end(), sl.begin(), sl.end());
    }
    if (unit.usable && key == unit.prev_key) {
      for (size_t i = 0; i < slots; ++i) (void)cache.take();  // the slots already hold what this call would leave
      ++skipped_;
      if (sole_input && prev_skipped_ && u > 0 && prev_unit_ == u - 1) units_[u - 1].out = Tensor();
      prev_skipped_ = true;
      prev_unit_ = u;
      return {unit.out_frames, unit.out};
    }
    IB_CHECK(x.defined() || u == 0, "vae encode: unit {} must run but its input was dropped (internal error)", u);
    Tensor out = compute(x);
    // The output's frames, and the slots' frames after the call as causal_conv and downsample_time
    // leave them.
    const auto U = static_cast<int64_t>(u);
    Frames out_frames;
    switch (kind) {
      case Kind::Conv:
        out_frames = taps(U, 0, unit.slots[0], in);
        keep_last(unit.slots[0], in, 2);
        break;
      case Kind::Residual: {  // R(x) + S(x): the second conv's frame k also reads x's frame k
        const Frames h = taps(U, 0, unit.slots[0], in);
        out_frames = taps(U, 1, unit.slots[1], h, &in);
        keep_last(unit.slots[0], in, 2);
        keep_last(unit.slots[1], h, 2);
        break;
      }
      case Kind::Stateless:
        out_frames = each(U, 0, in);
        break;
      case Kind::DownTime:
      case Kind::Down3d: {  // (Down3d: the spatial conv, per frame, then) the temporal step
        const Frames y = kind == Kind::Down3d ? each(U, 0, in) : in;
        out_frames = unit.slots[0].empty() ? y : time_taps(U, unit.slots[0].back(), y, out.size(1));
        unit.slots[0] = {y.back()};
        break;
      }
    }
    IB_CHECK(static_cast<int64_t>(out_frames.size()) == out.size(1),
             "vae encode: unit {} made {} frames, its memo counts {} (internal error)", u, out.size(1),
             out_frames.size());
    // Kept for reuse while the input repeats (the unit may be steady next time).
    unit.usable = in == unit.prev_in;
    unit.out = unit.usable ? out : Tensor();
    unit.out_frames = out_frames;
    unit.prev_key = std::move(key);
    unit.prev_in = in;
    prev_skipped_ = false;
    prev_unit_ = u;
    return {std::move(out_frames), std::move(out)};
  }

  int64_t skipped() const { return skipped_; }

 private:
  static constexpr int64_t kFresh = -1, kZero = -2, kTaps = -3, kEach = -4, kTime = -5;
  struct Unit {
    std::vector<Frames> slots;  // the frames each slot holds, oldest first
    Frames prev_key, prev_in, out_frames;
    bool usable = false;  // prev_key's output may stand in (kept, or dropped as never read again)
    Tensor out;
  };

  int64_t intern(const Frames& key) {
    const auto [it, fresh] = ids_.emplace(key, static_cast<int64_t>(ids_.size()));
    return it->second;
  }
  // A 3×3×3 causal conv (part `part` of unit u) over [zeros ; slot ; in]: output frame k reads
  // frames k .. k+2 of that sequence, and frame k of `also` (a residual added) when given.
  Frames taps(int64_t u, int64_t part, const Frames& slot, const Frames& in, const Frames* also = nullptr) {
    Frames seq(2 - slot.size(), intern({kZero}));
    seq.insert(seq.end(), slot.begin(), slot.end());
    seq.insert(seq.end(), in.begin(), in.end());
    const auto n = static_cast<int64_t>(in.size());
    Frames out;
    for (size_t k = 0; k < in.size(); ++k) {
      Frames key{kTaps, u, part, n, static_cast<int64_t>(k), seq[k], seq[k + 1], seq[k + 2]};
      if (also != nullptr) key.push_back((*also)[k]);
      out.push_back(intern(key));
    }
    return out;
  }
  // A per-frame op (part `part` of unit u): output frame k reads input frame k.
  Frames each(int64_t u, int64_t part, const Frames& in) {
    const auto n = static_cast<int64_t>(in.size());
    Frames out;
    for (size_t k = 0; k < in.size(); ++k) out.push_back(intern({kEach, u, part, n, static_cast<int64_t>(k), in[k]}));
    return out;
  }
  // downsample_time's stride-2 conv over [last : y]: output frame j reads frames 2j .. 2j+2.
  Frames time_taps(int64_t u, int64_t last, const Frames& y, int64_t count) {
    Frames seq{last};
    seq.insert(seq.end(), y.begin(), y.end());
    const auto n = static_cast<int64_t>(y.size());
    Frames out;
    for (int64_t j = 0; j < count && 2 * j + 2 < static_cast<int64_t>(seq.size()); ++j) {
      const auto s = static_cast<size_t>(2 * j);
      out.push_back(intern({kTime, u, n, j, seq[s], seq[s + 1], seq[s + 2]}));
    }
    return out;
  }
  static void keep_last(Frames& slot, const Frames& in, size_t n) {
    slot.insert(slot.end(), in.begin(), in.end());
    if (slot.size() > n) slot.erase(slot.begin(), slot.end() - static_cast<std::ptrdiff_t>(n));
  }

  std::map<Frames, int64_t> ids_;
  Frames video_;
  std::vector<Unit> units_;
  int64_t skipped_ = 0;
  bool prev_skipped_ = false;
  size_t prev_unit_ = 0;
};

// One chunk through Encoder3d: [3, n, H, W] (on any device) -> f32 [2·z_dim, n', H/8, W/8]. The
// outputs of the downsampling levels (and so their caches) are `act`: bf16 with bf16 conv weights,
// as under upstream's bf16 autocast (the f32 and bf16 results differ by the rounding of the
// activations between layers; test_vae_gpu and the GPU e2e tests bound it). The middle (with its
// attention) and the head run in f32.
//
// Everything before the first temporal downsampling (conv1, the full- and half-resolution levels
// and that resample's spatial conv) acts on each frame alone, its causal convs through their
// caches, so it may run `per_pass` frames at a time (0: the whole chunk): the same result, with a
// working set of one frame instead of four at full resolution when per_pass is 1 (at 720p a
// 96-channel bf16 frame is 177 MB, and a conv's padded input, output and result come on top of
// its input), at a cost in time (~15%, bench/NOTES.md version 12). The frames meet again, each at
// a quarter of the pixels, for the temporal step. `passes` counts the passes made.
EncodeMemo::Kind memo_kind(const Layer& l) {
  if (std::holds_alternative<ResidualBlock>(l)) return EncodeMemo::Kind::Residual;
  if (std::holds_alternative<AttentionBlock>(l)) return EncodeMemo::Kind::Stateless;
  return std::get<Resample>(l).mode == ResampleMode::Downsample3d ? EncodeMemo::Kind::Down3d
                                                                  : EncodeMemo::Kind::Stateless;
}

// Frames [t0, t1) of the whole video, which are read (copied out of it and to the device) only
// where conv1 runs: with `memo` (which holds the video's frame ids) every unit goes through it and
// may be skipped (EncodeMemo above), conv1 included; without, each simply runs.
Tensor encoder_chunk(const vae::Encoder3d& e, const Tensor& video, int64_t t0, int64_t t1_chunk, FeatCache& cache,
                     Device device, DType act, int64_t per_pass, int64_t& passes, EncodeMemo* memo) {
  size_t split = 0;  // the first Downsample3d, or the end
  while (split < e.downsamples.size()) {
    const auto* r = std::get_if<Resample>(&e.downsamples[split]);
    if (r != nullptr && r->mode == ResampleMode::Downsample3d) break;
    ++split;
  }
  const Resample* down3d = split < e.downsamples.size() ? &std::get<Resample>(e.downsamples[split]) : nullptr;
  // A tensor flowing down the chain, with its frames' ids when there is a memo (undefined when the
  // memo skipped the unit that made it and dropped its output: the next unit is then skipped too).
  struct Flow {
    EncodeMemo::Frames ids;
    Tensor x;
  };
  size_t unit = 0;  // the units in chain order, the same every chunk
  auto step = [&](EncodeMemo::Kind kind, const Flow& in, const std::function<Tensor(const Tensor&)>& f,
                  bool sole_input = true) -> Flow {
    const size_t u = unit++;
    if (memo == nullptr) return {{}, f(in.x)};
    auto [ids, out] = memo->run(u, kind, in.ids, in.x, cache, f, sole_input);
    return {std::move(ids), std::move(out)};
  };
  using K = EncodeMemo::Kind;

  const size_t first_slot = cache.position();
  std::vector<Flow> frames;
  const int64_t n = t1_chunk - t0, step_frames = per_pass > 0 ? std::min(per_pass, n) : n;
  for (int64_t t = 0; t < n; t += step_frames) {
    cache.rewind(first_slot);
    unit = 0;
    const int64_t t1 = std::min(n, t + step_frames);
    Flow x{memo ? memo->video_frames(t0 + t, t0 + t1) : EncodeMemo::Frames{}, Tensor()};
    x = step(K::Conv, x, [&](const Tensor&) {
      return causal_conv(e.conv1, ops::slice_frames(video, t0 + t, t0 + t1).to(device), cache.take(), act);
    });
    for (size_t i = 0; i < split; ++i)
      x = step(memo_kind(e.downsamples[i]), x,
               [&](const Tensor& in) { return run_layer(e.downsamples[i], in, cache, act); });
    if (down3d != nullptr)
      x = step(K::Stateless, x, [&](const Tensor& in) { return downsample_spatial(*down3d, in, act); });
    frames.push_back(x);
    ++passes;
  }
  Flow x = frames.front();
  if (frames.size() > 1) {
    x = Flow{};
    std::vector<Tensor> parts;
    for (const Flow& f : frames) {
      x.ids.insert(x.ids.end(), f.ids.begin(), f.ids.end());
      if (f.x.defined()) parts.push_back(f.x);
    }
    if (parts.size() == frames.size()) x.x = ops::cat_frames(parts);
  }
  const bool one_pass = frames.size() == 1;
  frames.clear();
  if (down3d != nullptr) {
    x = step(
        K::DownTime, x, [&](const Tensor& in) { return downsample_time(*down3d, in, cache, act); }, one_pass);
    for (size_t i = split + 1; i < e.downsamples.size(); ++i)
      x = step(memo_kind(e.downsamples[i]), x,
               [&](const Tensor& in) { return run_layer(e.downsamples[i], in, cache, act); });
  }
  x = step(K::Stateless, x, [&](const Tensor& in) { return ops::to_dtype(in, DType::F32); });
  for (const Layer& l : e.middle) x = step(memo_kind(l), x, [&](const Tensor& in) { return run_layer(l, in, cache); });
  x = step(K::Conv, x, [&](const Tensor& in) { return run_head(e.head_norm, e.head_conv, in, cache); });
  IB_CHECK(x.x.defined(), "vae encode: the chunk's output was skipped (internal error)");
  return x.x;
}

// One latent frame through Decoder3d: [z_dim, 1, h, w] -> f32 [3, 1 or 4, 8h, 8w]. The outputs of
// the upsampling levels (their blocks, resamples, and so the per-layer caches there) are `act`:
// bf16 with bf16 conv weights, as under upstream's bf16 autocast. These levels hold nearly all of
// the decoder's memory and traffic (at 480p the last level's 96 channels × 4 frames × 480 × 832
// are 0.57 GiB in f32), so bf16 halves both. conv1, the middle (with its attention) and the head's
// output stay f32.
Tensor decoder_chunk(const vae::Decoder3d& d, const Tensor& z, FeatCache& cache, DType act) {
  Tensor x = causal_conv(d.conv1, z, cache.take(), DType::F32);
  for (const Layer& l : d.middle) x = run_layer(l, x, cache);
  for (const Layer& l : d.upsamples) x = run_layer(l, x, cache, act);
  return run_head(d.head_norm, d.head_conv, x, cache);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

WanVAE WanVAE::load(const TensorStore& store, const VaeConfig& cfg) {
  const auto levels = static_cast<int64_t>(cfg.dim_mult.size());
  IB_CHECK(cfg.dim > 0 && levels >= 1 && cfg.num_res_blocks >= 0,
           "vae config: dim {} / dim_mult {} / num_res_blocks {} are not valid", cfg.dim, cfg.dim_mult,
           cfg.num_res_blocks);
  for (int64_t u : cfg.dim_mult) IB_CHECK(u > 0, "vae config: dim_mult {} must be positive", cfg.dim_mult);
  IB_CHECK(static_cast<int64_t>(cfg.temporal_downsample.size()) == levels - 1,
           "vae config: temporal_downsample has {} entries, dim_mult {} needs {}", cfg.temporal_downsample.size(),
           cfg.dim_mult, levels - 1);
  IB_CHECK(cfg.z_dim == 16,
           "vae config: z_dim {} is not supported (the latent normalisation constants exist only for z_dim 16)",
           cfg.z_dim);

  WanVAE v;
  v.cfg_ = cfg;
  v.spatial_factor_ = int64_t{1} << (levels - 1);
  v.temporal_factor_ = 1;
  for (bool t : cfg.temporal_downsample)
    if (t) v.temporal_factor_ *= 2;
  const int64_t z = cfg.z_dim;
  WeightLoader w(store, cfg);

  // Encoder3d: dims = [dim·u for u in [1] + dim_mult]; num_res_blocks blocks per level, then a
  // downsample (3d where temporal_downsample says so) after every level but the last.
  {
    std::vector<int64_t> dims{cfg.dim};
    for (int64_t u : cfg.dim_mult) dims.push_back(cfg.dim * u);
    vae::Encoder3d& e = v.encoder_;
    e.conv1 = w.conv("encoder.conv1");
    int64_t idx = 0, in = dims[0];
    for (int64_t i = 0; i < levels; ++i) {
      const int64_t out = dims[static_cast<size_t>(i) + 1];
      for (int64_t r = 0; r < cfg.num_res_blocks; ++r, ++idx) {
        e.downsamples.emplace_back(w.residual(fmt::format("encoder.downsamples.{}", idx), in, out));
        in = out;
      }
      if (i != levels - 1) {
        const ResampleMode m = cfg.temporal_downsample[static_cast<size_t>(i)] ? ResampleMode::Downsample3d
                                                                                : ResampleMode::Downsample2d;
        e.downsamples.emplace_back(w.resample(fmt::format("encoder.downsamples.{}", idx++), in, m));
      }
    }
    e.middle.emplace_back(w.residual("encoder.middle.0", in, in));
    e.middle.emplace_back(w.attention("encoder.middle.1", in));
    e.middle.emplace_back(w.residual("encoder.middle.2", in, in));
    e.head_norm = w.get("encoder.head.0.gamma");
    e.head_conv = w.conv("encoder.head.2");
  }
  v.conv1_ = w.conv("conv1");
  v.conv2_ = w.conv("conv2");

  // Decoder3d: dims = [dim·u for u in [dim_mult[-1]] + dim_mult[::-1]]; num_res_blocks + 1 blocks
  // per level, an upsample (3d where reversed temporal_downsample says so) after every level but
  // the last. Each upsample outputs half its channels, so every level after the first starts from
  // dims[i] / 2 (upstream hard-codes this as `if i == 1 or i == 2 or i == 3`, which is the same
  // rule for its four levels).
  {
    std::vector<int64_t> dims{cfg.dim * cfg.dim_mult.back()};
    for (auto it = cfg.dim_mult.rbegin(); it != cfg.dim_mult.rend(); ++it) dims.push_back(cfg.dim * *it);
    vae::Decoder3d& d = v.decoder_;
    d.conv1 = w.conv("decoder.conv1");
    d.middle.emplace_back(w.residual("decoder.middle.0", dims[0], dims[0]));
    d.middle.emplace_back(w.attention("decoder.middle.1", dims[0]));
    d.middle.emplace_back(w.residual("decoder.middle.2", dims[0], dims[0]));
    int64_t idx = 0, out = dims[0];
    for (int64_t i = 0; i < levels; ++i) {
      int64_t in = dims[static_cast<size_t>(i)];
      if (i > 0) in /= 2;
      out = dims[static_cast<size_t>(i) + 1];
      for (int64_t r = 0; r < cfg.num_res_blocks + 1; ++r, ++idx) {
        d.upsamples.emplace_back(w.residual(fmt::format("decoder.upsamples.{}", idx), in, out));
        in = out;
      }
      if (i != levels - 1) {
        IB_CHECK(out % 2 == 0, "vae config: upsampling needs an even channel count, level {} has {}", i, out);
        const bool t = cfg.temporal_downsample[static_cast<size_t>(levels - 2 - i)];
        d.upsamples.emplace_back(w.resample(fmt::format("decoder.upsamples.{}", idx++), out,
                                            t ? ResampleMode::Upsample3d : ResampleMode::Upsample2d));
      }
    }
    d.head_norm = w.get("decoder.head.0.gamma");
    d.head_conv = w.conv("decoder.head.2");
  }

  const std::vector<std::string> extra = w.unused();
  IB_CHECK(extra.empty(), "VAE checkpoint {} holds {} tensor(s) the config does not explain (first: '{}'); "
           "check the vae section of the config (dim {}, dim_mult {}, num_res_blocks {})",
           store.source(extra.empty() ? std::string() : extra.front()), extra.size(),
           extra.empty() ? std::string() : extra.front(), cfg.dim, cfg.dim_mult, cfg.num_res_blocks);

  for (int64_t c = 0; c < z; ++c) {
    v.mean_.push_back(kLatentMean[c]);
    v.inv_std_.push_back(1.0f / kLatentStd[c]);  // upstream: 1.0 / std, an f32 tensor
  }
  return v;
}

void WanVAE::to(Device device, DType conv_dtype) {
  IB_CHECK(conv_dtype == DType::F32 || (conv_dtype == DType::BF16 && device == Device::CUDA),
           "WanVAE::to: conv weights as {} on {} are not supported (bf16 runs on CUDA only)", dtype_name(conv_dtype),
           device_name(device));
  auto move = [device](Tensor& t, DType dtype) {
    if (t.defined()) t = t.to(Device::CPU).to(dtype).to(device);  // dtype conversion happens on the CPU
  };
  auto conv = [&](Conv& c) {
    move(c.weight, conv_dtype);
    move(c.bias, DType::F32);
  };
  auto layers = [&](std::vector<Layer>& ls) {
    for (Layer& l : ls) {
      if (auto* b = std::get_if<ResidualBlock>(&l)) {
        move(b->norm1, DType::F32);
        move(b->norm2, DType::F32);
        conv(b->conv1);
        conv(b->conv2);
        conv(b->shortcut);
      } else if (auto* a = std::get_if<AttentionBlock>(&l)) {
        move(a->norm, DType::F32);
        move(a->qkv_w, conv_dtype);
        move(a->qkv_b, DType::F32);
        conv(a->proj);
      } else {
        Resample& r = std::get<Resample>(l);
        conv(r.resample);
        conv(r.time_conv);
      }
    }
  };
  conv(encoder_.conv1);
  layers(encoder_.downsamples);
  layers(encoder_.middle);
  move(encoder_.head_norm, DType::F32);
  conv(encoder_.head_conv);
  conv(decoder_.conv1);
  layers(decoder_.middle);
  layers(decoder_.upsamples);
  move(decoder_.head_norm, DType::F32);
  conv(decoder_.head_conv);
  conv(conv1_);
  conv(conv2_);
  device_ = device;
  conv_dtype_ = conv_dtype;
}

Tensor WanVAE::encode(const Tensor& video, const VaeChunkFn& on_chunk) const {
  IB_CHECK(video.dtype() == DType::F32 && video.dim() == 4 && video.size(0) == 3,
           "vae encode: expected an f32 video [3, F, H, W], got {}", video.str());
  const int64_t F = video.size(1), H = video.size(2), W = video.size(3);
  const int64_t tf = temporal_factor_, sf = spatial_factor_;
  IB_CHECK(F >= 1 && (F - 1) % tf == 0, "vae encode: the frame count must be 1 + {}·k, got {}", tf, F);
  IB_CHECK(H > 0 && W > 0 && H % sf == 0 && W % sf == 0,
           "vae encode: height and width must be positive multiples of {}, got {}x{}", sf, H, W);

  // Frame 0 alone, then chunks of tf frames; each chunk yields one latent frame. A host video goes
  // to the device a frame at a time (the whole of it is 0.9 GB at 1280x720, 81 frames).
  FeatCache cache;
  std::vector<Tensor> chunks;
  const int64_t n_chunks = 1 + (F - 1) / tf;
  int64_t passes = 0;
  std::optional<EncodeMemo> memo;
  if (encode_memo_) {
    memo.emplace();
    memo->set_video_frames(video);
  }
  for (int64_t t0 = 0; t0 < F; t0 = t0 == 0 ? 1 : t0 + tf) {
    cache.start_chunk();
    const int64_t t1 = t0 == 0 ? 1 : t0 + tf;
    chunks.push_back(encoder_chunk(encoder_, video, t0, t1, cache, device_, conv_dtype_, encode_frames_per_pass_,
                                   passes, memo ? &*memo : nullptr));
    if (on_chunk) on_chunk(static_cast<int64_t>(chunks.size()), n_chunks);
  }
  last_encode_passes_ = passes;
  last_encode_skipped_ = memo ? memo->skipped() : 0;
  const Tensor out = ops::cat_frames(chunks);  // [2·z_dim, T', h, w]

  // conv1, keeping only the mean half (channels 0 .. z_dim-1); the log-variance is unused.
  const int64_t z = cfg_.z_dim;
  const Tensor mu = ops::conv3d(out, conv1_.weight.slice(0, z), conv1_.bias.slice(0, z));
  return ops::latent_normalize(mu, mean_, inv_std_);
}

Shape WanVAE::decoded_shape(const Tensor& latent) const {
  IB_CHECK(latent.dtype() == DType::F32 && latent.dim() == 4 && latent.size(0) == cfg_.z_dim,
           "vae decode: expected an f32 latent [{}, T, h, w], got {}", cfg_.z_dim, latent.str());
  const int64_t T = latent.size(1), h = latent.size(2), w = latent.size(3);
  IB_CHECK(T >= 1 && h > 0 && w > 0, "vae decode: empty latent {}", latent.str());
  return {3, 1 + temporal_factor_ * (T - 1), spatial_factor_ * h, spatial_factor_ * w};
}

void WanVAE::decode_frames(const Tensor& latent, const FramesFn& frames_fn, const VaeChunkFn& on_chunk) const {
  const Shape out = decoded_shape(latent);
  const int64_t T = latent.size(1);

  const Tensor z = latent.to(device_);
  const Tensor x = ops::conv3d(ops::latent_denormalize(z, mean_, inv_std_), conv2_.weight, conv2_.bias);
  FeatCache cache;
  int64_t f = 0;
  for (int64_t t = 0; t < T; ++t) {
    cache.start_chunk();
    Tensor frames = decoder_chunk(decoder_, ops::slice_frames(x, t, t + 1), cache, conv_dtype_);  // [3, n, H, W]
    const int64_t n = frames.size(1);
    IB_CHECK(f + n <= out[1] && frames.size(2) == out[2] && frames.size(3) == out[3],
             "vae decode: chunk {} produced {} (internal error)", t, frames.str());
    ops::clamp_(frames, -1.0f, 1.0f);  // elementwise: the same as clamping the whole video
    frames_fn(frames, f);
    f += n;
    if (on_chunk) on_chunk(t + 1, T);
  }
  IB_CHECK(f == out[1], "vae decode: produced {} frames, expected {} (internal error)", f, out[1]);
}

Tensor WanVAE::decode(const Tensor& latent, const VaeChunkFn& on_chunk) const {
  Tensor video = Tensor::empty(decoded_shape(latent), DType::F32, device_);
  decode_frames(
      latent,
      [&](const Tensor& frames, int64_t f) {
        const int64_t n = frames.size(1);
        for (int64_t c = 0; c < 3; ++c) copy_bytes(video.select(c).slice(f, f + n), frames.select(c));
      },
      on_chunk);
  return video;
}

// ---- The weight list: what load() reads and synthetic models write --------------------------

namespace {

void residual_specs(WeightShapes& s, const std::string& p, int64_t cin, int64_t cout) {
  s.push_back({p + ".residual.0.gamma", {cin, 1, 1, 1}});
  s.push_back({p + ".residual.2.weight", {cout, cin, 3, 3, 3}});
  s.push_back({p + ".residual.2.bias", {cout}});
  s.push_back({p + ".residual.3.gamma", {cout, 1, 1, 1}});
  s.push_back({p + ".residual.6.weight", {cout, cout, 3, 3, 3}});
  s.push_back({p + ".residual.6.bias", {cout}});
  if (cin != cout) {
    s.push_back({p + ".shortcut.weight", {cout, cin, 1, 1, 1}});
    s.push_back({p + ".shortcut.bias", {cout}});
  }
}

void attention_specs(WeightShapes& s, const std::string& p, int64_t c) {
  s.push_back({p + ".norm.gamma", {c, 1, 1}});
  s.push_back({p + ".to_qkv.weight", {3 * c, c, 1, 1}});
  s.push_back({p + ".to_qkv.bias", {3 * c}});
  s.push_back({p + ".proj.weight", {c, c, 1, 1}});
  s.push_back({p + ".proj.bias", {c}});
}

void resample_specs(WeightShapes& s, const std::string& p, int64_t c, bool up, bool temporal) {
  const int64_t out = up ? c / 2 : c;
  s.push_back({p + ".resample.1.weight", {out, c, 3, 3}});
  s.push_back({p + ".resample.1.bias", {out}});
  if (temporal) {
    const int64_t tout = up ? 2 * c : c;
    s.push_back({p + ".time_conv.weight", {tout, c, 3, 1, 1}});
    s.push_back({p + ".time_conv.bias", {tout}});
  }
}

}  // namespace

WeightShapes vae_weight_shapes(const VaeConfig& c) {
  WeightShapes s;
  const size_t levels = c.dim_mult.size();
  std::vector<int64_t> dims{c.dim};
  for (int64_t u : c.dim_mult) dims.push_back(c.dim * u);
  // Encoder (upstream Encoder3d).
  s.push_back({"encoder.conv1.weight", {dims[0], 3, 3, 3, 3}});
  s.push_back({"encoder.conv1.bias", {dims[0]}});
  // The channel count carries over from level to level, as in WanVAE::load (the same whenever
  // num_res_blocks >= 1).
  int idx = 0;
  int64_t in = dims[0];
  for (size_t i = 0; i < levels; ++i) {
    const int64_t out = dims[i + 1];
    for (int64_t r = 0; r < c.num_res_blocks; ++r) {
      residual_specs(s, fmt::format("encoder.downsamples.{}", idx++), in, out);
      in = out;
    }
    if (i + 1 != levels) resample_specs(s, fmt::format("encoder.downsamples.{}", idx++), in, false, c.temporal_downsample[i]);
  }
  const int64_t top = in;
  residual_specs(s, "encoder.middle.0", top, top);
  attention_specs(s, "encoder.middle.1", top);
  residual_specs(s, "encoder.middle.2", top, top);
  s.push_back({"encoder.head.0.gamma", {top, 1, 1, 1}});
  s.push_back({"encoder.head.2.weight", {2 * c.z_dim, top, 3, 3, 3}});
  s.push_back({"encoder.head.2.bias", {2 * c.z_dim}});
  s.push_back({"conv1.weight", {2 * c.z_dim, 2 * c.z_dim, 1, 1, 1}});
  s.push_back({"conv1.bias", {2 * c.z_dim}});
  s.push_back({"conv2.weight", {c.z_dim, c.z_dim, 1, 1, 1}});
  s.push_back({"conv2.bias", {c.z_dim}});
  // Decoder (upstream Decoder3d): dims reversed, starting from the deepest width.
  std::vector<int64_t> ddims{c.dim * c.dim_mult.back()};
  for (size_t i = levels; i-- > 0;) ddims.push_back(c.dim * c.dim_mult[i]);
  s.push_back({"decoder.conv1.weight", {ddims[0], c.z_dim, 3, 3, 3}});
  s.push_back({"decoder.conv1.bias", {ddims[0]}});
  residual_specs(s, "decoder.middle.0", ddims[0], ddims[0]);
  attention_specs(s, "decoder.middle.1", ddims[0]);
  residual_specs(s, "decoder.middle.2", ddims[0], ddims[0]);
  idx = 0;
  for (size_t i = 0; i < levels; ++i) {
    int64_t d_in = ddims[i];
    const int64_t out = ddims[i + 1];
    if (i >= 1) d_in /= 2;  // the resample before halved the channels (upstream: `if i in (1, 2, 3)`)
    for (int64_t r = 0; r < c.num_res_blocks + 1; ++r) {
      residual_specs(s, fmt::format("decoder.upsamples.{}", idx++), d_in, out);
      d_in = out;
    }
    if (i + 1 != levels) {
      const bool temporal = c.temporal_downsample[levels - 2 - i];
      resample_specs(s, fmt::format("decoder.upsamples.{}", idx++), out, true, temporal);
    }
  }
  s.push_back({"decoder.head.0.gamma", {ddims.back(), 1, 1, 1}});
  s.push_back({"decoder.head.2.weight", {3, ddims.back(), 3, 3, 3}});
  s.push_back({"decoder.head.2.bias", {3}});
  return s;
}

}  // namespace ib
