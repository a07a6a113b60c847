// The FLF2V generation: text and image conditioning, the denoising loop with classifier-free
// guidance, and the VAE decode (spec section 2). Components load on first use and stay loaded.
#include <chrono>
#include <cmath>
#include <filesystem>
#include <optional>
#include <random>

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
#include "ops/elementwise.h"
#include "ops/resize.h"
#include "ops/sampler.h"
#include "pipeline/conditioning.h"
#include "pipeline/generate_internal.h"
#include "pipeline/scheduler.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

#ifdef INBETWEEN_HAVE_CUDA
#include "core/cuda_memory.h"
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

// v = v_u + g (v_c - v_u), f32, on the velocities' device.
Tensor guided_velocity(const Tensor& vc, const Tensor& vu, float g) { return ops::cfg_combine(vc, vu, g); }

// One sampler step on the latent's device (the scheduler keeps its history there).
Tensor scheduler_step(Scheduler& sched, const Tensor& v, const Tensor& x) { return sched.step(v, x); }

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
  std::optional<text::Tokenizer> tokenizer;
  std::optional<T5Encoder> t5;
  std::optional<ClipVision> clip;
  std::optional<WanVAE> vae;
  std::optional<WanDiT> dit;
#ifdef INBETWEEN_HAVE_CUDA
  // --device cuda --precision bf16: the GPU engine's DiT (src/gpu/); the f32 precision keeps the
  // reference WanDiT on the device instead.
  std::unique_ptr<gpu::DitRunner> runner;
#endif
  IntermediateFn dump;
  std::vector<LoraFile> merged_loras;  // the LoRAs in the loaded DiT (dit or runner)
  int64_t dit_forwards = 0;            // DiT forwards of the last generate() (test hook)
  bool always_unconditional = false;   // test hook: run the unconditional pass at guidance 1 too

  void emit(const std::string& name, const Tensor& t) const {
    if (dump) dump(name, t.device() == Device::CPU ? t : t.to(Device::CPU));
  }
  bool use_runner() const { return device == Device::CUDA && opts.precision == "bf16"; }

  // The VAE runs on the pipeline's device: with --precision bf16 its convolutions take bf16 on the
  // tensor cores (upstream's autocast option), with f32 they stay exact.
  void load_vae() {
    if (vae) return;
    vae = WanVAE::load(*open_tensor_store(folder.vae_path), folder.vae);
    if (device == Device::CUDA) vae->to(Device::CUDA, opts.precision == "bf16" ? DType::BF16 : DType::F32);
  }

  // Trimmed T5 output [Lt, dim] for a prompt.
  Tensor encode_text(const std::string& prompt) {
    if (!tokenizer) tokenizer = text::Tokenizer::load(folder.tokenizer_path);
    if (!t5) {
      t5 = T5Encoder::load(*open_tensor_store(folder.t5_path), folder.t5);
      // Upstream runs T5 in bf16; --precision f32 keeps every GPU component exact.
      if (device == Device::CUDA) t5->to(Device::CUDA, opts.precision == "bf16" ? DType::BF16 : DType::F32);
    }
    const text::Tokens tok = tokenizer->encode(text::clean_prompt(prompt), folder.dit.text_len);
    const Tensor hidden = t5->encode(tok.ids, tok.mask);
    return hidden.slice(0, tok.length).clone();
  }
};

Pipeline::Pipeline(const PipelineOptions& options) : impl_(std::make_unique<Impl>()) {
  impl_->opts = options;
  if (options.threads > 0) set_num_threads(options.threads);
  IB_CHECK(options.device == "cpu" || options.device == "cuda", "unknown device '{}' (expected cpu or cuda)",
           options.device);
  IB_CHECK(options.precision == "bf16" || options.precision == "f32", "unknown precision '{}' (expected bf16 or f32)",
           options.precision);
  if (options.device == "cuda") {
    IB_CHECK(cuda_available(), "--device cuda: no CUDA device is available in this build or on this machine");
    // Every stage runs on the GPU (src/gpu/ for the DiT with --precision bf16).
    impl_->device = Device::CUDA;
  }
  impl_->folder = ModelFolder::open(options.model_dir);
}

Pipeline::~Pipeline() = default;

std::string Pipeline::describe() const {
  const DitConfig& d = impl_->folder.dit;
  return fmt::format("Wan2.1 {} DiT dim {} x {} layers ({} heads), text_len {}, device {}", d.model_type, d.dim,
                     d.num_layers, d.num_heads, d.text_len,
                     impl_->device == Device::CUDA
                         ? fmt::format("cuda (DiT in {}{}; T5, CLIP and VAE on the GPU too)", impl_->opts.precision,
                                       impl_->opts.precision == "bf16" ? ", GPU engine" : "")
                         : std::string("cpu"));
}

void Pipeline::validate(const GenerateOptions& o) const {
  latent_frames(o.frames);
  if (o.timesteps.empty()) IB_CHECK(o.steps >= 1 && o.steps <= 1000, "steps must be in 1..1000, got {}", o.steps);
  IB_CHECK(std::isfinite(o.shift) && o.shift > 0, "shift must be positive, got {}", o.shift);
  IB_CHECK(std::isfinite(o.guidance) && o.guidance >= 0, "guidance must be >= 0, got {}", o.guidance);
  const Solver solver = parse_solver(o.solver);
  if (!o.timesteps.empty()) Scheduler::create(solver, o.timesteps, o.shift);  // checks the list
  IB_CHECK(o.frames <= 1025, "frame count {} is too large (at most 1025)", o.frames);
  if (o.width != 0 || o.height != 0) {
    IB_CHECK(o.width >= 16 && o.height >= 16 && o.width % 16 == 0 && o.height % 16 == 0 && o.width <= 4096 &&
                 o.height <= 4096,
             "size {}x{} must be multiples of 16 between 16 and 4096", o.width, o.height);
  } else {
    IB_CHECK(std::isfinite(o.max_area) && o.max_area >= 256 && o.max_area <= 4096.0 * 4096.0,
             "max area {} must be between 256 and 16777216 pixels", o.max_area);
  }
  IB_CHECK(o.last_frame_fit == "cover" || o.last_frame_fit == "upstream",
           "last frame fit '{}' is not cover or upstream", o.last_frame_fit);
  // flf2v needs both images, i2v the first, t2v none (given ones are ignored).
  const std::string& type = impl_->folder.dit.model_type;
  if (type == "flf2v") IB_CHECK(!o.first_image.empty() && !o.last_image.empty(), "both a first and a last image are needed");
  if (type == "i2v") IB_CHECK(!o.first_image.empty(), "a first image is needed (this is an i2v model)");
  if (type != "t2v")
    for (const std::string* p : {&o.first_image, &o.last_image})
      if (!p->empty()) IB_CHECK(std::filesystem::is_regular_file(*p), "image not found: '{}'", *p);
  if (!o.init_noise.empty()) IB_CHECK(std::filesystem::is_regular_file(o.init_noise), "noise file not found: '{}'", o.init_noise);
  // LoRAs: keys and shapes against the checkpoint's headers (no weights are read).
  if (!o.loras.empty()) check_loras(*open_tensor_store(impl_->folder.dit_path), lora_specs(o.loras));
}

GeneratedVideo Pipeline::generate(const GenerateOptions& o, const ProgressFn& progress) {
  validate(o);
  Impl& im = *impl_;
  const ModelFolder& f = im.folder;
  const auto t0 = Clock::now();
  GeneratedVideo result;
  auto stage_start = Clock::now();
  auto report = [&](const std::string& stage, int step, int total, double remaining) {
    if (progress) progress(Progress{stage, step, total, seconds_since(t0), remaining});
  };
  auto end_stage = [&](const std::string& stage) {
    result.timings.push_back({stage, seconds_since(stage_start)});
    stage_start = Clock::now();
  };

  // Images first: cheap, and bad files fail before the heavy work. i2v conditions on the first
  // image alone, t2v on none.
  const std::string& type = f.dit.model_type;
  const bool uses_image = type != "t2v", uses_last = type == "flf2v";
  report("image", 0, 1, -1);
  Tensor first, last;
  if (uses_image) first = load_image(o.first_image);
  const int64_t h0 = uses_image ? first.size(1) : 720, w0 = uses_image ? first.size(2) : 1280;
  if (uses_last) {
    last = load_image(o.last_image);
    last = o.last_frame_fit == "upstream" ? fit_last_frame_upstream(last, h0, w0) : fit_last_frame(last, h0, w0);
  }
  const VideoSize size = (o.width > 0) ? VideoSize{o.height, o.width} : target_size(h0, w0, o.max_area);
  const int64_t lat_t = latent_frames(o.frames), lat_h = size.height / 8, lat_w = size.width / 8;
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

  // Guidance 1 is v_c alone: no negative prompt, no unconditional forward (distilled models).
  const bool unconditional = o.guidance != 1.0 || im.always_unconditional;
  report("text", 0, 2, -1);
  const Tensor context = im.encode_text(o.prompt);
  report("text", 1, 2, -1);
  Tensor context_null;
  if (unconditional)
    context_null = im.encode_text(o.negative_prompt.empty() ? text::default_negative_prompt(type) : o.negative_prompt);
  // On the GPU, T5 (11 GB at full size) leaves the device once both prompts are encoded; the next
  // generation maps it again.
  if (im.device == Device::CUDA) im.t5.reset();
  im.emit("context", context);
  if (unconditional) im.emit("context_null", context_null);
  end_stage("text");

  Tensor clip_context, y;
  if (uses_image) {
    report("image", 0, 1, -1);
    if (!im.clip) {
      im.clip = ClipVision::load(*open_tensor_store(f.clip_path), f.clip);
      if (im.device == Device::CUDA) im.clip->to(Device::CUDA, DType::F32);
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
    clip_context = feats.view({-1, feats.size(2)});
    im.emit("clip_context", feats);
    end_stage("clip");

    report("vae-encode", 0, 1, -1);
    im.load_vae();
    const Tensor first_r = ops::resize_bicubic(first, size.height, size.width);
    const Tensor last_r = uses_last ? ops::resize_bicubic(last, size.height, size.width) : Tensor();
    const Tensor cond_video = conditioning_video(first_r, last_r, o.frames);
    im.emit("cond_video", cond_video);
    const Tensor cond_latent = im.vae->encode(cond_video);
    y = concat0(frame_mask(o.frames, lat_h, lat_w, uses_last), cond_latent);
    im.emit("y", y);
    end_stage("vae-encode");
  }

  report("load", 0, 1, -1);
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
  if (im.use_runner() && !im.runner) {
    // The release's weights, memory-mapped, converted to the engine's bf16 formats on the GPU.
    WanDiT host = WanDiT::load(*open_tensor_store(f.dit_path), f.dit);
    apply_loras(host, lora_specs(o.loras));
    im.runner = gpu::DitRunner::create(host);
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

  const Solver solver = parse_solver(o.solver);
  auto sched = o.timesteps.empty() ? Scheduler::create(solver, o.steps, o.shift)
                                   : Scheduler::create(solver, o.timesteps, o.shift);
  const auto loop_start = Clock::now();
  const int n = sched->num_steps();
  report("denoise", 0, n, -1);
  // The GPU engine keeps the latent, the conditioning and the projected text/image keys and values
  // on the device from the first step to the last.
  Tensor x = im.use_runner() ? noise.to(Device::CUDA) : noise;
  std::function<std::pair<Tensor, Tensor>(double)> velocities;
#ifdef INBETWEEN_HAVE_CUDA
  gpu::DitContext ctx_c, ctx_u;
  Tensor y_dev;
  if (im.use_runner()) {
    ctx_c = im.runner->prepare(context, clip_context);
    if (unconditional) ctx_u = im.runner->prepare(context_null, clip_context);
    if (y.defined()) y_dev = y.to(Device::CUDA);
    // Both guidance branches in one batched forward when the GPU has room for twice the
    // activations (with a quarter to spare), else one after the other.
    const int64_t tokens = latent_shape[1] * (latent_shape[2] / 2) * (latent_shape[3] / 2);
    const cuda::MemoryStats ms = cuda::memory_stats();
    const bool batched = unconditional && static_cast<double>(im.runner->activation_bytes(tokens, 2)) * 1.25 <=
                                              static_cast<double>(ms.device_free + (ms.reserved - ms.in_use));
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
    const Tensor v = vu.defined() ? guided_velocity(vc, vu, static_cast<float>(o.guidance)) : vc;
    x = scheduler_step(*sched, v, x);
    im.emit(fmt::format("latent_{}", i + 1), x);
    const double per_step = seconds_since(loop_start) / (i + 1);
    report("denoise", i + 1, n, per_step * (n - i - 1) + per_step * 0.5);
  }
  end_stage("denoise");

  report("vae-decode", 0, 1, -1);
  im.load_vae();
  // On the GPU the latent goes straight from the last step into the decoder.
  const Tensor video = im.vae->decode(im.device == Device::CUDA ? x.to(Device::CUDA) : x).to(Device::CPU);
  im.emit("video", video);
  end_stage("vae-decode");
  report("vae-decode", 1, 1, 0);

  result.frames = video.size(1);
  result.height = video.size(2);
  result.width = video.size(3);
  result.data.assign(video.data<float>(), video.data<float>() + video.numel());
  return result;
}

void set_intermediate_callback(Pipeline& pipeline, IntermediateFn fn) { pipeline.impl().dump = std::move(fn); }
int64_t dit_forwards(Pipeline& pipeline) { return pipeline.impl().dit_forwards; }
void set_always_unconditional(Pipeline& pipeline, bool on) { pipeline.impl().always_unconditional = on; }

}  // namespace ib
