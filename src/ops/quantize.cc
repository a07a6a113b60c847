// Row-wise e4m3 quantisation (see quantize.h): plain loops, the reference the GPU kernel matches
// bit for bit.
#include "ops/quantize.h"

#include <cmath>

#include "core/check.h"
#include "core/dtype.h"

namespace ib::ops {

QuantizedRows quantize_rows_e4m3(const Tensor& x) {
  IB_CHECK(x.defined() && x.dim() == 2 && x.device() == Device::CPU,
           "quantize_rows_e4m3: expected a 2-D CPU tensor, got {}", x.defined() ? x.str() : "undefined");
  const Tensor xf = x.to(DType::F32);
  const int64_t rows = x.size(0), cols = x.size(1);
  QuantizedRows out{Tensor::empty({rows, cols}, DType::F8E4M3), Tensor::empty({rows}, DType::F32)};
  const float* src = xf.data<float>();
  auto* q = static_cast<uint8_t*>(out.q.raw());
  float* scale = out.scale.data<float>();
  for (int64_t r = 0; r < rows; ++r) {
    const float* row = src + r * cols;
    float amax = 0.0f;
    for (int64_t c = 0; c < cols; ++c) amax = std::fmax(amax, std::fabs(row[c]));
    // Same f32 operations as the GPU kernel, so that both give the same bits.
    const float inv = amax > 0.0f ? kE4M3Max / amax : 1.0f;
    scale[r] = amax > 0.0f ? amax / kE4M3Max : 1.0f;
    for (int64_t c = 0; c < cols; ++c) q[r * cols + c] = f32_to_f8e4m3(row[c] * inv);
  }
  return out;
}

Tensor dequantize_rows(const QuantizedRows& qr) {
  IB_CHECK(qr.q.defined() && qr.q.dim() == 2 && qr.q.dtype() == DType::F8E4M3 && qr.scale.defined() &&
               qr.scale.numel() == qr.q.size(0),
           "dequantize_rows: expected e4m3 [rows, cols] and f32 [rows]");
  const int64_t rows = qr.q.size(0), cols = qr.q.size(1);
  Tensor out = Tensor::empty({rows, cols}, DType::F32);
  const Tensor qc = qr.q.to(Device::CPU), sc = qr.scale.to(Device::CPU).to(DType::F32);
  const auto* q = static_cast<const uint8_t*>(qc.raw());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c)
      out.data<float>()[r * cols + c] = f8e4m3_to_f32(q[r * cols + c]) * sc.data<float>()[r];
  return out;
}

QuantizedTensor quantize_tensor_e4m3(const Tensor& x) {
  IB_CHECK(x.defined() && x.device() == Device::CPU, "quantize_tensor_e4m3: expected a CPU tensor, got {}",
           x.defined() ? x.str() : "undefined");
  const Tensor xf = x.to(DType::F32);
  const float* src = xf.data<float>();
  const int64_t n = xf.numel();
  float amax = 0.0f;
  for (int64_t i = 0; i < n; ++i) amax = std::fmax(amax, std::fabs(src[i]));
  const float inv = amax > 0.0f ? kE4M3Max / amax : 1.0f;
  QuantizedTensor out{Tensor::empty(x.shape(), DType::F8E4M3), amax > 0.0f ? amax / kE4M3Max : 1.0f};
  auto* q = static_cast<uint8_t*>(out.q.raw());
  for (int64_t i = 0; i < n; ++i) q[i] = f32_to_f8e4m3(src[i] * inv);
  return out;
}

Tensor dequantize_tensor(const QuantizedTensor& qt) {
  IB_CHECK(qt.q.defined() && qt.q.dtype() == DType::F8E4M3, "dequantize_tensor: expected an e4m3 tensor");
  const Tensor qc = qt.q.to(Device::CPU);
  Tensor out = Tensor::empty(qc.shape(), DType::F32);
  const auto* q = static_cast<const uint8_t*>(qc.raw());
  for (int64_t i = 0; i < qc.numel(); ++i) out.data<float>()[i] = f8e4m3_to_f32(q[i]) * qt.scale;
  return out;
}

}  // namespace ib::ops
