// SentencePiece-backed tokenizer (spec 3.5). Upstream calls Hugging Face T5TokenizerFast with
// padding="max_length", truncation=True, add_special_tokens=True; for the umT5 model this is the
// SentencePiece segmentation followed by </s>, truncation and padding, done here.
#include "text/tokenizer.h"

#include <sentencepiece_processor.h>

#include <algorithm>
#include <filesystem>

#include "core/check.h"

namespace ib::text {

struct Tokenizer::Impl {
  sentencepiece::SentencePieceProcessor sp;
  std::string path;
  int32_t eos = 1;
  int32_t pad = 0;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& spiece_model_path) {
  std::error_code ec;
  IB_CHECK(std::filesystem::is_regular_file(spiece_model_path, ec), "tokenizer model not found: {}",
           spiece_model_path);
  auto impl = std::make_unique<Impl>();
  impl->path = spiece_model_path;
  const auto status = impl->sp.Load(spiece_model_path);
  IB_CHECK(status.ok(), "cannot load the SentencePiece tokenizer model {}: {}", spiece_model_path,
           status.ToString());
  impl->eos = impl->sp.eos_id();
  IB_CHECK(impl->eos >= 0, "tokenizer model {} defines no </s> (eos) piece", spiece_model_path);
  // umT5 pads with <pad> = 0; a model without a pad piece still pads with 0 (spec 3.5).
  impl->pad = impl->sp.pad_id() >= 0 ? impl->sp.pad_id() : 0;
  return Tokenizer(std::move(impl));
}

Tokens Tokenizer::encode(std::string_view cleaned_text, int64_t text_len) const {
  IB_CHECK(text_len >= 1, "tokenizer: text_len must be at least 1, got {}", text_len);
  std::vector<int> pieces;
  const auto status = impl_->sp.Encode(cleaned_text, &pieces);
  IB_CHECK(status.ok(), "tokenizer ({}): cannot encode the prompt: {}", impl_->path, status.ToString());
  const size_t len = static_cast<size_t>(text_len);
  const size_t kept = std::min(pieces.size(), len - 1);  // the first text_len-1 pieces, then </s>
  Tokens t;
  t.ids.assign(len, impl_->pad);
  t.mask.assign(len, 0);
  for (size_t i = 0; i < kept; ++i) t.ids[i] = static_cast<int32_t>(pieces[i]);
  t.ids[kept] = impl_->eos;
  std::fill(t.mask.begin(), t.mask.begin() + static_cast<std::ptrdiff_t>(kept + 1), 1);
  t.length = static_cast<int64_t>(kept + 1);
  return t;
}

int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
int64_t Tokenizer::vocab_size() const { return impl_->sp.GetPieceSize(); }

}  // namespace ib::text
