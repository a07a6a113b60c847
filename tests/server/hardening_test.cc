// `inbetween serve` against hostile clients, each case on a real server process on 127.0.0.1 with
// the fixture model (issue 12, section 4): requests for other Host names (DNS rebinding) and from
// other sites' pages, clients that send slowly, event streams that would take every thread, Range
// abuse, disk use, image decoding, temporary files left by a crash, and echoed error fields.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "io/image.h"
#include "server_process.h"

namespace ib::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string get_with_host(int port, const std::string& path, const std::string& host) {
  return raw_http(port, "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nConnection: close\r\n\r\n");
}

// DNS rebinding: a page of evil.example whose name was pointed at 127.0.0.1 reaches the server
// with its own name in Host. Only this machine's addresses, localhost, --host and --allow-host pass.
TEST(ServerHardening, ForeignHostIsRefused) {
  ServerProcess server(temp_dir(), {"--allow-host", "inbetween.lan"});
  const int port = server.port();
  const std::string p = ":" + std::to_string(port);
  for (const std::string& host :
       std::vector<std::string>{"evil.example", "evil.example" + p, "127.0.0.1.evil.example" + p, "localhost.evil" + p}) {
    for (const char* path : {"/v1/jobs", "/healthz", "/", "/v1/jobs/0123456789abcdef0123456789abcdef/video"}) {
      const std::string answer = get_with_host(port, path, host);
      EXPECT_EQ(raw_status(answer), 421) << host << " " << path << ": " << answer.substr(0, 300);
    }
  }
  for (const std::string& host : std::vector<std::string>{"127.0.0.1" + p, "127.0.0.1", "localhost" + p, "LOCALHOST" + p,
                                                          "[::1]" + p, "inbetween.lan" + p, "Inbetween.LAN." + p}) {
    const std::string answer = get_with_host(port, "/v1/jobs", host);
    EXPECT_EQ(raw_status(answer), 200) << host << ": " << answer.substr(0, 300);
  }
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// A page of another site may not start or delete jobs (a form POST needs no preflight); origins
// given with --cors-origin may, and get CORS headers; preflights are answered for them only.
TEST(ServerHardening, CrossOriginRequestsAreRefusedUnlessAllowed) {
  const std::string data = temp_dir();
  ServerProcess server(data, {"--cors-origin", "https://app.example"});
  auto c = server.client();
  const std::string own = "http://127.0.0.1:" + std::to_string(server.port());

  for (const char* origin : {"http://evil.example", "null", "https://app.example.evil", "http://127.0.0.1:1"}) {
    auto r = c.Post("/v1/jobs", {{"Origin", origin}}, job_form(tiny_fields()));
    ASSERT_EQ(status(r), 403) << origin << ": " << (r ? r->body : "");
    EXPECT_NE(parse(r).at("error").get<std::string>().find("cross-origin"), std::string::npos);
    EXPECT_FALSE(r->has_header("Access-Control-Allow-Origin"));
    EXPECT_EQ(status(c.Delete("/v1/jobs/0123456789abcdef0123456789abcdef", {{"Origin", origin}})), 403) << origin;
  }
  // The client is not a browser of another site (no Origin), but says so with Sec-Fetch-Site.
  EXPECT_EQ(status(c.Post("/v1/jobs", {{"Sec-Fetch-Site", "cross-site"}}, job_form(tiny_fields()))), 403);
  auto list = c.Get("/v1/jobs");
  ASSERT_EQ(status(list), 200);
  EXPECT_EQ(parse(list).at("jobs").size(), 0u);
  EXPECT_TRUE(fs::is_empty(data + "/jobs"));

  // Our own page, and the allowed origin, pass the check (and fail validation: no `last`).
  httplib::MultipartFormDataItems only_first = {{"first", first_png(), "first.png", "image/png"}};
  auto same = c.Post("/v1/jobs", {{"Origin", own}}, only_first);
  EXPECT_EQ(status(same), 400);
  auto allowed = c.Post("/v1/jobs", {{"Origin", "https://app.example"}}, only_first);
  ASSERT_EQ(status(allowed), 400);
  EXPECT_EQ(parse(allowed).at("field"), "last");
  EXPECT_EQ(allowed->get_header_value("Access-Control-Allow-Origin"), "https://app.example");
  EXPECT_EQ(status(c.Delete("/v1/jobs/0123456789abcdef0123456789abcdef", {{"Origin", "https://app.example"}})), 404);

  // Preflights: granted to the listed origin, refused to others.
  auto pre = c.Options("/v1/jobs", {{"Origin", "https://app.example"}, {"Access-Control-Request-Method", "POST"},
                                    {"Access-Control-Request-Headers", "authorization"}});
  ASSERT_EQ(status(pre), 204);
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "https://app.example");
  EXPECT_NE(pre->get_header_value("Access-Control-Allow-Methods").find("POST"), std::string::npos);
  EXPECT_NE(pre->get_header_value("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
  auto evil_pre = c.Options("/v1/jobs", {{"Origin", "http://evil.example"}, {"Access-Control-Request-Method", "DELETE"}});
  ASSERT_EQ(status(evil_pre), 403);
  EXPECT_FALSE(evil_pre->has_header("Access-Control-Allow-Origin"));
  EXPECT_FALSE(evil_pre->has_header("Access-Control-Allow-Methods"));
  // Reads by another site's page are answered without CORS headers, so its browser hides them.
  auto read = c.Get("/v1/jobs", {{"Origin", "http://evil.example"}});
  ASSERT_EQ(status(read), 200);
  EXPECT_FALSE(read->has_header("Access-Control-Allow-Origin"));
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// A client that sends its request head a byte at a time held an HTTP thread for as long as it
// kept sending; with as many of them as threads, nothing else was answered. Now the head and
// body must arrive within --request-timeout: the slow ones get 408 and the rest is answered.
TEST(ServerHardening, SlowClientsGetADeadline) {
  ServerProcess server(temp_dir(), {"--http-threads", "4", "--request-timeout", "2"});
  struct Slow {
    std::string answer;
    double closed_after = -1;
  };
  std::vector<Slow> slow(4);
  std::vector<std::thread> threads;
  const int port = server.port();
  for (Slow& s : slow) {
    threads.emplace_back([&s, port] {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) return ::close(fd), void();
      const std::string head = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + std::string(200, 'a');
      const auto t0 = Clock::now();
      // One byte every 200 ms, for at most 15 s; stop when the server answers or closes.
      for (size_t i = 0; i < head.size() && seconds_since(t0) < 15; ++i) {
        if (::send(fd, &head[i], 1, MSG_NOSIGNAL) != 1) break;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 200) == 1) break;
      }
      char buf[1024];
      timeval tv{2, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) s.answer.append(buf, static_cast<size_t>(n));
      s.closed_after = seconds_since(t0);
      ::close(fd);
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  auto c = server.client(10);
  const auto t0 = Clock::now();
  auto health = c.Get("/healthz");
  EXPECT_EQ(status(health), 200) << httplib::to_string(health.error());
  const double waited = seconds_since(t0);
  std::printf("[measured] /healthz answered after %.2f s with 4 slow clients on 4 threads\n", waited);
  EXPECT_LT(waited, 4.0);
  for (std::thread& t : threads) t.join();
  for (const Slow& s : slow) {
    EXPECT_EQ(raw_status(s.answer), 408) << s.answer;
    EXPECT_GT(s.closed_after, 1.5);
    EXPECT_LT(s.closed_after, 6.0);
  }
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// Every open event stream holds an HTTP thread: past --max-event-streams (half of the threads by
// default) a stream is refused with 503, so requests always find a thread.
TEST(ServerHardening, EventStreamsLeaveThreadsForRequests) {
  ServerProcess server(temp_dir(), {"--http-threads", "4"});
  auto c = server.client();
  const std::string id = submit(c, slow_fields());
  std::atomic<bool> stop{false};
  std::atomic<int> streaming{0};
  std::vector<std::thread> streams;
  struct Join {  // also when an assertion returns early: the streams end at their next event
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~Join() {
      stop = true;
      for (std::thread& t : threads)
        if (t.joinable()) t.join();
    }
  } join{stop, streams};
  for (int i = 0; i < 2; ++i) {
    streams.emplace_back([&] {
      auto sc = server.client(30);
      bool counted = false;
      sc.Get(("/v1/jobs/" + id + "/events").c_str(), [&](const char*, size_t) {
        if (!counted) ++streaming, counted = true;
        return !stop.load();
      });
    });
  }
  const auto deadline = Clock::now() + std::chrono::seconds(30);
  while (streaming < 2 && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(streaming.load(), 2);
  // A third one (read no further than its first piece if it is a stream: it would last as long as the job).
  int third = -1;
  std::string retry_after, body;
  server.client(5).Get(
      ("/v1/jobs/" + id + "/events").c_str(),
      [&](const httplib::Response& r) {
        third = r.status;
        retry_after = r.get_header_value("Retry-After");
        return true;
      },
      [&](const char* d, size_t n) {
        body.append(d, n);
        return third != 200;
      });
  ASSERT_EQ(third, 503) << body;
  EXPECT_FALSE(retry_after.empty());
  EXPECT_NE(body.find("poll"), std::string::npos) << body;
  const auto t0 = Clock::now();
  EXPECT_EQ(status(server.client(5).Get("/healthz")), 200);
  EXPECT_LT(seconds_since(t0), 2.0);
  EXPECT_EQ(status(c.Delete(("/v1/jobs/" + id).c_str())), 202);
  stop = true;
  for (std::thread& t : streams) t.join();
  EXPECT_EQ(wait_final(c, id, 60).at("state"), "cancelled");
  // The streams' slots are free again.
  auto again = server.client(10).Get(("/v1/jobs/" + id + "/events").c_str());
  EXPECT_EQ(status(again), 200);
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// Range: overlapping ranges are merged (1000 copies of "0-" were 1000 copies of the video), many
// small ones give the whole file, a 416 carries one Content-Range, and multi-range parts carry
// the real size. Other downloads ignore Range.
TEST(ServerHardening, RangesAreMergedBoundedAndCorrect) {
  ServerProcess server(temp_dir());
  auto c = server.client();
  const std::string id = submit(c, tiny_fields(2));
  ASSERT_EQ(wait_final(c, id).at("state"), "done");
  const std::string url = "/v1/jobs/" + id + "/video";
  auto whole = c.Get(url.c_str());
  ASSERT_EQ(status(whole), 200);
  const std::string full = whole->body;
  const size_t n = full.size();
  ASSERT_GT(n, 2000u);
  const std::string total = "/" + std::to_string(n);

  std::string many = "bytes=0-";
  for (int i = 0; i < 999; ++i) many += ",0-";
  auto amp = c.Get(url.c_str(), {{"Range", many}});
  ASSERT_EQ(status(amp), 206);
  EXPECT_EQ(amp->body, full);  // once, not 1000 times
  EXPECT_EQ(amp->get_header_value("Content-Range"), "bytes 0-" + std::to_string(n - 1) + total);

  auto overlap = c.Get(url.c_str(), {{"Range", "bytes=100-199, 150-299, 120-130"}});
  ASSERT_EQ(status(overlap), 206);
  EXPECT_EQ(overlap->body, full.substr(100, 200));
  EXPECT_EQ(overlap->get_header_value("Content-Range"), "bytes 100-299" + total);

  // Two ranges apart: multipart/byteranges with the real total in each part.
  auto two = c.Get(url.c_str(), {{"Range", "bytes=-10,0-4"}});
  ASSERT_EQ(status(two), 206);
  const std::string type = two->get_header_value("Content-Type");
  ASSERT_EQ(type.rfind("multipart/byteranges; boundary=", 0), 0u) << type;
  const std::string boundary = type.substr(type.find('=') + 1);
  const std::string expect = "--" + boundary + "\r\nContent-Type: video/mp4\r\nContent-Range: bytes 0-4" + total +
                             "\r\n\r\n" + full.substr(0, 5) + "\r\n--" + boundary +
                             "\r\nContent-Type: video/mp4\r\nContent-Range: bytes " + std::to_string(n - 10) + "-" +
                             std::to_string(n - 1) + total + "\r\n\r\n" + full.substr(n - 10) + "\r\n--" +
                             boundary + "--\r\n";
  EXPECT_EQ(two->body, expect);
  EXPECT_EQ(two->get_header_value("Content-Length"), std::to_string(expect.size()));

  // More than 16 separate ranges: the whole file.
  std::string spread = "bytes=";
  for (size_t i = 0; i < 20; ++i) spread += (i ? "," : "") + std::to_string(i * (n / 20)) + "-" + std::to_string(i * (n / 20));
  auto scattered = c.Get(url.c_str(), {{"Range", spread}});
  ASSERT_EQ(status(scattered), 200);
  EXPECT_EQ(scattered->body, full);

  // Unsatisfiable: 416 with exactly one Content-Range, "bytes */SIZE".
  auto past = c.Get(url.c_str(), {{"Range", "bytes=" + std::to_string(n) + "-"}});
  ASSERT_EQ(status(past), 416);
  EXPECT_EQ(past->headers.count("Content-Range"), 1u);
  EXPECT_EQ(past->get_header_value("Content-Range"), "bytes */" + std::to_string(n));
  EXPECT_EQ(parse(past).at("error").get<std::string>().find("range not satisfiable"), 0u);

  // The uploads and the page ignore Range.
  auto frame = c.Get(("/v1/jobs/" + id + "/frames/first").c_str(), {{"Range", many}});
  ASSERT_EQ(status(frame), 200);
  EXPECT_EQ(frame->body, first_png());
  auto page = c.Get("/", {{"Range", "bytes=0-9,20-29"}});
  ASSERT_EQ(status(page), 200);
  EXPECT_FALSE(page->has_header("Content-Range"));
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

size_t files_in(const std::string& dir) {
  size_t n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) n += e.is_regular_file();
  return n;
}

// Retention: --keep-jobs keeps the newest N finished jobs; --keep-days deletes older ones (here on
// a restart, as the clock has moved past them).
// Whether `path` is gone within `limit` (polled).
bool gone_within(const std::string& path, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (fs::exists(path) && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  return !fs::exists(path);
}

TEST(ServerHardening, RetentionDeletesOldFinishedJobs) {
  const std::string data = temp_dir();
  std::string first, second;
  {
    ServerProcess server(data, {"--keep-jobs", "1"});
    auto c = server.client();
    first = submit(c, tiny_fields(1, 5));
    ASSERT_EQ(wait_final(c, first).at("state"), "done");
    second = submit(c, tiny_fields(1, 5));
    ASSERT_EQ(wait_final(c, second).at("state"), "done");
    // The older one goes once the newer one has finished.
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (status(c.Get(("/v1/jobs/" + first).c_str())) != 404 && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_EQ(status(c.Get(("/v1/jobs/" + first).c_str())), 404);
    // The files go right after the job leaves the API (outside the queue's lock): bounded wait.
    EXPECT_TRUE(gone_within(data + "/jobs/" + first, std::chrono::seconds(10)));
    EXPECT_EQ(status(c.Get(("/v1/jobs/" + second + "/video").c_str())), 200);
    EXPECT_EQ(server.stop(SIGTERM), 0);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ServerProcess server(data, {"--keep-days", "0.00001"});  // 0.864 s
  auto c = server.client();
  EXPECT_EQ(status(c.Get(("/v1/jobs/" + second).c_str())), 404);
  EXPECT_TRUE(gone_within(data + "/jobs/" + second, std::chrono::seconds(10)));
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// Junk after an upload's image is not stored; a data folder over --max-data-size refuses new jobs
// with 507 until finished jobs are deleted.
TEST(ServerHardening, DiskUseIsBounded) {
  const std::string data = temp_dir();
  const size_t images = first_png().size() + last_png().size();
  // Room for one job's uploads and video, not for a second one's uploads on top.
  ServerProcess server(data, {"--max-data-size", std::to_string(images + images / 2)});
  auto c = server.client();
  const std::string junk(1 << 20, 'j');
  httplib::MultipartFormDataItems form = {{"first", first_png() + junk, "first.png", "image/png"},
                                          {"last", last_png(), "last.png", "image/png"}};
  for (const auto& [k, v] : tiny_fields(1, 5)) form.push_back({k, v, "", ""});
  // With the junk the upload is over the limit; without it, it fits.
  auto over = c.Post("/v1/jobs", form);
  ASSERT_EQ(status(over), 507);
  EXPECT_NE(parse(over).at("error").get<std::string>().find("full"), std::string::npos);
  form[0].content = first_png() + std::string(1000, 'j');
  auto r = c.Post("/v1/jobs", form);
  ASSERT_EQ(status(r), 202) << (r ? r->body : "");
  const std::string id = parse(r).at("id");
  ASSERT_EQ(wait_final(c, id).at("state"), "done");
  EXPECT_EQ(fs::file_size(data + "/jobs/" + id + "/first.png"), first_png().size());
  auto f = c.Get(("/v1/jobs/" + id + "/frames/first").c_str());
  ASSERT_EQ(status(f), 200);
  EXPECT_EQ(f->body, first_png());

  // Full now: a clear 507, nothing stored.
  auto full = c.Post("/v1/jobs", job_form(tiny_fields(1, 5)));
  ASSERT_EQ(status(full), 507);
  EXPECT_NE(parse(full).at("error").get<std::string>().find("--max-data-size"), std::string::npos);
  EXPECT_EQ(parse(c.Get("/v1/jobs")).at("jobs").size(), 1u);
  // Deleting the finished job makes room.
  auto del = c.Delete(("/v1/jobs/" + id).c_str());
  ASSERT_EQ(status(del), 200);
  EXPECT_FALSE(fs::exists(data + "/jobs/" + id));
  const std::string next = submit(c, tiny_fields(1, 5));
  EXPECT_EQ(wait_final(c, next).at("state"), "done");
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// SIGKILL while a file is written leaves AtomicFile's temporary file; the next start removes it.
TEST(ServerHardening, RestartRemovesPartialFiles) {
  const std::string data = temp_dir();
  std::string id;
  {
    ServerProcess server(data);
    auto c = server.client();
    id = submit(c, tiny_fields(1, 5));
    ASSERT_EQ(wait_final(c, id).at("state"), "done");
    EXPECT_EQ(server.stop(SIGKILL), 128 + SIGKILL);
  }
  const std::string dir = data + "/jobs/" + id;
  const size_t before = files_in(dir);
  std::ofstream(dir + "/.video.mp4.partial-Ab12Cd") << std::string(4096, 'x');
  std::ofstream(dir + "/.job.json.partial-x9Y8z7") << "{";
  ServerProcess server(data);
  auto c = server.client();
  EXPECT_EQ(get_job(c, id).at("state"), "done");
  EXPECT_FALSE(fs::exists(dir + "/.video.mp4.partial-Ab12Cd"));
  EXPECT_FALSE(fs::exists(dir + "/.job.json.partial-x9Y8z7"));
  EXPECT_EQ(files_in(dir), before);
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// An error names the field and quotes a little of it, never all of it.
TEST(ServerHardening, ErrorsDoNotEchoWholeFields) {
  ServerProcess server(temp_dir());
  auto c = server.client();
  const std::string huge(10 << 20, '7');
  for (const char* field : {"frames", "steps", "seed", "solver", "size", "shift", "loras"}) {
    auto r = c.Post("/v1/jobs", job_form({{field, huge + "x"}}));
    ASSERT_EQ(status(r), 400) << field;
    EXPECT_LT(r->body.size(), 1000u) << field << ": " << r->body.substr(0, 300);
    EXPECT_EQ(parse(r).at("field"), field) << r->body.substr(0, 300);
  }
  auto e = c.Get(("/v1/estimate?frames=" + std::string(4000, '9') + "x").c_str());
  ASSERT_EQ(status(e), 400);
  EXPECT_LT(e->body.size(), 1000u);
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// The 202 answer says where the job stood when accepted: queued, at a place >= 1 (it said 0 when
// the idle worker had taken the job before the answer was written).
TEST(ServerHardening, AcceptedJobHasItsQueuePosition) {
  ServerProcess server(temp_dir());
  auto c = server.client();
  for (int i = 0; i < 6; ++i) {
    auto r = c.Post("/v1/jobs", job_form(tiny_fields(1, 1)));
    ASSERT_EQ(status(r), 202);
    const json j = parse(r);
    EXPECT_EQ(j.at("state"), "queued");
    EXPECT_GE(j.at("queue_position").get<int>(), 1) << j.dump();
    // And a read never says queued without a place.
    const json g = get_job(c, j.at("id"));
    if (g.at("state") == "queued") {
      EXPECT_GE(g.at("queue_position").get<int>(), 1) << g.dump();
    }
    EXPECT_EQ(wait_final(c, j.at("id")).at("state"), "done");
  }
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// Uploads decode on the HTTP threads, an 8192x8192 image into about 200 MB; at most two decode at
// once, so four such uploads at a time do not take four times the memory.
TEST(ServerHardening, ConcurrentDecodesAreBounded) {
  ServerProcess server(temp_dir(), {"--http-threads", "8"});
  auto c = server.client();
  constexpr int64_t kSide = 8192;
  std::string big;
  {
    const std::vector<uint8_t> rgb(static_cast<size_t>(kSide * kSide * 3), 0x80);
    const std::vector<uint8_t> png = encode_png(rgb.data(), kSide, kSide);
    big.assign(png.begin(), png.end());
  }
  // `last` fails to decode, so each request ends after decoding `first` (no job runs).
  const std::string broken = std::string("\x89PNG\r\n\x1a\n", 8) + std::string(64, 'x');
  const httplib::MultipartFormDataItems form = {{"first", big, "first.png", "image/png"},
                                                {"last", broken, "last.png", "image/png"}};
  auto memory = [&](const char* key) { return parse(c.Get("/v1/model")).at("memory").at(key).get<int64_t>(); };
  const int64_t rss0 = memory("rss_bytes");
  auto one = c.Post("/v1/jobs", form);
  ASSERT_EQ(status(one), 400);
  ASSERT_EQ(parse(one).at("field"), "last") << one->body;
  const int64_t single = memory("peak_rss_bytes") - rss0;
  ASSERT_GT(single, 150 << 20) << "one decode should take about 200 MB";

  std::vector<int> codes(4, -1);
  std::vector<std::thread> threads;
  for (int& code : codes)
    threads.emplace_back([&server, &form, &code] { code = status(server.client(120).Post("/v1/jobs", form)); });
  for (std::thread& t : threads) t.join();
  for (int code : codes) EXPECT_EQ(code, 400);
  const int64_t four = memory("peak_rss_bytes") - rss0;
  std::printf("[measured] peak memory over the idle server: one 8192x8192 decode %.0f MB, four at once %.0f MB\n",
              static_cast<double>(single) / 1048576.0, static_cast<double>(four) / 1048576.0);
  EXPECT_LT(four, single * 26 / 10);
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

}  // namespace
}  // namespace ib::test
