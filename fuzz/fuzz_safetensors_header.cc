// libFuzzer target: parse_safetensors_header on arbitrary bytes must return or throw ib::Error.
#include <cstddef>
#include <cstdint>

#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const ib::SafetensorsHeader h = ib::parse_safetensors_header(data, size, "fuzz.safetensors");
    // Every accepted tensor must lie inside the buffer: touch its first and last byte.
    volatile unsigned char sink = 0;
    for (const auto& [name, e] : h.tensors)
      if (e.end > e.begin) sink = static_cast<unsigned char>(sink ^ data[h.data_offset + e.begin] ^ data[h.data_offset + e.end - 1]);
    (void)sink;
  } catch (const ib::Error&) {
  }
  return 0;
}
