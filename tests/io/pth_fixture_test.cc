// Reads the fixture model's three .pth checkpoints (T5 bf16, CLIP f16, VAE f32) and its sharded DiT.
// Counts and shapes come from the case's own config.json / inbetween.json and shard index; names,
// shapes, dtypes and every byte are checked against an independent reader (Python's zipfile and
// pickle), so the tests hold on any reference case.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <set>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/model_config.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "pth_python.h"

namespace ib {
namespace {

std::string model_file(const std::string& name) { return test::model_dir() + "/" + name; }

const ModelFolder& folder() {
  static const ModelFolder f = ModelFolder::open(test::model_dir());
  return f;
}

DType storage_dtype(const std::string& cls) {
  if (cls == "torch.FloatStorage") return DType::F32;
  if (cls == "torch.HalfStorage") return DType::F16;
  if (cls == "torch.BFloat16Storage") return DType::BF16;
  ADD_FAILURE() << "unexpected storage class " << cls;
  return DType::F32;
}

// Every tensor of the file: the same names, dtypes and shapes as Python reads, and the same bytes
// (contiguous, at the storage offset). Returns the number of tensors Python found.
size_t expect_same_as_python(const PthFile& f, const std::string& path) {
  const nlohmann::json j = test::python_read_pth(path);
  if (j.empty()) return 0;
  std::set<std::string> py_names;
  for (const auto& t : j.at("tensors")) {
    const std::string key = t.at("key");
    SCOPED_TRACE(key);
    py_names.insert(key);
    if (!f.contains(key)) {
      ADD_FAILURE() << "PthFile lacks " << key;
      continue;
    }
    const TensorInfo info = f.info(key);
    const DType dt = storage_dtype(t.at("storage").at(1));
    EXPECT_EQ(info.dtype, dt);
    const Shape shape = t.at("size").get<Shape>();
    EXPECT_EQ(info.shape, shape);
    std::vector<int64_t> stride(shape.size());
    for (int64_t k = static_cast<int64_t>(shape.size()) - 1, s = 1; k >= 0; --k) {
      stride[static_cast<size_t>(k)] = s;
      s *= std::max<int64_t>(shape[static_cast<size_t>(k)], 1);
    }
    EXPECT_EQ(t.at("stride").get<std::vector<int64_t>>(), stride) << "not contiguous";
    const Tensor got = f.get(key);
    EXPECT_EQ(got.dtype(), dt);
    EXPECT_EQ(got.shape(), shape);
    const size_t es = dtype_size(dt), offset = t.at("offset").get<size_t>();
    const std::string& storage = t.at("data").get_ref<const std::string&>();
    if (2 * (offset + static_cast<size_t>(got.numel())) * es > storage.size()) {
      ADD_FAILURE() << "the storage is smaller than the tensor";
      continue;
    }
    EXPECT_TRUE(test::hex(got) == storage.substr(2 * offset * es, 2 * static_cast<size_t>(got.numel()) * es))
        << "bytes differ from Python's";
  }
  const std::vector<std::string> names = f.names();
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), py_names);
  EXPECT_EQ(names.size(), py_names.size());
  return py_names.size();
}

size_t count_prefix(const std::vector<std::string>& names, const std::string& prefix) {
  size_t n = 0;
  for (const auto& s : names) n += s.starts_with(prefix);
  return n;
}

TEST(PthFixture, T5IsBf16AndMatchesConfig) {
  const std::string path = model_file("models_t5_umt5-xxl-enc-bf16.pth");
  auto f = PthFile::open(path);
  const T5Config& c = folder().t5;
  // token_embedding + norm + 10 per block (norm1, q, k, v, o, norm2, gate, fc1, fc2, pos_embedding).
  EXPECT_EQ(f->names().size(), static_cast<size_t>(2 + 10 * c.num_layers));
  const TensorInfo emb = f->info("token_embedding.weight");
  EXPECT_EQ(emb.dtype, DType::BF16);
  EXPECT_EQ(emb.shape, (Shape{c.vocab, c.dim}));
  const std::string last = "blocks." + std::to_string(c.num_layers - 1) + ".";
  EXPECT_EQ(f->info(last + "pos_embedding.embedding.weight").shape, (Shape{c.num_buckets, c.num_heads}));
  EXPECT_EQ(f->info(last + "attn.o.weight").shape, (Shape{c.dim, c.dim_attn}));
  EXPECT_EQ(f->info(last + "ffn.fc2.weight").shape, (Shape{c.dim, c.dim_ffn}));
  EXPECT_EQ(f->get("norm.weight").shape(), (Shape{c.dim}));
  for (const auto& n : f->names()) EXPECT_EQ(f->info(n).dtype, DType::BF16) << n;
  EXPECT_EQ(f->source("norm.weight"), path);
  EXPECT_EQ(expect_same_as_python(*f, path), f->names().size());
}

TEST(PthFixture, ClipIsF16AndMatchesConfig) {
  const std::string path = model_file("models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth");
  auto f = PthFile::open(path);
  const ClipConfig& c = folder().clip;
  const int64_t grid = c.image_size / c.patch_size;
  // The visual tower: patch, cls and position embeddings, pre_norm (2), 12 per block, post_norm (2)
  // and head; the full state dict also holds textual.* and log_scale, which are not used.
  EXPECT_EQ(count_prefix(f->names(), "visual."), static_cast<size_t>(8 + 12 * c.num_layers));
  EXPECT_GT(count_prefix(f->names(), "textual."), 0u);
  const Tensor scale = f->get("log_scale");  // a 0-d tensor
  EXPECT_EQ(scale.dtype(), DType::F16);
  EXPECT_EQ(scale.shape(), Shape{});
  EXPECT_EQ(scale.numel(), 1);
  EXPECT_EQ(f->info("visual.cls_embedding").shape, (Shape{1, 1, c.dim}));
  EXPECT_EQ(f->info("visual.pos_embedding").shape, (Shape{1, grid * grid + 1, c.dim}));
  EXPECT_EQ(f->info("visual.patch_embedding.weight").shape, (Shape{c.dim, 3, c.patch_size, c.patch_size}));
  EXPECT_EQ(f->info("visual.transformer." + std::to_string(c.num_layers - 1) + ".mlp.0.weight").shape,
            (Shape{c.dim * c.mlp_ratio, c.dim}));
  for (const auto& n : f->names()) EXPECT_EQ(f->info(n).dtype, DType::F16) << n;
  EXPECT_EQ(expect_same_as_python(*f, path), f->names().size());
}

TEST(PthFixture, VaeIsF32AndZeroCopy) {
  const std::string path = model_file("Wan2.1_VAE.pth");
  auto f = PthFile::open(path);
  const VaeConfig& c = folder().vae;
  EXPECT_EQ(f->info("encoder.conv1.weight").shape, (Shape{c.dim, 3, 3, 3, 3}));
  EXPECT_EQ(f->info("encoder.head.2.weight").shape, (Shape{2 * c.z_dim, c.dim * c.dim_mult.back(), 3, 3, 3}));
  EXPECT_EQ(f->info("conv2.weight").shape, (Shape{c.z_dim, c.z_dim, 1, 1, 1}));
  EXPECT_EQ(f->info("decoder.head.2.bias").shape, (Shape{3}));
  EXPECT_EQ(expect_same_as_python(*f, path), f->names().size());
  Tensor bias = f->get("encoder.conv1.bias");
  EXPECT_EQ(bias.dtype(), DType::F32);
  const std::vector<float> before(bias.data<float>(), bias.data<float>() + bias.numel());
  f.reset();  // the tensor keeps the mapping alive
  EXPECT_EQ(std::vector<float>(bias.data<float>(), bias.data<float>() + bias.numel()), before);
  // Every tensor converts through require() with the dtype checks.
  auto g = PthFile::open(path);
  double sum = 0;
  for (const auto& n : g->names()) {
    const Tensor t = require(*g, n, std::nullopt, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) sum += t.data<float>()[i];
  }
  EXPECT_TRUE(std::isfinite(sum));
}

TEST(PthFixture, OpenTensorStoreDispatchesPth) {
  auto s = open_tensor_store(model_file("Wan2.1_VAE.pth"));
  EXPECT_TRUE(s->contains("encoder.conv1.weight"));
  EXPECT_FALSE(s->contains("nope"));
  test::expect_error([&] { s->get("nope"); }, {"'nope'"});
}

TEST(SafetensorsFixture, ShardedDit) {
  const std::string index_path = model_file("diffusion_pytorch_model.safetensors.index.json");
  auto s = ShardedSafetensors::open(index_path);
  const nlohmann::json index = nlohmann::json::parse(std::ifstream(index_path));
  const auto weight_map = index.at("weight_map").get<std::map<std::string, std::string>>();
  const DitConfig& c = folder().dit;
  // Exactly the index's names, each read from the shard the index names; every shard is used.
  const auto names = s->names();
  std::set<std::string> listed;
  for (const auto& [n, file] : weight_map) listed.insert(n);
  EXPECT_EQ(std::set<std::string>(names.begin(), names.end()), listed);
  const TensorInfo pe = s->info("patch_embedding.weight");
  EXPECT_EQ(pe.dtype, DType::F32);
  EXPECT_EQ(pe.shape, (Shape{c.dim, c.in_dim, 1, 2, 2}));
  EXPECT_EQ(s->info("head.head.weight").shape, (Shape{c.out_dim * 4, c.dim}));
  EXPECT_TRUE(s->contains("blocks." + std::to_string(c.num_layers - 1) + ".modulation"));
  EXPECT_FALSE(s->contains("blocks." + std::to_string(c.num_layers) + ".modulation"));
  std::set<std::string> shards, used;
  for (const auto& [n, file] : weight_map) shards.insert(file);
  for (const auto& n : names) {
    const std::string src = std::filesystem::path(s->source(n)).filename().string();
    EXPECT_EQ(src, weight_map.at(n)) << n;
    used.insert(src);
    const Tensor t = s->get(n);
    EXPECT_EQ(t.shape(), s->info(n).shape) << n;
  }
  EXPECT_EQ(used, shards);
  EXPECT_GE(shards.size(), 2u) << "the case's DiT is not sharded";
  std::printf("[measured] %zu DiT tensors in %zu shards\n", names.size(), shards.size());
}

}  // namespace
}  // namespace ib
