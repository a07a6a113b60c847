// GPU checks of the Wan-VAE's ops (label gpu, run on the lent GPU machine): one table of cases per
// op, run on CUDA against the CPU reference on random inputs. conv3d covers the VAE's kernels,
// strides, causal and one-sided paddings and channel counts (odd ones too), on every CUDA backend
// (cuDNN where built, im2col + GEMM), in f32 (bound 1e-5 relative) and with bf16 weights (against
// the CPU conv of the same bf16-rounded operands, bound 2e-2). The fused RMS_norm + SiLU is checked
// against the composition of the two CPU ops, and the fused norm + SiLU + causal conv against the
// composition of cat_frames, the norm and conv3d.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "common/fixture.h"
#include "core/cache_file.h"
#include "ops/activation.h"
#include "ops/conv.h"
#include "ops/convert.h"
#include "ops/vae_attention.h"
#include "ops/vae_latent.h"
#include "ops/vae_layout.h"
#include "ops/vae_norm.h"

namespace ib {
namespace {

using test::random_tensor;

Tensor gpu(const Tensor& t) { return t.defined() ? t.to(Device::CUDA) : t; }
Tensor cpu(const Tensor& t) { return t.to(Device::CPU); }
Tensor bf16_rounded(const Tensor& t) { return t.to(DType::BF16).to(DType::F32); }

constexpr double kF32 = 1e-5, kBf16 = 2e-2;

struct ConvCase {
  const char* name;
  int64_t cin, cout, T, H, W, kt, kh, kw;
  ops::Conv3dArgs args;
  bool bias, residual;
};

ops::Conv3dArgs causal(int64_t pad_front) {
  ops::Conv3dArgs a = ops::Conv3dArgs::spatial_pad(1);
  a.pad_front = pad_front;
  return a;
}
ops::Conv3dArgs down2d() {  // ZeroPad2d((0, 1, 0, 1)) + stride 2
  ops::Conv3dArgs a;
  a.stride_h = a.stride_w = 2;
  a.pad_bottom = a.pad_right = 1;
  return a;
}
ops::Conv3dArgs time_down() {
  ops::Conv3dArgs a;
  a.stride_t = 2;
  return a;
}
ops::Conv3dArgs time_up(int64_t pad_front) {
  ops::Conv3dArgs a;
  a.pad_front = pad_front;
  return a;
}

const std::vector<ConvCase>& conv_cases() {
  static const std::vector<ConvCase> cases = {
      {"3x3x3 causal, first chunk (2 zero frames)", 5, 7, 1, 9, 11, 3, 3, 3, causal(2), true, true},
      {"3x3x3 with 2 cached frames", 16, 24, 6, 8, 10, 3, 3, 3, causal(0), true, false},
      {"3x3x3 with 1 cached frame", 32, 32, 3, 7, 13, 3, 3, 3, causal(1), false, true},
      {"encoder conv1 3->96", 3, 96, 5, 16, 24, 3, 3, 3, causal(2), true, false},
      {"decoder head 96->3", 96, 3, 4, 16, 16, 3, 3, 3, causal(0), true, false},
      {"decoder conv1 16->384", 16, 384, 3, 6, 10, 3, 3, 3, causal(0), true, false},
      {"residual conv 384->384", 384, 384, 3, 6, 10, 3, 3, 3, causal(0), true, true},
      {"shortcut 1x1x1 96->192", 96, 192, 4, 8, 10, 1, 1, 1, {}, true, false},
      {"1x1x1 odd 13->29 with residual", 13, 29, 3, 5, 7, 1, 1, 1, {}, true, true},
      {"downsample2d 1x3x3 s2", 24, 24, 3, 10, 14, 1, 3, 3, down2d(), true, false},
      {"downsample2d odd size", 9, 9, 1, 7, 9, 1, 3, 3, down2d(), true, false},
      {"downsample3d time_conv s2", 16, 16, 5, 6, 7, 3, 1, 1, time_down(), true, false},
      {"upsample3d time_conv C->2C", 16, 32, 1, 5, 9, 3, 1, 1, time_up(2), true, false},
      {"upsample3d time_conv cached", 16, 32, 3, 5, 9, 3, 1, 1, time_up(0), true, false},
      {"upsample conv 1x3x3 C->C/2", 32, 16, 2, 12, 20, 1, 3, 3, ops::Conv3dArgs::spatial_pad(1), true, false},
      // Widths of whole 16-byte vectors take the vectorised packing and epilogue on CUDA (one
      // column tile and a part of the next; Cin a few vectors, Cout over one 64-channel tile).
      {"3x3x3 cached, width 40", 24, 72, 6, 5, 40, 3, 3, 3, causal(0), true, true},
      {"1x3x3, width 48", 40, 16, 2, 6, 48, 1, 3, 3, ops::Conv3dArgs::spatial_pad(1), true, true},
      {"3x3x3, 320 channels (narrow tiles), width 40", 320, 16, 3, 3, 40, 3, 3, 3, causal(0), true, false},
  };
  return cases;
}

std::vector<ops::cuda::ConvBackend> conv_backends() {
  std::vector<ops::cuda::ConvBackend> b{ops::cuda::ConvBackend::Gemm};
  if (ops::cuda::conv_backend_available(ops::cuda::ConvBackend::Cudnn)) b.push_back(ops::cuda::ConvBackend::Cudnn);
  return b;
}
const char* backend_name(ops::cuda::ConvBackend b) {
  return b == ops::cuda::ConvBackend::Cudnn ? "cudnn" : "gemm";
}

// Restores the automatic choices when a test ends.
struct BackendGuard {
  ~BackendGuard() {
    ops::cuda::set_conv_backend(ops::cuda::ConvBackend::Auto);
    ops::cuda::set_conv_output_padding(ops::cuda::ConvOutputPadding::Search);
  }
};

// The backends, and for cuDNN both output channel counts (as they are, and padded to 64 or 128
// where that applies), each set before the call.
template <class Body>
void for_each_conv_path(Body body) {
  for (ops::cuda::ConvBackend backend : conv_backends()) {
    ops::cuda::set_conv_backend(backend);
    for (const ops::cuda::ConvOutputPadding pad : {ops::cuda::ConvOutputPadding::Never, ops::cuda::ConvOutputPadding::Always}) {
      if (backend == ops::cuda::ConvBackend::Gemm && pad == ops::cuda::ConvOutputPadding::Always) continue;
      ops::cuda::set_conv_output_padding(pad);
      body(std::string(backend_name(backend)) + (pad == ops::cuda::ConvOutputPadding::Always ? ", padded" : ""));
    }
  }
}

struct ConvInputs {
  Tensor x, w, b, r;
};
ConvInputs conv_inputs(const ConvCase& c, uint32_t seed) {
  ConvInputs in;
  const auto K = static_cast<float>(c.cin * c.kt * c.kh * c.kw);
  in.x = random_tensor({c.cin, c.T, c.H, c.W}, seed);
  in.w = random_tensor({c.cout, c.cin, c.kt, c.kh, c.kw}, seed + 1, 1.0f / std::sqrt(K));
  if (c.bias) in.b = random_tensor({c.cout}, seed + 2);
  if (c.residual) {
    const Tensor y = ops::conv3d(in.x, in.w, Tensor(), c.args);  // for the output shape
    in.r = random_tensor(y.shape(), seed + 3);
  }
  return in;
}

TEST(VaeOpsGpu, Conv3dF32) {
  BackendGuard guard;
  for (ops::cuda::ConvBackend backend : conv_backends()) {
    ops::cuda::set_conv_backend(backend);
    uint32_t seed = 100;
    for (const ConvCase& c : conv_cases()) {
      const ConvInputs in = conv_inputs(c, seed += 10);
      const Tensor ref = ops::conv3d(in.x, in.w, in.b, c.args, in.r);
      const Tensor got = cpu(ops::conv3d(gpu(in.x), gpu(in.w), gpu(in.b), c.args, gpu(in.r)));
      EXPECT_TENSOR_CLOSE(got, ref, kF32) << c.name << " [" << backend_name(backend) << "]";
    }
  }
}

// bf16 weights: the input is rounded to bf16 on the device; the reference is the CPU f32 conv of
// the same rounded operands (the remaining difference is the accumulation order and, on cuDNN, the
// bf16 output).
TEST(VaeOpsGpu, Conv3dBf16) {
  BackendGuard guard;
  for_each_conv_path([&](const std::string& path) {
    uint32_t seed = 500;
    for (const ConvCase& c : conv_cases()) {
      const ConvInputs in = conv_inputs(c, seed += 10);
      const Tensor wb = in.w.to(DType::BF16);
      const Tensor ref = ops::conv3d(bf16_rounded(in.x), wb.to(DType::F32), in.b, c.args, in.r);
      const Tensor got = cpu(ops::conv3d(gpu(in.x), gpu(wb), gpu(in.b), c.args, gpu(in.r)));
      EXPECT_TENSOR_CLOSE(got, ref, kBf16) << c.name << " [" << path << "]";
    }
  });
}

// RMS_norm → SiLU → CausalConv3d with cached (un-normalised) frames, fused on CUDA, against the CPU
// composition (cat_frames, rms_norm_channels, conv3d). With bf16 weights the reference rounds the
// normalised input and the weight to bf16, as the device does.
TEST(VaeOpsGpu, NormSiluConv3dMatchesComposition) {
  struct Case { const char* name; int64_t cin, cout, t_prefix, T, H, W, pad_front; bool residual; };
  const Case cases[] = {
      {"first chunk, no cached frames", 5, 7, 0, 1, 9, 11, 2, true},
      {"2 cached frames, 4 new", 96, 96, 2, 4, 8, 10, 0, true},
      {"1 cached frame, 1 new", 32, 48, 1, 1, 7, 13, 1, false},
      {"384 channels", 384, 384, 2, 1, 6, 10, 0, true},
      {"head 96->3", 96, 3, 2, 4, 8, 8, 0, false},
      {"1100 channels (composed)", 1100, 8, 0, 2, 4, 5, 2, false},
      {"width 40 (16-byte rows), 2 cached frames", 96, 96, 2, 3, 5, 40, 0, true},
      {"width 16, first chunk", 24, 40, 0, 1, 6, 16, 2, false},
      {"384 channels (narrow tiles), width 72", 384, 64, 1, 1, 3, 72, 1, false},
      {"640 channels, width 8 (scalar: over the vectorised packing's channels)", 640, 16, 1, 1, 3, 8, 1, false},
  };
  BackendGuard guard;
  for (ops::cuda::ConvBackend backend : conv_backends()) {
    ops::cuda::set_conv_backend(backend);
    uint32_t seed = 2000;
    for (const Case& c : cases) {
      const Tensor x = random_tensor({c.cin, c.T, c.H, c.W}, ++seed, 1.5f, 0.2f);
      const Tensor prefix = c.t_prefix > 0 ? random_tensor({c.cin, c.t_prefix, c.H, c.W}, ++seed) : Tensor();
      const Tensor g = random_tensor({c.cin, 1, 1, 1}, ++seed);
      const Tensor w = random_tensor({c.cout, c.cin, 3, 3, 3}, ++seed, 1.0f / std::sqrt(27.0f * static_cast<float>(c.cin)));
      const Tensor b = random_tensor({c.cout}, ++seed);
      ops::Conv3dArgs a = causal(c.pad_front);
      const Tensor in = prefix.defined() ? ops::cat_frames({prefix, x}) : x;
      const Tensor normed = ops::rms_norm_channels(in, g, true);
      const Tensor r = c.residual ? random_tensor(ops::conv3d(normed, w, Tensor(), a).shape(), ++seed) : Tensor();
      const Tensor ref = ops::conv3d(normed, w, b, a, r);
      EXPECT_TENSOR_CLOSE(ops::norm_silu_conv3d(prefix, x, g, w, b, a, r), ref, 0.0) << c.name << ": CPU composes";
      const Tensor got = cpu(ops::norm_silu_conv3d(gpu(prefix), gpu(x), gpu(g), gpu(w), gpu(b), a, gpu(r)));
      EXPECT_TENSOR_CLOSE(got, ref, kF32) << c.name << " [" << backend_name(backend) << "]";
      const Tensor wb = w.to(DType::BF16);
      const Tensor ref16 = ops::conv3d(bf16_rounded(normed), wb.to(DType::F32), b, a, r);
      const Tensor got16 = cpu(ops::norm_silu_conv3d(gpu(prefix), gpu(x), gpu(g), gpu(wb), gpu(b), a, gpu(r)));
      EXPECT_TENSOR_CLOSE(got16, ref16, kBf16) << c.name << " bf16 [" << backend_name(backend) << "]";
    }
  }
}

// bf16 activations (the VAE decoder's, with bf16 weights): bf16 input and residual, bf16 or f32
// output, on every backend (cuDNN reads and writes them in its packing and epilogue; the GEMM path
// widens and rounds around its f32 GEMM). The reference is the CPU conv of the bf16-rounded
// operands; a bf16 output adds one more rounding, well inside the bound.
TEST(VaeOpsGpu, Conv3dBf16Activations) {
  BackendGuard guard;
  for_each_conv_path([&](const std::string& path) {
    uint32_t seed = 3000;
    for (const ConvCase& c : conv_cases()) {
      const ConvInputs in = conv_inputs(c, seed += 10);
      const Tensor wb = in.w.to(DType::BF16);
      const Tensor xb = in.x.to(DType::BF16), rb = in.r.defined() ? in.r.to(DType::BF16) : Tensor();
      const Tensor ref =
          ops::conv3d(xb.to(DType::F32), wb.to(DType::F32), in.b, c.args, rb.defined() ? rb.to(DType::F32) : rb);
      const Tensor got = ops::conv3d(gpu(xb), gpu(wb), gpu(in.b), c.args, gpu(rb), DType::BF16);
      EXPECT_EQ(got.dtype(), DType::BF16);
      EXPECT_TENSOR_CLOSE(cpu(got).to(DType::F32), ref, kBf16) << c.name << " bf16 -> bf16 [" << path
                                                               << "]";
      // f32 input, bf16 residual, f32 output (the decoder's switch from the f32 middle).
      const Tensor ref2 = ops::conv3d(bf16_rounded(in.x), wb.to(DType::F32), in.b, c.args,
                                      rb.defined() ? rb.to(DType::F32) : rb);
      const Tensor got2 = ops::conv3d(gpu(in.x), gpu(wb), gpu(in.b), c.args, gpu(rb));
      EXPECT_TENSOR_CLOSE(cpu(got2), ref2, kBf16) << c.name << " f32 -> f32 [" << path << "]";
    }
  });
}

// The fused norm + SiLU + causal conv with bf16 cached frames and input and a bf16 output.
TEST(VaeOpsGpu, NormSiluConv3dBf16Activations) {
  struct Case { int64_t cin, cout, t_prefix, T, H, W, pad_front; bool residual; };
  const Case cases[] = {{96, 96, 2, 4, 8, 10, 0, true}, {32, 48, 1, 1, 7, 13, 1, false}, {96, 3, 2, 4, 8, 8, 0, false},
                        {1100, 8, 0, 2, 4, 5, 2, false}, {96, 96, 2, 2, 5, 40, 0, true},
                        {192, 64, 1, 1, 4, 72, 1, true}};
  BackendGuard guard;
  for_each_conv_path([&](const std::string& path) {
    uint32_t seed = 4000;
    for (const Case& c : cases) {
      const Tensor x = random_tensor({c.cin, c.T, c.H, c.W}, ++seed, 1.5f, 0.2f).to(DType::BF16);
      const Tensor prefix =
          c.t_prefix > 0 ? random_tensor({c.cin, c.t_prefix, c.H, c.W}, ++seed).to(DType::BF16) : Tensor();
      const Tensor g = random_tensor({c.cin, 1, 1, 1}, ++seed);
      const Tensor wb = random_tensor({c.cout, c.cin, 3, 3, 3}, ++seed, 1.0f / std::sqrt(27.0f * static_cast<float>(c.cin)))
                            .to(DType::BF16);
      const Tensor b = random_tensor({c.cout}, ++seed);
      const ops::Conv3dArgs a = causal(c.pad_front);
      const Tensor x32 = x.to(DType::F32);
      const Tensor in = prefix.defined() ? ops::cat_frames({prefix.to(DType::F32), x32}) : x32;
      const Tensor normed = ops::rms_norm_channels(in, g, true);
      const Tensor r =
          c.residual ? random_tensor(ops::conv3d(normed, wb.to(DType::F32), Tensor(), a).shape(), ++seed).to(DType::BF16)
                     : Tensor();
      const Tensor ref = ops::conv3d(bf16_rounded(normed), wb.to(DType::F32), b, a, r.defined() ? r.to(DType::F32) : r);
      const Tensor got = ops::norm_silu_conv3d(gpu(prefix), gpu(x), gpu(g), gpu(wb), gpu(b), a, gpu(r), DType::BF16);
      EXPECT_EQ(got.dtype(), DType::BF16);
      EXPECT_TENSOR_CLOSE(cpu(got).to(DType::F32), ref, kBf16) << c.cin << "->" << c.cout << " [" << path
                                                               << "]";
    }
  });
}

// Cached frames in two parts (the encoder's frame-by-frame caches: the newest frame kept as it was,
// beside the one before; each part f32 or bf16) give exactly the result of one concatenated prefix.
TEST(VaeOpsGpu, NormSiluConv3dPrefixInTwoParts) {
  BackendGuard guard;
  for (ops::cuda::ConvBackend backend : conv_backends()) {
    ops::cuda::set_conv_backend(backend);
    // Width 16 packs with 16-byte rows on CUDA, except where the parts' dtypes differ: then the
    // scalar packing must give the same bits.
    for (const int64_t W : {int64_t{10}, int64_t{16}}) {
      const Tensor p0 = gpu(random_tensor({96, 1, 8, W}, 5001).to(DType::BF16));
      const Tensor p1 = gpu(random_tensor({96, 1, 8, W}, 5002).to(DType::BF16));
      const Tensor x = gpu(random_tensor({96, 1, 8, W}, 5003, 1.5f, 0.2f).to(DType::BF16));
      const Tensor g = gpu(random_tensor({96, 1, 1, 1}, 5004));
      const Tensor wb = gpu(random_tensor({64, 96, 3, 3, 3}, 5005, 0.02f).to(DType::BF16));
      const Tensor b = gpu(random_tensor({64}, 5006));
      const ops::Conv3dArgs a = causal(0);
      const Tensor ref = cpu(ops::norm_silu_conv3d(ops::cat_frames({p0, p1}), x, g, wb, b, a, Tensor(), DType::BF16));
      for (const Tensor& first : {p0, ops::to_dtype(p0, DType::F32)}) {
        const Tensor got =
            cpu(ops::norm_silu_conv3d(std::vector<Tensor>{first, p1}, x, g, wb, b, a, Tensor(), DType::BF16));
        EXPECT_TENSOR_CLOSE(got.to(DType::F32), ref.to(DType::F32), 0.0)
            << dtype_name(first.dtype()) << " first part, width " << W << " [" << backend_name(backend) << "]";
      }
    }
  }
}

// Nearest ×2 fused into the conv's packing, against conv3d of upsample_nearest2x: f32 (exact to
// the f32 bound) and bf16 (bf16 input and output too; its rms error printed and bounded).
TEST(VaeOpsGpu, Upsample2xConv3dMatchesComposition) {
  struct Case { int64_t cin, cout, T, H, W; };
  const Case cases[] = {{32, 16, 2, 6, 10}, {7, 5, 1, 5, 9}, {192, 96, 4, 9, 13}, {192, 96, 2, 5, 24}, {16, 72, 1, 3, 40}};
  BackendGuard guard;
  for_each_conv_path([&](const std::string& path) {
    uint32_t seed = 5000;
    for (const Case& c : cases) {
      const Tensor x = random_tensor({c.cin, c.T, c.H, c.W}, ++seed);
      const Tensor w = random_tensor({c.cout, c.cin, 1, 3, 3}, ++seed, 1.0f / std::sqrt(9.0f * static_cast<float>(c.cin)));
      const Tensor b = random_tensor({c.cout}, ++seed);
      const ops::Conv3dArgs a = ops::Conv3dArgs::spatial_pad(1);
      const Tensor up = ops::upsample_nearest2x(x);
      const Tensor ref = ops::conv3d(up, w, b, a);
      EXPECT_TENSOR_CLOSE(cpu(ops::upsample2x_conv3d(gpu(x), gpu(w), gpu(b), a)), ref, kF32)
          << c.cin << "->" << c.cout << " [" << path << "]";
      const Tensor wb = w.to(DType::BF16), xb = x.to(DType::BF16);
      const Tensor ref16 = ops::conv3d(ops::upsample_nearest2x(xb.to(DType::F32)), wb.to(DType::F32), b, a);
      const Tensor got16 = ops::upsample2x_conv3d(gpu(xb), gpu(wb), gpu(b), a, DType::BF16);
      EXPECT_EQ(got16.dtype(), DType::BF16);
      EXPECT_TENSOR_CLOSE(cpu(got16).to(DType::F32), ref16, kBf16)
          << c.cin << "->" << c.cout << " bf16 [" << path << "]";
      const double rms = test::relative_rms(cpu(got16).to(DType::F32), ref16);
      std::printf("[measured] upsample2x_conv3d bf16 %lld->%lld %lldx%lld [%s]: rms error %.2e\n",
                  static_cast<long long>(c.cin), static_cast<long long>(c.cout), static_cast<long long>(c.H),
                  static_cast<long long>(c.W), path.c_str(), rms);
      EXPECT_LT(rms, 1e-2) << c.cin << "->" << c.cout << " bf16 [" << path << "]";
    }
  });
}

// cuDNN's bf16 plans outlive the process (ops/conv.h): a search writes
// <cache_dir>/cudnn-conv-plans.txt; once the plans in memory are forgotten, the same conv takes its
// plan from the file (no search) and gives the same bits; a file from another GPU or cuDNN (another
// header) is searched past and replaced, and so are damaged lines; an empty INBETWEEN_CACHE_DIR
// keeps nothing on disk.
TEST(VaeOpsGpu, ConvPlansAreKeptOnDiskForLaterProcesses) {
  const std::string dir = test::temp_dir();
  const std::string file = dir + "/cudnn-conv-plans.txt";
  ::setenv("INBETWEEN_CACHE_DIR", dir.c_str(), 1);
  ops::cuda::forget_conv_plans();
  const Tensor x = gpu(random_tensor({40, 3, 10, 14}, 7001).to(DType::BF16));
  const Tensor w = gpu(random_tensor({24, 40, 3, 3, 3}, 7002, 0.05f).to(DType::BF16));
  const Tensor b = gpu(random_tensor({24}, 7003));
  const ops::Conv3dArgs a = ops::Conv3dArgs::spatial_pad(1);
  auto conv = [&] { return cpu(ops::conv3d(x, w, b, a, Tensor(), DType::BF16)); };
  const int64_t s0 = ops::cuda::conv_plan_searches();
  const Tensor y1 = conv();
  EXPECT_EQ(ops::cuda::conv_plan_searches(), s0 + 1);
  const std::vector<std::string> lines = read_cache_lines(file);
  ASSERT_EQ(lines.size(), 2u) << "a header and one plan";
  EXPECT_NE(lines[0].find("cudnn"), std::string::npos) << lines[0];

  ops::cuda::forget_conv_plans();  // what a new process starts with
  const Tensor y2 = conv();
  EXPECT_EQ(ops::cuda::conv_plan_searches(), s0 + 1) << "searched again instead of reading the file";
  EXPECT_EQ(0, std::memcmp(y1.raw(), y2.raw(), static_cast<size_t>(y1.nbytes())));

  ASSERT_TRUE(write_cache_lines(file, {"inbetween cudnn conv plans v1 | another GPU", lines[1]}));
  ops::cuda::forget_conv_plans();
  (void)conv();
  EXPECT_EQ(ops::cuda::conv_plan_searches(), s0 + 2) << "a plan of another GPU was used";
  const std::vector<std::string> replaced = read_cache_lines(file);  // the plan's timing may differ
  ASSERT_EQ(replaced.size(), 2u);
  EXPECT_EQ(replaced[0], lines[0]) << "the other GPU's file was not replaced";

  // A damaged file (a line that is no plan, a plan with a math type cuDNN does not have) is searched
  // past, never run.
  std::istringstream fields(replaced[1]);
  std::vector<std::string> tokens{std::istream_iterator<std::string>(fields), std::istream_iterator<std::string>()};
  ASSERT_EQ(tokens.size(), 20u) << replaced[1];
  tokens[16] = "99";  // mode, 12 key fields, ok, as_2d, algo, then math
  std::string bad_math;
  for (const std::string& t : tokens) bad_math += (bad_math.empty() ? "" : " ") + t;
  ASSERT_TRUE(write_cache_lines(file, {replaced[0], "not a plan", bad_math}));
  ops::cuda::forget_conv_plans();
  const Tensor y3 = conv();
  EXPECT_EQ(ops::cuda::conv_plan_searches(), s0 + 3) << "a damaged plan was used";
  EXPECT_TENSOR_CLOSE(y3.to(DType::F32), y1.to(DType::F32), kBf16);

  ::setenv("INBETWEEN_CACHE_DIR", "", 1);
  std::filesystem::remove(file);
  ops::cuda::forget_conv_plans();
  (void)conv();
  EXPECT_EQ(ops::cuda::conv_plan_searches(), s0 + 4);
  EXPECT_FALSE(std::filesystem::exists(file));
  ::unsetenv("INBETWEEN_CACHE_DIR");
  ops::cuda::forget_conv_plans();
}

TEST(VaeOpsGpu, ToDtypeRoundsLikeTheCpu) {
  const Tensor x = random_tensor({5, 3, 7, 9}, 6000, 3.0f);
  const Tensor b = ops::to_dtype(gpu(x), DType::BF16);
  EXPECT_EQ(b.dtype(), DType::BF16);
  EXPECT_TENSOR_CLOSE(cpu(b).to(DType::F32), bf16_rounded(x), 0.0);
  EXPECT_TENSOR_CLOSE(cpu(ops::to_dtype(b, DType::F32)), bf16_rounded(x), 0.0);
  // bf16 activations need bf16 weights.
  EXPECT_THROW(ops::conv3d(b, gpu(random_tensor({2, 5, 1, 1, 1}, 6001))), Error);
}

TEST(VaeOpsGpu, Conv3dRejectsBf16WeightsOnCpu) {
  const Tensor x = random_tensor({2, 1, 3, 3}, 1), w = random_tensor({2, 2, 1, 1, 1}, 2).to(DType::BF16);
  EXPECT_THROW(ops::conv3d(x, w), Error);
}

TEST(VaeOpsGpu, RmsNormChannelsAndFusedSilu) {
  struct Case { Shape x; };
  // C from 3 to 1100 (above the kernel's cached-channel limit), positions not a multiple of 32.
  const Case cases[] = {{{3, 2, 5, 7}}, {{32, 1, 9, 13}}, {{96, 3, 8, 10}}, {{384, 2, 6, 10}}, {{1100, 1, 3, 11}}};
  uint32_t seed = 900;
  for (const Case& c : cases) {
    const Tensor x = random_tensor(c.x, ++seed, 2.0f, 0.3f), g = random_tensor({c.x[0], 1, 1, 1}, ++seed);
    EXPECT_TENSOR_CLOSE(cpu(ops::rms_norm_channels(gpu(x), gpu(g))), ops::rms_norm_channels(x, g), kF32)
        << shape_str(c.x);
    // The fused norm + SiLU against the two CPU ops one after the other.
    const Tensor composed = ops::activate(ops::rms_norm_channels(x, g), ops::Activation::Silu);
    EXPECT_TENSOR_CLOSE(cpu(ops::rms_norm_channels(gpu(x), gpu(g), true)), composed, kF32) << shape_str(c.x);
  }
  const Tensor z = Tensor::zeros({4, 2, 3}, DType::F32, Device::CUDA);
  EXPECT_TENSOR_CLOSE(cpu(ops::rms_norm_channels(z, gpu(Tensor::full({4}, 1.0f)), true)), Tensor::zeros({4, 2, 3}), 0.0);
}

TEST(VaeOpsGpu, LayoutOpsAreExact) {
  const Tensor a = random_tensor({5, 2, 3, 7}, 1), b = random_tensor({5, 1, 3, 7}, 2), e = random_tensor({5, 0, 3, 7}, 3);
  const Tensor c = ops::cat_frames({a, e, b});
  EXPECT_TENSOR_CLOSE(cpu(ops::cat_frames({gpu(a), gpu(e), gpu(b)})), c, 0.0);
  for (auto [t0, t1] : {std::pair<int64_t, int64_t>{0, 3}, {1, 3}, {2, 3}, {1, 1}})
    EXPECT_TENSOR_CLOSE(cpu(ops::slice_frames(gpu(c), t0, t1)), ops::slice_frames(c, t0, t1), 0.0) << t0 << ".." << t1;
  for (const Shape& s : {Shape{6, 1, 4, 5}, Shape{10, 3, 3, 7}}) {
    const Tensor x = random_tensor(s, 4);
    EXPECT_TENSOR_CLOSE(cpu(ops::interleave_channel_halves(gpu(x))), ops::interleave_channel_halves(x), 0.0)
        << shape_str(s);
  }
  for (const Shape& s : {Shape{3, 2, 5, 7}, Shape{1, 1, 1}, Shape{4, 1, 33, 65}}) {
    const Tensor x = random_tensor(s, 5);
    EXPECT_TENSOR_CLOSE(cpu(ops::upsample_nearest2x(gpu(x))), ops::upsample_nearest2x(x), 0.0) << shape_str(s);
  }
  for (const Shape& s : {Shape{1, 1}, Shape{37, 61}, Shape{384, 960}, Shape{1000, 3}}) {
    const Tensor x = random_tensor(s, 6);
    EXPECT_TENSOR_CLOSE(cpu(ops::transpose2d(gpu(x))), ops::transpose2d(x), 0.0) << shape_str(s);
  }
}

TEST(VaeOpsGpu, LatentScaleAndClamp) {
  const Tensor x = random_tensor({16, 3, 6, 10}, 7, 3.0f);
  std::vector<float> mean, inv;
  for (int c = 0; c < 16; ++c) {
    mean.push_back(0.1f * static_cast<float>(c) - 0.7f);
    inv.push_back(1.0f / (1.0f + 0.2f * static_cast<float>(c)));
  }
  EXPECT_TENSOR_CLOSE(cpu(ops::latent_normalize(gpu(x), mean, inv)), ops::latent_normalize(x, mean, inv), 1e-6);
  EXPECT_TENSOR_CLOSE(cpu(ops::latent_denormalize(gpu(x), mean, inv)), ops::latent_denormalize(x, mean, inv), 1e-6);
  const Tensor d = gpu(x).clone();
  ops::clamp_(d, -1.0f, 1.0f);
  const Tensor ref = x.clone();
  ops::clamp_(ref, -1.0f, 1.0f);
  EXPECT_TENSOR_CLOSE(cpu(d), ref, 0.0);
}

TEST(VaeOpsGpu, PixelAttention) {
  struct Case { int64_t C, N; };
  // The fixture's width (32) and the release's (384) at a small latent frame; N not a power of two.
  const Case cases[] = {{8, 1}, {32, 60}, {64, 333}, {384, 960}};
  uint32_t seed = 1300;
  for (const Case& c : cases) {
    const Tensor x = random_tensor({c.C, c.N}, ++seed);
    const Tensor w = random_tensor({3 * c.C, c.C}, ++seed, 1.0f / std::sqrt(static_cast<float>(c.C)));
    const Tensor b = random_tensor({3 * c.C}, ++seed, 0.1f);
    const float scale = 1.0f / std::sqrt(static_cast<float>(c.C));
    EXPECT_TENSOR_CLOSE(cpu(ops::pixel_attention(gpu(x), gpu(w), gpu(b), scale)), ops::pixel_attention(x, w, b, scale),
                        kF32)
        << "C " << c.C << " N " << c.N;
    const Tensor wb = w.to(DType::BF16);
    const Tensor ref = ops::pixel_attention(bf16_rounded(x), wb.to(DType::F32), b, scale);
    EXPECT_TENSOR_CLOSE(cpu(ops::pixel_attention(gpu(x), gpu(wb), gpu(b), scale)), ref, kBf16)
        << "bf16, C " << c.C << " N " << c.N;
  }
}

}  // namespace
}  // namespace ib
