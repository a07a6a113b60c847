// The e2e fixture case's generation settings (e2e.json) as GenerateOptions, shared by the CPU and
// GPU end-to-end tests.
#pragma once

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/fixture.h"
#include "inbetween/pipeline.h"

namespace ib::test {

inline nlohmann::json e2e_settings() {
  std::ifstream f(fixture_path("e2e.json"));
  return nlohmann::json::parse(f);
}

// Prompt, sizes, schedule and images of e2e.json, with the fixture's initial noise.
inline GenerateOptions fixture_options() {
  const auto j = e2e_settings();
  GenerateOptions o;
  o.prompt = j["prompt"].get<std::string>();
  o.negative_prompt = j["negative_prompt"].get<std::string>();
  o.frames = j["frames"].get<int64_t>();
  o.max_area = j["max_area"].get<double>();
  o.steps = j["steps"].get<int>();
  o.shift = j["shift"].get<double>();
  o.guidance = j["guide_scale"].get<double>();
  o.solver = parse_solver(j["solver"].get<std::string>());
  o.first_image = fixture_path("first.png");
  o.last_image = fixture_path("last.png");
  o.init_noise = fixture_path("e2e.safetensors");
  return o;
}

}  // namespace ib::test
