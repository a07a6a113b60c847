// Port of Python 3.11's html.unescape and ftfy's HTML5 entity table look-ups. The tables come
// from html_entities.inc, generated from Python's html.entities.html5.
#include "text/html.h"

#include <algorithm>
#include <cstdint>
#include <iterator>

#include "text/unicode.h"

namespace ib::text {

namespace {

struct HtmlEntity {
  const char* name;
  const char* value;
};

#include "text/html_entities.inc"

template <size_t N>
const char* lookup(const HtmlEntity (&table)[N], std::string_view name) {
  const auto* it = std::lower_bound(std::begin(table), std::end(table), name,
                                    [](const HtmlEntity& e, std::string_view n) { return std::string_view(e.name) < n; });
  if (it != std::end(table) && std::string_view(it->name) == name) return it->value;
  return nullptr;
}

// Windows-1252 meanings of 0x80-0x9F; the five undefined bytes map to themselves.
constexpr char32_t kCp1252High[32] = {
    0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0x008D, 0x017D, 0x008F, 0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178};

bool is_ascii_digit(char32_t c) { return c >= '0' && c <= '9'; }
bool is_ascii_hex(char32_t c) { return is_ascii_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
uint32_t hex_value(char32_t c) {
  if (is_ascii_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return c - 'A' + 10;
}

// Characters that end an entity name in html.unescape: [^\t\n\f <&#;].
bool ends_name(char32_t c) {
  return c == '\t' || c == '\n' || c == '\f' || c == ' ' || c == '<' || c == '&' || c == '#' || c == ';';
}

}  // namespace

const char* html5_entity(std::string_view name) { return lookup(kHtml5Entities, name); }

const char* ftfy_entity(std::string_view name) {
  if (name.empty() || name.back() != ';') return nullptr;
  if (const char* v = lookup(kHtml5Entities, name)) return v;
  return lookup(kFtfyUpperEntities, name);
}

std::u32string html_numeric_reference(uint64_t num) {
  if (num == 0x00) return U"\uFFFD";
  if (num == 0x0D) return U"\r";
  if (num >= 0x80 && num <= 0x9F) return std::u32string(1, kCp1252High[num - 0x80]);
  if ((num >= 0xD800 && num <= 0xDFFF) || num > 0x10FFFF) return U"\uFFFD";
  if ((num >= 0x01 && num <= 0x08) || num == 0x0B || (num >= 0x0E && num <= 0x1F) || num == 0x7F ||
      (num >= 0xFDD0 && num <= 0xFDEF) || (num & 0xFFFE) == 0xFFFE)
    return U"";
  return std::u32string(1, static_cast<char32_t>(num));
}

std::u32string html_unescape(std::u32string_view s) {
  if (s.find(U'&') == std::u32string_view::npos) return std::u32string(s);
  std::u32string out;
  out.reserve(s.size());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    const size_t j = i + 1;
    if (j < n && s[j] == U'#') {
      // '#' digits ';'?  or  '#' [xX] hexdigits ';'?
      size_t k = j + 1;
      uint64_t num = 0;
      constexpr uint64_t kSaturate = 0x110000;  // anything larger behaves the same
      if (k < n && is_ascii_digit(s[k])) {
        for (; k < n && is_ascii_digit(s[k]); ++k) num = std::min<uint64_t>(num * 10 + (s[k] - '0'), kSaturate);
      } else if (k + 1 < n && (s[k] == U'x' || s[k] == U'X') && is_ascii_hex(s[k + 1])) {
        for (++k; k < n && is_ascii_hex(s[k]); ++k) num = std::min<uint64_t>(num * 16 + hex_value(s[k]), kSaturate);
      } else {
        out.push_back(s[i++]);  // no reference here: keep the '&'
        continue;
      }
      if (k < n && s[k] == U';') ++k;
      out += html_numeric_reference(num);
      i = k;
      continue;
    }
    // Named: 1-32 characters outside [\t\n\f <&#;], then an optional ';'.
    size_t k = j;
    while (k < n && k - j < 32 && !ends_name(s[k])) ++k;
    if (k == j) {
      out.push_back(s[i++]);
      continue;
    }
    if (k < n && s[k] == U';') ++k;
    const std::u32string_view name = s.substr(j, k - j);
    // Entity names are ASCII; a name with other characters can only match through a prefix.
    std::string ascii;
    for (char32_t c : name) {
      if (c >= 0x80) break;
      ascii.push_back(static_cast<char>(c));
    }
    const char* value = ascii.size() == name.size() ? html5_entity(ascii) : nullptr;
    size_t used = name.size();
    // Longest prefix (at least 2 characters) that is an entity; only legacy names without ';'
    // can match this way ("&notit" -> "¬it").
    for (size_t x = name.size() - 1; value == nullptr && x >= 2; --x) {
      if (x <= ascii.size()) value = html5_entity(std::string_view(ascii).substr(0, x));
      if (value != nullptr) used = x;
    }
    if (value == nullptr) {
      out.push_back(s[i]);
      out.append(name);
    } else {
      out += decode_utf8(value);
      out.append(name.substr(used));
    }
    i = k;
  }
  return out;
}

}  // namespace ib::text
