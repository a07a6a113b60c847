// MemoryTensorStore and make_weights, as `inbetween bench` uses them for its synthetic encoders:
// a T5 of the fixture's sizes built from random weights in memory loads and encodes, and the store
// answers like a file-backed one (sorted names, shapes, errors that name the tensor).
#include <gtest/gtest.h>

#include "common/fixture.h"
#include "io/model_config.h"
#include "io/tensor_store.h"
#include "models/t5.h"
#include "synth/synth_model.h"

namespace ib {
namespace {

TEST(MemoryTensorStore, AnswersLikeAFileStore) {
  MemoryTensorStore s({{"b.weight", Tensor::full({2, 3}, 1.0f)}, {"a.bias", Tensor::full({3}, 2.0f)}}, "test store");
  EXPECT_EQ(s.names(), (std::vector<std::string>{"a.bias", "b.weight"}));
  EXPECT_TRUE(s.contains("a.bias"));
  EXPECT_FALSE(s.contains("c"));
  EXPECT_EQ(s.info("b.weight").shape, (Shape{2, 3}));
  EXPECT_EQ(s.get("a.bias").item_f32(2), 2.0f);
  try {
    (void)require(s, "b.weight", Shape{3, 2});
    FAIL() << "a wrong shape was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("b.weight"), std::string::npos) << e.what();
  }
  try {
    (void)s.get("missing");
    FAIL() << "a missing tensor was returned";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("test store"), std::string::npos) << e.what();
  }
}

TEST(MemoryTensorStore, SyntheticT5OfTheFixtureSizesEncodes) {
  const ModelFolder f = ModelFolder::open(test::model_dir());
  const auto w = make_weights(t5_weight_shapes(f.t5), DType::BF16, 5);
  for (const auto& [name, t] : w) EXPECT_EQ(t.dtype(), DType::BF16) << name;
  const T5Encoder t5 = T5Encoder::load(MemoryTensorStore(w), f.t5);
  const int64_t n = 7;
  std::vector<int32_t> ids(static_cast<size_t>(n)), mask(static_cast<size_t>(n), 1);
  for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<int32_t>((2 + i) % f.t5.vocab);
  const Tensor h = t5.encode(ids, mask);
  ASSERT_EQ(h.shape(), (Shape{n, f.t5.dim}));
  double sum = 0;
  for (int64_t i = 0; i < h.numel(); ++i) {
    ASSERT_TRUE(std::isfinite(h.item_f32(i)));
    sum += std::fabs(h.item_f32(i));
  }
  EXPECT_GT(sum, 0.0);
}

}  // namespace
}  // namespace ib
