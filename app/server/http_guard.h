// The connection and request layer of `inbetween serve`, below the routes: which Host and Origin
// headers a request may carry (DNS rebinding, cross-site requests from any page the user visits),
// and an httplib::Server whose connections get a deadline for each request's head and body, so a
// client sending a byte a second cannot hold an HTTP thread for longer than that.
#pragma once

#include <httplib.h>

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

namespace ib::server {

// Host and Origin checks. A Host header must name this server: one of its own addresses (any
// address of this machine's interfaces), `localhost`, the --host name, or a name of --allow-host
// ('*' allows any). A state-changing request (anything but GET, HEAD, OPTIONS) that carries an
// Origin must come from the server's own origin or one of --cors-origin ('*' allows any).
class RequestPolicy {
 public:
  RequestPolicy(const std::string& listen_host, std::vector<std::string> allow_hosts,
                std::vector<std::string> cors_origins);

  // The Host header's name is ours (a request without Host, which no browser sends, passes).
  bool host_allowed(std::string_view host_header) const;
  // A listed cross-origin caller (gets CORS headers and may send state-changing requests).
  bool cors_allowed(std::string_view origin) const;
  // Whether a request with this method, Origin and Host may change state.
  bool origin_allowed(std::string_view method, std::string_view origin, std::string_view host_header,
                      std::string_view sec_fetch_site) const;

  // The host part of a Host header, lowercased, without port, brackets or trailing dot.
  static std::string host_name(std::string_view host_header);

 private:
  std::vector<std::string> hosts_;    // names and addresses, as host_name() gives them
  std::vector<std::string> origins_;  // lowercased, without trailing '/'
  bool any_host_ = false, any_origin_ = false;
};

// httplib::Server (0.11) with a deadline per request: from the moment a request's first bytes are
// there to the moment its head and body are read, at most request_timeout passes; past it the
// server answers 408 and closes the connection. httplib's own read timeout applies per receive,
// which a client sending a byte a second resets forever. Handlers do not read, so writing the
// answer (a video, an event stream) has only the write timeout. Keep-alive as in httplib.
class GuardedServer : public httplib::Server {
 public:
  GuardedServer(std::chrono::milliseconds request_timeout, std::chrono::seconds keep_alive,
                std::chrono::seconds read_write_timeout);

  // Called from a handler: the connection closes after this answer (a refusal sent before the
  // request's body was read, whose bytes must not be taken for the next request).
  static void close_after_answer();

 private:
  // httplib's connection loop, with our Stream in place of its SocketStream (as its SSLServer does).
  bool process_and_close_socket(socket_t sock) override;

  const std::chrono::milliseconds request_timeout_;
};

}  // namespace ib::server
