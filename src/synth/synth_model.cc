#include "synth/synth_model.h"

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
#include "synth/demo_model.h"
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
    // Hand-built VAE and DiT (synth/demo_model.h) with the tiny preset's T5 and CLIP.
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
