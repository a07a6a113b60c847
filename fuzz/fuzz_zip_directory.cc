// libFuzzer target: the zip directory parser on arbitrary bytes must return or throw ib::Error, and
// every entry it returns must lie inside the buffer.
#include <cstddef>
#include <cstdint>

#include "io/zip.h"
#include "inbetween/error.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    volatile unsigned char sink = 0;
    for (const auto& e : ib::parse_zip_directory(data, size, "fuzz.pth")) {
      if (e.offset > size || e.size > size - e.offset) __builtin_trap();
      if (e.size > 0) sink = static_cast<unsigned char>(sink ^ data[e.offset] ^ data[e.offset + e.size - 1]);
    }
    (void)sink;
  } catch (const ib::Error&) {
  }
  return 0;
}
