// Model folder in the official release layout: locates the weight files and the tokenizer, parses
// config.json (DiT) and the optional inbetween.json (T5/CLIP/VAE sizes the release hard-codes), each
// size within its bound; and the checks every reader of a model's files uses (io/model_folder.h):
// regular files only, JSON within size and nesting limits.
#include "io/model_folder.h"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "core/check.h"
#include "core/log.h"
#include "core/mapped_file.h"
#include "io/model_config.h"

namespace ib {

namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

const char* file_type_name(mode_t m) {
  if (S_ISDIR(m)) return "a folder";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  return "a special file";
}

}  // namespace

void require_regular_file(const std::string& path, const char* what) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int e = errno;
    IB_CHECK(e != ENOENT, "{} '{}' does not exist", what, path);
    fail("cannot read {} '{}': {}", what, path, std::strerror(e));
  }
  IB_CHECK(S_ISREG(st.st_mode), "{} '{}' is {}, not a regular file; refusing to open it", what, path,
           file_type_name(st.st_mode));
}

json parse_json_limited(const unsigned char* data, size_t size, const std::string& label, const JsonLimits& limits) {
  IB_CHECK(size <= limits.max_bytes, "'{}': the {} is {} bytes, more than the limit of {} bytes for a {}", label,
           limits.what, size, limits.max_bytes, limits.what);
  // The callback sees each array or object as it opens, `depth` being the number of enclosing
  // ones; throwing there stops the parser before it builds anything deeper.
  const json::parser_callback_t cut = [&](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start || event == json::parse_event_t::array_start) &&
        depth >= limits.max_depth)
      fail("'{}': the {} nests arrays and objects more than {} deep, the limit for a {}", label, limits.what,
           limits.max_depth, limits.what);
    return true;
  };
  try {
    return json::parse(data, data + size, cut);
  } catch (const json::exception& e) {
    fail("'{}': the {} is not valid JSON: {}", label, limits.what, e.what());
  }
}

namespace {

json parse_config_json(const unsigned char* data, size_t size, const std::string& label) {
  json j = parse_json_limited(data, size, label, kConfigJsonLimits);
  IB_CHECK(j.is_object(), "'{}' is not a JSON object", label);
  return j;
}

std::string describe(const json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 40) + "...";
  return s;
}

// Typed readers: errors name the key and the file, and for a size above its bound, the bound.
int64_t positive_int(const json& v, const std::string& key, const std::string& file, int64_t max) {
  IB_CHECK(v.is_number_integer() && v.get<int64_t>() > 0, "'{}': '{}' must be a positive integer, found {}", file,
           key, describe(v));
  const int64_t i = v.get<int64_t>();
  IB_CHECK(i <= max, "'{}': '{}' is {}, above the limit of {} for it (see config_limits in io/model_config.h)", file,
           key, i, max);
  return i;
}

// A number in (0, 1) as the f32 the models compute with: one that rounds to 0 (below ~1e-45) or to
// 1 (above 1 - 2^-25) is refused too, not turned into an epsilon of 0 or 1.
float positive_float(const json& v, const std::string& key, const std::string& file) {
  IB_CHECK(v.is_number() && std::isfinite(v.get<double>()) && v.get<double>() > 0 && v.get<double>() < 1,
           "'{}': '{}' must be a number in (0, 1), found {}", file, key, describe(v));
  const auto f = static_cast<float>(v.get<double>());
  IB_CHECK(f > 0.0f && f < 1.0f, "'{}': '{}' = {} rounds to {} as a 32-bit float; it must stay in (0, 1)", file, key,
           describe(v), f);
  return f;
}

// Applies the known keys of one JSON object through `setters`; any other key is an error.
using Setter = std::function<void(const json&, const std::string& key)>;
void apply(const json& obj, const std::string& section, const std::string& file,
           const std::map<std::string, Setter>& setters) {
  IB_CHECK(obj.is_object(), "'{}': '{}' must be an object, found {}", file, section, describe(obj));
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    auto s = setters.find(it.key());
    const std::string key = section + "." + it.key();
    IB_CHECK(s != setters.end(), "'{}': unknown key '{}'", file, key);
    s->second(it.value(), key);
  }
}

void parse_dit(const json& j, const std::string& file, DitConfig& c) {
  namespace lim = config_limits;
  auto i = [&](int64_t& dst, int64_t max) {
    return [&dst, &file, max](const json& v, const std::string& k) { dst = positive_int(v, k, file, max); };
  };
  const std::map<std::string, Setter> keys = {
      {"model_type",
       [&](const json& v, const std::string& k) {
         IB_CHECK(v.is_string(), "'{}': '{}' must be a string, found {}", file, k, describe(v));
         c.model_type = v.get<std::string>();
         IB_CHECK(c.model_type == "flf2v" || c.model_type == "i2v" || c.model_type == "t2v",
                  "'{}': model_type '{}' is not one of flf2v, i2v, t2v", file, c.model_type);
       }},
      {"text_len", i(c.text_len, lim::kTextLen)},    {"in_dim", i(c.in_dim, lim::kWidth)},
      {"dim", i(c.dim, lim::kWidth)},                {"ffn_dim", i(c.ffn_dim, lim::kWidth)},
      {"freq_dim", i(c.freq_dim, lim::kWidth)},      {"out_dim", i(c.out_dim, lim::kWidth)},
      {"num_heads", i(c.num_heads, lim::kHeads)},    {"num_layers", i(c.num_layers, lim::kLayers)},
      {"eps", [&](const json& v, const std::string& k) { c.eps = positive_float(v, k, file); }},
  };
  // Metadata, and constructor arguments the DiT fixes whatever the JSON says (spec 1.4).
  static const char* const kIgnored[] = {"_class_name", "_diffusers_version", "_name_or_path", "patch_size",
                                         "text_dim",    "qk_norm",            "cross_attn_norm", "window_size"};
  json known = json::object();
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (keys.count(it.key())) {
      known[it.key()] = it.value();
    } else if (std::find(std::begin(kIgnored), std::end(kIgnored), it.key()) == std::end(kIgnored)) {
      spdlog::warn("'{}': ignoring unknown key '{}'", file, it.key());
    }
  }
  for (const auto& [k, setter] : keys)
    IB_CHECK(known.contains(k), "'{}': required key '{}' is missing", file, k);
  for (auto it = known.begin(); it != known.end(); ++it) keys.at(it.key())(it.value(), it.key());

  IB_CHECK(c.dim % c.num_heads == 0, "'{}': dim {} is not divisible by num_heads {}", file, c.dim, c.num_heads);
  IB_CHECK((c.dim / c.num_heads) % 2 == 0, "'{}': head dimension {} (dim / num_heads) must be even for RoPE", file,
           c.dim / c.num_heads);
  IB_CHECK(c.freq_dim % 2 == 0, "'{}': freq_dim {} must be even", file, c.freq_dim);
}

void parse_inbetween(const json& j, const std::string& file, T5Config& t5, ClipConfig& clip, VaeConfig& vae) {
  namespace lim = config_limits;
  auto i = [&](int64_t& dst, int64_t max) {
    return [&dst, &file, max](const json& v, const std::string& k) { dst = positive_int(v, k, file, max); };
  };
  auto f = [&](float& dst) { return [&dst, &file](const json& v, const std::string& k) { dst = positive_float(v, k, file); }; };
  const std::map<std::string, Setter> t5_keys = {
      {"vocab", i(t5.vocab, lim::kVocab)},
      {"dim", i(t5.dim, lim::kWidth)},
      {"dim_attn", i(t5.dim_attn, lim::kWidth)},
      {"dim_ffn", i(t5.dim_ffn, lim::kWidth)},
      {"num_heads", i(t5.num_heads, lim::kHeads)},
      {"num_layers", i(t5.num_layers, lim::kLayers)},
      {"num_buckets", i(t5.num_buckets, lim::kBuckets)},
      {"max_distance", i(t5.max_distance, lim::kDistance)},
      {"eps", f(t5.eps)},
  };
  const std::map<std::string, Setter> clip_keys = {
      {"image_size", i(clip.image_size, lim::kImageSize)},
      {"patch_size", i(clip.patch_size, lim::kImageSize)},
      {"dim", i(clip.dim, lim::kWidth)},
      {"mlp_ratio", i(clip.mlp_ratio, lim::kRatio)},
      {"num_heads", i(clip.num_heads, lim::kHeads)},
      {"num_layers", i(clip.num_layers, lim::kLayers)},
      {"eps", f(clip.eps)},
  };
  const std::map<std::string, Setter> vae_keys = {
      {"dim", i(vae.dim, lim::kWidth)},
      {"z_dim", i(vae.z_dim, lim::kWidth)},
      {"num_res_blocks", i(vae.num_res_blocks, lim::kResBlocks)},
      {"dim_mult",
       [&](const json& v, const std::string& k) {
         IB_CHECK(v.is_array() && !v.empty() && v.size() <= 8, "'{}': '{}' must be a list of 1 to 8 positive integers, found {}",
                  file, k, describe(v));
         vae.dim_mult.clear();
         for (size_t n = 0; n < v.size(); ++n)
           vae.dim_mult.push_back(positive_int(v[n], fmt::format("{}[{}]", k, n), file, lim::kRatio));
       }},
      {"temporal_downsample",
       [&](const json& v, const std::string& k) {
         IB_CHECK(v.is_array() && v.size() <= 8, "'{}': '{}' must be a list of booleans, found {}", file, k, describe(v));
         vae.temporal_downsample.clear();
         for (size_t n = 0; n < v.size(); ++n) {
           IB_CHECK(v[n].is_boolean(), "'{}': '{}[{}]' must be a boolean, found {}", file, k, n, describe(v[n]));
           vae.temporal_downsample.push_back(v[n].get<bool>());
         }
       }},
  };
  const std::map<std::string, Setter> sections = {
      {"t5", [&](const json& v, const std::string& k) { apply(v, k, file, t5_keys); }},
      {"clip", [&](const json& v, const std::string& k) { apply(v, k, file, clip_keys); }},
      {"vae", [&](const json& v, const std::string& k) { apply(v, k, file, vae_keys); }},
  };
  for (auto it = j.begin(); it != j.end(); ++it) {
    auto s = sections.find(it.key());
    IB_CHECK(s != sections.end(), "'{}': unknown section '{}' (expected t5, clip, vae)", file, it.key());
    s->second(it.value(), it.key());
  }

  IB_CHECK(t5.dim_attn % t5.num_heads == 0, "'{}': t5.dim_attn {} is not divisible by t5.num_heads {}", file,
           t5.dim_attn, t5.num_heads);
  IB_CHECK(clip.dim % clip.num_heads == 0, "'{}': clip.dim {} is not divisible by clip.num_heads {}", file, clip.dim,
           clip.num_heads);
  IB_CHECK(clip.image_size % clip.patch_size == 0, "'{}': clip.image_size {} is not a multiple of clip.patch_size {}",
           file, clip.image_size, clip.patch_size);
  for (const int64_t m : vae.dim_mult)
    IB_CHECK(vae.dim * m <= lim::kWidth, "'{}': vae.dim {} x vae.dim_mult entry {} is above the limit of {} channels",
             file, vae.dim, m, lim::kWidth);
  IB_CHECK(vae.temporal_downsample.size() + 1 == vae.dim_mult.size(),
           "'{}': vae.temporal_downsample has {} entries but vae.dim_mult has {} (needs one fewer)", file,
           vae.temporal_downsample.size(), vae.dim_mult.size());
}

// Reads a config file of the folder: a regular file, within kConfigJsonLimits.
std::shared_ptr<MappedFile> map_config(const std::string& path) {
  require_regular_file(path, "config file");
  return MappedFile::open(path);
}

}  // namespace

DitConfig parse_dit_config(const unsigned char* data, size_t size, const std::string& label) {
  DitConfig c;
  parse_dit(parse_config_json(data, size, label), label, c);
  return c;
}

void parse_inbetween_config(const unsigned char* data, size_t size, const std::string& label, T5Config& t5,
                            ClipConfig& clip, VaeConfig& vae) {
  parse_inbetween(parse_config_json(data, size, label), label, t5, clip, vae);
}

ModelFolder ModelFolder::open(const std::string& dir) {
  std::error_code ec;
  IB_CHECK(fs::exists(dir, ec), "model folder '{}' does not exist", dir);
  IB_CHECK(fs::is_directory(dir, ec), "model folder '{}' is not a folder", dir);
  ModelFolder m;
  m.dir = dir;
  const fs::path d(dir);
  auto need = [&](const char* name, const char* what) {
    const fs::path p = d / name;
    IB_CHECK(fs::is_regular_file(p, ec), "model folder '{}' lacks '{}' ({})", dir, name, what);
    return p.string();
  };

  const fs::path index = d / "diffusion_pytorch_model.safetensors.index.json";
  const fs::path single = d / "diffusion_pytorch_model.safetensors";
  if (fs::is_regular_file(index, ec)) {
    m.dit_path = index.string();
  } else if (fs::is_regular_file(single, ec)) {
    m.dit_path = single.string();
  } else {
    fail("model folder '{}' lacks the DiT weights: neither 'diffusion_pytorch_model.safetensors.index.json' nor "
         "'diffusion_pytorch_model.safetensors' is there", dir);
  }
  {
    const std::string config = need("config.json", "the DiT hyper-parameters");
    const auto mf = map_config(config);
    m.dit = parse_dit_config(mf->data(), mf->size(), config);
  }
  m.t5_path = need("models_t5_umt5-xxl-enc-bf16.pth", "the umT5 text encoder");
  // Text-to-video releases ship no image encoder.
  if (m.dit.model_type != "t2v")
    m.clip_path = need("models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", "the CLIP image encoder");
  m.vae_path = need("Wan2.1_VAE.pth", "the VAE");
  m.tokenizer_path = need("google/umt5-xxl/spiece.model", "the umT5 tokenizer");
  const fs::path extra = d / "inbetween.json";
  if (fs::exists(extra, ec)) {
    const auto mf = map_config(extra.string());
    parse_inbetween_config(mf->data(), mf->size(), extra.string(), m.t5, m.clip, m.vae);
  }
  return m;
}

}  // namespace ib
