// HTML character references: a port of Python's html.unescape and the entity look-ups that
// ftfy's unescape step uses (spec 3.2 step 1, 3.3). Internal to src/text.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace ib::text {

// Python 3.11 html.unescape, on code points.
std::u32string html_unescape(std::u32string_view s);

// The replacement of one numeric reference with code `num` (Python's _replace_charref rules:
// 0 -> U+FFFD, 0x80-0x9F -> Windows-1252, surrogates / > 0x10FFFF -> U+FFFD, some codes -> "").
// Codes above 0x10FFFF may be passed saturated to any larger value.
std::u32string html_numeric_reference(uint64_t num);

// Value of an HTML5 entity name as html.entities.html5 spells it ("amp;", "amp", "notin;"), or
// nullptr. UTF-8.
const char* html5_entity(std::string_view name);
// ftfy's table (name ends in ';'): the HTML5 names plus the upper-case spellings it accepts
// ("EACUTE;" -> "É"), or nullptr.
const char* ftfy_entity(std::string_view name);

}  // namespace ib::text
