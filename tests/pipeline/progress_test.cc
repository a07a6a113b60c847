// Progress of a generation: every stage reports under the name its timing has, the VAE stages
// report each chunk with the time left, and a cancel requested during the VAE encode takes effect
// at the next chunk.
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
  const GeneratedVideo v = pipeline.generate(g, [&](const Progress& p) { seen.push_back(p); });
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
