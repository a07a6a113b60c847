// Device dispatch for ops: IB_DISPATCH(device, fn, args...) calls cpu::fn or cuda::fn. An op's
// header declares both backends; cuda:: functions exist only in CUDA builds.
#pragma once

#include "core/check.h"
#include "core/tensor.h"

#ifdef INBETWEEN_HAVE_CUDA
#define IB_DISPATCH(device, fn, ...) \
  (((device) == ::ib::Device::CPU) ? cpu::fn(__VA_ARGS__) : cuda::fn(__VA_ARGS__))
#else
#define IB_DISPATCH(device, fn, ...)                                                          \
  (((device) == ::ib::Device::CPU) ? cpu::fn(__VA_ARGS__)                                     \
                                   : throw ::ib::Error("op " #fn ": this build has no CUDA support"))
#endif

namespace ib::ops {

// All inputs of an op must live on one device; returns it.
inline Device same_device(const char* op, std::initializer_list<const Tensor*> ts) {
  Device d = Device::CPU;
  bool first = true;
  for (const Tensor* t : ts) {
    if (t == nullptr || !t->defined()) continue;
    if (first) {
      d = t->device();
      first = false;
    }
    IB_CHECK(t->device() == d, "{}: inputs on different devices", op);
  }
  return d;
}

}  // namespace ib::ops
