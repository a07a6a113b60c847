// The GPU engine's fused kernels (src/gpu/kernels.h) and its cuBLASLt linear (src/gpu/gemm.h), each
// against the composition of CPU reference ops it replaces, on random inputs over one table of
// cases per kernel. Outputs rounded to bf16 are compared with the reference rounded the same way:
// a rounding boundary may flip, so the bound is a couple of bf16 units in the last place.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/fixture.h"
#include "core/cuda_memory.h"
#include "core/dtype.h"
#include "gpu/fp8.h"
#include "gpu/gemm.h"
#include "gpu/kernels.h"
#include "models/dit.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/quantize.h"
#include "ops/rope.h"

namespace ib {
namespace {

using test::random_tensor;

// 0xFF bytes: NaN in f32 and bf16, so an element the kernel does not write fails the comparison.
void cuda_poison(const Tensor& t) { cuda::memset_device(t.raw(), 0xFF, t.nbytes()); }

Tensor host(const Tensor& t) { return t.to(Device::CPU).to(DType::F32); }
Tensor bf16_round(const Tensor& t) { return t.to(DType::BF16).to(DType::F32); }

// gpu::quantize_rows_fp8 of the bf16 device rows x (rows x cols, row stride ld) into q and scale.
void quantize_rows(const Tensor& x, int64_t rows, int64_t cols, int64_t ld, Tensor& q, Tensor& scale) {
  gpu::QuantizeRowsArgs a;
  a.x = x.raw();
  a.rows = rows;
  a.cols = cols;
  a.ld = ld;
  a.q = q.raw();
  a.scale = scale.data<float>();
  gpu::quantize_rows_fp8(a);
}

// Max over elements of |got - ref| / (ulps * 2^-8 * |ref| + floor): <= 1 passes. 2^-8 is half a
// bf16 unit in the last place relative to the value.
double worst_ratio(const Tensor& got, const Tensor& ref, double ulps, double floor) {
  EXPECT_EQ(got.shape(), ref.shape());
  const float* g = got.data<float>();
  const float* r = ref.data<float>();
  double worst = 0;
  for (int64_t i = 0; i < ref.numel(); ++i) {
    if (!std::isfinite(g[i])) return INFINITY;
    const double bound = ulps * std::ldexp(1.0, -8) * std::fabs(r[i]) + floor;
    worst = std::max(worst, std::fabs(static_cast<double>(g[i]) - r[i]) / bound);
  }
  return worst;
}

double max_abs(const Tensor& t) {
  double m = 0;
  for (int64_t i = 0; i < t.numel(); ++i) m = std::max(m, static_cast<double>(std::fabs(t.data<float>()[i])));
  return m;
}

// The CPU composition residual_norm replaces: x += y * gate (y and gate optional); LN; (round);
// modulate or affine. The updated stream goes to *xr; returns the f32 output before any rounding.
Tensor residual_norm_reference(const Tensor& x, const Tensor& y, const Tensor& gate, const Tensor& p0, const Tensor& p1,
                               bool modulate, bool round_norm, float eps, Tensor* xr) {
  *xr = x;
  if (y.defined()) *xr = ops::add(x, gate.defined() ? ops::mul(y, gate) : y);
  Tensor n = ops::layer_norm(*xr, Tensor(), Tensor(), eps);
  if (round_norm) n = bf16_round(n);
  return modulate ? ops::add(ops::mul(n, ops::affine(p0, 1.0f, 1.0f)), p1) : ops::add(ops::mul(n, p0), p1);
}

// The device inputs of one residual_norm case and its arguments (the output pointers left to
// the caller): x += y * gate (with_y; the gate only with with_gate), modulate or affine.
struct NormInputs {
  Tensor xd, yd, gd, p0d, p1d;
  gpu::ResidualNormArgs args(int64_t rows, int64_t cols, bool with_y, bool with_gate, bool modulate, bool round_norm,
                             float eps) {
    gpu::ResidualNormArgs a;
    a.x = xd.data<float>();
    a.rows = rows;
    a.cols = cols;
    if (with_y) {
      a.y = yd.raw();
      a.ldy = cols;
      if (with_gate) a.gate = gd.data<float>();
    }
    a.mode = modulate ? gpu::ResidualNormArgs::Mode::Modulate : gpu::ResidualNormArgs::Mode::Affine;
    a.p0 = p0d.data<float>();
    a.p1 = p1d.data<float>();
    a.eps = eps;
    a.round_norm = round_norm;
    return a;
  }
};
NormInputs norm_inputs(const Tensor& x, const Tensor& y, const Tensor& gate, const Tensor& p0, const Tensor& p1) {
  return {x.to(Device::CUDA), y.to(DType::BF16).to(Device::CUDA), gate.to(Device::CUDA), p0.to(Device::CUDA),
          p1.to(Device::CUDA)};
}

// x += y * gate; LN; (round); modulate or affine; out bf16 or f32.
TEST(GpuEngineKernels, ResidualNormMatchesCpuComposition) {
  struct Case {
    int64_t rows, cols;
    bool with_y, with_gate, modulate, round_norm, out_bf16;
  };
  const Case cases[] = {{7, 128, true, true, true, false, true},   {3, 320, true, false, true, false, true},
                        {5, 5120, true, true, false, false, true},  {9, 96, false, false, true, true, true},
                        {4, 1000, true, true, true, false, false}, {1, 13824, true, true, true, false, true},
                        {3, 1002, true, true, true, false, true},   {2, 70, false, false, false, false, false}};
  uint32_t seed = 100;
  for (const Case& c : cases) {
    const Tensor x = random_tensor({c.rows, c.cols}, ++seed, 3.0f, 0.7f);
    const Tensor y = bf16_round(random_tensor({c.rows, c.cols}, ++seed));
    const Tensor gate = random_tensor({c.cols}, ++seed, 0.5f);
    const Tensor p0 = random_tensor({c.cols}, ++seed, 0.3f), p1 = random_tensor({c.cols}, ++seed, 0.3f);
    const float eps = 1e-6f;
    // The reference: CPU ops in upstream's order.
    Tensor xr;
    Tensor ref = residual_norm_reference(x, c.with_y ? y : Tensor(), c.with_y && c.with_gate ? gate : Tensor(), p0, p1,
                                         c.modulate, c.round_norm, eps, &xr);
    if (c.out_bf16) ref = bf16_round(ref);

    NormInputs in = norm_inputs(x, y, gate, p0, p1);
    Tensor& xd = in.xd;
    Tensor out = Tensor::empty({c.rows, c.cols}, c.out_bf16 ? DType::BF16 : DType::F32, Device::CUDA);
    cuda_poison(out);
    gpu::ResidualNormArgs a = in.args(c.rows, c.cols, c.with_y, c.with_gate, c.modulate, c.round_norm, eps);
    a.out = out.raw();
    a.out_bf16 = c.out_bf16;
    gpu::residual_norm(a);
    const std::string what = fmt::format("rows {} cols {}", c.rows, c.cols);
    // The stream itself: f32 add and multiply (the GPU may fuse them into one FMA).
    EXPECT_LE(worst_ratio(host(xd), xr, 0.0, 1e-6 * (1 + max_abs(xr))), 1.0) << what;
    EXPECT_LE(worst_ratio(host(out), ref, c.out_bf16 ? 2.0 : 0.0, c.out_bf16 ? 1e-6 : 1e-5 * (1 + max_abs(ref))), 1.0)
        << what;
  }
}

// residual_norm's fp8 copy (q8, q8_scale): bit for bit the row quantisation of the bf16 rows it
// writes, by the GPU's own quantize_rows_fp8 and by the CPU rule (ops/quantize.h); and the CPU
// composition (the reference norm, rounded to bf16, quantised on the CPU) within the norm's bf16
// bound. Columns on both kernel paths (4-wide and scalar), widths that leave a partial last pass
// of the block, a zero row (a constant input row with a zero shift: LN gives 0), both modes.
TEST(GpuEngineKernels, ResidualNormFp8CopyIsTheQuantisedOutput) {
  struct Case {
    int64_t rows, cols;
    bool with_y, modulate, round_norm, zero_row;
  };
  const Case cases[] = {{6, 128, true, true, false, true},     {3, 70, false, false, false, false},
                        {5, 5120, true, true, false, true},     {4, 5120, true, false, false, false},
                        {3, 1000, false, true, true, true},     {4, 1002, true, false, false, true},
                        {2, 13824, true, true, false, false},   {7, 36, true, false, true, true}};
  uint32_t seed = 1100;
  for (const Case& c : cases) {
    const std::string what = fmt::format("rows {} cols {} {}", c.rows, c.cols, c.modulate ? "modulate" : "affine");
    Tensor x = random_tensor({c.rows, c.cols}, ++seed, 3.0f, 0.7f);
    Tensor y = bf16_round(random_tensor({c.rows, c.cols}, ++seed));
    const Tensor gate = random_tensor({c.cols}, ++seed, 0.5f);
    const Tensor p0 = random_tensor({c.cols}, ++seed, 0.3f);
    Tensor p1 = random_tensor({c.cols}, ++seed, 0.3f);
    const int64_t zr = c.rows / 2;  // the zero row, when the case has one
    if (c.zero_row) {
      std::fill_n(x.data<float>() + zr * c.cols, c.cols, 1.5f);
      std::fill_n(y.data<float>() + zr * c.cols, c.cols, 0.0f);
      p1 = Tensor::zeros({c.cols}, DType::F32);
    }
    const float eps = 1e-6f;
    Tensor xr;
    const Tensor ref = bf16_round(residual_norm_reference(x, c.with_y ? y : Tensor(), c.with_y ? gate : Tensor(), p0,
                                                          p1, c.modulate, c.round_norm, eps, &xr));

    NormInputs in = norm_inputs(x, y, gate, p0, p1);
    Tensor out = Tensor::empty({c.rows, c.cols}, DType::BF16, Device::CUDA);
    Tensor q8 = Tensor::empty({c.rows, c.cols}, DType::F8E4M3, Device::CUDA);
    Tensor sc = Tensor::empty({c.rows}, DType::F32, Device::CUDA);
    cuda_poison(out);
    cuda_poison(q8);
    cuda_poison(sc);
    gpu::ResidualNormArgs a = in.args(c.rows, c.cols, c.with_y, true, c.modulate, c.round_norm, eps);
    a.out = out.raw();
    a.q8 = q8.raw();
    a.q8_scale = sc.data<float>();
    gpu::residual_norm(a);
    // The bf16 output is still the norm's (the fp8 copy changes nothing else).
    const Tensor outh = host(out);
    ASSERT_LE(worst_ratio(outh, ref, 2.0, 1e-6), 1.0) << what;

    // 1. The GPU's own quantisation pass over that output: the same bytes and scales.
    Tensor q2 = Tensor::empty({c.rows, c.cols}, DType::F8E4M3, Device::CUDA);
    Tensor s2 = Tensor::empty({c.rows}, DType::F32, Device::CUDA);
    cuda_poison(q2);
    cuda_poison(s2);
    quantize_rows(out, c.rows, c.cols, c.cols, q2, s2);
    const Tensor q8h = q8.to(Device::CPU), sch = sc.to(Device::CPU);
    const auto n = static_cast<size_t>(c.rows * c.cols);
    EXPECT_EQ(0, std::memcmp(q8h.raw(), q2.to(Device::CPU).raw(), n)) << what;
    EXPECT_EQ(0, std::memcmp(sch.raw(), s2.to(Device::CPU).raw(), static_cast<size_t>(c.rows) * 4)) << what;

    // 2. The CPU rule on the same bf16 values: the same bytes and scales.
    const ops::QuantizedRows own = ops::quantize_rows_e4m3(outh);
    EXPECT_EQ(0, std::memcmp(q8h.raw(), own.q.raw(), n)) << what;
    EXPECT_EQ(0, std::memcmp(sch.raw(), own.scale.raw(), static_cast<size_t>(c.rows) * 4)) << what;

    // 3. The CPU composition: the reference norm's bf16 output quantised on the CPU. Its bf16
    // values may differ from the kernel's by the norm's 2 units, so the dequantised rows are
    // compared, each within e4m3's half unit of its own input (the QuantizeRows test's bound).
    const ops::QuantizedRows cpu = ops::quantize_rows_e4m3(ref);
    const Tensor got = ops::dequantize_rows({q8h, sch}), want = ops::dequantize_rows(cpu);
    for (int64_t r = 0; r < c.rows; ++r) {
      float amax = 0;
      for (int64_t k = 0; k < c.cols; ++k) amax = std::max(amax, std::fabs(ref.data<float>()[r * c.cols + k]));
      const float s_got = sch.data<float>()[r], s_want = cpu.scale.data<float>()[r];
      // The amax differs by at most the norm's bound (2^-7 relative).
      EXPECT_LE(std::fabs(s_got - s_want), std::ldexp(s_want, -7) * 1.01f + 1e-8f) << what << " row " << r;
      for (int64_t k = 0; k < c.cols; ++k) {
        const float v = ref.data<float>()[r * c.cols + k];
        const float bound = 2 * (std::ldexp(std::fabs(v), -4) + amax * std::ldexp(1.0f, -17)) * (1 + 1.0f / 64) +
                            std::ldexp(std::fabs(v), -7) + 2e-6f;
        ASSERT_LE(std::fabs(got.data<float>()[r * c.cols + k] - want.data<float>()[r * c.cols + k]), bound)
            << what << " at " << r << "," << k;
      }
    }
    if (c.zero_row) {  // quantize_rows_fp8's zero row: scale 1, codes 0
      EXPECT_EQ(sch.data<float>()[zr], 1.0f) << what;
      for (int64_t k = 0; k < c.cols; ++k)
        ASSERT_EQ(static_cast<const uint8_t*>(q8h.raw())[zr * c.cols + k], 0) << what << " column " << k;
    }
    // The bit comparisons are not blind: quantising the f32 values before their bf16 rounding (the
    // easy mistake) gives other codes somewhere in a wide row, and other scales (from the f32 amax).
    if (c.cols >= 1000) {
      const ops::QuantizedRows unrounded = ops::quantize_rows_e4m3(residual_norm_reference(
          x, c.with_y ? y : Tensor(), c.with_y ? gate : Tensor(), p0, p1, c.modulate, c.round_norm, eps, &xr));
      EXPECT_NE(0, std::memcmp(q8h.raw(), unrounded.q.raw(), n)) << what << ": blind to the bf16 rounding (codes)";
      EXPECT_NE(0, std::memcmp(sch.raw(), unrounded.scale.raw(), static_cast<size_t>(c.rows) * 4))
          << what << ": blind to the bf16 rounding (scales)";
    }
  }
  // An fp8 copy of an f32 output is refused.
  gpu::ResidualNormArgs bad;
  Tensor xd = Tensor::zeros({1, 16}, DType::F32).to(Device::CUDA), o = Tensor::empty({1, 16}, DType::F32, Device::CUDA);
  Tensor q = Tensor::empty({1, 16}, DType::F8E4M3, Device::CUDA), s = Tensor::empty({1}, DType::F32, Device::CUDA);
  bad.x = xd.data<float>();
  bad.rows = 1;
  bad.cols = 16;
  bad.p0 = bad.p1 = xd.data<float>();
  bad.out = o.raw();
  bad.out_bf16 = false;
  bad.q8 = q.raw();
  bad.q8_scale = s.data<float>();
  EXPECT_THROW(gpu::residual_norm(bad), Error);
}

// bf16 rows: RMSNorm in f32, round, * gamma, (RoPE in double), round.
TEST(GpuEngineKernels, QkNormRopeMatchesCpuComposition) {
  struct Case {
    int64_t frames, height, width, heads, head_dim, ld_extra;
    bool rope;
    int64_t videos = 1;  // stacked videos of one grid each (the batched guidance branches)
  };
  const Case cases[] = {{3, 2, 5, 4, 32, 0, true},   {2, 3, 4, 2, 128, 256, true}, {1, 1, 7, 3, 16, 16, true},
                        {2, 4, 3, 40, 128, 0, true},  {5, 1, 1, 4, 64, 64, false},  {2, 3, 5, 4, 32, 96, true, 2},
                        {1, 2, 3, 2, 64, 0, true, 3},
                        // a head of 48 (24 pairs: 128 columns hold 2 2/3 heads), and 7168 columns
                        // (seven 16-byte vectors a thread)
                        {2, 2, 3, 2, 48, 16, true},  {1, 2, 2, 56, 128, 0, true},
                        // the general (non-vector) kernel: columns and stride not multiples of 8,
                        // or heads whose pairs do not come in fours
                        {2, 2, 3, 3, 6, 2, true},    {2, 2, 2, 4, 6, 0, true}};
  uint32_t seed = 300;
  for (const Case& c : cases) {
    const int64_t N = c.frames * c.height * c.width, L = N * c.videos, C = c.heads * c.head_dim, ld = C + c.ld_extra;
    const Tensor x = bf16_round(random_tensor({L, C}, ++seed, 2.0f));
    const Tensor gamma = random_tensor({C}, ++seed, 0.3f, 1.0f);
    const float eps = 1e-6f;
    Tensor ref = ops::mul(bf16_round(ops::rms_norm(x, Tensor(), eps)), gamma);
    if (c.rope) {  // each stacked video on its own grid
      Tensor r = Tensor::empty({L, C}, DType::F32);
      for (int64_t v = 0; v < c.videos; ++v)
        copy_bytes(r.slice(v * N, (v + 1) * N),
                   ops::rope_3d(ref.slice(v * N, (v + 1) * N).clone(), c.heads, {c.frames, c.height, c.width}));
      ref = r;
    }
    ref = bf16_round(ref);

    // The rows live in a wider buffer (as q and k do in the fused qkv output); the rest is left alone.
    Tensor wide = random_tensor({L, ld}, ++seed);
    float* wp = wide.data<float>();
    for (int64_t r = 0; r < L; ++r) std::memcpy(wp + r * ld, x.data<float>() + r * C, static_cast<size_t>(C) * 4);
    const Tensor wide_bf = wide.to(DType::BF16);
    Tensor xd = wide_bf.to(Device::CUDA);
    const Tensor gd = gamma.to(Device::CUDA);
    gpu::RopeTables tables;
    const Tensor store = gpu::make_rope_tables({c.frames, c.height, c.width}, c.head_dim, tables);
    gpu::QkNormArgs a;
    a.x = xd.raw();
    a.rows = L;
    a.cols = C;
    a.ld = ld;
    a.gamma = gd.data<float>();
    a.eps = eps;
    a.heads = c.heads;
    a.rope = c.rope ? &tables : nullptr;
    a.tokens = N;
    const Tensor amax = Tensor::zeros({1}, DType::F32).to(Device::CUDA);
    a.amax = amax.data<float>();
    gpu::qk_norm(a);
    const Tensor got_wide = host(xd);
    Tensor got = Tensor::empty({L, C}, DType::F32);
    for (int64_t r = 0; r < L; ++r) {
      std::memcpy(got.data<float>() + r * C, got_wide.data<float>() + r * ld, static_cast<size_t>(C) * 4);
      for (int64_t k = C; k < ld; ++k)  // untouched columns
        ASSERT_EQ(got_wide.data<float>()[r * ld + k], round_bf16(wp[r * ld + k]));
    }
    EXPECT_LE(worst_ratio(got, ref, 4.0, 1e-3 * max_abs(ref)), 1.0)
        << fmt::format("grid {}x{}x{} heads {} dim {}", c.frames, c.height, c.width, c.heads, c.head_dim);
    // The amax it measured (for the fp8 attention's q and k scales) is the largest |value| it wrote.
    EXPECT_EQ(host(amax).data<float>()[0], static_cast<float>(max_abs(got)))
        << fmt::format("amax: grid {}x{}x{} heads {} dim {}", c.frames, c.height, c.width, c.heads, c.head_dim);
  }
}

// gpu::linear on x [M, K] laid out with row stride ldx, into rows of stride ldy (the gaps
// poisoned): the [M, N] result read back as f32.
Tensor linear_strided(const Tensor& x, const gpu::LinearWeight& lw, gpu::Epilogue ep, int64_t ldx, int64_t ldy) {
  const int64_t M = x.size(0), K = x.size(1), N = lw.out_features();
  Tensor xw = Tensor::zeros({M, ldx}, DType::F32);
  for (int64_t r = 0; r < M; ++r)
    std::memcpy(xw.data<float>() + r * ldx, x.data<float>() + r * K, static_cast<size_t>(K) * 4);
  const Tensor xd = xw.to(DType::BF16).to(Device::CUDA);
  Tensor yd = Tensor::empty({M, ldy}, DType::BF16, Device::CUDA);
  cuda_poison(yd);
  gpu::linear(xd.raw(), M, ldx, lw, ep, yd.raw(), ldy);
  const Tensor yw = host(yd);
  Tensor got = Tensor::empty({M, N}, DType::F32);
  for (int64_t r = 0; r < M; ++r)
    std::memcpy(got.data<float>() + r * N, yw.data<float>() + r * ldy, static_cast<size_t>(N) * 4);
  return got;
}

// bf16 x bf16 -> bf16 with the bias (and GELU-tanh) in cuBLASLt's epilogue, strided rows.
TEST(GpuEngineKernels, LinearEpiloguesMatchCpuOps) {
  struct Case {
    int64_t M, K, N, ldx_extra, ldy_extra;
    gpu::Epilogue ep;
  };
  const Case cases[] = {{33, 64, 96, 0, 0, gpu::Epilogue::Bias},    {300, 512, 1536, 0, 0, gpu::Epilogue::BiasGelu},
                        {7, 128, 128, 64, 128, gpu::Epilogue::Bias}, {129, 256, 40, 0, 8, gpu::Epilogue::None},
                        {1, 4096, 5120, 0, 0, gpu::Epilogue::BiasGelu}};
  uint32_t seed = 500;
  for (const Case& c : cases) {
    const Tensor x = bf16_round(random_tensor({c.M, c.K}, ++seed));
    const Tensor w = bf16_round(random_tensor({c.N, c.K}, ++seed, 1.0f / std::sqrt(static_cast<float>(c.K))));
    const Tensor b = bf16_round(random_tensor({c.N}, ++seed, 0.5f));
    Tensor ref = ops::linear(x, w, c.ep == gpu::Epilogue::None ? Tensor() : b);
    if (c.ep == gpu::Epilogue::BiasGelu) ref = ops::gelu_tanh(ref);
    ref = bf16_round(ref);

    const gpu::LinearWeight lw = gpu::LinearWeight::bf16(w, b);
    const Tensor got = linear_strided(x, lw, c.ep, c.K + c.ldx_extra, c.N + c.ldy_extra);
    // f32 accumulation in another order, then one rounding; GELU's tanh in another library.
    EXPECT_LE(worst_ratio(got, ref, 2.0, 2e-3 * (1 + max_abs(ref))), 1.0)
        << fmt::format("{} x {} x {} epilogue {}", c.M, c.K, c.N, static_cast<int>(c.ep));
  }
}

// Row-wise e4m3 quantisation: the same bytes and scales as the CPU reference (ops/quantize.h),
// vector and scalar paths, strided rows, a zero row, values that saturate nothing by construction.
TEST(GpuEngineKernels, QuantizeRowsFp8MatchesCpuBitForBit) {
  struct Case {
    int64_t rows, cols, ld_extra;
  };
  const Case cases[] = {{5, 64, 0}, {3, 5120, 8}, {2, 13824, 0}, {7, 70, 3}, {1, 8, 0}, {4, 1000, 24}};
  uint32_t seed = 900;
  for (const Case& c : cases) {
    Tensor x = random_tensor({c.rows, c.cols}, ++seed, 2.0f);
    for (int64_t k = 0; k < c.cols; k += 7) x.data<float>()[k] *= 300.0f;  // a wide range within a row
    if (c.rows > 2) std::memset(x.data<float>() + c.cols, 0, static_cast<size_t>(c.cols) * 4);  // row 1: zeros
    x = bf16_round(x);  // the kernel reads bf16: the reference quantises the same values
    const ops::QuantizedRows ref = ops::quantize_rows_e4m3(x);
    const int64_t ld = c.cols + c.ld_extra;
    Tensor xw = Tensor::zeros({c.rows, ld}, DType::F32);
    for (int64_t r = 0; r < c.rows; ++r)
      std::memcpy(xw.data<float>() + r * ld, x.data<float>() + r * c.cols, static_cast<size_t>(c.cols) * 4);
    const Tensor xd = xw.to(DType::BF16).to(Device::CUDA);
    Tensor q = Tensor::empty({c.rows, c.cols}, DType::F8E4M3, Device::CUDA), sc = Tensor::empty({c.rows}, DType::F32, Device::CUDA);
    cuda_poison(q);
    cuda_poison(sc);
    quantize_rows(xd, c.rows, c.cols, ld, q, sc);
    const Tensor qh = q.to(Device::CPU), sh = sc.to(Device::CPU);
    EXPECT_EQ(0, std::memcmp(qh.raw(), ref.q.raw(), static_cast<size_t>(c.rows * c.cols)))
        << fmt::format("{} x {} (ld {})", c.rows, c.cols, ld);
    EXPECT_EQ(0, std::memcmp(sh.raw(), ref.scale.raw(), static_cast<size_t>(c.rows) * 4));
    {  // With a second input: the rows of bf16(x + x2), the f32 sum rounded once (add_bf16's values).
      const Tensor x2 = bf16_round(random_tensor({c.rows, c.cols}, ++seed, 3.0f));
      const ops::QuantizedRows ref2 = ops::quantize_rows_e4m3(bf16_round(ops::add(x, x2)));
      Tensor x2w = Tensor::zeros({c.rows, ld}, DType::F32);
      for (int64_t r = 0; r < c.rows; ++r)
        std::memcpy(x2w.data<float>() + r * ld, x2.data<float>() + r * c.cols, static_cast<size_t>(c.cols) * 4);
      const Tensor x2d = x2w.to(DType::BF16).to(Device::CUDA);
      cuda_poison(q);
      cuda_poison(sc);
      gpu::QuantizeRowsArgs a;
      a.x = xd.raw();
      a.x2 = x2d.raw();
      a.rows = c.rows;
      a.cols = c.cols;
      a.ld = ld;
      a.q = q.raw();
      a.scale = sc.data<float>();
      gpu::quantize_rows_fp8(a);
      const Tensor q2h = q.to(Device::CPU), s2h = sc.to(Device::CPU);
      EXPECT_EQ(0, std::memcmp(q2h.raw(), ref2.q.raw(), static_cast<size_t>(c.rows * c.cols)))
          << fmt::format("x + x2: {} x {} (ld {})", c.rows, c.cols, ld);
      EXPECT_EQ(0, std::memcmp(s2h.raw(), ref2.scale.raw(), static_cast<size_t>(c.rows) * 4));
    }
    // The reference itself round-trips within e4m3's half unit (2^-4 relative) of each row's amax.
    const Tensor back = ops::dequantize_rows(ref);
    for (int64_t r = 0; r < c.rows; ++r) {
      float amax = 0;
      for (int64_t k = 0; k < c.cols; ++k) amax = std::max(amax, std::fabs(x.data<float>()[r * c.cols + k]));
      for (int64_t k = 0; k < c.cols; ++k) {
        const float v = x.data<float>()[r * c.cols + k], b = back.data<float>()[r * c.cols + k];
        ASSERT_LE(std::fabs(b - v), std::ldexp(std::fabs(v), -4) + amax * std::ldexp(1.0f, -9 - 8) + 1e-30f)
            << r << "," << k;
      }
    }
  }
}

// fp8 products: y = epilogue(dequant(q_x) . dequant(q_w)^T + b), the reference composed from the
// CPU quantisation and CPU linear in f32; the GPU accumulates in f32 in another order and scales
// after, so the bound is the bf16 test's (the output's rounding dominates).
TEST(GpuEngineKernels, Fp8LinearMatchesCpuComposition) {
  if (!gpu::fp8_supported()) GTEST_SKIP() << "this GPU has no fp8 tensor cores (compute capability < 8.9)";
  struct Case {
    int64_t M, K, N, ldx_extra, ldy_extra;
    gpu::Epilogue ep;
  };
  const Case cases[] = {{33, 64, 96, 0, 0, gpu::Epilogue::Bias},    {300, 512, 1536, 0, 0, gpu::Epilogue::BiasGelu},
                        {7, 128, 128, 64, 128, gpu::Epilogue::Bias}, {129, 256, 48, 0, 8, gpu::Epilogue::None},
                        {1, 4096, 5120, 0, 0, gpu::Epilogue::BiasGelu}, {64, 13824, 256, 0, 0, gpu::Epilogue::Bias}};
  uint32_t seed = 950;
  for (const Case& c : cases) {
    const Tensor x = bf16_round(random_tensor({c.M, c.K}, ++seed));
    const Tensor w = bf16_round(random_tensor({c.N, c.K}, ++seed, 1.0f / std::sqrt(static_cast<float>(c.K))));
    const Tensor b = bf16_round(random_tensor({c.N}, ++seed, 0.5f));
    const Tensor xq = ops::dequantize_rows(ops::quantize_rows_e4m3(x));
    const Tensor wq = ops::dequantize_rows(ops::quantize_rows_e4m3(w));
    Tensor ref = ops::linear(xq, wq, c.ep == gpu::Epilogue::None ? Tensor() : b);
    if (c.ep == gpu::Epilogue::BiasGelu) ref = ops::gelu_tanh(ref);
    ref = bf16_round(ref);

    const gpu::LinearWeight lw = gpu::LinearWeight::fp8(gpu::LinearWeight::bf16(w, b));
    ASSERT_EQ(lw.format, gpu::LinearWeight::Format::FP8);
    ASSERT_EQ(lw.w.dtype(), DType::F8E4M3);
    const Tensor got = linear_strided(x, lw, c.ep, c.K + c.ldx_extra, c.N + c.ldy_extra);
    EXPECT_LE(worst_ratio(got, ref, 2.0, 2e-3 * (1 + max_abs(ref))), 1.0)
        << fmt::format("fp8 {} x {} x {} epilogue {}", c.M, c.K, c.N, static_cast<int>(c.ep));
    // And the quantisation is really there: the unquantised product differs by far more.
    Tensor exact = ops::linear(x, w, c.ep == gpu::Epilogue::None ? Tensor() : b);
    if (c.ep == gpu::Epilogue::BiasGelu) exact = ops::gelu_tanh(exact);
    EXPECT_GT(worst_ratio(got, bf16_round(exact), 2.0, 2e-3 * (1 + max_abs(ref))), 1.0)
        << "the fp8 product equals the bf16 one: not quantised";
  }
  // A layer whose input width fp8 products cannot take stays bf16.
  const gpu::LinearWeight odd = gpu::LinearWeight::fp8(gpu::LinearWeight::bf16(random_tensor({8, 40}, 990), Tensor()));
  EXPECT_EQ(odd.format, gpu::LinearWeight::Format::BF16);
}

// gpu::linear on an input quantised already (the Fp8Input overload, what the DiT's qkv, cross q
// and FFN-up products take from residual_norm's fp8 copy): the same bits as the linear that
// quantises the bf16 rows itself, for row ranges that start inside the buffer (FFN chunks), and
// for rows quantised by residual_norm itself. A bf16 weight refuses such an input.
TEST(GpuEngineKernels, Fp8LinearOnQuantisedInputIsTheSameProduct) {
  if (!gpu::fp8_supported()) GTEST_SKIP() << "this GPU has no fp8 tensor cores (compute capability < 8.9)";
  struct Case {
    int64_t M, K, N, r0, rows;  // the product reads rows r0 .. r0+rows of the M quantised ones
    gpu::Epilogue ep;
  };
  const Case cases[] = {{33, 64, 96, 0, 33, gpu::Epilogue::Bias},       {300, 512, 1536, 100, 200, gpu::Epilogue::BiasGelu},
                        {129, 256, 48, 0, 129, gpu::Epilogue::None},    {64, 5120, 256, 16, 32, gpu::Epilogue::Bias},
                        {1, 4096, 5120, 0, 1, gpu::Epilogue::BiasGelu}, {40, 13824, 128, 4, 36, gpu::Epilogue::Bias}};
  uint32_t seed = 1200;
  for (const Case& c : cases) {
    const std::string what = fmt::format("{} of {} rows x {} x {} epilogue {}", c.rows, c.M, c.K, c.N,
                                         static_cast<int>(c.ep));
    const Tensor x = random_tensor({c.M, c.K}, ++seed);
    const Tensor w = random_tensor({c.N, c.K}, ++seed, 1.0f / std::sqrt(static_cast<float>(c.K)));
    const gpu::LinearWeight lw = gpu::LinearWeight::fp8(gpu::LinearWeight::bf16(w, random_tensor({c.N}, ++seed, 0.5f)));
    ASSERT_EQ(lw.format, gpu::LinearWeight::Format::FP8);
    const Tensor xd = x.to(DType::BF16).to(Device::CUDA);
    Tensor q = Tensor::empty({c.M, c.K}, DType::F8E4M3, Device::CUDA);
    Tensor sc = Tensor::empty({c.M}, DType::F32, Device::CUDA);
    quantize_rows(xd, c.M, c.K, c.K, q, sc);

    Tensor self = Tensor::empty({c.rows, c.N}, DType::BF16, Device::CUDA);
    Tensor pre = Tensor::empty({c.rows, c.N}, DType::BF16, Device::CUDA);
    cuda_poison(self);
    cuda_poison(pre);
    gpu::linear(static_cast<const char*>(xd.raw()) + c.r0 * c.K * 2, c.rows, c.K, lw, c.ep, self.raw(), c.N);
    gpu::Fp8Input in;
    in.q = static_cast<const char*>(q.raw()) + c.r0 * c.K;
    in.scale = sc.data<float>() + c.r0;
    gpu::linear(in, c.rows, lw, c.ep, pre.raw(), c.N);
    const Tensor sh = self.to(Device::CPU);
    EXPECT_EQ(0, std::memcmp(sh.raw(), pre.to(Device::CPU).raw(), static_cast<size_t>(c.rows * c.N) * 2)) << what;
    // Not blind: the product reads the scales it is given (doubled ones give other bits).
    const Tensor doubled = ops::affine(sc.to(Device::CPU), 2.0f, 0.0f).to(Device::CUDA);
    in.scale = doubled.data<float>() + c.r0;
    gpu::linear(in, c.rows, lw, c.ep, pre.raw(), c.N);
    EXPECT_NE(0, std::memcmp(sh.raw(), pre.to(Device::CPU).raw(), static_cast<size_t>(c.rows * c.N) * 2)) << what;
  }

  // The DiT's chain: residual_norm's fp8 copy into the product equals the product of its bf16 output.
  const int64_t R = 37, C = 512, N = 768;
  Tensor xs = random_tensor({R, C}, 1290, 3.0f, 0.7f).to(Device::CUDA);
  const Tensor p0 = random_tensor({C}, 1291, 0.3f).to(Device::CUDA);
  const Tensor p1 = random_tensor({C}, 1292, 0.3f).to(Device::CUDA);
  Tensor a = Tensor::empty({R, C}, DType::BF16, Device::CUDA), a8 = Tensor::empty({R, C}, DType::F8E4M3, Device::CUDA);
  Tensor a8s = Tensor::empty({R}, DType::F32, Device::CUDA);
  gpu::ResidualNormArgs na;
  na.x = xs.data<float>();
  na.rows = R;
  na.cols = C;
  na.p0 = p0.data<float>();
  na.p1 = p1.data<float>();
  na.out = a.raw();
  na.q8 = a8.raw();
  na.q8_scale = a8s.data<float>();
  gpu::residual_norm(na);
  const gpu::LinearWeight lw =
      gpu::LinearWeight::fp8(gpu::LinearWeight::bf16(random_tensor({N, C}, 1293, 0.05f), random_tensor({N}, 1294)));
  Tensor y1 = Tensor::empty({R, N}, DType::BF16, Device::CUDA), y2 = Tensor::empty({R, N}, DType::BF16, Device::CUDA);
  gpu::linear(a.raw(), R, C, lw, gpu::Epilogue::BiasGelu, y1.raw(), N);
  gpu::Fp8Input in;
  in.q = a8.raw();
  in.scale = a8s.data<float>();
  gpu::linear(in, R, lw, gpu::Epilogue::BiasGelu, y2.raw(), N);
  EXPECT_EQ(0, std::memcmp(y1.to(Device::CPU).raw(), y2.to(Device::CPU).raw(), static_cast<size_t>(R * N) * 2));

  // A bf16 weight has no fp8 product: the quantised input is refused, naming the weight's format.
  const gpu::LinearWeight bf = gpu::LinearWeight::bf16(random_tensor({N, C}, 1295, 0.05f), Tensor());
  try {
    gpu::linear(in, R, bf, gpu::Epilogue::None, y2.raw(), N);
    ADD_FAILURE() << "a bf16 weight took an fp8 input";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bf16 weight"), std::string::npos) << e.what();
  }
}

TEST(GpuEngineKernels, StackedLinearEqualsItsParts) {
  const Tensor x = bf16_round(random_tensor({17, 64}, 700));
  const gpu::LinearWeight a = gpu::LinearWeight::bf16(random_tensor({32, 64}, 701, 0.1f), random_tensor({32}, 702));
  const gpu::LinearWeight b = gpu::LinearWeight::bf16(random_tensor({48, 64}, 703, 0.1f), random_tensor({48}, 704));
  const gpu::LinearWeight ab = gpu::LinearWeight::stack({&a, &b});
  const Tensor xd = x.to(DType::BF16).to(Device::CUDA);
  const Tensor yab = host(gpu::linear(xd, ab)), ya = host(gpu::linear(xd, a)), yb = host(gpu::linear(xd, b));
  for (int64_t r = 0; r < 17; ++r) {
    EXPECT_EQ(0, std::memcmp(yab.data<float>() + r * 80, ya.data<float>() + r * 32, 32 * 4)) << r;
    EXPECT_EQ(0, std::memcmp(yab.data<float>() + r * 80 + 32, yb.data<float>() + r * 48, 48 * 4)) << r;
  }
}

// Double-precision cos/sin on the device against the host's: equal after rounding to f32, but for
// a last-bit difference where the two libraries' doubles straddle a rounding boundary.
TEST(GpuEngineKernels, SinusoidalEmbeddingMatchesHost) {
  for (const double t : {0.0, 1.0, 12.0, 937.0, 999.0}) {
    const Tensor ref = sinusoidal_embedding(256, t).view({1, 256});
    const Tensor got = host(gpu::sinusoidal_embedding_device(256, t));
    EXPECT_TENSOR_CLOSE_ABS(got, ref, 2e-7) << t;
  }
}

TEST(GpuEngineKernels, AddBf16RoundsTheF32Sum) {
  for (const int64_t n : {int64_t{1000}, int64_t{1003}}) {  // 16-byte vectors, and the scalar kernel
    const Tensor a = bf16_round(random_tensor({n}, 800)), b = bf16_round(random_tensor({n}, 801));
    const Tensor ad = a.to(DType::BF16).to(Device::CUDA), bd = b.to(DType::BF16).to(Device::CUDA);
    Tensor out = Tensor::empty({n}, DType::BF16, Device::CUDA);
    gpu::add_bf16(ad.raw(), bd.raw(), out.raw(), n);
    EXPECT_LE(worst_ratio(host(out), bf16_round(ops::add(a, b)), 0.0, 1e-30), 1.0) << n;
  }
}

// Patch tokens and the velocity layout, against the index formulas of spec 7.2 and 7.8.
TEST(GpuEngineKernels, PatchifyAndUnpatchifyFollowTheSpec) {
  const int64_t cx = 3, cy = 2, T = 2, h = 4, w = 6;
  const Tensor x = random_tensor({cx, T, h, w}, 900), y = random_tensor({cy, T, h, w}, 901);
  const Tensor xd = x.to(Device::CUDA), yd = y.to(Device::CUDA);
  const int64_t hp = h / 2, wp = w / 2, L = T * hp * wp, F = (cx + cy) * 4;
  Tensor tok = Tensor::empty({L, F}, DType::BF16, Device::CUDA);
  gpu::patchify(xd.data<float>(), cx, yd.data<float>(), cy, T, h, w, tok.raw());
  const Tensor th = host(tok);
  for (int64_t f = 0; f < T; ++f)
    for (int64_t a = 0; a < hp; ++a)
      for (int64_t b = 0; b < wp; ++b)
        for (int64_t c = 0; c < cx + cy; ++c)
          for (int64_t p = 0; p < 2; ++p)
            for (int64_t q = 0; q < 2; ++q) {
              const Tensor& src = c < cx ? x : y;
              const int64_t cc = c < cx ? c : c - cx;
              const float want = round_bf16(src.data<float>()[((cc * T + f) * h + 2 * a + p) * w + 2 * b + q]);
              ASSERT_EQ(th.data<float>()[((f * hp + a) * wp + b) * F + c * 4 + 2 * p + q], want);
            }
  const int64_t C = 4;
  const Tensor out = random_tensor({L, 4 * C}, 902);
  const Tensor od = out.to(Device::CUDA);
  Tensor v = Tensor::empty({C, T, h, w}, DType::F32, Device::CUDA);
  gpu::unpatchify(od.data<float>(), C, T, hp, wp, v.data<float>());
  const Tensor vh = host(v);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t f = 0; f < T; ++f)
      for (int64_t yy = 0; yy < h; ++yy)
        for (int64_t xx = 0; xx < w; ++xx) {
          const int64_t s = (f * hp + yy / 2) * wp + xx / 2, fe = (2 * (yy % 2) + xx % 2) * C + c;
          ASSERT_EQ(vh.data<float>()[((c * T + f) * h + yy) * w + xx], out.data<float>()[s * 4 * C + fe]);
        }
}

}  // namespace
}  // namespace ib
