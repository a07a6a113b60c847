// safetensors reading (memory-mapped, zero-copy, single file or sharded with an index) and
// writing (atomically: a temporary file renamed into place when complete).
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/mapped_file.h"
#include "io/tensor_store.h"

namespace ib {

struct SafetensorsEntry {
  DType dtype = DType::F32;
  Shape shape;
  size_t begin = 0;  // byte offsets relative to the data block
  size_t end = 0;
};

struct SafetensorsHeader {
  std::map<std::string, SafetensorsEntry> tensors;
  std::map<std::string, std::string> metadata;
  size_t data_offset = 0;  // where the data block starts in the file
};

// Parses and validates the header of a safetensors image of `size` bytes: lengths, JSON, dtypes,
// shapes, offsets inside the data block, sizes matching dtype x shape, no overlaps. Headers larger
// or more deeply nested than kSafetensorsHeaderLimits (io/model_folder.h) are refused before they
// are parsed further. `path` only labels errors. Never reads past `size`.
SafetensorsHeader parse_safetensors_header(const unsigned char* data, size_t size, const std::string& path);

class SafetensorsFile : public TensorStore {
 public:
  static std::shared_ptr<SafetensorsFile> open(const std::string& path);

  bool contains(const std::string& name) const override;
  std::vector<std::string> names() const override;
  TensorInfo info(const std::string& name) const override;
  Tensor get(const std::string& name) const override;
  std::string source(const std::string& name) const override;
  void release(const std::string& name) const override;
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }

 private:
  std::shared_ptr<MappedFile> file_;
  SafetensorsHeader header_;
};

// Several safetensors shards behind a `*.safetensors.index.json` (`weight_map`: name -> shard).
class ShardedSafetensors : public TensorStore {
 public:
  static std::shared_ptr<ShardedSafetensors> open(const std::string& index_path);

  bool contains(const std::string& name) const override;
  std::vector<std::string> names() const override;
  TensorInfo info(const std::string& name) const override;
  Tensor get(const std::string& name) const override;
  std::string source(const std::string& name) const override;
  void release(const std::string& name) const override;

 private:
  std::string index_path_;
  std::map<std::string, std::shared_ptr<SafetensorsFile>> shards_;  // by file name
  std::map<std::string, std::string> weight_map_;                   // tensor -> file name
};

// Writes tensors (any device; copied to the CPU) to `path` atomically. Names keep their order.
void save_safetensors(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors,
                      const std::map<std::string, std::string>& metadata = {});

}  // namespace ib
