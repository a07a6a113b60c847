// libFuzzer target: decode_image (PNG, JPEG, WebP, as uploads and --first/--last files reach it) on
// arbitrary bytes must return an image of the size it says, within kMaxImageSide, or throw ib::Error.
#include <cstddef>
#include <cstdint>

#include "inbetween/error.h"
#include "io/image.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ib::RgbImage img = ib::decode_image(data, size, "fuzz.png");
    if (img.width <= 0 || img.height <= 0 || img.width > ib::kMaxImageSide || img.height > ib::kMaxImageSide ||
        img.rgb.size() != static_cast<size_t>(img.width * img.height * 3))
      __builtin_trap();
  } catch (const ib::Error&) {
  }
  return 0;
}
