// include/inbetween/video.h: a GeneratedVideo written through the public API lands as the library's
// writers write its tensor (safetensors, PNG frames, MP4), and a video whose data does not match
// its sizes is refused with the path named.
#include <gtest/gtest.h>

#include <filesystem>

#include "common/fixture.h"
#include "inbetween/error.h"
#include "inbetween/video.h"
#include "io/safetensors.h"

namespace ib {
namespace {

namespace fs = std::filesystem;

GeneratedVideo small_video() {
  GeneratedVideo v;
  v.frames = 2;
  v.height = 16;
  v.width = 16;
  v.data.resize(3 * 2 * 16 * 16);
  for (size_t i = 0; i < v.data.size(); ++i) v.data[i] = static_cast<float>(i % 255) / 127.0f - 1.0f;
  return v;
}

TEST(VideoOutput, WritesAGeneratedVideoByItsPath) {
  const std::string dir = test::temp_dir();
  const GeneratedVideo v = small_video();
  write_video(dir + "/raw.safetensors", v, 16);
  const auto st = SafetensorsFile::open(dir + "/raw.safetensors");
  const Tensor t = st->get("video");
  EXPECT_EQ(t.shape(), (Shape{3, 2, 16, 16}));
  EXPECT_TRUE(std::equal(v.data.begin(), v.data.end(), t.data<float>()));
  write_video(dir + "/frames/", v, 16);
  EXPECT_TRUE(fs::is_regular_file(dir + "/frames/frame_00001.png"));
  write_video(dir + "/v.mp4", v, 16);
  EXPECT_GT(fs::file_size(dir + "/v.mp4"), 100u);
  check_video_output(dir + "/other.mp4");
  EXPECT_THROW(check_video_output(dir + "/v.gif"), Error);
}

TEST(VideoOutput, RefusesDataThatDoesNotMatchTheSizes) {
  GeneratedVideo v = small_video();
  v.data.pop_back();
  try {
    write_video(test::temp_dir() + "/bad.safetensors", v, 16);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("bad.safetensors"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ib
