// Video output: the byte mapping of spec section 10, MP4 checked with ffprobe/ffmpeg (test
// dependencies that scripts/setup.sh installs: without them the test fails, it does not skip), PNG
// frames read back with libpng, dispatch and errors.
#include <gtest/gtest.h>
#include <png.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/fixture.h"
#include "io/image.h"
#include "io/safetensors.h"
#include "io/video_writer.h"

namespace ib {
namespace {

namespace fs = std::filesystem;

// A colour gradient that moves with the frame index, [3, F, H, W] in [-1, 1].
Tensor gradient_video(int64_t F, int64_t H, int64_t W) {
  Tensor v = Tensor::empty({3, F, H, W}, DType::F32);
  float* p = v.data<float>();
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t f = 0; f < F; ++f)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x) {
          const double t = c == 0 ? 0.1 + 0.8 * static_cast<double>(x) / static_cast<double>(W - 1)
                           : c == 1 ? 0.1 + 0.8 * static_cast<double>(y) / static_cast<double>(H - 1)
                                    : 0.5 + 0.4 * std::sin(0.1 * static_cast<double>(x + y + 4 * f));
          p[((c * F + f) * H + y) * W + x] = static_cast<float>(2 * t - 1);
        }
  return v;
}

std::string run_capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    *status = -1;
    return out;
  }
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  *status = ::pclose(p);
  return out;
}

bool have_tool(const char* name) {
  int status = 0;
  run_capture(std::string("command -v ") + name + " >/dev/null 2>&1", &status);
  return status == 0;
}

TEST(VideoToRgb8, MapsValuesAsTheSpecSays) {
  // Channel-major [3, 1, 1, 8]: every value goes to R, G, B of the same pixel in turn.
  const std::vector<float> vals = {-1.0f, 1.0f, 0.0f, 0.999f, -7.0f, 3.0f, 0.5f, -0.999f};
  std::vector<float> data;
  for (int c = 0; c < 3; ++c) data.insert(data.end(), vals.begin(), vals.end());
  const Tensor v = Tensor::from_vector(data, {3, 1, 1, 8});
  const std::vector<uint8_t> expected_one = {0, 255, 127, 254, 0, 255, 191, 0};
  const auto rgb = video_to_rgb8(v);
  ASSERT_EQ(rgb.size(), 24u);
  for (size_t i = 0; i < 8; ++i)
    for (size_t c = 0; c < 3; ++c) EXPECT_EQ(rgb[i * 3 + c], expected_one[i]) << "value " << vals[i];
  EXPECT_EQ(static_cast<int>(0.9995f * 255.0f), 254);
  // bf16 input is converted to f32 first.
  EXPECT_EQ(video_to_rgb8(v.to(DType::BF16))[9], 255);  // bf16(0.999) rounds to 1.0
  // NaN maps to 0.
  const Tensor nan = Tensor::full({3, 1, 1, 1}, std::nanf(""));
  EXPECT_EQ(video_to_rgb8(nan), std::vector<uint8_t>(3, 0));
}

TEST(VideoToRgb8, LaysOutFramesRowsAndChannels) {
  const Tensor v = gradient_video(3, 4, 6);
  const auto rgb = video_to_rgb8(v);
  ASSERT_EQ(rgb.size(), 3u * 4 * 6 * 3);
  const float* p = v.data<float>();
  for (int64_t f = 0; f < 3; ++f)
    for (int64_t y = 0; y < 4; ++y)
      for (int64_t x = 0; x < 6; ++x)
        for (int64_t c = 0; c < 3; ++c) {
          const float u = (p[((c * 3 + f) * 4 + y) * 6 + x] + 1.0f) / 2.0f;
          EXPECT_EQ(rgb[static_cast<size_t>(((f * 4 + y) * 6 + x) * 3 + c)], static_cast<uint8_t>(u * 255.0f));
        }
  EXPECT_THROW(video_to_rgb8(Tensor::zeros({4, 1, 2, 2})), Error);
  EXPECT_THROW(video_to_rgb8(Tensor::zeros({3, 2, 2})), Error);
}

TEST(WriteMp4, ProbesAsH264Yuv420pAndDecodesClose) {
  ASSERT_TRUE(have_tool("ffprobe") && have_tool("ffmpeg"))
      << "ffprobe/ffmpeg are needed to check the MP4 (Debian package ffmpeg; scripts/setup.sh installs it)";
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/clip.mp4";
  const Tensor v = gradient_video(9, 48, 64);
  write_mp4(path, v, 16);
  ASSERT_TRUE(fs::exists(path));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1);  // no temp file left
  EXPECT_EQ(fs::status(path).permissions() & fs::perms::others_read, fs::perms::others_read);

  int status = 0;
  const std::string probe = run_capture(
      "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
      "stream=codec_name,pix_fmt,width,height,nb_read_frames,r_frame_rate -of json '" + path + "'", &status);
  ASSERT_EQ(status, 0) << probe;
  const auto s = nlohmann::json::parse(probe)["streams"][0];
  EXPECT_EQ(s["codec_name"], "h264");
  EXPECT_EQ(s["pix_fmt"], "yuv420p");
  EXPECT_EQ(s["width"], 64);
  EXPECT_EQ(s["height"], 48);
  EXPECT_EQ(s["nb_read_frames"], "9");
  EXPECT_EQ(s["r_frame_rate"], "16/1");
  const std::string streams = run_capture("ffprobe -v error -show_entries stream=codec_type -of csv=p=0 '" + path + "'",
                                          &status);
  EXPECT_EQ(streams, "video\n");  // no audio

  // faststart: the moov box comes before mdat.
  const std::string head = run_capture("head -c 4096 '" + path + "' | od -An -c | tr -d ' \\n'", &status);
  const auto moov = head.find("moov"), mdat = head.find("mdat");
  EXPECT_NE(moov, std::string::npos);
  EXPECT_TRUE(mdat == std::string::npos || moov < mdat);

  const std::string decoded =
      run_capture("ffmpeg -v error -i '" + path + "' -frames:v 1 -f rawvideo -pix_fmt rgb24 -", &status);
  ASSERT_EQ(status, 0);
  ASSERT_EQ(decoded.size(), 64u * 48 * 3);
  const auto rgb = video_to_rgb8(v);
  double sum = 0;
  for (size_t i = 0; i < decoded.size(); ++i)
    sum += std::abs(static_cast<double>(static_cast<unsigned char>(decoded[i])) - rgb[i]);
  const double mad = sum / static_cast<double>(decoded.size());
  std::printf("first frame mean abs difference: %.3f levels\n", mad);
  EXPECT_LT(mad, 3.0);

  // The same frames through the ffmpeg command line as imageio drives it decode identically.
  const std::string raw = dir + "/in.rgb", ref = dir + "/ref.mp4";
  {
    std::FILE* f = std::fopen(raw.c_str(), "wb");
    ASSERT_NE(f, nullptr);
    ASSERT_EQ(std::fwrite(rgb.data(), 1, rgb.size(), f), rgb.size());
    std::fclose(f);
  }
  run_capture("ffmpeg -v error -y -f rawvideo -vcodec rawvideo -s 64x48 -pix_fmt rgb24 -r 16.00 -i '" + raw +
                  "' -an -vcodec libx264 -pix_fmt yuv420p -crf 10 '" + ref + "'",
              &status);
  ASSERT_EQ(status, 0);
  const std::string ours = run_capture("ffmpeg -v error -i '" + path + "' -f rawvideo -pix_fmt rgb24 -", &status);
  const std::string theirs = run_capture("ffmpeg -v error -i '" + ref + "' -f rawvideo -pix_fmt rgb24 -", &status);
  ASSERT_EQ(ours.size(), rgb.size());
  EXPECT_TRUE(ours == theirs) << "decoded frames differ from the ffmpeg command line's";
}

TEST(WriteMp4, ErrorsLeaveNothingBehind) {
  const std::string dir = test::temp_dir();
  try {
    write_mp4(dir + "/odd.mp4", gradient_video(2, 47, 64), 16);
    ADD_FAILURE() << "odd height accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("even"), std::string::npos) << e.what();
  }
  EXPECT_THROW(write_mp4(dir + "/odd.mp4", gradient_video(2, 48, 63), 16), Error);
  EXPECT_THROW(write_mp4(dir + "/fps.mp4", gradient_video(2, 48, 64), 0), Error);
  EXPECT_THROW(write_mp4(dir + "/no/such/folder/a.mp4", gradient_video(2, 48, 64), 16), Error);
  EXPECT_THROW(write_mp4(dir + "/bad.mp4", Tensor::zeros({3, 0, 48, 64}), 16), Error);
  EXPECT_TRUE(fs::is_empty(dir));
}

// Frames [f0, f1) of a [3, F, H, W] video.
Tensor frames_of(const Tensor& v, int64_t f0, int64_t f1) {
  const int64_t F = v.size(1), plane = v.size(2) * v.size(3);
  Tensor out = Tensor::empty({3, f1 - f0, v.size(2), v.size(3)}, DType::F32);
  for (int64_t c = 0; c < 3; ++c)
    std::memcpy(out.data<float>() + c * (f1 - f0) * plane, v.data<float>() + (c * F + f0) * plane,
                static_cast<size_t>((f1 - f0) * plane) * sizeof(float));
  return out;
}

std::string decoded_rgb(const std::string& path) {
  int status = 0;
  std::string out = run_capture("ffmpeg -v error -i '" + path + "' -f rawvideo -pix_fmt rgb24 -", &status);
  EXPECT_EQ(status, 0) << path;
  return out;
}

// Frames added a few at a time (as the decode hands them out) make the same MP4 as the whole video
// at once, and the file appears only at finish().
TEST(Mp4Stream, FramesAddedInPiecesEqualTheWholeVideo) {
  ASSERT_TRUE(have_tool("ffmpeg")) << "ffmpeg is needed to check the MP4 (scripts/setup.sh installs it)";
  const std::string dir = test::temp_dir();
  const Tensor v = gradient_video(9, 48, 64);
  write_mp4(dir + "/whole.mp4", v, 16);
  const std::string path = dir + "/pieces.mp4";
  {
    Mp4Stream s(path, 16);
    s.add(frames_of(v, 0, 1));
    s.add(frames_of(v, 1, 5));
    s.add(frames_of(v, 5, 9));
    EXPECT_EQ(s.frames(), 9);
    EXPECT_FALSE(fs::exists(path)) << "the MP4 appeared before finish()";
    s.finish();
  }
  ASSERT_TRUE(fs::exists(path));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 2);  // no temp file left
  const std::string whole = decoded_rgb(dir + "/whole.mp4"), pieces = decoded_rgb(path);
  ASSERT_EQ(pieces.size(), 9u * 48 * 64 * 3);
  EXPECT_TRUE(pieces == whole) << "the MP4 made in pieces decodes differently from the whole video's";
}

TEST(Mp4Stream, AnAbandonedOrFailedStreamLeavesNothingBehind) {
  const std::string dir = test::temp_dir();
  {
    Mp4Stream s(dir + "/abandoned.mp4", 16);
    s.add(gradient_video(3, 48, 64));
  }  // destroyed before finish(): an error or a cancelled job
  {
    Mp4Stream s(dir + "/resized.mp4", 16);
    s.add(gradient_video(2, 48, 64));
    try {
      s.add(gradient_video(2, 48, 32));
      ADD_FAILURE() << "frames of another size accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("32x48 after frames of 64x48"), std::string::npos) << e.what();
    }
  }
  try {
    Mp4Stream s(dir + "/empty.mp4", 16);
    s.finish();
    ADD_FAILURE() << "an MP4 without frames finished";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no frames"), std::string::npos) << e.what();
  }
  EXPECT_THROW(Mp4Stream(dir + "/fps.mp4", 0), Error);
  EXPECT_TRUE(fs::is_empty(dir));
}

struct PngInfo {
  png_uint_32 width = 0, height = 0;
  std::vector<uint8_t> rgb;
};

bool read_png(const std::string& path, PngInfo* out) {
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&img, path.c_str())) return false;
  img.format = PNG_FORMAT_RGB;
  out->width = img.width;
  out->height = img.height;
  out->rgb.resize(PNG_IMAGE_SIZE(img));
  return png_image_finish_read(&img, nullptr, out->rgb.data(), 0, nullptr) != 0;
}

TEST(WritePngFrames, OneLosslessPngPerFrame) {
  const std::string dir = test::temp_dir() + "/frames/nested";
  const Tensor v = gradient_video(5, 12, 10);
  write_png_frames(dir, v);
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  EXPECT_EQ(names, (std::vector<std::string>{"frame_00000.png", "frame_00001.png", "frame_00002.png",
                                             "frame_00003.png", "frame_00004.png"}));
  const auto rgb = video_to_rgb8(v);
  const size_t frame_bytes = 12 * 10 * 3;
  for (size_t f = 0; f < 5; ++f) {
    PngInfo info;
    ASSERT_TRUE(read_png(dir + "/" + names[f], &info)) << names[f];
    EXPECT_EQ(info.width, 10u);
    EXPECT_EQ(info.height, 12u);
    EXPECT_TRUE(std::equal(info.rgb.begin(), info.rgb.end(), rgb.begin() + static_cast<std::ptrdiff_t>(f * frame_bytes)));
  }
  // The frames are what the one PNG encoder of the library (io/image.h) makes of them.
  for (size_t f = 0; f < 5; ++f) {
    std::FILE* in = std::fopen((dir + "/" + names[f]).c_str(), "rb");
    ASSERT_NE(in, nullptr);
    std::vector<uint8_t> bytes;
    for (int c; (c = std::fgetc(in)) != EOF;) bytes.push_back(static_cast<uint8_t>(c));
    std::fclose(in);
    EXPECT_EQ(bytes, encode_png(rgb.data() + f * frame_bytes, 10, 12)) << names[f];
  }
  // A folder that already holds something is refused (frames of two videos never mix).
  EXPECT_THROW(write_png_frames(dir, v), Error);
  const std::string file = test::temp_dir() + "/plain";
  { std::FILE* f = std::fopen(file.c_str(), "w"); std::fclose(f); }
  EXPECT_THROW(write_png_frames(file, v), Error);
}

TEST(WriteVideo, DispatchesOnThePath) {
  const std::string dir = test::temp_dir();
  const Tensor v = gradient_video(2, 16, 16);

  write_video(dir + "/a.MP4", v, 16);
  EXPECT_TRUE(fs::is_regular_file(dir + "/a.MP4"));

  write_video(dir + "/raw.safetensors", v, 16);
  const auto st = SafetensorsFile::open(dir + "/raw.safetensors");
  EXPECT_EQ(st->names(), std::vector<std::string>{"video"});
  EXPECT_TENSOR_CLOSE_ABS(st->get("video"), v, 0.0);
  write_video(dir + "/raw16.safetensors", v.to(DType::BF16), 16);
  EXPECT_EQ(SafetensorsFile::open(dir + "/raw16.safetensors")->info("video").dtype, DType::F32);

  write_video(dir + "/frames", v, 16);  // no extension
  EXPECT_TRUE(fs::is_regular_file(dir + "/frames/frame_00001.png"));
  write_video(dir + "/slash.d/", v, 16);  // trailing '/'
  EXPECT_TRUE(fs::is_regular_file(dir + "/slash.d/frame_00000.png"));
  fs::create_directory(dir + "/existing.folder");
  write_video(dir + "/existing.folder", v, 16);  // an existing (empty) folder
  EXPECT_TRUE(fs::is_regular_file(dir + "/existing.folder/frame_00001.png"));

  try {
    write_video(dir + "/clip.avi", v, 16);
    ADD_FAILURE() << ".avi accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(".mp4"), std::string::npos) << m;
    EXPECT_NE(m.find(".safetensors"), std::string::npos) << m;
    EXPECT_NE(m.find("folder"), std::string::npos) << m;
  }
  EXPECT_FALSE(fs::exists(dir + "/clip.avi"));
}

}  // namespace
}  // namespace ib
