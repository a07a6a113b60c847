// ModelFolder on the fixture model, on copies of it with files missing or JSON broken, and on a
// folder without inbetween.json (official defaults).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/model_config.h"
#include "pth_builder.h"

namespace ib {
namespace {

namespace fs = std::filesystem;
using test::expect_error;

// A folder that links every fixture model file except `skip`.
std::string linked_copy(const std::vector<std::string>& skip = {}) {
  const std::string dir = test::temp_dir();
  for (const auto& e : fs::directory_iterator(test::model_dir())) {
    const std::string name = e.path().filename().string();
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    if (name == "config.json" || name == "inbetween.json")
      fs::copy_file(e.path(), fs::path(dir) / name);
    else
      fs::create_directory_symlink(e.path(), fs::path(dir) / name), void();
  }
  return dir;
}

nlohmann::json read_json(const std::string& path) {
  std::ifstream f(path);
  EXPECT_TRUE(f.good()) << path;
  return nlohmann::json::parse(f);
}

// The official Wan2.1-FLF2V-14B values the release hard-codes in Python (what applies without
// inbetween.json), written out here rather than taken from the library's defaults.
const nlohmann::json kOfficial = nlohmann::json::parse(R"({
  "t5": {"vocab": 256384, "dim": 4096, "dim_attn": 4096, "dim_ffn": 10240, "num_heads": 64, "num_layers": 24,
         "num_buckets": 32, "max_distance": 128},
  "clip": {"image_size": 224, "patch_size": 14, "dim": 1280, "mlp_ratio": 4, "num_heads": 16, "num_layers": 32},
  "vae": {"dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2,
          "temporal_downsample": [false, true, true]}})");

// `section` of inbetween.json (or the official value where the file or the key is absent).
template <typename T>
T expected(const nlohmann::json& ib, const std::string& section, const std::string& key) {
  if (ib.contains(section) && ib[section].contains(key)) return ib[section][key].get<T>();
  return kOfficial.at(section).at(key).get<T>();
}

// Every hyper-parameter of `m` against config.json and `ib` (inbetween.json's content, or {}).
void expect_folder_matches(const ModelFolder& m, const nlohmann::json& config, const nlohmann::json& ib) {
  EXPECT_EQ(m.dit.model_type, config.at("model_type").get<std::string>());
  for (const auto& [key, field] : std::vector<std::pair<const char*, int64_t>>{
           {"text_len", m.dit.text_len}, {"in_dim", m.dit.in_dim}, {"dim", m.dit.dim}, {"ffn_dim", m.dit.ffn_dim},
           {"freq_dim", m.dit.freq_dim}, {"out_dim", m.dit.out_dim}, {"num_heads", m.dit.num_heads},
           {"num_layers", m.dit.num_layers}})
    EXPECT_EQ(field, config.at(key).get<int64_t>()) << "config.json " << key;
  EXPECT_FLOAT_EQ(m.dit.eps, config.at("eps").get<float>());
  for (const auto& [key, field] : std::vector<std::pair<const char*, int64_t>>{
           {"vocab", m.t5.vocab}, {"dim", m.t5.dim}, {"dim_attn", m.t5.dim_attn}, {"dim_ffn", m.t5.dim_ffn},
           {"num_heads", m.t5.num_heads}, {"num_layers", m.t5.num_layers}, {"num_buckets", m.t5.num_buckets},
           {"max_distance", m.t5.max_distance}})
    EXPECT_EQ(field, expected<int64_t>(ib, "t5", key)) << "t5." << key;
  for (const auto& [key, field] : std::vector<std::pair<const char*, int64_t>>{
           {"image_size", m.clip.image_size}, {"patch_size", m.clip.patch_size}, {"dim", m.clip.dim},
           {"mlp_ratio", m.clip.mlp_ratio}, {"num_heads", m.clip.num_heads}, {"num_layers", m.clip.num_layers}})
    EXPECT_EQ(field, expected<int64_t>(ib, "clip", key)) << "clip." << key;
  EXPECT_EQ(m.vae.dim, expected<int64_t>(ib, "vae", "dim"));
  EXPECT_EQ(m.vae.z_dim, expected<int64_t>(ib, "vae", "z_dim"));
  EXPECT_EQ(m.vae.dim_mult, expected<std::vector<int64_t>>(ib, "vae", "dim_mult"));
  EXPECT_EQ(m.vae.num_res_blocks, expected<int64_t>(ib, "vae", "num_res_blocks"));
  EXPECT_EQ(m.vae.temporal_downsample, expected<std::vector<bool>>(ib, "vae", "temporal_downsample"));
}

TEST(ModelFolder, Fixture) {
  const ModelFolder m = ModelFolder::open(test::model_dir());
  EXPECT_EQ(m.dit_path, test::model_dir() + "/diffusion_pytorch_model.safetensors.index.json");
  EXPECT_EQ(m.t5_path, test::model_dir() + "/models_t5_umt5-xxl-enc-bf16.pth");
  EXPECT_EQ(m.clip_path, test::model_dir() + "/models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth");
  EXPECT_EQ(m.vae_path, test::model_dir() + "/Wan2.1_VAE.pth");
  EXPECT_EQ(m.tokenizer_path, test::model_dir() + "/google/umt5-xxl/spiece.model");
  const std::string ib = test::model_dir() + "/inbetween.json";
  ASSERT_TRUE(fs::exists(ib)) << "a reference case's model folder has inbetween.json";
  expect_folder_matches(m, read_json(test::model_dir() + "/config.json"), read_json(ib));
}

TEST(ModelFolder, OfficialDefaultsWithoutInbetweenJson) {
  const std::string dir = linked_copy({"inbetween.json"});
  const ModelFolder m = ModelFolder::open(dir);
  // T5, CLIP and VAE take the official values; config.json still applies to the DiT.
  expect_folder_matches(m, read_json(dir + "/config.json"), nlohmann::json::object());
}

// The first shard the index names (a single-file DiT is one .safetensors with every tensor; the
// first shard is such a file, with a part of them).
std::string first_shard() {
  const auto index = read_json(test::model_dir() + "/diffusion_pytorch_model.safetensors.index.json");
  std::string first;
  for (const auto& [name, file] : index.at("weight_map").items())
    if (first.empty() || file.get<std::string>() < first) first = file.get<std::string>();
  return first;
}

TEST(ModelFolder, SingleDitFile) {
  const std::string dir = linked_copy({"diffusion_pytorch_model.safetensors.index.json"});
  fs::create_symlink(fs::path(test::model_dir()) / first_shard(),
                     fs::path(dir) / "diffusion_pytorch_model.safetensors");
  EXPECT_EQ(ModelFolder::open(dir).dit_path, dir + "/diffusion_pytorch_model.safetensors");
}

TEST(ModelFolderBad, MissingFolderAndFiles) {
  const std::string absent = test::temp_dir() + "/no-such-model";
  expect_error([&] { ModelFolder::open(absent); }, {absent, "does not exist"});
  const std::vector<std::string> files = {"models_t5_umt5-xxl-enc-bf16.pth",
                                          "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth",
                                          "Wan2.1_VAE.pth", "config.json"};
  for (const auto& f : files) {
    const std::string dir = linked_copy({f});
    expect_error([&] { ModelFolder::open(dir); }, {dir, "lacks '" + f + "'"});
  }
  const std::string dir = linked_copy({"google"});
  expect_error([&] { ModelFolder::open(dir); }, {"google/umt5-xxl/spiece.model"});
  const std::string nodit = linked_copy({"diffusion_pytorch_model.safetensors.index.json"});
  expect_error([&] { ModelFolder::open(nodit); }, {nodit, "DiT weights", "diffusion_pytorch_model.safetensors"});
}

// Rewrites one JSON file of a linked copy and expects ModelFolder::open to fail naming all `parts`.
void expect_json_error(const std::string& file, const std::string& content, std::vector<std::string> parts) {
  const std::string dir = linked_copy();
  const std::string path = dir + "/" + file;
  fs::remove(path);
  test::write_file(path, content);
  parts.push_back(path);
  expect_error([&] { ModelFolder::open(dir); }, parts);
}

const char* kConfig = R"({"_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": 128, "eps": 1e-06,
  "ffn_dim": 256, "freq_dim": 256, "in_dim": 36, "model_type": "flf2v", "num_heads": 4, "num_layers": 2,
  "out_dim": 16, "text_len": 16 REPLACE})";

std::string config_with(const std::string& what) {
  std::string s = kConfig;
  s.replace(s.find(" REPLACE"), 8, what);
  return s;
}

TEST(ModelFolderBad, ConfigJson) {
  expect_json_error("config.json", "{not json", {"not valid JSON"});
  expect_json_error("config.json", "[1, 2]", {"not a JSON object"});
  expect_json_error("config.json", R"({"dim": 128})", {"required key", "is missing"});
  {  // fixed keys the DiT ignores, and metadata, are accepted
    const std::string dir = linked_copy({"config.json"});
    test::write_file(dir + "/config.json", config_with(R"(, "patch_size": [1, 2, 2], "text_dim": 4096,
        "qk_norm": true, "cross_attn_norm": true, "window_size": [-1, -1])"));
    EXPECT_EQ(ModelFolder::open(dir).dit.dim, 128);
  }
  auto bad = [](const std::string& key, const std::string& value, std::vector<std::string> parts) {
    std::string s = kConfig;
    s.replace(s.find(" REPLACE"), 8, "");
    const size_t at = s.find("\"" + key + "\": ");
    ASSERT_NE(at, std::string::npos) << key;
    const size_t v = at + key.size() + 4, end = s.find_first_of(",}", v);
    s.replace(v, end - v, value);
    expect_json_error("config.json", s, std::move(parts));
  };
  bad("dim", "\"128\"", {"'dim'", "positive integer", "\"128\""});
  bad("dim", "-5", {"'dim'", "positive integer"});
  bad("dim", "130", {"dim 130 is not divisible by num_heads 4"});
  bad("num_heads", "0", {"'num_heads'"});
  bad("model_type", "\"ti2v\"", {"model_type 'ti2v'", "flf2v, i2v, t2v"});
  bad("model_type", "3", {"'model_type'", "string"});
  bad("eps", "\"tiny\"", {"'eps'"});
  bad("eps", "1e-96", {"'eps'", "rounds to 0 as a 32-bit float"});          // a fuzzer's finding
  bad("eps", "0.99999999999", {"'eps'", "rounds to 1 as a 32-bit float"});
  bad("text_len", "1.5", {"'text_len'", "positive integer"});
}

TEST(ModelFolderBad, InbetweenJson) {
  expect_json_error("inbetween.json", R"({"t5": {"dim": 64, "heads": 4}})", {"unknown key 't5.heads'"});
  expect_json_error("inbetween.json", R"({"unet": {}})", {"unknown section 'unet'"});
  expect_json_error("inbetween.json", R"({"clip": {"dim": "64"}})", {"'clip.dim'", "positive integer", "\"64\""});
  expect_json_error("inbetween.json", R"({"clip": [1]})", {"'clip'", "object"});
  expect_json_error("inbetween.json", R"({"vae": {"dim_mult": [1, 2, "4"]}})", {"'vae.dim_mult[2]'"});
  expect_json_error("inbetween.json", R"({"vae": {"temporal_downsample": [false, 1, true]}})",
                    {"'vae.temporal_downsample[1]'", "boolean"});
  expect_json_error("inbetween.json", R"({"vae": {"dim_mult": [1, 2]}})", {"vae.temporal_downsample has 3 entries"});
  expect_json_error("inbetween.json", R"({"t5": {"dim_attn": 64, "num_heads": 5}})", {"t5.dim_attn 64", "t5.num_heads 5"});
  expect_json_error("inbetween.json", R"({"clip": {"image_size": 30}})", {"clip.image_size 30", "clip.patch_size 14"});
  expect_json_error("inbetween.json", "{", {"not valid JSON"});
  expect_json_error("inbetween.json", R"({"t5": {"eps": 1e-50}})", {"'t5.eps'", "rounds to 0"});
}

}  // namespace
}  // namespace ib
