// The HTTP side of `inbetween serve`: routes of the JSON job API, the SSE progress stream, video
// and image downloads, the web page, API-key checks and request logging. Handlers validate,
// enqueue and read state; the work happens on the JobQueue's worker.
#pragma once

#include <httplib.h>

#include <atomic>
#include <functional>
#include <mutex>
#include <string>

#include "http_guard.h"
#include "inbetween/pipeline.h"
#include "job_queue.h"
#include "job_request.h"
#include "job_store.h"

namespace ib::server {

struct ApiConfig {
  std::string api_key;  // empty: no key needed
  std::string web_dir;  // index.html, app.js, style.css
  std::string model_dir;
  ComputeDevice device = ComputeDevice::CPU;
  Precision precision = Precision::BF16;  // --precision: every job's, reported in its params
  AttentionPrecision attention = AttentionPrecision::BF16;  // --attention: likewise
  int threads = 0;
  std::string lora_dir;  // --lora-dir: the only place a job's `loras` are looked up; empty: none
  std::string listen_host;                // --host: its name is one the Host header may carry
  std::vector<std::string> allow_hosts;   // --allow-host: more such names ('*': any)
  std::vector<std::string> cors_origins;  // --cors-origin: other sites' pages that may call the API

  Limits limits;
  int heartbeat_s = 15;  // SSE comment interval
  uint64_t max_data_bytes = 0;  // --max-data-size: new jobs get 507 past it; 0: no limit
  int max_event_streams = 16;  // open SSE streams (each holds an HTTP thread); more get 503
};

class HttpApi {
 public:
  HttpApi(ApiConfig config, Pipeline& pipeline, JobStore& store, JobQueue& queue);
  // Registers every route and handler on `server` (which must outlive nothing of this object).
  void install(httplib::Server& server);

 private:
  void post_job(const httplib::Request& req, httplib::Response& res);
  void post_story(const httplib::Request& req, httplib::Response& res);
  // Whether the queue (and the data folder's size cap) takes a submission now; else a 429, 503 or
  // 507 is written to res.
  bool accepting(const httplib::Request& req, httplib::Response& res);
  // The tail of POST /v1/jobs and /v1/stories: the LoRAs, the job folder with the uploads
  // (file name, bytes), the pipeline's checks (`check`, which throws ib::Error), the queue, the
  // 202 answer. `summary` goes to the log.
  void enqueue(JobParams params, const std::vector<std::pair<std::string, const std::string*>>& files,
               const std::function<void(const JobParams&, const std::string& dir)>& check, const std::string& summary,
               httplib::Response& res);
  void get_job(const httplib::Request& req, httplib::Response& res);
  void list_jobs(const httplib::Request& req, httplib::Response& res);
  void job_events(const httplib::Request& req, httplib::Response& res);
  void job_video(const httplib::Request& req, httplib::Response& res);
  void job_frame(const httplib::Request& req, httplib::Response& res);
  void delete_job(const httplib::Request& req, httplib::Response& res);
  void model_info(const httplib::Request& req, httplib::Response& res);
  void estimate(const httplib::Request& req, httplib::Response& res);
  bool authorized(const httplib::Request& req) const;
  // Host, Origin and preflight checks before any route; true when `res` holds the answer.
  bool refuse_or_preflight(const httplib::Request& req, httplib::Response& res) const;
  void load_web_files();
  nlohmann::json job_json(const Job& job) const;  // job_to_json + queue position

  ApiConfig config_;
  RequestPolicy policy_;
  Pipeline& pipeline_;
  JobStore& store_;
  JobQueue& queue_;
  std::mutex validate_mu_;  // Pipeline::validate from several HTTP threads, one at a time
  std::string index_html_, app_js_, style_css_;
  std::string describe_;
  std::atomic<int> open_streams_{0};
};

}  // namespace ib::server
