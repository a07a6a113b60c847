// Hyper-parameters of the four components and the files of a model folder in the official
// release layout. Defaults are the official Wan2.1-FLF2V-14B values; config.json (DiT) and the
// optional inbetween.json (T5/CLIP/VAE sizes the release hard-codes in Python) override them.
// Loaders still check every value against the weight shapes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ib {

// Upper bounds on the sizes config.json and inbetween.json may give, checked when the folder is
// opened, before anything is allocated from them (loaders then check each size against the
// weights). Each is far above the official release (its values after //), and small enough that a
// hostile file cannot ask for terabytes.
namespace config_limits {
constexpr int64_t kTextLen = 4096;       // 512; the T5 attention holds text_len^2 per head
constexpr int64_t kWidth = 65536;        // any dim: DiT 5120/13824/36/16/256, T5 4096/10240, CLIP 1280, VAE 96x4
constexpr int64_t kHeads = 1024;         // DiT 40, T5 64, CLIP 16
constexpr int64_t kLayers = 1024;        // DiT 40, T5 24, CLIP 32
constexpr int64_t kVocab = 1 << 20;      // 256384
constexpr int64_t kBuckets = 4096;       // 32 (T5 relative position buckets)
constexpr int64_t kDistance = 1 << 20;   // 128 (T5 max_distance)
constexpr int64_t kImageSize = 8192;     // CLIP 224 (the image decoders' own limit)
constexpr int64_t kRatio = 64;           // CLIP mlp_ratio 4, VAE dim_mult entries 1..4
constexpr int64_t kResBlocks = 64;       // VAE 2
}  // namespace config_limits

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
  // Tokens of one encoded image: the patch grid and the class token.
  int64_t image_tokens() const { return (image_size / patch_size) * (image_size / patch_size) + 1; }
};

// The CLIP tokens the DiT's image context holds: both keyframes' for flf2v, the first image's
// for i2v (t2v has none, but its DiT has no image projection to size either).
inline int64_t dit_image_tokens(const std::string& model_type, const ClipConfig& clip) {
  return (model_type == "flf2v" ? 2 : 1) * clip.image_tokens();
}

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

// Parse config.json (every DiT key required) and inbetween.json (overrides of the `t5`, `clip` and
// `vae` values) from their text, as ModelFolder::open does: JSON within kConfigJsonLimits
// (io/model_folder.h), every size within config_limits.
// `label` names the file in errors.
DitConfig parse_dit_config(const unsigned char* data, size_t size, const std::string& label);
void parse_inbetween_config(const unsigned char* data, size_t size, const std::string& label, T5Config& t5,
                            ClipConfig& clip, VaeConfig& vae);

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
