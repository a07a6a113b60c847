// Wan-VAE against the fixture (vae.safetensors: encode, decode, decode of a random latent), input
// validation, and load-time checks (missing, misshapen and unexplained tensors, z_dim).
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/model_config.h"
#include "models/vae.h"

namespace ib {
namespace {

const ModelFolder& folder() {
  static const ModelFolder f = ModelFolder::open(test::model_dir());
  return f;
}

VaeConfig vae_config() { return folder().vae; }

const TensorStore& weights() {
  static const auto store = open_tensor_store(folder().vae_path);
  return *store;
}

const WanVAE& model() {
  static const WanVAE vae = WanVAE::load(weights(), vae_config());
  return vae;
}

// Wall and process CPU seconds of fn (CPU time sums all threads).
template <typename Fn>
Tensor timed(const char* what, Fn&& fn) {
  const auto w0 = std::chrono::steady_clock::now();
  const std::clock_t c0 = std::clock();
  Tensor out = fn();
  const double cpu = static_cast<double>(std::clock() - c0) / CLOCKS_PER_SEC;
  const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - w0).count();
  std::printf("[timing] %s: wall %.3f s, cpu %.3f s\n", what, wall, cpu);
  return out;
}

TEST(WanVAE, EncodeMatchesFixture) {
  const auto f = test::open_fixture("vae.safetensors");
  const Tensor video = f->get("video").to(DType::F32);
  const WanVAE& vae = model();
  const Tensor latent = timed(("encode " + video.str()).c_str(), [&] { return vae.encode(video); });
  EXPECT_TENSOR_CLOSE(latent, f->get("latent"), test::kComponentRel);
}

// The encoder's first levels a frame (or two) at a time, as a tight GPU budget asks for: the
// fixture's latent again, and the whole-chunk encode's numbers to within f32 summation order. The
// pass count shows the split path ran (the latent alone would pass were the setting ignored).
TEST(WanVAE, EncodeFramesPerPassMatchesWholeChunks) {
  const auto f = test::open_fixture("vae.safetensors");
  const Tensor video = f->get("video").to(DType::F32);
  WanVAE whole_vae = model();
  const Tensor whole = whole_vae.encode(video);
  const int64_t tf = whole_vae.temporal_factor(), chunks = 1 + (video.size(1) - 1) / tf;
  ASSERT_GE(chunks, 2) << "the fixture's video " << video.str() << " has a single chunk";
  EXPECT_EQ(whole_vae.last_encode_passes(), chunks);
  for (const int64_t per_pass : {int64_t{1}, int64_t{2}}) {
    SCOPED_TRACE(std::to_string(per_pass) + " frames a pass");
    WanVAE vae = model();
    vae.set_encode_frames_per_pass(per_pass);
    const Tensor latent = vae.encode(video);
    // Frame 0 is a chunk of its own; every later chunk of tf frames takes ⌈tf / per_pass⌉ passes.
    const int64_t passes = 1 + (chunks - 1) * ((tf + per_pass - 1) / per_pass);
    EXPECT_EQ(vae.last_encode_passes(), passes);
    if (per_pass < tf) {
      EXPECT_GT(vae.last_encode_passes(), chunks);
    }
    EXPECT_TENSOR_CLOSE(latent, f->get("latent"), test::kComponentRel);
    EXPECT_TENSOR_CLOSE(latent, whole, 1e-5);
  }
}

// ---- The encoder's exact reuse of repeated work (WanVAE::set_encode_memo) ----

// A video of the fixture's size with `chunks` chunks after frame 0: each chunk's frames are zeros
// or, where `fresh` says so, random (frame 0 and the last frame are always random, as FLF2V's
// first and last images).
Tensor memo_video(int64_t chunks, const std::set<int64_t>& fresh, uint32_t seed) {
  const Tensor ref = test::open_fixture("vae.safetensors")->get("video");
  const int64_t tf = model().temporal_factor(), F = 1 + tf * chunks, H = ref.size(2), W = ref.size(3);
  Tensor v = Tensor::zeros({3, F, H, W}, DType::F32);
  const Tensor noise = test::random_tensor({3, F, H, W}, seed, 0.5f);
  for (int64_t t = 0; t < F; ++t) {
    const int64_t chunk = t == 0 ? 0 : 1 + (t - 1) / tf;
    if (t != 0 && t != F - 1 && fresh.count(chunk) == 0) continue;
    for (int64_t c = 0; c < 3; ++c)
      std::memcpy(v.data<float>() + (c * F + t) * H * W, noise.data<float>() + (c * F + t) * H * W,
                  static_cast<size_t>(H * W) * sizeof(float));
  }
  return v;
}

// memo on and off (the plain path) on one video: bit-identical latents; returns the skips.
int64_t memo_skips(const Tensor& video, int64_t per_pass) {
  WanVAE on = model(), off = model();
  on.set_encode_frames_per_pass(per_pass);
  off.set_encode_frames_per_pass(per_pass);
  off.set_encode_memo(false);
  const Tensor a = on.encode(video), b = off.encode(video);
  EXPECT_EQ(off.last_encode_skipped(), 0);
  EXPECT_EQ(a.shape(), b.shape());
  if (a.shape() == b.shape()) {
    EXPECT_EQ(0, std::memcmp(a.raw(), b.raw(), static_cast<size_t>(a.nbytes()))) << "memo on and off differ";
  }
  std::printf("[measured] %s, %lld frames a pass: %lld unit calls skipped\n", video.str().c_str(),
              static_cast<long long>(per_pass), static_cast<long long>(on.last_encode_skipped()));
  return on.last_encode_skipped();
}

// FLF2V's conditioning video (first frame, zeros, last frame), long enough for the deeper units to
// settle: the memo skips work and the latent is bit for bit the plain path's, whole chunks or a
// frame or two at a time.
TEST(WanVAEEncodeMemo, SkipsRepeatedWorkExactly) {
  const Tensor video = memo_video(12, {}, 41);
  for (const int64_t per_pass : {int64_t{0}, int64_t{1}, int64_t{2}}) {
    SCOPED_TRACE(std::to_string(per_pass) + " frames a pass");
    EXPECT_GT(memo_skips(video, per_pass), 0);
  }
}

// A video where nothing repeats: nothing is skipped, and the result is the same.
TEST(WanVAEEncodeMemo, SkipsNothingWithoutRepeats) {
  std::set<int64_t> all;
  for (int64_t c = 1; c <= 6; ++c) all.insert(c);
  EXPECT_EQ(memo_skips(memo_video(6, all, 42), 0), 0);
}

// Zero runs broken by fresh chunks, a short run, the last frame right after a run: every unit
// must notice when its input or its cached frames change again.
TEST(WanVAEEncodeMemo, FollowsBrokenRuns) {
  EXPECT_GT(memo_skips(memo_video(14, {7, 8}, 43), 0), 0);
  EXPECT_GT(memo_skips(memo_video(14, {6}, 44), 1), 0);
  // Runs too short for every model to settle: what is checked is memo_skips's bit equality.
  memo_skips(memo_video(4, {}, 45), 0);
  memo_skips(memo_video(2, {}, 46), 2);
}

TEST(WanVAE, DecodeMatchesFixture) {
  const auto f = test::open_fixture("vae.safetensors");
  const WanVAE& vae = model();
  const Tensor latent = f->get("latent").to(DType::F32);
  const Tensor decoded = timed(("decode " + latent.str()).c_str(), [&] { return vae.decode(latent); });
  EXPECT_TENSOR_CLOSE(decoded, f->get("decoded"), test::kComponentRel);
  const Tensor rnd = f->get("random_latent").to(DType::F32);
  const Tensor rnd_decoded = timed("decode random_latent", [&] { return vae.decode(rnd); });
  EXPECT_TENSOR_CLOSE(rnd_decoded, f->get("random_decoded"), test::kComponentRel);
}

using test::error_message;
using test::expect_error;

// The video-to-latent factors the case's config implies: 2 per temporal downsample, 2 per level
// transition in space.
int64_t temporal_factor() {
  int64_t tf = 1;
  for (bool t : vae_config().temporal_downsample) tf *= t ? 2 : 1;
  return tf;
}
int64_t spatial_factor() { return int64_t{1} << (vae_config().dim_mult.size() - 1); }

TEST(WanVAE, RejectsBadVideoAndLatentShapes) {
  const WanVAE& vae = model();
  const int64_t tf = temporal_factor(), sf = spatial_factor(), z = vae_config().z_dim;
  EXPECT_EQ(vae.temporal_factor(), tf);
  EXPECT_EQ(vae.spatial_factor(), sf);
  ASSERT_GE(tf, 2) << "the case's VAE has no temporal downsampling";
  const std::string frames_msg = fmt::format("frame count must be 1 + {}", tf);
  expect_error([&] { vae.encode(Tensor::zeros({3, tf, 2 * sf, 2 * sf})); }, {frames_msg, fmt::format("got {}", tf)});
  expect_error([&] { vae.encode(Tensor::zeros({3, tf + 2, 2 * sf, 2 * sf})); }, {frames_msg});
  const std::string side_msg = fmt::format("multiples of {}", sf);
  expect_error([&] { vae.encode(Tensor::zeros({3, 1 + tf, sf + sf / 2, 2 * sf})); },
               {side_msg, fmt::format("got {}x{}", sf + sf / 2, 2 * sf)});  // H x W
  expect_error([&] { vae.encode(Tensor::zeros({3, 1, 2 * sf, 2 * sf + 4})); }, {side_msg});
  expect_error([&] { vae.encode(Tensor::zeros({4, 1, 2 * sf, 2 * sf})); }, {"expected an f32 video [3, F, H, W]"});
  expect_error([&] { vae.encode(Tensor::zeros({3, 1, 2 * sf, 2 * sf}, DType::F16)); }, {"expected an f32 video"});
  const std::string latent_msg = fmt::format("expected an f32 latent [{}, T, h, w]", z);
  expect_error([&] { vae.decode(Tensor::zeros({z - 1, 1, 2, 2})); }, {latent_msg});
  expect_error([&] { vae.decode(Tensor::zeros({z, 2, 2})); }, {latent_msg});
  expect_error([&] { vae.decode(Tensor::zeros({z, 0, 2, 2})); }, {"empty latent"});
  // Smallest valid inputs.
  EXPECT_EQ(vae.encode(Tensor::zeros({3, 1, sf, sf})).shape(), (Shape{z, 1, 1, 1}));
  EXPECT_EQ(vae.decode(Tensor::zeros({z, 2, 1, 1})).shape(), (Shape{3, 1 + tf, sf, sf}));
}

// A view of another store with some names hidden, replaced or added.
class EditedStore : public TensorStore {
 public:
  explicit EditedStore(const TensorStore& base) : base_(base) {}
  std::set<std::string> hidden;
  std::map<std::string, Tensor> extra;
  bool contains(const std::string& n) const override {
    return extra.count(n) || (!hidden.count(n) && base_.contains(n));
  }
  std::vector<std::string> names() const override {
    std::set<std::string> s;
    for (const std::string& n : base_.names())
      if (!hidden.count(n)) s.insert(n);
    for (const auto& [n, t] : extra) s.insert(n);
    return {s.begin(), s.end()};
  }
  TensorInfo info(const std::string& n) const override {
    if (auto it = extra.find(n); it != extra.end()) return {it->second.dtype(), it->second.shape()};
    return base_.info(n);
  }
  Tensor get(const std::string& n) const override {
    if (auto it = extra.find(n); it != extra.end()) return it->second;
    return base_.get(n);
  }
  std::string source(const std::string& n) const override { return base_.source(n); }

 private:
  const TensorStore& base_;
};

std::string shape_text(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

TEST(WanVAE, LoadChecksWeightsAndConfig) {
  const VaeConfig cfg = vae_config();
  const std::vector<std::string> names = weights().names();
  // A missing tensor is named, wherever it sits (every 7th of the checkpoint, and the last one).
  for (size_t i = 0; i < names.size(); ++i) {
    if (i % 7 != 0 && i + 1 != names.size()) continue;
    EditedStore s(weights());
    s.hidden.insert(names[i]);
    expect_error([&] { WanVAE::load(s, cfg); }, {names[i], "missing"});
  }
  {  // A misshapen conv weight: the message names it, the shape the config implies and the one found.
    std::string conv;
    for (const auto& n : names)
      if (n.starts_with("encoder.downsamples.") && n.ends_with(".residual.2.weight")) conv = n;
    ASSERT_FALSE(conv.empty());
    const Shape want = weights().info(conv).shape;  // [cout, cin, 3, 3, 3]
    Shape flat = want;
    flat.back() = 1;
    EditedStore s(weights());
    s.extra[conv] = Tensor::zeros(flat);
    expect_error([&] { WanVAE::load(s, cfg); }, {conv, shape_text(want), shape_text(flat)});
  }
  {  // A tensor past the last decoder block is one the config does not explain.
    int64_t blocks = 0;
    for (const auto& n : names)
      if (n.starts_with("decoder.upsamples."))
        blocks = std::max<int64_t>(blocks, std::stoll(n.substr(std::string("decoder.upsamples.").size())) + 1);
    const std::string extra = fmt::format("decoder.upsamples.{}.residual.0.gamma", blocks);
    EditedStore s(weights());
    s.extra[extra] = Tensor::zeros({cfg.dim, 1, 1, 1});
    expect_error([&] { WanVAE::load(s, cfg); }, {extra, "does not explain"});
  }
  VaeConfig bad = cfg;
  bad.z_dim = cfg.z_dim / 2;
  expect_error([&] { WanVAE::load(weights(), bad); }, {fmt::format("z_dim {}", bad.z_dim)});
  bad = cfg;
  bad.num_res_blocks = cfg.num_res_blocks + 1;  // a block the checkpoint lacks, or a misshapen one
  EXPECT_NE(error_message([&] { WanVAE::load(weights(), bad); }).find("encoder.downsamples."), std::string::npos);
  if (cfg.num_res_blocks > 0) {
    bad.num_res_blocks = cfg.num_res_blocks - 1;
    EXPECT_NE(error_message([&] { WanVAE::load(weights(), bad); }).find("encoder.downsamples."), std::string::npos);
  }
  bad = cfg;
  bad.dim = cfg.dim * 2;
  expect_error([&] { WanVAE::load(weights(), bad); },
               {"encoder.conv1.weight", shape_text({bad.dim, 3, 3, 3, 3}), shape_text({cfg.dim, 3, 3, 3, 3})});
  bad = cfg;
  bad.temporal_downsample.push_back(true);
  expect_error([&] { WanVAE::load(weights(), bad); },
               {fmt::format("temporal_downsample has {} entries", bad.temporal_downsample.size())});
}

}  // namespace
}  // namespace ib
