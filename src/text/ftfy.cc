// Port of ftfy 6.3.1 `fix_text` with its default options (spec 3.2): the text is cut into lines,
// HTML unescaping switches off for good at the first line containing '<', and each line goes
// through the fixing pass until it stops changing.
//
// Not ported: step 2, ftfy's mojibake repair (`fix_encoding`: the "badness" heuristic and the
// legacy code-page round trips). It only acts on text holding characters typical of UTF-8 mis-decoded
// as Latin-1/cp125x/MacRoman/cp437 (e.g. "sÃ³" -> "só"); for every other prompt this port is exact.
// Step 8 (surrogates) has nothing to do: decoded UTF-8 never holds surrogate code points.
#include "text/ftfy.h"

#include <array>

#include "text/html.h"
#include "text/unicode.h"

namespace ib::text {

namespace {

constexpr size_t kMaxDecodeLength = 1000000;

bool is_ascii_alnum(char32_t c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_ascii_letter(char32_t c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// Step 1: ftfy's `&#?[0-9A-Za-z]{1,24};` references. Named ones must be in ftfy's table (which
// requires the ';'); numeric ones are decoded by html.unescape and kept when it did not consume
// the whole reference (its result still contains ';').
std::u32string unescape_html(std::u32string_view s) {
  if (s.find(U'&') == std::u32string_view::npos) return std::u32string(s);
  std::u32string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    if (s[i] != U'&') {
      out.push_back(s[i++]);
      continue;
    }
    const bool numeric = i + 1 < s.size() && s[i + 1] == U'#';
    const size_t start = i + (numeric ? 2 : 1);
    size_t k = start;
    while (k < s.size() && is_ascii_alnum(s[k])) ++k;
    if (k == start || k - start > 24 || k >= s.size() || s[k] != U';') {
      out.push_back(s[i++]);
      continue;
    }
    const std::u32string_view ref = s.substr(i, k + 1 - i);  // "&...;"
    if (numeric) {
      const std::u32string decoded = html_unescape(ref);
      out += decoded.find(U';') == std::u32string::npos ? decoded : std::u32string(ref);
    } else {
      std::string name;  // ASCII by construction
      for (char32_t c : ref.substr(1)) name.push_back(static_cast<char>(c));
      const char* value = ftfy_entity(name);
      out += value != nullptr ? decode_utf8(value) : std::u32string(ref);
    }
    i = k + 1;
  }
  return out;
}

// Step 3: C1 controls as Windows-1252 (undefined bytes stay), the same table as html.unescape's.
char32_t fix_c1(char32_t c) { return c >= 0x80 && c <= 0x9F ? html_numeric_reference(c)[0] : c; }

// Step 4: Latin ligatures (ftfy's LIGATURES table), or nullptr.
const char32_t* ligature(char32_t c) {
  switch (c) {
    case 0x0132: return U"IJ";
    case 0x0133: return U"ij";
    case 0x0149: return U"\u02BCn";
    case 0x01F1: return U"DZ";
    case 0x01F2: return U"Dz";
    case 0x01F3: return U"dz";
    case 0x01C4: return U"D\u017D";
    case 0x01C5: return U"D\u017E";
    case 0x01C6: return U"d\u017E";
    case 0x01C7: return U"LJ";
    case 0x01C8: return U"Lj";
    case 0x01C9: return U"lj";
    case 0x01CA: return U"NJ";
    case 0x01CB: return U"Nj";
    case 0x01CC: return U"nj";
    case 0xFB00: return U"ff";
    case 0xFB01: return U"fi";
    case 0xFB02: return U"fl";
    case 0xFB03: return U"ffi";
    case 0xFB04: return U"ffl";
    case 0xFB05: return U"\u017Ft";
    case 0xFB06: return U"st";
    default: return nullptr;
  }
}

// Step 5: ftfy's width map: U+3000 -> space, and U+FF01-U+FFEF -> NFKC where that differs.
struct WidthMap {
  static constexpr char32_t kFirst = 0xFF01, kLast = 0xFFEF;
  std::array<std::u32string, kLast - kFirst + 1> to;
  WidthMap() {
    for (char32_t c = kFirst; c <= kLast; ++c) {
      const std::u32string one(1, c);
      std::u32string alt = nfkc(one);
      if (alt != one) to[c - kFirst] = std::move(alt);
    }
  }
};

void fix_width(std::u32string& s) {
  static const WidthMap map;
  std::u32string out;
  out.reserve(s.size());
  for (char32_t c : s) {
    if (c == 0x3000) {
      out.push_back(U' ');
    } else if (c >= WidthMap::kFirst && c <= WidthMap::kLast && !map.to[c - WidthMap::kFirst].empty()) {
      out += map.to[c - WidthMap::kFirst];
    } else {
      out.push_back(c);
    }
  }
  s.swap(out);
}

// Step 10: control characters ftfy deletes.
bool is_removed_control(char32_t c) {
  return c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
         c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC);
}

std::u32string fix_pass(std::u32string_view in, bool unescape) {
  // 1. HTML entities.
  std::u32string s = unescape ? unescape_html(in) : std::u32string(in);
  // 2. Mojibake repair: not ported (see the file comment).
  // 3-4. C1 controls, Latin ligatures.
  {
    std::u32string out;
    out.reserve(s.size());
    for (char32_t c : s) {
      c = fix_c1(c);
      if (const char32_t* lig = ligature(c)) {
        out += lig;
      } else {
        out.push_back(c);
      }
    }
    s.swap(out);
  }
  // 5. Character width.
  fix_width(s);
  // 6. Quotes.
  for (char32_t& c : s) {
    if (c == 0x02BC || (c >= 0x2018 && c <= 0x201B)) c = U'\'';
    else if (c >= 0x201C && c <= 0x201F) c = U'"';
  }
  // 7. Line breaks: CR LF, CR, U+2028, U+2029, U+0085 -> LF.
  {
    std::u32string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      const char32_t c = s[i];
      if (c == U'\r') {
        if (i + 1 < s.size() && s[i + 1] == U'\n') ++i;
        out.push_back(U'\n');
      } else if (c == 0x2028 || c == 0x2029 || c == 0x0085) {
        out.push_back(U'\n');
      } else {
        out.push_back(c);
      }
    }
    s.swap(out);
  }
  // 8. Surrogates: none can be present.
  // 9-10. Terminal escapes ESC '[' (\d|;)* [A-Za-z] (Python's \d is any Unicode Nd), then the
  // control characters. Escapes go first: the control step would otherwise eat their ESC.
  {
    std::u32string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] == 0x1B && i + 1 < s.size() && s[i + 1] == U'[') {
        size_t k = i + 2;
        while (k < s.size() && (s[k] == U';' || is_decimal_digit(s[k]))) ++k;
        if (k < s.size() && is_ascii_letter(s[k])) {
          i = k;
          continue;
        }
      }
      out.push_back(s[i]);
    }
    s.clear();
    for (char32_t c : out)
      if (!is_removed_control(c)) s.push_back(c);
  }
  // 11. NFC.
  return nfc(s);
}

}  // namespace

std::u32string ftfy_fix_text(std::u32string_view text) {
  std::u32string out;
  out.reserve(text.size());
  bool unescape_html = true;  // "auto" until a segment containing '<' turns it off for good
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t nl = text.find(U'\n', pos);
    size_t end = nl == std::u32string_view::npos ? text.size() : nl + 1;
    if (end - pos > kMaxDecodeLength) end = pos + kMaxDecodeLength;
    std::u32string segment(text.substr(pos, end - pos));
    if (unescape_html && segment.find(U'<') != std::u32string::npos) unescape_html = false;
    for (;;) {
      std::u32string fixed = fix_pass(segment, unescape_html);
      if (fixed == segment) break;
      segment.swap(fixed);
    }
    out += segment;
    pos = end;
  }
  return out;
}

}  // namespace ib::text
