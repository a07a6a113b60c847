#include "http_guard.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <poll.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

#include "core/log.h"

namespace ib::server {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// Every address of this machine's interfaces, as text ("127.0.0.1", "::1", "192.168.1.5").
std::vector<std::string> local_addresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (const ifaddrs* a = list; a != nullptr; a = a->ifa_next) {
    if (a->ifa_addr == nullptr) continue;
    char buf[INET6_ADDRSTRLEN] = {};
    if (a->ifa_addr->sa_family == AF_INET) {
      ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(a->ifa_addr)->sin_addr, buf, sizeof buf);
    } else if (a->ifa_addr->sa_family == AF_INET6) {
      ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(a->ifa_addr)->sin6_addr, buf, sizeof buf);
    } else {
      continue;
    }
    out.emplace_back(buf);
  }
  ::freeifaddrs(list);
  return out;
}

// The canonical text of an IP literal ("::0001" -> "::1"), or "" when `s` is not one.
std::string canonical_ip(const std::string& s) {
  unsigned char bin[sizeof(in6_addr)];
  char buf[INET6_ADDRSTRLEN] = {};
  if (::inet_pton(AF_INET, s.c_str(), bin) == 1) return ::inet_ntop(AF_INET, bin, buf, sizeof buf);
  if (::inet_pton(AF_INET6, s.c_str(), bin) == 1) return ::inet_ntop(AF_INET6, bin, buf, sizeof buf);
  return "";
}

std::string origin_key(std::string_view origin) {
  std::string o = lower(origin);
  while (!o.empty() && o.back() == '/') o.pop_back();
  return o;
}

}  // namespace

RequestPolicy::RequestPolicy(const std::string& listen_host, std::vector<std::string> allow_hosts,
                             std::vector<std::string> cors_origins) {
  hosts_ = local_addresses();
  for (const char* loopback : {"localhost", "127.0.0.1", "::1"}) hosts_.push_back(loopback);
  hosts_.push_back(host_name(listen_host));
  for (const std::string& h : allow_hosts) {
    if (h == "*") any_host_ = true;
    hosts_.push_back(host_name(h));
  }
  for (std::string& h : hosts_)
    if (const std::string ip = canonical_ip(h); !ip.empty()) h = ip;
  for (const std::string& o : cors_origins) {
    if (o == "*") any_origin_ = true;
    origins_.push_back(origin_key(o));
  }
}

std::string RequestPolicy::host_name(std::string_view h) {
  std::string name;
  if (!h.empty() && h.front() == '[') {
    const size_t close = h.find(']');
    name = std::string(h.substr(1, close == std::string_view::npos ? std::string_view::npos : close - 1));
  } else {
    const size_t colon = h.find(':');
    // One colon: name:port. More than one without brackets: a bare IPv6 address.
    name = std::string(colon != std::string_view::npos && h.find(':', colon + 1) == std::string_view::npos
                           ? h.substr(0, colon)
                           : h);
  }
  name = lower(name);
  while (!name.empty() && name.back() == '.') name.pop_back();
  return name;
}

bool RequestPolicy::host_allowed(std::string_view host_header) const {
  if (host_header.empty() || any_host_) return true;
  std::string name = host_name(host_header);
  if (const std::string ip = canonical_ip(name); !ip.empty()) name = ip;
  return std::find(hosts_.begin(), hosts_.end(), name) != hosts_.end();
}

bool RequestPolicy::cors_allowed(std::string_view origin) const {
  if (origin.empty() || origin == "null") return false;
  return any_origin_ || std::find(origins_.begin(), origins_.end(), origin_key(origin)) != origins_.end();
}

bool RequestPolicy::origin_allowed(std::string_view method, std::string_view origin, std::string_view host_header,
                                   std::string_view sec_fetch_site) const {
  if (method == "GET" || method == "HEAD" || method == "OPTIONS") return true;
  if (origin.empty()) return sec_fetch_site != "cross-site";  // not a browser, or an old one
  if (cors_allowed(origin)) return true;
  // Same origin: the page this server sent, at the address the browser used for it (https when
  // a proxy in front of it holds the certificate).
  const std::string o = origin_key(origin), h = lower(host_header);
  return !h.empty() && (o == "http://" + h || o == "https://" + h);
}

// ---- GuardedServer ---------------------------------------------------------------------------

namespace {

using Clock = std::chrono::steady_clock;

thread_local bool t_close_after_answer = false;

// 1: readable, 0: timed out, -1: error. Retries on EINTR.
int wait_for(int fd, short events, int timeout_ms) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, timeout_ms);
    if (r < 0 && errno == EINTR) continue;
    return r < 0 ? -1 : r;
  }
}

void address_of(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  if ((peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&a), &len)
            : ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len)) != 0)
    return;
  char buf[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET) {
    const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
    ::inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
    port = ntohs(v4->sin_port);
  } else if (a.ss_family == AF_INET6) {
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
    ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
    port = ntohs(v6->sin6_port);
  }
  ip = buf;
}

// httplib's SocketStream with one change: every read of one request shares a deadline.
class DeadlineStream : public httplib::Stream {
 public:
  DeadlineStream(int fd, Clock::time_point deadline, std::chrono::milliseconds io_timeout)
      : fd_(fd), deadline_(deadline), io_timeout_(io_timeout) {}

  bool timed_out() const { return timed_out_; }

  bool is_readable() const override { return off_ < size_ || wait_readable(); }
  bool is_writable() const override {
    if (timed_out_ || wait_for(fd_, POLLOUT, static_cast<int>(io_timeout_.count())) != 1) return false;
    // Still connected: a readable socket that reads nothing was closed by the peer.
    if (wait_for(fd_, POLLIN, 0) != 1) return true;
    char c;
    return ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT) != 0;
  }
  ssize_t read(char* ptr, size_t size) override {
    if (off_ == size_) {
      if (!wait_readable()) return -1;
      ssize_t n;
      do n = ::recv(fd_, buf_, sizeof buf_, 0);
      while (n < 0 && errno == EINTR);
      if (n <= 0) return n;
      off_ = 0;
      size_ = static_cast<size_t>(n);
    }
    const size_t n = std::min(size, size_ - off_);
    std::memcpy(ptr, buf_ + off_, n);
    off_ += n;
    return static_cast<ssize_t>(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    // After a timed-out read the request is broken; the caller answers 408 instead.
    if (!is_writable()) return -1;
    ssize_t n;
    do n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
    while (n < 0 && errno == EINTR);
    return n;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  // Up to the per-receive timeout, and never past the request's deadline.
  bool wait_readable() const {
    const auto until = std::min(deadline_, Clock::now() + io_timeout_);
    for (auto now = Clock::now(); now < until; now = Clock::now()) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - now);
      const int r = wait_for(fd_, POLLIN, static_cast<int>(left.count()));
      if (r == 1) return true;
      if (r < 0) return false;
    }
    if (Clock::now() >= deadline_) timed_out_ = true;
    return false;
  }

  int fd_;
  Clock::time_point deadline_;
  std::chrono::milliseconds io_timeout_;
  mutable bool timed_out_ = false;
  char buf_[4096];
  size_t off_ = 0, size_ = 0;
};

}  // namespace

GuardedServer::GuardedServer(std::chrono::milliseconds request_timeout, std::chrono::seconds keep_alive,
                             std::chrono::seconds read_write_timeout)
    : request_timeout_(request_timeout) {
  set_keep_alive_timeout(keep_alive.count());
  set_read_timeout(read_write_timeout.count());
  set_write_timeout(read_write_timeout.count());
}

void GuardedServer::close_after_answer() { t_close_after_answer = true; }

bool GuardedServer::process_and_close_socket(socket_t sock) {
  static const std::string k408 = [] {
    const std::string body =
        R"json({"error": "the request's head and body did not arrive in time (--request-timeout)", "field": null})json";
    return "HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
           std::to_string(body.size()) + "\r\n\r\n" + body;
  }();
  const auto io_timeout = std::chrono::milliseconds(read_timeout_sec_ * 1000 + read_timeout_usec_ / 1000);
  bool ok = false;
  for (size_t left = keep_alive_max_count_; svr_sock_ != INVALID_SOCKET && left > 0; --left) {
    // Between requests: httplib closes a connection idle for the keep-alive timeout.
    if (wait_for(sock, POLLIN, static_cast<int>(keep_alive_timeout_sec_ * 1000)) != 1) break;
    DeadlineStream strm(sock, Clock::now() + request_timeout_, io_timeout);
    bool closed = false;
    t_close_after_answer = false;
    ok = process_request(strm, left == 1, closed, nullptr);
    closed = closed || t_close_after_answer;
    if (strm.timed_out()) {
      spdlog::info("http: a request did not arrive within {} ms; answered 408", request_timeout_.count());
      [[maybe_unused]] const ssize_t n = ::send(sock, k408.data(), k408.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      ok = false;
    }
    if (!ok || closed) break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
  return ok;
}

}  // namespace ib::server
