// Load test of `inbetween serve`: several clients submit 50 tiny jobs at once against a small
// --max-queue. Refusals (429) count as not accepted; every accepted job must end done (or
// cancelled, where a client cancelled it), with its video, and nothing may be lost, also across a
// restart of the server.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "server_process.h"

namespace ib::test {
namespace {

using nlohmann::json;

TEST(ServerLoad, FiftyJobsFromSeveralClients) {
  constexpr int kClients = 5, kPerClient = 10;
  const std::string data = temp_dir();
  ServerProcess server(data, {"--max-queue", "4", "--http-threads", "16"});

  std::mutex mu;
  std::vector<std::string> accepted;
  std::set<std::string> cancel_requested;
  std::atomic<int> rejected{0}, other{0};
  const auto t0 = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int k = 0; k < kClients; ++k) {
    clients.emplace_back([&, k] {
      auto c = server.client();
      for (int i = 0; i < kPerClient; ++i) {
        auto r = c.Post("/v1/jobs", job_form({{"prompt", "load " + std::to_string(k) + "/" + std::to_string(i)},
                                              {"frames", "5"},
                                              {"max_area", "4096"},
                                              {"steps", "1"},
                                              {"seed", std::to_string(k * 100 + i)}}));
        if (r && r->status == 202) {
          const std::string id = json::parse(r->body).at("id");
          std::lock_guard lock(mu);
          accepted.push_back(id);
          // About a quarter of the accepted jobs are cancelled again (queued or already running).
          if ((i + k) % 4 == 0) {
            auto d = c.Delete(("/v1/jobs/" + id).c_str());
            if (d && d->status == 200 && json::parse(d->body).value("deleted", false)) {
              accepted.pop_back();  // it had finished already: DELETE deleted it
            } else if (d && (d->status == 200 || d->status == 202)) {
              cancel_requested.insert(id);
            }
          }
        } else if (r && r->status == 429) {
          ++rejected;
          std::this_thread::sleep_for(std::chrono::milliseconds(800));
        } else {
          ++other;
          ADD_FAILURE() << "unexpected answer: " << (r ? std::to_string(r->status) + " " + r->body : "none");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100 * (k + 1)));
      }
    });
  }
  for (auto& t : clients) t.join();
  const int n_accepted = static_cast<int>(accepted.size());
  EXPECT_EQ(other.load(), 0) << "answers other than 202 and 429";
  EXPECT_EQ(std::set<std::string>(accepted.begin(), accepted.end()).size(), accepted.size())
      << "the server handed out one job id twice";
  EXPECT_GT(n_accepted, 0);
  EXPECT_GT(rejected.load(), 0) << "the queue never filled up; the test exercised no 429";

  auto c = server.client();
  int done = 0, cancelled = 0;
  for (const std::string& id : accepted) {
    const json j = wait_final(c, id, 600);
    const std::string s = j.at("state");
    if (s == "done") {
      ++done;
      auto v = c.Get(("/v1/jobs/" + id + "/video").c_str(), {{"Range", "bytes=0-7"}});
      ASSERT_TRUE(v);
      EXPECT_EQ(v->status, 206);
      EXPECT_EQ(v->body.substr(4, 4), "ftyp") << id;
    } else if (s == "cancelled") {
      ++cancelled;
      EXPECT_TRUE(cancel_requested.count(id)) << id << " was cancelled without being asked";
    } else {
      ADD_FAILURE() << id << " ended " << j.dump();
    }
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("[measured] load: %d submitted, %d accepted, %d rejected (429), %d done, %d cancelled, %.1f s "
              "(%.2f s per finished job)\n",
              kClients * kPerClient, n_accepted, rejected.load(), done, cancelled, secs, done ? secs / done : 0.0);
  EXPECT_EQ(done + cancelled, n_accepted);
  // The server's own counts agree with what the clients saw.
  auto model = c.Get("/v1/model");
  ASSERT_EQ(status(model), 200);
  const json q = json::parse(model->body).at("queue");
  EXPECT_EQ(q.at("done").get<int>(), done) << q.dump();
  EXPECT_EQ(q.at("cancelled").get<int>(), cancelled) << q.dump();
  EXPECT_EQ(q.at("failed").get<int>(), 0) << q.dump();
  EXPECT_EQ(q.at("queued").get<int>() + q.at("running").get<int>(), 0) << q.dump();

  // The list knows exactly the accepted jobs (refused ones left nothing behind).
  auto list = c.Get("/v1/jobs?limit=1000");
  ASSERT_EQ(status(list), 200);
  std::set<std::string> listed;
  const json jobs = json::parse(list->body);
  for (const json& j : jobs.at("jobs")) listed.insert(j.at("id").get<std::string>());
  EXPECT_EQ(listed, std::set<std::string>(accepted.begin(), accepted.end()));
  size_t folders = 0;
  for (const auto& e : std::filesystem::directory_iterator(data + "/jobs")) folders += e.is_directory();
  EXPECT_EQ(folders, accepted.size());

  // And so does a restarted server.
  EXPECT_EQ(server.stop(SIGTERM), 0);
  ServerProcess again(data);
  auto c2 = again.client();
  auto list2 = c2.Get("/v1/jobs?limit=1000");
  ASSERT_EQ(status(list2), 200);
  int done2 = 0;
  const json jobs2 = json::parse(list2->body);
  for (const json& j : jobs2.at("jobs")) done2 += j.at("state") == "done";
  EXPECT_EQ(done2, done);
}

}  // namespace
}  // namespace ib::test
