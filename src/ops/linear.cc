#include "ops/linear.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b) {
  IB_CHECK(x.dtype() == DType::F32, "linear: input must be f32, got {}", x.str());
  IB_CHECK(w.dim() == 2, "linear: weight must be 2-D, got {}", w.str());
  IB_CHECK(x.dim() >= 1 && x.size(-1) == w.size(1), "linear: input {} does not match weight {}", x.str(), w.str());
  IB_CHECK(!b.defined() || (b.dim() == 1 && b.size(0) == w.size(0)), "linear: bias {} does not match weight {}",
           b.str(), w.str());
  const Device d = same_device("linear", {&x, &w, &b});
  Shape out_shape = x.shape();
  out_shape.back() = w.size(0);
  Tensor y = Tensor::empty(out_shape, DType::F32, d);
  IB_DISPATCH(d, linear, x, w, b, y);
  return y;
}

}  // namespace ib::ops
