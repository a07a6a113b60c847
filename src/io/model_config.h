// Hyper-parameters of the four components and the files of a model folder in the official
// release layout. Defaults are the official Wan2.1-FLF2V-14B values; config.json (DiT) and the
// optional inbetween.json (T5/CLIP/VAE sizes the release hard-codes in Python) override them.
// Loaders still check every value against the weight shapes.
#pragma once

#include <string>
#include <vector>

namespace ib {

struct T5Config {
  int64_t vocab = 256384;
  int64_t dim = 4096;
  int64_t dim_attn = 4096;
  int64_t dim_ffn = 10240;
  int64_t num_heads = 64;
  int64_t num_layers = 24;
  int64_t num_buckets = 32;
  int64_t max_distance = 128;
  float eps = 1e-6f;
};

struct ClipConfig {
  int64_t image_size = 224;
  int64_t patch_size = 14;
  int64_t dim = 1280;
  int64_t mlp_ratio = 4;
  int64_t num_heads = 16;
  int64_t num_layers = 32;  // the checkpoint's blocks; the encoder runs all but the last
  float eps = 1e-5f;
};

struct VaeConfig {
  int64_t dim = 96;
  int64_t z_dim = 16;
  std::vector<int64_t> dim_mult = {1, 2, 4, 4};
  int64_t num_res_blocks = 2;
  std::vector<bool> temporal_downsample = {false, true, true};
};

struct DitConfig {
  std::string model_type = "flf2v";  // "flf2v", "i2v" or "t2v"
  int64_t text_len = 512;
  int64_t in_dim = 36;
  int64_t dim = 5120;
  int64_t ffn_dim = 13824;
  int64_t freq_dim = 256;
  int64_t out_dim = 16;
  int64_t num_heads = 40;
  int64_t num_layers = 40;
  float eps = 1e-6f;
};

// The files of a model folder and the parsed hyper-parameters.
struct ModelFolder {
  std::string dir;
  std::string dit_path;        // diffusion_pytorch_model.safetensors.index.json or a single .safetensors
  std::string t5_path;         // models_t5_umt5-xxl-enc-bf16.pth
  std::string clip_path;       // models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth (empty for t2v)
  std::string vae_path;        // Wan2.1_VAE.pth
  std::string tokenizer_path;  // google/umt5-xxl/spiece.model
  DitConfig dit;
  T5Config t5;
  ClipConfig clip;
  VaeConfig vae;

  // Finds the files and parses config.json and inbetween.json. Errors name the folder and the
  // missing file or the bad key. Component weights are opened later, by each loader.
  static ModelFolder open(const std::string& dir);
};

}  // namespace ib
