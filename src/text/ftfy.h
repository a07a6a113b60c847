// Port of ftfy 6.3.1 fix_text with default options (spec 3.2). Internal to src/text.
#pragma once

#include <string>
#include <string_view>

namespace ib::text {

std::u32string ftfy_fix_text(std::u32string_view text);

}  // namespace ib::text
