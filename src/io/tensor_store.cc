#include "io/tensor_store.h"

#include <algorithm>
#include <filesystem>

#include "io/pth.h"
#include "io/safetensors.h"
#include "io/scaled_fp8_store.h"

namespace ib {

namespace {
bool shape_matches(const Shape& want, const Shape& got) {
  if (want.size() != got.size()) return false;
  for (size_t i = 0; i < want.size(); ++i)
    if (want[i] != -1 && want[i] != got[i]) return false;
  return true;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}
}  // namespace

Tensor require(const TensorStore& store, const std::string& name, const std::optional<Shape>& shape,
               std::optional<DType> dtype) {
  IB_CHECK(store.contains(name), "tensor '{}' is missing from {}", name, store.source(name));
  const TensorInfo inf = store.info(name);
  if (shape) {
    IB_CHECK(shape_matches(*shape, inf.shape), "tensor '{}' in {}: expected shape {}, found {}", name,
             store.source(name), shape_str(*shape), shape_str(inf.shape));
  }
  if (dtype) {
    IB_CHECK(dtype_is_float(inf.dtype) == dtype_is_float(*dtype),
             "tensor '{}' in {}: expected a {} tensor, found {}", name, store.source(name),
             dtype_name(*dtype), dtype_name(inf.dtype));
  }
  Tensor t = store.get(name);
  if (dtype && t.dtype() != *dtype) t = t.to(*dtype);
  return t;
}

WeightIndex::WeightIndex(const WeightShapes& list, std::string label) : label_(std::move(label)) {
  for (const auto& [name, shape] : list) shapes_.emplace(name, shape);
}

const Shape& WeightIndex::shape(const std::string& name) const {
  auto it = shapes_.find(name);
  IB_CHECK(it != shapes_.end(), "{}: the loader asks for '{}', which its weight list does not declare", label_, name);
  return it->second;
}

Tensor optional_tensor(const TensorStore& store, const std::string& name, const std::optional<Shape>& shape,
                       std::optional<DType> dtype) {
  if (!store.contains(name)) return Tensor();
  return require(store, name, shape, dtype);
}

std::shared_ptr<TensorStore> open_tensor_store(const std::string& path) {
  IB_CHECK(std::filesystem::exists(path), "file not found: '{}'", path);
  // fp8 checkpoints read as plain releases (their weights dequantised on reading: scaled_fp8_store.h).
  if (ends_with(path, ".index.json")) return with_fp8_dequantisation(ShardedSafetensors::open(path));
  if (ends_with(path, ".safetensors")) return with_fp8_dequantisation(SafetensorsFile::open(path));
  if (ends_with(path, ".pth") || ends_with(path, ".pt") || ends_with(path, ".bin")) return PthFile::open(path);
  fail("'{}': unknown checkpoint format (expected .safetensors, .safetensors.index.json or .pth)", path);
}

MemoryTensorStore::MemoryTensorStore(std::vector<std::pair<std::string, Tensor>> tensors, std::string label)
    : tensors_(std::move(tensors)), label_(std::move(label)) {
  std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
}

bool MemoryTensorStore::contains(const std::string& name) const {
  const auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                                   [](const auto& e, const std::string& n) { return e.first < n; });
  return it != tensors_.end() && it->first == name;
}

std::vector<std::string> MemoryTensorStore::names() const {
  std::vector<std::string> v;
  for (const auto& e : tensors_) v.push_back(e.first);
  return v;
}

TensorInfo MemoryTensorStore::info(const std::string& name) const {
  const Tensor t = get(name);
  return {t.dtype(), t.shape()};
}

Tensor MemoryTensorStore::get(const std::string& name) const {
  const auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                                   [](const auto& e, const std::string& n) { return e.first < n; });
  IB_CHECK(it != tensors_.end() && it->first == name, "tensor '{}' not found in {}", name, label_);
  return it->second;
}

std::string MemoryTensorStore::source(const std::string&) const { return label_; }

}  // namespace ib
