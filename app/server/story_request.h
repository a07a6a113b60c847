// POST /v1/stories: the multipart request of a keyframe story (2..16 images in order, a prompt per
// segment, `loop`, and every field of a job but first/last), and the story a job of that kind runs.
#pragma once

#include <httplib.h>

#include <string>
#include <vector>

#include "inbetween/pipeline.h"
#include "inbetween/story.h"
#include "job.h"
#include "job_request.h"

namespace ib::server {

struct StoryRequest {
  JobParams params;                 // keyframe_files named ("keyframe-00.png", ...), first/last_file too
  std::vector<std::string> images;  // the uploaded bytes, in order (each decodes as an image)
};

// The fields POST /v1/stories accepts ("keyframes" and "prompts" repeat, in order).
const std::vector<std::string>& story_fields();

// Parses and checks a multipart POST /v1/stories. Throws RequestError naming the field.
StoryRequest parse_story_request(const httplib::Request& req, const Limits& limits);

// The library's story for a story job whose keyframes lie in `dir`.
StoryOptions story_options(const JobParams& p, const std::string& dir);

// Runs a story job: generate_story on the server's pipeline (no parts folder: a story is one job).
GeneratedVideo run_story(Pipeline& pipeline, const JobParams& p, const std::string& dir, const ProgressFn& progress,
                         const FramesFn& frames = {});

}  // namespace ib::server
