// A named set of tensors from one checkpoint (one file or several shards), whatever the format.
// Loaders check each tensor's presence, dtype and shape through `require`, so every error names
// the tensor, the expected and found shape, and the file.
#pragma once

#include <memory>
#include <optional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace ib {

// A checkpoint's tensors by name and shape (each model declares its list beside its loader).
using WeightShapes = std::vector<std::pair<std::string, Shape>>;

// A weight list as the loaders use it: the shape each tensor is declared with, so a loader names
// a tensor and takes its shape from the one declaration. Asking for a name the list lacks is a
// loader/list mismatch and throws ib::Error naming it and the list.
class WeightIndex {
 public:
  WeightIndex(const WeightShapes& list, std::string label);
  const Shape& shape(const std::string& name) const;
  bool contains(const std::string& name) const { return shapes_.count(name) != 0; }

 private:
  std::map<std::string, Shape> shapes_;
  std::string label_;
};

struct TensorInfo {
  DType dtype = DType::F32;
  Shape shape;
};

class TensorStore {
 public:
  virtual ~TensorStore() = default;
  virtual bool contains(const std::string& name) const = 0;
  virtual std::vector<std::string> names() const = 0;  // sorted
  // Throws when absent.
  virtual TensorInfo info(const std::string& name) const = 0;
  // The tensor, without a copy where the file's bytes can be used in place.
  virtual Tensor get(const std::string& name) const = 0;
  // The file that holds `name` (for messages); the store's main path when absent.
  virtual std::string source(const std::string& name) const = 0;
  // `name` was read and is not needed again: a memory-mapped store drops its pages of it from the
  // process's resident memory (a later get() still works: the pages are read again). Tensors held
  // in memory stay. For loaders that copy each weight elsewhere once (the GPU engine's).
  virtual void release(const std::string& name) const { (void)name; }
};

// Looks up `name`, checks its shape (when `shape` is given; -1 matches any size) and converts it to
// `dtype` (when given, float types only). Errors name the tensor, both shapes and the file.
Tensor require(const TensorStore& store, const std::string& name,
               const std::optional<Shape>& shape = std::nullopt,
               std::optional<DType> dtype = std::nullopt);

// Same, for a tensor that may be absent: returns an undefined tensor then.
Tensor optional_tensor(const TensorStore& store, const std::string& name,
                       const std::optional<Shape>& shape = std::nullopt,
                       std::optional<DType> dtype = std::nullopt);

// Tensors held in memory under their names (synthetic models for benchmarks and tests).
class MemoryTensorStore : public TensorStore {
 public:
  explicit MemoryTensorStore(std::vector<std::pair<std::string, Tensor>> tensors, std::string label = "memory");
  bool contains(const std::string& name) const override;
  std::vector<std::string> names() const override;
  TensorInfo info(const std::string& name) const override;
  Tensor get(const std::string& name) const override;
  std::string source(const std::string& name) const override;

 private:
  std::vector<std::pair<std::string, Tensor>> tensors_;  // sorted by name
  std::string label_;
};

// Opens a checkpoint by extension: .safetensors, .safetensors.index.json (sharded) or .pth. A
// safetensors checkpoint with float8 weights reads as a plain release (io/scaled_fp8_store.h).
std::shared_ptr<TensorStore> open_tensor_store(const std::string& path);

}  // namespace ib
