// `inbetween serve`: loads the model once, then answers the HTTP job API and serves the web page
// until SIGINT/SIGTERM. Shutdown: stop taking jobs, cancel (or finish) the running one, keep the
// queued ones on disk for the next start, close the listener, exit 0.
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <mutex>
#include <filesystem>
#include <thread>
#include <vector>

#include "app_commands.h"
#include "core/check.h"
#include "core/log.h"
#include "http_api.h"
#include "inbetween/error.h"
#include "inbetween/pipeline.h"
#include "job_queue.h"
#include "job_store.h"

#ifndef IB_WEB_DIR
#define IB_WEB_DIR "web"
#endif

namespace ib::cli {

namespace {

struct ServeArgs {
  PipelineOptions pipeline;
  std::string host = "127.0.0.1";
  int port = 8080;
  std::string data_dir = "inbetween-data";
  size_t max_queue = 8;
  std::string api_key;
  std::string on_shutdown = "cancel";
  std::string web_dir = IB_WEB_DIR;
  int http_threads = 32;
  int max_event_streams = 0;  // 0: half of http_threads
  double request_timeout_s = 30;
  std::vector<std::string> allow_hosts, cors_origins;
  size_t keep_jobs = 0;
  double keep_days = 0;
  uint64_t max_data_bytes = 0;
  std::string lora_dir;
};

// SIGINT/SIGTERM handlers only write the signal's number into a pipe (async-signal-safe); a
// watcher thread reads it, so the shutdown runs as ordinary code. (Blocking the signals instead
// would miss threads that libraries start before main, e.g. OpenBLAS's.) A 0 byte ends the watcher.
int g_signal_pipe[2] = {-1, -1};

extern "C" void on_signal(int sig) {
  const int saved = errno;
  const char b = static_cast<char>(sig);
  [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &b, 1);
  errno = saved;
}

class SignalWatcher {
 public:
  SignalWatcher() {
    if (::pipe(g_signal_pipe) != 0) throw Error("serve: cannot create the signal pipe");
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ::sigaction(SIGINT, &sa, nullptr);
    ::sigaction(SIGTERM, &sa, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    thread_ = std::thread([this] { loop(); });
  }
  ~SignalWatcher() {
    const char quit = 0;
    [[maybe_unused]] const ssize_t n = ::write(g_signal_pipe[1], &quit, 1);
    thread_.join();
    ::signal(SIGINT, SIG_DFL);
    ::signal(SIGTERM, SIG_DFL);
  }
  void set_serving(server::JobQueue* queue) {
    std::lock_guard lock(mu_);
    queue_ = queue;
    if (queue == nullptr) stopped_ = true;
  }
  // Waits for the first SIGINT/SIGTERM (or `stop` becoming true, checked every second).
  int wait(const std::function<bool()>& stop) {
    std::unique_lock lock(mu_);
    while (count_ == 0 && !stop()) cv_.wait_for(lock, std::chrono::seconds(1));
    return last_;
  }

 private:
  void loop() {
    for (;;) {
      char b = 0;
      const ssize_t n = ::read(g_signal_pipe[0], &b, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || b == 0) return;
      const int sig = b;
      std::lock_guard lock(mu_);
      ++count_;
      last_ = sig;
      if (stopped_) continue;  // already down; exiting
      if (queue_ == nullptr) {
        // Still loading the model: nothing to save or finish.
        std::fprintf(stderr, "interrupted while starting\n");
        std::_Exit(128 + sig);
      }
      if (count_ == 2) {
        spdlog::warn("second signal: cancelling the running job");
        queue_->cancel_running();
      } else if (count_ >= 3) {
        std::fprintf(stderr, "third signal: exiting at once\n");
        std::_Exit(128 + sig);
      }
      cv_.notify_all();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  int count_ = 0, last_ = 0;
  bool stopped_ = false;
  server::JobQueue* queue_ = nullptr;
  std::thread thread_;
};

void run(const ServeArgs& a) {
  SignalWatcher signals;

  if (a.host != "127.0.0.1" && a.host != "localhost" && a.host != "::1" && a.api_key.empty())
    spdlog::warn("listening on {} without --api-key: anyone who can reach it can run jobs", a.host);

  std::string lora_dir;
  if (!a.lora_dir.empty()) {
    IB_CHECK(std::filesystem::is_directory(a.lora_dir), "--lora-dir '{}' is not a folder", a.lora_dir);
    lora_dir = std::filesystem::canonical(a.lora_dir).string();
  }
  Pipeline pipeline(a.pipeline);
  // The weight files' headers and tensor lists, before the port opens: a broken model folder
  // stops the server here instead of failing every job.
  pipeline.check_files();
  spdlog::info("model: {}", pipeline.describe());
  {
    // Times a product on the device once, for the page's estimates (before any job runs there).
    GenerateOptions o;
    o.width = 1280;
    o.height = 720;
    const TimeEstimate e = pipeline.estimate(o);
    spdlog::info("estimate for 1280x720, 81 frames, 50 steps on this device: {:.0f} s", e.seconds);
  }
  server::JobStore store(a.data_dir);
  server::JobQueue queue(pipeline, store, a.max_queue);
  queue.set_retention({a.keep_jobs, a.keep_days * 86400});
  std::vector<server::Job> saved = store.load_all();
  for (server::Job& job : saved) {
    job.params.lora_dir = lora_dir;  // the folder of this run, never job.json's
    if (!server::is_final(job.state)) {  // it runs (again) with this run's settings
      job.params.precision = a.pipeline.precision;
      job.params.attention = a.pipeline.attention;
    }
  }
  queue.restore(std::move(saved));

  server::ApiConfig config;
  config.api_key = a.api_key;
  config.web_dir = a.web_dir;
  config.model_dir = a.pipeline.model_dir;
  config.device = a.pipeline.device;
  config.precision = a.pipeline.precision;
  config.attention = a.pipeline.attention;
  config.threads = a.pipeline.threads;
  config.lora_dir = lora_dir;
  config.listen_host = a.host;
  config.allow_hosts = a.allow_hosts;
  config.cors_origins = a.cors_origins;
  config.max_data_bytes = a.max_data_bytes;
  config.max_event_streams = a.max_event_streams > 0 ? a.max_event_streams : a.http_threads / 2;
  server::HttpApi api(config, pipeline, store, queue);

  server::GuardedServer http(std::chrono::milliseconds(static_cast<int64_t>(a.request_timeout_s * 1000)),
                             std::chrono::seconds(3), std::chrono::seconds(30));
  const int http_threads = a.http_threads;
  http.new_task_queue = [http_threads] { return new httplib::ThreadPool(static_cast<size_t>(http_threads)); };
  api.install(http);
  int port = a.port;
  if (port == 0) {
    port = http.bind_to_any_port(a.host);
    if (port < 0) throw Error("cannot listen on " + a.host + " (any port)");
  } else if (!http.bind_to_port(a.host, port)) {
    throw Error("cannot listen on " + a.host + ":" + std::to_string(port) + " (in use, or not an address here?)");
  }

  queue.start();
  signals.set_serving(&queue);
  std::atomic<bool> listener_done{false};
  std::thread listener([&http, &listener_done] {
    http.listen_after_bind();
    listener_done = true;
  });
  const std::string shown = a.host.find(':') != std::string::npos ? "[" + a.host + "]" : a.host;
  // On stdout, so scripts (and the tests) can read the port when --port 0 chose one.
  std::printf("listening on http://%s:%d/\n", shown.c_str(), port);
  std::fflush(stdout);
  spdlog::info("serving http://{}:{}/ (data dir {}, max queue {}, on shutdown: {})", shown, port, a.data_dir,
               a.max_queue, a.on_shutdown);

  const int sig = signals.wait([&listener_done] { return listener_done.load(); });
  const bool finish = a.on_shutdown == "finish";
  spdlog::info("{}: stopping; no new jobs, {} the running one", sig == SIGINT ? "SIGINT" : sig ? "SIGTERM" : "listener down",
               finish ? "finishing" : "cancelling");
  queue.shutdown(finish);  // GETs are still answered meanwhile, so watchers see the final state
  signals.set_serving(nullptr);
  http.stop();
  listener.join();
  const auto c = queue.counts();
  spdlog::info("stopped ({} done, {} failed, {} cancelled, {} left queued for the next start)", c.done, c.failed,
               c.cancelled, c.queued);
}

}  // namespace

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "Serve the job API and the web page (the model stays loaded)");
  add_pipeline_options(cmd, a->pipeline);
  cmd->add_option("--host", a->host, "Address to listen on")->capture_default_str();
  cmd->add_option("--port", a->port, "TCP port (0: any free port, printed on stdout)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--data-dir", a->data_dir, "Folder for jobs (uploads, job.json, video.mp4)")->capture_default_str();
  cmd->add_option("--max-queue", a->max_queue, "Jobs that may wait besides the running one; more get 429")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  cmd->add_option("--api-key", a->api_key,
                  "Require this key on /v1/* (Authorization: Bearer KEY, X-API-Key or ?api_key=); "
                  "also read from $INBETWEEN_API_KEY")
      ->envname("INBETWEEN_API_KEY");
  cmd->add_option("--on-shutdown", a->on_shutdown, "On SIGTERM/SIGINT: cancel or finish the running job")
      ->check(CLI::IsMember({"cancel", "finish"}))
      ->capture_default_str();
  cmd->add_option("--keep-jobs", a->keep_jobs,
                  "Keep at most N finished jobs (done, failed, cancelled); older ones are deleted (0: all)")
      ->check(CLI::Range(size_t{0}, size_t{1000000}))
      ->capture_default_str();
  cmd->add_option("--keep-days", a->keep_days,
                  "Delete finished jobs this many days after they finished (fractions allowed; 0: never)")
      ->check(CLI::Range(0.0, 36500.0))
      ->capture_default_str();
  cmd->add_option("--max-data-size", a->max_data_bytes,
                  "Refuse new jobs (507) while the data folder's jobs take more than this (bytes, or 500MB, "
                  "20GB...; 0: no limit)")
      ->transform(CLI::AsSizeValue(false))
      ->capture_default_str();
  cmd->add_option("--web-dir", a->web_dir, "Folder of the web page")->capture_default_str();
  cmd->add_option("--lora-dir", a->lora_dir,
                  "Folder of LoRA .safetensors files that jobs may name in their `loras` field (by file name only)");
  cmd->add_option("--http-threads", a->http_threads, "HTTP worker threads (each open event stream holds one)")
      ->check(CLI::Range(4, 1024))
      ->capture_default_str();
  cmd->add_option("--max-event-streams", a->max_event_streams,
                  "Event streams open at once; more get 503 (default: half of --http-threads, so the rest "
                  "always answer requests)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--request-timeout", a->request_timeout_s,
                  "Seconds a request's head and body may take to arrive (slower clients get 408)")
      ->check(CLI::Range(0.1, 3600.0))
      ->capture_default_str();
  cmd->add_option("--allow-host", a->allow_hosts,
                  "A name the Host header may carry besides this machine's addresses, localhost and --host "
                  "(repeatable; '*': any). Other Hosts get 421 (DNS rebinding)");
  cmd->add_option("--cors-origin", a->cors_origins,
                  "Origin (https://app.example) whose pages may call the API (repeatable; '*': any). "
                  "Other sites' POST/DELETE get 403");
  cmd->callback([a] { run(*a); });
}

}  // namespace ib::cli
