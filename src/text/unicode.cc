// UTF-8 coding with U+FFFD replacement, and NFC/NFKC through utf8proc.
#include "text/unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "core/check.h"

namespace ib::text {

std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  const auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const unsigned char b0 = byte(i);
    if (b0 < 0x80) {
      out.push_back(b0);
      ++i;
      continue;
    }
    // Sequence length and the allowed range of the second byte (Unicode table 3-7).
    int len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      if (b0 == 0xE0) lo = 0xA0;
      if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      if (b0 == 0xF0) lo = 0x90;
      if (b0 == 0xF4) hi = 0x8F;
    }
    if (len == 0) {
      out.push_back(U'\uFFFD');
      ++i;
      continue;
    }
    char32_t cp = b0 & (0xFF >> (len + 1));
    size_t k = 1;
    for (; k < static_cast<size_t>(len); ++k) {
      if (i + k >= n) break;
      const unsigned char b = byte(i + k);
      const unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
      if (b < l || b > h) break;
      cp = (cp << 6) | (b & 0x3F);
    }
    if (k == static_cast<size_t>(len)) {
      out.push_back(cp);
    } else {
      out.push_back(U'\uFFFD');  // the maximal valid prefix is replaced; resume at the bad byte
    }
    i += k;
  }
  return out;
}

std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
    } else if (c < 0x800) {
      out.push_back(static_cast<char>(0xC0 | (c >> 6)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else if (c < 0x10000) {
      out.push_back(static_cast<char>(0xE0 | (c >> 12)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    } else {
      out.push_back(static_cast<char>(0xF0 | (c >> 18)));
      out.push_back(static_cast<char>(0x80 | ((c >> 12) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | ((c >> 6) & 0x3F)));
      out.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
  }
  return out;
}

namespace {

std::u32string normalize(std::u32string_view s, utf8proc_option_t options) {
  bool ascii = true;
  for (char32_t c : s) ascii = ascii && c < 0x80;
  if (ascii) return std::u32string(s);  // ASCII is invariant under NFC and NFKC
  const std::string utf8 = encode_utf8(s);
  utf8proc_uint8_t* dst = nullptr;
  // Explicit length (no UTF8PROC_NULLTERM), so an embedded U+0000 is an ordinary character.
  const utf8proc_ssize_t len =
      utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(utf8.data()), static_cast<utf8proc_ssize_t>(utf8.size()),
                   &dst, static_cast<utf8proc_option_t>(options | UTF8PROC_STABLE));
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
  IB_CHECK(len >= 0, "Unicode normalization failed: {}", utf8proc_errmsg(len));
  return decode_utf8(std::string_view(reinterpret_cast<const char*>(dst), static_cast<size_t>(len)));
}

}  // namespace

std::u32string nfc(std::u32string_view s) { return normalize(s, UTF8PROC_COMPOSE); }
std::u32string nfkc(std::u32string_view s) {
  return normalize(s, static_cast<utf8proc_option_t>(UTF8PROC_COMPOSE | UTF8PROC_COMPAT));
}

bool is_decimal_digit(char32_t c) {
  if (c < 0x80) return c >= '0' && c <= '9';
  return c <= 0x10FFFF && utf8proc_category(static_cast<utf8proc_int32_t>(c)) == UTF8PROC_CATEGORY_ND;
}

}  // namespace ib::text
