// A generation job of `inbetween serve`: what the client asked for, where it stands, and its
// JSON forms (the API's job object and the job.json kept in the job's folder).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "inbetween/pipeline.h"

namespace ib::server {

enum class JobState { Queued, Running, Done, Failed, Cancelled };

const char* state_name(JobState s);
bool parse_state(std::string_view name, JobState& out);
inline bool is_final(JobState s) { return s == JobState::Done || s == JobState::Failed || s == JobState::Cancelled; }

// The request's parameters, as validated; defaults are the library's (the CLI's).
struct JobParams {
  // The generation's options as the request set them (prompt, negative_prompt, frames, max_area or
  // width/height, steps, shift, guidance, solver, timesteps, loras, seed, last_frame_fit).
  // generate_options() fills in the rest: first_image/last_image from the job folder and
  // first_file/last_file, the LoRAs' paths inside lora_dir (gen.loras hold bare file names inside
  // the server's --lora-dir, never a client path); init_noise is never set.
  GenerateOptions gen;
  std::string lora_dir;  // the server's --lora-dir, set by the server (not part of job.json)
  // The server's --precision, set by the server: reported in `params`, not a request field (none in
  // job.json files written before it was reported).
  std::optional<Precision> precision;
  // The server's --attention, likewise (absent from job.json files written before it was reported).
  std::optional<AttentionPrecision> attention;
  int fps = 16;
  std::string first_file, last_file;  // file names inside the job folder ("first.png", ...)
  // A story (POST /v1/stories; empty keyframe_files: a plain job): the keyframes' file names inside
  // the job folder, in order (first_file and last_file name the first and the last of them), one
  // prompt per segment (empty: `prompt` serves all) and whether the last keyframe leads back to the first.
  std::vector<std::string> keyframe_files;
  std::vector<std::string> prompts;
  bool loop = false;
};

struct Job {
  std::string id;  // 32 lowercase hex digits, made by the server
  JobParams params;
  JobState state = JobState::Queued;
  std::string stage;  // the pipeline's stage while running; "write" while the MP4 is written
  int step = 0, total = 0;
  int segment = 0, segments = 0;  // a story's running segment (1-based) of how many; 0 for jobs
  double elapsed_s = 0;
  double remaining_s = -1;        // the whole job; < 0: unknown
  double stage_remaining_s = -1;  // the running stage; < 0: unknown
  bool cancel_requested = false;  // running: DELETE asked it to stop (at its next step or VAE chunk)
  std::string error;        // failed: what went wrong
  double created = 0, started = 0, finished = 0;  // Unix seconds, 0: not yet
  int64_t seed_used = -1;
  int64_t out_frames = 0, out_width = 0, out_height = 0;
  uint64_t version = 0;  // bumped on every change; not persisted
  size_t queue_position = 0;  // queued: 1-based place among the waiting jobs, as read with the state; not persisted
};

// The GET /v1/jobs/{id} object (and each SSE event's data).
nlohmann::json job_to_json(const Job& job);
// job.json: job_to_json plus the parameters' file names.
nlohmann::json job_to_disk_json(const Job& job);
// Parses job.json; throws ib::Error when a field is missing or has the wrong type.
Job job_from_disk_json(const nlohmann::json& j);

// Builds the pipeline's options for a job whose images lie in `dir`.
GenerateOptions generate_options(const JobParams& p, const std::string& dir);

double unix_now();

}  // namespace ib::server
