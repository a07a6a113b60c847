#include "story_request.h"

#include <filesystem>
#include <fmt/format.h>

#include "job_store.h"

namespace ib::server {

const std::vector<std::string>& story_fields() {
  static const std::vector<std::string> fields = [] {
    std::vector<std::string> f = {"keyframes", "prompts", "loop"};
    for (const std::string& name : job_fields())
      if (name != "first" && name != "last") f.push_back(name);
    return f;
  }();
  return fields;
}

StoryRequest parse_story_request(const httplib::Request& req, const Limits& limits) {
  check_field_names(req, story_fields(), {"keyframes", "prompts"});
  StoryRequest r;
  JobParams& p = r.params;
  parse_generation_fields(req, limits, p);
  if (p.gen.frames < 5)
    throw RequestError("frames", fmt::format("frames: {} is too few for a story's segments (at least 5)", p.gen.frames));
  if (req.files.count("loop")) {
    const std::string v = req.files.find("loop")->second.content;
    if (v == "true" || v == "1" || v == "on")
      p.loop = true;
    else if (v != "false" && v != "0" && v != "off" && !v.empty())
      throw RequestError("loop", "loop: '" + v + "' is not true or false");
  }

  // The keyframes in the order they were sent (a multimap keeps equal keys in insertion order).
  const auto [kb, ke] = req.files.equal_range("keyframes");
  for (auto it = kb; it != ke; ++it) r.images.push_back(it->second.content);
  const int n = static_cast<int>(r.images.size());
  if (n < 2)
    throw RequestError("keyframes", fmt::format("keyframes: {} image{} sent; a story needs at least 2", n, n == 1 ? "" : "s"));
  if (n > limits.max_keyframes)
    throw RequestError("keyframes", fmt::format("keyframes: {} images sent, at most {} allowed", n, limits.max_keyframes));
  for (int i = 0; i < n; ++i) {
    int64_t w = 0, h = 0;
    std::string ext;
    try {
      ext = check_image(fmt::format("keyframe {}", i + 1), r.images[static_cast<size_t>(i)], limits, w, h);
    } catch (const RequestError& e) {
      throw RequestError("keyframes", e.what(), e.status());
    }
    // Stored as far as the image goes (bytes after its end were not decoded and are not kept).
    r.images[static_cast<size_t>(i)].resize(image_length(r.images[static_cast<size_t>(i)]));
    p.keyframe_files.push_back(fmt::format("keyframe-{:02d}.{}", i, ext));
  }
  p.first_file = p.keyframe_files.front();
  p.last_file = p.keyframe_files.back();

  const int segments = p.loop ? n : n - 1;
  const auto [pb, pe] = req.files.equal_range("prompts");
  for (auto it = pb; it != pe; ++it) {
    p.prompts.push_back(it->second.content);
    check_text("prompts", p.prompts.back(), limits);
  }
  if (!p.prompts.empty() && static_cast<int>(p.prompts.size()) != segments)
    throw RequestError("prompts", fmt::format("prompts: {} sent for {} segments ({} keyframes{}); send one per "
                                              "segment, or none and `prompt` for all",
                                              p.prompts.size(), segments, n, p.loop ? ", looped" : ""));
  return r;
}

StoryOptions story_options(const JobParams& p, const std::string& dir) {
  StoryOptions s;
  s.generate = generate_options(p, dir);
  for (const std::string& f : p.keyframe_files) s.keyframes.push_back((std::filesystem::path(dir) / f).string());
  s.prompts = p.prompts.empty() ? std::vector<std::string>{p.gen.prompt} : p.prompts;
  s.loop = p.loop;
  return s;
}

GeneratedVideo run_story(Pipeline& pipeline, const JobParams& p, const std::string& dir, const ProgressFn& progress,
                         const FramesFn& frames) {
  return generate_story(pipeline, story_options(p, dir), progress, frames).video;
}

}  // namespace ib::server
