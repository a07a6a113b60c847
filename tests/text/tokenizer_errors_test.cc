// Tokenizer loading errors (no fixture needed): the message names the offending path.
#include <gtest/gtest.h>

#include <fstream>

#include "common/fixture.h"
#include "text/tokenizer.h"

namespace ib::text {
namespace {

void expect_load_error_names(const std::string& path) {
  try {
    (void)Tokenizer::load(path);
    FAIL() << "loading " << path << " should throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

TEST(TokenizerLoad, MissingFile) { expect_load_error_names(ib::test::temp_dir() + "/nope/spiece.model"); }

TEST(TokenizerLoad, Directory) { expect_load_error_names(ib::test::temp_dir()); }

TEST(TokenizerLoad, CorruptFile) {
  const std::string path = ib::test::temp_dir() + "/spiece.model";
  {
    std::ofstream f(path, std::ios::binary);
    f << "this is not a sentencepiece model \xff\xfe\x01\x02";
  }
  expect_load_error_names(path);
}

TEST(TokenizerLoad, EmptyFile) {
  const std::string path = ib::test::temp_dir() + "/empty.model";
  { std::ofstream f(path, std::ios::binary); }
  expect_load_error_names(path);
}

}  // namespace
}  // namespace ib::text
