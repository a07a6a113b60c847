// The scheduler trajectories of the fixture folder: every sched_<solver>_<steps>_<shift>.safetensors,
// sorted by name, for the CPU and the GPU scheduler tests.
#pragma once

#include <algorithm>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "common/fixture.h"
#include "pipeline/scheduler.h"

namespace ib::test {

struct SchedCase {
  std::string file;  // sched_<key>.safetensors
  std::string key;   // <solver>_<steps>_<shift>, the schedules.json key
  Solver solver = Solver::UniPC;
  int steps = 0;
  double shift = 0;
};

inline std::vector<SchedCase> find_sched_cases() {
  static const std::regex pattern(R"(sched_(.+)_([0-9]+)_([0-9.]+)\.safetensors)");
  std::vector<SchedCase> cases;
  for (const auto& entry : std::filesystem::directory_iterator(fixture_dir())) {
    const std::string name = entry.path().filename().string();
    std::smatch m;
    if (!std::regex_match(name, m, pattern)) continue;
    SchedCase c;
    c.file = name;
    c.key = name.substr(6, name.size() - 6 - std::string(".safetensors").size());
    c.solver = parse_solver(m[1].str());
    c.steps = std::stoi(m[2].str());
    c.shift = std::stod(m[3].str());
    cases.push_back(c);
  }
  std::sort(cases.begin(), cases.end(), [](const SchedCase& a, const SchedCase& b) { return a.file < b.file; });
  return cases;
}

}  // namespace ib::test
