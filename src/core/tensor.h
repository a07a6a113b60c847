// Tensor: shape, dtype, device and shared storage, in PyTorch dimension order (last dim
// contiguous). Tensors are always dense and contiguous; a view shares storage at a byte offset.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "core/check.h"
#include "core/dtype.h"

namespace ib {

using Shape = std::vector<int64_t>;
std::string shape_str(const Shape& s);  // "[2, 3]"
int64_t shape_numel(const Shape& s);

enum class Device : uint8_t { CPU, CUDA };
const char* device_name(Device d);
bool cuda_available();  // built with CUDA and a device is present

// A block of bytes on one device, either allocated here or borrowed (e.g. from a memory map),
// in which case `owner` keeps the lender alive.
class Storage {
 public:
  static std::shared_ptr<Storage> allocate(size_t bytes, Device device);
  static std::shared_ptr<Storage> borrow(void* data, size_t bytes, Device device,
                                         std::shared_ptr<const void> owner);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  Storage() = default;
  void* data_ = nullptr;
  size_t bytes_ = 0;
  Device device_ = Device::CPU;
  bool owned_ = false;
  std::shared_ptr<const void> owner_;
};

template <typename T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::F32; }
template <> constexpr DType dtype_of<double>() { return DType::F64; }
template <> constexpr DType dtype_of<int64_t>() { return DType::I64; }
template <> constexpr DType dtype_of<int32_t>() { return DType::I32; }
template <> constexpr DType dtype_of<uint8_t>() { return DType::U8; }
template <> constexpr DType dtype_of<uint16_t>() { return DType::BF16; }  // raw 16-bit floats

class Tensor {
 public:
  Tensor() = default;

  static Tensor empty(const Shape& shape, DType dtype, Device device = Device::CPU);
  static Tensor zeros(const Shape& shape, DType dtype = DType::F32, Device device = Device::CPU);
  static Tensor full(const Shape& shape, float value);  // f32, CPU
  static Tensor from_storage(std::shared_ptr<Storage> storage, size_t byte_offset,
                             const Shape& shape, DType dtype);
  // An f32 CPU tensor over shape_numel(shape) floats at `data`, not copied: the caller keeps them
  // alive and unchanged while the tensor (or a view of it) is in use.
  static Tensor host_view(const float* data, const Shape& shape);
  template <typename T>
  static Tensor from_vector(const std::vector<T>& v, const Shape& shape) {
    IB_CHECK(static_cast<int64_t>(v.size()) == shape_numel(shape),
             "from_vector: {} values for shape {}", v.size(), shape_str(shape));
    Tensor t = empty(shape, dtype_of<T>());
    std::copy(v.begin(), v.end(), t.data<T>());
    return t;
  }

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t i) const;  // negative i counts from the end
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype_); }
  DType dtype() const { return dtype_; }
  Device device() const { return storage_ ? storage_->device() : Device::CPU; }
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  size_t byte_offset() const { return offset_; }

  void* raw() const { return static_cast<char*>(storage_->data()) + offset_; }
  template <typename T>
  T* data() const {
    IB_CHECK(defined(), "data() on an undefined tensor");
    if constexpr (std::is_same_v<T, uint16_t>) {
      IB_CHECK(dtype_ == DType::BF16 || dtype_ == DType::F16, "tensor is {}, not 16-bit", dtype_name(dtype_));
    } else {
      IB_CHECK(dtype_ == dtype_of<T>(), "tensor is {}, accessed as {}", dtype_name(dtype_),
               dtype_name(dtype_of<T>()));
    }
    return static_cast<T*>(raw());
  }

  // Same data, another shape (one entry may be -1).
  Tensor view(Shape shape) const;
  // Rows [begin, end) of dim 0, sharing storage.
  Tensor slice(int64_t begin, int64_t end) const;
  // Row i of dim 0 without that dimension, sharing storage.
  Tensor select(int64_t i) const;
  // A deep copy on the same device.
  Tensor clone() const;
  // This tensor in another dtype (CPU; returns *this when already that dtype).
  Tensor to(DType dtype) const;
  // This tensor on another device (returns *this when already there).
  Tensor to(Device device) const;
  // Element i as f32 (CPU; any float or int dtype). For tests and small reads.
  float item_f32(int64_t i = 0) const;

  std::string str() const;  // "f32[2, 3]"

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  Shape shape_;
  DType dtype_ = DType::F32;
};

// Copies bytes between tensors of equal byte size on any devices.
void copy_bytes(const Tensor& dst, const Tensor& src);

}  // namespace ib
