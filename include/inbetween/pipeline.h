// Public API: generate the video between two keyframes with a Wan2.1 FLF2V model folder.
// The pipeline keeps its components loaded between calls (the server reuses one instance).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ib {

// The options that take one of a few names, typed in GenerateOptions and PipelineOptions. Each has
// one parse function, the only place its names are compared (front ends parse the user's text with
// it; anything else throws ib::OptionError whose field() and message name the option and whose
// message lists the accepted names), and one name function (the name parse accepts: what JSON and
// logs print).
enum class ComputeDevice { CPU, CUDA };      // PipelineOptions::device: "cpu", "cuda"
enum class Precision { BF16, FP8, F32 };     // PipelineOptions::precision: "bf16", "fp8", "f32"
enum class T5Placement { Auto, CPU, CUDA };  // PipelineOptions::t5_device: "auto", "cpu", "cuda"
enum class Solver { UniPC, DpmPP, Euler };   // GenerateOptions::solver: "unipc", "dpm++", "euler"
enum class LastFrameFit { Cover, Upstream }; // GenerateOptions::last_frame_fit: "cover", "upstream"
enum class AttentionPrecision { BF16, FP8 }; // PipelineOptions::attention: "bf16", "fp8"

ComputeDevice parse_device(std::string_view name);
Precision parse_precision(std::string_view name);
T5Placement parse_t5_placement(std::string_view name);
Solver parse_solver(std::string_view name);
LastFrameFit parse_last_frame_fit(std::string_view name);
AttentionPrecision parse_attention(std::string_view name);
const char* device_option_name(ComputeDevice d);
const char* precision_name(Precision p);
const char* t5_placement_name(T5Placement p);
const char* solver_name(Solver s);
const char* last_frame_fit_name(LastFrameFit f);
const char* attention_name(AttentionPrecision a);

// A LoRA (or weight-patch) safetensors file merged into the DiT's weights at load, in f32:
// W' = W + scale·(alpha/rank)·up·down. Formats: kohya, PEFT/diffusers, diff/diff_b patches.
struct LoraFile {
  std::string path;
  double scale = 1.0;
  bool operator==(const LoraFile&) const = default;
};

struct GenerateOptions {
  std::string prompt;
  std::string negative_prompt;  // empty: the model's default negative prompt (as upstream)
  std::string first_image;      // path of the first frame (not used by t2v models)
  std::string last_image;       // path of the last frame (flf2v models only)
  int64_t frames = 81;          // 4n + 1
  double max_area = 1280.0 * 720.0;
  int64_t width = 0, height = 0;  // explicit size (multiples of 16); 0: from max_area and the first
                                  // image's aspect ratio (t2v: 16:9 landscape, upstream's default)
  int steps = 50;
  double shift = 16.0;
  double guidance = 5.0;  // 1: no unconditional pass at all (one DiT forward per step, no negative prompt)
  Solver solver = Solver::UniPC;  // UniPC, DPM++ or Euler (flow-matching Euler, for distilled models)
  // Explicit training timesteps for the euler solver, strictly decreasing in [1, 1000] (distilled
  // models: 1000, 750, 500, 250); the shift applies to them as to every schedule. When given, their
  // count is the number of steps and `steps` is not used.
  std::vector<int64_t> timesteps;
  // Merged into the DiT in this order when it loads; a generation with other LoRAs reloads it.
  std::vector<LoraFile> loras;
  int64_t seed = -1;             // < 0: a random seed (reported in the result)
  std::string init_noise;        // safetensors file with tensor `noise` f32 [16, T', h, w]; replaces the draw
  // A last image of another size than the first: Cover scales it to cover the first image's size
  // and centre-crops it (what upstream means to do); Upstream reproduces upstream's actual
  // handling (crop with swapped sides and grey padding, no resize; spec 4.3).
  LastFrameFit last_frame_fit = LastFrameFit::Cover;
};

struct Progress {
  // In order: "images", "text", "clip", "vae-encode", "load-dit", "denoise", "vae-decode" (the
  // names of GeneratedVideo::timings; i2v/t2v skip what they do not use).
  std::string stage;
  int step = 0;  // within the stage: prompts encoded, VAE chunks (latent frames) done, steps done
  int total = 0;
  double elapsed_s = 0;          // since generate() started
  double remaining_s = -1;       // estimate for the whole job (from the first denoising step on), < 0 when unknown
  double stage_remaining_s = -1; // estimate for the running stage (VAE chunks, denoising steps), < 0 when unknown
  // A story (inbetween/story.h): the running segment, 1-based, of `segments`; elapsed_s and
  // remaining_s are then the whole story's. 0 outside stories.
  int segment = 0, segments = 0;
};
// Called at every step and VAE chunk; may throw ib::Cancelled to stop the job there.
using ProgressFn = std::function<void(const Progress&)>;

// Frames of the video handed out while generate() still runs, as the decode finishes them:
// frames [first, first + count) as f32 [3, count, height, width] values in [-1, 1] (clamped, the
// values GeneratedVideo::data will hold) at `data`, valid during the call only. Every frame comes
// exactly once, in order. It is called on the thread that moves the decoded frames to host memory,
// so it should return quickly (a slow one holds up the decode; inbetween/video.h's
// VideoFileWriter queues MP4 frames for its own encoder thread); an exception it throws ends the
// generation with that error.
struct DecodedFrames {
  const float* data = nullptr;
  int64_t first = 0, count = 0, height = 0, width = 0;
};
using FramesFn = std::function<void(const DecodedFrames&)>;

struct StageTime {
  std::string stage;
  double seconds = 0;
};

struct GeneratedVideo {
  int64_t frames = 0, height = 0, width = 0;
  std::vector<float> data;  // [3, frames, height, width] in [-1, 1]
  int64_t seed = 0;          // the seed used (or -1 with --init-noise)
  std::vector<StageTime> timings;
};

// How long a generation will take on this pipeline's device: the work of each stage counted from
// the model's sizes and the settings, over the speeds this pipeline measured in its own earlier
// generations, or before the first one, over a quick product timed on the device (rougher).
struct TimeEstimate {
  int64_t width = 0, height = 0;  // the video's size for these options
  double seconds = 0;             // the whole generation (without loading the weights)
  std::vector<StageTime> stages;  // text, clip, vae-encode, denoise, vae-decode
  bool measured = false;          // the denoising's and the decode's speeds come from an earlier generation
};

struct PipelineOptions {
  std::string model_dir;
  ComputeDevice device = ComputeDevice::CPU;
  int threads = 0;  // CPU threads, 0: all cores
  // With device CUDA: the DiT's linear layers in BF16 (tensor cores, f32 accumulation, half the
  // memory; upstream's autocast precision), FP8 (e4m3 weights with per-channel scales and
  // per-token activation scales, a quarter of f32's memory; GPUs of compute capability 8.9+; T5
  // and the VAE as with bf16) or F32 (exact, for comparisons). FP8 needs device CUDA.
  Precision precision = Precision::BF16;
  // With device CUDA: the most GPU memory the engine may hold, GiB (0: the whole GPU). DiT
  // blocks that do not fit stay in page-locked host memory and are copied to the GPU one block
  // ahead while the previous one computes; a budget too small for a generation is refused before
  // it starts, naming the minimum.
  double vram_budget_gib = 0;
  // Where T5 runs with device CUDA: Auto (the GPU when it fits the budget, else the CPU), CPU or
  // CUDA.
  T5Placement t5_device = T5Placement::Auto;
  // With the GPU engine (device CUDA, precision BF16 or FP8): the DiT's self-attention in bf16
  // (cuDNN's flash attention) or fp8 (q, k, v, the probabilities and the output in e4m3 with
  // per-tensor scales, through cuDNN's fp8 kernel: ~45% faster attention on an H200, a video
  // within the fp8 quality bar; GPUs of compute capability 8.9+ with cuDNN 9.14 or later).
  AttentionPrecision attention = AttentionPrecision::BF16;
};

class Pipeline {
 public:
  explicit Pipeline(const PipelineOptions& options);  // opens the folder, checks configs
  ~Pipeline();
  Pipeline(const Pipeline&) = delete;
  Pipeline& operator=(const Pipeline&) = delete;

  // Validates everything that can be known before computing and throws ib::Error naming the option
  // or file at fault: the options' ranges, the images (they must decode), the video size, an
  // --init-noise file's tensor, the LoRAs against the DiT, and check_files(). generate() calls it
  // first, so a generation that would fail later fails here, before any stage runs.
  void validate(const GenerateOptions& options) const;
  // The model folder's weight files: every file opens, every DiT shard's header is valid, and the
  // tensor lists and shapes are what config.json and inbetween.json imply (headers only; the
  // first call checks, later ones return at once).
  void check_files() const;
  // frames (optional): the decoded frames as they are made (see DecodedFrames), e.g. to encode the
  // video file during the decode; the returned video holds them all as well.
  GeneratedVideo generate(const GenerateOptions& options, const ProgressFn& progress = {},
                          const FramesFn& frames = {});

  // The expected run time of generate(options). image_width/height: the first image's size when
  // options.width/height are 0 (then the size follows max_area); 0 reads options.first_image.
  // Throws ib::Error on options validate() would refuse.
  TimeEstimate estimate(const GenerateOptions& options, int64_t image_width = 0, int64_t image_height = 0) const;

  // A one-line description of the loaded model (type, sizes, device).
  std::string describe() const;

  struct Impl;
  Impl& impl() { return *impl_; }  // for the library's internal hooks
  const Impl& impl() const { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace ib
