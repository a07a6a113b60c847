#include "ops/activation.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor activate(const Tensor& x, Activation a) {
  IB_CHECK(x.dtype() == DType::F32, "activate: input must be f32, got {}", x.str());
  const Device d = same_device("activate", {&x});
  Tensor y = Tensor::empty(x.shape(), DType::F32, d);
  IB_DISPATCH(d, activate, x, a, y);
  return y;
}

}  // namespace ib::ops
