#include "byte_ranges.h"

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <random>

namespace ib::server {

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool number(std::string_view s, uint64_t& out) {
  if (s.empty()) return false;
  const auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

}  // namespace

RangePlan plan_ranges(std::string_view header, uint64_t size, size_t max_ranges) {
  // Ranges closer than a part's headers are sent as one (RFC 9110 §14.6 allows it).
  constexpr uint64_t kGap = 80;
  RangePlan plan;
  header = trim(header);
  if (header.size() < 6 || (header.substr(0, 6) != "bytes=" && header.substr(0, 6) != "BYTES=")) return plan;
  std::vector<ByteRange> ranges;
  std::string_view rest = header.substr(6);
  for (;;) {
    const size_t comma = rest.find(',');
    const std::string_view spec = trim(rest.substr(0, comma));
    const size_t dash = spec.find('-');
    if (dash == std::string_view::npos) return plan;  // not a range set: ignored
    uint64_t a = 0, b = 0;
    const std::string_view lo = spec.substr(0, dash), hi = spec.substr(dash + 1);
    if (lo.empty()) {  // "-N": the last N bytes
      if (!number(hi, b)) return plan;
      if (b > 0 && size > 0) ranges.push_back({size - std::min(b, size), size - 1});
    } else {
      if (!number(lo, a) || (!hi.empty() && (!number(hi, b) || b < a))) return plan;
      if (a < size) ranges.push_back({a, hi.empty() ? size - 1 : std::min(b, size - 1)});
    }
    if (comma == std::string_view::npos) break;
    rest = rest.substr(comma + 1);
  }
  if (ranges.empty()) {
    plan.kind = RangePlan::Kind::Unsatisfiable;
    return plan;
  }
  std::sort(ranges.begin(), ranges.end(), [](const ByteRange& x, const ByteRange& y) { return x.first < y.first; });
  std::vector<ByteRange> merged = {ranges.front()};
  for (const ByteRange& r : ranges) {
    ByteRange& back = merged.back();
    if (r.first <= back.last + 1 + kGap) {
      back.last = std::max(back.last, r.last);
    } else {
      merged.push_back(r);
    }
  }
  if (merged.size() > max_ranges) return plan;  // the whole file: never more than its size
  plan.kind = RangePlan::Kind::Partial;
  plan.ranges = std::move(merged);
  return plan;
}

std::string content_range(const ByteRange& r, uint64_t size) {
  return "bytes " + std::to_string(r.first) + "-" + std::to_string(r.last) + "/" + std::to_string(size);
}

MultipartRanges multipart_ranges(const std::vector<ByteRange>& ranges, uint64_t size, const std::string& type) {
  MultipartRanges m;
  std::random_device rd;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%08x%08x", rd(), rd());
  m.boundary = std::string("inbetween-") + hex;
  auto text = [&](std::string s) {
    m.length += s.size();
    const uint64_t n = s.size();
    m.pieces.push_back({std::move(s), 0, n});
  };
  for (size_t i = 0; i < ranges.size(); ++i) {
    text(std::string(i == 0 ? "" : "\r\n") + "--" + m.boundary + "\r\nContent-Type: " + type +
         "\r\nContent-Range: " + content_range(ranges[i], size) + "\r\n\r\n");
    const uint64_t n = ranges[i].last - ranges[i].first + 1;
    m.pieces.push_back({"", ranges[i].first, n});
    m.length += n;
  }
  text("\r\n--" + m.boundary + "--\r\n");
  return m;
}

}  // namespace ib::server
