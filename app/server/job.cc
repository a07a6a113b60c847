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
  const GenerateOptions& g = p.gen;
  json j = {{"prompt", g.prompt},
            {"negative_prompt", g.negative_prompt},
            {"frames", g.frames},
            {"steps", g.steps},
            {"shift", g.shift},
            {"guidance", g.guidance},
            {"solver", solver_name(g.solver)},
            {"seed", g.seed},
            {"fps", p.fps},
            {"last_frame_fit", last_frame_fit_name(g.last_frame_fit)},
            {"timesteps", g.timesteps}};
  if (p.precision) j["precision"] = precision_name(*p.precision);  // the server's, not the request's
  if (p.attention) j["attention"] = attention_name(*p.attention);  // likewise
  json loras = json::array();
  for (const LoraFile& l : g.loras) loras.push_back({{"name", l.path}, {"scale", l.scale}});
  j["loras"] = loras;
  if (!p.keyframe_files.empty()) j["story"] = {{"keyframes", p.keyframe_files.size()}, {"prompts", p.prompts}, {"loop", p.loop}};
  if (g.width > 0) {
    j["size"] = std::to_string(g.width) + "x" + std::to_string(g.height);
  } else {
    j["max_area"] = g.max_area;
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
  j["params"]["width"] = job.params.gen.width;
  j["params"]["height"] = job.params.gen.height;
  j["params"]["max_area"] = job.params.gen.max_area;
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
    GenerateOptions& g = q.gen;
    g.prompt = p.at("prompt").get<std::string>();
    g.negative_prompt = p.at("negative_prompt").get<std::string>();
    g.frames = p.at("frames").get<int64_t>();
    g.max_area = p.at("max_area").get<double>();
    g.width = p.at("width").get<int64_t>();
    g.height = p.at("height").get<int64_t>();
    g.steps = p.at("steps").get<int>();
    g.shift = p.at("shift").get<double>();
    g.guidance = p.at("guidance").get<double>();
    g.solver = parse_solver(p.at("solver").get<std::string>());
    g.seed = p.at("seed").get<int64_t>();
    q.fps = p.at("fps").get<int>();
    // Absent from job.json files written before LoRAs, timesteps, last_frame_fit and precision existed.
    if (p.contains("timesteps")) g.timesteps = p.at("timesteps").get<std::vector<int64_t>>();
    if (p.contains("loras"))
      for (const json& l : p.at("loras")) g.loras.push_back({l.at("name").get<std::string>(), l.at("scale").get<double>()});
    if (p.contains("last_frame_fit"))
      g.last_frame_fit = parse_last_frame_fit(p.at("last_frame_fit").get<std::string>());
    if (p.contains("precision")) q.precision = parse_precision(p.at("precision").get<std::string>());
    if (p.contains("attention")) q.attention = parse_attention(p.at("attention").get<std::string>());
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
  GenerateOptions o = p.gen;
  o.first_image = (std::filesystem::path(dir) / p.first_file).string();
  o.last_image = (std::filesystem::path(dir) / p.last_file).string();
  o.init_noise.clear();  // never a job's
  if (!p.gen.loras.empty() && p.lora_dir.empty()) throw Error("the job names LoRAs but the server has no --lora-dir");
  o.loras.clear();
  for (const LoraFile& l : p.gen.loras) o.loras.push_back({(std::filesystem::path(p.lora_dir) / l.path).string(), l.scale});
  return o;
}

}  // namespace ib::server
