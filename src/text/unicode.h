// Code-point level helpers for the text path: UTF-8 <-> UTF-32 and Unicode normalization
// (utf8proc). Internal to src/text.
#pragma once

#include <string>
#include <string_view>

namespace ib::text {

// Decodes UTF-8; each maximal invalid subsequence becomes one U+FFFD (as Python's
// bytes.decode("utf-8", "replace") does). Never throws.
std::u32string decode_utf8(std::string_view s);
std::string encode_utf8(std::u32string_view s);

std::u32string nfc(std::u32string_view s);
std::u32string nfkc(std::u32string_view s);

bool is_decimal_digit(char32_t c);  // Unicode general category Nd (Python's \d)

}  // namespace ib::text
