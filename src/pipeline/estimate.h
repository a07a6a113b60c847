// The work of a generation in floating-point operations per stage, counted from the model's sizes
// and the settings, for run-time estimates before anything is computed (Pipeline::estimate). The
// counts are the products and attention of each component (convolutions as their multiply-adds);
// elementwise work is left out. Good to a factor of about two, which is what a warning needs.
#pragma once

#include <cstdint>

#include "io/model_config.h"

namespace ib {

struct WorkCount {
  double text = 0;        // umT5, every prompt encoded (one, or two with guidance)
  double clip = 0;        // CLIP on the keyframes
  double vae_encode = 0;  // the conditioning video
  double vae_decode = 0;
  double denoise = 0;            // all DiT forwards of all steps
  double denoise_attention = 0;  // the part of `denoise` in attention (slower per FLOP on a CPU)
  double dit_forward = 0;        // one forward
};

// frames: 4n+1; height, width: the video's (multiples of 16); forwards_per_step: 1 (guidance 1)
// or 2.
WorkCount count_work(const ModelFolder& folder, int64_t frames, int64_t height, int64_t width, int steps,
                     int forwards_per_step);

}  // namespace ib
