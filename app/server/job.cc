#include "job.h"

#include <chrono>
#include <filesystem>

#include "inbetween/error.h"

namespace ib::server {

using nlohmann::json;

const char* state_name(JobState s) {
  switch (s) {
    case JobState::Queued: return "queued";
    case JobState::Running: return "running";
    case JobState::Done: return "done";
    case JobState::Failed: return "failed";
    case JobState::Cancelled: return "cancelled";
  }
  return "unknown";
}

bool parse_state(std::string_view name, JobState& out) {
  for (JobState s : {JobState::Queued, JobState::Running, JobState::Done, JobState::Failed, JobState::Cancelled}) {
    if (name == state_name(s)) {
      out = s;
      return true;
    }
  }
  return false;
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

namespace {

json params_json(const JobParams& p) {
  json j = {{"prompt", p.prompt},     {"negative_prompt", p.negative_prompt},
            {"frames", p.frames},     {"steps", p.steps},
            {"shift", p.shift},       {"guidance", p.guidance},
            {"solver", p.solver},     {"seed", p.seed},
            {"fps", p.fps},
            {"timesteps", p.timesteps}};
  json loras = json::array();
  for (const LoraFile& l : p.loras) loras.push_back({{"name", l.path}, {"scale", l.scale}});
  j["loras"] = loras;
  if (!p.keyframe_files.empty()) j["story"] = {{"keyframes", p.keyframe_files.size()}, {"prompts", p.prompts}, {"loop", p.loop}};
  if (p.width > 0) {
    j["size"] = std::to_string(p.width) + "x" + std::to_string(p.height);
  } else {
    j["max_area"] = p.max_area;
  }
  return j;
}

}  // namespace

json job_to_json(const Job& job) {
  json j = {{"id", job.id},
            {"state", state_name(job.state)},
            {"stage", job.stage},
            {"step", job.step},
            {"total", job.total},
            {"segment", job.segment},
            {"segments", job.segments},
            {"elapsed_s", job.elapsed_s},
            {"remaining_s", job.remaining_s < 0 ? json(nullptr) : json(job.remaining_s)},
            {"stage_remaining_s", job.stage_remaining_s < 0 ? json(nullptr) : json(job.stage_remaining_s)},
            {"cancel_requested", job.cancel_requested},
            {"error", job.error.empty() ? json(nullptr) : json(job.error)},
            {"created", job.created},
            {"started", job.started > 0 ? json(job.started) : json(nullptr)},
            {"finished", job.finished > 0 ? json(job.finished) : json(nullptr)},
            {"params", params_json(job.params)}};
  if (job.state == JobState::Done) {
    j["result"] = {{"seed", job.seed_used},
                   {"frames", job.out_frames},
                   {"width", job.out_width},
                   {"height", job.out_height},
                   {"video", "/v1/jobs/" + job.id + "/video"}};
  }
  return j;
}

json job_to_disk_json(const Job& job) {
  json j = job_to_json(job);
  j["params"]["first_file"] = job.params.first_file;
  j["params"]["last_file"] = job.params.last_file;
  if (!job.params.keyframe_files.empty()) j["params"]["keyframe_files"] = job.params.keyframe_files;
  j["params"]["width"] = job.params.width;
  j["params"]["height"] = job.params.height;
  j["params"]["max_area"] = job.params.max_area;
  if (job.state != JobState::Done) {
    j["result"] = {{"seed", job.seed_used}, {"frames", 0}, {"width", 0}, {"height", 0}};
  }
  return j;
}

Job job_from_disk_json(const json& j) {
  try {
    Job job;
    job.id = j.at("id").get<std::string>();
    if (!parse_state(j.at("state").get<std::string>(), job.state)) throw Error("unknown state");
    job.stage = j.at("stage").get<std::string>();
    job.step = j.at("step").get<int>();
    job.total = j.at("total").get<int>();
    if (j.contains("segments")) job.segments = j.at("segments").get<int>();
    job.elapsed_s = j.at("elapsed_s").get<double>();
    job.remaining_s = -1;
    if (!j.at("error").is_null()) job.error = j.at("error").get<std::string>();
    job.created = j.at("created").get<double>();
    if (!j.at("started").is_null()) job.started = j.at("started").get<double>();
    if (!j.at("finished").is_null()) job.finished = j.at("finished").get<double>();
    const json& p = j.at("params");
    JobParams& q = job.params;
    q.prompt = p.at("prompt").get<std::string>();
    q.negative_prompt = p.at("negative_prompt").get<std::string>();
    q.frames = p.at("frames").get<int64_t>();
    q.max_area = p.at("max_area").get<double>();
    q.width = p.at("width").get<int64_t>();
    q.height = p.at("height").get<int64_t>();
    q.steps = p.at("steps").get<int>();
    q.shift = p.at("shift").get<double>();
    q.guidance = p.at("guidance").get<double>();
    q.solver = p.at("solver").get<std::string>();
    q.seed = p.at("seed").get<int64_t>();
    q.fps = p.at("fps").get<int>();
    // Absent from job.json files written before LoRAs and timesteps existed.
    if (p.contains("timesteps")) q.timesteps = p.at("timesteps").get<std::vector<int64_t>>();
    if (p.contains("loras"))
      for (const json& l : p.at("loras")) q.loras.push_back({l.at("name").get<std::string>(), l.at("scale").get<double>()});
    q.first_file = p.at("first_file").get<std::string>();
    q.last_file = p.at("last_file").get<std::string>();
    if (p.contains("keyframe_files")) {  // a story
      q.keyframe_files = p.at("keyframe_files").get<std::vector<std::string>>();
      q.prompts = p.at("story").at("prompts").get<std::vector<std::string>>();
      q.loop = p.at("story").at("loop").get<bool>();
    }
    const json& r = j.at("result");
    job.seed_used = r.at("seed").get<int64_t>();
    job.out_frames = r.at("frames").get<int64_t>();
    job.out_width = r.at("width").get<int64_t>();
    job.out_height = r.at("height").get<int64_t>();
    return job;
  } catch (const json::exception& e) {
    throw Error(std::string("job.json: ") + e.what());
  }
}

GenerateOptions generate_options(const JobParams& p, const std::string& dir) {
  GenerateOptions o;
  o.prompt = p.prompt;
  o.negative_prompt = p.negative_prompt;
  o.first_image = (std::filesystem::path(dir) / p.first_file).string();
  o.last_image = (std::filesystem::path(dir) / p.last_file).string();
  o.frames = p.frames;
  o.max_area = p.max_area;
  o.width = p.width;
  o.height = p.height;
  o.steps = p.steps;
  o.shift = p.shift;
  o.guidance = p.guidance;
  o.solver = p.solver;
  o.timesteps = p.timesteps;
  if (!p.loras.empty() && p.lora_dir.empty()) throw Error("the job names LoRAs but the server has no --lora-dir");
  for (const LoraFile& l : p.loras) o.loras.push_back({(std::filesystem::path(p.lora_dir) / l.path).string(), l.scale});
  o.seed = p.seed;
  return o;
}

}  // namespace ib::server
