#include "ops/norm.h"

#include "ops/dispatch.h"

namespace ib::ops {

namespace {
void check_param(const char* op, const char* what, const Tensor& p, int64_t C, const Tensor& x) {
  if (!p.defined()) return;
  IB_CHECK(dtype_is_float(p.dtype()), "{}: {} must be a float tensor, got {}", op, what, p.str());
  IB_CHECK(p.dim() == 1 && p.size(0) == C, "{}: {} {} does not match input {}", op, what, p.str(), x.str());
}
}  // namespace

Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, float eps) {
  IB_CHECK(x.dtype() == DType::F32, "layer_norm: input must be f32, got {}", x.str());
  IB_CHECK(x.dim() >= 1, "layer_norm: input must have at least one dimension, got {}", x.str());
  check_param("layer_norm", "weight", weight, x.size(-1), x);
  check_param("layer_norm", "bias", bias, x.size(-1), x);
  const Device d = same_device("layer_norm", {&x, &weight, &bias});
  Tensor y = Tensor::empty(x.shape(), DType::F32, d);
  IB_DISPATCH(d, layer_norm, x, weight, bias, eps, y);
  return y;
}

Tensor rms_norm(const Tensor& x, const Tensor& weight, float eps) {
  IB_CHECK(x.dtype() == DType::F32, "rms_norm: input must be f32, got {}", x.str());
  IB_CHECK(x.dim() >= 1, "rms_norm: input must have at least one dimension, got {}", x.str());
  check_param("rms_norm", "weight", weight, x.size(-1), x);
  const Device d = same_device("rms_norm", {&x, &weight});
  Tensor y = Tensor::empty(x.shape(), DType::F32, d);
  IB_DISPATCH(d, rms_norm, x, weight, eps, y);
  return y;
}

}  // namespace ib::ops
