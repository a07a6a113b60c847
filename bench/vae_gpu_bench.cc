// Times the Wan-VAE on the GPU at the release's sizes (dim 96, z_dim 16, dim_mult [1,2,4,4], two
// residual blocks, temporal_downsample [false,true,true]) with random weights made in memory (the
// synthetic model's init: uniform with variance 1/fan_in, norms one, biases zero) and moved to the
// GPU: encode of 81 frames at 480x832 and at 720x1280 (the video on the GPU, so held in the peak),
// decode of 21 latent frames to 81 frames at 480x832 and at 720x1280, with f32 and bf16 conv weights. A bf16 case runs once untimed (cuDNN picks its
// algorithms there), then once timed; an f32 case runs once (its convolutions run at 10-30 TFLOP/s,
// so its seconds dwarf the first-call costs). The peak is the allocator's (tensors only, weights
// and input included).
// The "convs" case times conv3d alone at the decoder's per-chunk shapes (TFLOP/s), the VAE's cost.
//   bench_vae_gpu [case ...]   cases: convs-bf16 convs-f32 {encode480,encode720,decode480,decode720,decode64,decode480host,decode720host}-{bf16,f32}
// INBETWEEN_LOG=debug also prints the algorithm cuDNN chose for every new conv shape.
#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "core/cuda_memory.h"
#include "core/log.h"
#include "core/tensor.h"
#include "io/tensor_store.h"
#include "models/vae.h"
#include "models/vae_tiling.h"
#include "ops/conv.h"
#include "ops/vae_norm.h"
#include "synth/synth_model.h"

namespace {

using ib::DType;
using ib::Device;
using ib::Shape;
using ib::Tensor;

double gib(size_t b) { return static_cast<double>(b) / (1024.0 * 1024.0 * 1024.0); }

void sync() { ib::cuda::synchronize("bench_vae_gpu"); }

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Uniform in [-a, a) from a xorshift generator (cheap for the 127M weights), as f32 on the CPU.
Tensor uniform(const Shape& shape, float a, uint64_t seed) {
  uint64_t st = 0x9E3779B97F4A7C15ull * (seed + 1);
  Tensor t = Tensor::empty(shape, DType::F32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) {
    st ^= st << 13;
    st ^= st >> 7;
    st ^= st << 17;
    p[i] = a * (static_cast<float>(st >> 40) * 0x1.0p-23f - 1.0f);
  }
  return t;
}

Tensor normal_like(const Shape& shape, uint64_t seed) {  // mean 0, variance 1: two uniforms summed
  Tensor t = uniform(shape, 1.7320508f, seed);
  float* p = t.data<float>();
  const Tensor u = uniform(shape, 1.7320508f, seed + 7);
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = (p[i] + u.data<float>()[i]) * 0.70710678f;
  return t;
}

std::vector<std::string> g_table;  // the summary, printed last

void row(const std::string& line) {
  std::printf("%s\n", line.c_str());
  std::fflush(stdout);
  g_table.push_back(line);
}

// --- conv3d alone at the decoder's per-chunk shapes -------------------------------------------

void bench_convs(DType dtype) {
  struct Case { const char* name; int64_t cin, cout, T, H, W, kt, kh, kw; };
  // A later decoder chunk at 720p: 4 new frames and 2 cached ones per 3x3x3 conv.
  const Case cases[] = {
      {"latent 384->384 3x3x3 90x160", 384, 384, 3, 90, 160, 3, 3, 3},
      {"up1 384->384 3x3x3 180x320", 384, 384, 4, 180, 320, 3, 3, 3},
      {"up2 192->192 3x3x3 360x640", 192, 192, 6, 360, 640, 3, 3, 3},
      {"up3 96->96 3x3x3 720x1280", 96, 96, 6, 720, 1280, 3, 3, 3},
      {"upsample 192->96 1x3x3 720x1280", 192, 96, 4, 720, 1280, 1, 3, 3},
      {"head 96->3 3x3x3 720x1280", 96, 3, 6, 720, 1280, 3, 3, 3},
      // The same 3x3x3 convs as 2-D convs with the three frames folded into the channels (what a
      // frame-folding layout would run): same FLOPs, cuDNN's 2-D kernels.
      {"up1 folded 2D 1152->384 1x3x3", 1152, 384, 4, 180, 320, 1, 3, 3},
      {"up2 folded 2D 576->192 1x3x3", 576, 192, 4, 360, 640, 1, 3, 3},
      {"up3 folded 2D 288->96 1x3x3", 288, 96, 4, 720, 1280, 1, 3, 3},
  };
  for (const Case& c : cases) {
    ib::ops::Conv3dArgs a = ib::ops::Conv3dArgs::spatial_pad(1);
    const Tensor x = normal_like({c.cin, c.T, c.H, c.W}, 3).to(Device::CUDA);
    const Tensor w = uniform({c.cout, c.cin, c.kt, c.kh, c.kw}, 0.05f, 4).to(dtype).to(Device::CUDA);
    const Tensor b = Tensor::zeros({c.cout}).to(Device::CUDA);
    (void)ib::ops::conv3d(x, w, b, a);
    sync();
    constexpr int kReps = 3;
    const auto t0 = std::chrono::steady_clock::now();
    Tensor y;
    for (int i = 0; i < kReps; ++i) y = ib::ops::conv3d(x, w, b, a);
    sync();
    const double s = seconds_since(t0) / kReps;
    const double flop = 2.0 * static_cast<double>(c.cout * c.cin * c.kt * c.kh * c.kw) * static_cast<double>(y.numel() / c.cout);
    // The norm + SiLU on the same input, for the memory-bound side.
    const Tensor g = Tensor::full({c.cin}, 1.0f).to(Device::CUDA);
    (void)ib::ops::rms_norm_channels(x, g, true);
    sync();
    const auto t1 = std::chrono::steady_clock::now();
    for (int i = 0; i < kReps; ++i) (void)ib::ops::rms_norm_channels(x, g, true);
    sync();
    const double sn = seconds_since(t1) / kReps;
    char line[256];
    std::snprintf(line, sizeof line, "conv %-4s %-34s %8.2f ms %7.1f TFLOP/s | norm+silu %6.2f ms %6.0f GB/s",
                  ib::dtype_name(dtype), c.name, s * 1e3, flop / s / 1e12, sn * 1e3,
                  2.0 * static_cast<double>(x.nbytes()) / sn / 1e9);
    row(line);
  }
  if (dtype != DType::BF16) return;
  // The decoder's three spatial upsamplings of a later 720p chunk as the decode runs them: bf16
  // activations in and out, nearest x2 and the 3x3 conv in one op (upsample2x_conv3d, the x2 in the
  // conv's packing), unlike the "upsample" row above (conv3d on an upsampled f32 input).
  struct Up { const char* name; int64_t cin, cout, T, h, w; };
  const Up ups[] = {{"384->192 from 90x160", 384, 192, 2, 90, 160},
                    {"384->192 from 180x320", 384, 192, 4, 180, 320},
                    {"192->96 from 360x640", 192, 96, 4, 360, 640}};
  for (const Up& u : ups) {
    const ib::ops::Conv3dArgs a = ib::ops::Conv3dArgs::spatial_pad(1);
    const Tensor x = normal_like({u.cin, u.T, u.h, u.w}, 5).to(DType::BF16).to(Device::CUDA);
    const Tensor w = uniform({u.cout, u.cin, 1, 3, 3}, 0.05f, 6).to(DType::BF16).to(Device::CUDA);
    const Tensor b = Tensor::zeros({u.cout}).to(Device::CUDA);
    (void)ib::ops::upsample2x_conv3d(x, w, b, a, DType::BF16);
    sync();
    constexpr int kReps = 5;
    const auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < kReps; ++i) (void)ib::ops::upsample2x_conv3d(x, w, b, a, DType::BF16);
    sync();
    const double s = seconds_since(t0) / kReps;
    const double flop = 2.0 * 9.0 * static_cast<double>(u.cin * u.cout) * static_cast<double>(u.T * 4 * u.h * u.w);
    char line[256];
    std::snprintf(line, sizeof line, "upsample2x_conv3d bf16 %-26s %8.2f ms %7.1f TFLOP/s",
                  u.name, s * 1e3, flop / s / 1e12);
    row(line);
  }
}

// --- whole encode / decode ----------------------------------------------------------------------

struct VaeCase { std::string name; bool encode; int64_t H, W; bool to_host = false; };

void bench_vae(const ib::WanVAE& vae, const VaeCase& c, DType dtype) {
  Tensor input;
  if (c.encode) {
    input = uniform({3, 81, c.H, c.W}, 1.0f, 11).to(Device::CUDA);  // [-1, 1)
  } else {
    input = normal_like({16, 21, c.H / 8, c.W / 8}, 12).to(Device::CUDA);
  }
  auto run = [&] {
    if (c.to_host) return ib::decode_to_host(vae, input);  // what generation runs
    return c.encode ? vae.encode(input) : vae.decode(input);
  };
  auto t0 = std::chrono::steady_clock::now();
  Tensor out;
  double warm = 0;
  if (dtype == DType::BF16) {
    out = run();
    sync();
    warm = seconds_since(t0);
    out = Tensor();
  }
  ib::cuda::reset_peak_memory();
  const ib::cuda::MemoryStats before = ib::cuda::memory_stats();
  t0 = std::chrono::steady_clock::now();
  out = run();
  sync();
  const double s = seconds_since(t0);
  const ib::cuda::MemoryStats after = ib::cuda::memory_stats();
  char line[320];
  std::snprintf(line, sizeof line,
                "%-10s %-5s out %-20s %7.3f s (first run %7.3f s) | peak %6.2f GiB (tensors before %5.2f GiB, reserved "
                "%6.2f GiB, device used %6.2f GiB, cudaMallocs in timed run %lld)",
                c.name.c_str(), ib::dtype_name(dtype), ib::shape_str(out.shape()).c_str(), s, warm, gib(after.peak_in_use),
                gib(before.in_use), gib(after.peak_reserved), gib(after.device_total - after.device_free),
                after.cuda_mallocs - before.cuda_mallocs);
  row(line);
}

}  // namespace

int main(int argc, char** argv) {
  ib::init_logging();
  std::vector<std::string> cases;
  for (int i = 1; i < argc; ++i) cases.emplace_back(argv[i]);
  if (cases.empty())
    cases = {"convs-bf16", "encode480-bf16", "encode720-bf16", "decode480-bf16", "decode720-bf16",
             "convs-f32",  "encode480-f32",  "decode480-f32",  "decode720-f32"};
  const std::map<std::string, VaeCase> vae_cases = {{"encode480", {"encode480", true, 480, 832}},
                                                    {"encode720", {"encode720", true, 720, 1280}},
                                                    {"decode480", {"decode480", false, 480, 832}},
                                                    {"decode720", {"decode720", false, 720, 1280}},
                                                    // 81 frames of 64 x 64: next to no device work,
                                                    // so the time is the decode's host side and launches
                                                    {"decode64", {"decode64", false, 64, 64}},
                                                    // into host memory, as generation decodes
                                                    {"decode480host", {"decode480host", false, 480, 832, true}},
                                                    {"decode720host", {"decode720host", false, 720, 1280, true}}};
  try {
    const ib::VaeConfig cfg;  // the release's sizes
    const auto t0 = std::chrono::steady_clock::now();
    const ib::MemoryTensorStore store(ib::make_weights(ib::vae_weight_shapes(cfg), DType::F32, 1), "<random weights>");
    std::printf("random weights: %zu tensors in %.1f s\n", store.names().size(), seconds_since(t0));
    std::map<DType, ib::WanVAE> models;
    for (const std::string& name : cases) {
      const auto dash = name.rfind('-');
      IB_CHECK(dash != std::string::npos, "bad case '{}'", name);
      const std::string what = name.substr(0, dash), dt = name.substr(dash + 1);
      IB_CHECK(dt == "bf16" || dt == "f32", "bad dtype in '{}'", name);
      const DType dtype = dt == "bf16" ? DType::BF16 : DType::F32;
      if (what == "convs") {
        bench_convs(dtype);
        continue;
      }
      const auto it = vae_cases.find(what);
      IB_CHECK(it != vae_cases.end(), "unknown case '{}'", name);
      if (!models.count(dtype)) {
        models.clear();  // one model on the GPU at a time
        ib::WanVAE vae = ib::WanVAE::load(store, cfg);
        vae.to(Device::CUDA, dtype);
        models.emplace(dtype, std::move(vae));
      }
      bench_vae(models.at(dtype), it->second, dtype);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_vae_gpu: %s\n", e.what());
    return 1;
  }
  std::printf("\n== summary ==\n");
  for (const std::string& l : g_table) std::printf("%s\n", l.c_str());
  return 0;
}
