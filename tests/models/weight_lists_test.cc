// Each model's weight list is declared once: the loader of T5, CLIP, the VAE and the DiT reads
// exactly the tensors of the list the synthetic model writer writes (names and shapes), for the
// tiny preset and for the configurations that switch optional parts on.
#include <gtest/gtest.h>

#include <map>
#include <mutex>
#include <set>

#include "io/tensor_store.h"
#include "models/clip.h"
#include "models/dit.h"
#include "models/t5.h"
#include "models/vae.h"
#include "synth/synth_model.h"

namespace ib {
namespace {

using Specs = std::vector<std::pair<std::string, Shape>>;

// A MemoryTensorStore that remembers which tensors were fetched.
class RecordingStore : public TensorStore {
 public:
  explicit RecordingStore(const Specs& specs) : inner_(make_weights(specs, DType::F32, 1)) {}
  bool contains(const std::string& name) const override { return inner_.contains(name); }
  std::vector<std::string> names() const override { return inner_.names(); }
  TensorInfo info(const std::string& name) const override { return inner_.info(name); }
  Tensor get(const std::string& name) const override {
    std::lock_guard lock(mu_);
    read_.insert(name);
    return inner_.get(name);
  }
  std::string source(const std::string& name) const override { return inner_.source(name); }
  std::set<std::string> read() const {
    std::lock_guard lock(mu_);
    return read_;
  }

 private:
  MemoryTensorStore inner_;
  mutable std::mutex mu_;
  mutable std::set<std::string> read_;
};

std::set<std::string> names_of(const Specs& specs) {
  std::set<std::string> out;
  for (const auto& [name, shape] : specs) out.insert(name);
  return out;
}

// The names in `a` that are not in `b`.
std::vector<std::string> minus(const std::set<std::string>& a, const std::set<std::string>& b) {
  std::vector<std::string> out;
  for (const std::string& n : a)
    if (!b.count(n)) out.push_back(n);
  return out;
}

template <class Model, class Config>
void expect_reads_exactly(const Specs& specs, const Config& cfg, const std::set<std::string>& unused = {}) {
  RecordingStore store(specs);
  Model::load(store, cfg);
  std::set<std::string> expected = names_of(specs);
  for (const std::string& n : unused) expected.erase(n);
  EXPECT_EQ(minus(store.read(), expected), std::vector<std::string>{}) << "read but not in the list";
  EXPECT_EQ(minus(expected, store.read()), std::vector<std::string>{}) << "in the list but not read";
}

TEST(WeightLists, T5LoaderReadsItsList) {
  const SynthPreset p = synth_preset("tiny");
  expect_reads_exactly<T5Encoder>(t5_weight_shapes(p.t5), p.t5);
  // Every size different, so that no swapped dimension matches by chance.
  const T5Config odd{300, 24, 32, 40, 4, 2, 8, 64, 1e-6f};
  expect_reads_exactly<T5Encoder>(t5_weight_shapes(odd), odd);
}

TEST(WeightLists, ClipLoaderReadsItsList) {
  const SynthPreset p = synth_preset("tiny");
  // Upstream's encoder runs all blocks but the last, and never uses the projection head.
  ClipConfig c = p.clip;
  c.dim = 24;
  c.mlp_ratio = 3;
  c.num_heads = 4;
  c.num_layers = 3;
  std::set<std::string> unused = {"visual.head", "visual.post_norm.weight", "visual.post_norm.bias"};
  for (const auto& [name, shape] : clip_weight_shapes(c))
    if (name.rfind(fmt::format("visual.transformer.{}.", c.num_layers - 1), 0) == 0) unused.insert(name);
  expect_reads_exactly<ClipVision>(clip_weight_shapes(c), c, unused);
}

TEST(WeightLists, VaeLoaderReadsItsList) {
  const SynthPreset p = synth_preset("tiny");
  expect_reads_exactly<WanVAE>(vae_weight_shapes(p.vae), p.vae);
  VaeConfig odd = p.vae;
  odd.dim = 4;
  odd.dim_mult = {1, 3, 5, 7};
  odd.num_res_blocks = 1;
  expect_reads_exactly<WanVAE>(vae_weight_shapes(odd), odd);
}

TEST(WeightLists, DitLoaderReadsItsList) {
  const SynthPreset p = synth_preset("tiny");
  const int64_t grid = p.clip.image_size / p.clip.patch_size;
  for (const char* type : {"flf2v", "i2v", "t2v"}) {
    SCOPED_TRACE(type);
    DitConfig c = p.dit;
    c.model_type = type;
    c.dim = 48;
    c.ffn_dim = 80;
    c.freq_dim = 32;
    c.num_heads = 3;
    c.text_len = 7;
    if (c.model_type == "t2v") c.in_dim = c.out_dim;
    expect_reads_exactly<WanDiT>(dit_weight_shapes(c, p.t5.dim, p.clip.dim, 2 * (grid * grid + 1)), c);
  }
}

}  // namespace
}  // namespace ib
