// umT5 on CUDA (label gpu): the CUDA embedding lookup against the CPU one, then the T5 fixtures
// (t5.safetensors, t5_short.safetensors: ids/mask -> hidden) encoded on the GPU with bf16 weights
// (bound 2e-2 x (1 + max|ref|), bf16 rounding of the linear inputs) and with f32 weights (the
// fixture bound 1e-4 x (1 + max|ref|)). Every size comes from the fixture files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <string>

#include "common/fixture.h"
#include "io/model_config.h"
#include "models/t5.h"
#include "ops/embedding.h"

namespace ib {
namespace {

constexpr double kBf16Rel = 2e-2;

std::shared_ptr<TensorStore> t5_weights() {
  static const auto w = open_tensor_store(test::model_dir() + "/models_t5_umt5-xxl-enc-bf16.pth");
  return w;
}

T5Encoder encoder_on(Device device, DType linear_dtype) {
  T5Encoder enc = T5Encoder::load(*t5_weights(), ModelFolder::open(test::model_dir()).t5);
  enc.to(device, linear_dtype);
  return enc;
}

std::vector<int32_t> row(const Tensor& t, int64_t r) {
  const Tensor s = t.select(r).to(DType::I32);
  return std::vector<int32_t>(s.data<int32_t>(), s.data<int32_t>() + s.numel());
}

TEST(EmbeddingGpu, MatchesCpuForEveryDtype) {
  const Tensor table = test::random_tensor({37, 129}, 1);
  const std::vector<int32_t> ids = {3, 0, 36, 3, 5, 17, 36, 1};
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    const Tensor t = table.to(dt);
    const Tensor want = ops::embedding(t, Tensor::from_vector(ids, {8}));
    EXPECT_TENSOR_CLOSE_ABS(ops::embedding(t.to(Device::CUDA), Tensor::from_vector(ids, {8}).to(Device::CUDA)), want, 0.0);
    const std::vector<int64_t> ids64(ids.begin(), ids.end());
    EXPECT_TENSOR_CLOSE_ABS(ops::embedding(t.to(Device::CUDA), Tensor::from_vector(ids64, {8}).to(Device::CUDA)), want,
                            0.0);
  }
  // Ids outside the table give NaN rows on the device (they cannot be checked there without a sync).
  const Tensor bad = ops::embedding(table.to(Device::CUDA), Tensor::from_vector<int32_t>({2, 37, -1}, {3}).to(Device::CUDA))
                         .to(Device::CPU);
  for (int64_t c = 0; c < 129; ++c) {
    EXPECT_EQ(bad.data<float>()[c], table.data<float>()[2 * 129 + c]);
    EXPECT_TRUE(std::isnan(bad.data<float>()[129 + c]));
    EXPECT_TRUE(std::isnan(bad.data<float>()[2 * 129 + c]));
  }
  EXPECT_EQ(ops::embedding(table.to(Device::CUDA), Tensor::from_vector<int32_t>({}, {0}).to(Device::CUDA)).shape(),
            (Shape{0, 129}));
  EXPECT_THROW(ops::embedding(table.to(Device::CUDA), Tensor::from_vector<int32_t>({1}, {1})), Error);  // mixed devices
}

// Every row of both fixture files through `enc`, checked against `hidden` with `rel`.
void check_fixtures(const T5Encoder& enc, double rel, const char* what) {
  double worst = 0;
  for (const char* file : {"t5.safetensors", "t5_short.safetensors"}) {
    const auto f = test::open_fixture(file);
    const Tensor ids = f->get("ids"), mask = f->get("mask"), hidden = f->get("hidden");
    for (int64_t b = 0; b < ids.size(0); ++b) {
      SCOPED_TRACE(std::string(file) + " row " + std::to_string(b));
      const Tensor out = enc.encode(row(ids, b), row(mask, b));
      EXPECT_EQ(out.device(), Device::CUDA);
      EXPECT_TENSOR_CLOSE(out, hidden.select(b), rel);
      const test::Closeness c = test::compare(out, hidden.select(b), rel);
      worst = std::max(worst, c.max_abs_err / (1.0 + c.max_abs_ref));
      std::printf("[measured] T5 %s %s row %lld: max_abs_err=%.3g, err/(1+max|ref|)=%.3g (bound %.3g)\n", what, file,
                  static_cast<long long>(b), c.max_abs_err, c.max_abs_err / (1.0 + c.max_abs_ref), rel);
      // As generation encodes a prompt: its own tokens only (encode_prefix), the kept rows.
      const std::vector<int32_t> m = row(mask, b);
      int64_t valid = 0;
      for (int32_t v : m) valid += v;
      EXPECT_TENSOR_CLOSE(enc.encode_prefix(row(ids, b), valid), hidden.select(b).slice(0, valid), rel);
    }
  }
  std::printf("[measured] T5 %s worst err/(1+max|ref|) = %.3g\n", what, worst);
}

TEST(T5Gpu, Bf16WeightsMatchFixtures) {
  const T5Encoder enc = encoder_on(Device::CUDA, DType::BF16);
  EXPECT_EQ(enc.device(), Device::CUDA);
  check_fixtures(enc, kBf16Rel, "cuda bf16");
}

TEST(T5Gpu, F32WeightsMatchFixtures) {
  const T5Encoder enc = encoder_on(Device::CUDA, DType::F32);
  check_fixtures(enc, test::kComponentRel, "cuda f32");
}

// Every intermediate lives on the device (no host round trip inside encode), and the valid rows
// do not depend on how much padding follows.
TEST(T5Gpu, StaysOnDeviceAndIgnoresPadding) {
  T5Encoder enc = encoder_on(Device::CUDA, DType::F32);
  int64_t traced = 0, on_host = 0;
  enc.set_trace([&](const std::string& name, const Tensor& t) {
    ++traced;
    if (t.device() != Device::CUDA) {
      ++on_host;
      ADD_FAILURE() << name << " is on the host";
    }
  });
  const auto f = test::open_fixture("t5_short.safetensors");
  const Tensor ids = f->get("ids"), mask = f->get("mask"), hidden = f->get("hidden");
  const std::vector<int32_t> id = row(ids, 0), m = row(mask, 0);
  int64_t valid = 0;
  for (int32_t v : m) valid += v;
  const Tensor full = enc.encode(id, m).slice(0, valid);
  EXPECT_GT(traced, 0);
  EXPECT_EQ(on_host, 0);
  enc.set_trace(nullptr);
  for (int64_t len : {valid, static_cast<int64_t>(m.size()) + 9}) {
    std::vector<int32_t> id2(id.begin(), id.begin() + valid), m2(m.begin(), m.begin() + valid);
    id2.resize(static_cast<size_t>(len), 0);
    m2.resize(static_cast<size_t>(len), 0);
    EXPECT_TENSOR_CLOSE(enc.encode(id2, m2).slice(0, valid), full, 1e-5);
  }
  EXPECT_THROW(enc.encode({1, static_cast<int32_t>(enc.config().vocab)}, {1, 1}), Error);  // checked on the host
}

// Back on the CPU (its weights now f32), the moved encoder gives the CPU encoder's result.
TEST(T5Gpu, MovesBackToTheCpu) {
  T5Encoder enc = encoder_on(Device::CUDA, DType::F32);
  enc.to(Device::CPU);
  EXPECT_EQ(enc.device(), Device::CPU);
  const T5Encoder cpu = T5Encoder::load(*t5_weights(), ModelFolder::open(test::model_dir()).t5);
  const auto f = test::open_fixture("t5.safetensors");
  const Tensor ids = f->get("ids"), mask = f->get("mask");
  const Tensor out = enc.encode(row(ids, 0), row(mask, 0));
  EXPECT_EQ(out.device(), Device::CPU);
  EXPECT_TENSOR_CLOSE(out, cpu.encode(row(ids, 0), row(mask, 0)), 1e-6);
}

}  // namespace
}  // namespace ib
