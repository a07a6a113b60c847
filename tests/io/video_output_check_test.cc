// check_video_output: every output write_video would refuse or fail on is refused before anything
// is computed, with the path in the message, and the check leaves nothing behind.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/video_writer.h"

namespace ib {
namespace {

namespace fs = std::filesystem;

TEST(VideoOutputCheck, AcceptsWhatWriteVideoWrites) {
  const std::string dir = test::temp_dir();
  EXPECT_NO_THROW(check_video_output(dir + "/a.safetensors"));
  EXPECT_NO_THROW(check_video_output(dir + "/frames/"));         // created later, with its parents
  EXPECT_NO_THROW(check_video_output(dir + "/new/deeper/out"));  // no extension: a folder
  fs::create_directory(dir + "/empty");
  EXPECT_NO_THROW(check_video_output(dir + "/empty"));
  std::ofstream(dir + "/old.safetensors") << "x";  // an existing file is replaced
  EXPECT_NO_THROW(check_video_output(dir + "/old.safetensors"));
  // Nothing was created: no probe file, no folder.
  std::vector<std::string> left;
  for (const auto& e : fs::recursive_directory_iterator(dir)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"empty", "old.safetensors"}));
}

TEST(VideoOutputCheck, RefusesWithThePath) {
  const std::string dir = test::temp_dir();
  test::expect_error([&] { check_video_output(dir + "/absent/a.mp4"); }, {dir + "/absent", "does not exist"});
  test::expect_error([&] { check_video_output(dir + "/a.gif"); }, {"a.gif", ".mp4", ".safetensors", "folder"});
  fs::create_directory(dir + "/full");
  std::ofstream(dir + "/full/frame_00000.png") << "x";
  test::expect_error([&] { check_video_output(dir + "/full/"); }, {"full", "not empty"});
  std::ofstream(dir + "/file") << "x";
  test::expect_error([&] { check_video_output(dir + "/file/"); }, {"file", "not a folder"});
  // A folder where nothing can be created (true even for root).
  test::expect_error([&] { check_video_output("/proc/inbetween.safetensors"); },
                     {"/proc/inbetween.safetensors", "/proc"});
  test::expect_error([&] { check_video_output(""); }, {"empty"});
}

}  // namespace
}  // namespace ib
