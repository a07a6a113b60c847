// .pth writer: a protocol-2 pickle laid out the way Python's pickler writes torch.save's state dict
// (memoized strings and globals, TUPLE1..3 for short tuples, SETITEM for a single item), inside a
// stored ZIP whose data entries start on 64-byte boundaries (torch's 'FB' padding extra field).
#include "io/pth_writer.h"

#include <array>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "core/check.h"
#include "io/atomic_file.h"

namespace ib {
namespace {

constexpr uint32_t kMax32 = 0xFFFFFFFFu;
constexpr size_t kAlignment = 64;

void put16(std::string& s, uint32_t v) {
  s.push_back(static_cast<char>(v & 0xFF));
  s.push_back(static_cast<char>((v >> 8) & 0xFF));
}
void put32(std::string& s, uint32_t v) {
  put16(s, v & 0xFFFF);
  put16(s, v >> 16);
}
void put64(std::string& s, uint64_t v) {
  put32(s, static_cast<uint32_t>(v & kMax32));
  put32(s, static_cast<uint32_t>(v >> 32));
}

// CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320), as ZIP uses.
const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1u) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  return table;
}

uint32_t crc32(const void* data, size_t n) {
  const auto& t = crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = kMax32;
  for (size_t i = 0; i < n; ++i) c = t[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ kMax32;
}

// The few pickle opcodes a state dict needs, with Python's memo behaviour.
class Pickler {
 public:
  Pickler() { out_ += "\x80\x02"; }  // PROTO 2

  void global(const std::string& module, const std::string& name) {
    if (reuse(module + "\n" + name)) return;
    out_ += 'c';
    out_ += module + "\n" + name + "\n";
    memoize(module + "\n" + name);
  }
  void str(const std::string& s) {
    if (reuse("\x01" + s)) return;  // a prefix no global key has
    IB_CHECK(s.size() < kMax32, "save_pth: key of {} bytes is too long", s.size());
    out_ += 'X';  // BINUNICODE
    put32(out_, static_cast<uint32_t>(s.size()));
    out_ += s;
    memoize("\x01" + s);
  }
  void integer(int64_t v) {
    if (v >= 0 && v < 256) {
      out_ += 'K';  // BININT1
      out_ += static_cast<char>(v);
    } else if (v >= 0 && v < 65536) {
      out_ += 'M';  // BININT2
      put16(out_, static_cast<uint32_t>(v));
    } else if (v >= INT32_MIN && v <= INT32_MAX) {
      out_ += 'J';  // BININT
      put32(out_, static_cast<uint32_t>(static_cast<int32_t>(v)));
    } else {
      // LONG1: the shortest little-endian two's complement form.
      std::string bytes;
      const auto u = static_cast<uint64_t>(v);
      for (int i = 0; i < 8; ++i) bytes.push_back(static_cast<char>((u >> (8 * i)) & 0xFF));
      while (bytes.size() > 1) {
        const auto last = static_cast<unsigned char>(bytes.back());
        const auto prev = static_cast<unsigned char>(bytes[bytes.size() - 2]);
        if ((last == 0x00 && !(prev & 0x80)) || (last == 0xFF && (prev & 0x80))) {
          bytes.pop_back();
        } else {
          break;
        }
      }
      out_ += '\x8a';
      out_ += static_cast<char>(bytes.size());
      out_ += bytes;
    }
  }
  void ints_tuple(const std::vector<int64_t>& v) {
    if (v.empty()) {
      out_ += ')';  // EMPTY_TUPLE, never memoized
      return;
    }
    if (v.size() > 3) out_ += '(';
    for (int64_t x : v) integer(x);
    end_tuple(v.size());
  }
  void mark() { out_ += '('; }
  // Closes a tuple of n items (a MARK precedes them when n > 3).
  void end_tuple(size_t n) {
    if (n >= 1 && n <= 3) {
      out_ += static_cast<char>(0x84 + n);  // TUPLE1..TUPLE3
    } else {
      out_ += 't';
    }
    memoize("");
  }
  void empty_ordered_dict() {
    global("collections", "OrderedDict");
    out_ += ")R";  // EMPTY_TUPLE REDUCE
    memoize("");
  }
  void op(char c) { out_ += c; }
  void reduce() {
    out_ += 'R';
    memoize("");
  }
  std::string finish() {
    out_ += '.';
    return std::move(out_);
  }

 private:
  bool reuse(const std::string& key) {
    const auto it = memo_.find(key);
    if (it == memo_.end()) return false;
    if (it->second < 256) {
      out_ += 'h';  // BINGET
      out_ += static_cast<char>(it->second);
    } else {
      out_ += 'j';  // LONG_BINGET
      put32(out_, it->second);
    }
    return true;
  }
  // Stores the top of the stack in the next memo slot; `key` (when not empty) lets it be reused.
  void memoize(const std::string& key) {
    const uint32_t idx = next_++;
    if (idx < 256) {
      out_ += 'q';  // BINPUT
      out_ += static_cast<char>(idx);
    } else {
      out_ += 'r';  // LONG_BINPUT
      put32(out_, idx);
    }
    if (!key.empty()) memo_[key] = idx;
  }

  std::string out_;
  std::map<std::string, uint32_t> memo_;
  uint32_t next_ = 0;
};

const char* storage_class(DType t) {
  switch (t) {
    case DType::F32: return "FloatStorage";
    case DType::F16: return "HalfStorage";
    case DType::BF16: return "BFloat16Storage";
    default: return nullptr;
  }
}

// Contiguous strides as torch computes them (sizes of 0 count as 1).
std::vector<int64_t> contiguous_stride(const Shape& shape) {
  std::vector<int64_t> stride(shape.size());
  int64_t s = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    stride[i] = s;
    s *= std::max<int64_t>(shape[i], 1);
  }
  return stride;
}

std::string state_dict_pickle(const std::vector<std::pair<std::string, Tensor>>& tensors) {
  Pickler p;
  p.global("collections", "OrderedDict");
  p.op(')');
  p.reduce();
  // Python batches SETITEMS by 1000 and uses SETITEM for a batch of one.
  for (size_t begin = 0; begin < tensors.size(); begin += 1000) {
    const size_t end = std::min(tensors.size(), begin + 1000);
    if (end - begin > 1) p.mark();
    for (size_t i = begin; i < end; ++i) {
      const Tensor& t = tensors[i].second;
      p.str(tensors[i].first);
      p.global("torch._utils", "_rebuild_tensor_v2");
      p.mark();  // the 6 arguments
      p.mark();  // persistent id ('storage', class, key, location, numel)
      p.str("storage");
      p.global("torch", storage_class(t.dtype()));
      p.str(std::to_string(i));
      p.str("cpu");
      p.integer(t.numel());
      p.end_tuple(5);
      p.op('Q');  // BINPERSID
      p.integer(0);  // storage_offset
      p.ints_tuple(t.shape());
      p.ints_tuple(contiguous_stride(t.shape()));
      p.op('\x89');  // NEWFALSE: requires_grad
      p.empty_ordered_dict();  // backward_hooks
      p.end_tuple(6);
      p.reduce();
    }
    p.op(end - begin > 1 ? 'u' : 's');  // SETITEMS / SETITEM
  }
  return p.finish();
}

std::string archive_folder(const std::string& path) {
  std::string stem = std::filesystem::path(path).stem().string();
  for (char& c : stem) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == '-';
    if (!ok) c = '_';
  }
  return stem.empty() ? "archive" : stem;
}

struct CentralRecord {
  std::string name;
  uint64_t size = 0;
  uint32_t crc = 0;
  uint64_t offset = 0;  // of the local header
};

// Streams stored entries into an AtomicFile and finishes with the central directory.
class ZipWriter {
 public:
  ZipWriter(AtomicFile& out, bool force_zip64) : out_(out), force_zip64_(force_zip64) {}

  void add(const std::string& name, const void* data, uint64_t size) {
    IB_CHECK(name.size() < 0xFFFF, "save_pth: entry name too long");
    CentralRecord r{name, size, crc32(data, size), cursor_};
    const bool zip64 = force_zip64_ || size >= kMax32;
    std::string extra;
    if (zip64) {
      put16(extra, 0x0001);
      put16(extra, 16);
      put64(extra, size);
      put64(extra, size);
    }
    // torch's alignment: an extra field 'FB' whose payload pads the data start to 64 bytes.
    const uint64_t start = cursor_ + 30 + name.size() + extra.size() + 4;
    const auto pad = static_cast<uint32_t>((kAlignment - start % kAlignment) % kAlignment);
    put16(extra, 0x4246);
    put16(extra, pad);
    extra.append(pad, 'Z');

    std::string h;
    put32(h, 0x04034b50);
    put16(h, zip64 ? 45 : 20);  // version needed
    put16(h, 0);                // flags
    put16(h, 0);                // method: stored
    put16(h, 0);                // time 00:00:00
    put16(h, 0x21);             // date 1980-01-01
    put32(h, r.crc);
    put32(h, zip64 ? kMax32 : static_cast<uint32_t>(size));
    put32(h, zip64 ? kMax32 : static_cast<uint32_t>(size));
    put16(h, static_cast<uint32_t>(name.size()));
    put16(h, static_cast<uint32_t>(extra.size()));
    h += name;
    h += extra;
    out_.write(h.data(), h.size());
    out_.write(data, size);
    cursor_ += h.size() + size;
    records_.push_back(std::move(r));
  }

  void finish() {
    const uint64_t cd_offset = cursor_;
    std::string cd;
    for (const CentralRecord& r : records_) {
      const bool big_size = force_zip64_ || r.size >= kMax32;
      const bool big_offset = force_zip64_ || r.offset >= kMax32;
      std::string extra;
      if (big_size || big_offset) {
        put16(extra, 0x0001);
        put16(extra, (big_size ? 16 : 0) + (big_offset ? 8 : 0));
        if (big_size) {
          put64(extra, r.size);
          put64(extra, r.size);
        }
        if (big_offset) put64(extra, r.offset);
      }
      const uint32_t version = extra.empty() ? 20 : 45;
      put32(cd, 0x02014b50);
      put16(cd, version);  // made by (MS-DOS attributes)
      put16(cd, version);  // needed
      put16(cd, 0);
      put16(cd, 0);
      put16(cd, 0);
      put16(cd, 0x21);
      put32(cd, r.crc);
      put32(cd, big_size ? kMax32 : static_cast<uint32_t>(r.size));
      put32(cd, big_size ? kMax32 : static_cast<uint32_t>(r.size));
      put16(cd, static_cast<uint32_t>(r.name.size()));
      put16(cd, static_cast<uint32_t>(extra.size()));
      put16(cd, 0);  // comment
      put16(cd, 0);  // disk
      put16(cd, 0);  // internal attributes
      put32(cd, 0);  // external attributes
      put32(cd, big_offset ? kMax32 : static_cast<uint32_t>(r.offset));
      cd += r.name;
      cd += extra;
    }
    const uint64_t cd_size = cd.size();
    const uint64_t count = records_.size();
    const bool zip64_end = force_zip64_ || count >= 0xFFFF || cd_size >= kMax32 || cd_offset >= kMax32;
    if (zip64_end) {
      const uint64_t end64 = cd_offset + cd_size;
      put32(cd, 0x06064b50);
      put64(cd, 44);  // size of the rest of this record
      put16(cd, 45);
      put16(cd, 45);
      put32(cd, 0);
      put32(cd, 0);
      put64(cd, count);
      put64(cd, count);
      put64(cd, cd_size);
      put64(cd, cd_offset);
      put32(cd, 0x07064b50);  // locator
      put32(cd, 0);
      put64(cd, end64);
      put32(cd, 1);
    }
    put32(cd, 0x06054b50);
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, zip64_end ? 0xFFFF : static_cast<uint32_t>(count));
    put16(cd, zip64_end ? 0xFFFF : static_cast<uint32_t>(count));
    put32(cd, zip64_end ? kMax32 : static_cast<uint32_t>(cd_size));
    put32(cd, zip64_end ? kMax32 : static_cast<uint32_t>(cd_offset));
    put16(cd, 0);  // comment
    out_.write(cd.data(), cd.size());
  }

 private:
  AtomicFile& out_;
  bool force_zip64_;
  uint64_t cursor_ = 0;
  std::vector<CentralRecord> records_;
};

void write_pth(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
               bool force_zip64) {
  std::set<std::string> seen;
  std::vector<Tensor> cpu;
  cpu.reserve(tensors.size());
  for (const auto& [name, t] : tensors) {
    IB_CHECK(t.defined(), "save_pth '{}': tensor '{}' is undefined", path, name);
    IB_CHECK(storage_class(t.dtype()) != nullptr, "save_pth '{}': tensor '{}' is {}; only f32, f16 and bf16 are written",
             path, name, dtype_name(t.dtype()));
    IB_CHECK(seen.insert(name).second, "save_pth '{}': key '{}' appears twice", path, name);
    cpu.push_back(t.to(Device::CPU));
  }
  const std::string top = archive_folder(path);
  const std::string pickle = state_dict_pickle(tensors);

  AtomicFile out(path);
  ZipWriter zip(out, force_zip64);
  zip.add(top + "/data.pkl", pickle.data(), pickle.size());
  zip.add(top + "/byteorder", "little", 6);
  for (size_t i = 0; i < cpu.size(); ++i) {
    const void* data = cpu[i].numel() > 0 ? cpu[i].raw() : "";
    zip.add(top + "/data/" + std::to_string(i), data, cpu[i].nbytes());
  }
  zip.add(top + "/version", "3\n", 2);
  zip.finish();
  out.commit();
}

}  // namespace

void save_pth(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  write_pth(path, tensors, false);
}

namespace detail {
void save_pth_forced_zip64(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors) {
  write_pth(path, tensors, true);
}
}  // namespace detail

}  // namespace ib
