// Prompt cleaning (spec 3.1-3.4) and the default negative prompt (spec 3.10).
#include "text/prompt.h"

#include "core/check.h"
#include "text/ftfy.h"
#include "text/html.h"
#include "text/unicode.h"

namespace ib::text {

bool is_prompt_whitespace(char32_t c) {
  // Python's str.isspace() also holds for U+001C-U+001F, but ftfy deletes those and html.unescape
  // never produces them, so the spec's 25 code points are the whole set that can occur.
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

namespace {

std::u32string_view strip(std::u32string_view s) {
  while (!s.empty() && is_prompt_whitespace(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_prompt_whitespace(s.back())) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string fix_text(std::string_view utf8) { return encode_utf8(ftfy_fix_text(decode_utf8(utf8))); }

std::string html_unescape(std::string_view utf8) { return encode_utf8(html_unescape(decode_utf8(utf8))); }

std::string clean_prompt(std::string_view utf8) {
  // basic_clean
  std::u32string text = ftfy_fix_text(decode_utf8(utf8));
  text = html_unescape(html_unescape(text));
  const std::u32string_view stripped = strip(text);
  // whitespace_clean: re.sub(r"\s+", " ", text).strip()
  std::u32string out;
  out.reserve(stripped.size());
  for (char32_t c : stripped) {
    if (!is_prompt_whitespace(c)) {
      out.push_back(c);
    } else if (out.back() != U' ') {  // `stripped` neither starts nor ends with whitespace
      out.push_back(U' ');
    }
  }
  return encode_utf8(out);
}

std::string default_negative_prompt(std::string_view model_type) {
  // Upstream's shared negative prompt (t2v); i2v prefixes "镜头晃动，", FLF2V prefixes "镜头切换，"
  // to the i2v one.
  static const std::string shared =
      "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，"
      "低质量，JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
      "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走";
  if (model_type == "t2v") return shared;
  if (model_type == "i2v") return "镜头晃动，" + shared;
  IB_CHECK(model_type == "flf2v", "no default negative prompt for model type '{}'", model_type);
  return "镜头切换，镜头晃动，" + shared;
}

}  // namespace ib::text
