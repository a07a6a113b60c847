// Prompt cleaning (spec 3.1-3.4) on hand-checked cases, and the default negative prompt's hashes
// (spec 3.10). Expected values follow the spec's rules; the html.unescape ones were checked against
// Python 3.11's html.unescape.
#include <gtest/gtest.h>

#include <array>
#include <cstdint>
#include <cstdio>
#include <string>

#include "text/prompt.h"

namespace ib::text {
namespace {

// --- A small SHA-256 (FIPS 180-4), enough to check the spec's digests. ---
std::string sha256_hex(const std::string& msg) {
  static constexpr std::array<uint32_t, 64> k = {
      0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
      0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
      0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
      0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
      0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
      0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
      0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
      0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};
  std::array<uint32_t, 8> h = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  std::string m = msg;
  const uint64_t bits = static_cast<uint64_t>(msg.size()) * 8;
  m.push_back(static_cast<char>(0x80));
  while (m.size() % 64 != 56) m.push_back('\0');
  for (int i = 7; i >= 0; --i) m.push_back(static_cast<char>((bits >> (8 * i)) & 0xff));
  const auto rotr = [](uint32_t x, int n) { return (x >> n) | (x << (32 - n)); };
  for (size_t off = 0; off < m.size(); off += 64) {
    std::array<uint32_t, 64> w{};
    for (size_t t = 0; t < 16; ++t) {
      w[t] = 0;
      for (size_t b = 0; b < 4; ++b) w[t] = (w[t] << 8) | static_cast<unsigned char>(m[off + 4 * t + b]);
    }
    for (size_t t = 16; t < 64; ++t) {
      const uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
      const uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
      w[t] = w[t - 16] + s0 + w[t - 7] + s1;
    }
    std::array<uint32_t, 8> v = h;
    for (size_t t = 0; t < 64; ++t) {
      const uint32_t s1 = rotr(v[4], 6) ^ rotr(v[4], 11) ^ rotr(v[4], 25);
      const uint32_t ch = (v[4] & v[5]) ^ (~v[4] & v[6]);
      const uint32_t t1 = v[7] + s1 + ch + k[t] + w[t];
      const uint32_t s0 = rotr(v[0], 2) ^ rotr(v[0], 13) ^ rotr(v[0], 22);
      const uint32_t maj = (v[0] & v[1]) ^ (v[0] & v[2]) ^ (v[1] & v[2]);
      const uint32_t t2 = s0 + maj;
      v = {t1 + t2, v[0], v[1], v[2], v[3] + t1, v[4], v[5], v[6]};
    }
    for (size_t i = 0; i < 8; ++i) h[i] += v[i];
  }
  std::string hex;
  char buf[9];
  for (uint32_t x : h) {
    std::snprintf(buf, sizeof buf, "%08x", x);
    hex += buf;
  }
  return hex;
}

TEST(Sha256, KnownVectors) {
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}

TEST(DefaultNegativePrompt, MatchesSpecHashes) {
  const std::string raw = default_negative_prompt();
  EXPECT_EQ(sha256_hex(raw), "43885bed372496a7998e1c1c83a19dd46254345e0b2c9a23e6fafde8f9d6e106");
  const std::string cleaned = clean_prompt(raw);
  EXPECT_EQ(sha256_hex(cleaned), "052cfbd554fecb22df1be951c756372655c3e21331d13e1ebe5f2d56afaf8b79");
  EXPECT_EQ(cleaned.find("\xEF\xBC\x8C"), std::string::npos);  // no U+FF0C left
  EXPECT_EQ(default_negative_prompt("flf2v"), raw);
}

TEST(DefaultNegativePrompt, EachModelTypeHasUpstreamsOwn) {
  // Upstream: t2v uses the shared prompt, i2v prefixes "镜头晃动，", flf2v prefixes "镜头切换，" to that.
  const std::string t2v = default_negative_prompt("t2v"), i2v = default_negative_prompt("i2v");
  EXPECT_EQ(t2v.rfind("色调艳丽，过曝，静态，", 0), 0u);
  EXPECT_EQ(i2v, "镜头晃动，" + t2v);
  EXPECT_EQ(default_negative_prompt("flf2v"), "镜头切换，" + i2v);
  EXPECT_THROW(default_negative_prompt("vace"), std::exception);
}

TEST(CleanPrompt, FullwidthAndIdeographicSpace) {
  EXPECT_EQ(clean_prompt("你好，世界！（测试）：；？～＂＇［］｛｝"), "你好,世界!(测试):;?~\"'[]{}");
  EXPECT_EQ(clean_prompt("ＦＵＬＬ\u3000ｗｉｄｔｈ１２３"), "FULL width123");
  EXPECT_EQ(clean_prompt("\u3000\u3000x\u3000\u3000y\u3000"), "x y");
  // Untouched: CJK punctuation outside U+FF01-U+FFEF.
  EXPECT_EQ(clean_prompt("。、《》「」…—"), "。、《》「」…—");
  // Halfwidth forms and symbols.
  EXPECT_EQ(clean_prompt("｡｢｣､･ ￠￡￢￤￥￦ ￩￪"), "。「」、・ ¢£¬¦¥₩ ←↑");
  EXPECT_EQ(fix_text("a￣b"), "a \u0304b");  // U+FFE3 -> space + combining macron
}

TEST(CleanPrompt, HalfwidthKatakanaVoicedMarksMerge) {
  // U+FF76 U+FF9E -> U+30AB U+3099 -> NFC U+30AC.
  EXPECT_EQ(clean_prompt("\uFF76\uFF9E\uFF77\uFF9E \uFF8A\uFF9F \uFF71\uFF72"), "\u30AC\u30AE \u30D1 \u30A2\u30A4");
}

TEST(CleanPrompt, CurlyQuotes) {
  EXPECT_EQ(clean_prompt("\u201CHi\u201D \u2018x\u2019 \u02BCy \u201Az\u201B \u201Ew\u201F"),
            "\"Hi\" 'x' 'y 'z' \"w\"");
  EXPECT_EQ(clean_prompt("«a» 『b』"), "«a» 『b』");
}

TEST(CleanPrompt, Ligatures) {
  EXPECT_EQ(clean_prompt("\uFB01ne \uFB02ow \uFB00 \uFB03 \uFB04 \uFB05 \uFB06"), "fine flow ff ffi ffl \u017Ft st");
  EXPECT_EQ(clean_prompt("\u0132\u0133 \u01C4\u01C5\u01C6 \u01C7\u01C8\u01C9 \u01CA\u01CB\u01CC \u01F1\u01F2\u01F3"),
            "IJij D\u017DD\u017Ed\u017E LJLjlj NJNjnj DZDzdz");
  EXPECT_EQ(clean_prompt("\u0149"), "'n");  // -> U+02BC n -> quote step
  EXPECT_EQ(clean_prompt("æ œ"), "æ œ");
}

TEST(CleanPrompt, HtmlEntitiesCollapse) {
  EXPECT_EQ(clean_prompt("Fish &amp; chips &lt;3 &amp;amp;"), "Fish & chips <3 &");
  EXPECT_EQ(clean_prompt("&amp;amp;amp;amp;"), "&");
  EXPECT_EQ(clean_prompt("&amp;lt;"), "<");
  EXPECT_EQ(clean_prompt("&EACUTE;T&NTILDE; &AMP; &Eacute;"), "ÉTÑ & É");
  EXPECT_EQ(fix_text("&nTILDE; &SZLIG;"), "&nTILDE; SS");  // mixed case stays; ß upper-cases to SS
  EXPECT_EQ(clean_prompt("&nTILDE;"), "&nTILDE;");
  EXPECT_EQ(clean_prompt("&ldquo;quoted&rdquo;"), "\"quoted\"");  // decoded by ftfy, then uncurled
}

TEST(CleanPrompt, NumericEntities) {
  EXPECT_EQ(clean_prompt("&#x80;"), "€");
  EXPECT_EQ(clean_prompt("&#0;"), "\uFFFD");
  EXPECT_EQ(clean_prompt("&#65;&#x42;&#X43;&#x00044;"), "ABCD");
  EXPECT_EQ(clean_prompt("a&#1;b&#x7f;c&#xFFFE;d&#xFDD0;e&#x1FFFF;f"), "abcdef");
  EXPECT_EQ(clean_prompt("&#xD800;|&#x110000;|&#99999999999999999999999;"), "\uFFFD|\uFFFD|\uFFFD");
  EXPECT_EQ(clean_prompt("&#x85;&#150;&#x9F;&#x81;"), "…–Ÿ\u0081");
  EXPECT_EQ(clean_prompt("a&#13;b"), "a b");  // CR, then the line-break step
  // ftfy keeps "&#59;" (its decoding contains ';'); html.unescape then decodes it.
  EXPECT_EQ(fix_text("&#59;"), "&#59;");
  EXPECT_EQ(clean_prompt("&#59;"), ";");
  // Without ';' ftfy leaves them; html.unescape decodes them.
  EXPECT_EQ(fix_text("&#65 &#x80"), "&#65 &#x80");
  EXPECT_EQ(clean_prompt("&#65 &#x80"), "A €");
  EXPECT_EQ(clean_prompt("&#x; &#; &#xZZ;"), "&#x; &#; &#xZZ;");
}

TEST(CleanPrompt, LegacyNamesWithoutSemicolon) {
  EXPECT_EQ(clean_prompt("&copy 2024"), "© 2024");
  EXPECT_EQ(clean_prompt("&notit"), "¬it");
  EXPECT_EQ(clean_prompt("&notit;"), "¬it;");
  EXPECT_EQ(clean_prompt("&notin;"), "∉");
  EXPECT_EQ(clean_prompt("&ampx; &LTx &lt &Eacute"), "&x; <x < É");
  EXPECT_EQ(clean_prompt("&amp\u00E9"), "&\u00E9");
  EXPECT_EQ(clean_prompt("&CounterClockwiseContourIntegral; &CounterClockwiseContourIntegralX;"),
            "\u2233 &CounterClockwiseContourIntegralX;");
  EXPECT_EQ(clean_prompt("&aaaaaaaaaaaaaaaaaaaaaaaaa;"), "&aaaaaaaaaaaaaaaaaaaaaaaaa;");
}

TEST(CleanPrompt, AutoHtmlModeSwitchesOffAfterLessThan) {
  // No '<' in either line: both are unescaped by ftfy.
  EXPECT_EQ(fix_text("a &lt; b\n&amp;"), "a < b\n&");
  EXPECT_EQ(clean_prompt("a &lt; b\n&amp;"), "a < b &");
  // A line with '<' turns ftfy's unescaping off for it and every later line; html.unescape still
  // decodes, and what it decodes is not cleaned again (the curly quotes survive).
  EXPECT_EQ(fix_text("x < y\n&ldquo;q&rdquo;"), "x < y\n&ldquo;q&rdquo;");
  EXPECT_EQ(clean_prompt("x < y\n&ldquo;q&rdquo;"), "x < y \u201Cq\u201D");
  EXPECT_EQ(clean_prompt("&ldquo;q&rdquo;\nx < y\n&ldquo;q&rdquo;"), "\"q\" x < y \u201Cq\u201D");
  EXPECT_EQ(clean_prompt("<&amp;amp;amp;"), "<&amp;");  // only the two html.unescape passes
  EXPECT_EQ(clean_prompt("&amp;lt;\n<"), "< <");
}

TEST(CleanPrompt, C1Controls) {
  EXPECT_EQ(fix_text("a\u0080b\u0085c\u009Fd"), "a€b…cŸd");
  EXPECT_EQ(fix_text("\u0093q\u0094 \u0092"), "\"q\" '");  // cp1252 curly quotes, then uncurled
  EXPECT_EQ(fix_text("x\u0081\u008D\u008F\u0090\u009Dy"), "x\u0081\u008D\u008F\u0090\u009Dy");
  EXPECT_EQ(clean_prompt("x\u0085y"), "x…y");  // never a line break
}

TEST(CleanPrompt, ControlCharacters) {
  EXPECT_EQ(fix_text(std::string("a\0b\x07" "c\x0b" "d\x7f" "e", 9)), "abcde");
  EXPECT_EQ(fix_text("a\u200Bb\uFEFFc\u206Ad\u206Fe\uFFF9f\uFFFCg\uFFFDh\u200Fi\u202Ej"),
            "a\u200Bbcdefg\uFFFDh\u200Fi\u202Ej");
  EXPECT_EQ(fix_text("a\x0c" "b\tc\x1c" "d\x1f" "e"), "a\x0c" "b\tcde");
  EXPECT_EQ(clean_prompt("a\x0c" "b\tc\x0b" "d"), "a b cd");
}

TEST(CleanPrompt, LineBreaks) {
  EXPECT_EQ(fix_text("a\r\nb\rc\u2028d\u2029e\r\r\nf"), "a\nb\nc\nd\ne\n\nf");
  EXPECT_EQ(clean_prompt("line1\r\nline2\rline3"), "line1 line2 line3");
}

TEST(CleanPrompt, NfcComposition) {
  EXPECT_EQ(fix_text("cafe\u0301"), "caf\u00E9");
  EXPECT_EQ(clean_prompt("emoji \U0001F642 and cafe\u0301 composed"), "emoji \U0001F642 and caf\u00E9 composed");
  EXPECT_EQ(clean_prompt("\u1100\u1161"), "\uAC00");  // conjoining jamo compose
  EXPECT_EQ(clean_prompt("\u212B"), "\u00C5");        // singleton decomposition (Angstrom sign)
  EXPECT_EQ(clean_prompt("\u017F \uFB06"), "\u017F st");  // NFC keeps compatibility characters
}

TEST(CleanPrompt, WhitespaceSet) {
  EXPECT_EQ(clean_prompt("  multiple   spaces\tand\nnew lines  "), "multiple spaces and new lines");
  EXPECT_EQ(clean_prompt("a\u00A0b\u3000c\u2003d\u205Fe\u1680f\u202Fg\u2000h\u200Ai\u2028j\u2029k"),
            "a b c d e f g h i j k");
  EXPECT_EQ(clean_prompt("\u00A0\u00A0x\u00A0"), "x");
  // Not whitespace: U+200B, U+180E, U+2060.
  EXPECT_EQ(clean_prompt("a\u200Bb\u180Ec\u2060d"), "a\u200Bb\u180Ec\u2060d");
  EXPECT_EQ(clean_prompt("\u200B"), "\u200B");
  // &nbsp; decoded by ftfy is collapsed too.
  EXPECT_EQ(clean_prompt("a&nbsp;&nbsp;b&Tab;c&NewLine;"), "a b c");
  EXPECT_EQ(clean_prompt(""), "");
  EXPECT_EQ(clean_prompt(" \t\n "), "");
}

TEST(CleanPrompt, TerminalEscapes) {
  EXPECT_EQ(clean_prompt("\x1b[1;31mred\x1b[0m text\x1b[m"), "red text");
  EXPECT_EQ(fix_text("\x1b[\u0661\u0662Kx"), "x");     // Python's \d is any Unicode digit
  EXPECT_EQ(fix_text("a\x1b[12 b"), "a[12 b");         // no final letter: only the ESC goes
  EXPECT_EQ(fix_text("a\x1b(Bb"), "a(Bb");
}

TEST(CleanPrompt, InvalidUtf8BecomesReplacementCharacter) {
  EXPECT_EQ(clean_prompt("a\xff" "b\xe2\x82" "c\xed\xa0\x80" "d\xf4\x90\x80\x80" "e\xc0\xaf"),
            "a\uFFFDb\uFFFDc\uFFFD\uFFFD\uFFFDd\uFFFD\uFFFD\uFFFD\uFFFDe\uFFFD\uFFFD");
}

TEST(HtmlUnescape, MatchesPython) {
  EXPECT_EQ(html_unescape("&amp;amp;amp;"), "&amp;amp;");
  EXPECT_EQ(html_unescape("&ltrif;x"), "\u25C2x");
  EXPECT_EQ(html_unescape("&EACUTE;"), "&EACUTE;");
  EXPECT_EQ(html_unescape("&#xFFFE;&#xFDD0;&#x1FFFF;&#x7f;&#13;"), "\r");
  EXPECT_EQ(html_unescape("&\u00E9;"), "&\u00E9;");
  EXPECT_EQ(html_unescape("&&lt;&"), "&<&");
  EXPECT_EQ(html_unescape("&fjlig;&NotEqualTilde;"), "fj\u2242\u0338");  // multi-code-point values
}

TEST(CleanPrompt, Idempotent) {
  for (const char* s : {"Fish &amp; chips", "ＦＵＬＬ\u3000ｗｉｄｔｈ", "\u201Cq\u201D", "a\u00A0 b"}) {
    const std::string once = clean_prompt(s);
    EXPECT_EQ(clean_prompt(once), once) << s;
  }
}

}  // namespace
}  // namespace ib::text
