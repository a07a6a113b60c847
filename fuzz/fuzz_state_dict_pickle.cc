// libFuzzer target: the restricted unpickler on arbitrary bytes must return or throw ib::Error.
#include <cstddef>
#include <cstdint>

#include "io/pth.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    const auto records = ib::parse_state_dict_pickle(data, size, "fuzz.pth");
    for (const auto& [name, r] : records) {
      // Accepted records are consistent: one stride per dim, extent inside the declared storage.
      if (r.shape.size() != r.stride.size() || r.storage_offset < 0 || r.storage_numel < 0) __builtin_trap();
    }
  } catch (const ib::Error&) {
  }
  return 0;
}
