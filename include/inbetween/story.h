// Public API: keyframe stories. N keyframes give N-1 FLF2V generations (N with `loop`, the last
// keyframe back to the first), run on one loaded Pipeline and joined at the shared keyframes.
//
// The contract (what makes a story reproducible from single runs): segment k (from 0) is exactly
// Pipeline::generate() with first image keyframe k, last image keyframe k+1, segment k's prompt,
// the story's other options and seed S+k (S: the story's seed). The story's frames are segment 0's
// F frames followed by frames 1..F-1 of every later segment, (segments)(F-1)+1 in all. Every
// keyframe is brought to the first keyframe's size by the last_frame_fit rule before it is used
// (keyframes of the first one's size, the normal case, are used as they are).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "inbetween/pipeline.h"

namespace ib {

struct StoryOptions {
  // Every generation option but first_image, last_image and prompt (which the story sets per
  // segment). seed: S, the first segment's (< 0: a random one, reported in the result).
  // init_noise is refused (one noise tensor cannot seed several segments).
  GenerateOptions generate;
  std::vector<std::string> keyframes;  // image files, in order; at least 2
  std::vector<std::string> prompts;    // one per segment, or one for all; empty: the empty prompt
  bool loop = false;                   // one more segment, from the last keyframe back to the first
  // Resume: when set, each finished segment is kept in this folder (f32 safetensors named by the
  // segment and a hash of its inputs) and a later story with the same inputs reuses it instead of
  // generating it again; parts of changed inputs are removed and redone. The caller removes the
  // folder when it no longer needs it.
  std::string parts_dir;
};

struct StoryResult {
  GeneratedVideo video;  // seed: S; timings: each stage summed over the whole story
  int segments = 0;
  int reused = 0;        // segments taken from parts_dir instead of generated
  std::vector<int> reused_segments;  // their indices (from 0)
};

// The story's segment count: keyframes - 1, or keyframes with loop.
int story_segments(const StoryOptions& story);
// Segment k's generation options (the contract above), with seed S+k for the story seed `seed`.
GenerateOptions segment_options(const StoryOptions& story, int k, int64_t seed);

// The seed S a story with these options uses: generate.seed when >= 0; else, with a parts_dir that
// holds one from an earlier run of the story, that one (so the same command resumes); else a
// random one. Set generate.seed to it to know S before the story runs.
int64_t story_seed(const StoryOptions& story);

// Checks everything that can be known before computing, throwing ib::Error that names what is
// wrong: at least 2 keyframes, each of them readable, the prompt count, the seeds' range, a frame
// count of at least 5, an flf2v model, and Pipeline::validate() on every segment.
void validate_story(const Pipeline& pipeline, const StoryOptions& story);

// Runs the story: validate_story, each distinct prompt encoded once, the segments in order (parts
// reused and written when parts_dir is set). progress gets every segment's stages with segment and
// segments set and the time left for the whole story; it may throw ib::Cancelled (finished parts
// stay in parts_dir).
// frames (optional): the story's frames as each segment's decode makes them (or as a reused
// segment is read), in the story's numbering: every frame once, in order (see DecodedFrames), so
// that a VideoFileWriter encodes the MP4 while later segments are still being generated.
StoryResult generate_story(Pipeline& pipeline, const StoryOptions& story, const ProgressFn& progress = {},
                           const FramesFn& frames = {});

}  // namespace ib
