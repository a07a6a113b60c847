// Inputs of the attention GPU tests: random bf16 buffers, their device copies, and column blocks of
// a row-major bf16 matrix as f32 tensors for the CPU reference.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include "core/dtype.h"
#include "core/tensor.h"

namespace ib::test {

inline std::vector<uint16_t> random_bf16(size_t n, uint32_t seed, float sd) {
  std::mt19937 gen(seed);
  std::normal_distribution<float> dist(0.0f, sd);
  std::vector<uint16_t> v(n);
  for (auto& x : v) x = f32_to_bf16(dist(gen));
  return v;
}

inline Tensor to_device(const std::vector<uint16_t>& host) {
  return Tensor::from_vector(host, {static_cast<int64_t>(host.size())}).to(Device::CUDA);
}

// Column block [col, col + cols) of rows [row0, row0 + rows) of a row-major bf16 matrix with
// `stride` elements a row, as a dense f32 [rows, cols] tensor.
inline Tensor block_f32(const std::vector<uint16_t>& m, int64_t stride, int64_t row0, int64_t rows, int64_t col,
                        int64_t cols) {
  Tensor t = Tensor::empty({rows, cols}, DType::F32);
  float* p = t.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      p[r * cols + c] = bf16_to_f32(m[static_cast<size_t>((row0 + r) * stride + col + c)]);
  return t;
}

}  // namespace ib::test
