// Read-only view of a ZIP archive's central directory (with zip64), for the uncompressed archives
// that torch.save writes. Only locates entries; the bytes stay in the caller's buffer (an mmap).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace ib {

struct ZipEntry {
  std::string name;
  size_t offset = 0;  // byte offset of the entry's (stored) data in the archive
  size_t size = 0;    // bytes
};

// Parses the end-of-central-directory record (zip64 when present), the central directory and each
// entry's local header. Every offset and size is checked against `size`; compressed or encrypted
// entries, multi-disk archives and malformed records throw ib::Error naming `label` and the entry.
// Never reads past `size`.
std::vector<ZipEntry> parse_zip_directory(const unsigned char* data, size_t size, const std::string& label);

}  // namespace ib
