// cuda::DeviceToHostQueue: chunks of a device buffer delivered to their places in host memory
// (more pushes than staging buffers, so both are reused), a push larger than the buffers refused,
// an error from a delivery reported by finish(), and later queues of other sizes (their staging
// buffers kept from one queue to the next) delivering their own bytes.
#include <gtest/gtest.h>

#include <cstring>
#include <string>
#include <vector>

#include "common/expect_error.h"
#include "core/check.h"
#include "core/cuda_memory.h"
#include "core/device_to_host.h"
#include "core/tensor.h"

namespace ib {
namespace {

TEST(DeviceToHostQueue, DeliversEveryChunkInPlace) {
  ASSERT_GT(cuda::device_count(), 0) << "a gpu-labelled test on a machine without a CUDA device";
  constexpr int64_t kChunk = 1 << 20, kChunks = 7;  // floats a chunk: 4 MiB, 7 pushes on 2 buffers
  Tensor host_src = Tensor::empty({kChunks * kChunk}, DType::F32);
  for (int64_t i = 0; i < host_src.numel(); ++i) host_src.data<float>()[i] = static_cast<float>(i % 100003) * 0.5f;
  const Tensor dev = host_src.to(Device::CUDA);
  std::vector<float> out(static_cast<size_t>(kChunks * kChunk), -1.0f);
  cuda::DeviceToHostQueue q(kChunk * sizeof(float));
  // Pushed last chunk first, so a delivery to the wrong place cannot look right.
  for (int64_t c = kChunks - 1; c >= 0; --c)
    q.push(dev.data<float>() + c * kChunk, kChunk * sizeof(float), [&out, c](const void* host) {
      std::memcpy(out.data() + c * kChunk, host, kChunk * sizeof(float));
    });
  q.finish();
  EXPECT_EQ(0, std::memcmp(out.data(), host_src.raw(), out.size() * sizeof(float)));
}

TEST(DeviceToHostQueue, RefusesOversizedPushesAndReportsDeliveryErrors) {
  ASSERT_GT(cuda::device_count(), 0) << "a gpu-labelled test on a machine without a CUDA device";
  const Tensor dev = Tensor::zeros({1024}, DType::F32).to(Device::CUDA);
  cuda::DeviceToHostQueue q(512 * sizeof(float));
  test::expect_error([&] { q.push(dev.raw(), 1024 * sizeof(float), [](const void*) {}); }, {"4096 bytes", "hold 2048"});
  q.push(dev.raw(), 512 * sizeof(float), [](const void*) { fail("the disk is full"); });
  test::expect_error([&] { q.finish(); }, {"the disk is full"});
  // The queue is usable again after the error was reported.
  float got = -1.0f;
  q.push(dev.raw(), sizeof(float), [&got](const void* host) { std::memcpy(&got, host, sizeof(float)); });
  q.finish();
  EXPECT_EQ(got, 0.0f);
}

// Queue after queue, of other sizes: staging buffers kept from earlier queues are reused where
// they are large enough (a smaller queue after a larger one) and new ones made where not.
TEST(DeviceToHostQueue, LaterQueuesDeliverTheirOwnBytes) {
  ASSERT_GT(cuda::device_count(), 0) << "a gpu-labelled test on a machine without a CUDA device";
  int round = 0;
  for (const int64_t chunk :
       {int64_t{1} << 16, int64_t{1} << 18, int64_t{1} << 12, int64_t{1} << 18, int64_t{1} << 19}) {
    SCOPED_TRACE("chunk of " + std::to_string(chunk) + " floats");
    ++round;
    constexpr int64_t kChunks = 3;
    Tensor host_src = Tensor::empty({kChunks * chunk}, DType::F32);
    for (int64_t i = 0; i < host_src.numel(); ++i) host_src.data<float>()[i] = static_cast<float>(round * 7 + i % 1009);
    const Tensor dev = host_src.to(Device::CUDA);
    std::vector<float> out(static_cast<size_t>(kChunks * chunk), -1.0f);
    const size_t bytes = static_cast<size_t>(chunk) * sizeof(float);
    cuda::DeviceToHostQueue q(bytes);
    for (int64_t c = 0; c < kChunks; ++c)
      q.push(dev.data<float>() + c * chunk, bytes,
             [&out, c, chunk, bytes](const void* host) { std::memcpy(out.data() + c * chunk, host, bytes); });
    q.finish();
    EXPECT_EQ(0, std::memcmp(out.data(), host_src.raw(), out.size() * sizeof(float)));
  }
}

}  // namespace
}  // namespace ib
