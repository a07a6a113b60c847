// umT5 encoder: bucket table (spec 3.7), load-time checks, and the fixture outputs
// (t5.safetensors, t5_short.safetensors) over all positions.
#include <gtest/gtest.h>

#include <map>
#include <random>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/model_config.h"
#include "models/t5.h"

namespace ib {
namespace {

std::shared_ptr<TensorStore> t5_weights() { return open_tensor_store(test::model_dir() + "/models_t5_umt5-xxl-enc-bf16.pth"); }

T5Config t5_config() { return ModelFolder::open(test::model_dir()).t5; }

const T5Encoder& encoder() {
  static const T5Encoder enc = [] {
    static const auto weights = t5_weights();  // the encoder keeps views into the mapped file
    return T5Encoder::load(*weights, t5_config());
  }();
  return enc;
}

std::vector<int32_t> row(const Tensor& t, int64_t r) {
  const Tensor s = t.select(r).to(DType::I32);
  return std::vector<int32_t>(s.data<int32_t>(), s.data<int32_t>() + s.numel());
}

// In-memory tensor store for the load checks.
class MemoryStore : public TensorStore {
 public:
  std::map<std::string, Tensor> tensors;
  bool contains(const std::string& n) const override { return tensors.count(n) != 0; }
  std::vector<std::string> names() const override {
    std::vector<std::string> v;
    for (const auto& [n, t] : tensors) v.push_back(n);
    return v;
  }
  TensorInfo info(const std::string& n) const override { return {tensors.at(n).dtype(), tensors.at(n).shape()}; }
  Tensor get(const std::string& n) const override { return tensors.at(n); }
  std::string source(const std::string&) const override { return "memory"; }
};

MemoryStore random_store(const T5Config& c) {
  std::mt19937 rng(1);
  std::normal_distribution<float> nd(0.0f, 0.1f);
  MemoryStore s;
  auto add = [&](const std::string& n, const Shape& shape) {
    Tensor t = Tensor::empty(shape, DType::F32);
    for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
    s.tensors[n] = t.to(DType::BF16);
  };
  add("token_embedding.weight", {c.vocab, c.dim});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = "blocks." + std::to_string(l) + ".";
    add(p + "norm1.weight", {c.dim});
    add(p + "norm2.weight", {c.dim});
    for (const char* m : {"q", "k", "v"}) add(p + "attn." + m + ".weight", {c.dim_attn, c.dim});
    add(p + "attn.o.weight", {c.dim, c.dim_attn});
    add(p + "ffn.gate.0.weight", {c.dim_ffn, c.dim});
    add(p + "ffn.fc1.weight", {c.dim_ffn, c.dim});
    add(p + "ffn.fc2.weight", {c.dim, c.dim_ffn});
    add(p + "pos_embedding.embedding.weight", {c.num_buckets, c.num_heads});
  }
  add("norm.weight", {c.dim});
  return s;
}

T5Config small_config() {
  T5Config c;
  c.vocab = 50;
  c.dim = 16;
  c.dim_attn = 24;
  c.dim_ffn = 20;
  c.num_heads = 3;
  c.num_layers = 2;
  c.num_buckets = 32;
  return c;
}

std::string load_error(const MemoryStore& s, const T5Config& c) {
  try {
    T5Encoder::load(s, c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(T5, RelativePositionBucketsMatchSpecTable) {
  // Spec 3.7 for 32 buckets, max distance 128: bucket - base per |rel| range.
  const std::vector<std::pair<int64_t, int64_t>> ranges = {{8, 8},   {12, 9},  {16, 10}, {23, 11},
                                                           {32, 12}, {46, 13}, {64, 14}, {91, 15}};
  for (int64_t n = 0; n < 600; ++n) {
    int64_t want = n;
    if (n >= 8)
      for (const auto& [from, b] : ranges)
        if (n >= from) want = b;
    EXPECT_EQ(t5_relative_position_bucket(-n, 32, 128), want) << "rel " << -n;
    if (n > 0) {
      EXPECT_EQ(t5_relative_position_bucket(n, 32, 128), 16 + want) << "rel " << n;
    }
  }
  // Other bucket counts stay inside their range and are monotone in |rel|.
  for (int64_t nb : {4, 8, 64}) {
    int64_t prev = 0;
    for (int64_t n = 0; n < 1000; ++n) {
      const int64_t b = t5_relative_position_bucket(-n, nb, 128);
      EXPECT_GE(b, prev);
      EXPECT_LT(b, nb / 2);
      EXPECT_EQ(t5_relative_position_bucket(n + 1, nb, 128) - nb / 2, t5_relative_position_bucket(-(n + 1), nb, 128));
      prev = b;
    }
  }
}

TEST(T5, LoadChecksConfigAgainstWeights) {
  const T5Config c = small_config();
  MemoryStore s = random_store(c);
  EXPECT_EQ(load_error(s, c), "");
  auto expect_error = [&](const T5Config& bad, const std::string& needle) {
    const std::string msg = load_error(s, bad);
    EXPECT_NE(msg.find(needle), std::string::npos) << "message: " << msg;
  };
  T5Config bad = c;
  bad.dim = 32;
  expect_error(bad, "dim = 32");
  bad = c;
  bad.num_layers = 3;
  expect_error(bad, "num_layers = 3");
  bad = c;
  bad.num_heads = 4;
  expect_error(bad, "num_heads");
  bad = c;
  bad.dim_ffn = 40;
  expect_error(bad, "dim_ffn = 40");
  bad = c;
  bad.vocab = 51;
  expect_error(bad, "vocab = 51");

  MemoryStore missing = s;
  missing.tensors.erase("blocks.1.ffn.fc2.weight");
  EXPECT_NE(load_error(missing, c).find("blocks.1.ffn.fc2.weight"), std::string::npos);
  MemoryStore wrong = s;
  wrong.tensors["blocks.1.attn.o.weight"] = Tensor::zeros({16, 23});
  const std::string wrong_msg = load_error(wrong, c);
  for (const char* part : {"blocks.1.attn.o.weight", "expected shape [16, 24]", "found [16, 23]"})
    EXPECT_NE(wrong_msg.find(part), std::string::npos) << "message: " << wrong_msg << "\nlacks: " << part;
  MemoryStore extra = s;
  extra.tensors["blocks.0.attn.rel_bias"] = Tensor::zeros({2});
  EXPECT_NE(load_error(extra, c).find("blocks.0.attn.rel_bias"), std::string::npos);
}

TEST(T5, EncodeChecksInputs) {
  const T5Config c = small_config();
  const MemoryStore s = random_store(c);
  const T5Encoder enc = T5Encoder::load(s, c);
  EXPECT_EQ(enc.encode({1, 2, 3}, {1, 1, 0}).shape(), (Shape{3, 16}));
  test::expect_error([&] { enc.encode({1, 2, 3}, {1, 1}); }, {"3 ids but 2 mask entries"});
  test::expect_error([&] { enc.encode({1, 50}, {1, 1}); }, {"token id 50 at position 1", "vocabulary of 50"});
  test::expect_error([&] { enc.encode({-1}, {1}); }, {"token id -1 at position 0"});
  test::expect_error([&] { enc.encode({}, {}); }, {"no tokens"});
}

TEST(T5Fixture, MatchesPrompt) {
  const auto f = test::open_fixture("t5.safetensors");
  const Tensor ids = f->get("ids"), mask = f->get("mask"), hidden = f->get("hidden");
  ASSERT_EQ(ids.size(0), 1);
  const Tensor out = encoder().encode(row(ids, 0), row(mask, 0));
  EXPECT_TENSOR_CLOSE(out, hidden.select(0), test::kComponentRel);
}

TEST(T5Fixture, MatchesShortPromptsWithPadding) {
  const auto f = test::open_fixture("t5_short.safetensors");
  const Tensor ids = f->get("ids"), mask = f->get("mask"), hidden = f->get("hidden");
  ASSERT_GE(ids.size(0), 1);
  for (int64_t b = 0; b < ids.size(0); ++b) {
    SCOPED_TRACE("row " + std::to_string(b));
    const Tensor out = encoder().encode(row(ids, b), row(mask, b));
    EXPECT_TENSOR_CLOSE(out, hidden.select(b), test::kComponentRel);
  }
}

TEST(T5Fixture, ValidRowsIndependentOfPaddingLength) {
  const auto f = test::open_fixture("t5_short.safetensors");
  const Tensor ids = f->get("ids"), mask = f->get("mask"), hidden = f->get("hidden");
  for (int64_t b = 0; b < ids.size(0); ++b) {
    SCOPED_TRACE("row " + std::to_string(b));
    const std::vector<int32_t> id = row(ids, b), m = row(mask, b);
    int64_t valid = 0;
    for (int32_t v : m) valid += v;
    ASSERT_GT(valid, 0);
    ASSERT_LT(valid, static_cast<int64_t>(m.size()));  // the case has padding
    const Tensor full = encoder().encode(id, m).slice(0, valid);
    // No padding at all, a little padding, and more padding than the fixture.
    for (int64_t len : {valid, valid + 1, static_cast<int64_t>(m.size()) + 9}) {
      std::vector<int32_t> id2(id.begin(), id.begin() + valid), m2(m.begin(), m.begin() + valid);
      id2.resize(static_cast<size_t>(len), 0);
      m2.resize(static_cast<size_t>(len), 0);
      const Tensor out = encoder().encode(id2, m2).slice(0, valid);
      EXPECT_TENSOR_CLOSE(out, full, 1e-6);
      EXPECT_TENSOR_CLOSE(out, hidden.select(b).slice(0, valid), test::kComponentRel);
    }
  }
}

// What generation runs (pipeline.cc): the prompt's own tokens, without the padding; the kept rows
// equal the padded encode's and the fixture's.
TEST(T5Fixture, EncodePrefixGivesTheKeptRows) {
  for (const char* file : {"t5.safetensors", "t5_short.safetensors"}) {
    const auto f = test::open_fixture(file);
    const Tensor ids = f->get("ids"), mask = f->get("mask"), hidden = f->get("hidden");
    for (int64_t b = 0; b < ids.size(0); ++b) {
      SCOPED_TRACE(std::string(file) + " row " + std::to_string(b));
      const std::vector<int32_t> id = row(ids, b), m = row(mask, b);
      int64_t valid = 0;
      for (int32_t v : m) valid += v;
      ASSERT_GT(valid, 0);
      const Tensor out = encoder().encode_prefix(id, valid);
      ASSERT_EQ(out.shape(), (Shape{valid, hidden.size(2)}));
      EXPECT_TENSOR_CLOSE(out, encoder().encode(id, m).slice(0, valid), 1e-6);
      EXPECT_TENSOR_CLOSE(out, hidden.select(b).slice(0, valid), test::kComponentRel);
    }
  }
  test::expect_error([&] { encoder().encode_prefix({1, 2, 3}, 0); }, {"prompt's length 0", "1..3"});
  test::expect_error([&] { encoder().encode_prefix({1, 2, 3}, 4); }, {"prompt's length 4", "1..3"});
}

}  // namespace
}  // namespace ib
