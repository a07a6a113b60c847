// The flow-matching Euler step on CUDA (label gpu): the op and a whole explicit-timestep trajectory
// with device tensors against the CPU backend, bit for bit (the kernel spells x + dt·v with
// round-to-nearest intrinsics, no fused multiply-add).
#include <gtest/gtest.h>

#include <vector>

#include "common/fixture.h"
#include "ops/sampler.h"
#include "pipeline/scheduler.h"

namespace ib {
namespace {

int64_t bit_differences(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(Device::CPU), y = b.to(Device::CPU);
  int64_t n = 0;
  for (int64_t i = 0; i < x.numel(); ++i) n += x.data<float>()[i] != y.data<float>()[i];
  return n;
}

TEST(EulerGpu, StepOpMatchesCpu) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  const Tensor x = test::random_tensor({16, 5, 30, 52}, 1), v = test::random_tensor({16, 5, 30, 52}, 2);
  for (float dt : {-0.0625f, -0.3125f, -0.1234567f}) {
    const Tensor cpu = ops::flow_euler_step(v, x, dt);
    const Tensor gpu = ops::flow_euler_step(v.to(Device::CUDA), x.to(Device::CUDA), dt);
    EXPECT_EQ(gpu.device(), Device::CUDA);
    EXPECT_EQ(bit_differences(gpu, cpu), 0) << dt;
  }
}

TEST(EulerGpu, TrajectoryMatchesCpu) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  const std::vector<int64_t> ts = {1000, 750, 500, 250};
  auto cpu = Scheduler::create(Solver::Euler, ts, 5.0);
  auto gpu = Scheduler::create(Solver::Euler, ts, 5.0);
  Tensor xc = test::random_tensor({16, 3, 12, 20}, 3);
  Tensor xg = xc.to(Device::CUDA);
  for (size_t k = 0; k < ts.size(); ++k) {
    const Tensor v = test::random_tensor(xc.shape(), 10 + static_cast<uint32_t>(k));
    xc = cpu->step(v, xc);
    xg = gpu->step(v.to(Device::CUDA), xg);
    ASSERT_EQ(xg.device(), Device::CUDA);
    EXPECT_EQ(bit_differences(xg, xc), 0) << "step " << k;
  }
}

}  // namespace
}  // namespace ib
