// GPU checks (label gpu, run on the H100): device memory round trips and the CUDA linear against
// the CPU reference, with the float32 tolerance (cuBLAS SGEMM without TF32).
#include <gtest/gtest.h>

#include <random>

#include "common/fixture.h"
#include "ops/linear.h"

namespace ib {
namespace {

using test::random_tensor;

TEST(Gpu, DeviceIsPresent) { ASSERT_TRUE(cuda_available()) << "gpu tests need a CUDA device"; }

TEST(Gpu, MemoryRoundTrip) {
  const Tensor x = random_tensor({3, 1000}, 1);
  const Tensor d = x.to(Device::CUDA);
  EXPECT_EQ(d.device(), Device::CUDA);
  const Tensor back = d.clone().to(Device::CPU);
  EXPECT_TENSOR_CLOSE_ABS(back, x, 0.0);
  const Tensor z = Tensor::zeros({5, 7}, DType::F32, Device::CUDA).to(Device::CPU);
  for (int64_t i = 0; i < z.numel(); ++i) ASSERT_EQ(z.data<float>()[i], 0.0f);
}

TEST(Gpu, LinearMatchesCpu) {
  for (const Shape& xs : {Shape{7, 33}, Shape{256, 512}, Shape{1, 5120}}) {
    const int64_t n = xs[0] == 256 ? 384 : 19;
    const Tensor x = random_tensor(xs, 2), w = random_tensor({n, xs[1]}, 3), b = random_tensor({n}, 4);
    const Tensor ref = ops::linear(x, w, b);
    const Tensor got = ops::linear(x.to(Device::CUDA), w.to(Device::CUDA), b.to(Device::CUDA)).to(Device::CPU);
    EXPECT_TENSOR_CLOSE(got, ref, 1e-5);
  }
}

}  // namespace
}  // namespace ib
