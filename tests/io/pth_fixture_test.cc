// Reads the fixture model's three .pth checkpoints (T5 bf16, CLIP f16, VAE f32) and its sharded DiT.
#include <gtest/gtest.h>

#include <cmath>

#include "common/fixture.h"
#include "io/pth.h"
#include "io/safetensors.h"

namespace ib {
namespace {

std::string model_file(const std::string& name) { return test::model_dir() + "/" + name; }

TEST(PthFixture, T5IsBf16WithTwoBlocks) {
  auto f = PthFile::open(model_file("models_t5_umt5-xxl-enc-bf16.pth"));
  // token_embedding + norm + 10 per block (norm1, q, k, v, o, norm2, gate, fc1, fc2, pos_embedding) x 2.
  EXPECT_EQ(f->names().size(), 22u);
  const TensorInfo emb = f->info("token_embedding.weight");
  EXPECT_EQ(emb.dtype, DType::BF16);
  EXPECT_EQ(emb.shape, (Shape{1200, 64}));
  EXPECT_EQ(f->info("blocks.1.pos_embedding.embedding.weight").shape, (Shape{32, 4}));
  const Tensor norm = f->get("norm.weight");
  EXPECT_EQ(norm.shape(), (Shape{64}));
  EXPECT_EQ(norm.data<uint16_t>()[0], 0x3f7f);
  EXPECT_EQ(norm.data<uint16_t>()[1], 0x3f7d);
  for (const auto& n : f->names()) EXPECT_EQ(f->info(n).dtype, DType::BF16) << n;
  EXPECT_EQ(f->source("norm.weight"), model_file("models_t5_umt5-xxl-enc-bf16.pth"));
}

TEST(PthFixture, ClipIsF16) {
  auto f = PthFile::open(model_file("models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth"));
  EXPECT_EQ(f->names().size(), 68u);
  const Tensor scale = f->get("log_scale");  // a 0-d tensor
  EXPECT_EQ(scale.dtype(), DType::F16);
  EXPECT_EQ(scale.shape(), Shape{});
  EXPECT_EQ(scale.numel(), 1);
  EXPECT_EQ(scale.data<uint16_t>()[0], 0x4100);
  EXPECT_EQ(f->info("visual.cls_embedding").shape, (Shape{1, 1, 64}));
  EXPECT_EQ(f->info("visual.pos_embedding").shape, (Shape{1, 5, 64}));  // 1 + (28/14)^2 tokens
  for (const auto& n : f->names()) EXPECT_EQ(f->info(n).dtype, DType::F16) << n;
}

TEST(PthFixture, VaeIsF32AndZeroCopy) {
  auto f = PthFile::open(model_file("Wan2.1_VAE.pth"));
  EXPECT_EQ(f->names().size(), 194u);
  EXPECT_EQ(f->info("encoder.conv1.weight").shape, (Shape{8, 3, 3, 3, 3}));
  EXPECT_EQ(f->info("decoder.head.2.bias").shape, (Shape{3}));
  Tensor bias = f->get("encoder.conv1.bias");
  EXPECT_EQ(bias.dtype(), DType::F32);
  EXPECT_FLOAT_EQ(bias.data<float>()[0], 0.037398967891931534f);
  EXPECT_FLOAT_EQ(bias.data<float>()[1], 0.027913397178053856f);
  f.reset();  // the tensor keeps the mapping alive
  EXPECT_FLOAT_EQ(bias.data<float>()[1], 0.027913397178053856f);
  // Every tensor converts through require() with the dtype checks.
  auto g = PthFile::open(model_file("Wan2.1_VAE.pth"));
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
  EXPECT_THROW(s->get("nope"), Error);
}

TEST(SafetensorsFixture, ShardedDit) {
  auto s = ShardedSafetensors::open(model_file("diffusion_pytorch_model.safetensors.index.json"));
  const auto names = s->names();
  EXPECT_GT(names.size(), 10u);
  const TensorInfo pe = s->info("patch_embedding.weight");
  EXPECT_EQ(pe.dtype, DType::F32);
  EXPECT_EQ(pe.shape, (Shape{128, 36, 1, 2, 2}));
  // Tensors come from both shards.
  bool shard1 = false, shard2 = false;
  for (const auto& n : names) {
    const std::string src = s->source(n);
    shard1 |= src.find("00001-of-00002") != std::string::npos;
    shard2 |= src.find("00002-of-00002") != std::string::npos;
    const Tensor t = s->get(n);
    EXPECT_EQ(t.shape(), s->info(n).shape) << n;
  }
  EXPECT_TRUE(shard1);
  EXPECT_TRUE(shard2);
}

}  // namespace
}  // namespace ib
