// Internal hooks of the pipeline for tests and debugging: a callback that receives every named
// intermediate (context, context_null, clip_context, cond_video, y, noise, latent_i, video).
#pragma once

#include <functional>
#include <string>

#include "core/tensor.h"
#include "inbetween/pipeline.h"

namespace ib {

using IntermediateFn = std::function<void(const std::string& name, const Tensor& value)>;
void set_intermediate_callback(Pipeline& pipeline, IntermediateFn fn);
// The DiT forwards the last generate() ran (guidance 1: one a step, otherwise two).
int64_t dit_forwards(Pipeline& pipeline);
// Keeps the unconditional pass (and the negative prompt) at guidance 1 too, so tests can compare
// the skip with v_u + 1·(v_c − v_u).
void set_always_unconditional(Pipeline& pipeline, bool on);

// Standard normal noise of `shape` from `seed`: mt19937_64 with Box-Muller, identical on every
// machine and thread count (it does not reproduce PyTorch's CUDA generator; use --init-noise).
Tensor seeded_noise(const Shape& shape, uint64_t seed);

}  // namespace ib
