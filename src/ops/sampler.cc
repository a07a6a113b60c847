#include "ops/sampler.h"

#include "ops/dispatch.h"

namespace ib::ops {

namespace {

const char* update_name(SamplerUpdate u) {
  switch (u) {
    case SamplerUpdate::UniPCPredictor1: return "UniPCPredictor1";
    case SamplerUpdate::UniPCPredictor2: return "UniPCPredictor2";
    case SamplerUpdate::UniPCCorrector1: return "UniPCCorrector1";
    case SamplerUpdate::UniPCCorrector2: return "UniPCCorrector2";
    case SamplerUpdate::DpmFirst: return "DpmFirst";
    case SamplerUpdate::DpmSecond: return "DpmSecond";
  }
  fail("sampler_update: unknown update {}", static_cast<int>(u));
}

// Every given tensor is f32 with `ref`'s shape; a required one must be given.
void check_operand(const char* op, const char* name, const Tensor& t, const Tensor& ref, bool required) {
  if (!t.defined()) {
    IB_CHECK(!required, "{}: tensor {} is required", op, name);
    return;
  }
  IB_CHECK(t.dtype() == DType::F32 && t.shape() == ref.shape(), "{}: {} must be f32 {}, got {}", op, name,
           shape_str(ref.shape()), t.str());
}

}  // namespace

Tensor sampler_update(const SamplerArgs& args, const Tensor& x, const Tensor& m0, const Tensor& m1, const Tensor& mt) {
  const SamplerUpdate u = args.update;
  const char* name = update_name(u);
  IB_CHECK(x.defined() && x.dtype() == DType::F32, "sampler_update ({}): x must be an f32 tensor, got {}", name,
           x.defined() ? x.str() : "undefined");
  const bool need_m1 = u == SamplerUpdate::UniPCPredictor2 || u == SamplerUpdate::UniPCCorrector2 ||
                       u == SamplerUpdate::DpmSecond;
  const bool need_mt = u == SamplerUpdate::UniPCCorrector1 || u == SamplerUpdate::UniPCCorrector2;
  check_operand("sampler_update", "m0", m0, x, true);
  check_operand("sampler_update", "m1", m1, x, need_m1);
  check_operand("sampler_update", "mt", mt, x, need_mt);
  const Device d = same_device("sampler_update", {&x, &m0, &m1, &mt});
  Tensor out = Tensor::empty(x.shape(), DType::F32, d);
  IB_DISPATCH(d, sampler_update, args, x, m0, m1, mt, out);
  return out;
}

Tensor flow_data_prediction(const Tensor& v, const Tensor& x, float sigma) {
  IB_CHECK(x.defined() && x.dtype() == DType::F32, "flow_data_prediction: x must be an f32 tensor, got {}",
           x.defined() ? x.str() : "undefined");
  check_operand("flow_data_prediction", "v", v, x, true);
  const Device d = same_device("flow_data_prediction", {&v, &x});
  Tensor out = Tensor::empty(x.shape(), DType::F32, d);
  IB_DISPATCH(d, flow_data_prediction, v, x, sigma, out);
  return out;
}

Tensor cfg_combine(const Tensor& vc, const Tensor& vu, float g) {
  IB_CHECK(vu.defined() && vu.dtype() == DType::F32, "cfg_combine: vu must be an f32 tensor, got {}",
           vu.defined() ? vu.str() : "undefined");
  check_operand("cfg_combine", "vc", vc, vu, true);
  const Device d = same_device("cfg_combine", {&vc, &vu});
  Tensor out = Tensor::empty(vu.shape(), DType::F32, d);
  IB_DISPATCH(d, cfg_combine, vc, vu, g, out);
  return out;
}

Tensor flow_euler_step(const Tensor& v, const Tensor& x, float dt) {
  IB_CHECK(x.defined() && x.dtype() == DType::F32, "flow_euler_step: x must be an f32 tensor, got {}",
           x.defined() ? x.str() : "undefined");
  check_operand("flow_euler_step", "v", v, x, true);
  const Device d = same_device("flow_euler_step", {&v, &x});
  Tensor out = Tensor::empty(x.shape(), DType::F32, d);
  IB_DISPATCH(d, flow_euler_step, v, x, dt, out);
  return out;
}

}  // namespace ib::ops
