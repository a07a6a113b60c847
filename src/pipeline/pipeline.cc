// The FLF2V generation: text and image conditioning, the denoising loop with classifier-free
// guidance, and the VAE decode (spec section 2). Components load on first use and stay loaded.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>
#include <random>

#include "core/cuda_memory.h"
#include "core/log.h"
#include "core/parallel.h"
#include "inbetween/pipeline.h"
#include "io/image.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "models/clip.h"
#include "models/dit.h"
#include "models/lora.h"
#include "models/t5.h"
#include "models/vae.h"
#include "models/vae_tiling.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/resize.h"
#include "ops/sampler.h"
#include "pipeline/conditioning.h"
#include "pipeline/estimate.h"
#include "pipeline/generate_internal.h"
#include "pipeline/model_check.h"
#include "pipeline/scheduler.h"
#include "pipeline/vram_plan.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

#ifdef INBETWEEN_HAVE_CUDA
#include "gpu/dit_runner.h"
#endif

namespace ib {

namespace {
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::vector<LoraSpec> lora_specs(const std::vector<LoraFile>& loras) {
  std::vector<LoraSpec> specs;
  for (const LoraFile& l : loras) specs.push_back({l.path, l.scale});
  return specs;
}

}  // namespace

namespace {

// Concatenates [Ca, ...] and [Cb, ...] along dim 0, on b's device.
Tensor concat0(const Tensor& a, const Tensor& b) {
  Shape s = a.shape();
  s[0] += b.size(0);
  Tensor out = Tensor::empty(s, DType::F32, b.device());
  copy_bytes(out.slice(0, a.size(0)), a);
  copy_bytes(out.slice(a.size(0), s[0]), b);
  return out;
}
}  // namespace

Tensor fit_keyframe(const Tensor& image, int64_t height, int64_t width, LastFrameFit rule) {
  return rule == LastFrameFit::Upstream ? fit_last_frame_upstream(image, height, width)
                                        : fit_last_frame(image, height, width);
}

Tensor seeded_noise(const Shape& shape, uint64_t seed) {
  std::mt19937_64 rng(seed);
  Tensor t = Tensor::empty(shape, DType::F32);
  float* p = t.data<float>();
  const int64_t n = t.numel();
  constexpr double kTwoPi = 6.283185307179586;
  for (int64_t i = 0; i < n; i += 2) {
    // u1 in (0, 1], u2 in [0, 1): 53-bit uniforms.
    const double u1 = (static_cast<double>(rng() >> 11) + 1.0) * 0x1.0p-53;
    const double u2 = static_cast<double>(rng() >> 11) * 0x1.0p-53;
    const double r = std::sqrt(-2.0 * std::log(u1));
    p[i] = static_cast<float>(r * std::cos(kTwoPi * u2));
    if (i + 1 < n) p[i + 1] = static_cast<float>(r * std::sin(kTwoPi * u2));
  }
  return t;
}

struct Pipeline::Impl {
  PipelineOptions opts;
  ModelFolder folder;
  Device device = Device::CPU;
  Precision precision = Precision::BF16;  // opts.precision
  std::optional<text::Tokenizer> tokenizer;
  std::optional<T5Encoder> t5;
  std::optional<ClipVision> clip;
  std::optional<WanVAE> vae;
  std::optional<WanDiT> dit;
#ifdef INBETWEEN_HAVE_CUDA
  // --device cuda --precision bf16 or fp8: the GPU engine's DiT (src/gpu/); the f32 precision
  // keeps the reference WanDiT on the device instead.
  std::unique_ptr<gpu::DitRunner> runner;
#endif
  IntermediateFn dump;
  std::vector<LoraFile> merged_loras;  // the LoRAs in the loaded DiT (dit or runner)
  int64_t dit_forwards = 0;            // DiT forwards of the last generate() (test hook)
  bool always_unconditional = false;   // test hook: run the unconditional pass at guidance 1 too
  std::mutex check_mu;                 // check_files() runs once (the server validates on its HTTP threads)
  bool files_checked = false;
  // Speeds for estimate(), FLOP/s: a product timed on the device (once), and each stage's as its
  // last generation measured it (0: not yet).
  std::mutex speed_mu;
  double product_speed = 0;
  std::map<std::string, double> stage_speed;

  void emit(const std::string& name, const Tensor& t) const {
    if (dump) dump(name, t.device() == Device::CPU ? t : t.to(Device::CPU));
  }
  bool use_runner() const { return device == Device::CUDA && precision != Precision::F32; }
  // With --device cuda, T5 runs on the GPU unless --t5-device cpu, or "auto" and its bf16 weights
  // and activations do not fit what the budget leaves (the CPU then encodes in f32).
  bool t5_on_gpu() const {
    if (device != Device::CUDA || opts.t5_device == T5Placement::CPU) return false;
    if (opts.t5_device == T5Placement::CUDA || opts.vram_budget_gib == 0) return true;
    return t5_gpu_bytes(folder.t5, folder.dit.text_len) <= cuda::available_bytes();
  }
  // The generation's VRAM plan (a budget too small is refused here, before any work).
  VramPlan vram_plan(int64_t width, int64_t height, int64_t frames) const {
    return plan_vram(folder.dit, folder.t5, folder.clip.dim, dit_image_tokens(folder.dit.model_type, folder.clip),
                     folder.t5.dim,
                     precision == Precision::FP8 ? 1 : 2, width, height, frames,
                     static_cast<size_t>(opts.vram_budget_gib * 1024.0 * 1024.0 * 1024.0), opts.t5_device,
                     opts.attention == AttentionPrecision::FP8);
  }
  // T5 and the VAE: bf16 with the GPU engine (bf16 or fp8 DiT), exact f32 otherwise.
  DType gpu_dtype() const { return precision == Precision::F32 ? DType::F32 : DType::BF16; }

  // The VAE runs on the pipeline's device: with --precision bf16 its convolutions take bf16 on the
  // tensor cores (upstream's autocast option), with f32 they stay exact.
  void load_vae() {
    if (vae) return;
    vae = WanVAE::load(*open_tensor_store(folder.vae_path), folder.vae);
    if (device == Device::CUDA) vae->to(Device::CUDA, gpu_dtype());
  }

  // While a story runs, each distinct prompt's encoding is kept here (set_text_cache).
  bool cache_text = false;
  std::map<std::string, Tensor> text_cache;
  int64_t text_encodes = 0;  // T5 forwards run (test hook)

  // The negative prompt a generation with these options encodes.
  std::string negative_prompt(const GenerateOptions& o) const {
    return o.negative_prompt.empty() ? text::default_negative_prompt(folder.dit.model_type) : o.negative_prompt;
  }

  // Trimmed T5 output [Lt, dim] for a prompt (from the cache when it holds it).
  Tensor encode_text(const std::string& prompt) {
    if (cache_text) {
      auto it = text_cache.find(prompt);
      if (it != text_cache.end()) return it->second;
    }
    Tensor encoded = run_t5(prompt);
    if (cache_text) text_cache[prompt] = encoded;
    return encoded;
  }

  Tensor run_t5(const std::string& prompt) {
    ++text_encodes;
    if (!tokenizer) tokenizer = text::Tokenizer::load(folder.tokenizer_path);
    if (!t5) {
      t5 = T5Encoder::load(*open_tensor_store(folder.t5_path), folder.t5);
      // Upstream runs T5 in bf16; --precision f32 keeps every GPU component exact.
      if (t5_on_gpu()) t5->to(Device::CUDA, gpu_dtype());
    }
    const text::Tokens tok = tokenizer->encode(text::clean_prompt(prompt), folder.dit.text_len);
    return t5->encode_prefix(tok.ids, tok.length);  // the kept rows, without the padding's work
  }
};

Pipeline::Pipeline(const PipelineOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->opts = options;
  if (options.threads > 0) set_num_threads(options.threads);
  const ComputeDevice device = options.device;
  impl_->precision = options.precision;
  IB_CHECK(impl_->precision != Precision::FP8 || device == ComputeDevice::CUDA,
           "--precision fp8 runs on the GPU engine only: add --device cuda (the CPU computes in f32)");
  IB_CHECK(options.attention == AttentionPrecision::BF16 ||
               (device == ComputeDevice::CUDA && impl_->precision != Precision::F32),
           "--attention fp8 runs on the GPU engine only: add --device cuda with --precision bf16 or fp8");
  IB_CHECK(std::isfinite(options.vram_budget_gib) && options.vram_budget_gib >= 0 && options.vram_budget_gib <= 1e6,
           "--vram-budget {}: expected a size in GiB (0: no budget)", options.vram_budget_gib);
  IB_CHECK(options.vram_budget_gib == 0 || device == ComputeDevice::CUDA, "--vram-budget needs --device cuda");
  if (device == ComputeDevice::CUDA) {
    IB_CHECK(cuda_available(), "--device cuda: no CUDA device is available in this build or on this machine");
    // Every stage runs on the GPU (src/gpu/ for the DiT with --precision bf16 or fp8).
    impl_->device = Device::CUDA;
    cuda::set_memory_budget(static_cast<size_t>(options.vram_budget_gib * 1024.0 * 1024.0 * 1024.0));
  }
  impl_->folder = ModelFolder::open(options.model_dir);
}

Pipeline::~Pipeline() = default;

std::string Pipeline::describe() const {
  const DitConfig& d = impl_->folder.dit;
  return fmt::format("Wan2.1 {} DiT dim {} x {} layers ({} heads), text_len {}, device {}", d.model_type, d.dim,
                     d.num_layers, d.num_heads, d.text_len,
                     impl_->device == Device::CUDA
                         ? fmt::format("cuda (DiT in {}{}{}; T5, CLIP and VAE on the GPU too)",
                                       precision_name(impl_->precision),
                                       impl_->precision != Precision::F32 ? ", GPU engine" : "",
                                       impl_->opts.attention == AttentionPrecision::FP8 ? ", fp8 attention" : "")
                         : std::string("cpu"));
}

void Pipeline::check_files() const {
  std::lock_guard lock(impl_->check_mu);
  if (impl_->files_checked) return;
  check_model_files(impl_->folder);
  impl_->files_checked = true;
}

namespace {

// "frames: 80 is not of the form 4n+1; the nearest are 77 and 81".
void check_frames(int64_t frames) {
  if (frames >= 1 && (frames - 1) % 4 == 0) return;
  const int64_t below = frames < 1 ? 1 : frames - (frames - 1) % 4;
  const int64_t above = frames < 1 ? 5 : below + 4;
  if (frames < 1) fail("frames: {} is not a frame count (use 4n+1: 1, 5, 9, ..., 81)", frames);
  fail("frames: {} is not of the form 4n+1; the nearest are {} and {}", frames, below, above);
}

}  // namespace

namespace {

// Runs `check`; the ib::Error it throws becomes an OptionError naming `field`.
template <class Check>
void check_option(const char* field, Check&& check) {
  try {
    check();
  } catch (const OptionError&) {
    throw;
  } catch (const Error& e) {
    throw OptionError(field, e.what());
  }
}

}  // namespace

void Pipeline::validate(const GenerateOptions& o) const {
  // The options, cheapest first.
  check_option("frames", [&] {
    check_frames(o.frames);
    IB_CHECK(o.frames <= 1025, "frames: {} is too many (at most 1025)", o.frames);
  });
  check_option("steps", [&] {
    if (o.timesteps.empty()) IB_CHECK(o.steps >= 1 && o.steps <= 1000, "steps: {} is not in 1..1000", o.steps);
  });
  check_option("shift", [&] { IB_CHECK(std::isfinite(o.shift) && o.shift > 0, "shift: {} is not positive", o.shift); });
  check_option("guidance",
               [&] { IB_CHECK(std::isfinite(o.guidance) && o.guidance >= 0, "guidance: {} is negative", o.guidance); });
  check_option("timesteps", [&] {
    if (!o.timesteps.empty()) Scheduler::create(o.solver, o.timesteps, o.shift);  // checks the list
  });
  if (o.width != 0 || o.height != 0) {
    check_option("width", [&] {
      IB_CHECK(o.width >= 16 && o.height >= 16 && o.width % 16 == 0 && o.height % 16 == 0 && o.width <= 4096 &&
                   o.height <= 4096,
               "size: {}x{} must be multiples of 16 between 16 and 4096", o.width, o.height);
    });
  } else {
    check_option("max_area", [&] {
      IB_CHECK(std::isfinite(o.max_area) && o.max_area >= 256 && o.max_area <= 4096.0 * 4096.0,
               "max area: {} must be between 256 and 16777216 pixels", o.max_area);
    });
  }
  // flf2v needs both images, i2v the first, t2v none (given ones are ignored).
  const ModelFolder& f = impl_->folder;
  const std::string& type = f.dit.model_type;
  check_option(o.first_image.empty() ? "first_image" : "last_image", [&] {
    if (type == "flf2v")
      IB_CHECK(!o.first_image.empty() && !o.last_image.empty(), "both a first and a last image are needed");
    if (type == "i2v") IB_CHECK(!o.first_image.empty(), "a first image is needed (this is an i2v model)");
  });
  // The images decode (generate() decodes them again: it keeps nothing from here).
  int64_t h0 = 720, w0 = 1280;
  if (type != "t2v") {
    for (const auto& [path, which] : {std::pair{&o.first_image, "first"}, std::pair{&o.last_image, "last"}}) {
      if (path->empty()) continue;
      check_option(std::string(which) == "first" ? "first_image" : "last_image", [&] {
        IB_CHECK(std::filesystem::is_regular_file(*path), "{} image '{}' not found", which, *path);
        RgbImage img;
        try {
          img = read_image(*path);
        } catch (const Error& e) {
          fail("{} image '{}' cannot be read: {}", which, *path, e.what());
        }
        if (std::string(which) == "first") {
          h0 = img.height;
          w0 = img.width;
        }
      });
    }
  }
  // The video's size, and with it the latent's: an --init-noise file must hold that shape.
  const VideoSize size = (o.width > 0) ? VideoSize{o.height, o.width} : target_size(h0, w0, o.max_area);
  if (!o.init_noise.empty()) {
    check_option("init_noise", [&] {
      IB_CHECK(std::filesystem::is_regular_file(o.init_noise), "noise file not found: '{}'", o.init_noise);
      const Shape want{f.dit.out_dim, latent_frames(o.frames), size.height / 8, size.width / 8};
      std::shared_ptr<TensorStore> noise;
      try {
        noise = open_tensor_store(o.init_noise);
      } catch (const Error& e) {
        fail("noise file '{}' cannot be read: {}", o.init_noise, e.what());
      }
      IB_CHECK(noise->contains("noise"), "noise file '{}': tensor 'noise' is missing", o.init_noise);
      const TensorInfo info = noise->info("noise");
      IB_CHECK(info.shape == want,
               "noise file '{}': tensor 'noise' has the wrong shape: expected shape {} for this video ({}x{}, {} "
               "frames), found {}",
               o.init_noise, shape_str(want), size.width, size.height, o.frames, shape_str(info.shape));
      IB_CHECK(info.dtype == DType::F32 || info.dtype == DType::F16 || info.dtype == DType::BF16,
               "noise file '{}': tensor 'noise' is {}, expected a float tensor", o.init_noise, dtype_name(info.dtype));
    });
  }
  // The model's files: headers and tensor lists (once per pipeline); not an option's fault.
  check_files();
  // LoRAs: keys and shapes against the checkpoint's headers (no weights are read).
  if (!o.loras.empty())
    check_option("loras", [&] { check_loras(*open_tensor_store(f.dit_path), lora_specs(o.loras)); });
}

namespace {

// The settings' video size and work (validate() has accepted the options).
WorkCount work_of(const ModelFolder& f, const GenerateOptions& o, const VideoSize& size) {
  const int steps = o.timesteps.empty() ? o.steps : static_cast<int>(o.timesteps.size());
  return count_work(f, o.frames, size.height, size.width, steps, o.guidance != 1.0 ? 2 : 1);
}

// The stages' work by their timing names.
std::vector<std::pair<std::string, double>> stage_work(const WorkCount& w) {
  return {{"text", w.text},
          {"clip", w.clip},
          {"vae-encode", w.vae_encode},
          {"denoise", w.denoise},
          {"vae-decode", w.vae_decode}};
}

}  // namespace

TimeEstimate Pipeline::estimate(const GenerateOptions& o, int64_t image_width, int64_t image_height) const {
  Impl& im = *impl_;
  check_option("frames", [&] { check_frames(o.frames); });
  if (o.width != 0 || o.height != 0)
    check_option("width", [&] {
      IB_CHECK(o.width >= 16 && o.height >= 16 && o.width % 16 == 0 && o.height % 16 == 0 && o.width <= 4096 &&
                   o.height <= 4096,
               "size: {}x{} must be multiples of 16 between 16 and 4096", o.width, o.height);
    });
  VideoSize size{o.height, o.width};
  if (o.width <= 0) {
    if (image_width <= 0 || image_height <= 0) {
      if (im.folder.dit.model_type == "t2v") {
        image_width = 1280;
        image_height = 720;
      } else {
        check_option("first_image", [&] {
          const RgbImage img = read_image(o.first_image);
          image_width = img.width;
          image_height = img.height;
        });
      }
    }
    size = target_size(image_height, image_width, o.max_area);
  }
  const WorkCount w = work_of(im.folder, o, size);
  std::lock_guard lock(im.speed_mu);
  if (im.product_speed <= 0) {
    // A [512, 1024] x [1024, 1024] product, best of three, on the pipeline's device.
    const Tensor x = Tensor::full({512, 1024}, 0.5f).to(im.device);
    const Tensor wt = Tensor::full({1024, 1024}, 0.001f).to(im.device);
    double best = 1e9;
    for (int i = 0; i < 3; ++i) {
      const auto t0 = Clock::now();
      const Tensor y = ops::linear(x, wt);
      (void)y.to(Device::CPU).item_f32(0);  // waits for the device
      best = std::min(best, seconds_since(t0));
    }
    im.product_speed = 2.0 * 512 * 1024 * 1024 / std::max(best, 1e-6);
  }
  // Before a stage has been measured: the share of that product's speed each kind of work reaches
  // (measured on a two-core CPU with the tiny and demo models: convolutions 0.07, attention 0.08;
  // products of real sizes run closer to the test product; the GPU engine's bf16 products ~4x its f32).
  const std::map<std::string, double> share = {
      {"text", 0.3}, {"clip", 0.3}, {"vae-encode", 0.1}, {"denoise", 0.5}, {"vae-decode", 0.1}};
  constexpr double kAttentionShare = 0.08;
  TimeEstimate e;
  e.width = size.width;
  e.height = size.height;
  // Measured: the denoising and the decode (the stages that matter; the others may be too quick
  // to time on a small model) ran before.
  e.measured = im.stage_speed.count("denoise") && im.stage_speed.count("vae-decode");
  for (const auto& [stage, flops] : stage_work(w)) {
    if (flops <= 0) continue;
    auto it = im.stage_speed.find(stage);
    double speed = 0;
    if (it != im.stage_speed.end()) {
      speed = it->second;
      e.stages.push_back({stage, flops / speed});
    } else {
      const double gpu = stage == "denoise" && im.use_runner() ? 4.0 : 1.0;
      speed = im.product_speed * share.at(stage) * gpu;
      const double attention = stage == "denoise" ? w.denoise_attention : 0.0;
      e.stages.push_back({stage, (flops - attention) / speed + attention / (im.product_speed * kAttentionShare * gpu)});
    }
    e.seconds += e.stages.back().seconds;
  }
  return e;
}

GeneratedVideo Pipeline::generate(const GenerateOptions& o, const ProgressFn& progress, const FramesFn& frames) {
  validate(o);
  return generate_from(*this, o, nullptr, progress, frames);
}

GeneratedVideo generate_from(Pipeline& pipeline, const GenerateOptions& o, const PreparedImages* given,
                             const ProgressFn& progress, const FramesFn& frames) {
  Pipeline::Impl& im = pipeline.impl();
  const ModelFolder& f = im.folder;
  const auto t0 = Clock::now();
  GeneratedVideo result;
  auto stage_start = Clock::now();
  // Progress: the stage names are the timings' names. `remaining` is for the whole job (known from
  // the first denoising step on), `stage_remaining` for the running stage.
  auto report = [&](const std::string& stage, int step, int total, double remaining, double stage_remaining = -1) {
    if (progress) progress(Progress{stage, step, total, seconds_since(t0), remaining, stage_remaining});
  };
  auto end_stage = [&](const std::string& stage) {
    result.timings.push_back({stage, seconds_since(stage_start)});
    stage_start = Clock::now();
  };
  // A chunked VAE stage: a report after every chunk, with the time left at the rate so far (the
  // callback may throw ib::Cancelled, which stops the VAE between chunks). The first chunk is one
  // frame, every other one four: the rate is per frame.
  auto chunk_progress = [&](const std::string& stage, double after) {
    const auto start = Clock::now();
    return [&report, stage, after, start](int64_t done, int64_t total) {
      const auto frames = [](int64_t chunks) {
        return chunks <= 0 ? 0.0 : 1.0 + 4.0 * static_cast<double>(chunks - 1);
      };
      const double left = seconds_since(start) / frames(done) * (frames(total) - frames(done));
      report(stage, static_cast<int>(done), static_cast<int>(total), after >= 0 ? left + after : -1, left);
    };
  };

  // Images first: cheap, and bad files fail before the heavy work. i2v conditions on the first
  // image alone, t2v on none.
  const std::string& type = f.dit.model_type;
  const bool uses_image = type != "t2v", uses_last = type == "flf2v";
  report("images", 0, 1, -1);
  Tensor first, last;
  int64_t h0 = 720, w0 = 1280;
  if (given != nullptr) {
    IB_CHECK(uses_last && given->first.defined() && given->last.defined(), "prepared images need an flf2v model");
    first = given->first;
    last = given->last;
    h0 = given->height;
    w0 = given->width;
  } else {
    if (uses_image) {
      first = load_image(o.first_image);
      h0 = first.size(1);
      w0 = first.size(2);
    }
    if (uses_last) last = fit_keyframe(load_image(o.last_image), h0, w0, o.last_frame_fit);
  }
  const VideoSize size = (o.width > 0) ? VideoSize{o.height, o.width} : target_size(h0, w0, o.max_area);
  const int64_t lat_t = latent_frames(o.frames), lat_h = size.height / 8, lat_w = size.width / 8;
  std::optional<VramPlan> plan;
  if (im.use_runner()) plan = im.vram_plan(size.width, size.height, o.frames);  // may refuse the budget
  const Shape latent_shape{f.dit.out_dim, lat_t, lat_h, lat_w};
  Tensor noise;
  if (!o.init_noise.empty()) {
    noise = require(*SafetensorsFile::open(o.init_noise), "noise", latent_shape, DType::F32).clone();
    result.seed = -1;
  } else {
    uint64_t seed = static_cast<uint64_t>(o.seed);
    if (o.seed < 0) seed = std::random_device{}() & 0x7fffffffffffffffull;
    result.seed = static_cast<int64_t>(seed);
    noise = seeded_noise(latent_shape, seed);
  }
  im.emit("noise", noise);
  end_stage("images");

  // Guidance 1 is v_c alone: no negative prompt, no unconditional forward (distilled models).
  const bool unconditional = o.guidance != 1.0 || im.always_unconditional;
  const int text_passes = unconditional ? 2 : 1;
  report("text", 0, text_passes, -1);
  const Tensor context = im.encode_text(o.prompt);
  report("text", 1, text_passes, -1);
  Tensor context_null;
  if (unconditional) {
    context_null = im.encode_text(im.negative_prompt(o));
    report("text", 2, text_passes, -1);
  }
  // On the GPU, T5 (11 GB at full size) leaves the device once both prompts are encoded; the next
  // generation maps it again.
  if (im.device == Device::CUDA) im.t5.reset();
  im.emit("context", context);
  if (unconditional) im.emit("context_null", context_null);
  end_stage("text");

  Tensor clip_context, y;
  if (uses_image) {
    report("clip", 0, 1, -1);
    if (!im.clip) {
      im.clip = ClipVision::load(*open_tensor_store(f.clip_path), f.clip);
      // Upstream runs CLIP in f16; bf16 weights here as for T5 (--precision f32: f32, exact).
      if (im.device == Device::CUDA) im.clip->to(Device::CUDA, im.gpu_dtype());
    }
    const int64_t n_img = uses_last ? 2 : 1;
    Tensor pixels = Tensor::empty({n_img, 3, f.clip.image_size, f.clip.image_size}, DType::F32);
    const Tensor p0 = im.clip->preprocess(first);
    std::memcpy(pixels.raw(), p0.raw(), p0.nbytes());
    if (uses_last) {
      const Tensor p1 = im.clip->preprocess(last);
      std::memcpy(static_cast<char*>(pixels.raw()) + p0.nbytes(), p1.raw(), p1.nbytes());
    }
    const Tensor feats = im.clip->encode(pixels);  // [n_img, tokens, clip_dim]
    if (im.opts.vram_budget_gib > 0) im.clip.reset();  // under a budget CLIP leaves the GPU once done
    clip_context = feats.view({-1, feats.size(2)});
    im.emit("clip_context", feats);
    end_stage("clip");

    report("vae-encode", 0, static_cast<int>(lat_t), -1);
    im.load_vae();
    const Tensor first_r = ops::resize_bicubic(first, size.height, size.width);
    const Tensor last_r = uses_last ? ops::resize_bicubic(last, size.height, size.width) : Tensor();
    const Tensor cond_video = conditioning_video(first_r, last_r, o.frames);
    im.emit("cond_video", cond_video);
    im.vae->set_encode_frames_per_pass(plan && plan->vae_encode_by_frame ? 1 : 0);  // this generation's plan
    const Tensor cond_latent = im.vae->encode(cond_video, chunk_progress("vae-encode", -1));
    y = concat0(frame_mask(o.frames, lat_h, lat_w, uses_last), cond_latent);
    im.emit("y", y);
    end_stage("vae-encode");
  }
  // The decode takes about twice the encode of the same video (the Wan-VAE's decoder is the
  // heavier half); without an encode (t2v), half a denoising step is the guess.
  const double encode_s = result.timings.back().stage == "vae-encode" ? result.timings.back().seconds : -1;

  report("load-dit", 0, 1, -1);
  // LoRAs are merged into the weights at load (f32, before the GPU's bf16): other LoRAs than the
  // loaded DiT's mean loading it again.
  if (o.loras != im.merged_loras) {
    im.dit.reset();
#ifdef INBETWEEN_HAVE_CUDA
    im.runner.reset();
#endif
    im.merged_loras.clear();
  }
#ifdef INBETWEEN_HAVE_CUDA
  if (im.runner && plan && im.runner->resident_blocks() > plan->resident_blocks) im.runner.reset();  // re-place
  if (im.use_runner() && !im.runner) {
    // The release's weights, memory-mapped, tensor by tensor to the GPU: LoRAs merged there in f32,
    // then converted to the engine's bf16 or fp8 formats; host memory holds one tensor at a time
    // (fp8 checkpoints excepted: see DitRunner::load).
    const int64_t resident = plan && plan->resident_blocks < plan->blocks ? plan->resident_blocks : -1;
    if (resident >= 0) spdlog::info("{}", plan->describe());
    im.runner = gpu::DitRunner::load(*open_tensor_store(f.dit_path), f.dit, lora_specs(o.loras),
                                     im.precision == Precision::FP8 ? gpu::DitRunner::Format::FP8
                                                                    : gpu::DitRunner::Format::BF16,
                                     resident);
    im.runner->set_fp8_attention(im.opts.attention == AttentionPrecision::FP8);
    im.merged_loras = o.loras;
  }
#endif
  if (!im.use_runner() && !im.dit) {
    WanDiT dit = WanDiT::load(*open_tensor_store(f.dit_path), f.dit);
    apply_loras(dit, lora_specs(o.loras));
    if (im.device == Device::CUDA) dit.to(Device::CUDA, DType::F32);
    im.dit = std::move(dit);
    im.merged_loras = o.loras;
  }
  end_stage("load-dit");

  auto sched = o.timesteps.empty() ? Scheduler::create(o.solver, o.steps, o.shift)
                                   : Scheduler::create(o.solver, o.timesteps, o.shift);
  const auto loop_start = Clock::now();
  const int n = sched->num_steps();
  report("denoise", 0, n, -1);
  const auto decode_guess = [&](double per_step) { return encode_s >= 0 ? 2.0 * encode_s : 0.5 * per_step; };
  // The GPU engine keeps the latent, the conditioning and the projected text/image keys and values
  // on the device from the first step to the last.
  Tensor x = im.use_runner() ? noise.to(Device::CUDA) : noise;
  std::function<std::pair<Tensor, Tensor>(double)> velocities;
#ifdef INBETWEEN_HAVE_CUDA
  gpu::DitContext ctx_c, ctx_u;
  Tensor y_dev;
  if (im.use_runner()) {
    im.runner->set_ffn_chunk_rows(plan ? plan->ffn_chunk_rows : 0);  // this generation's plan
    im.runner->set_contexts_per_block(plan && plan->contexts_per_block);
    ctx_c = im.runner->prepare(context, clip_context);
    if (unconditional) ctx_u = im.runner->prepare(context_null, clip_context);
    if (y.defined()) y_dev = y.to(Device::CUDA);
    // Both guidance branches in one batched forward when the GPU has room for twice the
    // activations (with a quarter to spare), else one after the other.
    const int64_t tokens = latent_shape[1] * (latent_shape[2] / 2) * (latent_shape[3] / 2);
    const bool batched = unconditional && im.runner->fits_batched_branches(tokens);
    velocities = [&, batched](double t) {
      if (batched) {
        im.dit_forwards += 2;
        std::vector<Tensor> v = im.runner->forward_batch(x, t, {&ctx_c, &ctx_u}, y_dev);
        return std::pair{v[0], v[1]};
      }
      ++im.dit_forwards;
      Tensor vc = im.runner->forward(x, t, ctx_c, y_dev);
      if (!unconditional) return std::pair{vc, Tensor()};
      ++im.dit_forwards;
      return std::pair{vc, im.runner->forward(x, t, ctx_u, y_dev)};
    };
  }
#endif
  if (!velocities)
    velocities = [&](double t) {
      ++im.dit_forwards;
      Tensor vc = im.dit->forward(x, t, context, clip_context, y);
      if (!unconditional) return std::pair{vc, Tensor()};
      ++im.dit_forwards;
      return std::pair{vc, im.dit->forward(x, t, context_null, clip_context, y)};
    };
  im.dit_forwards = 0;
  for (int i = 0; i < n; ++i) {
    const double t = static_cast<double>(sched->timesteps()[static_cast<size_t>(i)]);
    const auto [vc, vu] = velocities(t);
    // v = v_u + g (v_c - v_u) and the sampler step, on the latent's device.
    const Tensor v = vu.defined() ? ops::cfg_combine(vc, vu, static_cast<float>(o.guidance)) : vc;
    x = sched->step(v, x);
    im.emit(fmt::format("latent_{}", i + 1), x);
    const double per_step = seconds_since(loop_start) / (i + 1);
    const double left = per_step * (n - i - 1);
    report("denoise", i + 1, n, left + decode_guess(per_step), left);
  }
  end_stage("denoise");

  const double decode_s = decode_guess(result.timings.back().seconds / std::max(n, 1));
  report("vae-decode", 0, static_cast<int>(lat_t), decode_s, decode_s);
  im.load_vae();
  // On the GPU the latent goes straight from the last step into the decoder.
  const Tensor latent = im.device == Device::CUDA ? x.to(Device::CUDA) : x;
  // Under a budget that asks for it, in spatial tiles (the decode's peak follows a tile, not a frame).
  const VaeTiling tiling = plan ? plan->vae_tiling() : VaeTiling{};
  // Under a budget the denoising's cached buffers go back first (without one they stay for the next job).
  if (im.opts.vram_budget_gib > 0 && im.device == Device::CUDA) cuda::empty_cache();
  WanVAE::FramesFn on_frames;
  if (frames)
    on_frames = [&frames](const Tensor& t, int64_t first) {
      frames(DecodedFrames{t.data<float>(), first, t.size(1), t.size(2), t.size(3)});
    };
  const Tensor video = decode_tiled(*im.vae, latent, tiling, chunk_progress("vae-decode", 0), on_frames);
  im.emit("video", video);
  end_stage("vae-decode");

  // The speeds this generation reached, for later estimates (stages long enough to time).
  {
    const WorkCount work = work_of(f, o, size);
    std::lock_guard lock(im.speed_mu);
    for (const auto& [stage, flops] : stage_work(work))
      for (const StageTime& t : result.timings)
        if (t.stage == stage && flops > 0 && t.seconds > 0.05) im.stage_speed[stage] = flops / t.seconds;
  }

  result.frames = video.size(1);
  result.height = video.size(2);
  result.width = video.size(3);
  result.data.assign(video.data<float>(), video.data<float>() + video.numel());
  return result;
}

void set_text_cache(Pipeline& pipeline, bool on) {
  Pipeline::Impl& im = pipeline.impl();
  im.cache_text = on;
  im.text_cache.clear();
}

void encode_prompts(Pipeline& pipeline, const std::vector<GenerateOptions>& generations,
                    const std::function<void(int done, int total)>& tick) {
  Pipeline::Impl& im = pipeline.impl();
  IB_CHECK(im.cache_text, "encode_prompts: the text cache is off");
  std::vector<std::string> prompts;
  auto add = [&](const std::string& p) {
    if (std::find(prompts.begin(), prompts.end(), p) == prompts.end()) prompts.push_back(p);
  };
  for (const GenerateOptions& o : generations) {
    add(o.prompt);
    if (o.guidance != 1.0 || im.always_unconditional) add(im.negative_prompt(o));
  }
  const int total = static_cast<int>(prompts.size());
  if (tick) tick(0, total);
  for (int i = 0; i < total; ++i) {
    im.encode_text(prompts[static_cast<size_t>(i)]);
    if (tick) tick(i + 1, total);
  }
  // As in generate(): on the GPU, T5 leaves the device once the prompts are encoded.
  if (im.device == Device::CUDA) im.t5.reset();
}

int64_t text_encodings(Pipeline& pipeline) { return pipeline.impl().text_encodes; }

VramPlan vram_plan_for(const Pipeline& pipeline, int64_t width, int64_t height, int64_t frames) {
  return pipeline.impl().vram_plan(width, height, frames);
}

int64_t dit_resident_blocks(const Pipeline& pipeline) {
#ifdef INBETWEEN_HAVE_CUDA
  if (pipeline.impl().runner) return pipeline.impl().runner->resident_blocks();
#endif
  (void)pipeline;
  return -1;
}

std::string model_type(const Pipeline& pipeline) {
  return pipeline.impl().folder.dit.model_type;
}

std::string pipeline_identity(const Pipeline& pipeline) {
  const PipelineOptions& p = pipeline.impl().opts;
  std::error_code ec;
  const std::filesystem::path dir = std::filesystem::weakly_canonical(p.model_dir, ec);
  return fmt::format("model {}\ndevice {}\nprecision {}", ec ? p.model_dir : dir.string(), device_option_name(p.device),
                     precision_name(p.precision));
}

void set_intermediate_callback(Pipeline& pipeline, IntermediateFn fn) { pipeline.impl().dump = std::move(fn); }
int64_t dit_forwards(Pipeline& pipeline) { return pipeline.impl().dit_forwards; }
void set_always_unconditional(Pipeline& pipeline, bool on) { pipeline.impl().always_unconditional = on; }

}  // namespace ib
