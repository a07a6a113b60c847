// Keyframe stories on the fixture model: the story's frames are exactly the single generations of
// the contract in include/inbetween/story.h (bit-exact on the CPU), --loop, resuming from parts
// (skipped segments counted, changed inputs redone), the CLI, and bad input that writes nothing.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <algorithm>
#include <fstream>
#include <set>
#include <vector>

#include "common/command.h"
#include "common/fixture.h"
#include "e2e/e2e_settings.h"
#include "inbetween/error.h"
#include "inbetween/pipeline.h"
#include "inbetween/story.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "pipeline/generate_internal.h"

namespace ib {
namespace {

namespace fs = std::filesystem;
using test::run_command;

std::string cli() { return test::binary_dir() + "/inbetween"; }
std::string quote(const std::string& s) { return "'" + s + "'"; }

// A third keyframe of the fixture's size: its first image mirrored left to right, with `shade`
// added to every red sample (another shade: another image).
std::string mirrored_keyframe(const std::string& dir, const std::string& name, int shade = 0) {
  RgbImage img = read_image(test::fixture_path("first.png"));
  RgbImage out = img;
  for (int64_t y = 0; y < img.height; ++y)
    for (int64_t x = 0; x < img.width; ++x)
      for (int64_t c = 0; c < 3; ++c) {
        const uint8_t v = img.rgb[static_cast<size_t>((y * img.width + (img.width - 1 - x)) * 3 + c)];
        out.rgb[static_cast<size_t>((y * img.width + x) * 3 + c)] =
            c == 0 ? static_cast<uint8_t>((v + shade) % 256) : v;
      }
  const std::string path = dir + "/" + name;
  save_png(path, out.rgb.data(), out.width, out.height);
  return path;
}

// The fixture's settings, cut down to stay quick: 2 steps, the seeded noise.
StoryOptions quick_story(const std::vector<std::string>& keyframes) {
  StoryOptions s;
  s.generate = test::fixture_options();
  s.generate.init_noise.clear();
  s.generate.steps = 2;
  s.generate.seed = 11;
  s.keyframes = keyframes;
  return s;
}

std::vector<std::string> three_keyframes(const std::string& dir) {
  return {test::fixture_path("first.png"), test::fixture_path("last.png"), mirrored_keyframe(dir, "third.png")};
}

// Frame t of a [3, T, H, W] video as its three planes, for bit-exact comparison.
std::vector<float> frame(const GeneratedVideo& v, int64_t t) {
  const int64_t plane = v.height * v.width;
  std::vector<float> f;
  for (int64_t c = 0; c < 3; ++c) {
    const float* p = v.data.data() + (c * v.frames + t) * plane;
    f.insert(f.end(), p, p + plane);
  }
  return f;
}

// Segment k of a story against a single generation, bit for bit: the story's frame k(F-1)+j is the
// segment's frame j, for j from 0 in segment 0 and from 1 in later ones (their frame 0 is the joint,
// which the story takes from the segment before).
void expect_segment_equals(const GeneratedVideo& story, int k, const GeneratedVideo& single) {
  ASSERT_EQ(story.height, single.height);
  ASSERT_EQ(story.width, single.width);
  const int64_t F = single.frames;
  int64_t differing = 0;
  for (int64_t j = k == 0 ? 0 : 1; j < F; ++j) {
    const std::vector<float> a = frame(story, k * (F - 1) + j), b = frame(single, j);
    if (std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) != 0) ++differing;
  }
  EXPECT_EQ(differing, 0) << "segment " << k << ": " << differing << " of " << F << " frames differ";
}

// The contract written out by hand (not through segment_options): keyframe k to keyframe k+1, that
// segment's prompt, seed S+k, every other option the story's.
GeneratedVideo single_run(Pipeline& pipeline, const StoryOptions& s, const std::string& first, const std::string& last,
                          const std::string& prompt, int64_t seed) {
  GenerateOptions o = s.generate;
  o.first_image = first;
  o.last_image = last;
  o.prompt = prompt;
  o.seed = seed;
  return pipeline.generate(o);
}

// The frames a story hands out (StoryOptions' FramesFn), put together: each frame once, in order,
// into a video of the story's layout [3, F, H, W].
struct HandedFrames {
  std::vector<DecodedFrames> pieces;
  std::vector<std::vector<float>> data;
  FramesFn fn() {
    return [this](const DecodedFrames& d) {
      pieces.push_back(d);
      data.emplace_back(d.data, d.data + 3 * d.count * d.height * d.width);
    };
  }
  // Checks the order and returns the assembled video's values (empty on a gap or an overlap).
  std::vector<float> video(int64_t frames) const {
    if (pieces.empty()) return {};
    const int64_t plane = pieces[0].height * pieces[0].width;
    std::vector<float> out(static_cast<size_t>(3 * frames * plane));
    int64_t next = 0;
    for (size_t i = 0; i < pieces.size(); ++i) {
      const DecodedFrames& d = pieces[i];
      EXPECT_EQ(d.first, next) << "piece " << i;
      if (d.first != next || d.first + d.count > frames) return {};
      for (int64_t c = 0; c < 3; ++c)
        std::copy_n(data[i].begin() + c * d.count * plane, d.count * plane, out.begin() + (c * frames + d.first) * plane);
      next += d.count;
    }
    EXPECT_EQ(next, frames);
    return out;
  }
};

TEST(Story, SegmentsAreTheSingleGenerations) {
  const std::string dir = test::temp_dir();
  StoryOptions s = quick_story(three_keyframes(dir));
  s.prompts = {"a small blue bird takes off", "the bird lands on a branch"};
  Pipeline pipeline(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
  const int64_t encodes_before = text_encodings(pipeline);
  std::set<int> segments_seen;
  int64_t reports = 0;
  HandedFrames handed;
  const StoryResult r = generate_story(
      pipeline, s,
      [&](const Progress& p) {
        ++reports;
        EXPECT_EQ(p.segments, 2);
        segments_seen.insert(p.segment);
      },
      handed.fn());
  // The frames came out segment by segment as each was decoded, and make the story's video.
  EXPECT_GT(handed.pieces.size(), 2u);
  EXPECT_EQ(handed.video(r.video.frames), r.video.data);
  // Two prompts and the default negative prompt, each encoded once for the whole story.
  EXPECT_EQ(text_encodings(pipeline) - encodes_before, 3);
  EXPECT_EQ(segments_seen, (std::set<int>{1, 2}));
  EXPECT_GT(reports, 0);
  const int64_t F = s.generate.frames;
  EXPECT_EQ(r.segments, 2);
  EXPECT_EQ(r.reused, 0);
  EXPECT_EQ(r.video.frames, 2 * (F - 1) + 1);
  EXPECT_EQ(r.video.seed, 11);
  const auto settings = test::e2e_settings();
  EXPECT_EQ(r.video.height, settings["height"].get<int64_t>());
  EXPECT_EQ(r.video.width, settings["width"].get<int64_t>());
  EXPECT_EQ(r.video.data.size(), static_cast<size_t>(3 * r.video.frames * r.video.height * r.video.width));
  for (const char* stage : {"text", "denoise", "vae-decode"})
    EXPECT_TRUE(std::any_of(r.video.timings.begin(), r.video.timings.end(),
                            [&](const StageTime& t) { return t.stage == stage; }))
        << stage;

  const GeneratedVideo seg0 = single_run(pipeline, s, s.keyframes[0], s.keyframes[1], s.prompts[0], 11);
  const GeneratedVideo seg1 = single_run(pipeline, s, s.keyframes[1], s.keyframes[2], s.prompts[1], 12);
  ASSERT_EQ(seg0.frames, F);
  expect_segment_equals(r.video, 0, seg0);
  expect_segment_equals(r.video, 1, seg1);
  // The seeds differ per segment: segment 1 with segment 0's seed is another video.
  const GeneratedVideo wrong_seed = single_run(pipeline, s, s.keyframes[1], s.keyframes[2], s.prompts[1], 11);
  EXPECT_NE(wrong_seed.data, seg1.data);
}

TEST(Story, LoopEndsOnTheFirstKeyframe) {
  const std::string dir = test::temp_dir();
  StoryOptions s = quick_story(three_keyframes(dir));
  s.loop = true;
  s.prompts = {"a bird"};
  Pipeline pipeline(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
  const StoryResult r = generate_story(pipeline, s);
  const int64_t F = s.generate.frames;
  EXPECT_EQ(r.segments, 3);
  EXPECT_EQ(r.video.frames, 3 * (F - 1) + 1);
  expect_segment_equals(r.video, 2, single_run(pipeline, s, s.keyframes[2], s.keyframes[0], "a bird", 13));
  expect_segment_equals(r.video, 0, single_run(pipeline, s, s.keyframes[0], s.keyframes[1], "a bird", 11));
}

std::set<std::string> files_in(const std::string& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

TEST(Story, ResumeKeepsFinishedSegmentsAndRedoesChangedOnes) {
  const std::string dir = test::temp_dir();
  std::vector<std::string> keys = three_keyframes(dir);
  keys.push_back(mirrored_keyframe(dir, "fourth.png", 40));
  StoryOptions s = quick_story(keys);
  s.prompts = {"one", "two", "three"};
  Pipeline pipeline(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
  const GeneratedVideo fresh = generate_story(pipeline, s).video;

  // Stopped in segment 3: segments 1 and 2 are kept.
  s.parts_dir = dir + "/out.parts";
  EXPECT_THROW(generate_story(pipeline, s,
                              [](const Progress& p) {
                                if (p.segment == 3 && p.stage == "denoise") throw Cancelled();
                              }),
               Cancelled);
  std::set<std::string> parts;
  for (const std::string& f : files_in(s.parts_dir))
    if (f.rfind("segment-", 0) == 0) parts.insert(f);
  EXPECT_EQ(parts.size(), 2u);

  // The same story again: segments 0 and 1 come from the parts (no DiT runs for them), the rest is
  // generated, and the video is the uninterrupted one.
  int generated_segments_reported = 0;
  HandedFrames handed;  // the reused segments' frames too, in the story's order
  StoryResult r = generate_story(
      pipeline, s,
      [&](const Progress& p) {
        if (p.stage == "denoise" && p.step == 0) ++generated_segments_reported;
      },
      handed.fn());
  EXPECT_EQ(r.reused, 2);
  EXPECT_EQ(r.reused_segments, (std::vector<int>{0, 1}));
  EXPECT_EQ(generated_segments_reported, 1);
  EXPECT_EQ(r.video.data, fresh.data);
  EXPECT_EQ(handed.video(r.video.frames), fresh.data);

  // A changed prompt invalidates its segment only; its old part is removed.
  s.prompts[1] = "two, changed";
  r = generate_story(pipeline, s);
  EXPECT_EQ(r.reused_segments, (std::vector<int>{0, 2}));
  const std::set<std::string> after_prompt = files_in(s.parts_dir);
  EXPECT_EQ(std::count_if(after_prompt.begin(), after_prompt.end(),
                          [](const std::string& f) { return f.rfind("segment-001-", 0) == 0; }),
            1);
  EXPECT_EQ(after_prompt.count(*std::next(parts.begin())), 0u) << "the invalidated part is still there";

  // A changed keyframe (same name, other pixels) invalidates the two segments it belongs to.
  mirrored_keyframe(dir, "third.png", 90);
  r = generate_story(pipeline, s);
  EXPECT_EQ(r.reused_segments, (std::vector<int>{0}));

  // A changed option invalidates every segment.
  s.generate.shift = 5;
  r = generate_story(pipeline, s);
  EXPECT_EQ(r.reused, 0);
  r = generate_story(pipeline, s);
  EXPECT_EQ(r.reused, 3);

  // Without a seed, a resumed story takes the seed its first run drew (so the same command resumes).
  s.generate.seed = -1;
  s.parts_dir = dir + "/random.parts";
  const StoryResult first_run = generate_story(pipeline, s);
  const StoryResult again = generate_story(pipeline, s);
  EXPECT_EQ(again.video.seed, first_run.video.seed);
  EXPECT_EQ(again.reused, 3);
}

TEST(Story, LibraryRefusesBadStories) {
  Pipeline pipeline(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
  const std::string dir = test::temp_dir();
  auto error_of = [&](const StoryOptions& s) {
    try {
      validate_story(pipeline, s);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("(no error)");
  };
  StoryOptions s = quick_story({test::fixture_path("first.png")});
  EXPECT_NE(error_of(s).find("at least 2 keyframes"), std::string::npos) << error_of(s);
  s = quick_story(three_keyframes(dir));
  s.prompts = {"a", "b", "c"};
  EXPECT_NE(error_of(s).find("3 prompts for 2 segments"), std::string::npos) << error_of(s);
  s.prompts = {};
  s.generate.init_noise = test::fixture_path("e2e.safetensors");
  EXPECT_NE(error_of(s).find("init noise"), std::string::npos) << error_of(s);
  s.generate.init_noise.clear();
  s.generate.steps = 0;
  EXPECT_NE(error_of(s).find("steps"), std::string::npos) << error_of(s);
}

// ---- the CLI ----

std::string story_command(const StoryOptions& s, const std::string& out, const std::string& extra) {
  std::string cmd = fmt::format("{} story --model {} --output {} --quiet --frames {} --max-area {} --steps {} --seed {}",
                                cli(), quote(test::model_dir()), quote(out), s.generate.frames, s.generate.max_area,
                                s.generate.steps, s.generate.seed);
  return cmd + " " + extra;
}

std::string keyframe_args(const std::vector<std::string>& keys) {
  std::string args;
  for (const std::string& k : keys) args += " --keyframe " + quote(k);
  return args;
}

GeneratedVideo read_video(const std::string& path) {
  const Tensor t = SafetensorsFile::open(path)->get("video");
  GeneratedVideo v;
  v.frames = t.size(1);
  v.height = t.size(2);
  v.width = t.size(3);
  v.data.assign(t.data<float>(), t.data<float>() + t.numel());
  return v;
}

TEST(StoryCli, MatchesSingleGenerateRunsAndResumes) {
  const std::string dir = test::temp_dir();
  // --keyframes-dir takes the images in name order: 1-..., 2-..., 3-...
  const std::string keys_dir = dir + "/keys";
  fs::create_directories(keys_dir);
  fs::copy_file(test::fixture_path("first.png"), keys_dir + "/1-first.png");
  fs::copy_file(test::fixture_path("last.png"), keys_dir + "/2-last.png");
  mirrored_keyframe(keys_dir, "3-mirrored.png");
  std::ofstream(keys_dir + "/notes.txt") << "not an image";
  const std::vector<std::string> keys = {keys_dir + "/1-first.png", keys_dir + "/2-last.png", keys_dir + "/3-mirrored.png"};
  StoryOptions s = quick_story(keys);
  const std::string prompts = dir + "/prompts.txt";
  std::ofstream(prompts) << "a bird takes off\r\nit lands\n";

  const std::string out = dir + "/story.safetensors";
  auto r = run_command(story_command(s, out, "--keyframes-dir " + quote(keys_dir) + " --prompts " + quote(prompts)));
  ASSERT_EQ(r.status, 0) << r.output;
  const GeneratedVideo story = read_video(out);
  EXPECT_EQ(story.frames, 2 * (s.generate.frames - 1) + 1);

  // Segment 1 is `inbetween generate` from keyframe 2 to keyframe 3 with seed S+1.
  const std::string single = dir + "/segment1.safetensors";
  r = run_command(fmt::format("{} generate --model {} --first {} --last {} --prompt 'it lands' --output {} --quiet "
                              "--frames {} --max-area {} --steps {} --seed {}",
                              cli(), quote(test::model_dir()), quote(keys[1]), quote(keys[2]), quote(single),
                              s.generate.frames, s.generate.max_area, s.generate.steps, s.generate.seed + 1));
  ASSERT_EQ(r.status, 0) << r.output;
  expect_segment_equals(story, 1, read_video(single));

  // --resume: the parts of an earlier run (here made by the library, as a stopped run leaves them)
  // are used, counted, and removed with the story written.
  const std::string out2 = dir + "/resumed.safetensors";
  s.prompts = {"a bird takes off", "it lands"};
  s.parts_dir = out2 + ".parts";
  {
    Pipeline pipeline(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0});
    generate_story(pipeline, s);
  }
  ASSERT_TRUE(fs::is_directory(s.parts_dir));
  std::string cmd = story_command(s, out2, keyframe_args(keys) + " --prompts " + quote(prompts) + " --resume");
  cmd.replace(cmd.find(" --quiet"), 8, "");
  r = run_command(cmd);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("resumed: 2 of 2 segments"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("segment 1/2 denoise"), std::string::npos) << "a kept segment was generated again";
  EXPECT_FALSE(fs::exists(s.parts_dir));
  EXPECT_EQ(read_video(out2).data, story.data);
}

// Bad input fails before anything is computed, says what is wrong, and leaves nothing behind.
TEST(StoryCli, BadInputFailsClearlyAndWritesNothing) {
  const std::string dir = test::temp_dir();
  const std::string first = test::fixture_path("first.png"), last = test::fixture_path("last.png");
  const std::string broken = dir + "/broken.png";
  std::ofstream(broken) << "this is not a PNG";
  const std::string prompts = dir + "/prompts.txt";
  std::ofstream(prompts) << "one\ntwo\nthree\n";
  const StoryOptions s = quick_story({});
  const std::string out_dir = dir + "/out";
  fs::create_directories(out_dir);
  const std::string out = out_dir + "/story.mp4";
  struct Case {
    std::string args, expect;
    int64_t frames = 0;  // 0: the fixture's
  };
  const Case cases[] = {
      {keyframe_args({first}), "at least 2 keyframes; 1 given"},
      {keyframe_args({first, broken, last}), "keyframe 2 '" + broken + "': not a readable"},
      {keyframe_args({first, dir + "/missing.png"}), "no such file"},
      {keyframe_args({first, last}) + " --prompts " + quote(prompts), "3 lines for 1 segments"},
      {keyframe_args({first, last, first}) + " --loop --prompts " + quote(prompts), "--frames 1", 1},
      {"--keyframes-dir " + quote(out_dir), "0 images"},
  };
  for (const Case& c : cases) {
    StoryOptions sc = s;
    if (c.frames > 0) sc.generate.frames = c.frames;
    const auto r = run_command(story_command(sc, out, c.args + " --resume"));
    EXPECT_NE(r.status, 0) << c.args;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
    EXPECT_TRUE(fs::is_empty(out_dir)) << c.args << ": something was written";
  }
  // The right line count with --loop (3 keyframes, 3 segments) is accepted.
  const auto r = run_command(story_command(s, out, keyframe_args({first, last, first}) + " --loop --prompts " +
                                                       quote(prompts)));
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::is_regular_file(out));
}

}  // namespace
}  // namespace ib
