// Test helpers that write state-dict pickles and stored zip archives byte by byte, so tests can
// build well-formed .pth files with unusual layouts and deliberately broken ones.
#pragma once

#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

namespace ib::test {

class PickleBuilder {
 public:
  PickleBuilder& op(unsigned char c) { b_.push_back(static_cast<char>(c)); return *this; }
  PickleBuilder& raw(const std::string& s) { b_ += s; return *this; }
  PickleBuilder& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) b_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  PickleBuilder& proto(int p) { return op(0x80).le(static_cast<uint64_t>(p), 1); }
  PickleBuilder& mark() { return op('('); }
  PickleBuilder& stop() { return op('.'); }
  PickleBuilder& global(const std::string& module, const std::string& name) {
    return op('c').raw(module + "\n" + name + "\n");
  }
  PickleBuilder& str(const std::string& s) { return op('X').le(s.size(), 4).raw(s); }
  PickleBuilder& integer(int64_t v) {
    if (v >= 0 && v < 256) return op('K').le(static_cast<uint64_t>(v), 1);
    if (v >= 0 && v < 65536) return op('M').le(static_cast<uint64_t>(v), 2);
    return op('J').le(static_cast<uint64_t>(v), 4);
  }
  PickleBuilder& tuple_of(const std::vector<int64_t>& v) {
    mark();
    for (int64_t x : v) integer(x);
    return op('t');
  }
  PickleBuilder& ordered_dict() { return global("collections", "OrderedDict").op(')').op('R'); }
  PickleBuilder& put(uint8_t i) { return op('q').le(i, 1); }
  PickleBuilder& get(uint8_t i) { return op('h').le(i, 1); }

  // name -> _rebuild_tensor_v2(('storage', torch.<cls>, key, 'cpu', numel), offset, size, stride, False,
  // OrderedDict()); the caller wraps a run of these in MARK ... SETITEMS.
  PickleBuilder& tensor(const std::string& name, const std::string& cls, const std::string& key, int64_t numel,
                        int64_t offset, const std::vector<int64_t>& size, const std::vector<int64_t>& stride) {
    str(name);
    global("torch._utils", "_rebuild_tensor_v2");
    mark();
    mark().str("storage").global("torch", cls).str(key).str("cpu").integer(numel).op('t').op('Q');
    integer(offset).tuple_of(size).tuple_of(stride).op(0x89).ordered_dict();
    return op('t').op('R');
  }

  const std::string& bytes() const { return b_; }

 private:
  std::string b_;
};

struct ZipItem {
  std::string name;
  std::string data;
  uint16_t method = 0;  // 0 = stored; anything else marks the entry as compressed
};

// Writes a zip archive of stored entries; `zip64` forces zip64 records (saturated 32-bit fields with
// the real values in the zip64 extra field and end records), as torch writes for files over 4 GiB.
// Entry data is aligned to 64 bytes like torch's writer does.
inline std::string make_zip(const std::vector<ZipItem>& items, bool zip64 = false) {
  std::string out, cd;
  auto le = [](std::string& s, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  for (const auto& it : items) {
    const uint64_t local = out.size();
    const size_t base = out.size() + 30 + it.name.size() + 4;
    const size_t pad = (64 - base % 64) % 64;
    le(out, 0x04034b50, 4);
    le(out, 20, 2);
    le(out, 0, 2);
    le(out, it.method, 2);
    le(out, 0, 4);  // time, date
    le(out, 0, 4);  // crc (not checked)
    le(out, it.data.size(), 4);
    le(out, it.data.size(), 4);
    le(out, it.name.size(), 2);
    le(out, 4 + pad, 2);
    out += it.name;
    le(out, 0xcafe, 2);  // padding extra field, like torch's "FB" field
    le(out, pad, 2);
    out.append(pad, 'Z');
    out += it.data;

    std::string extra;
    if (zip64) {
      le(extra, 0x0001, 2);
      le(extra, 24, 2);
      le(extra, it.data.size(), 8);
      le(extra, it.data.size(), 8);
      le(extra, local, 8);
    }
    le(cd, 0x02014b50, 4);
    le(cd, 45, 2);
    le(cd, 45, 2);
    le(cd, 0, 2);
    le(cd, it.method, 2);
    le(cd, 0, 4);
    le(cd, 0, 4);
    le(cd, zip64 ? 0xffffffffu : it.data.size(), 4);
    le(cd, zip64 ? 0xffffffffu : it.data.size(), 4);
    le(cd, it.name.size(), 2);
    le(cd, extra.size(), 2);
    le(cd, 0, 2);  // comment
    le(cd, 0, 2);  // disk
    le(cd, 0, 2);
    le(cd, 0, 4);
    le(cd, zip64 ? 0xffffffffu : local, 4);
    cd += it.name;
    cd += extra;
  }
  const uint64_t cd_offset = out.size();
  out += cd;
  if (zip64) {
    const uint64_t rec = out.size();
    le(out, 0x06064b50, 4);
    le(out, 44, 8);
    le(out, 45, 2);
    le(out, 45, 2);
    le(out, 0, 4);
    le(out, 0, 4);
    le(out, items.size(), 8);
    le(out, items.size(), 8);
    le(out, cd.size(), 8);
    le(out, cd_offset, 8);
    le(out, 0x07064b50, 4);
    le(out, 0, 4);
    le(out, rec, 8);
    le(out, 1, 4);
  }
  le(out, 0x06054b50, 4);
  le(out, 0, 2);
  le(out, 0, 2);
  le(out, zip64 ? 0xffff : items.size(), 2);
  le(out, zip64 ? 0xffff : items.size(), 2);
  le(out, zip64 ? 0xffffffffu : cd.size(), 4);
  le(out, zip64 ? 0xffffffffu : cd_offset, 4);
  le(out, 0, 2);
  return out;
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// Raw little-endian bytes of a vector of plain values.
template <typename T>
std::string raw_bytes(const std::vector<T>& v) {
  return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

}  // namespace ib::test
