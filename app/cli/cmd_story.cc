// `inbetween story`: N keyframes in, one video out, made of the N-1 generations between neighbours
// (N with --loop) joined at the shared keyframes (include/inbetween/story.h has the contract).
// --resume keeps finished segments in OUTPUT.parts/ so that the same command, run again, goes on
// where it stopped; the folder goes once the story is written.
#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "app_commands.h"
#include "core/check.h"
#include "generate_args.h"
#include "inbetween/error.h"
#include "inbetween/story.h"
#include "progress_bar.h"

namespace ib::cli {

namespace {

namespace fs = std::filesystem;

struct StoryArgs {
  GenerateArgs gen;
  std::vector<std::string> keyframes;
  std::string keyframes_dir;
  std::string prompt, prompts_file;
  bool loop = false, resume = false;
};

// The images of a folder in name order (.png, .jpg, .jpeg, .webp; hidden files skipped).
std::vector<std::string> images_in(const std::string& dir) {
  IB_CHECK(fs::is_directory(dir), "--keyframes-dir '{}': no such folder", dir);
  std::vector<std::string> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    std::string ext = e.path().extension().string();
    std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    const bool image = ext == ".png" || ext == ".jpg" || ext == ".jpeg" || ext == ".webp";
    if (image && e.is_regular_file() && e.path().filename().string()[0] != '.') files.push_back(e.path().string());
  }
  std::sort(files.begin(), files.end());
  return files;
}

// One prompt per line (a last newline ends the last line; "\r\n" is taken as a newline).
std::vector<std::string> read_prompts(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  IB_CHECK(f.good() && fs::is_regular_file(path), "--prompts '{}': cannot read the file", path);
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    std::string line = text.substr(start, end - start);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
    start = end + 1;
  }
  return lines;
}

// "OUT.parts" beside the output (a PNG-frames folder "out/" gives "out.parts").
std::string parts_dir_for(std::string output) {
  while (output.size() > 1 && output.back() == '/') output.pop_back();
  return output + ".parts";
}

// Everything the command line can get wrong, checked before the model loads.
StoryOptions story_options(StoryArgs& a) {
  check_options(a.gen);
  check_output(a.gen.output);
  StoryOptions s;
  s.generate = a.gen.gen;
  s.loop = a.loop;
  s.keyframes = a.keyframes_dir.empty() ? a.keyframes : images_in(a.keyframes_dir);
  const int n = static_cast<int>(s.keyframes.size());
  if (!a.keyframes_dir.empty())
    IB_CHECK(n >= 2, "--keyframes-dir '{}': {} images (.png, .jpg, .jpeg, .webp) found; a story needs at least 2",
             a.keyframes_dir, n);
  IB_CHECK(n >= 2, "--keyframe: a story needs at least 2 keyframes; {} given", n);
  for (int i = 0; i < n; ++i)
    check_image_file(fmt::format("keyframe {}", i + 1), s.keyframes[static_cast<size_t>(i)]);
  IB_CHECK(s.generate.frames >= 5, "--frames {}: a story's segments need at least 5 frames", s.generate.frames);
  const int segments = story_segments(s);
  if (!a.prompts_file.empty()) {
    s.prompts = read_prompts(a.prompts_file);
    IB_CHECK(static_cast<int>(s.prompts.size()) == segments,
             "--prompts '{}': {} lines for {} segments ({} keyframes{}); give one line per segment", a.prompts_file,
             s.prompts.size(), segments, n, a.loop ? " with --loop" : "");
  } else {
    s.prompts = {a.prompt};
  }
  check_lora_files(a.gen);
  if (a.resume) s.parts_dir = parts_dir_for(a.gen.output);
  return s;
}

void run(StoryArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  StoryOptions s = story_options(a);
  Pipeline pipeline(a.gen.pipeline);
  validate_story(pipeline, s);
  s.generate.seed = story_seed(s);
  a.gen.gen.seed = s.generate.seed;
  const int segments = story_segments(s);
  const GenerateArgs& g = a.gen;
  if (!g.quiet) {
    std::fprintf(stderr, "story: %d keyframes, %d segments of %lld frames -> %lld frames, seed %lld (segment k: %lld+k)\n",
                 static_cast<int>(s.keyframes.size()), segments, static_cast<long long>(s.generate.frames),
                 static_cast<long long>(segments * (s.generate.frames - 1) + 1), static_cast<long long>(s.generate.seed),
                 static_cast<long long>(s.generate.seed));
    GenerateArgs first = g;
    first.gen = segment_options(s, 0, s.generate.seed);
    print_estimate(pipeline, first, segments);
  }
  // An MP4 is encoded segment by segment while the later segments are generated.
  std::unique_ptr<VideoFileWriter> writer = open_output(g);
  ProgressBar bar(g.quiet);
  StoryResult r;
  {
    StopSignals signals;
    try {
      r = generate_story(
          pipeline, s,
          [&](const Progress& p) {
            if (StopSignals::requested()) throw Cancelled();
            bar.update(p);
          },
          writer->frames());
    } catch (const Cancelled&) {
      bar.finish();
      if (s.parts_dir.empty()) fail("stopped by a signal; nothing was written");
      fail("stopped by a signal; the finished segments are kept in '{}': run the same command again to go on",
           s.parts_dir);
    }
  }
  bar.update(Progress{"write", 0, 1, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), -1,
                      -1, segments, segments});
  bar.finish();
  const double write_s = write_output(g, r.video, *writer);
  if (!s.parts_dir.empty()) {
    std::error_code ec;
    fs::remove_all(s.parts_dir, ec);
    if (ec) std::fprintf(stderr, "warning: cannot remove '%s': %s\n", s.parts_dir.c_str(), ec.message().c_str());
  }
  if (!g.quiet && r.reused > 0)
    std::fprintf(stderr, "resumed: %d of %d segments taken from %s (finished before)\n", r.reused, segments,
                 s.parts_dir.c_str());
  print_summary(g, r.video, write_s, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

}  // namespace

void register_story(CLI::App& app) {
  auto a = std::make_shared<StoryArgs>();
  auto* cmd = app.add_subcommand(
      "story", "Chain keyframes into one video: a generation between each pair of neighbours, joined at the keyframes");
  auto* key = cmd->add_option("--keyframe", a->keyframes, "A keyframe (PNG, JPEG or WebP); repeat, in order (2 or more)");
  cmd->add_option("--keyframes-dir", a->keyframes_dir, "A folder whose images are the keyframes, in name order")
      ->excludes(key);
  auto* prompt = cmd->add_option("--prompt", a->prompt, "What happens, for every segment");
  cmd->add_option("--prompts", a->prompts_file, "A text file with one prompt per line, one line per segment")
      ->excludes(prompt);
  cmd->add_flag("--loop", a->loop, "One more segment, from the last keyframe back to the first");
  cmd->add_flag("--resume", a->resume,
                "Keep finished segments in OUTPUT.parts/ and reuse them when the same command runs again");
  add_generation_options(cmd, a->gen);
  cmd->callback([a] {
    finish_generation_options(a->gen);
    run(*a);
  });
}

}  // namespace ib::cli
