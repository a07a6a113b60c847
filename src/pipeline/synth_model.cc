#include "pipeline/synth_model.h"

#include <sentencepiece_trainer.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "core/parallel.h"
#include "io/pth_writer.h"
#include "io/safetensors.h"
#include "pipeline/demo_model.h"
#include "text/prompt.h"

// sentencepiece's own log threshold (exported by libsentencepiece, not declared in its public
// headers): the trainer logs its command line at INFO before it reads --minloglevel.
namespace sentencepiece::logging {
int GetMinLogLevel();
void SetMinLogLevel(int v);
}  // namespace sentencepiece::logging

namespace ib {

namespace fs = std::filesystem;
using Specs = std::vector<std::pair<std::string, Shape>>;

std::vector<std::string> synth_preset_names() { return {"demo", "tiny", "flf2v-14b", "flf2v-14b-bf16"}; }

SynthPreset synth_preset(const std::string& name) {
  SynthPreset p;
  p.name = name;
  if (name == "tiny") {
    // The fixture model's sizes: seconds on a CPU.
    p.dit.text_len = 16;
    p.dit.dim = 128;
    p.dit.ffn_dim = 256;
    p.dit.num_heads = 4;
    p.dit.num_layers = 2;
    p.t5 = T5Config{1200, 64, 64, 128, 4, 2, 32, 128, 1e-6f};
    p.clip = ClipConfig{28, 14, 64, 4, 4, 3, 1e-5f};
    p.vae.dim = 8;
    return p;
  }
  if (name == "demo") {
    // Hand-built VAE and DiT (pipeline/demo_model.h) with the tiny preset's T5 and CLIP.
    p = synth_preset("tiny");
    p.name = name;
    p.dit = demo_dit_config();
    p.vae = demo_vae_config();
    p.hand_built = true;
    return p;
  }
  if (name == "flf2v-14b" || name == "flf2v-14b-bf16") {
    p.dit_dtype = name == "flf2v-14b" ? "f32" : "bf16";
    return p;  // the official defaults
  }
  fail("unknown preset '{}' (available: {})", name, fmt::join(synth_preset_names(), ", "));
}

Specs t5_weight_shapes(const T5Config& c) {
  Specs s{{"token_embedding.weight", {c.vocab, c.dim}}};
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string b = fmt::format("blocks.{}.", l);
    s.push_back({b + "norm1.weight", {c.dim}});
    for (const char* m : {"q", "k", "v"}) s.push_back({b + "attn." + m + ".weight", {c.dim_attn, c.dim}});
    s.push_back({b + "attn.o.weight", {c.dim, c.dim_attn}});
    s.push_back({b + "norm2.weight", {c.dim}});
    s.push_back({b + "ffn.gate.0.weight", {c.dim_ffn, c.dim}});
    s.push_back({b + "ffn.fc1.weight", {c.dim_ffn, c.dim}});
    s.push_back({b + "ffn.fc2.weight", {c.dim, c.dim_ffn}});
    s.push_back({b + "pos_embedding.embedding.weight", {c.num_buckets, c.num_heads}});
  }
  s.push_back({"norm.weight", {c.dim}});
  return s;
}

Specs clip_weight_shapes(const ClipConfig& c) {
  const int64_t grid = c.image_size / c.patch_size, d = c.dim, mlp = c.dim * c.mlp_ratio;
  Specs s{{"visual.patch_embedding.weight", {d, 3, c.patch_size, c.patch_size}},
          {"visual.cls_embedding", {1, 1, d}},
          {"visual.pos_embedding", {1, grid * grid + 1, d}},
          {"visual.pre_norm.weight", {d}},
          {"visual.pre_norm.bias", {d}}};
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = fmt::format("visual.transformer.{}.", i);
    for (const char* n : {"norm1", "norm2"}) {
      s.push_back({b + n + ".weight", {d}});
      s.push_back({b + n + ".bias", {d}});
    }
    s.push_back({b + "attn.to_qkv.weight", {3 * d, d}});
    s.push_back({b + "attn.to_qkv.bias", {3 * d}});
    s.push_back({b + "attn.proj.weight", {d, d}});
    s.push_back({b + "attn.proj.bias", {d}});
    s.push_back({b + "mlp.0.weight", {mlp, d}});
    s.push_back({b + "mlp.0.bias", {mlp}});
    s.push_back({b + "mlp.2.weight", {d, mlp}});
    s.push_back({b + "mlp.2.bias", {d}});
  }
  s.push_back({"visual.post_norm.weight", {d}});
  s.push_back({"visual.post_norm.bias", {d}});
  s.push_back({"visual.head", {d, 1024}});  // projection to the 1024-d joint space (unused)
  return s;
}

namespace {

void residual_specs(Specs& s, const std::string& p, int64_t cin, int64_t cout) {
  s.push_back({p + ".residual.0.gamma", {cin, 1, 1, 1}});
  s.push_back({p + ".residual.2.weight", {cout, cin, 3, 3, 3}});
  s.push_back({p + ".residual.2.bias", {cout}});
  s.push_back({p + ".residual.3.gamma", {cout, 1, 1, 1}});
  s.push_back({p + ".residual.6.weight", {cout, cout, 3, 3, 3}});
  s.push_back({p + ".residual.6.bias", {cout}});
  if (cin != cout) {
    s.push_back({p + ".shortcut.weight", {cout, cin, 1, 1, 1}});
    s.push_back({p + ".shortcut.bias", {cout}});
  }
}

void attention_specs(Specs& s, const std::string& p, int64_t c) {
  s.push_back({p + ".norm.gamma", {c, 1, 1}});
  s.push_back({p + ".to_qkv.weight", {3 * c, c, 1, 1}});
  s.push_back({p + ".to_qkv.bias", {3 * c}});
  s.push_back({p + ".proj.weight", {c, c, 1, 1}});
  s.push_back({p + ".proj.bias", {c}});
}

void resample_specs(Specs& s, const std::string& p, int64_t c, bool up, bool temporal) {
  const int64_t out = up ? c / 2 : c;
  s.push_back({p + ".resample.1.weight", {out, c, 3, 3}});
  s.push_back({p + ".resample.1.bias", {out}});
  if (temporal) {
    const int64_t tout = up ? 2 * c : c;
    s.push_back({p + ".time_conv.weight", {tout, c, 3, 1, 1}});
    s.push_back({p + ".time_conv.bias", {tout}});
  }
}

}  // namespace

Specs vae_weight_shapes(const VaeConfig& c) {
  Specs s;
  const size_t levels = c.dim_mult.size();
  std::vector<int64_t> dims{c.dim};
  for (int64_t u : c.dim_mult) dims.push_back(c.dim * u);
  // Encoder (upstream Encoder3d).
  s.push_back({"encoder.conv1.weight", {dims[0], 3, 3, 3, 3}});
  s.push_back({"encoder.conv1.bias", {dims[0]}});
  // The channel count carries over from level to level, as in WanVAE::load (the same whenever
  // num_res_blocks >= 1).
  int idx = 0;
  int64_t in = dims[0];
  for (size_t i = 0; i < levels; ++i) {
    const int64_t out = dims[i + 1];
    for (int64_t r = 0; r < c.num_res_blocks; ++r) {
      residual_specs(s, fmt::format("encoder.downsamples.{}", idx++), in, out);
      in = out;
    }
    if (i + 1 != levels) resample_specs(s, fmt::format("encoder.downsamples.{}", idx++), in, false, c.temporal_downsample[i]);
  }
  const int64_t top = in;
  residual_specs(s, "encoder.middle.0", top, top);
  attention_specs(s, "encoder.middle.1", top);
  residual_specs(s, "encoder.middle.2", top, top);
  s.push_back({"encoder.head.0.gamma", {top, 1, 1, 1}});
  s.push_back({"encoder.head.2.weight", {2 * c.z_dim, top, 3, 3, 3}});
  s.push_back({"encoder.head.2.bias", {2 * c.z_dim}});
  s.push_back({"conv1.weight", {2 * c.z_dim, 2 * c.z_dim, 1, 1, 1}});
  s.push_back({"conv1.bias", {2 * c.z_dim}});
  s.push_back({"conv2.weight", {c.z_dim, c.z_dim, 1, 1, 1}});
  s.push_back({"conv2.bias", {c.z_dim}});
  // Decoder (upstream Decoder3d): dims reversed, starting from the deepest width.
  std::vector<int64_t> ddims{c.dim * c.dim_mult.back()};
  for (size_t i = levels; i-- > 0;) ddims.push_back(c.dim * c.dim_mult[i]);
  s.push_back({"decoder.conv1.weight", {ddims[0], c.z_dim, 3, 3, 3}});
  s.push_back({"decoder.conv1.bias", {ddims[0]}});
  residual_specs(s, "decoder.middle.0", ddims[0], ddims[0]);
  attention_specs(s, "decoder.middle.1", ddims[0]);
  residual_specs(s, "decoder.middle.2", ddims[0], ddims[0]);
  idx = 0;
  for (size_t i = 0; i < levels; ++i) {
    int64_t d_in = ddims[i];
    const int64_t out = ddims[i + 1];
    if (i >= 1) d_in /= 2;  // the resample before halved the channels (upstream: `if i in (1, 2, 3)`)
    for (int64_t r = 0; r < c.num_res_blocks + 1; ++r) {
      residual_specs(s, fmt::format("decoder.upsamples.{}", idx++), d_in, out);
      d_in = out;
    }
    if (i + 1 != levels) {
      const bool temporal = c.temporal_downsample[levels - 2 - i];
      resample_specs(s, fmt::format("decoder.upsamples.{}", idx++), out, true, temporal);
    }
  }
  s.push_back({"decoder.head.0.gamma", {ddims.back(), 1, 1, 1}});
  s.push_back({"decoder.head.2.weight", {3, ddims.back(), 3, 3, 3}});
  s.push_back({"decoder.head.2.bias", {3}});
  return s;
}

Specs dit_weight_shapes(const DitConfig& c, int64_t text_dim, int64_t clip_dim, int64_t image_tokens) {
  const int64_t d = c.dim;
  Specs s{{"patch_embedding.weight", {d, c.in_dim, 1, 2, 2}}, {"patch_embedding.bias", {d}},
          {"text_embedding.0.weight", {d, text_dim}},        {"text_embedding.0.bias", {d}},
          {"text_embedding.2.weight", {d, d}},               {"text_embedding.2.bias", {d}},
          {"time_embedding.0.weight", {d, c.freq_dim}},      {"time_embedding.0.bias", {d}},
          {"time_embedding.2.weight", {d, d}},               {"time_embedding.2.bias", {d}},
          {"time_projection.1.weight", {6 * d, d}},          {"time_projection.1.bias", {6 * d}}};
  const bool image = c.model_type != "t2v";
  for (int64_t i = 0; i < c.num_layers; ++i) {
    const std::string b = fmt::format("blocks.{}.", i);
    s.push_back({b + "modulation", {1, 6, d}});
    for (const char* a : {"self_attn", "cross_attn"}) {
      for (const char* m : {"q", "k", "v", "o"}) {
        s.push_back({b + a + "." + m + ".weight", {d, d}});
        s.push_back({b + a + "." + m + ".bias", {d}});
      }
      s.push_back({b + a + ".norm_q.weight", {d}});
      s.push_back({b + a + ".norm_k.weight", {d}});
    }
    if (image) {
      for (const char* m : {"k_img", "v_img"}) {
        s.push_back({b + "cross_attn." + m + ".weight", {d, d}});
        s.push_back({b + "cross_attn." + m + ".bias", {d}});
      }
      s.push_back({b + "cross_attn.norm_k_img.weight", {d}});
    }
    s.push_back({b + "norm3.weight", {d}});
    s.push_back({b + "norm3.bias", {d}});
    s.push_back({b + "ffn.0.weight", {c.ffn_dim, d}});
    s.push_back({b + "ffn.0.bias", {c.ffn_dim}});
    s.push_back({b + "ffn.2.weight", {d, c.ffn_dim}});
    s.push_back({b + "ffn.2.bias", {d}});
  }
  s.push_back({"head.modulation", {1, 2, d}});
  s.push_back({"head.head.weight", {c.out_dim * 4, d}});
  s.push_back({"head.head.bias", {c.out_dim * 4}});
  if (image) {
    s.push_back({"img_emb.proj.0.weight", {clip_dim}});
    s.push_back({"img_emb.proj.0.bias", {clip_dim}});
    s.push_back({"img_emb.proj.1.weight", {clip_dim, clip_dim}});
    s.push_back({"img_emb.proj.1.bias", {clip_dim}});
    s.push_back({"img_emb.proj.3.weight", {d, clip_dim}});
    s.push_back({"img_emb.proj.3.bias", {d}});
    s.push_back({"img_emb.proj.4.weight", {d}});
    s.push_back({"img_emb.proj.4.bias", {d}});
    if (c.model_type == "flf2v") s.push_back({"img_emb.emb_pos", {1, image_tokens, clip_dim}});
  }
  return s;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}

// One random tensor: norms and gammas one, biases zero, everything else uniform with variance
// 1/fan_in (embeddings and position tables: variance 1/last dim).
Tensor random_weight(const std::string& name, const Shape& shape, DType dtype, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::F32);
  float* p = t.data<float>();
  const int64_t n = t.numel();
  const bool is_gamma = ends_with(name, ".gamma") ||
                        (shape.size() == 1 && ends_with(name, ".weight") && name.find("norm") != std::string::npos) ||
                        name.find("img_emb.proj.0.weight") != std::string::npos ||
                        name.find("img_emb.proj.4.weight") != std::string::npos;
  if (is_gamma) {
    std::fill_n(p, n, 1.0f);
  } else if (ends_with(name, ".bias")) {
    std::fill_n(p, n, 0.0f);
  } else {
    int64_t fan_in = shape.size() >= 2 ? n / shape[0] : std::max<int64_t>(n, 1);
    if (name.find("embedding") != std::string::npos || name.find("emb_pos") != std::string::npos ||
        name.find("modulation") != std::string::npos)
      fan_in = shape.back();
    const float a = static_cast<float>(std::sqrt(3.0 / static_cast<double>(std::max<int64_t>(fan_in, 1))));
    const uint64_t base = mix(seed ^ name_hash(name));
    constexpr int64_t kChunk = 1 << 16;
    parallel_for((n + kChunk - 1) / kChunk, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        uint64_t state = mix(base + static_cast<uint64_t>(c));
        const int64_t end = std::min(n, (c + 1) * kChunk);
        for (int64_t i = c * kChunk; i < end; ++i) {
          state = mix(state);
          const float u = static_cast<float>(state >> 40) * 0x1.0p-24f;  // [0, 1)
          p[i] = a * (2.0f * u - 1.0f);
        }
      }
    });
  }
  return t.to(dtype);
}

}  // namespace

std::vector<std::pair<std::string, Tensor>> make_weights(const Specs& specs, DType dtype, uint64_t seed) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, shape] : specs) out.emplace_back(name, random_weight(name, shape, dtype, seed));
  return out;
}

namespace {

// A small unigram SentencePiece model trained on a built-in corpus: enough to tokenize prompts
// (real checkpoints ship the 256k-piece umT5 model).
void write_tokenizer(const fs::path& dir, int64_t vocab_limit) {
  fs::create_directories(dir);
  const fs::path corpus = dir / "corpus.txt";
  {
    std::ofstream f(corpus);
    const char* lines[] = {
        "A small blue bird takes off from the ground, flapping its wings.",
        "A white dove flies over a waterfall at sunrise.",
        "The camera slowly pans across a quiet city street at night, lights reflecting on wet asphalt.",
        "A cat jumps from the sofa onto the table and knocks over a glass of water.",
        "Waves crash against the rocks while seagulls circle overhead in the evening light.",
        "A person walks through a forest in autumn, leaves falling around them.",
        "CG animation style, a red car drives along a mountain road, cinematic lighting, high detail.",
        "Time-lapse of clouds moving over green hills, soft colours, smooth motion.",
    };
    for (int rep = 0; rep < 20; ++rep)
      for (const char* l : lines) f << l << "\n";
    f << text::clean_prompt(text::default_negative_prompt()) << "\n";
  }
  const int64_t vocab = std::min<int64_t>(vocab_limit, 400);
  const std::string args = fmt::format(
      "--input={} --model_prefix={} --vocab_size={} --model_type=unigram --character_coverage=1.0 "
      "--pad_id=0 --eos_id=1 --unk_id=2 --bos_id=-1 --hard_vocab_limit=false --minloglevel=2",
      corpus.string(), (dir / "spiece").string(), vocab);
  const int level = sentencepiece::logging::GetMinLogLevel();
  sentencepiece::logging::SetMinLogLevel(1);  // no INFO lines
  const auto status = sentencepiece::SentencePieceTrainer::Train(args);
  sentencepiece::logging::SetMinLogLevel(level);
  IB_CHECK(status.ok(), "training the synthetic tokenizer failed: {}", status.ToString());
  fs::remove(corpus);
  fs::remove(dir / "spiece.vocab");
}

}  // namespace

void write_synth_model(const SynthPreset& preset, const SynthOptions& o) {
  IB_CHECK(!o.out_dir.empty(), "synth-model: --out is required");
  const fs::path out(o.out_dir);
  if (fs::exists(out)) {
    IB_CHECK(o.overwrite, "'{}' already exists (use --overwrite to replace it)", o.out_dir);
  }
  const fs::path parent = out.has_parent_path() ? out.parent_path() : fs::path(".");
  IB_CHECK(fs::is_directory(parent), "folder '{}' does not exist", parent.string());
  const fs::path tmp = parent / fmt::format(".{}.partial-{}", out.filename().string(), ::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  auto note = [&](const std::string& s) {
    if (o.on_file) o.on_file(s);
  };
  try {
    const DitConfig& dc = preset.dit;
    nlohmann::ordered_json cfg = {{"_class_name", "WanModel"}, {"_diffusers_version", "0.30.0"},
                                  {"dim", dc.dim},             {"eps", dc.eps},
                                  {"ffn_dim", dc.ffn_dim},     {"freq_dim", dc.freq_dim},
                                  {"in_dim", dc.in_dim},       {"model_type", dc.model_type},
                                  {"num_heads", dc.num_heads}, {"num_layers", dc.num_layers},
                                  {"out_dim", dc.out_dim},     {"text_len", dc.text_len}};
    std::ofstream(tmp / "config.json") << cfg.dump(2) << "\n";
    nlohmann::ordered_json ib = {
        {"t5", {{"dim", preset.t5.dim}, {"dim_attn", preset.t5.dim_attn}, {"dim_ffn", preset.t5.dim_ffn},
                {"num_heads", preset.t5.num_heads}, {"num_layers", preset.t5.num_layers},
                {"num_buckets", preset.t5.num_buckets}, {"vocab", preset.t5.vocab}}},
        {"clip", {{"image_size", preset.clip.image_size}, {"patch_size", preset.clip.patch_size},
                  {"dim", preset.clip.dim}, {"mlp_ratio", preset.clip.mlp_ratio},
                  {"num_heads", preset.clip.num_heads}, {"num_layers", preset.clip.num_layers}}},
        {"vae", {{"dim", preset.vae.dim}, {"z_dim", preset.vae.z_dim}, {"dim_mult", preset.vae.dim_mult},
                 {"num_res_blocks", preset.vae.num_res_blocks},
                 {"temporal_downsample", preset.vae.temporal_downsample}}}};
    std::ofstream(tmp / "inbetween.json") << ib.dump(2) << "\n";
    note("config.json, inbetween.json");

    write_tokenizer(tmp / "google" / "umt5-xxl", preset.t5.vocab);
    note("google/umt5-xxl/spiece.model");

    save_pth((tmp / "models_t5_umt5-xxl-enc-bf16.pth").string(), make_weights(t5_weight_shapes(preset.t5), DType::BF16, o.seed));
    note("models_t5_umt5-xxl-enc-bf16.pth");
    save_pth((tmp / "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth").string(),
             make_weights(clip_weight_shapes(preset.clip), DType::F16, o.seed));
    note("models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth");
    save_pth((tmp / "Wan2.1_VAE.pth").string(), preset.hand_built ? demo_vae_weights(preset.vae)
                                                                   : make_weights(vae_weight_shapes(preset.vae), DType::F32, o.seed));
    note("Wan2.1_VAE.pth");

    // DiT: shards of at most ~4 GiB with an index, tensors generated shard by shard.
    const int64_t grid = preset.clip.image_size / preset.clip.patch_size;
    const Specs specs = dit_weight_shapes(dc, preset.t5.dim, preset.clip.dim, 2 * (grid * grid + 1));
    const DType dt = preset.dit_dtype == "bf16" ? DType::BF16 : DType::F32;
    std::map<std::string, Tensor> hand_built;
    if (preset.hand_built)
      for (auto& [name, t] : demo_dit_weights(dc, preset.t5.dim, preset.clip.dim, 2 * (grid * grid + 1)))
        hand_built[name] = t.to(dt);
    constexpr int64_t kShardBytes = int64_t{4} << 30;
    std::vector<std::vector<size_t>> shards(1);
    int64_t bytes = 0;
    for (size_t i = 0; i < specs.size(); ++i) {
      const int64_t b = shape_numel(specs[i].second) * static_cast<int64_t>(dtype_size(dt));
      if (bytes + b > kShardBytes && !shards.back().empty()) {
        shards.emplace_back();
        bytes = 0;
      }
      shards.back().push_back(i);
      bytes += b;
    }
    if (shards.size() == 1 && specs.size() > 1) {  // keep the sharded layout even for tiny models
      shards.emplace_back(shards[0].begin() + static_cast<std::ptrdiff_t>(shards[0].size() / 2), shards[0].end());
      shards[0].resize(shards[0].size() / 2);
    }
    nlohmann::ordered_json weight_map = nlohmann::ordered_json::object();
    int64_t total = 0;
    for (size_t s = 0; s < shards.size(); ++s) {
      const std::string file = fmt::format("diffusion_pytorch_model-{:05d}-of-{:05d}.safetensors", s + 1, shards.size());
      std::vector<std::pair<std::string, Tensor>> tensors;
      for (size_t i : shards[s]) {
        tensors.emplace_back(specs[i].first, preset.hand_built ? hand_built.at(specs[i].first)
                                                               : random_weight(specs[i].first, specs[i].second, dt, o.seed));
        weight_map[specs[i].first] = file;
        total += static_cast<int64_t>(tensors.back().second.nbytes());
      }
      save_safetensors((tmp / file).string(), tensors);
      note(file);
    }
    nlohmann::ordered_json index = {{"metadata", {{"total_size", total}}}, {"weight_map", weight_map}};
    std::ofstream(tmp / "diffusion_pytorch_model.safetensors.index.json") << index.dump(2) << "\n";
    if (fs::exists(out)) fs::remove_all(out);
    fs::rename(tmp, out);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }
}

}  // namespace ib
