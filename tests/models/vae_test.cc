// Wan-VAE against the fixture (vae.safetensors: encode, decode, decode of a random latent), input
// validation, and load-time checks (missing, misshapen and unexplained tensors, z_dim).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <ctime>
#include <map>
#include <set>

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
  const Tensor latent = timed("encode [3,9,48,80]", [&] { return vae.encode(video); });
  EXPECT_TENSOR_CLOSE(latent, f->get("latent"), test::kComponentRel);
}

TEST(WanVAE, DecodeMatchesFixture) {
  const auto f = test::open_fixture("vae.safetensors");
  const WanVAE& vae = model();
  const Tensor decoded = timed("decode [16,3,6,10]", [&] { return vae.decode(f->get("latent").to(DType::F32)); });
  EXPECT_TENSOR_CLOSE(decoded, f->get("decoded"), test::kComponentRel);
  const Tensor rnd = f->get("random_latent").to(DType::F32);
  const Tensor rnd_decoded = timed("decode random_latent", [&] { return vae.decode(rnd); });
  EXPECT_TENSOR_CLOSE(rnd_decoded, f->get("random_decoded"), test::kComponentRel);
}

// The message of the ib::Error that fn throws ("" when it does not throw).
template <typename Fn>
std::string error_of(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(WanVAE, RejectsBadVideoAndLatentShapes) {
  const WanVAE& vae = model();
  EXPECT_NE(error_of([&] { vae.encode(Tensor::zeros({3, 8, 16, 16})); }).find("1 + 4"), std::string::npos);
  EXPECT_NE(error_of([&] { vae.encode(Tensor::zeros({3, 6, 16, 16})); }).find("frame count"), std::string::npos);
  EXPECT_NE(error_of([&] { vae.encode(Tensor::zeros({3, 5, 12, 16})); }).find("multiples of 8"), std::string::npos);
  EXPECT_NE(error_of([&] { vae.encode(Tensor::zeros({3, 1, 16, 20})); }).find("multiples of 8"), std::string::npos);
  EXPECT_THROW(vae.encode(Tensor::zeros({4, 1, 16, 16})), Error);
  EXPECT_THROW(vae.decode(Tensor::zeros({15, 1, 2, 2})), Error);
  EXPECT_THROW(vae.decode(Tensor::zeros({16, 2, 2})), Error);
  // Smallest valid inputs.
  EXPECT_EQ(vae.encode(Tensor::zeros({3, 1, 8, 8})).shape(), (Shape{16, 1, 1, 1}));
  EXPECT_EQ(vae.decode(Tensor::zeros({16, 2, 1, 1})).shape(), (Shape{3, 5, 8, 8}));
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

TEST(WanVAE, LoadChecksWeightsAndConfig) {
  const VaeConfig cfg = vae_config();
  {
    EditedStore s(weights());
    s.hidden.insert("decoder.upsamples.4.shortcut.weight");
    EXPECT_NE(error_of([&] { WanVAE::load(s, cfg); }).find("decoder.upsamples.4.shortcut.weight"), std::string::npos);
  }
  {
    EditedStore s(weights());
    s.extra["encoder.downsamples.3.residual.2.weight"] = Tensor::zeros({16, 8, 3, 3, 1});
    const std::string e = error_of([&] { WanVAE::load(s, cfg); });
    EXPECT_NE(e.find("encoder.downsamples.3.residual.2.weight"), std::string::npos) << e;
    EXPECT_NE(e.find("[16, 8, 3, 3, 3]"), std::string::npos) << e;
  }
  {
    EditedStore s(weights());
    s.extra["decoder.upsamples.15.residual.0.gamma"] = Tensor::zeros({8, 1, 1, 1});
    EXPECT_NE(error_of([&] { WanVAE::load(s, cfg); }).find("decoder.upsamples.15.residual.0.gamma"),
              std::string::npos);
  }
  VaeConfig bad = cfg;
  bad.z_dim = 8;
  EXPECT_NE(error_of([&] { WanVAE::load(weights(), bad); }).find("z_dim 8"), std::string::npos);
  bad = cfg;
  bad.num_res_blocks = 1;  // the checkpoint has 2: a shape or an unexplained-tensor error
  EXPECT_THROW(WanVAE::load(weights(), bad), Error);
  bad = cfg;
  bad.dim = 16;
  EXPECT_NE(error_of([&] { WanVAE::load(weights(), bad); }).find("encoder.conv1.weight"), std::string::npos);
  bad = cfg;
  bad.temporal_downsample = {true, true};
  EXPECT_NE(error_of([&] { WanVAE::load(weights(), bad); }).find("temporal_downsample"), std::string::npos);
}

}  // namespace
}  // namespace ib
