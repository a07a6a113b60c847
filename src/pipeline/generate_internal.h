// Internal hooks of the pipeline for tests and debugging: a callback that receives every named
// intermediate (context, context_null, clip_context, cond_video, y, noise, latent_i, video).
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "inbetween/pipeline.h"
#include "pipeline/vram_plan.h"

namespace ib {

using IntermediateFn = std::function<void(const std::string& name, const Tensor& value)>;
void set_intermediate_callback(Pipeline& pipeline, IntermediateFn fn);
// The DiT forwards the last generate() ran (guidance 1: one a step, otherwise two).
int64_t dit_forwards(Pipeline& pipeline);
// Keeps the unconditional pass (and the negative prompt) at guidance 1 too, so tests can compare
// the skip with v_u + 1·(v_c − v_u).
void set_always_unconditional(Pipeline& pipeline, bool on);

// Keyframes already decoded and fitted (a story brings every keyframe to its first one's size):
// first and last [3, H, W] f32 in [-1, 1]; height x width is the image size the video's size follows.
struct PreparedImages {
  Tensor first, last;
  int64_t height = 0, width = 0;
};
// generate() on images given in memory (nullptr: read o.first_image and o.last_image, as generate()
// does); o's options must have passed Pipeline::validate().
GeneratedVideo generate_from(Pipeline& pipeline, const GenerateOptions& o, const PreparedImages* given,
                             const ProgressFn& progress, const FramesFn& frames = {});
// An image brought to height x width by a --last-frame-fit rule.
Tensor fit_keyframe(const Tensor& image, int64_t height, int64_t width, LastFrameFit rule);

// While on, the pipeline keeps each distinct prompt's T5 encoding and reuses it (a story encodes
// every prompt once); turning it on or off empties it.
void set_text_cache(Pipeline& pipeline, bool on);
// Encodes every prompt (and negative prompt) these generations will use into the cache, each
// distinct one once; tick(done, total) after each.
void encode_prompts(Pipeline& pipeline, const std::vector<GenerateOptions>& generations,
                    const std::function<void(int done, int total)>& tick);
// The VRAM plan this pipeline makes for a video of this size (its budget applied; throws when the
// budget is too small), and how many DiT blocks its GPU engine keeps on the device (-1: none loaded).
VramPlan vram_plan_for(const Pipeline& pipeline, int64_t width, int64_t height, int64_t frames);
int64_t dit_resident_blocks(const Pipeline& pipeline);
// T5 forwards this pipeline has run (test hook).
int64_t text_encodings(Pipeline& pipeline);
// config.json's model_type: "flf2v", "i2v" or "t2v".
std::string model_type(const Pipeline& pipeline);
// What besides the options decides a generation's numbers: the model folder (canonical path), the
// device and the precision (a story's parts are keyed by it).
std::string pipeline_identity(const Pipeline& pipeline);

// Standard normal noise of `shape` from `seed`: mt19937_64 with Box-Muller, identical on every
// machine and thread count (it does not reproduce PyTorch's CUDA generator; use --init-noise).
Tensor seeded_noise(const Shape& shape, uint64_t seed);

}  // namespace ib
