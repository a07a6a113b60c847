// WanDiT against the upstream oracle (dit.safetensors), the loader's checks, and the i2v / t2v
// variants against equivalent flf2v models.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "models/dit.h"

namespace ib {
namespace {

namespace fs = std::filesystem;

std::string dit_index() { return test::model_dir() + "/diffusion_pytorch_model.safetensors.index.json"; }

// The DiT config of the fixture model (config.json through the model-folder loader).
DitConfig fixture_config() { return ModelFolder::open(test::model_dir()).dit; }

// An in-memory checkpoint built from the fixture's, for variants of the weights.
class MapStore : public TensorStore {
 public:
  std::map<std::string, Tensor> t;
  bool contains(const std::string& n) const override { return t.count(n) != 0; }
  std::vector<std::string> names() const override {
    std::vector<std::string> v;
    for (const auto& [k, _] : t) v.push_back(k);
    return v;
  }
  TensorInfo info(const std::string& n) const override { return {t.at(n).dtype(), t.at(n).shape()}; }
  Tensor get(const std::string& n) const override { return t.at(n); }
  std::string source(const std::string&) const override { return "<memory>"; }
};

MapStore copy_store(const TensorStore& s) {
  MapStore m;
  for (const auto& n : s.names()) m.t[n] = s.get(n).to(DType::F32).clone();
  return m;
}

void fill_zero(Tensor& t) { std::fill_n(t.data<float>(), t.numel(), 0.0f); }

struct Inputs {
  Tensor x, y, context, clip_fea;
  double t = 0, t2 = 0;
  Tensor out, out2;
};

Inputs fixture_inputs() {
  const auto f = test::open_fixture("dit.safetensors");
  Inputs in;
  in.x = f->get("x");
  in.y = f->get("y");
  in.context = f->get("context");
  in.clip_fea = f->get("clip_fea");
  in.t = static_cast<double>(f->get("t").data<int64_t>()[0]);
  in.t2 = static_cast<double>(f->get("t2").data<int64_t>()[0]);
  in.out = f->get("out");
  in.out2 = f->get("out2");
  return in;
}

TEST(WanDiT, SinusoidalEmbeddingCosineFirst) {
  const Tensor e = sinusoidal_embedding(8, 3.0);
  for (int i = 0; i < 4; ++i) {
    const double phi = 3.0 * std::pow(10000.0, -i / 4.0);
    EXPECT_EQ(e.data<float>()[i], static_cast<float>(std::cos(phi)));
    EXPECT_EQ(e.data<float>()[4 + i], static_cast<float>(std::sin(phi)));
  }
}

TEST(WanDiT, MatchesOracle) {
  const auto store = open_tensor_store(dit_index());
  const WanDiT dit = WanDiT::load(*store, fixture_config());
  EXPECT_EQ(dit.config().model_type, "flf2v");
  const Inputs in = fixture_inputs();
  // Widths and token counts come from the weights; they agree with the fixture's inputs.
  EXPECT_EQ(dit.text_dim(), in.context.size(1));
  EXPECT_EQ(dit.clip_dim(), in.clip_fea.size(-1));
  EXPECT_EQ(dit.image_tokens(), in.clip_fea.numel() / in.clip_fea.size(-1));
  const Tensor out = dit.forward(in.x, in.t, in.context, in.clip_fea, in.y);
  EXPECT_TENSOR_CLOSE(out, in.out, test::kComponentRel);
  const Tensor out2 = dit.forward(in.x, in.t2, in.context, in.clip_fea, in.y);
  EXPECT_TENSOR_CLOSE(out2, in.out2, test::kComponentRel);
}

TEST(WanDiT, WrongShapeOnDiskNamesTheTensor) {
  const auto store = open_tensor_store(dit_index());
  const std::string bad = fmt::format("blocks.{}.cross_attn.k_img.weight", fixture_config().num_layers - 1);
  const std::string dir = test::temp_dir();
  // Rewrite the shard that holds `bad` with that tensor one row short; copy the rest as it is.
  const fs::path bad_shard = fs::path(store->source(bad)).filename();
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const auto& n : store->names()) {
    if (fs::path(store->source(n)).filename() != bad_shard) continue;
    Tensor t = store->get(n);
    if (n == bad) t = t.slice(0, t.size(0) - 1).clone();
    tensors.emplace_back(n, t);
  }
  for (const auto& e : fs::directory_iterator(test::model_dir())) {
    const std::string name = e.path().filename().string();
    if (name.starts_with("diffusion_pytorch_model") && e.path().filename() != bad_shard)
      fs::copy_file(e.path(), fs::path(dir) / name);
  }
  save_safetensors((fs::path(dir) / bad_shard).string(), tensors);
  const auto altered = open_tensor_store(dir + "/diffusion_pytorch_model.safetensors.index.json");
  try {
    WanDiT::load(*altered, fixture_config());
    FAIL() << "no error for a wrong shape";
  } catch (const Error& e) {
    const std::string msg = e.what();
    std::printf("[message] %s\n", msg.c_str());
    EXPECT_NE(msg.find(bad), std::string::npos) << msg;
    EXPECT_NE(msg.find(bad_shard.string()), std::string::npos) << msg;
  }
}

TEST(WanDiT, ConfigMustAgreeWithWeights) {
  const auto store = open_tensor_store(dit_index());
  const DitConfig good = fixture_config();
  const int64_t L = good.num_layers;
  auto expect_load_error = [&](const DitConfig& c, const std::vector<std::string>& parts) {
    test::expect_error([&] { WanDiT::load(*store, c); }, parts);
  };
  DitConfig c = good;
  if (L > 1) {
    c.num_layers = L - 1;  // the checkpoint holds one block more
    expect_load_error(c, {fmt::format("num_layers = {}", L - 1), fmt::format("blocks.{}.modulation", L - 1)});
  }
  c = good;
  c.num_layers = L + 1;  // one block is missing
  expect_load_error(c, {fmt::format("blocks.{}.modulation", L), "missing"});
  c = good;
  c.model_type = "t2v";
  expect_load_error(c, {"model_type 't2v'", "image-conditioning tensors"});
  c = good;
  c.model_type = "i2v";
  expect_load_error(c, {"model_type 'i2v'", "emb_pos"});
  c = good;
  c.model_type = "vace";
  expect_load_error(c, {"model_type 'vace' is not supported"});
  c = good;
  c.ffn_dim = good.ffn_dim + 2;
  expect_load_error(c, {"blocks.0.ffn.0.weight", fmt::format("expected shape [{}, {}]", c.ffn_dim, good.dim)});
  c = good;
  c.in_dim = good.in_dim - 4;
  expect_load_error(c, {"patch_embedding.weight", fmt::format("expected shape [{}, {}, 1, 2, 2]", good.dim, c.in_dim)});
  c = good;
  c.out_dim = good.out_dim / 2;
  expect_load_error(c, {"head.head.weight", fmt::format("expected shape [{}, {}]", c.out_dim * 4, good.dim)});
  c = good;
  c.in_dim = good.out_dim;
  expect_load_error(c, {"needs in_dim", "> out_dim"});  // the flf2v variant needs y channels
  c = good;
  c.dim = good.dim + 2 * good.num_heads;  // still splits into heads of an even size
  expect_load_error(c, {"patch_embedding.weight", fmt::format("expected shape [{}, ", c.dim)});
}

TEST(WanDiT, ChecksInputs) {
  const auto store = open_tensor_store(dit_index());
  const WanDiT dit = WanDiT::load(*store, fixture_config());
  const DitConfig& c = dit.config();
  const Inputs in = fixture_inputs();
  using test::expect_error;
  expect_error([&] { dit.forward(in.x, in.t, in.context, in.clip_fea, Tensor()); }, {"needs the conditioning y"});
  expect_error([&] { dit.forward(in.x, in.t, in.context, Tensor(), in.y); }, {"needs the conditioning y and CLIP"});
  // One image's rows where emb_pos holds both images' tokens.
  expect_error([&] { dit.forward(in.x, in.t, in.context, in.clip_fea.select(0), in.y); },
               {fmt::format("{} CLIP feature rows", dit.image_tokens() / 2),
                fmt::format("emb_pos has {}", dit.image_tokens())});
  expect_error([&] { dit.forward(in.x, in.t, in.context, Tensor::zeros({2, 3, dit.clip_dim() + 1}), in.y); },
               {"CLIP features must be", fmt::format("{}", dit.clip_dim() + 1)});
  const std::string ctx_msg = fmt::format("context must be [Lt <= {}, {}]", c.text_len, dit.text_dim());
  expect_error([&] { dit.forward(in.x, in.t, Tensor::zeros({c.text_len + 1, dit.text_dim()}), in.clip_fea, in.y); },
               {ctx_msg, fmt::format("[{}, {}]", c.text_len + 1, dit.text_dim())});  // longer than text_len
  expect_error([&] { dit.forward(in.x, in.t, Tensor::zeros({4, dit.text_dim() / 2}), in.clip_fea, in.y); },
               {ctx_msg, fmt::format("[4, {}]", dit.text_dim() / 2)});
  expect_error([&] { dit.forward(in.y, in.t, in.context, in.clip_fea, in.y); },
               {fmt::format("latent must be [{}, T, h, w]", c.out_dim)});
  Tensor short_y = in.y.slice(0, in.y.size(0) - 1);  // one conditioning channel short
  expect_error([&] { dit.forward(in.x, in.t, in.context, in.clip_fea, short_y); }, {"conditioning must be"});
  expect_error([&] { dit.forward(Tensor::zeros({c.out_dim, 1, 3, 4}), in.t, in.context, in.clip_fea, in.y); },
               {"even, non-zero height and width"});
}

TEST(WanDiT, TextPaddingIsExactZeros) {
  // A context already padded to text_len with zero rows gives the same output bit for bit.
  const auto store = open_tensor_store(dit_index());
  const WanDiT dit = WanDiT::load(*store, fixture_config());
  const Inputs in = fixture_inputs();
  Tensor padded = Tensor::zeros({dit.config().text_len, in.context.size(1)});
  std::copy_n(in.context.data<float>(), in.context.numel(), padded.data<float>());
  const Tensor a = dit.forward(in.x, in.t, in.context, in.clip_fea, in.y);
  const Tensor b = dit.forward(in.x, in.t, padded, in.clip_fea, in.y);
  EXPECT_TENSOR_CLOSE_ABS(a, b, 0.0);
}

TEST(WanDiT, I2VEqualsFlf2vWithZeroEmbPos) {
  const auto store = open_tensor_store(dit_index());
  MapStore flf = copy_store(*store);
  fill_zero(flf.t.at("img_emb.emb_pos"));
  MapStore i2v = flf;
  i2v.t.erase("img_emb.emb_pos");
  DitConfig ci = fixture_config();
  ci.model_type = "i2v";
  const Inputs in = fixture_inputs();
  const Tensor a = WanDiT::load(flf, fixture_config()).forward(in.x, in.t, in.context, in.clip_fea, in.y);
  const WanDiT di = WanDiT::load(i2v, ci);
  EXPECT_EQ(di.image_tokens(), 0);
  const Tensor b = di.forward(in.x, in.t, in.context, in.clip_fea.view({-1, in.clip_fea.size(-1)}), in.y);
  EXPECT_TENSOR_CLOSE_ABS(b, a, 0.0);
  EXPECT_NO_THROW(di.forward(in.x, in.t, in.context, in.clip_fea.select(0), in.y));  // i2v: any row count
}

TEST(WanDiT, T2VEqualsFlf2vWithoutImageTerms) {
  // flf2v with v_img = 0 and zero patch weights on the y channels computes what t2v computes.
  const auto store = open_tensor_store(dit_index());
  const DitConfig cf = fixture_config();
  MapStore flf = copy_store(*store);
  MapStore t2v = copy_store(*store);
  for (int64_t i = 0; i < cf.num_layers; ++i) {
    const std::string p = "blocks." + std::to_string(i) + ".cross_attn.";
    fill_zero(flf.t.at(p + "v_img.weight"));
    fill_zero(flf.t.at(p + "v_img.bias"));
    for (const char* n : {"k_img.weight", "k_img.bias", "v_img.weight", "v_img.bias", "norm_k_img.weight"})
      t2v.t.erase(p + n);
  }
  for (const auto& n : store->names())
    if (n.starts_with("img_emb.")) t2v.t.erase(n);
  Tensor& pw = flf.t.at("patch_embedding.weight");  // [dim, in_dim, 1, 2, 2]
  const int64_t dim = pw.size(0), cin = pw.size(1), cout = cf.out_dim;
  Tensor pw16 = Tensor::empty({dim, cout, 1, 2, 2}, DType::F32);
  for (int64_t o = 0; o < dim; ++o)
    for (int64_t k = 0; k < cin * 4; ++k) {
      float& v = pw.data<float>()[o * cin * 4 + k];
      if (k < cout * 4) pw16.data<float>()[o * cout * 4 + k] = v;
      else v = 0.0f;
    }
  t2v.t["patch_embedding.weight"] = pw16;
  DitConfig ct = cf;
  ct.model_type = "t2v";
  ct.in_dim = cout;
  const Inputs in = fixture_inputs();
  const Tensor a = WanDiT::load(flf, cf).forward(in.x, in.t, in.context, in.clip_fea, in.y);
  const Tensor b = WanDiT::load(t2v, ct).forward(in.x, in.t, in.context, Tensor(), Tensor());
  EXPECT_TENSOR_CLOSE(b, a, 1e-5);
}

}  // namespace
}  // namespace ib
