// Cleaning and tokenization against the reference tokenizer.json of the fixture: every case's
// cleaned text, ids and mask must match exactly.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/fixture.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

namespace ib::text {
namespace {

nlohmann::json load_reference() {
  std::ifstream f(ib::test::fixture_path("tokenizer.json"));
  EXPECT_TRUE(f.good()) << ib::test::fixture_path("tokenizer.json");
  return nlohmann::json::parse(f);
}

std::string spiece_path() { return ib::test::fixture_dir() + "/model/google/umt5-xxl/spiece.model"; }

TEST(TokenizerFixture, EveryCaseMatches) {
  const nlohmann::json ref = load_reference();
  const int64_t text_len = ref.at("text_len").get<int64_t>();
  const Tokenizer tok = Tokenizer::load(spiece_path());
  EXPECT_EQ(tok.eos_id(), 1);
  EXPECT_EQ(tok.pad_id(), 0);
  const auto& cases = ref.at("cases");
  ASSERT_FALSE(cases.empty());
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    const std::string text = c.at("text").get<std::string>();
    SCOPED_TRACE("case " + std::to_string(i) + ": " + text);
    const std::string cleaned = clean_prompt(text);
    EXPECT_EQ(cleaned, c.at("cleaned").get<std::string>());
    const Tokens t = tok.encode(cleaned, text_len);
    const auto ids = c.at("ids").get<std::vector<int32_t>>();
    const auto mask = c.at("mask").get<std::vector<int32_t>>();
    EXPECT_EQ(t.ids, ids);
    EXPECT_EQ(t.mask, mask);
    int64_t real = 0;
    for (int32_t m : mask) real += m;
    EXPECT_EQ(t.length, real);
    EXPECT_EQ(static_cast<int64_t>(t.ids.size()), text_len);
  }
}

TEST(TokenizerFixture, EmptyPromptIsEosOnly) {
  const Tokenizer tok = Tokenizer::load(spiece_path());
  const Tokens t = tok.encode("", 4);
  EXPECT_EQ(t.ids, (std::vector<int32_t>{1, 0, 0, 0}));
  EXPECT_EQ(t.mask, (std::vector<int32_t>{1, 0, 0, 0}));
  EXPECT_EQ(t.length, 1);
}

TEST(TokenizerFixture, TruncationKeepsEos) {
  const Tokenizer tok = Tokenizer::load(spiece_path());
  const std::string text = clean_prompt("a very long prompt that keeps going and going and going");
  const Tokens full = tok.encode(text, 256);
  ASSERT_GT(full.length, 5);
  const Tokens cut = tok.encode(text, 5);
  EXPECT_EQ(cut.length, 5);
  EXPECT_EQ(std::vector<int32_t>(cut.ids.begin(), cut.ids.begin() + 4),
            std::vector<int32_t>(full.ids.begin(), full.ids.begin() + 4));
  EXPECT_EQ(cut.ids[4], 1);
  EXPECT_EQ(tok.encode(text, 1).ids, (std::vector<int32_t>{1}));
  EXPECT_THROW(tok.encode(text, 0), Error);
}

}  // namespace
}  // namespace ib::text
