#include "pipeline/model_check.h"

#include <set>

#include "io/tensor_store.h"
#include "models/clip.h"
#include "models/dit.h"
#include "models/t5.h"
#include "models/vae.h"
#include "text/tokenizer.h"

namespace ib {

namespace {

using Specs = std::vector<std::pair<std::string, Shape>>;

// Every tensor of `required` is in the store with that shape and a float dtype; with `exact`, the
// store holds nothing else (the T5 and VAE loaders are strict, as upstream's load_state_dict).
void check_tensors(const TensorStore& s, const std::string& what, const std::string& path, const Specs& required,
                   bool exact, const std::string& config) {
  std::set<std::string> names;
  for (const auto& [name, shape] : required) {
    names.insert(name);
    IB_CHECK(s.contains(name), "{} '{}': tensor '{}' is missing (expected {} from {})", what, path, name,
             shape_str(shape), config);
    const TensorInfo info = s.info(name);
    IB_CHECK(info.shape == shape, "{} '{}': tensor '{}' has shape {}, but {} implies {}", what, s.source(name), name,
             shape_str(info.shape), config, shape_str(shape));
    IB_CHECK(info.dtype == DType::F32 || info.dtype == DType::BF16 || info.dtype == DType::F16,
             "{} '{}': tensor '{}' is {}, expected f32, bf16 or f16", what, s.source(name), name,
             dtype_name(info.dtype));
  }
  if (!exact) return;
  for (const std::string& name : s.names())
    IB_CHECK(names.count(name) != 0, "{} '{}': unexpected tensor '{}' (not in the layout {} implies)", what,
             s.source(name), name, config);
}

// Opens a checkpoint; its own errors already name the file, this adds which component it is.
std::shared_ptr<TensorStore> open_store(const std::string& what, const std::string& path) {
  try {
    return open_tensor_store(path);
  } catch (const Error& e) {
    fail("{} '{}' cannot be read: {}", what, path, e.what());
  }
}

}  // namespace

void check_model_files(const ModelFolder& f) {
  const std::string& type = f.dit.model_type;
  const bool image = type != "t2v";
  try {
    text::Tokenizer::load(f.tokenizer_path);
  } catch (const Error& e) {
    fail("umT5 tokenizer '{}' cannot be read: {}", f.tokenizer_path, e.what());
  }

  const auto t5 = open_store("T5 weights", f.t5_path);
  check_tensors(*t5, "T5 weights", f.t5_path, t5_weight_shapes(f.t5), true,
                "the t5 sizes (inbetween.json or the release's)");

  if (image) {
    const auto clip = open_store("CLIP weights", f.clip_path);
    // The encoder runs every block but the last, whose norm1 only marks the block count, and never
    // reads the post-norm or the head.
    const std::string last = fmt::format("visual.transformer.{}.", f.clip.num_layers - 1);
    Specs specs;
    for (auto& [name, shape] : clip_weight_shapes(f.clip)) {
      const bool last_block = name.rfind(last, 0) == 0 && name != last + "norm1.weight";
      if (!last_block && name.rfind("visual.post_norm", 0) != 0 && name != "visual.head")
        specs.emplace_back(name, shape);
    }
    check_tensors(*clip, "CLIP weights", f.clip_path, specs, false, "the clip sizes (inbetween.json or the release's)");
    const std::string extra = fmt::format("visual.transformer.{}.norm1.weight", f.clip.num_layers);
    IB_CHECK(!clip->contains(extra), "CLIP weights '{}': holds '{}', more blocks than clip.num_layers = {}",
             f.clip_path, extra, f.clip.num_layers);
  }

  const auto vae = open_store("VAE weights", f.vae_path);
  check_tensors(*vae, "VAE weights", f.vae_path, vae_weight_shapes(f.vae), true,
                "the vae sizes (inbetween.json or the release's)");

  // The DiT: every shard the index lists was opened above (open_tensor_store reads each header).
  const auto dit = open_store("DiT weights", f.dit_path);
  const Specs specs = dit_weight_shapes(f.dit, f.t5.dim, f.clip.dim, dit_image_tokens(f.dit.model_type, f.clip));
  const std::string widths = image ? fmt::format("config.json with T5 dim {} and CLIP dim {}", f.t5.dim, f.clip.dim)
                                   : fmt::format("config.json with T5 dim {}", f.t5.dim);
  check_tensors(*dit, "DiT weights", f.dit_path, specs, false, widths);
  const std::string extra = fmt::format("blocks.{}.modulation", f.dit.num_layers);
  IB_CHECK(!dit->contains(extra), "DiT weights '{}': holds '{}', more blocks than config.json's num_layers = {}",
           dit->source(extra), extra, f.dit.num_layers);
  if (!image)
    for (const char* name : {"img_emb.proj.0.weight", "blocks.0.cross_attn.k_img.weight"})
      IB_CHECK(!dit->contains(name), "DiT weights '{}': config.json says model_type 't2v' but the weights hold '{}'",
               dit->source(name), name);
  if (type == "i2v")
    IB_CHECK(!dit->contains("img_emb.emb_pos"),
             "DiT weights '{}': config.json says model_type 'i2v' but the weights hold 'img_emb.emb_pos' (flf2v)",
             dit->source("img_emb.emb_pos"));
}

}  // namespace ib
