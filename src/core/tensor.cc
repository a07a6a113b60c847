#include "core/tensor.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/cuda_memory.h"

namespace ib {

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

int64_t shape_numel(const Shape& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

const char* device_name(Device d) { return d == Device::CPU ? "cpu" : "cuda"; }

bool cuda_available() { return cuda::device_count() > 0; }

std::shared_ptr<Storage> Storage::allocate(size_t bytes, Device device) {
  std::shared_ptr<Storage> s(new Storage());
  s->bytes_ = bytes;
  s->device_ = device;
  s->owned_ = true;
  if (device == Device::CPU) {
    const size_t rounded = std::max<size_t>(64, (bytes + 63) / 64 * 64);
    s->data_ = std::aligned_alloc(64, rounded);
    IB_CHECK(s->data_ != nullptr, "out of memory allocating {} bytes", bytes);
  } else {
    s->data_ = cuda::malloc_device(bytes);
  }
  return s;
}

std::shared_ptr<Storage> Storage::borrow(void* data, size_t bytes, Device device,
                                         std::shared_ptr<const void> owner) {
  std::shared_ptr<Storage> s(new Storage());
  s->data_ = data;
  s->bytes_ = bytes;
  s->device_ = device;
  s->owner_ = std::move(owner);
  return s;
}

Storage::~Storage() {
  if (!owned_ || data_ == nullptr) return;
  if (device_ == Device::CPU) {
    std::free(data_);
  } else {
    cuda::free_device(data_);
  }
}

int64_t Tensor::size(int64_t i) const {
  const int64_t n = dim();
  if (i < 0) i += n;
  IB_CHECK(i >= 0 && i < n, "dimension {} out of range for {}", i, str());
  return shape_[static_cast<size_t>(i)];
}

Tensor Tensor::empty(const Shape& shape, DType dtype, Device device) {
  for (int64_t d : shape) IB_CHECK(d >= 0, "negative dimension in shape {}", shape_str(shape));
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  t.storage_ = Storage::allocate(t.nbytes(), device);
  return t;
}

Tensor Tensor::zeros(const Shape& shape, DType dtype, Device device) {
  Tensor t = empty(shape, dtype, device);
  if (device == Device::CPU) {
    std::memset(t.raw(), 0, t.nbytes());
  } else {
    cuda::memset_device(t.raw(), 0, t.nbytes());
  }
  return t;
}

Tensor Tensor::full(const Shape& shape, float value) {
  Tensor t = empty(shape, DType::F32);
  std::fill_n(t.data<float>(), t.numel(), value);
  return t;
}

Tensor Tensor::host_view(const float* data, const Shape& shape) {
  const size_t bytes = static_cast<size_t>(shape_numel(shape)) * sizeof(float);
  return from_storage(Storage::borrow(const_cast<float*>(data), bytes, Device::CPU, nullptr), 0, shape, DType::F32);
}

Tensor Tensor::from_storage(std::shared_ptr<Storage> storage, size_t byte_offset, const Shape& shape,
                            DType dtype) {
  Tensor t;
  t.shape_ = shape;
  t.dtype_ = dtype;
  IB_CHECK(byte_offset + t.nbytes() <= storage->bytes(),
           "tensor {} at byte {} does not fit in storage of {} bytes", shape_str(shape), byte_offset,
           storage->bytes());
  t.storage_ = std::move(storage);
  t.offset_ = byte_offset;
  return t;
}

Tensor Tensor::view(Shape shape) const {
  int64_t known = 1;
  int infer = -1;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      IB_CHECK(infer < 0, "view: more than one -1 in {}", shape_str(shape));
      infer = static_cast<int>(i);
    } else {
      known *= shape[i];
    }
  }
  if (infer >= 0) {
    IB_CHECK(known > 0 && numel() % known == 0, "view: cannot view {} as {}", str(), shape_str(shape));
    shape[static_cast<size_t>(infer)] = numel() / known;
  }
  IB_CHECK(shape_numel(shape) == numel(), "view: cannot view {} as {}", str(), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice(int64_t begin, int64_t end) const {
  IB_CHECK(dim() >= 1 && begin >= 0 && begin <= end && end <= shape_[0],
           "slice [{}, {}) out of range for {}", begin, end, str());
  Tensor t = *this;
  const size_t row = nbytes() / static_cast<size_t>(std::max<int64_t>(shape_[0], 1));
  t.shape_[0] = end - begin;
  t.offset_ = offset_ + static_cast<size_t>(begin) * row;
  return t;
}

Tensor Tensor::select(int64_t i) const {
  Tensor t = slice(i, i + 1);
  t.shape_.erase(t.shape_.begin());
  return t;
}

Tensor Tensor::clone() const {
  Tensor t = empty(shape_, dtype_, device());
  copy_bytes(t, *this);
  return t;
}

Tensor Tensor::to(DType dtype) const {
  if (dtype == dtype_) return *this;
  IB_CHECK(device() == Device::CPU, "dtype conversion of a {} tensor on the CPU path", device_name(device()));
  Tensor out = empty(shape_, dtype);
  const auto n = static_cast<size_t>(numel());
  if (dtype == DType::F32) {
    convert_to_f32(raw(), dtype_, out.data<float>(), n);
  } else if (dtype_ == DType::F32) {
    convert_from_f32(data<float>(), dtype, out.raw(), n);
  } else {
    Tensor tmp = to(DType::F32);
    convert_from_f32(tmp.data<float>(), dtype, out.raw(), n);
  }
  return out;
}

Tensor Tensor::to(Device device) const {
  if (device == this->device()) return *this;
  Tensor t = empty(shape_, dtype_, device);
  copy_bytes(t, *this);
  return t;
}

float Tensor::item_f32(int64_t i) const {
  IB_CHECK(device() == Device::CPU, "item_f32 on a {} tensor", device_name(device()));
  IB_CHECK(i >= 0 && i < numel(), "item_f32: index {} out of range for {}", i, str());
  float f = 0;
  convert_to_f32(static_cast<const char*>(raw()) + static_cast<size_t>(i) * dtype_size(dtype_), dtype_, &f, 1);
  return f;
}

std::string Tensor::str() const { return fmt::format("{}{}", dtype_name(dtype_), shape_str(shape_)); }

void copy_bytes(const Tensor& dst, const Tensor& src) {
  IB_CHECK(dst.nbytes() == src.nbytes(), "copy: {} into {}", src.str(), dst.str());
  if (dst.nbytes() == 0) return;
  if (dst.device() == Device::CPU && src.device() == Device::CPU) {
    std::memcpy(dst.raw(), src.raw(), dst.nbytes());
  } else {
    cuda::memcpy_any(dst.raw(), dst.device() == Device::CUDA, src.raw(), src.device() == Device::CUDA,
                     dst.nbytes());
  }
}

}  // namespace ib
