// GPU checks of the fp8 attention (src/gpu/attention_fp8.h, label gpu): the quantisation of a
// fused q | k | v buffer against ops::quantize_tensor_e4m3 (the same bits and scales), the output's
// dequantisation against the CPU arithmetic, and cuDNN's fp8 attention against the composition of
// CPU reference ops (q, k, v quantised and dequantised per tensor, then ops::cpu::attention in f32).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/log.h"
#include "core/tensor.h"
#include "gpu/attention_test_data.h"
#include "gpu/attention_fp8.h"
#include "gpu/fp8.h"
#include "ops/attention.h"
#include "ops/quantize.h"

namespace ib {
namespace {

using test::block_f32;
using test::random_bf16;
using test::to_device;

std::vector<float> scales_of(const Tensor& dev) {
  const Tensor h = dev.to(Device::CPU);
  return {h.data<float>(), h.data<float>() + h.numel()};
}

// q, k and v of one fused buffer with different magnitudes (so a mixed-up scale shows), padded rows.
struct Fused {
  int64_t rows, dim, ld;
  std::vector<uint16_t> host;
};
Fused make_fused(int64_t rows, int64_t dim, int64_t pad, uint32_t seed) {
  Fused f{rows, dim, 3 * dim + pad, {}};
  f.host.resize(static_cast<size_t>(rows * f.ld));
  const float sd[3] = {0.5f, 3.0f, 40.0f};
  for (int s = 0; s < 3; ++s) {
    const auto part = random_bf16(static_cast<size_t>(rows * dim), seed + static_cast<uint32_t>(s), sd[s]);
    for (int64_t r = 0; r < rows; ++r)
      std::memcpy(&f.host[static_cast<size_t>(r * f.ld + s * dim)], &part[static_cast<size_t>(r * dim)], dim * 2);
  }
  return f;
}

TEST(Fp8Attention, QuantisationMatchesCpuBitForBit) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  for (const auto& [rows, dim, pad] : {std::tuple{37, 64, 8}, std::tuple{300, 128, 0}, std::tuple{1, 8, 0},
                                       std::tuple{2048, 512, 16}}) {
    SCOPED_TRACE("rows " + std::to_string(rows) + ", dim " + std::to_string(dim) + ", pad " + std::to_string(pad));
    const Fused f = make_fused(rows, dim, pad, 7);
    const Tensor in = to_device(f.host);
    Tensor out = Tensor::empty({rows, 3 * dim}, DType::F8E4M3, Device::CUDA);
    Tensor scales = Tensor::empty({gpu::kFp8ScaleCount}, DType::F32, Device::CUDA);
    gpu::quantize_qkv_fp8(in.raw(), rows, dim, f.ld, out.raw(), scales.data<float>());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const Tensor got = out.to(Device::CPU);
    const std::vector<float> s = scales_of(scales);
    const auto* codes = static_cast<const uint8_t*>(got.raw());
    const int descale_index[3] = {gpu::kDescaleQ, gpu::kDescaleK, gpu::kDescaleV};
    for (int part = 0; part < 3; ++part) {
      const ops::QuantizedTensor ref = ops::quantize_tensor_e4m3(block_f32(f.host, f.ld, 0, rows, part * dim, dim));
      EXPECT_EQ(s[static_cast<size_t>(descale_index[part])], ref.scale) << "part " << part;
      const auto* want = static_cast<const uint8_t*>(ref.q.raw());
      int64_t differ = 0;
      for (int64_t r = 0; r < rows; ++r)
        for (int64_t c = 0; c < dim; ++c) differ += codes[r * 3 * dim + part * dim + c] != want[r * dim + c];
      EXPECT_EQ(differ, 0) << "e4m3 codes of part " << part << " differ from ops::quantize_tensor_e4m3";
    }
    EXPECT_EQ(s[gpu::kScaleS], 448.0f);
    EXPECT_EQ(s[gpu::kDescaleS], 1.0f / 448.0f);
    const float amax_v = s[gpu::kAmaxV];
    EXPECT_EQ(s[gpu::kScaleO], gpu::kFp8AttentionOutRange / amax_v);
    EXPECT_EQ(s[gpu::kDescaleO], amax_v / gpu::kFp8AttentionOutRange);
  }
}

TEST(Fp8Attention, DequantisationMatchesCpu) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  const int64_t rows = 65, cols = 96;
  std::vector<uint8_t> codes(static_cast<size_t>(rows * cols));
  for (size_t i = 0; i < codes.size(); ++i) codes[i] = static_cast<uint8_t>((i * 37) & 0xff);
  for (auto& c : codes)
    if ((c & 0x7f) == 0x7f) c = 0;  // no NaN codes
  const Tensor in = Tensor::from_vector(codes, {rows, cols}).to(Device::CUDA);
  std::vector<float> s(gpu::kFp8ScaleCount, 0.0f);
  s[gpu::kDescaleO] = 0.0371f;
  const Tensor scales = Tensor::from_vector(s, {gpu::kFp8ScaleCount}).to(Device::CUDA);
  Tensor out = Tensor::empty({rows, cols}, DType::BF16, Device::CUDA);
  gpu::dequantize_attention_fp8(in.raw(), rows, cols, scales.data<float>(), out.raw());
  const Tensor got = out.to(Device::CPU);
  int64_t differ = 0;
  for (size_t i = 0; i < codes.size(); ++i)
    differ += got.data<uint16_t>()[i] != f32_to_bf16(f8e4m3_to_f32(codes[i]) * 0.0371f);
  EXPECT_EQ(differ, 0);
}

// The release's head dim (128) and 64 must run; other head dims are what cuDNN takes (printed).
struct Case {
  int64_t batch, heads, d, L;
  bool required;
};
const Case kCases[] = {{1, 2, 128, 512, false}, {2, 2, 128, 1024, false}, {1, 2, 128, 300, true},
                       {2, 3, 128, 257, true}, {1, 40, 128, 520, true},  {1, 4, 64, 190, true},
                       {1, 4, 64, 256, false}, {1, 4, 32, 130, false}};

TEST(Fp8Attention, MatchesCpuComposition) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  if (!gpu::fp8_supported()) GTEST_SKIP() << "this GPU has no fp8 tensor cores (compute capability < 8.9)";
  set_log_level("debug");
  for (const Case& c : kCases) {
    const std::string name = "batch " + std::to_string(c.batch) + ", heads " + std::to_string(c.heads) + ", d " +
                             std::to_string(c.d) + ", L " + std::to_string(c.L);
    SCOPED_TRACE(name);
    const int64_t dim = c.heads * c.d, rows = c.batch * c.L;
    std::vector<uint16_t> host = random_bf16(static_cast<size_t>(rows * 3 * dim), 11, 1.0f);
    for (size_t i = 2 * dim; i < host.size(); i += 3 * dim)  // v 5x larger than q and k
      for (int64_t j = 0; j < dim; ++j) host[i + j] = f32_to_bf16(5.0f * bf16_to_f32(host[i + j]));
    const Tensor qkv = to_device(host);
    Tensor qkv8 = Tensor::empty({rows, 3 * dim}, DType::F8E4M3, Device::CUDA);
    Tensor out8 = Tensor::empty({rows, dim}, DType::F8E4M3, Device::CUDA);
    Tensor out = Tensor::empty({rows, dim}, DType::BF16, Device::CUDA);
    Tensor scales = Tensor::empty({gpu::kFp8ScaleCount}, DType::F32, Device::CUDA);
    gpu::quantize_qkv_fp8(qkv.raw(), rows, dim, 3 * dim, qkv8.raw(), scales.data<float>());
    gpu::AttentionProblem p = gpu::fp8_self_attention(qkv8.raw(), out8.raw(), scales.data<float>(), c.L, c.heads, c.d);
    p.batch = c.batch;
    p.q_batch_stride = p.k_batch_stride = p.v_batch_stride = c.L * 3 * dim;
    p.o_batch_stride = c.L * dim;
    if (!gpu::cudnn_attention_supports(p)) {
      if (c.required) ADD_FAILURE() << "cuDNN refused fp8 attention at a head dim the engine needs (the log says why)";
      std::printf("  %-40s cuDNN's fp8 attention does not take this head dim here\n", name.c_str());
      continue;
    }
    gpu::attention(p);
    gpu::dequantize_attention_fp8(out8.raw(), rows, dim, scales.data<float>(), out.raw());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const Tensor got = out.to(Device::CPU);
    const std::vector<float> s = scales_of(scales);

    // The reference: per-tensor e4m3 q, k, v (the CPU quantiser; its bits are checked above),
    // dequantised, then f32 attention. And the bf16 attention, to show how far fp8 lands from it.
    double err2 = 0, ref2 = 0, max_err = 0, max_ref = 0, exact_err2 = 0;
    for (int64_t b = 0; b < c.batch; ++b) {
      Tensor deq[3], exact[3];
      for (int part = 0; part < 3; ++part) {
        exact[part] = block_f32(host, 3 * dim, b * c.L, c.L, part * dim, dim);
        ops::QuantizedTensor qt = ops::quantize_tensor_e4m3(block_f32(host, 3 * dim, 0, rows, part * dim, dim));
        // The batch's rows of the whole tensor's codes (one scale over every batch).
        Tensor rows_q = Tensor::empty({c.L, dim}, DType::F8E4M3);
        std::memcpy(rows_q.raw(), static_cast<const uint8_t*>(qt.q.raw()) + b * c.L * dim, c.L * dim);
        deq[part] = ops::dequantize_tensor({rows_q, qt.scale});
      }
      ops::AttentionArgs args;
      args.num_heads = c.heads;
      args.scale = p.scale;
      Tensor ref = Tensor::empty({c.L, dim}, DType::F32), ref_exact = Tensor::empty({c.L, dim}, DType::F32);
      ops::cpu::attention(deq[0], deq[1], deq[2], args, ref);
      ops::cpu::attention(exact[0], exact[1], exact[2], args, ref_exact);
      for (int64_t i = 0; i < c.L * dim; ++i) {
        const double g = bf16_to_f32(got.data<uint16_t>()[b * c.L * dim + i]), r = ref.data<float>()[i];
        err2 += (g - r) * (g - r);
        ref2 += r * r;
        exact_err2 += (g - ref_exact.data<float>()[i]) * (g - ref_exact.data<float>()[i]);
        max_err = std::max(max_err, std::fabs(g - r));
        max_ref = std::max(max_ref, std::fabs(r));
      }
    }
    const double rel = std::sqrt(err2 / ref2), rel_exact = std::sqrt(exact_err2 / ref2);
    // What is left after the reference's own quantisation of q, k, v: the probabilities in e4m3
    // (relative step 2^-4, errors that average out over the keys) and the output in e4m3 (at
    // most half a step, 2^-4 relative, plus bf16's 2^-8). An rms of 4% and a max of 1/8 of
    // max|ref| hold these with room; a wrong scale or layout misses by orders of magnitude.
    EXPECT_LT(rel, 0.04) << "rms error relative to the reference's rms";
    EXPECT_LT(max_err, 0.125 * max_ref);
    EXPECT_GT(s[gpu::kAmaxO], 0.0f) << "cuDNN wrote no amax of the output";
    std::printf("  %-40s rms err %.3g of rms ref (vs unquantised q/k/v: %.3g), max err %.3g (max|ref| %.3g)\n",
                name.c_str(), rel, rel_exact, max_err, max_ref);
  }
}

}  // namespace
}  // namespace ib
