// Progress of a generation: every stage reports under the name its timing has, the VAE stages
// report each chunk with the time left, the decoded frames are handed out chunk by chunk during the
// decode, and a cancel requested during the VAE encode takes effect at the next chunk.
#include <gtest/gtest.h>

#include <chrono>
#include <vector>

#include "common/fixture.h"
#include "inbetween/pipeline.h"
#include "synth/synth_model.h"

namespace ib {
namespace {

using Clock = std::chrono::steady_clock;

// The demo preset's VAE is slow enough at 320x176 to cancel in the middle of its encode.
const std::string& demo_model() {
  static const std::string dir = [] {
    SynthOptions o;
    o.out_dir = test::temp_dir() + "/demo";
    write_synth_model(synth_preset("demo"), o);
    return o.out_dir;
  }();
  return dir;
}

GenerateOptions options() {
  GenerateOptions g;
  g.first_image = test::repo_root() + "/assets/first.png";
  g.last_image = test::repo_root() + "/assets/last.png";
  g.frames = 33;
  g.width = 320;
  g.height = 176;
  g.steps = 3;
  g.guidance = 1;
  g.seed = 3;
  return g;
}

TEST(Progress, StagesMatchTheTimingsAndTheVaeReportsEachChunk) {
  Pipeline pipeline(PipelineOptions{demo_model(), ComputeDevice::CPU, 0});
  std::vector<Progress> seen;
  GenerateOptions g = options();
  g.width = 128;
  g.height = 64;
  // The decoded frames handed out during the decode (what VideoFileWriter encodes from), and how
  // many had come at each of the decode's reports.
  std::vector<float> handed;  // [3, F, H, W] once complete
  std::vector<DecodedFrames> pieces;
  std::vector<int64_t> frames_at_report;
  int64_t frames_so_far = 0;
  const GeneratedVideo v = pipeline.generate(
      g,
      [&](const Progress& p) {
        seen.push_back(p);
        if (p.stage == "vae-decode") frames_at_report.push_back(frames_so_far);
      },
      [&](const DecodedFrames& d) {
        pieces.push_back(d);
        handed.insert(handed.end(), d.data, d.data + 3 * d.count * d.height * d.width);
        frames_so_far += d.count;
      });
  // Every frame once, in order, before the decode reported its chunk done, with the values the
  // returned video holds.
  ASSERT_EQ(pieces.size(), 9u);  // one piece per latent frame: 1 frame, then 4 each
  int64_t next = 0;
  for (const DecodedFrames& d : pieces) {
    EXPECT_EQ(d.first, next);
    EXPECT_EQ(d.count, next == 0 ? 1 : 4);
    EXPECT_EQ(d.height, v.height);
    EXPECT_EQ(d.width, v.width);
    next += d.count;
  }
  EXPECT_EQ(next, v.frames);
  EXPECT_EQ(frames_at_report, (std::vector<int64_t>{0, 1, 5, 9, 13, 17, 21, 25, 29, 33}));
  const int64_t plane = v.height * v.width;
  size_t at = 0;  // handed holds the pieces one after another, each [3, n, H, W]
  for (const DecodedFrames& d : pieces) {
    for (int64_t c = 0; c < 3; ++c)
      for (int64_t i = 0; i < d.count * plane; ++i)
        ASSERT_EQ(handed[at + static_cast<size_t>(c * d.count * plane + i)],
                  v.data[static_cast<size_t>((c * v.frames + d.first) * plane + i)])
            << "frame " << d.first + i / plane << " channel " << c;
    at += static_cast<size_t>(3 * d.count * plane);
  }
  // Stage names in the order of their first report equal the timings' names.
  std::vector<std::string> stages, timed;
  for (const Progress& p : seen)
    if (stages.empty() || stages.back() != p.stage) stages.push_back(p.stage);
  for (const StageTime& t : v.timings) timed.push_back(t.stage);
  EXPECT_EQ(stages, timed);
  EXPECT_EQ(timed,
            (std::vector<std::string>{"images", "text", "clip", "vae-encode", "load-dit", "denoise", "vae-decode"}));
  for (const char* stage : {"vae-encode", "vae-decode"}) {
    SCOPED_TRACE(stage);
    std::vector<int> steps;
    for (const Progress& p : seen)
      if (p.stage == stage) {
        EXPECT_EQ(p.total, 9);  // one chunk per latent frame
        steps.push_back(p.step);
        if (p.step >= 1) {
          EXPECT_GE(p.stage_remaining_s, 0.0);
        }
        if (p.step >= 1 && std::string(stage) == "vae-decode") {
          EXPECT_GE(p.remaining_s, 0.0);
        }
      }
    EXPECT_EQ(steps, (std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}));
  }
  for (const Progress& p : seen)
    if (p.stage == "denoise" && p.step >= 1) {
      EXPECT_GE(p.remaining_s, p.stage_remaining_s);  // the decode still follows
      EXPECT_GE(p.stage_remaining_s, 0.0);
    }
  double last = 0;
  for (const Progress& p : seen) {
    EXPECT_GE(p.elapsed_s, last);
    last = p.elapsed_s;
  }
}

TEST(Progress, CancelDuringTheVaeEncodeStopsAtTheNextChunk) {
  Pipeline pipeline(PipelineOptions{demo_model(), ComputeDevice::CPU, 0});
  bool requested = false;
  Clock::time_point asked, stopped;
  Progress at_stop;
  int reports_after = 0;
  std::vector<double> chunk_times;
  EXPECT_THROW(pipeline.generate(options(),
                                 [&](const Progress& p) {
                                   if (p.stage == "vae-encode" && p.step >= 1) chunk_times.push_back(p.elapsed_s);
                                   if (requested) {
                                     ++reports_after;
                                     stopped = Clock::now();
                                     at_stop = p;
                                     throw Cancelled();
                                   }
                                   if (p.stage == "vae-encode" && p.step == 2) {
                                     requested = true;  // what the server's DELETE or SIGTERM sets
                                     asked = Clock::now();
                                   }
                                 }),
               Cancelled);
  ASSERT_TRUE(requested);
  const double latency = std::chrono::duration<double>(stopped - asked).count();
  const double chunk = chunk_times.size() >= 2 ? chunk_times[1] - chunk_times[0] : -1;
  std::printf("[measured] cancel during vae-encode took effect after %.3f s (a chunk took %.3f s)\n", latency, chunk);
  EXPECT_EQ(reports_after, 1);
  EXPECT_EQ(at_stop.stage, "vae-encode");
  EXPECT_EQ(at_stop.step, 3);  // the very next chunk, 6 chunks before the stage's end
  EXPECT_LT(latency, 5.0);

  // The pipeline is still usable after a cancel.
  GenerateOptions g = options();
  g.frames = 5;
  g.width = 64;
  g.height = 32;
  EXPECT_EQ(pipeline.generate(g).frames, 5);
}

}  // namespace
}  // namespace ib
