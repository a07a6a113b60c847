// `inbetween bench` (include/inbetween/bench.h): the GPU engine's stages timed on a synthetic
// full-size model or a model folder. Each stage: one warm-up, then `repeats` timed runs between
// device synchronisations; peak memory from the caching allocator's counters.
#include "inbetween/bench.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <optional>

#include "core/check.h"
#include "core/cuda_memory.h"
#include "core/gpu_monitor.h"
#include "io/model_config.h"
#include "ops/sampler.h"
#include "pipeline/conditioning.h"
#include "pipeline/generate_internal.h"
#include "pipeline/scheduler.h"
#include "pipeline/vram_plan.h"

#ifdef INBETWEEN_HAVE_CUDA
#include <cuda_runtime.h>
#include <sys/resource.h>
#include <unistd.h>

#include <filesystem>

#include "gpu/attention_fp8.h"
#include "gpu/dit_runner.h"
#include "gpu/fp8.h"
#include "io/safetensors.h"
#include "io/video_writer.h"
#include "models/clip.h"
#include "models/lora.h"
#include "models/t5.h"
#include "models/vae.h"
#include "models/random_weights.h"
#include "models/vae_tiling.h"
#endif

namespace ib {

namespace {
// Checks the options before anything else, in every build.
void validate(const BenchOptions& o) {
  IB_CHECK(o.width >= 16 && o.height >= 16 && o.width % 16 == 0 && o.height % 16 == 0 && o.width <= 4096 &&
               o.height <= 4096,
           "bench: size {}x{} must be multiples of 16 between 16 and 4096", o.width, o.height);
  IB_CHECK(o.frames >= 1 && (o.frames - 1) % 4 == 0 && o.frames <= 1025, "bench: --frames {} must be 4n+1 (at most 1025)",
           o.frames);
  IB_CHECK(o.repeats >= 1 && o.repeats <= 100, "bench: --repeats must be in 1..100, got {}", o.repeats);
  for (const std::string& s : o.stages)
    IB_CHECK(s == "dit" || s == "attention" || s == "gemm" || s == "t5" || s == "clip" || s == "vae" || s == "generate" ||
                 s == "load" || s == "mp4",
             "bench: unknown stage '{}' (expected t5, clip, vae, attention, gemm, dit, generate, load, mp4)", s);
  IB_CHECK(o.steps >= 1 && o.steps <= 1000, "bench: --steps must be in 1..1000, got {}", o.steps);
  IB_CHECK(std::isfinite(o.guidance) && o.guidance >= 0, "bench: --guidance must be >= 0, got {}", o.guidance);
  IB_CHECK(o.vae_precision == Precision::BF16 || o.vae_precision == Precision::F32,
           "bench: --vae-precision '{}': expected bf16 or f32", precision_name(o.vae_precision));
  IB_CHECK(o.precision == Precision::BF16 || o.precision == Precision::FP8,
           "bench: --precision '{}': expected bf16 or fp8", precision_name(o.precision));
  IB_CHECK(std::isfinite(o.vram_budget_gib) && o.vram_budget_gib >= 0, "bench: --vram-budget {} must be >= 0",
           o.vram_budget_gib);
  IB_CHECK(o.attention == "auto" || o.attention == "flash" || o.attention == "cudnn" || o.attention == "hopper" ||
               o.attention == "fp8" || o.attention == "fp8-cudnn",
           "bench: --attention '{}': expected auto, flash, cudnn, hopper, fp8 or fp8-cudnn", o.attention);
  IB_CHECK(o.lora_rank >= 0 && o.lora_rank <= 1024, "bench: --lora-rank {} must be in 0..1024 (0: no LoRA)",
           o.lora_rank);
}
}  // namespace

#ifndef INBETWEEN_HAVE_CUDA

BenchReport run_bench(const BenchOptions& o, const std::function<void(const std::string&)>&) {
  validate(o);
  fail("inbetween bench times the GPU engine, and this build has no CUDA support (nvcc was not found when it was "
       "built)");
}

#else

namespace {

using Clock = std::chrono::steady_clock;
constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

double gib(size_t b) { return static_cast<double>(b) / kGiB; }

// The stages asked for; with none named, every stage in the default set (generate is not: at 50
// steps it takes minutes).
bool wanted(const BenchOptions& o, const std::string& stage, bool in_default_set = true) {
  if (o.stages.empty()) return in_default_set;
  for (const std::string& s : o.stages)
    if (s == stage) return true;
  return false;
}

// The SM clock and power sampled over the last timed runs (time_it, the generate stage), for the
// next add_row to print beside its figure; cleared when printed.
cuda::GpuMonitor::Summary g_monitored;

// Runs fn once untimed, then `repeats` times; returns {mean, min} seconds, the device idle around
// each run. The timed runs' SM clock and power go to g_monitored.
template <typename Fn>
std::pair<double, double> time_it(int repeats, Fn&& fn) {
  fn();
  cuda::synchronize("bench warm-up");
  double sum = 0, best = 1e30;
  cuda::GpuMonitor monitor;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = Clock::now();
    fn();
    cuda::synchronize("bench");
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    sum += s;
    best = std::min(best, s);
  }
  g_monitored = monitor.stop();
  return {sum / repeats, best};
}

Tensor random_device(const Shape& s, DType dt, uint64_t seed, float bound) {
  Tensor t = Tensor::empty(s, dt, Device::CUDA);
  gpu::fill_uniform(t, seed, bound);
  return t;
}

// FLF2V's conditioning video as generation builds it, in host memory: random first and last
// images (seeds seed_first and seed_last), zeros between.
Tensor random_conditioning_video(int64_t frames, int64_t height, int64_t width, uint64_t seed_first,
                                 uint64_t seed_last) {
  return conditioning_video(random_device({3, height, width}, DType::F32, seed_first, 1.0f).to(Device::CPU),
                            random_device({3, height, width}, DType::F32, seed_last, 1.0f).to(Device::CPU), frames);
}

// A temporary MP4 path of this process (the generate and mp4 stages write there and remove it).
std::string bench_mp4_path() {
  return (std::filesystem::temp_directory_path() / fmt::format("inbetween-bench-{}.mp4", static_cast<long>(getpid())))
      .string();
}

// A smooth video: colour gradients that drift with the frame index, [3, F, H, W] in [-1, 1].
Tensor moving_gradient_video(int64_t F, int64_t H, int64_t W) {
  Tensor v = Tensor::empty({3, F, H, W}, DType::F32);
  float* p = v.data<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const double a = static_cast<double>(x + 2 * f) / static_cast<double>(W) +
                           static_cast<double>(c) * static_cast<double>(y + f) / static_cast<double>(H);
          p[((c * F + f) * H + y) * W + x] = static_cast<float>(0.8 * std::sin(3.0 * a + static_cast<double>(c)));
        }
  return v;
}

// The process's peak resident memory so far (getrusage's ru_maxrss, KiB on Linux).
double peak_rss_gib() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_maxrss) * 1024.0 / kGiB;
}

// A LoRA of rank r on every matrix of the DiT's blocks in `list` (kohya keys, bf16 up and down of
// random_weight's init, alpha = r), in a temporary file removed with this object.
struct TempLora {
  std::string path;
  size_t layers = 0, bytes = 0;
  double write_s = 0;
  TempLora(const WeightShapes& list, int64_t rank) {
    const auto t0 = Clock::now();
    path = (std::filesystem::temp_directory_path() / fmt::format("inbetween-bench-lora-{}.safetensors", ::getpid()))
               .string();
    std::vector<std::pair<std::string, Tensor>> t;
    for (const auto& [name, shape] : list) {
      if (name.rfind("blocks.", 0) != 0 || shape.size() != 2 || name.size() < 7 ||
          name.compare(name.size() - 7, 7, ".weight") != 0)
        continue;
      const std::string stem = "diffusion_model." + name.substr(0, name.size() - 7);
      t.emplace_back(stem + ".lora_down.weight", random_weight(stem + ".lora_down.weight", {rank, shape[1]}, DType::BF16, 7));
      t.emplace_back(stem + ".lora_up.weight", random_weight(stem + ".lora_up.weight", {shape[0], rank}, DType::BF16, 7));
      t.emplace_back(stem + ".alpha", Tensor::full(Shape{}, static_cast<float>(rank)));
      bytes += t[t.size() - 3].second.nbytes() + t[t.size() - 2].second.nbytes();
      ++layers;
    }
    save_safetensors(path, t);
    write_s = std::chrono::duration<double>(Clock::now() - t0).count();
  }
  ~TempLora() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
  TempLora(const TempLora&) = delete;
  TempLora& operator=(const TempLora&) = delete;
  std::string describe() const {
    return fmt::format("LoRA: {} layers, {:.0f} MiB, written to {} in {:.1f} s (not timed below)", layers,
                       static_cast<double>(bytes) / (1 << 20), path, write_s);
  }
};

gpu::AttentionBackend parse_backend(const std::string& s) {
  if (s == "auto") return gpu::AttentionBackend::Auto;
  if (s == "flash") return gpu::AttentionBackend::Flash;
  if (s == "cudnn") return gpu::AttentionBackend::Cudnn;
  if (s == "hopper") return gpu::AttentionBackend::Hopper;
  // fp8 attention (DitRunner::set_fp8_attention): our Hopper kernel where it runs, or cuDNN's.
  if (s == "fp8") return gpu::AttentionBackend::Auto;
  if (s == "fp8-cudnn") return gpu::AttentionBackend::Cudnn;
  fail("--attention '{}': expected auto, flash, cudnn, hopper, fp8 or fp8-cudnn", s);
}

bool fp8_attention(const BenchOptions& o) { return o.attention == "fp8" || o.attention == "fp8-cudnn"; }

}  // namespace

BenchReport run_bench(const BenchOptions& o, const std::function<void(const std::string&)>& log_fn) {
  auto log = [&](const std::string& s) {
    if (log_fn) log_fn(s);
  };
  validate(o);
  const gpu::AttentionBackend backend = parse_backend(o.attention);
  const int64_t lat_t = latent_frames(o.frames), lat_h = o.height / 8, lat_w = o.width / 8;
  IB_CHECK(cuda::device_count() > 0, "inbetween bench: no CUDA device is available on this machine");

  BenchReport r;
  cudaDeviceProp prop{};
  if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) r.device = prop.name;

  auto add_row = [&](const std::string& stage, std::pair<double, double> t, double flops, const std::string& note) {
    BenchRow row;
    row.stage = stage;
    row.seconds = t.first;
    row.min_seconds = t.second;
    row.tflops = flops > 0 ? flops / t.first / 1e12 : 0;
    row.peak_gib = gib(cuda::memory_stats().peak_in_use);
    row.note = note;
    if (const std::string m = g_monitored.str(); !m.empty()) row.note += " [" + m + "]";
    g_monitored = {};
    r.rows.push_back(row);
    log(fmt::format("{:<26} {:9.4f} s  {:7.1f} TFLOP/s  peak {:.1f} GiB  {}", stage, row.seconds, row.tflops,
                    row.peak_gib, row.note));
  };
  // The encoders and the VAE with the release's sizes and random weights made on the CPU, or a
  // folder's weights. Each stage's peak is its own; the generate stage keeps them all loaded.
  std::optional<ModelFolder> folder;
  if (!o.model_dir.empty()) folder = ModelFolder::open(o.model_dir);
  const bool gen = wanted(o, "generate", false);
  std::optional<T5Encoder> t5;
  std::optional<ClipVision> clip_model;
  std::optional<WanVAE> vae_model;
  const T5Config t5_cfg = folder ? folder->t5 : T5Config{};
  const ClipConfig clip_cfg = folder ? folder->clip : ClipConfig{};
  const VaeConfig vae_cfg = folder ? folder->vae : VaeConfig{};
  const int64_t text_len = folder ? folder->dit.text_len : DitConfig{}.text_len;
  // The budget: a plan for this size (refused here when too small), then the allocator's limit.
  std::optional<VramPlan> plan;
  if (o.vram_budget_gib > 0) {
    const DitConfig dc = folder ? folder->dit : DitConfig{};
    plan = plan_vram(dc, t5_cfg, clip_cfg.dim, dit_image_tokens(dc.model_type, clip_cfg), t5_cfg.dim, o.precision == Precision::FP8 ? 1 : 2, o.width, o.height,
                     o.frames, static_cast<size_t>(o.vram_budget_gib * kGiB), T5Placement::Auto, fp8_attention(o));
    cuda::set_memory_budget(static_cast<size_t>(o.vram_budget_gib * kGiB));
    log(plan->describe());
  }
  std::vector<int32_t> ids(static_cast<size_t>(text_len)), mask(static_cast<size_t>(text_len), 1);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int32_t>(3 + (i * 7919) % 20000);
  IB_CHECK(!(gen && plan && !plan->t5_on_gpu),
           "bench: the generate stage under a --vram-budget that T5 does not fit is not supported (the pipeline runs "
           "T5 on the CPU there); time the other stages, or raise the budget");
  if (wanted(o, "t5") && plan && !plan->t5_on_gpu) {
    log("t5: does not fit the budget; the pipeline runs it on the CPU (not timed here)");
  } else if (wanted(o, "t5") || gen) {
    const auto t0 = Clock::now();
    t5 = folder ? T5Encoder::load(*open_tensor_store(folder->t5_path), t5_cfg)
                : T5Encoder::load(MemoryTensorStore(make_weights(t5_weight_shapes(t5_cfg), DType::BF16, 1)), t5_cfg);
    t5->to(Device::CUDA, DType::BF16);
    cuda::synchronize("loading T5");
    log(fmt::format("T5 made and moved in {:.1f} s", std::chrono::duration<double>(Clock::now() - t0).count()));
    cuda::reset_peak_memory();
    if (wanted(o, "t5")) {
      add_row("t5_encode", time_it(o.repeats, [&] { (void)t5->encode(ids, mask); }), 0,
              fmt::format("{} tokens, bf16 weights", text_len));
      const int64_t prompt = std::max<int64_t>(1, text_len / 4);
      add_row("t5_encode_prompt", time_it(o.repeats, [&] { (void)t5->encode_prefix(ids, prompt); }), 0,
              fmt::format("a prompt of {} tokens (its own rows, as generation encodes it), bf16 weights", prompt));
    }
    if (!gen) t5.reset();  // each stage's peak is its own
  }
  if (wanted(o, "clip") || gen) {
    clip_model = folder ? ClipVision::load(*open_tensor_store(folder->clip_path), clip_cfg)
                  : ClipVision::load(MemoryTensorStore(make_weights(clip_weight_shapes(clip_cfg), DType::F16, 2)), clip_cfg);
    clip_model->to(Device::CUDA, DType::BF16);  // as generation runs it (upstream: f16)
    const Tensor pixels = random_device({2, 3, clip_cfg.image_size, clip_cfg.image_size}, DType::F32, 21, 1.0f);
    cuda::reset_peak_memory();
    if (wanted(o, "clip"))
      add_row("clip_encode", time_it(o.repeats, [&] { (void)clip_model->encode(pixels); }), 0,
              "2 images, bf16 weights");
    if (!gen) clip_model.reset();
  }
  if (wanted(o, "vae") || gen) {
    vae_model = folder ? WanVAE::load(*open_tensor_store(folder->vae_path), vae_cfg)
                 : WanVAE::load(MemoryTensorStore(make_weights(vae_weight_shapes(vae_cfg), DType::F32, 3)), vae_cfg);
    vae_model->to(Device::CUDA, o.vae_precision == Precision::BF16 ? DType::BF16 : DType::F32);
    if (plan && plan->vae_encode_by_frame) vae_model->set_encode_frames_per_pass(1);
    if (wanted(o, "vae")) {
      // What generation encodes: FLF2V's conditioning video (the first and last images, zeros
      // between) in host memory (the encode takes it to the GPU a chunk at a time), whose zero
      // chunks the encoder's memo partly skips; then, for comparison with the figures before the
      // memo, a random video on the device (nothing repeats: every unit runs).
      const Tensor video = random_conditioning_video(o.frames, o.height, o.width, 22, 24);
      // The memo is exact only if every kernel's output frame depends on the frames it reads alone
      // (vae.cc, EncodeMemo): checked here at this size and on these weights, one encode with it
      // off against one with it on, before the timing (and its peak memory).
      vae_model->set_encode_memo(false);
      const Tensor plain = vae_model->encode(video).to(Device::CPU);
      vae_model->set_encode_memo(true);
      const Tensor memo = vae_model->encode(video).to(Device::CPU);
      const bool memo_exact = plain.shape() == memo.shape() &&
                              std::memcmp(plain.raw(), memo.raw(), static_cast<size_t>(plain.nbytes())) == 0;
      cuda::reset_peak_memory();
      const auto encode_t = time_it(o.repeats, [&] { (void)vae_model->encode(video); });
      add_row("vae_encode", encode_t, 0,
              fmt::format("{} frames (first, zeros, last; host memory), {} convolutions; the memo skipped {} unit "
                          "calls, its latent {} the plain encode's",
                          o.frames, precision_name(o.vae_precision), vae_model->last_encode_skipped(),
                          memo_exact ? "equals bit for bit" : "DIFFERS FROM"));
      Tensor noise_video = random_device({3, o.frames, o.height, o.width}, DType::F32, 25, 1.0f);
      if (plan) noise_video = noise_video.to(Device::CPU);  // under a budget in host memory, as generation's
      cuda::reset_peak_memory();
      add_row("vae_encode_random", time_it(o.repeats, [&] { (void)vae_model->encode(noise_video); }), 0,
              fmt::format("{} random frames (nothing repeats), {} convolutions", o.frames,
                          precision_name(o.vae_precision)));
      const Tensor latent = random_device({vae_cfg.z_dim, lat_t, lat_h, lat_w}, DType::F32, 23, 1.0f);
      cuda::reset_peak_memory();
      const VaeTiling tiling = plan ? plan->vae_tiling() : VaeTiling{};
      add_row("vae_decode", time_it(o.repeats, [&] {
                if (tiling.tile > 0) {
                  (void)decode_tiled(*vae_model, latent, tiling);
                } else {
                  (void)vae_model->decode(latent);  // on the device, as before (no copy back)
                }
              }),
              0,
              fmt::format("{} latent frames -> {} frames, {} convolutions{}", lat_t, o.frames,
                          precision_name(o.vae_precision),
                          tiling.tile > 0 ? fmt::format(", in tiles of {} latent pixels ({} shared; blended on the "
                                                        "CPU, the video copied back to the host)",
                                                        tiling.tile, tiling.overlap)
                                          : ""));
    }
  }
  if (!gen) {
    t5.reset();
    clip_model.reset();
    vae_model.reset();
    cuda::empty_cache();  // the encoders' memory goes back before the DiT arrives
  }
  if (wanted(o, "mp4", false)) {
    // The MP4 writer alone (what generate runs beside the decode, on the CPU) on two videos of the
    // bench's size: a smooth moving gradient and uniform noise, the easy and the hard end for H.264.
    // A synthetic model's video is near the noise end, a real model's nearer the smooth one.
    IB_CHECK(mp4_supported(), "bench: the mp4 stage needs a build with the MP4 writer (-DINBETWEEN_MP4=ON)");
    const std::string path = bench_mp4_path();
    for (const bool noise : {false, true}) {
      const Tensor v = noise ? random_device({3, o.frames, o.height, o.width}, DType::F32, 35, 1.0f).to(Device::CPU)
                             : moving_gradient_video(o.frames, o.height, o.width);
      uintmax_t bytes = 0;
      const auto t = time_it(o.repeats, [&] {
        Mp4Stream stream(path, 16);
        stream.add(v);
        stream.finish();
        std::error_code ec;
        bytes = std::filesystem::file_size(path, ec);
        std::filesystem::remove(path, ec);
      });
      add_row(noise ? "mp4_noise" : "mp4_smooth", t, 0,
              fmt::format("{} frames {}x{} {}: {:.1f} MB, {:.2f} bits a pixel", o.frames, o.width, o.height,
                          noise ? "of uniform noise" : "of a moving gradient", static_cast<double>(bytes) / 1e6,
                          8.0 * static_cast<double>(bytes) / static_cast<double>(o.frames * o.width * o.height)));
    }
  }
  const bool need_dit = wanted(o, "dit") || wanted(o, "attention") || wanted(o, "gemm") || gen || wanted(o, "load", false);
  if (!need_dit) return r;

  // The model: a folder's weights (tensor by tensor from the memory map, as generate loads them),
  // or random ones of the release's shapes made on the GPU; with --lora-rank, a LoRA merged in.
  DitConfig cfg;
  int64_t text_dim = 4096, clip_dim = 1280, img_tokens = 514;
  std::unique_ptr<gpu::DitRunner> runner;
  const gpu::DitRunner::Format format =
      o.precision == Precision::FP8 ? gpu::DitRunner::Format::FP8 : gpu::DitRunner::Format::BF16;
  std::shared_ptr<TensorStore> store;
  if (folder) store = open_tensor_store(folder->dit_path);
  std::optional<TempLora> lora;
  if (o.lora_rank > 0) {
    WeightShapes list;
    if (store) {
      for (const std::string& name : store->names()) list.emplace_back(name, store->info(name).shape);
    } else {
      list = dit_weight_shapes(cfg, text_dim, clip_dim, img_tokens);
    }
    lora.emplace(list, o.lora_rank);
    log(lora->describe());
  }
  const std::vector<LoraSpec> loras = lora ? std::vector<LoraSpec>{{lora->path, 1.0}} : std::vector<LoraSpec>{};
  const double rss_before = peak_rss_gib();
  const auto t_load = Clock::now();
  if (folder) {
    const ModelFolder& f = *folder;
    runner = gpu::DitRunner::load(*store, f.dit, loras, format, plan ? plan->resident_blocks : -1);
    store.reset();  // the map goes
    cfg = f.dit;
    text_dim = runner->text_dim();
    clip_dim = runner->clip_dim();
    img_tokens = runner->image_tokens();
  } else {
    IB_CHECK(o.preset == "flf2v-14b", "bench: unknown preset '{}' (expected flf2v-14b)", o.preset);
    const cuda::MemoryStats m = cuda::memory_stats();
    const double bytes_per_weight = format == gpu::DitRunner::Format::FP8 ? 1.0 : 2.0;
    const double need = bytes_per_weight * 16.4e9 / kGiB + 4.0;  // weights + activations at 480p
    IB_CHECK(plan || gib(m.device_free) >= need,
             "bench: the synthetic 14B model needs about {:.1f} GiB of GPU memory ({} weights plus activations); "
             "{:.1f} GiB are free of {:.1f} GiB",
             need, precision_name(o.precision), gib(m.device_free), gib(m.device_total));
    runner = gpu::DitRunner::synthetic(cfg, text_dim, clip_dim, img_tokens, 1, format,
                                       plan && plan->resident_blocks < plan->blocks ? plan->resident_blocks : -1, loras);
  }
  cuda::synchronize("loading the DiT");
  {
    const double load_s = std::chrono::duration<double>(Clock::now() - t_load).count();
    const double rss_after = peak_rss_gib();
    const double on_gpu = gib(runner->weights().bytes), pinned = gib(runner->streamed_host_bytes());
    add_row("dit_load", {load_s, load_s}, 0,
            fmt::format("{}; host peak RSS (getrusage ru_maxrss) {:.2f} GiB before, {:.2f} GiB after; weights {:.2f} "
                        "GiB on the GPU + {:.2f} GiB page-locked: peak RSS / weights = {:.2f}; GPU memory in use "
                        "after: {:.2f} GiB",
                        folder ? fmt::format("{} tensor by tensor from the memory map", folder->dit_path)
                               : std::string("synthetic, made on the device"),
                        rss_before, rss_after, on_gpu, pinned, rss_after / (on_gpu + pinned),
                        gib(cuda::memory_stats().in_use)));
    if (lora) {
      const gpu::DitRunner::LoadStats& st = runner->load_stats();
      add_row("lora_merge", {st.lora_seconds, st.lora_seconds}, 0,
              fmt::format("rank {}, {} tensors patched: the file read and checked, each patch uploaded and merged "
                          "into its f32 weight on the device (cuBLAS SGEMM) before the {} rounding; within dit_load",
                          o.lora_rank, st.lora_tensors, precision_name(o.precision)));
    }
  }
  lora.reset();  // the temporary file goes
  runner->set_attention_backend(backend);
  runner->set_fp8_attention(fp8_attention(o));
  if (plan) {
    runner->set_ffn_chunk_rows(plan->ffn_chunk_rows);
    runner->set_contexts_per_block(plan->contexts_per_block);
  }
  const int64_t L = lat_t * (lat_h / 2) * (lat_w / 2);
  r.tokens = L;
  r.weights_gib = gib(runner->weights().bytes);
  r.setting = fmt::format("{}x{}, {} frames -> {}x{}x{} = {} tokens; DiT dim {} x {} layers, {} heads, {} weights",
                          o.width, o.height, o.frames, lat_t, lat_h / 2, lat_w / 2, L, cfg.dim, cfg.num_layers,
                          cfg.num_heads, precision_name(o.precision));
  log(fmt::format("{} on {}; weights {:.1f} GiB, made in {:.1f} s", r.setting, r.device, r.weights_gib,
                  std::chrono::duration<double>(Clock::now() - t_load).count()));

  if (wanted(o, "attention")) {
    // Self-attention alone at this token count, 40 x 128 (the DiT's heads).
    const int64_t dim = cfg.dim, H = cfg.num_heads, D = dim / H;
    cuda::reset_peak_memory();
    const Tensor qkv = random_device({L, 3 * dim}, DType::BF16, 11, 1.0f);
    Tensor out = Tensor::empty({L, dim}, DType::BF16, Device::CUDA);
    const gpu::AttentionProblem p = gpu::fused_self_attention(qkv.raw(), out.raw(), L, H, D);
    const double flops = 4.0 * static_cast<double>(L) * static_cast<double>(L) * static_cast<double>(dim);
    for (const auto& [name, b] : {std::pair{"flash", gpu::AttentionBackend::Flash},
                                  std::pair{"cudnn", gpu::AttentionBackend::Cudnn},
                                  std::pair{"hopper", gpu::AttentionBackend::Hopper}}) {
      if (b == gpu::AttentionBackend::Cudnn && !gpu::cudnn_attention_supports(p)) {
        log("attention_cudnn: cuDNN does not take this problem here");
        continue;
      }
      if (b == gpu::AttentionBackend::Hopper && !gpu::hopper_attention_supports(p)) {
        log("attention_hopper: the Hopper kernel does not take this problem here (an sm_90 GPU only)");
        continue;
      }
      if (b == gpu::AttentionBackend::Flash && !gpu::flash_attention_supports(D)) continue;
      add_row(fmt::format("attention_{}", name), time_it(o.repeats, [&] { gpu::attention(p, b); }), flops,
              fmt::format("{} heads x {}", H, D));
    }
    if (gpu::fp8_supported()) {
      // fp8: the attention alone, and the quantisation of q | k | v plus the output's dequantisation.
      Tensor qkv8 = Tensor::empty({L, 3 * dim}, DType::F8E4M3, Device::CUDA);
      Tensor out8 = Tensor::empty({L, dim}, DType::F8E4M3, Device::CUDA);
      Tensor scales = Tensor::empty({gpu::kFp8ScaleCount}, DType::F32, Device::CUDA);
      const auto quant = [&] { gpu::quantize_qkv_fp8(qkv.raw(), L, dim, 3 * dim, qkv8.raw(), scales.data<float>()); };
      quant();
      const gpu::AttentionProblem p8 = gpu::fp8_self_attention(qkv8.raw(), out8.raw(), scales.data<float>(), L, H, D);
      if (gpu::cudnn_attention_supports(p8)) {
        add_row("attention_cudnn_fp8", time_it(o.repeats, [&] { gpu::attention(p8); }), flops,
                fmt::format("{} heads x {}, e4m3 q/k/v/P/out", H, D));
        add_row("attention_fp8_quantize", time_it(o.repeats, [&] {
                  quant();
                  gpu::dequantize_attention_fp8(out8.raw(), L, dim, scales.data<float>(), out.raw());
                }),
                0, "q|k|v to e4m3 (amax + convert), the output back to bf16");
      } else {
        log("attention_cudnn_fp8: cuDNN does not take the fp8 problem here");
      }
      // Our Hopper fp8 kernel: q | k in e4m3, v transposed, the output straight to bf16.
      qkv8 = Tensor();
      out8 = Tensor();
      Tensor qk8 = Tensor::empty({L, 2 * dim}, DType::F8E4M3, Device::CUDA);
      Tensor vt8 = Tensor::empty({dim, gpu::fp8_vt_keys(L)}, DType::F8E4M3, Device::CUDA);
      const auto quant_vt = [&] {
        gpu::quantize_qkv_fp8_vt(qkv.raw(), 1, L, dim, 3 * dim, qk8.raw(), vt8.raw(), scales.data<float>());
      };
      quant_vt();
      const gpu::AttentionProblem h8 =
          gpu::fp8_self_attention_vt(qk8.raw(), vt8.raw(), out.raw(), scales.data<float>(), L, H, D);
      if (gpu::hopper_attention_fp8_supports(h8)) {
        add_row("attention_hopper_fp8", time_it(o.repeats, [&] { gpu::attention(h8); }), flops,
                fmt::format("{} heads x {}, e4m3 q/k/v/P, bf16 out", H, D));
        add_row("attention_hopper_fp8_quantize", time_it(o.repeats, quant_vt), 0,
                "q|k to e4m3 (amax + convert), v to e4m3 transposed");
      } else {
        log("attention_hopper_fp8: the Hopper fp8 kernel does not take this problem here (an sm_90 GPU only)");
      }
    }
    // The cross-attention's shapes: the L queries against the text's text_len keys and against the
    // images' tokens (FLF2V: both images' 514 in one softmax; the forward runs both per block):
    // bf16 as the forward runs it (Auto: our Hopper kernel on sm_90), through cuDNN, and fp8
    // through ours (k and the transposed v quantised from the first lk rows; for timing, the kernel
    // reads q with those rows' scales).
    for (const int64_t lk : {cfg.text_len, img_tokens}) {
      if (lk < 1 || lk > L) continue;
      gpu::AttentionProblem pc = p;
      pc.lk = lk;
      const double cflops = 4.0 * static_cast<double>(L) * static_cast<double>(lk) * static_cast<double>(dim);
      add_row(fmt::format("cross_attention_{}_auto", lk), time_it(o.repeats, [&] { gpu::attention(pc); }), cflops,
              fmt::format("{} queries x {} keys, bf16 (the forward's choice)", L, lk));
      if (gpu::cudnn_attention_supports(pc))
        add_row(fmt::format("cross_attention_{}_cudnn", lk),
                time_it(o.repeats, [&] { gpu::attention(pc, gpu::AttentionBackend::Cudnn); }), cflops,
                fmt::format("{} queries x {} keys, bf16, cuDNN's fused SDPA", L, lk));
      if (!gpu::fp8_supported() || !gpu::hopper_fp8_available()) continue;
      Tensor q8 = Tensor::empty({L, 2 * dim}, DType::F8E4M3, Device::CUDA);
      Tensor k8 = Tensor::empty({lk, 2 * dim}, DType::F8E4M3, Device::CUDA);
      Tensor vt8 = Tensor::empty({dim, gpu::fp8_vt_keys(lk)}, DType::F8E4M3, Device::CUDA);
      Tensor vt8_full = Tensor::empty({dim, gpu::fp8_vt_keys(L)}, DType::F8E4M3, Device::CUDA);
      Tensor scales = Tensor::empty({gpu::kFp8ScaleCount}, DType::F32, Device::CUDA);
      gpu::quantize_qkv_fp8_vt(qkv.raw(), 1, L, dim, 3 * dim, q8.raw(), vt8_full.raw(), scales.data<float>());
      gpu::quantize_qkv_fp8_vt(qkv.raw(), 1, lk, dim, 3 * dim, k8.raw(), vt8.raw(), scales.data<float>());
      gpu::AttentionProblem c8 =
          gpu::fp8_self_attention_vt(q8.raw(), vt8.raw(), out.raw(), scales.data<float>(), L, H, D);
      c8.k = static_cast<const char*>(k8.raw()) + dim;
      c8.lk = lk;
      if (gpu::hopper_attention_fp8_supports(c8))
        add_row(fmt::format("cross_attention_{}_hopper_fp8", lk), time_it(o.repeats, [&] { gpu::attention(c8); }),
                cflops, fmt::format("{} queries x {} keys, e4m3 q/k/v/P, bf16 out", L, lk));
    }
  }

  if (wanted(o, "gemm")) {
    // The block's products at this token count, with their epilogues and bare.
    const int64_t dim = cfg.dim, ffn = cfg.ffn_dim;
    const gpu::DitBlockGpu& g = runner->weights().blocks.at(0);
    const Tensor x = random_device({L, std::max(dim, ffn)}, DType::BF16, 12, 1.0f);
    Tensor y = Tensor::empty({L, std::max(3 * dim, ffn)}, DType::BF16, Device::CUDA);
    struct G {
      std::string name;
      const gpu::LinearWeight* w;
      gpu::Epilogue ep;
    };
    std::vector<G> gs = {G{"gemm_qkv", &g.qkv, gpu::Epilogue::Bias}, G{"gemm_o", &g.o, gpu::Epilogue::Bias},
                         G{"gemm_ffn_up_gelu", &g.ffn0, gpu::Epilogue::BiasGelu},
                         G{"gemm_ffn_down", &g.ffn2, gpu::Epilogue::Bias}};
    // With bf16 weights, the same layers quantised to fp8 too (when the GPU has fp8 products).
    std::vector<gpu::LinearWeight> fp8_twins;
    if (format == gpu::DitRunner::Format::BF16 && gpu::fp8_supported()) {
      fp8_twins.reserve(gs.size());
      const size_t n = gs.size();
      for (size_t i = 0; i < n; ++i) {
        fp8_twins.push_back(gpu::LinearWeight::fp8(*gs[i].w));
        gs.push_back(G{gs[i].name + "_fp8", &fp8_twins.back(), gs[i].ep});
      }
    }
    for (const G& s : gs) {
      const char* fmt_name = s.w->format == gpu::LinearWeight::Format::FP8 ? "fp8" : "bf16";
      const double flops = 2.0 * static_cast<double>(L) * static_cast<double>(s.w->in_features()) *
                           static_cast<double>(s.w->out_features());
      const auto with = time_it(o.repeats * 3, [&] {
        gpu::linear(x.raw(), L, s.w->in_features(), *s.w, s.ep, y.raw(), s.w->out_features());
      });
      const cuda::GpuMonitor::Summary with_monitored = g_monitored;
      const auto bare = time_it(o.repeats * 3, [&] { gpu::matmul_bare(x.raw(), L, *s.w, y.raw()); });
      g_monitored = with_monitored;  // the row's figure is the product with its epilogue
      add_row(s.name, with, flops,
              fmt::format("{} {} x {} -> {}; bare product {:.1f} TFLOP/s, epilogue version at {:.0f}%{}", fmt_name, L,
                          s.w->in_features(), s.w->out_features(), flops / bare.first / 1e12,
                          100.0 * bare.first / with.first,
                          s.w->format == gpu::LinearWeight::Format::FP8 ? " (both include the per-token quantisation)"
                                                                         : ""));
    }
  }

  if (wanted(o, "dit")) {
    const Tensor x = random_device({cfg.out_dim, lat_t, lat_h, lat_w}, DType::F32, 13, 1.7f);
    const bool img = cfg.model_type != "t2v";
    const Tensor y = img ? random_device({cfg.in_dim - cfg.out_dim, lat_t, lat_h, lat_w}, DType::F32, 14, 1.0f) : Tensor();
    const Tensor ctx = random_device({cfg.text_len, text_dim}, DType::F32, 15, 0.2f);
    const Tensor ctx_null = random_device({cfg.text_len, text_dim}, DType::F32, 16, 0.2f);
    const Tensor clip = img ? random_device({img_tokens > 0 ? img_tokens : 257, clip_dim}, DType::F32, 17, 1.0f) : Tensor();
    cuda::reset_peak_memory();
    gpu::DitContext cc, cu;
    add_row("dit_prepare_context", time_it(o.repeats, [&] { cc = runner->prepare(ctx, clip); }), 0,
            "text and image keys/values of all blocks, once per generation and branch");
    cu = runner->prepare(ctx_null, clip);
    r.rows.back().note += fmt::format("; GPU memory in use with both branches' contexts: {:.2f} GiB",
                                      gib(cuda::memory_stats().in_use));
    const double flops = runner->forward_flops(L);
    cuda::reset_peak_memory();
    // The process's first forward, with its stages timed when profiling: what one-time setup
    // (plans, heuristics, lazily loaded or runtime-compiled kernels) costs, and in which stage.
    gpu::DitProfile first_prof;
    const auto first_t0 = Clock::now();
    (void)runner->forward(x, 999.0, cc, y, o.profile ? &first_prof : nullptr);
    cuda::synchronize("bench first forward");
    const double first_s = std::chrono::duration<double>(Clock::now() - first_t0).count();
    const auto cond = time_it(o.repeats, [&] { (void)runner->forward(x, 999.0, cc, y); });
    // How long the host takes to enqueue a forward's launches against the device's time for it:
    // when the host is far ahead (and nothing in the forward waits for the device), the device's
    // queue never runs dry and a CUDA graph could save only the first launch's latency.
    const auto enq_t0 = Clock::now();
    (void)runner->forward(x, 999.0, cc, y);
    const double enqueue_s = std::chrono::duration<double>(Clock::now() - enq_t0).count();
    cuda::synchronize("bench enqueue");
    const double enqueue_total_s = std::chrono::duration<double>(Clock::now() - enq_t0).count();
    add_row("dit_forward_cond", cond, flops,
            fmt::format("{:.3f} PFLOP; the process's first call {:.3f} s (what a new process's first forward adds: "
                        "{:.3f} s); the host enqueues a forward in {:.1f} ms of its {:.3f} s",
                        flops / 1e15, first_s, first_s - cond.first, enqueue_s * 1e3, enqueue_total_s));
    if (runner->resident_blocks() < cfg.num_layers) {
      const double copy_ms = runner->last_copy_ms();
      const int64_t streamed = cfg.num_layers - runner->resident_blocks();
      r.rows.back().note += fmt::format(
          "; {} of {} blocks streamed from host memory: {:.0f} ms of copies per forward ({:.1f} GB/s) on a second "
          "stream, overlapped with compute (compare with an unlimited run for what is not hidden)",
          streamed, cfg.num_layers, copy_ms,
          static_cast<double>(runner->block_linear_bytes()) * static_cast<double>(streamed) / (copy_ms * 1e-3) / 1e9);
      log(r.rows.back().note);
    }
    cuda::reset_peak_memory();
    add_row("dit_forward_uncond", time_it(o.repeats, [&] { (void)runner->forward(x, 999.0, cu, y); }), flops, "");
    auto sched = Scheduler::create(Solver::UniPC, 1000, 16.0);
    cuda::reset_peak_memory();
    // Both branches in one batched forward when the memory (or the budget) allows, as the pipeline.
    const bool batched = runner->fits_batched_branches(L);
    add_row("denoise_step", time_it(o.repeats, [&] {
              if (batched) {
                const std::vector<Tensor> v2 = runner->forward_batch(x, 999.0, {&cc, &cu}, y);
                (void)sched->step(ops::cfg_combine(v2[0], v2[1], 5.0f), x);
              } else {
                const Tensor vc = runner->forward(x, 999.0, cc, y), vu = runner->forward(x, 999.0, cu, y);
                (void)sched->step(ops::cfg_combine(vc, vu, 5.0f), x);
              }
            }),
            2 * flops,
            batched ? "both guidance branches in one batched forward, guidance and the UniPC update"
                    : "two forwards (no room to batch them), guidance and the UniPC update");
    if (o.profile) {
      gpu::DitProfile prof;
      (void)runner->forward(x, 999.0, cc, y, &prof);
      for (const auto& [name, ms] : prof.ms) {
        BenchRow row;
        row.stage = name;
        row.seconds = ms / 1e3;
        const auto first = first_prof.ms.find(name);
        row.note = fmt::format("{:.1f}%; in the process's first forward {:.1f} ms", 100.0 * ms / prof.total_ms,
                               first == first_prof.ms.end() ? 0.0 : first->second);
        r.profile.push_back(row);
      }
      std::sort(r.profile.begin(), r.profile.end(),
                [](const BenchRow& a, const BenchRow& b) { return a.seconds > b.seconds; });
      BenchRow sa;
      for (BenchRow& row : r.profile) {
        if (row.stage == "self_attention") row.tflops = runner->self_attention_flops(L) / row.seconds / 1e12;
      }
    }
  }
  if (gen) {
    // The whole generation, as `generate --device cuda` runs it, back to back on the device: T5
    // (both prompts, or one with guidance 1), CLIP on two images, VAE encode of the conditioning
    // video, the context projections, `steps` denoising steps, VAE decode, and (in builds with the
    // MP4 writer) the MP4 encoded from the decoded frames as they arrive, as generate writes it
    // (to a temporary file, removed after). Loading and image decoding are left out.
    const bool mp4 = mp4_supported();
    const std::string mp4_path = bench_mp4_path();
    const bool img = cfg.model_type != "t2v";
    // As generation builds it: the first and last images, zeros between, in host memory.
    const Tensor cond_video = img ? random_conditioning_video(o.frames, o.height, o.width, 31, 34) : Tensor();
    const Tensor pixels = random_device({2, 3, clip_cfg.image_size, clip_cfg.image_size}, DType::F32, 32, 1.0f);
    const Tensor noise = random_device({cfg.out_dim, lat_t, lat_h, lat_w}, DType::F32, 33, 1.7f);
    const bool cfg_on = o.guidance != 1.0;
    std::vector<double> stage_s;
    auto run_once = [&](int steps) {
      stage_s.clear();
      auto lap = [&, t = Clock::now()]() mutable {
        cuda::synchronize("bench generate");
        const auto now = Clock::now();
        stage_s.push_back(std::chrono::duration<double>(now - t).count());
        t = now;
      };
      // A prompt of text_len / 4 tokens and a negative prompt of text_len / 2 (128 and 256 of
      // 512), each encoded as generation does: its own tokens, not the padding (encode_prefix).
      const Tensor ctx = t5->encode_prefix(ids, std::max<int64_t>(1, text_len / 4));
      const Tensor ctx_null = cfg_on ? t5->encode_prefix(ids, std::max<int64_t>(1, text_len / 2)) : Tensor();
      lap();
      const Tensor feats = img ? clip_model->encode(pixels) : Tensor();
      lap();
      Tensor y;
      if (img) {
        const Tensor lat = vae_model->encode(cond_video);
        y = Tensor::empty({cfg.in_dim - cfg.out_dim, lat_t, lat_h, lat_w}, DType::F32, Device::CUDA);
        copy_bytes(y.slice(0, y.size(0) - lat.size(0)), frame_mask(o.frames, lat_h, lat_w, true));
        copy_bytes(y.slice(y.size(0) - lat.size(0), y.size(0)), lat);
      }
      lap();
      const Tensor clip_ctx = img ? feats.view({-1, feats.size(2)}) : Tensor();
      const gpu::DitContext cc_ctx = runner->prepare(ctx, clip_ctx);
      const gpu::DitContext cu_ctx = cfg_on ? runner->prepare(ctx_null, clip_ctx) : gpu::DitContext{};
      auto sched = Scheduler::create(Solver::UniPC, steps, 16.0);
      Tensor x = noise.clone();
      const bool batch_gen = runner->fits_batched_branches(L);
      for (int i = 0; i < steps; ++i) {
        const double t = static_cast<double>(sched->timesteps()[static_cast<size_t>(i)]);
        Tensor v;
        if (cfg_on && batch_gen) {
          const std::vector<Tensor> v2 = runner->forward_batch(x, t, {&cc_ctx, &cu_ctx}, y);
          v = ops::cfg_combine(v2[0], v2[1], static_cast<float>(o.guidance));
        } else if (cfg_on) {
          v = ops::cfg_combine(runner->forward(x, t, cc_ctx, y), runner->forward(x, t, cu_ctx, y),
                               static_cast<float>(o.guidance));
        } else {
          v = runner->forward(x, t, cc_ctx, y);
        }
        x = sched->step(v, x);
      }
      lap();
      {
        std::optional<Mp4Stream> stream;
        if (mp4) stream.emplace(mp4_path, 16);
        WanVAE::FramesFn to_mp4;
        if (stream) to_mp4 = [&](const Tensor& frames, int64_t) { stream->add(frames); };
        (void)decode_tiled(*vae_model, x, plan ? plan->vae_tiling() : VaeTiling{}, {}, to_mp4);  // into host memory
        lap();
        if (stream) stream->finish();  // what is left of the encode after the decode
        lap();
      }
      std::error_code ec;
      std::filesystem::remove(mp4_path, ec);
    };
    run_once(1);  // warm-up: cuDNN and cuBLASLt pick their algorithms for every shape once
    cuda::synchronize("bench generate warm-up");
    cuda::reset_peak_memory();
    cuda::GpuMonitor monitor;
    const auto t0 = Clock::now();
    run_once(o.steps);
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    g_monitored = monitor.stop();  // after the clock: stopping waits up to one sampling period
    const std::pair<double, double> t{secs, secs};
    add_row("generate", t, 0,
            fmt::format("{} steps, guidance {}: text {:.2f} s, clip {:.2f} s, vae-encode {:.2f} s ({} unit calls "
                        "skipped), denoise {:.2f} s, vae-decode {:.2f} s (to host memory), {}",
                        o.steps, o.guidance, stage_s[0], stage_s[1], stage_s[2],
                        img ? vae_model->last_encode_skipped() : 0, stage_s[3], stage_s[4],
                        mp4 ? fmt::format("mp4 {:.2f} s after the decode (encoded during it)", stage_s[5])
                            : std::string("no MP4 writer in this build: the MP4 is not written")));
  }
  return r;
}

#endif

}  // namespace ib
