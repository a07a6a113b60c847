#include <gtest/gtest.h>

#include <random>

#include "common/fixture.h"
#include "ops/embedding.h"

namespace ib {
namespace {

using test::random_tensor;

TEST(Embedding, GathersRowsForEveryDtype) {
  const Tensor table = random_tensor({10, 6}, 1);
  const std::vector<int32_t> ids = {3, 0, 9, 3, 5};
  for (DType dt : {DType::F32, DType::BF16, DType::F16}) {
    const Tensor t = table.to(dt), tf = t.to(DType::F32);
    Tensor expected = Tensor::empty({5, 6}, DType::F32);
    for (int64_t i = 0; i < 5; ++i)
      for (int64_t c = 0; c < 6; ++c) expected.data<float>()[i * 6 + c] = tf.data<float>()[ids[static_cast<size_t>(i)] * 6 + c];
    EXPECT_TENSOR_CLOSE(ops::embedding(t, Tensor::from_vector(ids, {5})), expected, 0.0);
    const std::vector<int64_t> ids64(ids.begin(), ids.end());
    EXPECT_TENSOR_CLOSE(ops::embedding(t, Tensor::from_vector(ids64, {5})), expected, 0.0);
  }
}

TEST(Embedding, ChecksIdsAndShapes) {
  const Tensor table = random_tensor({10, 6}, 2);
  EXPECT_THROW(ops::embedding(table, Tensor::from_vector<int32_t>({1, 10}, {2})), Error);
  EXPECT_THROW(ops::embedding(table, Tensor::from_vector<int64_t>({-1}, {1})), Error);
  EXPECT_THROW(ops::embedding(table, Tensor::from_vector<float>({1.0f}, {1})), Error);
  EXPECT_THROW(ops::embedding(table.view({60}), Tensor::from_vector<int32_t>({1}, {1})), Error);
  EXPECT_THROW(ops::embedding(table, Tensor::from_vector<int32_t>({1, 2}, {1, 2})), Error);
  EXPECT_EQ(ops::embedding(table, Tensor::from_vector<int32_t>({}, {0})).shape(), (Shape{0, 6}));
}

}  // namespace
}  // namespace ib
