// umT5 tokenization (spec 3.5): SentencePiece encode of the cleaned prompt, then </s>, truncation
// to text_len (keeping the </s>) and right padding with <pad>.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ib::text {

struct Tokens {
  std::vector<int32_t> ids;   // [text_len]
  std::vector<int32_t> mask;  // [text_len], 1 for real ids (</s> included), 0 for padding
  int64_t length = 0;         // number of real ids, 1..text_len
};

class Tokenizer {
 public:
  // Loads google/umt5-xxl/spiece.model; throws ib::Error naming the path if missing or corrupt.
  static Tokenizer load(const std::string& spiece_model_path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // `cleaned_text` is the output of clean_prompt(); text_len >= 1.
  Tokens encode(std::string_view cleaned_text, int64_t text_len) const;

  int32_t eos_id() const;
  int32_t pad_id() const;
  int64_t vocab_size() const;

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace ib::text
