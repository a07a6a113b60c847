// core/cache_file.h: where caches live (the environment's order, and off), and files replaced whole.
#include "core/cache_file.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "common/fixture.h"

namespace ib {
namespace {

namespace fs = std::filesystem;

// Sets (or unsets, with nullopt) an environment variable for the scope.
class EnvVar {
 public:
  EnvVar(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value->c_str(), 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~EnvVar() {
    if (old_) {
      ::setenv(name_, old_->c_str(), 1);
    } else {
      ::unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

TEST(CacheFile, TheFolderFollowsTheEnvironment) {
  {
    EnvVar own("INBETWEEN_CACHE_DIR", "/tmp/own"), xdg("XDG_CACHE_HOME", "/tmp/xdg"), home("HOME", "/tmp/home");
    EXPECT_EQ(cache_dir(), "/tmp/own");
  }
  {
    EnvVar own("INBETWEEN_CACHE_DIR", ""), xdg("XDG_CACHE_HOME", "/tmp/xdg");
    EXPECT_EQ(cache_dir(), "") << "an empty INBETWEEN_CACHE_DIR turns caching off";
  }
  {
    EnvVar own("INBETWEEN_CACHE_DIR", std::nullopt), xdg("XDG_CACHE_HOME", "/tmp/xdg"), home("HOME", "/tmp/home");
    EXPECT_EQ(cache_dir(), "/tmp/xdg/inbetween");
  }
  {
    EnvVar own("INBETWEEN_CACHE_DIR", std::nullopt), xdg("XDG_CACHE_HOME", ""), home("HOME", "/tmp/home");
    EXPECT_EQ(cache_dir(), "/tmp/home/.cache/inbetween");
  }
  {
    EnvVar own("INBETWEEN_CACHE_DIR", std::nullopt), xdg("XDG_CACHE_HOME", std::nullopt), home("HOME", std::nullopt);
    EXPECT_EQ(cache_dir(), "");
  }
}

TEST(CacheFile, LinesAreReplacedWholeAndReadBack) {
  const std::string dir = test::temp_dir() + "/a/b";  // made by the write
  const std::string path = dir + "/plans.txt";
  EXPECT_TRUE(read_cache_lines(path).empty());
  ASSERT_TRUE(write_cache_lines(path, {"header", "1 2 3", ""}));
  EXPECT_EQ(read_cache_lines(path), (std::vector<std::string>{"header", "1 2 3", ""}));
  ASSERT_TRUE(write_cache_lines(path, {"other"}));
  EXPECT_EQ(read_cache_lines(path), (std::vector<std::string>{"other"}));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1) << "a temporary file was left";
  // A path whose folder is a file: false, and the file stays as it was.
  EXPECT_FALSE(write_cache_lines(path + "/inside.txt", {"x"}));
  EXPECT_EQ(read_cache_lines(path), (std::vector<std::string>{"other"}));
}

}  // namespace
}  // namespace ib
