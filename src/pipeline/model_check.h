// Checks of a model folder's weight files before anything is computed: every file opens (each DiT
// shard the index lists exists and has a valid safetensors header; the .pth archives parse), and
// the DiT, T5, CLIP and VAE tensors have the names, shapes and float dtypes that config.json and
// inbetween.json imply, the ones each loader will ask for, including the DiT's text and image
// widths against T5's and CLIP's. Only headers are read. Errors name the file and the tensor.
#pragma once

#include "io/model_config.h"

namespace ib {

void check_model_files(const ModelFolder& folder);

}  // namespace ib
