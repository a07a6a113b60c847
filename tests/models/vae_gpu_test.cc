// Wan-VAE on CUDA against the fixture (vae.safetensors: encode `video` -> `latent`, decode `latent`
// -> `decoded`, `random_latent` -> `random_decoded`): f32 within the fixture README's component
// bound (1e-4 x (1 + max|ref|)), bf16 within 2e-2 x (1 + max|ref|) or, for decoded frames, at a
// PSNR of 35 dB or more. Every error is printed. Sizes come from the fixture files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/fixture.h"
#include "io/model_config.h"
#include "models/vae.h"
#include "models/vae_tiling.h"
#include "ops/vae_layout.h"

namespace ib {
namespace {

const ModelFolder& folder() {
  static const ModelFolder f = ModelFolder::open(test::model_dir());
  return f;
}

WanVAE load_vae() { return WanVAE::load(*open_tensor_store(folder().vae_path), folder().vae); }

// PSNR of a against b for videos in [-1, 1] (peak-to-peak 2).
double psnr(const Tensor& a, const Tensor& b) {
  const Tensor x = a.to(Device::CPU).to(DType::F32), y = b.to(Device::CPU).to(DType::F32);
  double se = 0;
  for (int64_t i = 0; i < x.numel(); ++i) {
    const double d = static_cast<double>(x.data<float>()[i]) - y.data<float>()[i];
    se += d * d;
  }
  const double mse = se / static_cast<double>(std::max<int64_t>(x.numel(), 1));
  return 10.0 * std::log10(4.0 / std::max(mse, 1e-30));
}

// Prints and returns the closeness of a device result to a fixture tensor.
test::Closeness report(const char* what, const Tensor& got, const Tensor& ref, double rel) {
  EXPECT_EQ(got.device(), Device::CUDA) << what;
  const test::Closeness c = test::compare(got.to(Device::CPU), ref, rel);
  std::printf("[measured] %s: max abs err %.3g, max |ref| %.3g, bound %.3g\n", what, c.max_abs_err, c.max_abs_ref,
              c.bound);
  EXPECT_TRUE(c.shape_ok) << what << ": shape " << shape_str(got.shape()) << " vs " << shape_str(ref.shape());
  return c;
}

TEST(WanVAEGpu, F32MatchesFixture) {
  const auto f = test::open_fixture("vae.safetensors");
  WanVAE vae = load_vae();
  vae.to(Device::CUDA);
  EXPECT_EQ(vae.device(), Device::CUDA);
  EXPECT_EQ(vae.conv_dtype(), DType::F32);
  const Tensor video = f->get("video").to(DType::F32);
  const Tensor latent = vae.encode(video.to(Device::CUDA));
  EXPECT_TENSOR_CLOSE(latent.to(Device::CPU), f->get("latent"), test::kComponentRel);
  report("f32 encode video -> latent", latent, f->get("latent"), test::kComponentRel);
  const Tensor decoded = vae.decode(f->get("latent").to(DType::F32).to(Device::CUDA));
  EXPECT_TENSOR_CLOSE(decoded.to(Device::CPU), f->get("decoded"), test::kComponentRel);
  report("f32 decode latent -> decoded", decoded, f->get("decoded"), test::kComponentRel);
  const Tensor rnd = vae.decode(f->get("random_latent").to(DType::F32).to(Device::CUDA));
  EXPECT_TENSOR_CLOSE(rnd.to(Device::CPU), f->get("random_decoded"), test::kComponentRel);
  report("f32 decode random_latent -> random_decoded", rnd, f->get("random_decoded"), test::kComponentRel);
}

TEST(WanVAEGpu, Bf16WithinBound) {
  constexpr double kRel = 2e-2, kMinPsnr = 35.0;
  const auto f = test::open_fixture("vae.safetensors");
  WanVAE vae = load_vae();
  vae.to(Device::CUDA, DType::BF16);
  EXPECT_EQ(vae.conv_dtype(), DType::BF16);
  const test::Closeness enc =
      report("bf16 encode video -> latent", vae.encode(f->get("video").to(DType::F32)), f->get("latent"), kRel);
  EXPECT_LE(enc.max_abs_err, enc.bound);
  EXPECT_GT(enc.max_abs_err, 0.0);  // really the bf16 path
  for (const auto& [in, out] : {std::pair<std::string, std::string>{"latent", "decoded"}, {"random_latent", "random_decoded"}}) {
    const Tensor ref = f->get(out);
    const Tensor got = vae.decode(f->get(in).to(DType::F32));
    const std::string what = "bf16 decode " + in + " -> " + out;
    const test::Closeness c = report(what.c_str(), got, ref, kRel);
    const double p = psnr(got, ref);
    std::printf("[measured] %s: PSNR %.1f dB (bound: max err <= %.3g or PSNR >= %.0f dB)\n", what.c_str(), p, c.bound,
                kMinPsnr);
    EXPECT_TRUE(c.max_abs_err <= c.bound || p >= kMinPsnr) << what << ": max abs err " << c.max_abs_err << ", PSNR " << p;
  }
}

// A CPU input is copied to the model's device; moving the model back gives the CPU results again.
TEST(WanVAEGpu, DeviceRoundTrip) {
  const auto f = test::open_fixture("vae.safetensors");
  const Tensor latent = f->get("latent").to(DType::F32);
  const WanVAE cpu_vae = load_vae();
  const Tensor ref = cpu_vae.decode(latent);
  WanVAE vae = load_vae();
  vae.to(Device::CUDA);
  EXPECT_EQ(vae.decode(latent).device(), Device::CUDA);
  vae.to(Device::CPU);
  EXPECT_EQ(vae.device(), Device::CPU);
  EXPECT_TENSOR_CLOSE(vae.decode(latent), ref, 0.0);
  EXPECT_THROW(vae.to(Device::CPU, DType::BF16), Error);
}

// The decode into host memory a chunk at a time (decode_to_host, what generation and the server
// use) gives decode()'s video bit for bit, and so the fixture's within the bf16 bound.
TEST(WanVAEGpu, DecodeToHostEqualsDecode) {
  const auto f = test::open_fixture("vae.safetensors");
  WanVAE vae = load_vae();
  vae.to(Device::CUDA, DType::BF16);
  for (const char* name : {"latent", "random_latent"}) {
    SCOPED_TRACE(name);
    const Tensor latent = f->get(name).to(DType::F32);
    const Tensor whole = vae.decode(latent.to(Device::CUDA)).to(Device::CPU);
    // The frames handed out on the queue's worker thread as they land: in order, each once, the
    // bytes the returned video holds.
    std::vector<std::pair<int64_t, Tensor>> pieces;
    const Tensor host = decode_to_host(vae, latent, {}, [&](const Tensor& frames, int64_t first) {
      pieces.emplace_back(first, frames.clone());
    });
    ASSERT_EQ(host.device(), Device::CPU);
    ASSERT_EQ(host.shape(), whole.shape());
    EXPECT_EQ(0, std::memcmp(host.raw(), whole.raw(), static_cast<size_t>(whole.nbytes())));
    ASSERT_EQ(static_cast<int64_t>(pieces.size()), latent.size(1));
    int64_t next = 0;
    for (const auto& [first, frames] : pieces) {
      ASSERT_EQ(first, next);
      ASSERT_EQ(frames.device(), Device::CPU);
      EXPECT_EQ(0, std::memcmp(frames.raw(), ops::slice_frames(host, first, first + frames.size(1)).raw(),
                               static_cast<size_t>(frames.nbytes())))
          << "frames from " << first;
      next += frames.size(1);
    }
    EXPECT_EQ(next, host.size(1));
    const double p = psnr(host, f->get(std::string(name) == "latent" ? "decoded" : "random_decoded"));
    std::printf("[measured] decode_to_host (bf16) %s: PSNR %.1f dB against the fixture\n", name, p);
    EXPECT_GE(p, 35.0);
  }
}

// The encoder's memo on the GPU (cuDNN's convolutions and our kernels are deterministic run to
// run): FLF2V's conditioning video (random first and last frames, zeros between, in host memory as
// generation has it) encodes to the same bits with the memo on and off, in f32 and bf16, whole
// chunks and a frame at a time, and the memo skips work.
TEST(WanVAEGpu, EncodeMemoIsExact) {
  const Tensor ref = test::open_fixture("vae.safetensors")->get("video");
  WanVAE probe = load_vae();
  const int64_t F = 1 + probe.temporal_factor() * 12, H = ref.size(2), W = ref.size(3);
  const Tensor noise = test::random_tensor({3, 2, H, W}, 77, 0.5f);
  Tensor video = Tensor::zeros({3, F, H, W}, DType::F32);
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t k = 0; k < 2; ++k)
      std::memcpy(video.data<float>() + (c * F + (k == 0 ? 0 : F - 1)) * H * W,
                  noise.data<float>() + (c * 2 + k) * H * W, static_cast<size_t>(H * W) * sizeof(float));
  for (const DType dt : {DType::F32, DType::BF16})
    for (const int64_t per_pass : {int64_t{0}, int64_t{1}}) {
      SCOPED_TRACE(std::string(dtype_name(dt)) + ", " + std::to_string(per_pass) + " frames a pass");
      WanVAE on = load_vae(), off = load_vae();
      on.to(Device::CUDA, dt);
      off.to(Device::CUDA, dt);
      on.set_encode_frames_per_pass(per_pass);
      off.set_encode_frames_per_pass(per_pass);
      off.set_encode_memo(false);
      const Tensor a = on.encode(video).to(Device::CPU), b = off.encode(video).to(Device::CPU);
      ASSERT_EQ(a.shape(), b.shape());
      EXPECT_EQ(0, std::memcmp(a.raw(), b.raw(), static_cast<size_t>(a.nbytes())));
      EXPECT_GT(on.last_encode_skipped(), 0);
      EXPECT_EQ(off.last_encode_skipped(), 0);
      std::printf("[measured] GPU encode memo (%s, %lld frames a pass): %lld unit calls skipped, latents equal\n",
                  dtype_name(dt), static_cast<long long>(per_pass), static_cast<long long>(on.last_encode_skipped()));
    }
}

}  // namespace
}  // namespace ib
