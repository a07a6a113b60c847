#include "http_api.h"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "byte_ranges.h"
#include "core/log.h"
#include "core/tensor.h"
#include "inbetween/error.h"
#include "inbetween/story.h"
#include "story_request.h"

namespace ib::server {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void reply(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-store");
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace), "application/json");
}

// Messages quote client text through shown(); the cut here is a backstop, so that no answer
// echoes a whole oversized field.
void reply_error(httplib::Response& res, int status, const std::string& message, const std::string& field = "") {
  constexpr size_t kMax = 2000;
  std::string m = message;
  if (m.size() > kMax) {
    size_t cut = kMax;
    while (cut > 0 && (static_cast<unsigned char>(m[cut]) & 0xc0) == 0x80) --cut;
    m = m.substr(0, cut) + "... (cut)";
  }
  reply(res, status,
        {{"error", m}, {"field", field.empty() ? json(nullptr) : json(field.substr(0, 64))}});
}

bool read_file(const std::string& path, std::string& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  out = ss.str();
  return true;
}

// Compares without an early exit, so the key cannot be found byte by byte from timings.
bool same_secret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ (i < b.size() ? b[i] : 0));
  return diff == 0;
}

// The id in the route's first group, or a 400 written to `res` and "" returned.
std::string job_id(const httplib::Request& req, httplib::Response& res) {
  const std::string id = req.matches.size() > 1 ? req.matches[1].str() : "";
  if (!valid_job_id(id)) {
    reply_error(res, 400, "invalid job id (32 lowercase hex digits)", "id");
    return "";
  }
  return id;
}

// The .safetensors files a job's `loras` may name (sorted; empty without --lora-dir).
json lora_names(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  if (!dir.empty())
    for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
      const std::string n = e.path().filename().string();
      if (e.is_regular_file(ec) && n.front() != '.' && e.path().extension() == ".safetensors") names.push_back(n);
    }
  std::sort(names.begin(), names.end());
  return names;
}

int64_t proc_status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::string k = std::string(key) + ":";
  while (std::getline(in, line)) {
    if (line.rfind(k, 0) == 0) return std::atoll(line.c_str() + k.size());
  }
  return -1;
}

std::string sse_event(const json& data, uint64_t id) {
  return "id: " + std::to_string(id) + "\ndata: " + data.dump() + "\n\n";
}

const char* image_mime(const std::string& file) {
  if (file.ends_with(".png")) return "image/png";
  if (file.ends_with(".jpg")) return "image/jpeg";
  return "image/webp";
}

}  // namespace

HttpApi::HttpApi(ApiConfig config, Pipeline& pipeline, JobStore& store, JobQueue& queue)
    : config_(std::move(config)),
      policy_(config_.listen_host, config_.allow_hosts, config_.cors_origins),
      pipeline_(pipeline),
      store_(store),
      queue_(queue) {
  describe_ = pipeline_.describe();
  load_web_files();
}

void HttpApi::load_web_files() {
  const fs::path dir(config_.web_dir);
  const bool ok = read_file((dir / "index.html").string(), index_html_) &&
                  read_file((dir / "app.js").string(), app_js_) && read_file((dir / "style.css").string(), style_css_);
  if (!ok) spdlog::warn("web page files not found in '{}'; / will answer 500", config_.web_dir);
}

bool HttpApi::authorized(const httplib::Request& req) const {
  if (config_.api_key.empty()) return true;
  std::string key;
  const std::string auth = req.get_header_value("Authorization");
  if (auth.rfind("Bearer ", 0) == 0) {
    key = auth.substr(7);
  } else if (req.has_header("X-API-Key")) {
    key = req.get_header_value("X-API-Key");
  } else if (req.has_param("api_key")) {
    key = req.get_param_value("api_key");  // EventSource and <video> cannot send headers
  } else {
    return false;
  }
  return same_secret(key, config_.api_key);
}

bool HttpApi::refuse_or_preflight(const httplib::Request& req, httplib::Response& res) const {
  // DNS rebinding: a page of evil.example whose name now points at 127.0.0.1 sends its own name.
  const std::string host = req.get_header_value("Host");
  if (!policy_.host_allowed(host)) {
    GuardedServer::close_after_answer();
    reply_error(res, 421,
                "Host '" + RequestPolicy::host_name(host).substr(0, 64) +
                    "' is not a name of this server (start it with --allow-host NAME to answer to that name)");
    return true;
  }
  const std::string origin = req.get_header_value("Origin");
  const bool cors = policy_.cors_allowed(origin);
  if (cors) {
    res.set_header("Access-Control-Allow-Origin", origin);
    res.set_header("Access-Control-Expose-Headers", "Location, Retry-After, Content-Range, Content-Disposition");
  }
  if (!config_.cors_origins.empty()) res.set_header("Vary", "Origin");
  if (req.method == "OPTIONS") {
    // A preflight (Origin + Access-Control-Request-Method) is granted to the listed origins only;
    // no API key is asked for, as browsers send none with it.
    const bool preflight = !origin.empty() && req.has_header("Access-Control-Request-Method");
    if (preflight && !cors) {
      reply_error(res, 403, "cross-origin requests from this origin are not allowed (see --cors-origin)");
      return true;
    }
    res.status = 204;
    res.set_header("Allow", "GET, HEAD, POST, DELETE, OPTIONS");
    if (preflight) {
      res.set_header("Access-Control-Allow-Methods", "GET, POST, DELETE");
      res.set_header("Access-Control-Allow-Headers", "Authorization, X-API-Key, Content-Type, Range");
      res.set_header("Access-Control-Max-Age", "600");
    }
    return true;
  }
  if (!policy_.origin_allowed(req.method, origin, host, req.get_header_value("Sec-Fetch-Site"))) {
    GuardedServer::close_after_answer();
    reply_error(res, 403,
                "cross-origin " + req.method + " refused: the page of another site may not change this server's "
                "state (allow its origin with --cors-origin)");
    return true;
  }
  return false;
}

json HttpApi::job_json(const Job& job) const {
  json j = job_to_json(job);
  j["queue_position"] = job.state == JobState::Queued ? json(job.queue_position) : json(nullptr);
  return j;
}

void HttpApi::install(httplib::Server& server) {
  using httplib::Request;
  using httplib::Response;
  server.set_payload_max_length(config_.limits.max_body_bytes);

  server.set_pre_routing_handler([this](const Request& req, Response& res) {
    // httplib would apply the Range header to every answer after its handler, and gets several
    // ranges wrong; the video handler reads the header itself (byte_ranges.h), the rest ignore it.
    // (The Request is httplib's own non-const object, handed to handlers as const.)
    const_cast<Request&>(req).ranges.clear();
    if (refuse_or_preflight(req, res)) return httplib::Server::HandlerResponse::Handled;
    if (req.path.rfind("/v1/", 0) == 0 && !authorized(req)) {
      res.set_header("WWW-Authenticate", "Bearer");
      reply_error(res, 401, "missing or wrong API key (Authorization: Bearer KEY, X-API-Key: KEY or ?api_key=KEY)",
                  "api_key");
      return httplib::Server::HandlerResponse::Handled;
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });
  // Errors httplib answers by itself (404 route, 413 body too large, 416 range) get a JSON body.
  server.set_error_handler(httplib::Server::HandlerWithResponse([](const Request& req, Response& res) {
    const_cast<Request&>(req).ranges.clear();  // a malformed Range (416 before routing): none applied
    if (!res.body.empty() || res.content_length_ > 0) return httplib::Server::HandlerResponse::Unhandled;
    std::string message = "error " + std::to_string(res.status);
    if (res.status == 404) message = "not found";
    if (res.status == 405) message = "method not allowed";
    if (res.status == 413) message = "request body too large";
    if (res.status == 416) message = "range not satisfiable";
    reply_error(res, res.status, message);
    return httplib::Server::HandlerResponse::Handled;
  }));
  server.set_exception_handler([](const Request& req, Response& res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    spdlog::error("{} {}: {}", req.method, req.path, what);
    reply_error(res, 500, "internal error: " + what);
  });
  // One line per request; the reads a page repeats while it watches (job state, the list, the
  // model, health checks) at debug level, so the info log shows what changed things.
  server.set_logger([](const Request& req, const Response& res) {
    const bool poll = req.method == "GET" && res.status < 400 &&
                      (req.path == "/v1/jobs" || req.path == "/v1/model" || req.path == "/healthz" ||
                       req.path == "/v1/estimate" ||
                       (req.path.rfind("/v1/jobs/", 0) == 0 && req.path.find('/', 9) == std::string::npos));
    spdlog::log(poll ? spdlog::level::debug : spdlog::level::info, "http {} {} {} {}", req.remote_addr, req.method,
                req.path, res.status);
  });

  auto page = [this](const std::string* body, const char* mime) {
    return [this, body, mime](const Request&, Response& res) {
      if (body->empty()) return reply_error(res, 500, "web page files not found in " + config_.web_dir);
      res.status = 200;
      res.set_header("Cache-Control", "no-cache");
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("Content-Security-Policy",
                     "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob:; object-src 'none'");
      res.set_content(*body, mime);
    };
  };
  server.Get("/", page(&index_html_, "text/html; charset=utf-8"));
  server.Get("/index.html", page(&index_html_, "text/html; charset=utf-8"));
  server.Get("/app.js", page(&app_js_, "text/javascript; charset=utf-8"));
  server.Get("/style.css", page(&style_css_, "text/css; charset=utf-8"));
  server.Get("/favicon.ico", [](const Request&, Response& res) { res.status = 204; });

  server.Get("/healthz", [this](const Request&, Response& res) {
    reply(res, 200, {{"status", queue_.closed() ? "stopping" : "ok"}});
  });
  server.Get("/v1/model", [this](const Request& req, Response& res) { model_info(req, res); });
  server.Get("/v1/estimate", [this](const Request& req, Response& res) { estimate(req, res); });
  server.Post("/v1/jobs", [this](const Request& req, Response& res) { post_job(req, res); });
  server.Post("/v1/stories", [this](const Request& req, Response& res) { post_story(req, res); });
  server.Get("/v1/jobs", [this](const Request& req, Response& res) { list_jobs(req, res); });
  server.Get(R"(/v1/jobs/([^/]+))", [this](const Request& req, Response& res) { get_job(req, res); });
  server.Delete(R"(/v1/jobs/([^/]+))", [this](const Request& req, Response& res) { delete_job(req, res); });
  server.Get(R"(/v1/jobs/([^/]+)/events)", [this](const Request& req, Response& res) { job_events(req, res); });
  server.Get(R"(/v1/jobs/([^/]+)/video)", [this](const Request& req, Response& res) { job_video(req, res); });
  server.Get(R"(/v1/jobs/([^/]+)/frames/(first|last))",
             [this](const Request& req, Response& res) { job_frame(req, res); });
  // Anything else under /v1/jobs/ has a malformed id: httplib decodes %2F before routing, so an id
  // holding a slash reaches none of the routes above.
  const auto bad_id = [](const Request&, Response& res) {
    reply_error(res, 400, "invalid job id or path (ids are 32 lowercase hex digits)", "id");
  };
  server.Get(R"(/v1/jobs/.+)", bad_id);
  server.Delete(R"(/v1/jobs/.+)", bad_id);
}

void HttpApi::model_info(const httplib::Request&, httplib::Response& res) {
  const JobQueue::Counts c = queue_.counts();
  reply(res, 200,
        {{"model", describe_},
         {"model_dir", config_.model_dir},
         {"device", device_option_name(config_.device)},
         {"threads", config_.threads},
         {"loras", lora_names(config_.lora_dir)},
         {"cuda_devices", cuda_available() ? 1 : 0},
         {"memory", {{"rss_bytes", proc_status_kib("VmRSS") * 1024}, {"peak_rss_bytes", proc_status_kib("VmHWM") * 1024}}},
         {"queue",
          {{"queued", c.queued},
           {"running", c.running},
           {"max_queue", queue_.max_queue()},
           {"done", c.done},
           {"failed", c.failed},
           {"cancelled", c.cancelled}}},
         {"limits",
          {{"max_body_bytes", config_.limits.max_body_bytes},
           {"max_image_bytes", config_.limits.max_image_bytes},
           {"max_image_side", config_.limits.max_image_side},
           {"max_prompt_chars", config_.limits.max_prompt_chars},
           {"max_frames", config_.limits.max_frames},
           {"max_steps", config_.limits.max_steps},
           {"max_area", config_.limits.max_area},
           {"max_fps", config_.limits.max_fps},
           {"max_keyframes", config_.limits.max_keyframes},
           {"max_decodes", config_.limits.max_decodes},
           {"max_event_streams", config_.max_event_streams},
           {"max_data_bytes", config_.max_data_bytes}}},
         {"data_bytes", store_.usage()},
         {"fields", job_fields()},
         {"story_fields", story_fields()}});
}

// GET /v1/estimate?image=WxH&frames=&steps=&guidance=&max_area=|size=: how long a job with these
// settings would run (the page shows it before submitting). `image` is the first image's size,
// which max_area's video size follows.
void HttpApi::estimate(const httplib::Request& req, httplib::Response& res) {
  GenerateOptions o;
  int64_t image_w = 1280, image_h = 720;
  auto number = [&](const char* name, double lo, double hi, double& out) {
    if (!req.has_param(name)) return true;
    const std::string text = req.get_param_value(name);
    char* end = nullptr;
    const double v = std::strtod(text.c_str(), &end);
    if (text.empty() || *end != '\0' || !(v >= lo && v <= hi)) {
      reply_error(res, 400, fmt::format("{}: {} is not a number in [{}, {}]", name, shown(text), lo, hi), name);
      return false;
    }
    out = v;
    return true;
  };
  auto dims = [&](const char* name, int64_t& w, int64_t& h) {
    if (!req.has_param(name)) return true;
    const std::string text = req.get_param_value(name);
    long long a = 0, b = 0;
    char x = 0, extra = 0;
    if (std::sscanf(text.c_str(), "%lld%c%lld%c", &a, &x, &b, &extra) != 3 || (x != 'x' && x != 'X') || a < 1 ||
        b < 1 || a > 65535 || b > 65535) {
      reply_error(res, 400, fmt::format("{}: {} is not WIDTHxHEIGHT", name, shown(text)), name);
      return false;
    }
    w = a;
    h = b;
    return true;
  };
  double frames = 81, steps = 50, guidance = 5, area = o.max_area;
  const Limits& l = config_.limits;
  if (!dims("image", image_w, image_h) || !dims("size", o.width, o.height) ||
      !number("frames", 1, static_cast<double>(l.max_frames), frames) || !number("steps", 1, l.max_steps, steps) ||
      !number("guidance", 0, 50, guidance) || !number("max_area", 256, static_cast<double>(l.max_area), area))
    return;
  o.frames = static_cast<int64_t>(frames);
  o.steps = static_cast<int>(steps);
  o.guidance = guidance;
  o.max_area = area;
  try {
    const TimeEstimate e = pipeline_.estimate(o, image_w, image_h);
    json stages = json::object();
    for (const StageTime& t : e.stages) stages[t.stage] = t.seconds;
    reply(res, 200,
          {{"seconds", e.seconds}, {"width", e.width}, {"height", e.height}, {"measured", e.measured},
           {"device", device_option_name(config_.device)}, {"stages", stages}});
  } catch (const Error& e) {
    reply_error(res, 400, e.what(), field_for_pipeline_error(e));
  }
}

bool HttpApi::accepting(const httplib::Request& req, httplib::Response& res) {
  switch (queue_.can_submit()) {
    case JobQueue::SubmitResult::Full:
      res.set_header("Retry-After", "10");
      reply_error(res, 429, "the queue is full; try again later");
      return false;
    case JobQueue::SubmitResult::Stopping:
      reply_error(res, 503, "the server is shutting down");
      return false;
    case JobQueue::SubmitResult::Accepted: break;
  }
  if (config_.max_data_bytes > 0) {
    uint64_t upload = 0;
    for (const auto& [name, part] : req.files) upload += part.content.size();
    const uint64_t used = store_.usage();
    if (used + upload > config_.max_data_bytes) {
      reply_error(res, 507,
                  fmt::format("the data folder is full: {:.1f} MiB of {:.1f} MiB (--max-data-size) in use; "
                              "delete finished jobs (DELETE /v1/jobs/ID) and try again",
                              static_cast<double>(used) / 1048576.0, static_cast<double>(config_.max_data_bytes) / 1048576.0));
      return false;
    }
  }
  return true;
}

void HttpApi::post_job(const httplib::Request& req, httplib::Response& res) {
  if (!accepting(req, res)) return;
  JobRequest r;
  try {
    r = parse_job_request(req, config_.limits);
  } catch (const RequestError& e) {
    return reply_error(res, e.status(), e.what(), e.field());
  }
  const std::string summary = fmt::format("{}x{} and {}x{} images, {} frames, {} steps", r.first_width, r.first_height,
                                          r.last_width, r.last_height, r.params.gen.frames, r.params.gen.steps);
  enqueue(r.params, {{r.params.first_file, &r.first}, {r.params.last_file, &r.last}},
          [this](const JobParams& p, const std::string& dir) { pipeline_.validate(generate_options(p, dir)); },
          summary, res);
}

// POST /v1/stories: 2..16 keyframes in order, a prompt per segment; then as a job (story_request.cc).
void HttpApi::post_story(const httplib::Request& req, httplib::Response& res) {
  if (!accepting(req, res)) return;
  StoryRequest r;
  try {
    r = parse_story_request(req, config_.limits);
  } catch (const RequestError& e) {
    return reply_error(res, e.status(), e.what(), e.field());
  }
  std::vector<std::pair<std::string, const std::string*>> files;
  for (size_t i = 0; i < r.images.size(); ++i) files.emplace_back(r.params.keyframe_files[i], &r.images[i]);
  const std::string summary = fmt::format("a story of {} keyframes{}, {} frames a segment, {} steps", r.images.size(),
                                          r.params.loop ? " looped" : "", r.params.gen.frames, r.params.gen.steps);
  enqueue(r.params, files,
          [this](const JobParams& p, const std::string& dir) { validate_story(pipeline_, story_options(p, dir)); },
          summary, res);
}

void HttpApi::enqueue(JobParams params, const std::vector<std::pair<std::string, const std::string*>>& files,
                      const std::function<void(const JobParams&, const std::string& dir)>& check,
                      const std::string& summary, httplib::Response& res) {
  if (!params.gen.loras.empty()) {
    if (config_.lora_dir.empty())
      return reply_error(res, 400, "loras: this server takes no LoRAs (it was started without --lora-dir)", "loras");
    for (const LoraFile& l : params.gen.loras)
      if (!std::filesystem::is_regular_file(std::filesystem::path(config_.lora_dir) / l.path))
        return reply_error(res, 400, "loras: '" + l.path + "' is not in the server's LoRA folder", "loras");
    params.lora_dir = config_.lora_dir;
  }

  const std::string id = store_.create_job_dir();
  const std::string dir = store_.job_dir(id);
  size_t position = 0;
  try {
    for (const auto& [name, data] : files) store_.write_file(id, name, *data);
    Job job;
    job.id = id;
    job.params = params;
    job.params.precision = config_.precision;
    job.params.attention = config_.attention;
    job.created = unix_now();
    try {
      std::lock_guard lock(validate_mu_);
      check(job.params, dir);
    } catch (const Error& e) {
      std::string message = e.what();
      for (const std::string& d : {dir, config_.lora_dir})
        for (size_t pos; !d.empty() && (pos = message.find(d + "/")) != std::string::npos;) message.erase(pos, d.size() + 1);
      store_.remove_job(id);
      return reply_error(res, 400, message, field_for_pipeline_error(e));
    }
    switch (queue_.submit(job, &position)) {
      case JobQueue::SubmitResult::Accepted: break;
      case JobQueue::SubmitResult::Full:
        store_.remove_job(id);
        res.set_header("Retry-After", "10");
        return reply_error(res, 429, "the queue is full; try again later");
      case JobQueue::SubmitResult::Stopping:
        store_.remove_job(id);
        return reply_error(res, 503, "the server is shutting down");
    }
  } catch (...) {
    store_.remove_job(id);
    throw;
  }
  spdlog::info("job {}: queued ({})", id, summary);
  res.set_header("Location", "/v1/jobs/" + id);
  // As accepted: the worker may have taken the job by now, which GET and the events then say.
  reply(res, 202,
        {{"id", id},
         {"state", "queued"},
         {"queue_position", position},
         {"url", "/v1/jobs/" + id},
         {"events", "/v1/jobs/" + id + "/events"},
         {"video", "/v1/jobs/" + id + "/video"}});
}

void HttpApi::list_jobs(const httplib::Request& req, httplib::Response& res) {
  size_t limit = 50;
  if (req.has_param("limit")) {
    const std::string s = req.get_param_value("limit");
    char* end = nullptr;
    const long v = std::strtol(s.c_str(), &end, 10);
    if (s.empty() || *end != '\0' || v < 1 || v > 10000)
      return reply_error(res, 400, "limit: expected an integer in [1, 10000]", "limit");
    limit = static_cast<size_t>(v);
  }
  json jobs = json::array();
  for (const Job& job : queue_.list(limit)) jobs.push_back(job_json(job));
  reply(res, 200, {{"jobs", jobs}});
}

void HttpApi::get_job(const httplib::Request& req, httplib::Response& res) {
  const std::string id = job_id(req, res);
  if (id.empty()) return;
  const auto job = queue_.get(id);
  if (!job) return reply_error(res, 404, "no such job", "id");
  reply(res, 200, job_json(*job));
}

void HttpApi::delete_job(const httplib::Request& req, httplib::Response& res) {
  const std::string id = job_id(req, res);
  if (id.empty()) return;
  switch (queue_.cancel(id)) {
    case JobQueue::CancelResult::NotFound: return reply_error(res, 404, "no such job", "id");
    case JobQueue::CancelResult::AlreadyFinal:
      // Finished: deleted with its folder (a job that finished meanwhile counts as finished).
      switch (queue_.remove(id)) {
        case JobQueue::RemoveResult::Removed: return reply(res, 200, {{"id", id}, {"deleted", true}});
        case JobQueue::RemoveResult::NotFound: return reply_error(res, 404, "no such job", "id");
        case JobQueue::RemoveResult::NotFinal: return reply_error(res, 409, "the job changed meanwhile; try again", "id");
      }
      return;
    case JobQueue::CancelResult::Cancelling: {
      json j = job_json(*queue_.get(id));
      j["cancel_requested"] = true;
      return reply(res, 202, j);
    }
    case JobQueue::CancelResult::Cancelled: return reply(res, 200, job_json(*queue_.get(id)));
  }
}

// Server-Sent Events: one event per change of the job (every step), a comment line every
// heartbeat_s while nothing changes (to notice gone clients), and the end after the final state.
void HttpApi::job_events(const httplib::Request& req, httplib::Response& res) {
  const std::string id = job_id(req, res);
  if (id.empty()) return;
  if (!queue_.get(id)) return reply_error(res, 404, "no such job", "id");
  // Each stream holds an HTTP thread while it is open; the other half stay for requests.
  if (open_streams_.fetch_add(1) >= config_.max_event_streams) {
    --open_streams_;
    res.set_header("Retry-After", "5");
    return reply_error(res, 503,
                       fmt::format("{} event streams are open, the most this server keeps; poll GET /v1/jobs/{} instead",
                                   config_.max_event_streams, id));
  }
  // Released with the response, however the stream ends.
  const std::shared_ptr<void> slot(nullptr, [this](void*) { --open_streams_; });
  res.status = 200;
  res.set_header("Cache-Control", "no-store");
  res.set_header("X-Accel-Buffering", "no");
  auto seen = std::make_shared<uint64_t>(0);
  const auto heartbeat = std::chrono::milliseconds(config_.heartbeat_s * 1000);
  res.set_chunked_content_provider("text/event-stream", [this, id, seen, heartbeat, slot](size_t, httplib::DataSink& sink) {
    if (*seen == 0 && !sink.write("retry: 3000\n\n", 13)) return false;
    const auto job = queue_.wait_change(id, *seen, heartbeat);
    if (!job) {
      sink.done();
      return true;
    }
    if (job->version > *seen) {
      *seen = job->version;
      const std::string ev = sse_event(job_json(*job), job->version);
      if (!sink.write(ev.data(), ev.size())) return false;
      if (is_final(job->state)) sink.done();
    } else if (queue_.closed()) {
      static const std::string bye = "event: shutdown\ndata: {}\n\n";
      sink.write(bye.data(), bye.size());
      sink.done();
    } else {
      static const std::string ping = ": ping\n\n";
      if (!sink.write(ping.data(), ping.size())) return false;
    }
    return true;
  });
}

void HttpApi::job_video(const httplib::Request& req, httplib::Response& res) {
  const std::string id = job_id(req, res);
  if (id.empty()) return;
  const auto job = queue_.get(id);
  if (!job) return reply_error(res, 404, "no such job", "id");
  if (job->state != JobState::Done)
    return reply_error(res, 409, std::string("no video: the job is ") + state_name(job->state), "id");
  const std::string path = store_.video_path(id);
  std::error_code ec;
  const uint64_t size = fs::file_size(path, ec);
  if (ec || size == 0) return reply_error(res, 410, "the video file is missing from the data dir");
  const RangePlan plan = plan_ranges(req.get_header_value("Range"), size);
  if (plan.kind == RangePlan::Kind::Unsatisfiable) {
    res.set_header("Content-Range", "bytes */" + std::to_string(size));
    return reply_error(res, 416, "range not satisfiable (the video has " + std::to_string(size) + " bytes)");
  }
  auto file = std::make_shared<std::ifstream>(path, std::ios::binary);
  if (!*file) return reply_error(res, 410, "the video file cannot be opened");
  res.set_header("Accept-Ranges", "bytes");
  res.set_header("Cache-Control", "private, max-age=3600");
  const std::string name = "inbetween-" + id.substr(0, 8) + ".mp4";
  const bool download = req.has_param("download") && req.get_param_value("download") != "0";
  res.set_header("Content-Disposition", std::string(download ? "attachment" : "inline") + "; filename=\"" + name + "\"");
  // Writes at most `length` bytes of the file from `offset` (one read per call).
  auto copy = [](std::ifstream& f, uint64_t offset, uint64_t length, httplib::DataSink& sink) {
    char buf[1 << 16];
    f.clear();
    f.seekg(static_cast<std::streamoff>(offset));
    f.read(buf, static_cast<std::streamsize>(std::min<uint64_t>(length, sizeof buf)));
    const std::streamsize got = f.gcount();
    return got > 0 && sink.write(buf, static_cast<size_t>(got));
  };
  if (plan.kind == RangePlan::Kind::Whole) {
    res.status = 200;
    res.set_content_provider(size, "video/mp4", [file, copy](size_t offset, size_t length, httplib::DataSink& sink) {
      return copy(*file, offset, length, sink);
    });
    return;
  }
  res.status = 206;
  if (plan.ranges.size() == 1) {
    const ByteRange r = plan.ranges[0];
    res.set_header("Content-Range", content_range(r, size));
    res.set_content_provider(r.last - r.first + 1, "video/mp4",
                             [file, copy, r](size_t offset, size_t length, httplib::DataSink& sink) {
                               return copy(*file, r.first + offset, length, sink);
                             });
    return;
  }
  auto body = std::make_shared<MultipartRanges>(multipart_ranges(plan.ranges, size, "video/mp4"));
  res.set_content_provider(body->length, "multipart/byteranges; boundary=" + body->boundary,
                           [file, copy, body](size_t offset, size_t length, httplib::DataSink& sink) {
                             // The piece holding `offset`, then as much of it as fits.
                             uint64_t at = 0;
                             for (const MultipartRanges::Piece& p : body->pieces) {
                               if (offset >= at + p.length) {
                                 at += p.length;
                                 continue;
                               }
                               const uint64_t skip = offset - at, n = std::min<uint64_t>(p.length - skip, length);
                               if (p.text.empty()) return copy(*file, p.offset + skip, n, sink);
                               return sink.write(p.text.data() + skip, n);
                             }
                             return false;
                           });
}

void HttpApi::job_frame(const httplib::Request& req, httplib::Response& res) {
  const std::string id = job_id(req, res);
  if (id.empty()) return;
  const auto job = queue_.get(id);
  if (!job) return reply_error(res, 404, "no such job", "id");
  const std::string& file = req.matches[2] == "first" ? job->params.first_file : job->params.last_file;
  std::string data;
  if (!read_file((fs::path(store_.job_dir(id)) / file).string(), data))
    return reply_error(res, 410, "the image is missing from the data dir");
  res.status = 200;
  res.set_header("Cache-Control", "private, max-age=3600");
  res.set_header("X-Content-Type-Options", "nosniff");
  res.set_content(data, image_mime(file));
}

}  // namespace ib::server
