#include "ops/attention.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionArgs& args) {
  IB_CHECK(q.dtype() == DType::F32 && k.dtype() == DType::F32 && v.dtype() == DType::F32,
           "attention: q, k, v must be f32, got {}, {}, {}", q.str(), k.str(), v.str());
  IB_CHECK(q.dim() == 2 && k.dim() == 2 && v.dim() == 2, "attention: q, k, v must be 2-D [L, H*D], got {}, {}, {}",
           q.str(), k.str(), v.str());
  const int64_t H = args.num_heads;
  IB_CHECK(H >= 1 && q.size(1) % H == 0 && v.size(1) % H == 0,
           "attention: {} heads do not divide the feature sizes of q {} and v {}", H, q.str(), v.str());
  IB_CHECK(k.size(1) == q.size(1), "attention: k {} does not match q {}", k.str(), q.str());
  IB_CHECK(v.size(0) == k.size(0), "attention: v {} and k {} have different lengths", v.str(), k.str());
  const Tensor& bias = args.bias;
  if (bias.defined()) {
    IB_CHECK(bias.dtype() == DType::F32 && bias.shape() == (Shape{H, q.size(0), k.size(0)}),
             "attention: bias must be f32 [{}, {}, {}], got {}", H, q.size(0), k.size(0), bias.str());
  }
  const Device d = same_device("attention", {&q, &k, &v, &bias});
  Tensor out = Tensor::empty({q.size(0), v.size(1)}, DType::F32, d);
  IB_DISPATCH(d, attention, q, k, v, args, out);
  return out;
}

}  // namespace ib::ops
