// CPU activations, evaluated in f32 with the formulas of the spec's conventions (section 0).
#include <cmath>

#include "core/parallel.h"
#include "ops/activation.h"

namespace ib::ops::cpu {

namespace {
template <typename F>
void map(const Tensor& x, const Tensor& y, F f) {
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(x.numel(), 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) yp[i] = f(xp[i]);
  });
}
}  // namespace

void activate(const Tensor& x, Activation a, const Tensor& y) {
  switch (a) {
    case Activation::Gelu:
      map(x, y, [](float v) { return 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f)); });
      return;
    case Activation::GeluTanh:
      map(x, y, [](float v) {
        return 0.5f * v * (1.0f + std::tanh(0.79788456080286536f * (v + 0.044715f * v * v * v)));
      });
      return;
    case Activation::Silu:
      map(x, y, [](float v) { return v / (1.0f + std::exp(-v)); });
      return;
  }
  fail("activate: unknown activation {}", static_cast<int>(a));
}

}  // namespace ib::ops::cpu
