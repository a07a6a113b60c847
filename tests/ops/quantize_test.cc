// The e4m3 quantisers of ops/quantize.h (the CPU references of the GPU's fp8 products and fp8
// attention), on values whose e4m3 codes are worked out by hand.
#include <gtest/gtest.h>

#include <vector>

#include "core/tensor.h"
#include "ops/quantize.h"

namespace ib {
namespace {

// amax 4 -> every value is multiplied by 448 / 4 = 112 before rounding to e4m3 (3 mantissa bits):
// 1 -> 112 = 1.75 * 2^6 and -2 -> -224 are exact; 3 -> 336 lies halfway between 320 (1.25 * 2^8)
// and 352 (1.375 * 2^8) and rounds to the even mantissa, 320; 4 -> 448, the largest finite code.
TEST(QuantizeTensorE4m3, OneScaleForTheWholeTensor) {
  const Tensor x = Tensor::from_vector(std::vector<float>{0.0f, 1.0f, -2.0f, 3.0f, 4.0f, 0.25f}, {2, 3});
  const ops::QuantizedTensor q = ops::quantize_tensor_e4m3(x);
  EXPECT_EQ(q.scale, 4.0f / 448.0f);
  EXPECT_EQ(q.q.dtype(), DType::F8E4M3);
  EXPECT_EQ(q.q.shape(), x.shape());
  // 0.25 -> 28 = 1.75 * 2^4: exact. The dequantised values are code * scale.
  const Tensor back = ops::dequantize_tensor(q);
  const float* got = back.data<float>();
  EXPECT_EQ(got[0], 0.0f);
  EXPECT_FLOAT_EQ(got[1], 112.0f * q.scale);
  EXPECT_FLOAT_EQ(got[2], -224.0f * q.scale);
  EXPECT_FLOAT_EQ(got[3], 320.0f * q.scale);
  EXPECT_FLOAT_EQ(got[4], 448.0f * q.scale);
  EXPECT_FLOAT_EQ(got[5], 28.0f * q.scale);
}

TEST(QuantizeTensorE4m3, ZeroTensorGetsScaleOne) {
  const ops::QuantizedTensor q = ops::quantize_tensor_e4m3(Tensor::zeros({3, 2}, DType::F32));
  EXPECT_EQ(q.scale, 1.0f);
  const Tensor back = ops::dequantize_tensor(q);
  for (int64_t i = 0; i < back.numel(); ++i) EXPECT_EQ(back.data<float>()[i], 0.0f);
}

}  // namespace
}  // namespace ib
