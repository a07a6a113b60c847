// API tests of `inbetween serve` against a real server process on 127.0.0.1 with the tiny fixture
// model: submit, poll, events, download (checked with ffprobe), Range, cancel, every validation
// error, API key, full queue, restart and shutdown behaviour.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "io/image.h"
#include "server_process.h"

namespace ib::test {
namespace {

using nlohmann::json;

std::string run_capture(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ::pclose(p);
  return out;
}

TEST(ServerApi, SubmitPollDownloadRange) {
  const std::string data = temp_dir();
  ServerProcess server(data);
  auto c = server.client();

  auto health = c.Get("/healthz");
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(parse(health).at("status"), "ok");
  auto model = c.Get("/v1/model");
  ASSERT_TRUE(model);
  ASSERT_EQ(model->status, 200);
  const json m = parse(model);
  EXPECT_FALSE(m.at("model").get<std::string>().empty());
  EXPECT_EQ(m.at("device"), "cpu");
  EXPECT_GT(m.at("memory").at("rss_bytes").get<int64_t>(), 0);

  const auto t0 = std::chrono::steady_clock::now();
  auto r = c.Post("/v1/jobs", job_form(tiny_fields()));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 202) << r->body;
  const std::string id = parse(r).at("id");
  EXPECT_EQ(id.size(), 32u);
  EXPECT_EQ(r->get_header_value("Location"), "/v1/jobs/" + id);

  const json job = wait_final(c, id);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[measured] tiny job (9 frames, 4 steps, max_area 4096): %.2f s submit to done\n", secs);
  ASSERT_EQ(job.at("state"), "done") << job.dump();
  EXPECT_EQ(job.at("result").at("frames"), 9);
  EXPECT_EQ(job.at("result").at("seed"), 42);
  EXPECT_EQ(job.at("params").at("steps"), 4);
  EXPECT_TRUE(job.at("error").is_null());
  const int64_t w = job.at("result").at("width"), h = job.at("result").at("height");

  // The whole video, then checked by ffprobe.
  auto v = c.Get(("/v1/jobs/" + id + "/video").c_str());
  ASSERT_TRUE(v);
  ASSERT_EQ(v->status, 200);
  EXPECT_EQ(v->get_header_value("Content-Type"), "video/mp4");
  EXPECT_EQ(v->get_header_value("Accept-Ranges"), "bytes");
  const std::string full = v->body;
  ASSERT_GT(full.size(), 100u);
  EXPECT_EQ(full, read_binary(data + "/jobs/" + id + "/video.mp4"));
  const std::string mp4 = temp_dir() + "/v.mp4";
  {
    std::ofstream out(mp4, std::ios::binary);
    out << full;
  }
  const json probe = json::parse(run_capture(
      "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
      "stream=codec_name,width,height,nb_read_frames,pix_fmt -of json '" +
      mp4 + "'"));
  const json& st = probe.at("streams").at(0);
  EXPECT_EQ(st.at("codec_name"), "h264");
  EXPECT_EQ(st.at("pix_fmt"), "yuv420p");
  EXPECT_EQ(st.at("width").get<int64_t>(), w);
  EXPECT_EQ(st.at("height").get<int64_t>(), h);
  EXPECT_EQ(st.at("nb_read_frames"), "9");

  // Ranges: a middle slice, a suffix, one past the end.
  auto part = c.Get(("/v1/jobs/" + id + "/video").c_str(), {{"Range", "bytes=100-1099"}});
  ASSERT_TRUE(part);
  EXPECT_EQ(part->status, 206);
  EXPECT_EQ(part->body, full.substr(100, 1000));
  EXPECT_EQ(part->get_header_value("Content-Range"), "bytes 100-1099/" + std::to_string(full.size()));
  auto tail = c.Get(("/v1/jobs/" + id + "/video").c_str(), {{"Range", "bytes=-50"}});
  ASSERT_TRUE(tail);
  EXPECT_EQ(tail->status, 206);
  EXPECT_EQ(tail->body, full.substr(full.size() - 50));
  auto open_end = c.Get(("/v1/jobs/" + id + "/video").c_str(), {{"Range", "bytes=10-"}});
  ASSERT_TRUE(open_end);
  EXPECT_EQ(open_end->status, 206);
  EXPECT_EQ(open_end->body, full.substr(10));
  auto past = c.Get(("/v1/jobs/" + id + "/video").c_str(), {{"Range", "bytes=" + std::to_string(full.size()) + "-"}});
  ASSERT_TRUE(past);
  EXPECT_EQ(past->status, 416);

  // Previews are the uploads as they were; the list holds the job.
  auto f = c.Get(("/v1/jobs/" + id + "/frames/first").c_str());
  ASSERT_TRUE(f);
  EXPECT_EQ(f->status, 200);
  EXPECT_EQ(f->get_header_value("Content-Type"), "image/png");
  EXPECT_EQ(f->body, first_png());
  auto list = c.Get("/v1/jobs");
  ASSERT_TRUE(list);
  EXPECT_EQ(parse(list).at("jobs").at(0).at("id"), id);

  // DELETE on a finished job deletes it, folder and all.
  auto del = c.Delete(("/v1/jobs/" + id).c_str());
  ASSERT_TRUE(del);
  EXPECT_EQ(del->status, 200) << del->body;
  EXPECT_EQ(parse(del).at("deleted"), true);
  EXPECT_EQ(status(c.Get(("/v1/jobs/" + id).c_str())), 404);
  EXPECT_EQ(status(c.Get(("/v1/jobs/" + id + "/video").c_str())), 404);
  EXPECT_FALSE(std::filesystem::exists(data + "/jobs/" + id));
  EXPECT_EQ(status(c.Delete(("/v1/jobs/" + id).c_str())), 404);
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

TEST(ServerApi, EventStreamEndsWithFinalState) {
  ServerProcess server(temp_dir());
  auto c = server.client();
  const std::string id = submit(c, tiny_fields(6));
  std::string body;
  auto r = c.Get(("/v1/jobs/" + id + "/events").c_str(), [&](const char* d, size_t n) {
    body.append(d, n);
    return true;
  });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "text/event-stream");
  std::vector<json> events;
  std::istringstream lines(body);
  for (std::string line; std::getline(lines, line);)
    if (line.rfind("data: ", 0) == 0) events.push_back(json::parse(line.substr(6)));
  ASSERT_GE(events.size(), 3u) << body;
  EXPECT_EQ(events.back().at("state"), "done");
  int last_step = -1, denoise_events = 0;
  for (const json& e : events) {
    if (e.at("state") == "running" && e.at("stage") == "denoise") {
      EXPECT_GE(e.at("step").get<int>(), last_step);
      last_step = e.at("step");
      EXPECT_EQ(e.at("total"), 6);
      ++denoise_events;
    }
  }
  EXPECT_GE(denoise_events, 2) << body;
  std::printf("[measured] %zu events for a 6-step job\n", events.size());

  // A stream opened after the end still gives the final state at once, then ends.
  std::string again;
  auto r2 = c.Get(("/v1/jobs/" + id + "/events").c_str(), [&](const char* d, size_t n) {
    again.append(d, n);
    return true;
  });
  ASSERT_TRUE(r2);
  EXPECT_NE(again.find("\"state\":\"done\""), std::string::npos);
}

TEST(ServerApi, ClientDisconnectDoesNotLoseTheVideo) {
  ServerProcess server(temp_dir());
  auto c = server.client();
  const std::string id = submit(c, tiny_fields(4));
  size_t chunks = 0;
  auto r = c.Get(("/v1/jobs/" + id + "/events").c_str(), [&](const char*, size_t) { return ++chunks < 2; });
  EXPECT_FALSE(r);  // we hung up
  auto c2 = server.client();
  EXPECT_EQ(wait_final(c2, id).at("state"), "done");
  auto v = c2.Get(("/v1/jobs/" + id + "/video").c_str());
  ASSERT_TRUE(v);
  EXPECT_EQ(v->status, 200);
}

TEST(ServerApi, CancelQueuedAndRunning) {
  ServerProcess server(temp_dir());
  auto c = server.client();
  const std::string slow = submit(c, slow_fields());
  const std::string queued = submit(c, tiny_fields(4));
  EXPECT_EQ(get_job(c, queued).at("queue_position"), 1);
  ASSERT_EQ(wait_denoising(c, slow).at("state"), "running");

  auto d1 = c.Delete(("/v1/jobs/" + queued).c_str());
  ASSERT_TRUE(d1);
  EXPECT_EQ(d1->status, 200);
  EXPECT_EQ(parse(d1).at("state"), "cancelled");

  const auto t0 = std::chrono::steady_clock::now();
  auto d2 = c.Delete(("/v1/jobs/" + slow).c_str());
  ASSERT_TRUE(d2);
  EXPECT_EQ(d2->status, 202);
  EXPECT_EQ(parse(d2).at("cancel_requested"), true);
  const json j = wait_final(c, slow, 60);
  std::printf("[measured] running job cancelled %.2f s after DELETE\n",
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  EXPECT_EQ(j.at("state"), "cancelled");
  EXPECT_LT(j.at("step").get<int>(), 200);
  EXPECT_EQ(get_job(c, queued).at("state"), "cancelled");

  auto video = c.Get(("/v1/jobs/" + slow + "/video").c_str());
  ASSERT_TRUE(video);
  EXPECT_EQ(video->status, 409);
  // A second DELETE deletes the cancelled job.
  auto again = c.Delete(("/v1/jobs/" + slow).c_str());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200);
  EXPECT_EQ(status(c.Get(("/v1/jobs/" + slow).c_str())), 404);
  // The server goes on after cancellations.
  EXPECT_EQ(wait_final(c, submit(c, tiny_fields(2))).at("state"), "done");
}

// A cancel while the VAE encodes a long video: the job object says cancel_requested at once (the
// page shows "cancelling"), and the job stops at the VAE's next chunk, long before the stage ends.
TEST(ServerApi, CancelDuringTheVaeEncodeIsShownAtOnceAndTakesEffectAtTheNextChunk) {
  ServerProcess server(temp_dir());
  auto c = server.client();
  // 257 frames at 320x176: 65 VAE chunks of about half a second each on two cores.
  const std::string id = submit(c, {{"frames", "257"}, {"max_area", "57600"}, {"steps", "1"}, {"guidance", "1"}});
  json j;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  do {
    j = get_job(c, id);
    if (j.at("stage") == "vae-encode" && j.at("step").get<int>() >= 2) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  } while (std::chrono::steady_clock::now() < deadline && !final_state(j.at("state")));
  ASSERT_EQ(j.at("stage"), "vae-encode") << j.dump();
  EXPECT_EQ(j.at("total"), 65);
  EXPECT_TRUE(j.at("stage_remaining_s").is_number()) << j.dump();  // time left in the stage, per chunk
  EXPECT_TRUE(j.at("remaining_s").is_null()) << j.dump();          // the job's is unknown before denoising
  EXPECT_EQ(j.at("cancel_requested"), false);

  const auto t0 = std::chrono::steady_clock::now();
  auto d = c.Delete(("/v1/jobs/" + id).c_str());
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 202);
  const json after = get_job(c, id);
  EXPECT_TRUE(after.at("state") == "cancelled" || after.at("cancel_requested") == true) << after.dump();
  const json done = wait_final(c, id, 60);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[measured] job cancelled %.2f s after DELETE during vae-encode (chunk %d of %d)\n", secs,
              done.at("step").get<int>(), done.at("total").get<int>());
  EXPECT_EQ(done.at("state"), "cancelled");
  EXPECT_EQ(done.at("stage"), "vae-encode");
  EXPECT_LT(done.at("step").get<int>(), 20);
  EXPECT_LT(secs, 5.0);
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

// GET /v1/estimate: the run time of given settings on this server, before submitting; after a job
// has run, from its measured speeds.
TEST(ServerApi, EstimateBeforeSubmitting) {
  ServerProcess server(temp_dir());
  auto c = server.client();
  auto r = c.Get("/v1/estimate?image=320x180&max_area=57600&frames=17&steps=4&guidance=5");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  json e = parse(r);
  EXPECT_EQ(e.at("width"), 320);
  EXPECT_EQ(e.at("height"), 176);
  EXPECT_GT(e.at("seconds").get<double>(), 0.0);
  EXPECT_EQ(e.at("measured"), false);
  EXPECT_TRUE(e.at("stages").contains("denoise"));
  // More work, more time.
  auto bigger = c.Get("/v1/estimate?image=320x180&max_area=57600&frames=81&steps=40&guidance=5");
  ASSERT_TRUE(bigger);
  EXPECT_GT(parse(bigger).at("seconds").get<double>(), 5 * e.at("seconds").get<double>());
  for (const char* bad : {"/v1/estimate?frames=80", "/v1/estimate?size=100x50", "/v1/estimate?steps=x",
                          "/v1/estimate?image=wide"}) {
    auto b = c.Get(bad);
    EXPECT_EQ(status(b), 400) << bad << ": " << (b ? b->body : "");
  }
  // After a job with these settings the estimate uses its measured speeds.
  const std::string id = submit(c, {{"max_area", "57600"}, {"frames", "17"}, {"steps", "4"}});
  const json done = wait_final(c, id);
  ASSERT_EQ(done.at("state"), "done");
  auto again = c.Get("/v1/estimate?image=320x180&max_area=57600&frames=17&steps=4&guidance=5");
  ASSERT_TRUE(again);
  e = parse(again);
  EXPECT_EQ(e.at("measured"), true);
  const double ran = done.at("finished").get<double>() - done.at("started").get<double>();
  std::printf("[measured] estimate %.2f s, the job ran %.2f s\n", e.at("seconds").get<double>(), ran);
  EXPECT_GT(e.at("seconds").get<double>(), 0.3 * ran);
  EXPECT_LT(e.at("seconds").get<double>(), 3.0 * ran);
  EXPECT_EQ(server.stop(SIGTERM), 0);
}

struct BadCase {
  std::string field, value, expect_field;
};

TEST(ServerApi, ValidationErrorsNameTheField) {
  const std::string data = temp_dir();
  ServerProcess server(data);
  auto c = server.client();
  const std::vector<BadCase> cases = {
      {"frames", "8", "frames"},         {"frames", "0", "frames"},          {"frames", "261", "frames"},
      {"frames", "nine", "frames"},      {"steps", "0", "steps"},            {"steps", "1000", "steps"},
      {"steps", "2.5", "steps"},         {"shift", "0", "shift"},            {"shift", "abc", "shift"},
      {"shift", "nan", "shift"},         {"guidance", "-1", "guidance"},     {"guidance", "inf", "guidance"},
      {"solver", "nope", "solver"},      {"seed", "12ab", "seed"},           {"seed", "-5", "seed"},
      {"fps", "0", "fps"},               {"fps", "1000", "fps"},             {"max_area", "10", "max_area"},
      {"max_area", "1e12", "max_area"},  {"size", "13x7", "size"},           {"size", "640", "size"},
      {"size", "8192x8192", "size"},     {"bogus", "1", "bogus"},            {"prompt", std::string(2001, 'a'), "prompt"},
      {"prompt", "\xff\xfe", "prompt"},  {"negative_prompt", std::string(2001, 'b'), "negative_prompt"},
  };
  for (const BadCase& bc : cases) {
    auto r = c.Post("/v1/jobs", job_form({{bc.field, bc.value}}));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << bc.field << "=" << bc.value.substr(0, 20) << ": " << r->body;
    const json j = parse(r);
    EXPECT_EQ(j.at("field"), bc.expect_field) << bc.field << "=" << bc.value.substr(0, 20) << ": " << r->body;
    EXPECT_FALSE(j.at("error").get<std::string>().empty());
  }

  auto post = [&](httplib::MultipartFormDataItems items) { return c.Post("/v1/jobs", items); };
  auto field_of = [](const httplib::Result& r) { return r ? parse(r).value("field", json()).dump() : "none"; };
  // Missing images, a non-image, both size and max_area, a repeated field.
  auto r1 = post({{"last", last_png(), "l.png", "image/png"}});
  EXPECT_EQ(status(r1), 400);
  EXPECT_EQ(field_of(r1), "\"first\"");
  auto r2 = post({{"first", first_png(), "f.png", "image/png"}});
  EXPECT_EQ(status(r2), 400);
  EXPECT_EQ(field_of(r2), "\"last\"");
  auto r3 = post({{"first", "not an image at all", "f.png", "image/png"}, {"last", last_png(), "l.png", "image/png"}});
  EXPECT_EQ(status(r3), 400);
  EXPECT_EQ(field_of(r3), "\"first\"");
  std::string truncated = last_png().substr(0, last_png().size() / 2);
  auto r4 = post({{"first", first_png(), "f.png", "image/png"}, {"last", truncated, "l.png", "image/png"}});
  EXPECT_EQ(status(r4), 400);
  EXPECT_EQ(field_of(r4), "\"last\"");
  auto r5 = c.Post("/v1/jobs", job_form({{"size", "64x64"}, {"max_area", "4096"}}));
  EXPECT_EQ(status(r5), 400);
  EXPECT_EQ(field_of(r5), "\"size\"");
  auto r6 = c.Post("/v1/jobs", job_form({{"steps", "4"}, {"steps", "5"}}));
  EXPECT_EQ(status(r6), 400);
  EXPECT_EQ(field_of(r6), "\"steps\"");
  // Too many pixels a side: an 8193x1 PNG.
  std::vector<uint8_t> row(8193 * 3, 128);
  const std::vector<uint8_t> wide = encode_png(row.data(), 8193, 1);
  auto r7 = post({{"first", std::string(wide.begin(), wide.end()), "w.png", "image/png"},
                  {"last", last_png(), "l.png", "image/png"}});
  EXPECT_EQ(status(r7), 400);
  EXPECT_EQ(field_of(r7), "\"first\"");
  // An image over 32 MiB (a valid PNG signature and junk) inside a body under 64 MiB.
  std::string big = first_png() + std::string((32u << 20) + 1, '\0');
  auto r8 = post({{"first", big, "f.png", "image/png"}, {"last", last_png(), "l.png", "image/png"}});
  ASSERT_TRUE(r8);
  EXPECT_EQ(r8->status, 400);
  EXPECT_EQ(field_of(r8), "\"first\"");
  // A body over 64 MiB.
  std::string huge((64u << 20) + 1024, 'x');
  auto r9 = post({{"first", huge, "f.png", "image/png"}, {"last", last_png(), "l.png", "image/png"}});
  ASSERT_TRUE(r9) << "no answer to a body over 64 MiB (README: 413): " << httplib::to_string(r9.error());
  EXPECT_EQ(r9->status, 413);
  EXPECT_EQ(field_of(r9), "null");
  // Not multipart; an unknown query parameter.
  auto r10 = c.Post("/v1/jobs", R"({"prompt":"x"})", "application/json");
  EXPECT_EQ(status(r10), 400);
  auto r11 = c.Post("/v1/jobs?path=/etc/passwd", job_form(tiny_fields()));
  EXPECT_EQ(status(r11), 400);
  EXPECT_EQ(field_of(r11), "\"path\"");

  // Job ids: malformed ones are refused before any lookup; unknown ones are 404.
  for (const char* bad : {"/v1/jobs/..%2F..%2Fetc", "/v1/jobs/ABCDEF", "/v1/jobs/0123456789abcdef0123456789abcdeg",
                          "/v1/jobs/%2e%2e/video", "/v1/jobs/0123456789abcdef0123456789abcde/frames/first"}) {
    // README: "any other id is refused (400) before any lookup".
    auto r = c.Get(bad);
    EXPECT_EQ(status(r), 400) << bad << ": " << (r ? r->body : httplib::to_string(r.error()));
    EXPECT_EQ(field_of(r), "\"id\"") << bad;
  }
  auto unknown = c.Get("/v1/jobs/0123456789abcdef0123456789abcdef");
  EXPECT_EQ(status(unknown), 404);
  auto unknown_del = c.Delete("/v1/jobs/0123456789abcdef0123456789abcdef");
  EXPECT_EQ(status(unknown_del), 404);
  auto no_route = c.Get("/v1/nothing");
  EXPECT_EQ(status(no_route), 404);
  EXPECT_NO_THROW(parse(no_route));

  // Nothing was queued by any of these; no job folder is left behind.
  auto list = c.Get("/v1/jobs");
  ASSERT_EQ(status(list), 200);
  EXPECT_EQ(parse(list).at("jobs").size(), 0u);
  EXPECT_TRUE(!std::filesystem::exists(data + "/jobs") || std::filesystem::is_empty(data + "/jobs"));
  EXPECT_EQ(server.stop(), 0);
}

TEST(ServerApi, ApiKey) {
  ServerProcess server(temp_dir(), {"--api-key", "s3cret"});
  auto c = server.client();
  EXPECT_EQ(status(c.Get("/v1/jobs")), 401);
  EXPECT_EQ(status(c.Get("/v1/jobs", {{"Authorization", "Bearer wrong"}})), 401);
  EXPECT_EQ(status(c.Get("/v1/jobs", {{"X-API-Key", "s3cre"}})), 401);
  EXPECT_EQ(status(c.Post("/v1/jobs", job_form(tiny_fields()))), 401);
  EXPECT_EQ(status(c.Get("/v1/jobs", {{"Authorization", "Bearer s3cret"}})), 200);
  EXPECT_EQ(status(c.Get("/v1/jobs", {{"X-API-Key", "s3cret"}})), 200);
  EXPECT_EQ(status(c.Get("/v1/model?api_key=s3cret")), 200);
  EXPECT_EQ(status(c.Get("/healthz")), 200);
  EXPECT_EQ(status(c.Get("/")), 200);
  const httplib::Headers key = {{"Authorization", "Bearer s3cret"}};
  const std::string id = submit(c, tiny_fields(2), key);
  EXPECT_EQ(wait_final(c, id, 300, key).at("state"), "done");
  EXPECT_EQ(status(c.Get(("/v1/jobs/" + id + "/video").c_str())), 401);
  EXPECT_EQ(status(c.Get(("/v1/jobs/" + id + "/video?api_key=s3cret").c_str())), 200);
}

TEST(ServerApi, FullQueueAnswers429) {
  ServerProcess server(temp_dir(), {"--max-queue", "1"});
  auto c = server.client();
  const std::string running = submit(c, slow_fields());
  ASSERT_EQ(wait_denoising(c, running).at("state"), "running");
  const std::string waiting = submit(c, tiny_fields(2));
  auto r = c.Post("/v1/jobs", job_form(tiny_fields(2)));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 429);
  EXPECT_FALSE(r->get_header_value("Retry-After").empty());
  EXPECT_EQ(status(c.Delete(("/v1/jobs/" + waiting).c_str())), 200);
  // Room again.
  const std::string next = submit(c, tiny_fields(2));
  EXPECT_EQ(status(c.Delete(("/v1/jobs/" + running).c_str())), 202);
  EXPECT_EQ(wait_final(c, next).at("state"), "done");
}

TEST(ServerApi, PageIsServed) {
  // A web folder of our own, with a file beside the three page files and one in the folder above:
  // neither may be reachable, however the path is spelt.
  namespace fs = std::filesystem;
  const std::string root = temp_dir(), web = root + "/web";
  fs::create_directories(web);
  for (const char* f : {"index.html", "app.js", "style.css"}) fs::copy_file(repo_root() + "/web/" + f, web + "/" + f);
  const std::string secret = "secret-beside-the-page-7f3a", above = "secret-above-the-page-9c1e";
  std::ofstream(web + "/notes.txt") << secret;
  std::ofstream(root + "/CMakeLists.txt") << above;
  ServerProcess server(temp_dir(), {"--web-dir", web});
  auto c = server.client();
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_NE(page->body.find("<title>inbetween</title>"), std::string::npos);
  auto js = c.Get("/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(js->body, read_binary(web + "/app.js"));  // served from --web-dir
  auto css = c.Get("/style.css");
  ASSERT_TRUE(css);
  EXPECT_EQ(css->get_header_value("Content-Type"), "text/css; charset=utf-8");
  // Only the three files: nothing else in the web folder or above it, sent byte for byte as a
  // hostile client would (no client-side normalisation of the path).
  for (const char* path : {"/notes.txt", "/web/notes.txt", "/../CMakeLists.txt", "/%2e%2e/CMakeLists.txt",
                           "/..%2fCMakeLists.txt", "/%2E%2E%2FCMakeLists.txt", "/./../CMakeLists.txt",
                           "//../CMakeLists.txt", "/app.js/../../CMakeLists.txt", "/web/app.js"}) {
    const std::string answer = raw_http(
        server.port(), std::string("GET ") + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    const int code = raw_status(answer);
    EXPECT_TRUE(code == 400 || code == 404) << path << ": " << answer.substr(0, 200);
    EXPECT_EQ(answer.find(secret), std::string::npos) << path;
    EXPECT_EQ(answer.find(above), std::string::npos) << path;
  }
}

// SIGTERM with the default --on-shutdown cancel: the running job is cancelled, the queued one is
// kept and runs after the restart, finished jobs and their videos survive.
TEST(ServerApi, RestartKeepsJobs) {
  const std::string data = temp_dir();
  std::string done, slow, queued;
  {
    ServerProcess server(data);
    auto c = server.client();
    done = submit(c, tiny_fields(2));
    ASSERT_EQ(wait_final(c, done).at("state"), "done");
    slow = submit(c, slow_fields());
    queued = submit(c, tiny_fields(2));
    ASSERT_EQ(wait_denoising(c, slow).at("state"), "running");
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(server.stop(SIGTERM), 0);
    std::printf("[measured] SIGTERM to exit with a running job: %.2f s\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  // An upload the server never acknowledged (no job.json) is cleaned away at start.
  const std::string orphan = data + "/jobs/00000000000000000000000000000000";
  std::filesystem::create_directories(orphan);
  ServerProcess server(data);
  auto c = server.client();
  EXPECT_FALSE(std::filesystem::exists(orphan));
  const json d = get_job(c, done);
  EXPECT_EQ(d.at("state"), "done");
  EXPECT_EQ(status(c.Get(("/v1/jobs/" + done + "/video").c_str())), 200);
  EXPECT_EQ(get_job(c, slow).at("state"), "cancelled");
  EXPECT_EQ(wait_final(c, queued).at("state"), "done");
}

TEST(ServerApi, ShutdownFinishCompletesTheRunningJob) {
  const std::string data = temp_dir();
  std::string id;
  {
    ServerProcess server(data, {"--on-shutdown", "finish"});
    auto c = server.client();
    id = submit(c, tiny_fields(150));  // ~0.5 s of denoising: long enough for the poll to see it
    ASSERT_EQ(wait_denoising(c, id).at("state"), "running");
    EXPECT_EQ(server.stop(SIGINT), 0);
  }
  ServerProcess server(data);
  auto c = server.client();
  EXPECT_EQ(get_job(c, id).at("state"), "done");
}

TEST(ServerApi, CrashMarksTheRunningJobFailed) {
  const std::string data = temp_dir();
  std::string id;
  {
    ServerProcess server(data);
    auto c = server.client();
    id = submit(c, slow_fields());
    ASSERT_EQ(wait_denoising(c, id).at("state"), "running");
    server.stop(SIGKILL);
  }
  ServerProcess server(data);
  auto c = server.client();
  const json j = get_job(c, id);
  EXPECT_EQ(j.at("state"), "failed");
  EXPECT_EQ(j.at("error"), "server restarted");
}

TEST(ServerApi, FailingJobKeepsTheServerUp) {
  const std::string data = temp_dir();
  ServerProcess server(data);
  auto c = server.client();
  const std::string id = submit(c, tiny_fields(2));
  ASSERT_EQ(wait_final(c, id).at("state"), "done");
  // Make a job fail mid-way: its uploaded image vanishes while it waits behind a slow one.
  const std::string blocker = submit(c, slow_fields());
  ASSERT_EQ(wait_denoising(c, blocker).at("state"), "running");
  const std::string victim = submit(c, tiny_fields(2));
  std::filesystem::remove(data + "/jobs/" + victim + "/first.png");
  EXPECT_EQ(status(c.Delete(("/v1/jobs/" + blocker).c_str())), 202);
  const json j = wait_final(c, victim);
  EXPECT_EQ(j.at("state"), "failed");
  EXPECT_FALSE(j.at("error").get<std::string>().empty());
  EXPECT_EQ(wait_final(c, submit(c, tiny_fields(2))).at("state"), "done");
}

// last_frame_fit is a job field like the others: checked through the library's parse function
// (400 naming the field and the accepted values, on jobs and stories), kept in the job's params and
// job.json, and carried to the generation: a last image of another shape gives another video with
// upstream than with cover, while cover twice gives the same bytes. precision is the server's
// --precision, reported in params and refused as a job field.
TEST(ServerApi, LastFrameFitReachesTheGenerationAndPrecisionIsReported) {
  const std::string data = temp_dir();
  ServerProcess server(data);
  auto c = server.client();
  const int64_t w = 96, h = 32;  // wider than the fixture's first frame, so the two fits differ
  std::vector<uint8_t> rgb(static_cast<size_t>(w * h * 3));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      uint8_t* px = &rgb[static_cast<size_t>((y * w + x) * 3)];
      px[0] = static_cast<uint8_t>(x * 2);
      px[1] = static_cast<uint8_t>(y * 8);
      px[2] = static_cast<uint8_t>((x / 8 + y / 8) % 2 * 255);
    }
  const std::vector<uint8_t> png = encode_png(rgb.data(), w, h);
  const std::string wide(png.begin(), png.end());
  auto form = [&](const std::vector<std::pair<std::string, std::string>>& extra) {
    httplib::MultipartFormDataItems items = {{"first", first_png(), "first.png", "image/png"},
                                             {"last", wide, "last.png", "image/png"}};
    for (const auto& [k, v] : tiny_fields(2)) items.push_back({k, v, "", ""});
    for (const auto& [k, v] : extra) items.push_back({k, v, "", ""});
    return items;
  };
  struct Run {
    std::string id, video;
    json job;
  };
  auto run = [&](const std::vector<std::pair<std::string, std::string>>& extra) {
    Run out;
    auto r = c.Post("/v1/jobs", form(extra));
    EXPECT_EQ(status(r), 202) << (r ? r->body : "");
    if (status(r) != 202) return out;
    out.id = parse(r).at("id");
    out.job = wait_final(c, out.id);
    EXPECT_EQ(out.job.at("state"), "done") << out.job.dump();
    auto v = c.Get(("/v1/jobs/" + out.id + "/video").c_str());
    if (v) out.video = v->body;
    return out;
  };
  const Run cover = run({});
  const Run cover2 = run({{"last_frame_fit", "cover"}});
  const Run upstream = run({{"last_frame_fit", "upstream"}});
  ASSERT_FALSE(cover.video.empty());
  EXPECT_EQ(cover.job.at("params").at("last_frame_fit"), "cover");
  EXPECT_EQ(upstream.job.at("params").at("last_frame_fit"), "upstream");
  EXPECT_EQ(upstream.job.at("params").at("precision"), "bf16");  // serve's default --precision
  EXPECT_EQ(upstream.job.at("params").at("attention"), "bf16");  // and --attention
  const json disk = json::parse(read_binary(data + "/jobs/" + upstream.id + "/job.json"));
  EXPECT_EQ(disk.at("params").at("last_frame_fit"), "upstream");
  EXPECT_EQ(cover.video, cover2.video) << "the same job twice should give the same video";
  EXPECT_NE(cover.video, upstream.video) << "last_frame_fit=upstream did not reach the generation";

  auto bad = c.Post("/v1/jobs", form({{"last_frame_fit", "stretch"}}));
  ASSERT_EQ(status(bad), 400);
  const json b = parse(bad);
  EXPECT_EQ(b.at("field"), "last_frame_fit");
  const std::string message = b.at("error");
  for (const char* part : {"last_frame_fit", "'stretch'", "cover or upstream"})
    EXPECT_NE(message.find(part), std::string::npos) << message;
  auto precision = c.Post("/v1/jobs", form({{"precision", "f32"}}));
  ASSERT_EQ(status(precision), 400);
  EXPECT_EQ(parse(precision).at("field"), "precision");
  httplib::MultipartFormDataItems story = {{"keyframes", first_png(), "a.png", "image/png"},
                                           {"keyframes", wide, "b.png", "image/png"},
                                           {"last_frame_fit", "Cover", "", ""}};
  auto bad_story = c.Post("/v1/stories", story);
  ASSERT_EQ(status(bad_story), 400);
  EXPECT_EQ(parse(bad_story).at("field"), "last_frame_fit");
}

}  // namespace
}  // namespace ib::test
