// `inbetween serve --lora-dir`: a job's `loras` name files inside that folder and nothing else (a
// path, '..', a hidden or missing file, a file outside the folder are 400s on the `loras` field); a
// LoRA that does not fit the model is a 400 that does not show the server's folder; a distilled job
// (loras, euler, timesteps, guidance 1) runs and reports its parameters; a server without
// --lora-dir takes no LoRAs. Against a real server process with the fixture model.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "common/lora_files.h"
#include "io/model_config.h"
#include "server_process.h"

namespace ib::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// A small LoRA that fits the fixture model (rank 2 on one layer of each block).
void write_fitting_lora(const std::string& path) {
  const ModelFolder mf = ModelFolder::open(model_dir());
  const auto dit = open_tensor_store(mf.dit_path);
  NamedTensors t;
  for (int64_t i = 0; i < mf.dit.num_layers; ++i)
    add_low_rank(t, *dit, LoraFormat::Kohya, fmt::format("blocks.{}.self_attn.q", i), 2, 1.0f,
                 static_cast<uint32_t>(i + 1));
  save_safetensors(path, t);
}

// A LoRA for a model twice as wide.
void write_other_model_lora(const std::string& path) {
  const ModelFolder mf = ModelFolder::open(model_dir());
  NamedTensors t;
  t.emplace_back("diffusion_model.blocks.0.self_attn.q.lora_down.weight", dyadic_tensor({2, 2 * mf.dit.dim}, 1));
  t.emplace_back("diffusion_model.blocks.0.self_attn.q.lora_up.weight", dyadic_tensor({2 * mf.dit.dim, 2}, 2));
  save_safetensors(path, t);
}

std::pair<int, json> post(httplib::Client& c, std::vector<std::pair<std::string, std::string>> fields) {
  auto r = c.Post("/v1/jobs", job_form(fields));
  if (!r) return {-1, json()};
  return {r->status, json::parse(r->body)};
}

TEST(ServerLoras, OnlyFilesInsideTheLoraDir) {
  const std::string root = temp_dir();
  const std::string lora_dir = root + "/loras";
  fs::create_directories(lora_dir + "/sub");
  write_fitting_lora(lora_dir + "/good.safetensors");
  write_fitting_lora(lora_dir + "/sub/nested.safetensors");
  write_fitting_lora(lora_dir + "/.hidden.safetensors");
  write_fitting_lora(root + "/outside.safetensors");  // beside the folder, not in it
  write_other_model_lora(lora_dir + "/wide.safetensors");
  ServerProcess server(root + "/data", {"--lora-dir", lora_dir});
  auto c = server.client();

  const std::string outside = fs::absolute(root + "/outside.safetensors").string();
  for (const std::string& bad :
       {std::string("../outside.safetensors"), outside, std::string("/etc/passwd"), std::string("sub/nested.safetensors"),
        std::string(".hidden.safetensors"), std::string("missing.safetensors"), std::string(".."),
        std::string("good.safetensors:abc"), std::string("good.safetensors,"), std::string("good.pth"),
        std::string("..\\outside.safetensors")}) {
    auto [st, j] = post(c, {{"prompt", "x"}, {"loras", bad}});
    EXPECT_EQ(st, 400) << bad << ": " << j.dump();
    EXPECT_EQ(j.value("field", json()), "loras") << bad << ": " << j.dump();
  }
  // Another model's LoRA: refused by validation, naming the tensor but not the server's folder.
  {
    auto [st, j] = post(c, {{"prompt", "x"}, {"loras", "wide.safetensors"}});
    EXPECT_EQ(st, 400) << j.dump();
    EXPECT_EQ(j.value("field", json()), "loras") << j.dump();
    const std::string msg = j.value("error", "");
    EXPECT_NE(msg.find("blocks.0.self_attn.q.weight"), std::string::npos) << msg;
    EXPECT_EQ(msg.find(lora_dir), std::string::npos) << msg;
  }
  // --timesteps with another solver, and a count that contradicts steps.
  {
    auto [st, j] = post(c, {{"solver", "unipc"}, {"timesteps", "1000,500"}});
    EXPECT_EQ(st, 400) << j.dump();
    EXPECT_EQ(j.value("field", json()), "timesteps") << j.dump();
    auto [st2, j2] = post(c, {{"solver", "euler"}, {"steps", "3"}, {"timesteps", "1000,500"}});
    EXPECT_EQ(st2, 400) << j2.dump();
    EXPECT_EQ(j2.value("field", json()), "timesteps") << j2.dump();
    auto [st3, j3] = post(c, {{"solver", "euler"}, {"timesteps", "1000,x"}});
    EXPECT_EQ(st3, 400) << j3.dump();
    EXPECT_EQ(j3.value("field", json()), "timesteps") << j3.dump();
  }
  // /v1/model lists the folder's LoRAs (file names only).
  auto m = c.Get("/v1/model");
  ASSERT_EQ(status(m), 200);
  EXPECT_EQ(parse(m).at("loras"), json({"good.safetensors", "wide.safetensors"}));

  // The distilled job runs.
  std::vector<std::pair<std::string, std::string>> fields = tiny_fields(4);
  fields.erase(std::remove_if(fields.begin(), fields.end(), [](const auto& f) { return f.first == "steps"; }),
               fields.end());
  for (const auto& kv : std::vector<std::pair<std::string, std::string>>{
           {"loras", "good.safetensors:0.5"}, {"solver", "euler"}, {"timesteps", "1000,750,500,250"},
           {"shift", "5"}, {"guidance", "1"}})
    fields.push_back(kv);
  const std::string id = submit(c, fields);
  const json job = wait_final(c, id);
  ASSERT_EQ(job.at("state"), "done") << job.dump();
  EXPECT_EQ(job.at("params").at("steps"), 4);
  EXPECT_EQ(job.at("params").at("timesteps"), json({1000, 750, 500, 250}));
  EXPECT_EQ(job.at("params").at("loras"), json::parse(R"([{"name": "good.safetensors", "scale": 0.5}])"));
  EXPECT_EQ(job.dump().find(lora_dir), std::string::npos) << "the server's folder shows in the job";
  EXPECT_EQ(server.stop(), 0);
}

TEST(ServerLoras, NoLoraDirNoLoras) {
  const std::string root = temp_dir();
  write_fitting_lora(root + "/good.safetensors");
  ServerProcess server(root + "/data");
  auto c = server.client();
  for (const std::string& name : {std::string("good.safetensors"), root + "/good.safetensors"}) {
    auto [st, j] = post(c, {{"loras", name}});
    EXPECT_EQ(st, 400) << j.dump();
    EXPECT_EQ(j.value("field", json()), "loras") << j.dump();
  }
  auto m = c.Get("/v1/model");
  ASSERT_EQ(status(m), 200);
  EXPECT_EQ(parse(m).at("loras"), json::array());
  EXPECT_EQ(server.stop(), 0);
}

}  // namespace
}  // namespace ib::test
