// Test helper: runs `inbetween serve` as a child process on 127.0.0.1 with --port 0, learns the
// port from its first stdout line, and stops it with a signal. Also small HTTP helpers for the
// job API (multipart submission of the fixture images, waiting for a final state).
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <netinet/in.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "common/fixture.h"

extern char** environ;

namespace ib::test {

inline std::string read_binary(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ServerProcess {
 public:
  // Starts `inbetween serve --model <fixture model> --host 127.0.0.1 --port 0 --data-dir DIR ARGS...`.
  ServerProcess(const std::string& data_dir, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {binary_dir() + "/inbetween", "serve", "--model", model_dir(), "--host",
                                     "127.0.0.1", "--port", "0", "--data-dir", data_dir, "--threads", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    int fds[2];
    if (::pipe(fds) != 0) throw std::runtime_error("pipe failed");
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, fds[0]);
    posix_spawn_file_actions_addclose(&actions, fds[1]);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(fds[1]);
    out_ = fds[0];
    if (rc != 0) throw std::runtime_error("cannot start " + args[0]);
    // "listening on http://127.0.0.1:PORT/"
    std::string line;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (line.find('\n') == std::string::npos) {
      pollfd p{out_, POLLIN, 0};
      if (std::chrono::steady_clock::now() > deadline || ::poll(&p, 1, 1000) < 0) break;
      if (p.revents == 0) continue;
      char buf[256];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) break;
      line.append(buf, static_cast<size_t>(n));
    }
    const size_t colon = line.rfind(':');
    if (line.rfind("listening on http://", 0) != 0 || colon == std::string::npos) {
      stop(SIGKILL);
      throw std::runtime_error("server did not start; stdout: '" + line + "'");
    }
    port_ = std::atoi(line.c_str() + colon + 1);
  }
  ~ServerProcess() {
    if (pid_ > 0) stop(SIGKILL);
    if (out_ >= 0) ::close(out_);
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  httplib::Client client(time_t read_timeout_s = 60) const {
    httplib::Client c("127.0.0.1", port_);
    c.set_read_timeout(read_timeout_s, 0);
    c.set_connection_timeout(5, 0);
    return c;
  }
  bool running() const { return pid_ > 0; }

  // Sends `sig` and waits up to timeout_s; returns the exit code (128 + signal when killed by
  // one, -1 on timeout, after which the process is killed).
  int stop(int sig = SIGTERM, double timeout_s = 120) {
    if (pid_ <= 0) return exit_code_;
    ::kill(pid_, sig);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
    int status = 0;
    for (;;) {
      const pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) break;
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return exit_code_ = -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int port_ = 0;
  int exit_code_ = -1;
};

// The fixture's keyframes.
inline const std::string& first_png() {
  static const std::string s = read_binary(fixture_path("first.png"));
  return s;
}
inline const std::string& last_png() {
  static const std::string s = read_binary(fixture_path("last.png"));
  return s;
}

// A multipart job with the fixture images and the given text fields.
inline httplib::MultipartFormDataItems job_form(const std::vector<std::pair<std::string, std::string>>& fields) {
  httplib::MultipartFormDataItems items = {{"first", first_png(), "first.png", "image/png"},
                                           {"last", last_png(), "last.png", "image/png"}};
  for (const auto& [k, v] : fields) items.push_back({k, v, "", ""});
  return items;
}

// Tiny settings: a few seconds on the CPU.
inline std::vector<std::pair<std::string, std::string>> tiny_fields(int steps = 4, int frames = 9) {
  return {{"prompt", "a test"}, {"frames", std::to_string(frames)}, {"max_area", "4096"},
          {"steps", std::to_string(steps)}, {"seed", "42"}};
}

// A job that runs for many seconds (and is cancelled or killed by the tests that use it).
inline std::vector<std::pair<std::string, std::string>> slow_fields() {
  return {{"frames", "17"}, {"max_area", "16384"}, {"steps", "200"}};
}

// The status of a response, or -1 when none came (connection refused, reset or timed out), so that
// EXPECT_EQ(status(r), 400) fails cleanly instead of dereferencing an empty result.
inline int status(const httplib::Result& r) { return r ? r->status : -1; }

// Sends `request` as it is (no client-side normalisation of the path) and returns the whole answer,
// "" when the connection fails.
inline std::string raw_http(int port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "";
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  timeval tv{10, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::string out;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::send(fd, request.data(), request.size(), 0) == static_cast<ssize_t>(request.size())) {
    char buf[4096];
    for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  return out;
}

// The status code of a raw HTTP answer ("HTTP/1.1 404 Not Found" -> 404), -1 when there is none.
inline int raw_status(const std::string& answer) {
  if (answer.rfind("HTTP/1.", 0) != 0 || answer.size() < 12) return -1;
  return std::atoi(answer.c_str() + 9);
}

inline nlohmann::json parse(const httplib::Result& r) {
  if (!r) throw std::runtime_error("no HTTP response: " + httplib::to_string(r.error()));
  return nlohmann::json::parse(r->body);
}

// POSTs a job; returns its id (asserting 202).
inline std::string submit(httplib::Client& c, const std::vector<std::pair<std::string, std::string>>& fields,
                          const httplib::Headers& headers = {}) {
  auto r = c.Post("/v1/jobs", headers, job_form(fields));
  if (!r || r->status != 202)
    throw std::runtime_error("submit failed: " + (r ? std::to_string(r->status) + " " + r->body : "no response"));
  return parse(r).at("id").get<std::string>();
}

inline nlohmann::json get_job(httplib::Client& c, const std::string& id, const httplib::Headers& headers = {}) {
  auto r = c.Get(("/v1/jobs/" + id).c_str(), headers);
  if (!r || r->status != 200) throw std::runtime_error("GET job failed");
  return parse(r);
}

inline bool final_state(const std::string& s) { return s == "done" || s == "failed" || s == "cancelled"; }

// Polls until the job is final (or the timeout passes); returns the last job object.
inline nlohmann::json wait_final(httplib::Client& c, const std::string& id, double timeout_s = 300,
                                 const httplib::Headers& headers = {}) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  nlohmann::json j;
  do {
    j = get_job(c, id, headers);
    if (final_state(j.at("state").get<std::string>())) return j;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  } while (std::chrono::steady_clock::now() < deadline);
  return j;
}

// Polls until the job is running its denoising loop.
inline nlohmann::json wait_denoising(httplib::Client& c, const std::string& id, double timeout_s = 120) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  nlohmann::json j;
  do {
    j = get_job(c, id);
    if (j.at("state") == "running" && j.at("stage") == "denoise") return j;
    if (final_state(j.at("state").get<std::string>())) return j;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  } while (std::chrono::steady_clock::now() < deadline);
  return j;
}

}  // namespace ib::test
