// Range requests (RFC 9110 §14) for the server's downloads: the byte ranges of a Range header
// against a file's size, sorted, with overlapping and nearly adjacent ones merged, and the
// multipart/byteranges body of several. httplib 0.11's own handling sends overlapping ranges as
// often as they are asked for and gives multi-range parts the total size 0, so it is not used.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ib::server {

struct ByteRange {
  uint64_t first = 0, last = 0;  // inclusive
};

struct RangePlan {
  enum class Kind { Whole, Partial, Unsatisfiable };
  Kind kind = Kind::Whole;
  std::vector<ByteRange> ranges;  // Partial: sorted, disjoint, at most max_ranges
};

// No header, one that is not a byte-range set, or one whose ranges stay more than max_ranges
// after merging: the whole file (a server may ignore Range). None satisfiable: Unsatisfiable.
RangePlan plan_ranges(std::string_view header, uint64_t size, size_t max_ranges = 16);

// "bytes FIRST-LAST/SIZE"
std::string content_range(const ByteRange& r, uint64_t size);

// The multipart/byteranges body of several ranges: literal text between pieces of the file.
struct MultipartRanges {
  struct Piece {
    std::string text;         // boundary and part headers, when not a piece of the file
    uint64_t offset = 0, length = 0;  // the file's bytes (text empty) or the text's length
  };
  std::string boundary;
  std::vector<Piece> pieces;
  uint64_t length = 0;  // of the whole body
};
MultipartRanges multipart_ranges(const std::vector<ByteRange>& ranges, uint64_t size, const std::string& type);

}  // namespace ib::server
