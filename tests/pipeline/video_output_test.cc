// include/inbetween/video.h: a GeneratedVideo written through the public API lands as the library's
// writers write its tensor (safetensors, PNG frames, MP4), and a video whose data does not match
// its sizes is refused with the path named.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <iterator>

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

std::string file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// The frames a generation hands out as it decodes, fed to the writer: the MP4 is the one
// write_video makes of the whole video, byte for byte, and appears only at finish().
TEST(VideoFileWriter, AnMp4WrittenDuringTheDecodeIsTheWholeVideosMp4) {
  const std::string dir = test::temp_dir();
  GeneratedVideo v = small_video();
  write_video(dir + "/whole.mp4", v, 16);
  const int64_t plane = v.height * v.width;
  {
    VideoFileWriter w(dir + "/early.mp4", 16);
    const FramesFn frames = w.frames();
    ASSERT_TRUE(static_cast<bool>(frames));
    for (int64_t f = 0; f < v.frames; ++f) {  // one frame a call, [3, 1, H, W] each
      std::vector<float> chunk(static_cast<size_t>(3 * plane));
      for (int64_t c = 0; c < 3; ++c)
        std::copy_n(v.data.begin() + (c * v.frames + f) * plane, plane, chunk.begin() + c * plane);
      frames(DecodedFrames{chunk.data(), f, 1, v.height, v.width});
    }
    EXPECT_FALSE(fs::exists(dir + "/early.mp4"));
    w.finish(v);
  }
  EXPECT_EQ(file_bytes(dir + "/early.mp4"), file_bytes(dir + "/whole.mp4"));

  // Nothing handed out early (a front end that did not pass frames()): finish writes it all.
  {
    VideoFileWriter w(dir + "/late.mp4", 16);
    w.finish(v);
  }
  EXPECT_EQ(file_bytes(dir + "/late.mp4"), file_bytes(dir + "/whole.mp4"));
  // Other forms are written at finish() only.
  {
    VideoFileWriter w(dir + "/raw.safetensors", 16);
    EXPECT_FALSE(static_cast<bool>(w.frames()));
    w.finish(v);
  }
  EXPECT_TRUE(fs::is_regular_file(dir + "/raw.safetensors"));
}

TEST(VideoFileWriter, FramesOutOfOrderOrAnAbandonedWriterLeaveNothing) {
  const std::string dir = test::temp_dir();
  const GeneratedVideo v = small_video();
  {
    VideoFileWriter w(dir + "/v.mp4", 16);
    const FramesFn frames = w.frames();
    try {
      frames(DecodedFrames{v.data.data(), 1, 1, v.height, v.width});
      ADD_FAILURE() << "frame 1 accepted first";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("frame 0 was due"), std::string::npos) << e.what();
    }
  }
  {
    VideoFileWriter w(dir + "/v.mp4", 16);
    std::vector<float> frame(static_cast<size_t>(3 * v.height * v.width), 0.0f);
    w.frames()(DecodedFrames{frame.data(), 0, 1, v.height, v.width});
  }  // destroyed before finish(): a failed or cancelled generation
  EXPECT_TRUE(fs::is_empty(dir));
}

}  // namespace
}  // namespace ib
