// libFuzzer target: config.json and inbetween.json parsing (parse_dit_config, parse_inbetween_config)
// on arbitrary bytes must return sizes within config_limits that pass the parsers' own consistency
// checks, or throw ib::Error.
#include <cstddef>
#include <cstdint>

#include "inbetween/error.h"
#include "io/model_config.h"

namespace {

bool within(int64_t v, int64_t max) { return v > 0 && v <= max; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace lim = ib::config_limits;
  try {
    const ib::DitConfig d = ib::parse_dit_config(data, size, "config.json");
    if (!within(d.text_len, lim::kTextLen) || !within(d.dim, lim::kWidth) || !within(d.ffn_dim, lim::kWidth) ||
        !within(d.num_heads, lim::kHeads) || !within(d.num_layers, lim::kLayers) || d.dim % d.num_heads != 0 ||
        !(d.eps > 0 && d.eps < 1))
      __builtin_trap();
  } catch (const ib::Error&) {
  }
  try {
    ib::T5Config t5;
    ib::ClipConfig clip;
    ib::VaeConfig vae;
    ib::parse_inbetween_config(data, size, "inbetween.json", t5, clip, vae);
    if (!within(t5.vocab, lim::kVocab) || !within(t5.dim_attn, lim::kWidth) || t5.dim_attn % t5.num_heads != 0 ||
        !within(clip.image_size, lim::kImageSize) || clip.image_size % clip.patch_size != 0 ||
        vae.dim_mult.empty() || vae.temporal_downsample.size() + 1 != vae.dim_mult.size())
      __builtin_trap();
    for (const int64_t m : vae.dim_mult)
      if (!within(vae.dim * m, lim::kWidth)) __builtin_trap();
  } catch (const ib::Error&) {
  }
  return 0;
}
