#include "ops/convert.h"

namespace ib::ops {

Tensor to_dtype(const Tensor& x, DType dtype) {
  if (!x.defined() || x.dtype() == dtype) return x;
  IB_CHECK((x.dtype() == DType::F32 || x.dtype() == DType::BF16) && (dtype == DType::F32 || dtype == DType::BF16),
           "to_dtype: only f32 <-> bf16, got {} -> {}", x.str(), dtype_name(dtype));
  if (x.device() == Device::CPU) return x.to(dtype);
#ifdef INBETWEEN_HAVE_CUDA
  Tensor y = Tensor::empty(x.shape(), dtype, x.device());
  cuda::convert_dtype(x, y);
  return y;
#else
  fail("to_dtype: this build has no CUDA support");
#endif
}

}  // namespace ib::ops
