// GPU checks of the fp8 attention (src/gpu/attention_fp8.h, label gpu): the quantisation of a
// fused q | k | v buffer against ops::quantize_tensor_e4m3 (the same bits and scales), the output's
// dequantisation against the CPU arithmetic, and cuDNN's fp8 attention against the composition of
// CPU reference ops (q, k, v quantised and dequantised per tensor, then ops::cpu::attention in f32).
#include <gtest/gtest.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
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

// The error of an fp8 attention output (bf16 [batch * L, heads * d] on the host) against the CPU
// composition: per-tensor e4m3 q, k, v (the CPU quantiser; its bits are checked above, one scale
// over every batch entry), dequantised, then f32 attention; and against the f32 attention of the
// unquantised bf16 inputs, to show how far fp8 lands from it.
struct Fp8Errors {
  double rel = 0, rel_exact = 0, max_err = 0, max_ref = 0;
};
Fp8Errors fp8_errors(const std::vector<uint16_t>& host, const Tensor& got, int64_t batch, int64_t heads, int64_t d,
                     int64_t L, float scale) {
  const int64_t dim = heads * d, rows = batch * L;
  double err2 = 0, ref2 = 0, exact_err2 = 0;
  Fp8Errors e;
  for (int64_t b = 0; b < batch; ++b) {
    Tensor deq[3], exact[3];
    for (int part = 0; part < 3; ++part) {
      exact[part] = block_f32(host, 3 * dim, b * L, L, part * dim, dim);
      ops::QuantizedTensor qt = ops::quantize_tensor_e4m3(block_f32(host, 3 * dim, 0, rows, part * dim, dim));
      Tensor rows_q = Tensor::empty({L, dim}, DType::F8E4M3);
      std::memcpy(rows_q.raw(), static_cast<const uint8_t*>(qt.q.raw()) + b * L * dim, L * dim);
      deq[part] = ops::dequantize_tensor({rows_q, qt.scale});
    }
    ops::AttentionArgs args;
    args.num_heads = heads;
    args.scale = scale;
    Tensor ref = Tensor::empty({L, dim}, DType::F32), ref_exact = Tensor::empty({L, dim}, DType::F32);
    ops::cpu::attention(deq[0], deq[1], deq[2], args, ref);
    ops::cpu::attention(exact[0], exact[1], exact[2], args, ref_exact);
    for (int64_t i = 0; i < L * dim; ++i) {
      const double g = bf16_to_f32(got.data<uint16_t>()[b * L * dim + i]), r = ref.data<float>()[i];
      err2 += (g - r) * (g - r);
      ref2 += r * r;
      exact_err2 += (g - ref_exact.data<float>()[i]) * (g - ref_exact.data<float>()[i]);
      e.max_err = std::max(e.max_err, std::fabs(g - r));
      e.max_ref = std::max(e.max_ref, std::fabs(r));
    }
  }
  e.rel = std::sqrt(err2 / ref2);
  e.rel_exact = std::sqrt(exact_err2 / ref2);
  return e;
}

// q, k and v of unit scale with v 5x larger (so a mixed-up scale shows), for batch * L tokens.
std::vector<uint16_t> fp8_inputs(int64_t rows, int64_t dim) {
  std::vector<uint16_t> host = random_bf16(static_cast<size_t>(rows * 3 * dim), 11, 1.0f);
  for (size_t i = 2 * dim; i < host.size(); i += 3 * dim)
    for (int64_t j = 0; j < dim; ++j) host[i + j] = f32_to_bf16(5.0f * bf16_to_f32(host[i + j]));
  return host;
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
    const std::vector<uint16_t> host = fp8_inputs(rows, dim);
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

    const Fp8Errors e = fp8_errors(host, got, c.batch, c.heads, c.d, c.L, p.scale);
    const double rel = e.rel, rel_exact = e.rel_exact, max_err = e.max_err, max_ref = e.max_ref;
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

// ---- Our Hopper fp8 kernel (src/gpu/hopper_attention_fp8.cu) ----

// The key order of the transposed v, derived here from the two register layouts it bridges (not
// from gpu::fp8_vt_position): thread t of a quad holds, in its f32 logits accumulator, columns
// 2t and 2t + 1 of each group of 8; in its 8-bit A fragment of P V, columns 4t .. 4t + 3 of each
// group of 16. The kernel packs accumulator groups 0 and 1 (then 2 and 3) of each 32 keys into one
// register, so key 2t + e (group 0) goes to position 4t + e and key 8 + 2t + e (group 1) to
// 4t + 2 + e; the same for keys 16 .. 31.
std::vector<int> position_of_key() {
  std::vector<int> pos(32, -1);
  for (int half = 0; half < 2; ++half)
    for (int t = 0; t < 4; ++t)
      for (int e = 0; e < 2; ++e) {
        pos[static_cast<size_t>(16 * half + 2 * t + e)] = 16 * half + 4 * t + e;
        pos[static_cast<size_t>(16 * half + 8 + 2 * t + e)] = 16 * half + 4 * t + 2 + e;
      }
  return pos;
}

// quantize_qkv_fp8_vt writes quantize_qkv_fp8's codes (checked against the CPU above) and scales:
// q | k dense, v transposed per batch entry with each 32-key group in the order above, zeros past
// the last key.
TEST(HopperFp8Attention, TransposedLayoutHoldsTheDenseCodes) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  const std::vector<int> pos = position_of_key();
  for (const auto& [batch, tokens, dim, pad] : {std::tuple{1, 37, 128, 8}, std::tuple{2, 300, 256, 0},
                                                std::tuple{3, 64, 128, 16}, std::tuple{1, 2049, 384, 0}}) {
    SCOPED_TRACE("batch " + std::to_string(batch) + ", tokens " + std::to_string(tokens) + ", dim " +
                 std::to_string(dim));
    const int64_t rows = batch * tokens;
    const Fused f = make_fused(rows, dim, pad, 5);
    const Tensor in = to_device(f.host);
    Tensor dense = Tensor::empty({rows, 3 * dim}, DType::F8E4M3, Device::CUDA);
    Tensor dense_scales = Tensor::empty({gpu::kFp8ScaleCount}, DType::F32, Device::CUDA);
    gpu::quantize_qkv_fp8(in.raw(), rows, dim, f.ld, dense.raw(), dense_scales.data<float>());
    const int64_t vk = gpu::fp8_vt_keys(tokens);
    ASSERT_GE(vk, tokens);
    ASSERT_EQ(vk % 64, 0);
    Tensor qk = Tensor::empty({rows, 2 * dim}, DType::F8E4M3, Device::CUDA);
    Tensor vt = Tensor::empty({batch, dim, vk}, DType::F8E4M3, Device::CUDA);
    ASSERT_EQ(cudaMemset(vt.raw(), 0x55, static_cast<size_t>(vt.nbytes())), cudaSuccess);  // no stale zeros
    Tensor scales = Tensor::empty({gpu::kFp8ScaleCount}, DType::F32, Device::CUDA);
    gpu::quantize_qkv_fp8_vt(in.raw(), batch, tokens, dim, f.ld, qk.raw(), vt.raw(), scales.data<float>());
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    const Tensor d = dense.to(Device::CPU), q = qk.to(Device::CPU), v = vt.to(Device::CPU);
    const auto* dc = static_cast<const uint8_t*>(d.raw());
    const auto* qc = static_cast<const uint8_t*>(q.raw());
    const auto* vc = static_cast<const uint8_t*>(v.raw());
    int64_t qk_differ = 0, v_differ = 0, pad_nonzero = 0;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < 2 * dim; ++c) qk_differ += qc[r * 2 * dim + c] != dc[r * 3 * dim + c];
    for (int64_t b = 0; b < batch; ++b)
      for (int64_t fe = 0; fe < dim; ++fe)
        for (int64_t key = 0; key < vk; ++key) {
          const int64_t at = (b * dim + fe) * vk + (key / 32) * 32 + pos[static_cast<size_t>(key % 32)];
          if (key < tokens)
            v_differ += vc[at] != dc[(b * tokens + key) * 3 * dim + 2 * dim + fe];
          else
            pad_nonzero += vc[at] != 0;
        }
    EXPECT_EQ(qk_differ, 0) << "q | k codes differ from quantize_qkv_fp8's";
    EXPECT_EQ(v_differ, 0) << "transposed v codes differ from quantize_qkv_fp8's v";
    EXPECT_EQ(pad_nonzero, 0) << "positions past the last key are not zero";
    const std::vector<float> s = scales_of(scales), sd = scales_of(dense_scales);
    for (int i : {gpu::kDescaleQ, gpu::kDescaleK, gpu::kDescaleV}) EXPECT_EQ(s[static_cast<size_t>(i)], sd[static_cast<size_t>(i)]) << i;

    // With q's and k's amax given (as the DiT's q/k norms measure them: the largest |bf16 value| of
    // each block, here from the host), only v's is measured: the same codes and scales, bit for bit.
    float amax_q = 0.0f, amax_k = 0.0f;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < dim; ++c) {
        amax_q = std::max(amax_q, std::fabs(bf16_to_f32(f.host[static_cast<size_t>(r * f.ld + c)])));
        amax_k = std::max(amax_k, std::fabs(bf16_to_f32(f.host[static_cast<size_t>(r * f.ld + dim + c)])));
      }
    Tensor qk2 = Tensor::empty({rows, 2 * dim}, DType::F8E4M3, Device::CUDA);
    Tensor vt2 = Tensor::empty({batch, dim, vk}, DType::F8E4M3, Device::CUDA);
    ASSERT_EQ(cudaMemset(vt2.raw(), 0x55, static_cast<size_t>(vt2.nbytes())), cudaSuccess);
    Tensor given = Tensor::zeros({gpu::kFp8ScaleCount}, DType::F32);
    given.data<float>()[gpu::kAmaxQ] = amax_q;
    given.data<float>()[gpu::kAmaxK] = amax_k;
    given.data<float>()[gpu::kAmaxV] = -1.0f;  // must be measured, not kept
    Tensor scales2 = given.to(Device::CUDA);
    gpu::quantize_qkv_fp8_vt(in.raw(), batch, tokens, dim, f.ld, qk2.raw(), vt2.raw(), scales2.data<float>(), nullptr,
                             /*qk_amax_ready=*/true);
    const Tensor q2 = qk2.to(Device::CPU), v2 = vt2.to(Device::CPU);
    EXPECT_EQ(0, std::memcmp(q2.raw(), q.raw(), static_cast<size_t>(q.nbytes()))) << "q | k codes, amax given";
    EXPECT_EQ(0, std::memcmp(v2.raw(), v.raw(), static_cast<size_t>(v.nbytes()))) << "transposed v, amax given";
    EXPECT_EQ(scales_of(scales2), s) << "scales, amax given";
  }
}

// One run of the Hopper fp8 kernel on fp8_inputs, the output bf16 on the host.
Tensor run_hopper_fp8(const std::vector<uint16_t>& host, int64_t batch, int64_t heads, int64_t L, float scale_factor) {
  const int64_t dim = heads * 128, rows = batch * L;
  const Tensor qkv = to_device(host);
  Tensor qk8 = Tensor::empty({rows, 2 * dim}, DType::F8E4M3, Device::CUDA);
  Tensor vt8 = Tensor::empty({batch, dim, gpu::fp8_vt_keys(L)}, DType::F8E4M3, Device::CUDA);
  Tensor out = Tensor::empty({rows, dim}, DType::BF16, Device::CUDA);
  Tensor scales = Tensor::empty({gpu::kFp8ScaleCount}, DType::F32, Device::CUDA);
  gpu::quantize_qkv_fp8_vt(qkv.raw(), batch, L, dim, 3 * dim, qk8.raw(), vt8.raw(), scales.data<float>());
  gpu::AttentionProblem p = gpu::fp8_self_attention_vt(qk8.raw(), vt8.raw(), out.raw(), scales.data<float>(), L, heads, 128);
  p.batch = batch;
  p.q_batch_stride = p.k_batch_stride = L * 2 * dim;
  p.o_batch_stride = L * dim;
  p.scale *= scale_factor;
  EXPECT_TRUE(gpu::fp8_attention_uses_hopper(128, L, gpu::AttentionBackend::Hopper));
  gpu::attention(p);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  return out.to(Device::CPU);
}

// The kernel against the CPU composition (per-tensor e4m3 q, k, v dequantised, f32 attention), in
// every tile shape (IB_HOPPER_FP8_VARIANT): key tails (one key past a tile, a single key), batch 2,
// 40 heads (5 x 40 work items, more than the H200's 132 SMs: persistent blocks take several), many
// tiles, and keys past 2048 (one block per work item).
// Its output is bf16, not e4m3, so only the probabilities' e4m3 is left: the cuDNN bounds above
// hold with more room.
TEST(HopperFp8Attention, MatchesCpuComposition) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  if (!gpu::hopper_fp8_available()) GTEST_SKIP() << "our Hopper fp8 kernel runs on sm_90 GPUs only";
  struct C {
    int64_t batch, heads, L;
  };
  for (const char* variant : {"0", "1", "2", "3", "4"}) {
    setenv("IB_HOPPER_FP8_VARIANT", variant, 1);
    for (const C& c : {C{1, 2, 300}, C{2, 3, 257}, C{1, 40, 520}, C{1, 2, 129}, C{2, 2, 1024}, C{1, 1, 1},
                       C{1, 2, 2100}}) {
      const std::string name = "variant " + std::string(variant) + ", batch " + std::to_string(c.batch) + ", heads " +
                               std::to_string(c.heads) + ", L " + std::to_string(c.L);
      SCOPED_TRACE(name);
      const std::vector<uint16_t> host = fp8_inputs(c.batch * c.L, c.heads * 128);
      const Tensor got = run_hopper_fp8(host, c.batch, c.heads, c.L, 1.0f);
      const Fp8Errors e = fp8_errors(host, got, c.batch, c.heads, 128, c.L, 1.0f / std::sqrt(128.0f));
      EXPECT_LT(e.rel, 0.04) << "rms error relative to the reference's rms";
      EXPECT_LT(e.max_err, 0.125 * e.max_ref);
      std::printf("  %-44s rms err %.3g of rms ref (vs unquantised q/k/v: %.3g), max err %.3g (max|ref| %.3g)\n",
                  name.c_str(), e.rel, e.rel_exact, e.max_err, e.max_ref);
    }
  }
  unsetenv("IB_HOPPER_FP8_VARIANT");
}

// The check above can fail: a doubled logit scale (a wrong descale would do the same) lands far
// outside its bound.
TEST(HopperFp8Attention, WrongScaleFailsTheBound) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  if (!gpu::hopper_fp8_available()) GTEST_SKIP() << "our Hopper fp8 kernel runs on sm_90 GPUs only";
  const std::vector<uint16_t> host = fp8_inputs(300, 256);
  const Tensor got = run_hopper_fp8(host, 1, 2, 300, 2.0f);
  const Fp8Errors e = fp8_errors(host, got, 1, 2, 128, 300, 1.0f / std::sqrt(128.0f));
  EXPECT_GT(e.rel, 0.04);
}

// Problems it does not take are refused, naming the reason; the layout must match the back-end.
TEST(HopperFp8Attention, RefusesWhatItDoesNotTake) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  if (!gpu::hopper_fp8_available()) GTEST_SKIP() << "our Hopper fp8 kernel runs on sm_90 GPUs only";
  Tensor qk8 = Tensor::empty({64, 2 * 256}, DType::F8E4M3, Device::CUDA);
  Tensor vt8 = Tensor::empty({256, 64}, DType::F8E4M3, Device::CUDA);
  Tensor out = Tensor::empty({64, 256}, DType::BF16, Device::CUDA);
  Tensor scales = Tensor::zeros({gpu::kFp8ScaleCount}, DType::F32, Device::CUDA);
  gpu::AttentionProblem p = gpu::fp8_self_attention_vt(qk8.raw(), vt8.raw(), out.raw(), scales.data<float>(), 64, 4, 64);
  EXPECT_FALSE(gpu::hopper_attention_fp8_supports(p));  // head dim 64
  EXPECT_THROW(gpu::attention(p), Error);
  EXPECT_FALSE(gpu::fp8_attention_uses_hopper(64, 4096, gpu::AttentionBackend::Auto));
  EXPECT_FALSE(gpu::fp8_attention_uses_hopper(128, 512, gpu::AttentionBackend::Auto));  // short: cuDNN's
  EXPECT_FALSE(gpu::fp8_attention_uses_hopper(128, 4096, gpu::AttentionBackend::Cudnn));
  EXPECT_TRUE(gpu::fp8_attention_uses_hopper(128, 4096, gpu::AttentionBackend::Auto));
  gpu::AttentionProblem q = gpu::fp8_self_attention_vt(qk8.raw(), vt8.raw(), out.raw(), scales.data<float>(), 64, 2, 128);
  EXPECT_THROW(gpu::attention(q, gpu::AttentionBackend::Cudnn), Error);  // the Hopper layout on cuDNN
  EXPECT_THROW(gpu::quantize_qkv_fp8_vt(out.raw(), 1, 64, 96, 3 * 96, qk8.raw(), vt8.raw(), scales.data<float>()),
               Error);  // dim not a multiple of 128
}

}  // namespace
}  // namespace ib
