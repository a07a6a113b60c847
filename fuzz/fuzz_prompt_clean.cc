// libFuzzer target: prompt cleaning (ftfy fix_text, html.unescape twice, whitespace collapsing) on
// arbitrary bytes must not fail, and must return valid UTF-8 with no whitespace at either end and
// no two whitespace code points in a row.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "text/prompt.h"
#include "text/unicode.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string out = ib::text::clean_prompt(std::string_view(reinterpret_cast<const char*>(data), size));
  const std::u32string cps = ib::text::decode_utf8(out);
  if (ib::text::encode_utf8(cps) != out) __builtin_trap();  // not valid UTF-8
  bool prev_space = true;                                    // also catches a leading space
  for (const char32_t c : cps) {
    const bool space = ib::text::is_prompt_whitespace(c);
    if (space && prev_space) __builtin_trap();
    prev_space = space;
  }
  if (!cps.empty() && prev_space) __builtin_trap();
  return 0;
}
