// Reading the files of a model folder defensively: weight files and JSON are opened only when they
// are regular files (a FIFO would block open() forever, a device would never end), and JSON is
// parsed under limits on its size and nesting, so a hostile file costs bounded memory and time.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>

namespace ib {

// Throws ib::Error unless `path` names a regular file (symbolic links are followed); the error
// names the path, what it is instead and `what` ("safetensors file", "config", ...). Called before
// a file is opened. A file swapped for a FIFO between this check and open() is not caught here.
void require_regular_file(const std::string& path, const char* what);

// Limits of one kind of JSON file. Depth counts nested arrays and objects: `{"a": [1]}` is 2.
struct JsonLimits {
  const char* what;  // names the file's role in errors: "safetensors header", "config", ...
  size_t max_bytes;
  int max_depth;
};

// Sizes well above the largest real file of each kind (the release's config.json is ~300 bytes,
// a shard index ~100 KB, a 14B DiT shard's header ~150 KB; a safetensors header nests 3 deep,
// config.json 2, inbetween.json 3).
constexpr JsonLimits kConfigJsonLimits = {"config", size_t{1} << 20, 8};
constexpr JsonLimits kIndexJsonLimits = {"shard index", size_t{16} << 20, 8};
constexpr JsonLimits kSafetensorsHeaderLimits = {"safetensors header", size_t{16} << 20, 8};

// Parses `size` bytes of JSON. Errors name `label` (the file), the role and the limit exceeded,
// or the JSON syntax error.
nlohmann::json parse_json_limited(const unsigned char* data, size_t size, const std::string& label,
                                  const JsonLimits& limits);

}  // namespace ib
