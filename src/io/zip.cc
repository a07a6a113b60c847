// ZIP central-directory parser (APPNOTE 6.3: EOCD, zip64 EOCD locator/record, central headers,
// zip64 extra field, local headers). Stored entries only.
#include "io/zip.h"

#include <algorithm>

#include "core/check.h"

namespace ib {

namespace {

constexpr uint32_t kSigEocd = 0x06054b50;
constexpr uint32_t kSigZip64Locator = 0x07064b50;
constexpr uint32_t kSigZip64Eocd = 0x06064b50;
constexpr uint32_t kSigCentral = 0x02014b50;
constexpr uint32_t kSigLocal = 0x04034b50;
constexpr size_t kEocdSize = 22;
constexpr size_t kZip64LocatorSize = 20;
constexpr size_t kZip64EocdSize = 56;
constexpr size_t kCentralSize = 46;
constexpr size_t kLocalSize = 30;

uint64_t le(const unsigned char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
uint16_t le16(const unsigned char* p) { return static_cast<uint16_t>(le(p, 2)); }
uint32_t le32(const unsigned char* p) { return static_cast<uint32_t>(le(p, 4)); }
uint64_t le64(const unsigned char* p) { return le(p, 8); }

const char* method_name(uint16_t m) {
  switch (m) {
    case 8: return "deflate";
    case 9: return "deflate64";
    case 12: return "bzip2";
    case 14: return "lzma";
    case 93: return "zstd";
    case 95: return "xz";
    default: return "unknown";
  }
}

}  // namespace

std::vector<ZipEntry> parse_zip_directory(const unsigned char* data, size_t size, const std::string& label) {
  IB_CHECK(size >= kEocdSize, "'{}' is not a zip archive (a PyTorch .pth file): {} bytes is too short", label, size);

  // The end-of-central-directory record sits at the end, before an optional comment of < 64 KiB.
  size_t eocd = SIZE_MAX;
  const size_t lowest = size - kEocdSize > 0xffff ? size - kEocdSize - 0xffff : 0;
  for (size_t p = size - kEocdSize + 1; p-- > lowest;) {
    if (le32(data + p) == kSigEocd && p + kEocdSize + le16(data + p + 20) <= size) {
      eocd = p;
      break;
    }
  }
  IB_CHECK(eocd != SIZE_MAX,
           "'{}' is not a zip archive (no end-of-central-directory record): the file is truncated or not a "
           "PyTorch .pth file", label);
  const unsigned char* e = data + eocd;
  uint64_t disk = le16(e + 4), cd_disk = le16(e + 6), n_disk = le16(e + 8), n_total = le16(e + 10);
  uint64_t cd_size = le32(e + 12), cd_offset = le32(e + 16);
  size_t cd_limit = eocd;  // the central directory ends before this

  // zip64: a locator just before the EOCD points at the zip64 EOCD record with 64-bit fields.
  if (eocd >= kZip64LocatorSize && le32(data + eocd - kZip64LocatorSize) == kSigZip64Locator) {
    const unsigned char* loc = data + eocd - kZip64LocatorSize;
    const uint64_t rec = le64(loc + 8);
    IB_CHECK(rec <= eocd - kZip64LocatorSize && eocd - kZip64LocatorSize - rec >= kZip64EocdSize,
             "'{}': zip64 end-of-central-directory offset {} is outside the file", label, rec);
    const unsigned char* z = data + rec;
    IB_CHECK(le32(z) == kSigZip64Eocd, "'{}': bad zip64 end-of-central-directory signature at offset {}", label, rec);
    disk = le32(z + 16);
    cd_disk = le32(z + 20);
    n_disk = le64(z + 24);
    n_total = le64(z + 32);
    cd_size = le64(z + 40);
    cd_offset = le64(z + 48);
    cd_limit = static_cast<size_t>(rec);
  } else {
    IB_CHECK(n_total != 0xffff && cd_size != 0xffffffffu && cd_offset != 0xffffffffu,
             "'{}': the zip archive needs zip64 records but has none; the file is truncated or corrupt", label);
  }
  IB_CHECK(disk == 0 && cd_disk == 0 && n_disk == n_total, "'{}': multi-disk zip archives are not supported", label);
  IB_CHECK(cd_offset <= cd_limit && cd_size <= cd_limit - cd_offset,
           "'{}': zip central directory (offset {}, {} bytes) runs outside the file ({} bytes); the file is "
           "truncated or corrupt", label, cd_offset, cd_size, size);
  IB_CHECK(n_total <= cd_size / kCentralSize, "'{}': zip central directory of {} bytes cannot hold {} entries", label,
           cd_size, n_total);

  std::vector<ZipEntry> entries;
  entries.reserve(static_cast<size_t>(n_total));
  size_t p = static_cast<size_t>(cd_offset);
  const size_t cd_end = static_cast<size_t>(cd_offset + cd_size);
  for (uint64_t i = 0; i < n_total; ++i) {
    IB_CHECK(cd_end - p >= kCentralSize && le32(data + p) == kSigCentral,
             "'{}': zip central directory entry {} is malformed (offset {})", label, i, p);
    const unsigned char* c = data + p;
    const uint16_t flags = le16(c + 8), method = le16(c + 10);
    uint64_t csize = le32(c + 20), usize = le32(c + 24);
    const size_t name_len = le16(c + 28), extra_len = le16(c + 30), comment_len = le16(c + 32);
    uint64_t disk_start = le16(c + 34);
    uint64_t local = le32(c + 42);
    IB_CHECK(cd_end - p - kCentralSize >= name_len + extra_len + comment_len,
             "'{}': zip central directory entry {} runs past the directory", label, i);
    ZipEntry entry;
    entry.name.assign(reinterpret_cast<const char*>(c + kCentralSize), name_len);

    // zip64 extra field: 64-bit values replace the 32-bit fields that are saturated, in this order.
    const unsigned char* x = c + kCentralSize + name_len;
    for (size_t q = 0; q + 4 <= extra_len;) {
      const uint16_t id = le16(x + q), len = le16(x + q + 2);
      IB_CHECK(q + 4 + len <= extra_len, "'{}': zip entry '{}' has a malformed extra field", label, entry.name);
      if (id == 0x0001) {
        const unsigned char* f = x + q + 4;
        size_t k = 0;
        auto take = [&](uint64_t& v) {
          IB_CHECK(k + 8 <= len, "'{}': zip entry '{}' has a short zip64 extra field", label, entry.name);
          v = le64(f + k);
          k += 8;
        };
        if (usize == 0xffffffffu) take(usize);
        if (csize == 0xffffffffu) take(csize);
        if (local == 0xffffffffu) take(local);
        if (disk_start == 0xffff && k + 4 <= len) disk_start = le32(f + k);
      }
      q += 4 + len;
    }
    IB_CHECK(!(flags & 1u), "'{}': zip entry '{}' is encrypted", label, entry.name);
    IB_CHECK(method == 0,
             "'{}': zip entry '{}' is compressed (method {}, {}); only stored (uncompressed) entries are supported, "
             "as torch.save writes them", label, entry.name, method, method_name(method));
    IB_CHECK(csize == usize, "'{}': stored zip entry '{}' has compressed size {} != size {}", label, entry.name, csize,
             usize);
    IB_CHECK(disk_start == 0, "'{}': zip entry '{}' is on another disk", label, entry.name);
    IB_CHECK(local <= size && size - local >= kLocalSize && le32(data + local) == kSigLocal,
             "'{}': zip entry '{}' has a bad local header offset {}; the file is truncated or corrupt", label,
             entry.name, local);
    const uint64_t data_start = local + kLocalSize + le16(data + local + 26) + le16(data + local + 28);
    IB_CHECK(data_start <= size && usize <= size - data_start,
             "'{}': zip entry '{}' ({} bytes at offset {}) runs past the end of the file ({} bytes); the file is "
             "truncated", label, entry.name, usize, data_start, size);
    entry.offset = static_cast<size_t>(data_start);
    entry.size = static_cast<size_t>(usize);
    entries.push_back(std::move(entry));
    p += kCentralSize + name_len + extra_len + comment_len;
  }
  return entries;
}

}  // namespace ib
