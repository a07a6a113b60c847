// LoRA reading, key mapping and merging into WanDiT's weights (see lora.h for the formats).
#include "models/lora.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <optional>
#include <set>
#include <utility>

#include "core/parallel.h"
#include "io/safetensors.h"
#include "models/dit.h"
#include "ops/linear.h"

namespace ib {

namespace {

bool starts_with(const std::string& s, std::string_view p) { return s.compare(0, p.size(), p) == 0; }
bool ends_with(const std::string& s, std::string_view p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// What a key holds, from its suffix.
enum class Part { Down, Up, UpBias, Alpha, Diff, DiffB };

struct Suffix {
  std::string_view text;
  Part part;
};
// lora_A/lora_B are PEFT's names for down/up; diffusers stores a bias patch as lora_B.bias.
constexpr Suffix kSuffixes[] = {
    {".lora_down.weight", Part::Down}, {".lora_up.weight", Part::Up},   {".lora_A.weight", Part::Down},
    {".lora_B.weight", Part::Up},      {".lora_up.bias", Part::UpBias}, {".lora_B.bias", Part::UpBias},
    {".alpha", Part::Alpha},           {".diff_b", Part::DiffB},        {".diff", Part::Diff},
};

const char* part_name(Part p) {
  switch (p) {
    case Part::Down: return "lora_down";
    case Part::Up: return "lora_up";
    case Part::UpBias: return "lora_up bias";
    case Part::Alpha: return "alpha";
    case Part::Diff: return "diff";
    case Part::DiffB: return "diff_b";
  }
  return "?";
}

// diffusers' WanTransformer3DModel module names -> the release's (WanModel), the inverse of
// TRANSFORMER_KEYS_RENAME_DICT in diffusers' scripts/convert_wan_to_diffusers.py. The release's
// norm3 (the affine norm before cross-attention) is diffusers' norm2.
constexpr std::pair<std::string_view, std::string_view> kDiffusersTop[] = {
    {"patch_embedding", "patch_embedding"},
    {"condition_embedder.time_embedder.linear_1", "time_embedding.0"},
    {"condition_embedder.time_embedder.linear_2", "time_embedding.2"},
    {"condition_embedder.text_embedder.linear_1", "text_embedding.0"},
    {"condition_embedder.text_embedder.linear_2", "text_embedding.2"},
    {"condition_embedder.time_proj", "time_projection.1"},
    {"condition_embedder.image_embedder.norm1", "img_emb.proj.0"},
    {"condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"},
    {"condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"},
    {"condition_embedder.image_embedder.norm2", "img_emb.proj.4"},
    {"condition_embedder.image_embedder.pos_embed", "img_emb.emb_pos"},
    {"scale_shift_table", "head.modulation"},
    {"proj_out", "head.head"},
};
constexpr std::pair<std::string_view, std::string_view> kDiffusersBlock[] = {
    {"attn1.to_q", "self_attn.q"},          {"attn1.to_k", "self_attn.k"},
    {"attn1.to_v", "self_attn.v"},          {"attn1.to_out.0", "self_attn.o"},
    {"attn1.norm_q", "self_attn.norm_q"},   {"attn1.norm_k", "self_attn.norm_k"},
    {"attn2.to_q", "cross_attn.q"},         {"attn2.to_k", "cross_attn.k"},
    {"attn2.to_v", "cross_attn.v"},         {"attn2.to_out.0", "cross_attn.o"},
    {"attn2.norm_q", "cross_attn.norm_q"},  {"attn2.norm_k", "cross_attn.norm_k"},
    {"attn2.add_k_proj", "cross_attn.k_img"}, {"attn2.add_v_proj", "cross_attn.v_img"},
    {"attn2.norm_added_k", "cross_attn.norm_k_img"},
    {"ffn.net.0.proj", "ffn.0"},            {"ffn.net.2", "ffn.2"},
    {"norm2", "norm3"},                     {"scale_shift_table", "modulation"},
};

std::optional<std::string> diffusers_to_release(const std::string& name) {
  for (const auto& [from, to] : kDiffusersTop)
    if (name == from) return std::string(to);
  // blocks.<i>.<rest>
  if (!starts_with(name, "blocks.")) return std::nullopt;
  const size_t dot = name.find('.', 7);
  if (dot == std::string::npos) return std::nullopt;
  const std::string rest = name.substr(dot + 1);
  for (const auto& [from, to] : kDiffusersBlock)
    if (rest == from) return name.substr(0, dot + 1) + std::string(to);
  return std::nullopt;
}

// The model's modules (checkpoint names without .weight/.bias; bare parameters such as
// blocks.0.modulation as they are) and their underscored spellings for lora_unet_ keys.
struct ModuleIndex {
  std::set<std::string> modules;
  std::map<std::string, std::string> underscored;  // "blocks_0_self_attn_q" -> "blocks.0.self_attn.q"

  explicit ModuleIndex(const std::map<std::string, Shape>& catalog) {
    for (const auto& [name, shape] : catalog) {
      std::string m = name;
      if (ends_with(m, ".weight")) m.resize(m.size() - 7);
      else if (ends_with(m, ".bias")) m.resize(m.size() - 5);
      modules.insert(m);
      std::string u = m;
      std::replace(u.begin(), u.end(), '.', '_');
      underscored.emplace(u, m);
    }
  }
};

// The release module a key stem names, or nothing.
std::optional<std::string> resolve_module(const std::string& stem, const ModuleIndex& idx) {
  std::optional<std::string> m;
  if (starts_with(stem, "model.diffusion_model.")) {
    m = stem.substr(22);
  } else if (starts_with(stem, "diffusion_model.")) {
    m = stem.substr(16);
  } else if (starts_with(stem, "transformer.")) {
    m = diffusers_to_release(stem.substr(12));
  } else if (starts_with(stem, "lora_unet_")) {
    const auto it = idx.underscored.find(stem.substr(10));
    if (it != idx.underscored.end()) m = it->second;
  } else {
    m = stem;  // release names without a prefix
  }
  if (m && idx.modules.count(*m) == 0) m.reset();
  return m;
}

// One module's tensors from one file.
struct Group {
  std::string stem;
  std::map<Part, std::pair<std::string, Tensor>> parts;  // part -> (key, tensor)
  bool has(Part p) const { return parts.count(p) > 0; }
  const Tensor& get(Part p) const { return parts.at(p).second; }
  const std::string& key(Part p) const { return parts.at(p).first; }
};

std::string list_keys(const std::vector<std::string>& keys) {
  constexpr size_t kShown = 20;
  std::string s;
  for (size_t i = 0; i < keys.size() && i < kShown; ++i) s += (i ? ", " : "") + keys[i];
  if (keys.size() > kShown) s += fmt::format(" and {} more", keys.size() - kShown);
  return s;
}

// dst[i] = f32(base[i]) + factor·delta[i] for i < n (two f32 roundings), base of any float dtype;
// base may be dst itself. Split over the thread pool.
void add_scaled(const void* base, DType dt, int64_t n, const float* delta, float factor, float* dst) {
  const size_t esz = dtype_size(dt);
  const char* src = static_cast<const char*>(base);
  const bool in_place = base == static_cast<const void*>(dst);
  parallel_for(n, int64_t{1} << 15, [&](int64_t s, int64_t e) {
    if (!in_place) convert_to_f32(src + static_cast<size_t>(s) * esz, dt, dst + s, static_cast<size_t>(e - s));
    for (int64_t i = s; i < e; ++i) dst[i] = dst[i] + factor * delta[i];
  });
}

// dst = base + factor·(up @ down) with up [out, r(, 1...)], down [r, in...] (flattened to [r, in]).
// The product comes from the linear op (OpenBLAS sgemm on the CPU: up · (downᵀ)ᵀ) a block of rows
// at a time, so each block is added while it is still in cache and the memory traffic is one
// read of W and one write of W' (what the 14B merge's time is bound by).
void merge_low_rank(const Tensor& base, const Tensor& up_t, const Tensor& down_t, float factor, float* dst) {
  const int64_t r = down_t.size(0), in = down_t.numel() / r, out = up_t.size(0);
  const Tensor up = up_t.to(DType::F32).view({out, r});
  const Tensor down = down_t.to(DType::F32).view({r, in});
  Tensor down_tr = Tensor::empty({in, r}, DType::F32);  // [in, r]
  const float* d = down.data<float>();
  float* t = down_tr.data<float>();
  parallel_for(in, 256, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; ++i)
      for (int64_t k = 0; k < r; ++k) t[i * r + k] = d[k * in + i];
  });
  const int64_t rows = std::max<int64_t>(1, (int64_t{1} << 21) / std::max<int64_t>(in, 1));  // ~8 MB of product
  const size_t esz = dtype_size(base.dtype());
  for (int64_t o0 = 0; o0 < out; o0 += rows) {
    const int64_t nb = std::min(rows, out - o0);
    const Tensor y = ops::linear(up.slice(o0, o0 + nb), down_tr);  // [nb, in]
    add_scaled(static_cast<const char*>(base.raw()) + static_cast<size_t>(o0 * in) * esz, base.dtype(), nb * in,
               y.data<float>(), factor, dst + o0 * in);
  }
}

}  // namespace

LoraSpec parse_lora_spec(const std::string& text) {
  IB_CHECK(!text.empty(), "--lora: empty value (write FILE or FILE:SCALE)");
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return {text, 1.0};
  const std::string file = text.substr(0, colon), scale = text.substr(colon + 1);
  double v = 0;
  const char* end = scale.data() + scale.size();
  const auto [ptr, ec] = std::from_chars(scale.data(), end, v);
  IB_CHECK(!scale.empty() && ec == std::errc() && ptr == end && std::isfinite(v),
           "--lora '{}': the scale '{}' is not a number (write FILE or FILE:SCALE, e.g. style.safetensors:0.8; a file "
           "name with ':' in it needs the scale written out, FILE:1)",
           text, scale);
  IB_CHECK(!file.empty(), "--lora '{}': no file before the scale", text);
  return {file, v};
}

std::vector<LoraPatch> read_lora(const LoraSpec& spec, const std::map<std::string, Shape>& catalog) {
  const std::string& path = spec.path;
  IB_CHECK(std::isfinite(spec.scale), "LoRA '{}': the scale {} is not a finite number", path, spec.scale);
  IB_CHECK(std::filesystem::is_regular_file(path), "LoRA file not found: '{}'", path);
  IB_CHECK(ends_with(path, ".safetensors"), "LoRA '{}': not a .safetensors file (LoRAs are read from safetensors)",
           path);
  std::shared_ptr<SafetensorsFile> file;
  try {
    file = SafetensorsFile::open(path);
  } catch (const Error& e) {
    fail("LoRA '{}' cannot be read: {}", path, e.what());
  }
  const std::vector<std::string> keys = file->names();
  IB_CHECK(!keys.empty(), "LoRA '{}' holds no tensors", path);

  // Keys -> modules; everything that does not resolve is collected for one error.
  const ModuleIndex idx(catalog);
  std::map<std::string, Group> groups;  // by release module
  std::vector<std::string> unmatched;
  for (const std::string& key : keys) {
    const Suffix* suf = nullptr;
    for (const Suffix& s : kSuffixes)
      if (ends_with(key, s.text)) {
        suf = &s;
        break;
      }
    std::optional<std::string> module;
    if (suf != nullptr) module = resolve_module(key.substr(0, key.size() - suf->text.size()), idx);
    if (!module) {
      unmatched.push_back(key);
      continue;
    }
    Group& g = groups[*module];
    if (g.stem.empty()) g.stem = key.substr(0, key.size() - suf->text.size());
    const auto [it, fresh] = g.parts.emplace(suf->part, std::pair{key, Tensor()});
    IB_CHECK(fresh, "LoRA '{}': keys '{}' and '{}' both give the {} of '{}'", path, it->second.first, key,
             part_name(suf->part), *module);
    it->second.second = file->get(key);
    const Tensor& t = it->second.second;
    IB_CHECK(dtype_is_float(t.dtype()), "LoRA '{}': tensor '{}' is {}, not a float type", path, key,
             dtype_name(t.dtype()));
  }
  // A weight patch needs module.weight (or the bare parameter for diff), a bias patch module.bias.
  auto target_of = [&](const std::string& module, Part p) -> std::string {
    if (p == Part::DiffB || p == Part::UpBias) return catalog.count(module + ".bias") ? module + ".bias" : "";
    if (catalog.count(module + ".weight")) return module + ".weight";
    return (p == Part::Diff && catalog.count(module)) ? module : "";
  };
  for (const auto& [module, g] : groups)
    for (const auto& [part, kt] : g.parts)
      if (target_of(module, part).empty()) unmatched.push_back(kt.first);
  if (!unmatched.empty()) {
    std::sort(unmatched.begin(), unmatched.end());
    fail("LoRA '{}': {} of its {} keys match no weight of this model: {}. Known key forms: <stem>.lora_down.weight/"
         ".lora_up.weight/.alpha, <stem>.lora_A.weight/.lora_B.weight, <stem>.diff/.diff_b, the stem in the release's "
         "names (optionally behind 'diffusion_model.' or 'model.diffusion_model.'), underscored behind 'lora_unet_', or "
         "in diffusers' names behind 'transformer.'; a LoRA for another model does not fit",
         path, unmatched.size(), keys.size(), list_keys(unmatched));
  }

  std::vector<LoraPatch> patches;
  for (const auto& [module, g] : groups) {
    // Low rank: down and up together; alpha scales them (alpha = rank when absent).
    const bool has_pair = g.has(Part::Down) || g.has(Part::Up);
    IB_CHECK(!has_pair || (g.has(Part::Down) && g.has(Part::Up)), "LoRA '{}': '{}' has a {} but no {}", path, g.stem,
             g.has(Part::Down) ? "lora_down (lora_A)" : "lora_up (lora_B)",
             g.has(Part::Down) ? "lora_up (lora_B)" : "lora_down (lora_A)");
    IB_CHECK(has_pair || !g.has(Part::Alpha), "LoRA '{}': '{}' has an alpha but no lora_down/lora_up pair", path,
             g.key(Part::Alpha));
    double alpha_over_rank = 1.0;
    if (has_pair) {
      const std::string target = target_of(module, Part::Down);
      const Shape& ws = catalog.at(target);
      const Tensor& down = g.get(Part::Down);
      const Tensor& up = g.get(Part::Up);
      const std::string what = fmt::format("lora_up {} @ lora_down {}", shape_str(up.shape()), shape_str(down.shape()));
      IB_CHECK(ws.size() >= 2, "LoRA '{}': '{}' patches '{}', a {} vector, with a low-rank pair ({}); only matrices take one",
               path, g.stem, target, shape_str(ws), what);
      const int64_t rank = down.dim() >= 2 ? down.size(0) : 0;
      bool fits = down.dim() == static_cast<int64_t>(ws.size()) && up.dim() >= 2 && rank >= 1 &&
                  up.size(0) == ws[0] && up.size(1) == rank;
      for (size_t i = 1; fits && i < ws.size(); ++i) fits = down.size(static_cast<int64_t>(i)) == ws[i];
      for (int64_t i = 2; fits && i < up.dim(); ++i) fits = up.size(i) == 1;
      IB_CHECK(fits, "LoRA '{}' does not fit this model: '{}' is {} in the model, but the LoRA's '{}' has {}", path, target,
               shape_str(ws), g.stem, what);
      if (g.has(Part::Alpha)) {
        const Tensor& a = g.get(Part::Alpha);
        IB_CHECK(a.numel() == 1, "LoRA '{}': alpha '{}' has shape {}, expected a scalar", path, g.key(Part::Alpha),
                 shape_str(a.shape()));
        const double alpha = a.item_f32(0);
        IB_CHECK(std::isfinite(alpha), "LoRA '{}': alpha '{}' is not finite", path, g.key(Part::Alpha));
        alpha_over_rank = alpha / static_cast<double>(rank);
      }
      LoraPatch p;
      p.kind = LoraPatch::Kind::LowRank;
      p.target = target;
      p.key = g.stem;
      p.up = up;
      p.down = down;
      p.factor = static_cast<float>(spec.scale * alpha_over_rank);
      patches.push_back(std::move(p));
    }
    // Full patches of the weight (or parameter) and the bias; lora_B.bias is scaled like its pair.
    for (Part part : {Part::Diff, Part::DiffB, Part::UpBias}) {
      if (!g.has(part)) continue;
      const std::string target = target_of(module, part);
      const Shape& ws = catalog.at(target);
      const Tensor& d = g.get(part);
      IB_CHECK(d.shape() == ws, "LoRA '{}' does not fit this model: '{}' is {} in the model, but the LoRA's '{}' is {}",
               path, target, shape_str(ws), g.key(part), shape_str(d.shape()));
      LoraPatch p;
      p.kind = LoraPatch::Kind::Diff;
      p.target = target;
      p.key = g.key(part);
      p.diff = d;
      p.factor = static_cast<float>(part == Part::UpBias ? spec.scale * alpha_over_rank : spec.scale);
      patches.push_back(std::move(p));
    }
  }
  return patches;
}

void check_loras(const TensorStore& dit_weights, const std::vector<LoraSpec>& specs) {
  if (specs.empty()) return;
  std::map<std::string, Shape> catalog;
  for (const std::string& name : dit_weights.names()) catalog.emplace(name, dit_weights.info(name).shape);
  for (const LoraSpec& s : specs) read_lora(s, catalog);
}

std::vector<LoraPatch> read_loras(WanDiT& dit, const std::vector<LoraSpec>& specs) {
  if (specs.empty()) return {};
  std::map<std::string, Shape> catalog;
  for (const WanDiT::NamedWeight& w : dit.named_weights()) catalog.emplace(w.name, w.shape);
  return read_loras(catalog, specs);
}

std::vector<LoraPatch> read_loras(const std::map<std::string, Shape>& catalog, const std::vector<LoraSpec>& specs) {
  std::vector<LoraPatch> all;
  for (const LoraSpec& s : specs)
    for (LoraPatch& p : read_lora(s, catalog)) all.push_back(std::move(p));
  return all;
}

size_t apply_loras(WanDiT& dit, const std::vector<LoraSpec>& specs) {
  if (specs.empty()) return 0;
  std::map<std::string, Tensor*> held;
  for (const WanDiT::NamedWeight& w : dit.named_weights()) {
    IB_CHECK(w.tensor->device() == Device::CPU, "LoRAs are merged on the CPU, before the DiT moves to the GPU ('{}' is on {})",
             w.name, device_name(w.tensor->device()));
    held.emplace(w.name, w.tensor);
  }
  // Every file is read and checked before anything changes.
  const std::vector<LoraPatch> all = read_loras(dit, specs);

  std::set<std::string> patched;
  for (const LoraPatch& p : all) {
    Tensor& t = *held.at(p.target);
    const int64_t n = p.kind == LoraPatch::Kind::LowRank ? p.up.size(0) * (p.down.numel() / p.down.size(0))
                                                         : p.diff.numel();
    IB_CHECK(n == t.numel(), "LoRA patch '{}' of '{}': {} values for a tensor of {}", p.key, p.target, n, t.numel());
    // The loaded tensor may be the read-only memory map: the first patch writes a new f32 tensor,
    // later ones (another file on the same weight) add to it in place.
    const bool first = patched.insert(p.target).second;
    Tensor dst = first ? Tensor::empty(t.shape(), DType::F32) : t;
    if (p.kind == LoraPatch::Kind::LowRank) {
      merge_low_rank(t, p.up, p.down, p.factor, dst.data<float>());
    } else {
      const Tensor diff = p.diff.to(DType::F32);
      add_scaled(t.raw(), t.dtype(), n, diff.data<float>(), p.factor, dst.data<float>());
    }
    t = dst;
  }
  return patched.size();
}

}  // namespace ib
