#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <vector>

#include "core/parallel.h"
#include "core/tensor.h"

namespace ib {
namespace {

TEST(DType, Bf16RoundsToNearestEven) {
  EXPECT_EQ(f32_to_bf16(1.0f), 0x3f80);
  // 1 + 2^-8 is halfway between two bf16 values: ties go to the even mantissa (1.0).
  EXPECT_EQ(f32_to_bf16(1.00390625f), 0x3f80);
  // 1 + 3*2^-8 is halfway too: rounds up to the even 1 + 2^-6.
  EXPECT_EQ(f32_to_bf16(1.01171875f), 0x3f82);
  EXPECT_FLOAT_EQ(bf16_to_f32(0xc040), -3.0f);
  EXPECT_TRUE(std::isnan(bf16_to_f32(f32_to_bf16(NAN))));
}

TEST(DType, F16RoundTripsAndRounds) {
  for (float v : {0.0f, 1.0f, -2.5f, 65504.0f, 6.103515625e-05f, 5.960464477539063e-08f, 0.333251953125f})
    EXPECT_EQ(f16_to_f32(f32_to_f16(v)), v) << v;
  EXPECT_EQ(f32_to_f16(1.0f), 0x3c00);
  EXPECT_EQ(f32_to_f16(1e6f), 0x7c00);  // overflow to inf
  EXPECT_EQ(f32_to_f16(1.0f + 1.0f / 2048.0f), 0x3c00);  // halfway: to even
  EXPECT_EQ(f32_to_f16(1.0f + 3.0f / 2048.0f), 0x3c02);
  EXPECT_EQ(f16_to_f32(0x0001), 5.960464477539063e-08f);  // smallest subnormal
}

// e4m3fn: 4 exponent bits (bias 7), 3 mantissa bits, no infinities, 0x7f/0xff NaN, max 448.
TEST(DType, F8E4M3RoundTripsRoundsAndSaturates) {
  for (int c = 0; c < 256; ++c) {
    if ((c & 0x7f) == 0x7f) continue;  // NaN
    const float v = f8e4m3_to_f32(static_cast<uint8_t>(c));
    EXPECT_EQ(f32_to_f8e4m3(v), c) << c << " = " << v;
  }
  EXPECT_EQ(f8e4m3_to_f32(0x7e), 448.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x38), 1.0f);  // exponent 7, mantissa 0
  EXPECT_EQ(f32_to_f8e4m3(1.0625f), 0x38);   // halfway between 1 and 1.125: to the even 1
  EXPECT_EQ(f32_to_f8e4m3(1.1875f), 0x3a);   // halfway between 1.125 and 1.25: to the even 1.25
  EXPECT_EQ(f32_to_f8e4m3(1.07f), 0x39);     // above halfway: up to 1.125
  EXPECT_EQ(f32_to_f8e4m3(15.5f), 0x58);     // halfway between 15 and 16: up to the even 16 (2^4)
  EXPECT_EQ(f32_to_f8e4m3(1000.0f), 0x7e);   // saturates to 448
  EXPECT_EQ(f32_to_f8e4m3(-1e30f), 0xfe);
  EXPECT_EQ(f32_to_f8e4m3(464.0f), 0x7e);    // past the largest finite value
  EXPECT_EQ(f32_to_f8e4m3(std::ldexp(1.0f, -10)), 0x00);      // half the smallest subnormal: to even 0
  EXPECT_EQ(f32_to_f8e4m3(3.0f * std::ldexp(1.0f, -10)), 0x02);  // 1.5 subnormal quanta: to even 2
  EXPECT_EQ(f32_to_f8e4m3(-std::ldexp(1.0f, -6)), 0x88);     // smallest normal
  EXPECT_EQ(f32_to_f8e4m3(NAN) & 0x7f, 0x7f);
}

TEST(Tensor, ViewSliceSelectShareStorage) {
  Tensor t = Tensor::from_vector<float>({0, 1, 2, 3, 4, 5}, {3, 2});
  Tensor v = t.view({2, -1});
  EXPECT_EQ(v.shape(), (Shape{2, 3}));
  Tensor s = t.slice(1, 3);
  EXPECT_EQ(s.shape(), (Shape{2, 2}));
  EXPECT_EQ(s.data<float>()[0], 2.0f);
  Tensor r = t.select(2);
  EXPECT_EQ(r.shape(), (Shape{2}));
  EXPECT_EQ(r.data<float>()[1], 5.0f);
  r.data<float>()[1] = 9.0f;
  EXPECT_EQ(t.data<float>()[5], 9.0f);
  EXPECT_THROW(t.view({4, 2}), Error);
  EXPECT_THROW(t.slice(2, 4), Error);
  EXPECT_THROW(t.data<int32_t>(), Error);
}

TEST(Tensor, DtypeConversion) {
  Tensor t = Tensor::from_vector<float>({1.0f, -0.5f, 3.140625f}, {3});
  Tensor b = t.to(DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  Tensor back = b.to(DType::F32);
  EXPECT_EQ(back.data<float>()[2], 3.140625f);
  EXPECT_FLOAT_EQ(t.to(DType::F16).item_f32(1), -0.5f);
}

TEST(Tensor, CudaUnavailableGivesClearError) {
  if (cuda_available()) GTEST_SKIP() << "a GPU is present";
  try {
    (void)Tensor::empty({4}, DType::F32, Device::CUDA);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("CUDA"), std::string::npos) << e.what();
  }
}

TEST(Parallel, CoversRangeOnceAndPropagatesErrors) {
  std::vector<int> hits(10007, 0);
  parallel_for(10007, 7, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)]++;
  });
  for (int h : hits) ASSERT_EQ(h, 1);
  EXPECT_THROW(parallel_for(100, 1, [](int64_t b, int64_t) {
                 if (b > 50) throw Error("boom");
               }),
               Error);
}

// Many short regions back to back, as the DiT's small ops make them: every index runs exactly once
// in its own region and every call returns (a claim taken outside the pool's lock once let a late
// worker run an index of the next region twice and leave its caller waiting forever).
TEST(Parallel, ManyShortRegionsRunEachIndexOnce) {
  set_num_threads(4);
  std::vector<std::atomic<int>> hits(64);
  for (int region = 0; region < 20000; ++region) {
    // Regions of 2 and of 16 chunks in turn: a late index of a short region is a valid one of the
    // long region after it.
    const int64_t n = region % 2 == 0 ? 2 : 64;
    for (auto& h : hits) h.store(0, std::memory_order_relaxed);
    parallel_for(n, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1, std::memory_order_relaxed);
    });
    for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1) << "region " << region << " index " << i;
  }
  set_num_threads(0);
}

// host_view: the caller's floats as an f32 CPU tensor, shared, not copied.
TEST(Tensor, HostViewSharesTheCallersMemory) {
  std::vector<float> values{1, 2, 3, 4, 5, 6};
  const Tensor t = Tensor::host_view(values.data(), {2, 3});
  EXPECT_EQ(t.shape(), (Shape{2, 3}));
  EXPECT_EQ(t.dtype(), DType::F32);
  EXPECT_EQ(t.device(), Device::CPU);
  EXPECT_EQ(t.data<float>(), values.data());
  values[4] = 50;
  EXPECT_EQ(t.data<float>()[4], 50.0f);
}

}  // namespace
}  // namespace ib
