// POST /v1/stories against a real server process with the fixture model: a story of three
// keyframes runs as a job (segments in its progress, one MP4 of (N-1)(F-1)+1 frames), survives a
// restart, and bad stories are refused with 400 naming the field, leaving no job behind.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <set>

#include "common/command.h"
#include "io/image.h"
#include "server_process.h"

namespace ib::test {
namespace {

using nlohmann::json;

// The fixture's first image mirrored left to right, as PNG bytes: a third keyframe.
std::string mirrored_png() {
  const RgbImage img = read_image(fixture_path("first.png"));
  std::vector<uint8_t> out(img.rgb.size());
  for (int64_t y = 0; y < img.height; ++y)
    for (int64_t x = 0; x < img.width; ++x)
      for (int64_t c = 0; c < 3; ++c)
        out[static_cast<size_t>((y * img.width + x) * 3 + c)] =
            img.rgb[static_cast<size_t>((y * img.width + (img.width - 1 - x)) * 3 + c)];
  const std::vector<uint8_t> png = encode_png(out.data(), img.width, img.height);
  return std::string(png.begin(), png.end());
}

httplib::MultipartFormDataItems story_form(const std::vector<std::string>& images,
                                           const std::vector<std::pair<std::string, std::string>>& fields) {
  httplib::MultipartFormDataItems items;
  for (size_t i = 0; i < images.size(); ++i)
    items.push_back({"keyframes", images[i], "key" + std::to_string(i) + ".png", "image/png"});
  for (const auto& [k, v] : fields) items.push_back({k, v, "", ""});
  return items;
}

std::vector<std::pair<std::string, std::string>> story_fields() {
  return {{"prompts", "the bird takes off"}, {"prompts", "the bird turns around"}, {"frames", "9"},
          {"max_area", "4096"}, {"steps", "2"}, {"seed", "42"}};
}

TEST(StoryApi, ThreeKeyframesMakeOneVideo) {
  const std::string data = temp_dir();
  std::string id;
  {
    ServerProcess server(data);
    auto c = server.client();
    const json model = parse(c.Get("/v1/model"));
    EXPECT_EQ(model.at("limits").at("max_keyframes"), 16);
    auto r = c.Post("/v1/stories", story_form({first_png(), last_png(), mirrored_png()}, story_fields()));
    ASSERT_EQ(status(r), 202) << (r ? r->body : "");
    id = parse(r).at("id").get<std::string>();
    // The progress names the segment (the events carry the same object).
    std::set<int> segments_seen;
    json job;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(300);
    do {
      job = get_job(c, id);
      if (job.at("state") == "running" && job.at("segments") == 2) segments_seen.insert(job.at("segment").get<int>());
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (!final_state(job.at("state").get<std::string>()) && std::chrono::steady_clock::now() < deadline);
    ASSERT_EQ(job.at("state"), "done") << job.dump();
    EXPECT_FALSE(segments_seen.empty());
    EXPECT_EQ(job.at("result").at("frames"), 2 * (9 - 1) + 1);
    EXPECT_EQ(job.at("result").at("seed"), 42);
    EXPECT_EQ(job.at("params").at("story").at("keyframes"), 3);
    EXPECT_EQ(job.at("params").at("story").at("prompts"),
              json({"the bird takes off", "the bird turns around"}));
    const std::string mp4 = temp_dir() + "/story.mp4";
    {
      auto v = c.Get(("/v1/jobs/" + id + "/video").c_str());
      ASSERT_EQ(status(v), 200);
      std::ofstream(mp4, std::ios::binary) << v->body;
    }
    const json probe = json::parse(run_command("ffprobe -v error -select_streams v:0 -count_frames -show_entries "
                                               "stream=nb_read_frames -of json '" + mp4 + "'").output);
    EXPECT_EQ(probe.at("streams").at(0).at("nb_read_frames"), "17");
    // The first and last keyframes are the job's frames.
    EXPECT_EQ(c.Get(("/v1/jobs/" + id + "/frames/last").c_str())->body, mirrored_png());
    server.stop(SIGTERM);
  }
  // A restart keeps the story as it was.
  ServerProcess server(data);
  auto c = server.client();
  const json job = get_job(c, id);
  EXPECT_EQ(job.at("state"), "done");
  EXPECT_EQ(job.at("params").at("story").at("keyframes"), 3);
  EXPECT_EQ(status(c.Get(("/v1/jobs/" + id + "/video").c_str())), 200);
}

TEST(StoryApi, BadStoriesAreRefusedAndLeaveNothing) {
  const std::string data = temp_dir();
  ServerProcess server(data);
  auto c = server.client();
  const std::string a = first_png(), b = last_png();
  struct Case {
    std::vector<std::string> images;
    std::vector<std::pair<std::string, std::string>> fields;
    std::string field, expect;
  };
  const std::vector<std::string> seventeen(17, a);
  auto with = [](std::vector<std::pair<std::string, std::string>> f, std::pair<std::string, std::string> add) {
    f.push_back(std::move(add));
    return f;
  };
  const std::vector<std::pair<std::string, std::string>> one_prompt = {{"frames", "9"}, {"max_area", "4096"}, {"steps", "2"}};
  const Case cases[] = {
      {seventeen, one_prompt, "keyframes", "17 images sent, at most 16"},
      {{a}, one_prompt, "keyframes", "at least 2"},
      {{a, "not an image at all", b}, one_prompt, "keyframes", "keyframe 2"},
      {{a, b}, story_fields(), "prompts", "2 sent for 1 segments"},
      {{a, b, a}, with(story_fields(), {"loop", "yes"}), "loop", "not true or false"},
      {{a, b, a}, with(story_fields(), {"loop", "true"}), "prompts", "2 sent for 3 segments"},
      {{a, b}, with(one_prompt, {"first", "x"}), "first", "unknown field"},
      {{a, b}, {{"frames", "1"}}, "frames", "at least 5"},
  };
  for (const Case& k : cases) {
    auto r = c.Post("/v1/stories", story_form(k.images, k.fields));
    ASSERT_EQ(status(r), 400) << k.expect << ": " << (r ? r->body : "");
    const json j = parse(r);
    EXPECT_EQ(j.at("field"), k.field) << r->body;
    EXPECT_NE(j.at("error").get<std::string>().find(k.expect), std::string::npos) << r->body;
  }
  EXPECT_TRUE(parse(c.Get("/v1/jobs")).at("jobs").empty());
  size_t folders = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(data + "/jobs")) ++folders;
  EXPECT_EQ(folders, 0u) << "a refused story left a job folder";
}

}  // namespace
}  // namespace ib::test
