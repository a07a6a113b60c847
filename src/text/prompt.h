// Prompt cleaning as upstream Wan2.1 does it before tokenizing (spec 3.1-3.4), and the FLF2V default
// negative prompt (spec 3.10).
#pragma once

#include <string>
#include <string_view>

namespace ib::text {

// whitespace_clean(basic_clean(text)): ftfy.fix_text, html.unescape twice, strip, collapse every
// run of whitespace into one space. Invalid UTF-8 bytes become U+FFFD. UTF-8 in and out.
std::string clean_prompt(std::string_view utf8);

// The stages, exposed for tests. UTF-8 in and out.
std::string fix_text(std::string_view utf8);        // ftfy 6.3.1 fix_text, default options
std::string html_unescape(std::string_view utf8);   // Python html.unescape, applied once

// True for the 25 code points that Python's str.strip() and \s treat as whitespace here (spec 3.4).
bool is_prompt_whitespace(char32_t c);

// The default negative prompt of a model type (flf2v, i2v, t2v), verbatim (uncleaned) UTF-8, as
// upstream's configs set it; used when the negative prompt is "".
std::string default_negative_prompt(std::string_view model_type = "flf2v");

}  // namespace ib::text
