#include "io/safetensors.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/model_folder.h"

namespace ib {

namespace {

uint64_t read_u64_le(const unsigned char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

}  // namespace

SafetensorsHeader parse_safetensors_header(const unsigned char* data, size_t size, const std::string& path) {
  IB_CHECK(size >= 8, "'{}' is not a safetensors file: {} bytes, too short for the header length", path, size);
  const uint64_t n = read_u64_le(data);
  // The format allows 100 MB, which parsed as JSON costs gigabytes; real headers are < 1 MB.
  IB_CHECK(n >= 2, "'{}': safetensors header length {} is invalid", path, n);
  IB_CHECK(n <= kSafetensorsHeaderLimits.max_bytes,
           "'{}': safetensors header length {} is more than the limit of {} bytes for a safetensors header", path, n,
           kSafetensorsHeaderLimits.max_bytes);
  IB_CHECK(n <= size - 8, "'{}' is truncated: header of {} bytes but the file has {}", path, n, size);
  SafetensorsHeader h;
  h.data_offset = 8 + static_cast<size_t>(n);
  const size_t data_size = size - h.data_offset;

  const nlohmann::json j = parse_json_limited(data + 8, static_cast<size_t>(n), path, kSafetensorsHeaderLimits);
  IB_CHECK(j.is_object(), "'{}': safetensors header is not a JSON object", path);

  std::vector<std::pair<size_t, size_t>> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    const auto& v = it.value();
    if (name == "__metadata__") {
      IB_CHECK(v.is_object(), "'{}': __metadata__ is not an object", path);
      for (auto m = v.begin(); m != v.end(); ++m)
        if (m.value().is_string()) h.metadata[m.key()] = m.value().get<std::string>();
      continue;
    }
    IB_CHECK(v.is_object() && v.contains("dtype") && v.contains("shape") && v.contains("data_offsets"),
             "'{}': tensor '{}' lacks dtype, shape or data_offsets", path, name);
    IB_CHECK(v["dtype"].is_string(), "'{}': tensor '{}' has a non-string dtype", path, name);
    SafetensorsEntry e;
    try {
      e.dtype = dtype_from_safetensors(v["dtype"].get<std::string>());
    } catch (const Error& err) {
      fail("'{}': tensor '{}': {}", path, name, err.what());
    }
    const auto& shape = v["shape"];
    IB_CHECK(shape.is_array() && shape.size() <= 16, "'{}': tensor '{}' has an invalid shape", path, name);
    uint64_t numel = 1;
    for (const auto& d : shape) {
      IB_CHECK(d.is_number_unsigned(), "'{}': tensor '{}' has a non-integer or negative dimension", path, name);
      const uint64_t dv = d.get<uint64_t>();
      IB_CHECK(dv <= (1ull << 40) && (dv == 0 || numel <= (1ull << 50) / dv),
               "'{}': tensor '{}' is impossibly large", path, name);
      numel *= dv;
      e.shape.push_back(static_cast<int64_t>(dv));
    }
    const auto& off = v["data_offsets"];
    IB_CHECK(off.is_array() && off.size() == 2 && off[0].is_number_unsigned() && off[1].is_number_unsigned(),
             "'{}': tensor '{}' has invalid data_offsets", path, name);
    const uint64_t b = off[0].get<uint64_t>(), en = off[1].get<uint64_t>();
    IB_CHECK(b <= en, "'{}': tensor '{}' has data_offsets [{}, {}] that run backwards", path, name, b, en);
    IB_CHECK(en <= data_size, "'{}': tensor '{}' has data_offsets [{}, {}] past the end of the data ({} bytes); "
             "the file is truncated or corrupt", path, name, b, en, data_size);
    IB_CHECK(en - b == numel * dtype_size(e.dtype),
             "'{}': tensor '{}' is {} {}, which needs {} bytes, but data_offsets span {}", path, name,
             dtype_name(e.dtype), shape_str(e.shape), numel * dtype_size(e.dtype), en - b);
    e.begin = static_cast<size_t>(b);
    e.end = static_cast<size_t>(en);
    if (e.end > e.begin) ranges.emplace_back(e.begin, e.end);
    h.tensors.emplace(name, std::move(e));
  }
  std::sort(ranges.begin(), ranges.end());
  for (size_t i = 1; i < ranges.size(); ++i)
    IB_CHECK(ranges[i].first >= ranges[i - 1].second, "'{}': tensors overlap in the data block (bytes {}..{} and {}..{})",
             path, ranges[i - 1].first, ranges[i - 1].second, ranges[i].first, ranges[i].second);
  return h;
}

std::shared_ptr<SafetensorsFile> SafetensorsFile::open(const std::string& path) {
  auto f = std::shared_ptr<SafetensorsFile>(new SafetensorsFile());
  require_regular_file(path, "safetensors file");
  f->file_ = MappedFile::open(path);
  f->header_ = parse_safetensors_header(f->file_->data(), f->file_->size(), path);
  return f;
}

bool SafetensorsFile::contains(const std::string& name) const { return header_.tensors.count(name) != 0; }

std::vector<std::string> SafetensorsFile::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : header_.tensors) out.push_back(k);
  return out;
}

TensorInfo SafetensorsFile::info(const std::string& name) const {
  auto it = header_.tensors.find(name);
  IB_CHECK(it != header_.tensors.end(), "tensor '{}' is missing from {}", name, file_->path());
  return {it->second.dtype, it->second.shape};
}

Tensor SafetensorsFile::get(const std::string& name) const {
  auto it = header_.tensors.find(name);
  IB_CHECK(it != header_.tensors.end(), "tensor '{}' is missing from {}", name, file_->path());
  const SafetensorsEntry& e = it->second;
  const unsigned char* p = file_->data() + header_.data_offset + e.begin;
  const size_t bytes = e.end - e.begin;
  if (reinterpret_cast<uintptr_t>(p) % dtype_size(e.dtype) != 0) {  // misaligned: copy
    Tensor t = Tensor::empty(e.shape, e.dtype);
    std::memcpy(t.raw(), p, bytes);
    return t;
  }
  auto storage = Storage::borrow(const_cast<unsigned char*>(p), bytes, Device::CPU, file_);
  return Tensor::from_storage(std::move(storage), 0, e.shape, e.dtype);
}

std::string SafetensorsFile::source(const std::string&) const { return file_->path(); }

void SafetensorsFile::release(const std::string& name) const {
  auto it = header_.tensors.find(name);
  if (it == header_.tensors.end()) return;
  file_->release(header_.data_offset + it->second.begin, it->second.end - it->second.begin);
}

std::shared_ptr<ShardedSafetensors> ShardedSafetensors::open(const std::string& index_path) {
  require_regular_file(index_path, "shard index");
  auto mf = MappedFile::open(index_path);
  const nlohmann::json j = parse_json_limited(mf->data(), mf->size(), index_path, kIndexJsonLimits);
  IB_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
           "'{}' has no weight_map object", index_path);
  auto s = std::shared_ptr<ShardedSafetensors>(new ShardedSafetensors());
  s->index_path_ = index_path;
  const std::filesystem::path dir = std::filesystem::path(index_path).parent_path();
  const nlohmann::json& weight_map = j["weight_map"];
  for (auto it = weight_map.begin(); it != weight_map.end(); ++it) {
    IB_CHECK(it.value().is_string(), "'{}': weight_map entry '{}' is not a file name", index_path, it.key());
    const std::string file = it.value().get<std::string>();
    IB_CHECK(file.find('/') == std::string::npos && file.find("..") == std::string::npos && !file.empty(),
             "'{}': shard name '{}' must be a plain file name", index_path, file);
    if (!s->shards_.count(file)) {
      const std::string shard_path = (dir / file).string();
      IB_CHECK(std::filesystem::exists(shard_path), "shard '{}' listed in '{}' is missing", shard_path, index_path);
      s->shards_[file] = SafetensorsFile::open(shard_path);
    }
    IB_CHECK(s->shards_[file]->contains(it.key()), "tensor '{}' is listed in '{}' but missing from shard '{}'",
             it.key(), index_path, file);
    s->weight_map_[it.key()] = file;
  }
  return s;
}

bool ShardedSafetensors::contains(const std::string& name) const { return weight_map_.count(name) != 0; }

std::vector<std::string> ShardedSafetensors::names() const {
  std::vector<std::string> out;
  for (const auto& [k, v] : weight_map_) out.push_back(k);
  return out;
}

TensorInfo ShardedSafetensors::info(const std::string& name) const {
  auto it = weight_map_.find(name);
  IB_CHECK(it != weight_map_.end(), "tensor '{}' is missing from {}", name, index_path_);
  return shards_.at(it->second)->info(name);
}

Tensor ShardedSafetensors::get(const std::string& name) const {
  auto it = weight_map_.find(name);
  IB_CHECK(it != weight_map_.end(), "tensor '{}' is missing from {}", name, index_path_);
  return shards_.at(it->second)->get(name);
}

void ShardedSafetensors::release(const std::string& name) const {
  auto it = weight_map_.find(name);
  if (it != weight_map_.end()) shards_.at(it->second)->release(name);
}

std::string ShardedSafetensors::source(const std::string& name) const {
  auto it = weight_map_.find(name);
  if (it == weight_map_.end()) return index_path_;
  return shards_.at(it->second)->source(name);
}

void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata) {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata.empty()) h["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    IB_CHECK(t.defined(), "save_safetensors: tensor '{}' is undefined", name);
    h[name] = {{"dtype", dtype_to_safetensors(t.dtype())}, {"shape", t.shape()},
               {"data_offsets", {offset, offset + t.nbytes()}}};
    offset += t.nbytes();
  }
  std::string header = h.dump();
  header.append((8 - header.size() % 8) % 8, ' ');  // align the data block to 8 bytes
  unsigned char len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<unsigned char>(n >> (8 * i));
  AtomicFile out(path);
  out.write(len, 8);
  out.write(header.data(), header.size());
  for (const auto& [name, t] : tensors) {
    const Tensor c = t.to(Device::CPU);
    out.write(c.raw(), c.nbytes());
  }
  out.commit();
}

}  // namespace ib
