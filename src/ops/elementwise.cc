#include "ops/elementwise.h"

#include "ops/dispatch.h"

namespace ib::ops {

namespace {
// b must have a's shape or equal a's trailing dimensions.
void check_broadcast(const char* op, const Tensor& a, const Tensor& b) {
  IB_CHECK(a.defined() && b.defined(), "{}: undefined input", op);
  IB_CHECK(a.dtype() == DType::F32, "{}: first input must be f32, got {}", op, a.str());
  IB_CHECK(dtype_is_float(b.dtype()), "{}: second input must be a float tensor, got {}", op, b.str());
  bool ok = b.dim() <= a.dim();
  for (int64_t i = 1; ok && i <= b.dim(); ++i) ok = a.size(-i) == b.size(-i);
  IB_CHECK(ok, "{}: {} does not broadcast to {} (must equal its trailing dimensions)", op, b.str(), a.str());
}
}  // namespace

Tensor binary(const Tensor& a, const Tensor& b, Binary op) {
  check_broadcast("binary", a, b);
  const Device d = same_device("binary", {&a, &b});
  Tensor y = Tensor::empty(a.shape(), DType::F32, d);
  IB_DISPATCH(d, binary, a, b, op, y);
  return y;
}

void binary_(const Tensor& a, const Tensor& b, Binary op) {
  check_broadcast("binary_", a, b);
  const Device d = same_device("binary_", {&a, &b});
  IB_DISPATCH(d, binary, a, b, op, a);
}

Tensor affine(const Tensor& x, float a, float b) {
  IB_CHECK(x.dtype() == DType::F32, "affine: input must be f32, got {}", x.str());
  const Device d = same_device("affine", {&x});
  Tensor y = Tensor::empty(x.shape(), DType::F32, d);
  IB_DISPATCH(d, affine, x, a, b, y);
  return y;
}

}  // namespace ib::ops
