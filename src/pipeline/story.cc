// Keyframe stories: one FLF2V generation per pair of neighbouring keyframes on one loaded pipeline,
// joined at the shared keyframes (include/inbetween/story.h has the contract). Finished segments
// can be kept in a parts folder, keyed by a hash of their inputs, so a stopped story resumes.
#include "inbetween/story.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <random>
#include <vector>

#include <fmt/ranges.h>

#include "core/check.h"
#include "inbetween/error.h"
#include "io/atomic_file.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "pipeline/generate_internal.h"

namespace ib {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// 64-bit FNV-1a: the parts' keys (a changed input gives another name, not a security check).
struct Fnv {
  uint64_t h = 0xcbf29ce484222325ull;
  void add(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  }
  void add(const std::string& s) {
    add(s.data(), s.size());
    add("\n", 1);
  }
};

// The hash of a file's bytes (the keyframes: a changed image invalidates its segments).
uint64_t file_hash(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  IB_CHECK(f.good(), "cannot read '{}'", path);
  Fnv h;
  char buf[1 << 16];
  while (f) {
    f.read(buf, sizeof buf);
    h.add(buf, static_cast<size_t>(f.gcount()));
  }
  return h.h;
}

// Everything a segment's frames depend on, as text: the pipeline, every generation option, the
// two keyframes' bytes and the size all keyframes are fitted to.
std::string segment_inputs(const std::string& pipeline_id, const GenerateOptions& o, int64_t ref_height,
                           int64_t ref_width) {
  std::string s = "inbetween story segment v1\n" + pipeline_id + "\n";
  s += fmt::format("first {:016x}\nlast {:016x}\nkeyframe size {}x{}\n", file_hash(o.first_image),
                   file_hash(o.last_image), ref_width, ref_height);
  s += fmt::format("prompt {}\nnegative {}\n", o.prompt, o.negative_prompt);
  s += fmt::format("frames {}\nmax_area {}\nsize {}x{}\nsteps {}\nshift {}\nguidance {}\nsolver {}\n", o.frames,
                   o.max_area, o.width, o.height, o.steps, o.shift, o.guidance, solver_name(o.solver));
  s += fmt::format("timesteps {}\n", fmt::join(o.timesteps, ","));
  for (const LoraFile& l : o.loras) {
    std::error_code ec;
    s += fmt::format("lora {} {} {}\n", l.path, l.scale, fs::file_size(l.path, ec));
  }
  s += fmt::format("seed {}\nfit {}\n", o.seed, last_frame_fit_name(o.last_frame_fit));
  return s;
}

std::string part_name(int k, const std::string& inputs) {
  Fnv h;
  h.add(inputs);
  return fmt::format("segment-{:03d}-{:016x}.safetensors", k, h.h);
}

// The seed a story resuming from parts_dir uses when none is given: the one its first run drew.
std::string seed_file(const std::string& parts_dir) { return parts_dir + "/seed"; }

}  // namespace

int64_t story_seed(const StoryOptions& s) {
  if (s.generate.seed >= 0) return s.generate.seed;
  if (!s.parts_dir.empty()) {
    std::ifstream f(seed_file(s.parts_dir));
    int64_t seed = -1;
    if (f >> seed && seed >= 0 && seed <= std::numeric_limits<int64_t>::max() / 2) return seed;
  }
  std::random_device rd;
  // 62 bits: S + k stays far from the int64 range's end.
  return static_cast<int64_t>((static_cast<uint64_t>(rd()) << 32 | rd()) & 0x3fffffffffffffffull);
}

namespace {

void write_text_file(const std::string& path, const std::string& text) {
  AtomicFile f(path);
  f.write(text.data(), text.size());
  f.commit();
}

// Adds a segment's stage timings to the story's (by stage, in the order they first ran).
void add_timings(std::vector<StageTime>& total, const std::vector<StageTime>& add) {
  for (const StageTime& t : add) {
    auto it = std::find_if(total.begin(), total.end(), [&](const StageTime& x) { return x.stage == t.stage; });
    if (it == total.end())
      total.push_back(t);
    else
      it->seconds += t.seconds;
  }
}

// Copies video [3, F, H, W] from its frame `skip` on into the story's frames [3, T, H, W] from
// frame `at` on (the story's data is sized at the first segment).
void place_frames(GeneratedVideo& story, const GeneratedVideo& v, int64_t at, int64_t skip) {
  const int64_t plane = v.height * v.width, count = v.frames - skip;
  if (story.data.empty()) {
    story.height = v.height;
    story.width = v.width;
    story.data.resize(static_cast<size_t>(3 * story.frames * plane));
  }
  IB_CHECK(v.height == story.height && v.width == story.width && at + count <= story.frames,
           "a segment of {}x{}, {} frames does not fit the story's {}x{}, {} frames", v.width, v.height, v.frames,
           story.width, story.height, story.frames);
  for (int64_t c = 0; c < 3; ++c)
    std::copy_n(v.data.data() + (c * v.frames + skip) * plane, count * plane,
                story.data.data() + (c * story.frames + at) * plane);
}

// The time left for the whole story from a segment's progress: this segment's time left plus, for
// each segment still to generate after it, the time a generated segment takes (measured on the
// ones before, or estimated from this one: its time so far without loading the DiT, plus its rest).
struct StoryClock {
  Clock::time_point start = Clock::now();
  double generated_s = 0;  // finished generated segments, without loading the DiT
  int generated = 0;
  double load_s = 0;       // the running segment's DiT load
  Clock::time_point segment_start = Clock::now(), load_start;
  std::string stage;

  void begin_segment() {
    segment_start = Clock::now();
    load_s = 0;
    stage.clear();
  }
  void end_segment() {
    generated_s += seconds_since(segment_start) - load_s;
    ++generated;
  }
  void on_stage(const std::string& s) {
    if (s == stage) return;
    if (stage == "load-dit") load_s += seconds_since(load_start);
    if (s == "load-dit") load_start = Clock::now();
    stage = s;
  }
  double remaining(const Progress& p, int later) const {
    const double so_far = seconds_since(segment_start) - load_s;
    if (generated > 0) {
      const double per = generated_s / generated;
      const double here = p.remaining_s >= 0 ? p.remaining_s : std::max(per - so_far, 0.0);
      return here + per * later;
    }
    if (p.remaining_s < 0) return -1;
    return p.remaining_s + (so_far + p.remaining_s) * later;
  }
};

// Turns the text cache on for the story's length.
struct TextCacheScope {
  Pipeline& pipeline;
  explicit TextCacheScope(Pipeline& p) : pipeline(p) { set_text_cache(pipeline, true); }
  ~TextCacheScope() { set_text_cache(pipeline, false); }
  TextCacheScope(const TextCacheScope&) = delete;
  TextCacheScope& operator=(const TextCacheScope&) = delete;
};

}  // namespace

int story_segments(const StoryOptions& s) {
  const int n = static_cast<int>(s.keyframes.size());
  return s.loop ? n : n - 1;
}

GenerateOptions segment_options(const StoryOptions& s, int k, int64_t seed) {
  const int n = static_cast<int>(s.keyframes.size());
  IB_CHECK(k >= 0 && k < story_segments(s), "segment {} is not in 0..{}", k, story_segments(s) - 1);
  GenerateOptions o = s.generate;
  o.first_image = s.keyframes[static_cast<size_t>(k)];
  o.last_image = s.keyframes[static_cast<size_t>((k + 1) % n)];
  o.prompt = s.prompts.empty() ? std::string() : s.prompts.size() == 1 ? s.prompts[0] : s.prompts[static_cast<size_t>(k)];
  o.seed = seed + k;
  return o;
}

void validate_story(const Pipeline& pipeline, const StoryOptions& s) {
  const int n = static_cast<int>(s.keyframes.size());
  IB_CHECK(n >= 2, "a story needs at least 2 keyframes; {} given", n);
  for (int i = 0; i < n; ++i) {
    const std::string& path = s.keyframes[static_cast<size_t>(i)];
    IB_CHECK(fs::is_regular_file(path), "keyframe {} '{}': no such file", i + 1, path);
    try {
      read_image(path);
    } catch (const Error& e) {
      fail("keyframe {} '{}': not a readable PNG, JPEG or WebP image ({})", i + 1, path, e.what());
    }
  }
  const int segments = story_segments(s);
  IB_CHECK(s.prompts.size() <= 1 || static_cast<int>(s.prompts.size()) == segments,
           "{} prompts for {} segments: give one prompt per segment ({} keyframes{}) or one for all",
           s.prompts.size(), segments, n, s.loop ? " with loop" : "");
  IB_CHECK(s.generate.init_noise.empty(), "init noise: a story's segments draw their noise from the seed");
  IB_CHECK(s.generate.frames >= 5, "frames: {} is too few for a story's segments (at least 5)", s.generate.frames);
  IB_CHECK(s.generate.seed <= std::numeric_limits<int64_t>::max() - segments,
           "seed: {} is too large for {} segments (each uses seed + k)", s.generate.seed, segments);
  const std::string type = model_type(pipeline);
  IB_CHECK(type == "flf2v", "a story needs a first-last-frame (flf2v) model; this one is {}", type);
  for (int k = 0; k < segments; ++k) {
    try {
      pipeline.validate(segment_options(s, k, std::max<int64_t>(s.generate.seed, 0)));
    } catch (const Error& e) {
      fail("segment {} of {}: {}", k + 1, segments, e.what());
    }
  }
}

namespace {

// Segment k's decoded frames as the story's: segment 0's as they are, frames 1..F-1 of a later one
// moved to 1 + k(F-1) onwards (its frame 0 is the previous segment's last, handed out already).
void hand_out_segment_frames(const FramesFn& frames, const DecodedFrames& d, int k, int64_t segment_frames) {
  const int64_t skip = (k > 0 && d.first == 0) ? 1 : 0, count = d.count - skip;
  if (count <= 0) return;
  const int64_t at = k * (segment_frames - 1) + d.first + skip;
  if (skip == 0) {
    frames(DecodedFrames{d.data, at, count, d.height, d.width});
    return;
  }
  const int64_t plane = d.height * d.width;
  std::vector<float> rest(static_cast<size_t>(3 * count * plane));
  for (int64_t c = 0; c < 3; ++c)
    std::copy_n(d.data + (c * d.count + skip) * plane, count * plane, rest.data() + c * count * plane);
  frames(DecodedFrames{rest.data(), at, count, d.height, d.width});
}

}  // namespace

StoryResult generate_story(Pipeline& pipeline, const StoryOptions& s, const ProgressFn& progress,
                           const FramesFn& frames) {
  validate_story(pipeline, s);
  const int n = static_cast<int>(s.keyframes.size()), segments = story_segments(s);
  const int64_t seed = story_seed(s);
  StoryClock clock;
  StoryResult result;
  result.segments = segments;
  result.video.seed = seed;
  result.video.frames = segments * (s.generate.frames - 1) + 1;

  // Every keyframe at the first one's size (fit_keyframe returns same-size images unchanged).
  std::vector<Tensor> keys;
  for (int i = 0; i < n; ++i) {
    const Tensor img = load_image(s.keyframes[static_cast<size_t>(i)]);
    keys.push_back(i == 0 ? img : fit_keyframe(img, keys[0].size(1), keys[0].size(2), s.generate.last_frame_fit));
  }
  const int64_t ref_h = keys[0].size(1), ref_w = keys[0].size(2);

  // Which segments the parts folder already holds; parts of other inputs are removed.
  std::vector<GenerateOptions> opts;
  std::vector<std::string> parts(static_cast<size_t>(segments));
  std::vector<std::string> inputs(static_cast<size_t>(segments));
  for (int k = 0; k < segments; ++k) opts.push_back(segment_options(s, k, seed));
  if (!s.parts_dir.empty()) {
    fs::create_directories(s.parts_dir);
    write_text_file(seed_file(s.parts_dir), fmt::format("{}\n", seed));
    const std::string id = pipeline_identity(pipeline);
    for (int k = 0; k < segments; ++k) {
      inputs[static_cast<size_t>(k)] = segment_inputs(id, opts[static_cast<size_t>(k)], ref_h, ref_w);
      parts[static_cast<size_t>(k)] = part_name(k, inputs[static_cast<size_t>(k)]);
    }
    for (const auto& e : fs::directory_iterator(s.parts_dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind("segment-", 0) == 0 && std::find(parts.begin(), parts.end(), name) == parts.end())
        fs::remove(e.path());
    }
  }
  auto part_path = [&](int k) { return s.parts_dir + "/" + parts[static_cast<size_t>(k)]; };
  auto have_part = [&](int k) { return !s.parts_dir.empty() && fs::is_regular_file(part_path(k)); };

  // Each distinct prompt of the segments to generate, encoded once.
  TextCacheScope cache(pipeline);
  std::vector<GenerateOptions> to_generate;
  for (int k = 0; k < segments; ++k)
    if (!have_part(k)) to_generate.push_back(opts[static_cast<size_t>(k)]);
  const auto text_start = Clock::now();
  encode_prompts(pipeline, to_generate, [&](int done, int total) {
    if (progress) progress(Progress{"text", done, total, seconds_since(clock.start), -1, -1, 1, segments});
  });
  result.video.timings.push_back({"text", seconds_since(text_start)});

  int later = static_cast<int>(to_generate.size());  // segments to generate, the running one included
  for (int k = 0; k < segments; ++k) {
    GeneratedVideo v;
    if (have_part(k)) {
      const Tensor t = SafetensorsFile::open(part_path(k))->get("video");
      IB_CHECK(t.dim() == 4 && t.size(0) == 3 && t.size(1) == s.generate.frames,
               "part '{}' holds a video of shape {}, not [3, {}, H, W]", part_path(k), shape_str(t.shape()),
               s.generate.frames);
      v.frames = t.size(1);
      v.height = t.size(2);
      v.width = t.size(3);
      v.data.assign(t.data<float>(), t.data<float>() + t.numel());
      result.reused_segments.push_back(k);
      ++result.reused;
      if (frames)
        hand_out_segment_frames(frames, DecodedFrames{v.data.data(), 0, v.frames, v.height, v.width}, k,
                                s.generate.frames);
    } else {
      --later;
      clock.begin_segment();
      const PreparedImages images{keys[static_cast<size_t>(k)], keys[static_cast<size_t>((k + 1) % n)], ref_h, ref_w};
      FramesFn segment_frames;
      if (frames)
        segment_frames = [&, k](const DecodedFrames& d) { hand_out_segment_frames(frames, d, k, s.generate.frames); };
      v = generate_from(
          pipeline, opts[static_cast<size_t>(k)], &images,
          [&](const Progress& p) {
            clock.on_stage(p.stage);
            if (!progress) return;
            Progress q = p;
            q.segment = k + 1;
            q.segments = segments;
            q.elapsed_s = seconds_since(clock.start);
            q.remaining_s = clock.remaining(p, later);
            progress(q);
          },
          segment_frames);
      clock.end_segment();
      add_timings(result.video.timings, v.timings);
      if (!s.parts_dir.empty()) {
        const Tensor t = Tensor::from_vector(v.data, {3, v.frames, v.height, v.width});
        save_safetensors(part_path(k), {{"video", t}}, {{"inputs", inputs[static_cast<size_t>(k)]}});
      }
    }
    // Segment 0 whole, then frames 1..F-1 of each later one (its frame 0 is the previous one's last).
    place_frames(result.video, v, k == 0 ? 0 : 1 + k * (s.generate.frames - 1), k == 0 ? 0 : 1);
  }
  // The timings in the order of a generation's stages (the prompts were encoded first).
  const std::vector<std::string> order = {"images", "text", "clip", "vae-encode", "load-dit", "denoise", "vae-decode"};
  auto rank = [&](const StageTime& t) { return std::find(order.begin(), order.end(), t.stage) - order.begin(); };
  std::stable_sort(result.video.timings.begin(), result.video.timings.end(),
                   [&](const StageTime& x, const StageTime& y) { return rank(x) < rank(y); });
  return result;
}

}  // namespace ib
