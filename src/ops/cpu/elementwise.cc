// CPU elementwise arithmetic. `b` repeats every b.numel() elements of `a` (trailing-dims
// broadcast); y may be a itself (in-place form).
#include "core/parallel.h"
#include "ops/elementwise.h"

namespace ib::ops::cpu {

namespace {
template <typename F>
void apply(const float* ap, const float* bp, float* yp, int64_t n, int64_t nb, F f) {
  if (nb == 0) return;
  parallel_for(n, 1 << 14, [&](int64_t s, int64_t e) {
    int64_t j = s % nb;
    for (int64_t i = s; i < e; ++i) {
      yp[i] = f(ap[i], bp[j]);
      if (++j == nb) j = 0;
    }
  });
}
}  // namespace

void binary(const Tensor& a, const Tensor& b, Binary op, const Tensor& y) {
  const Tensor bf = b.to(DType::F32);
  const float* ap = a.data<float>();
  const float* bp = bf.data<float>();
  float* yp = y.data<float>();
  const int64_t n = a.numel(), nb = bf.numel();
  switch (op) {
    case Binary::Add: apply(ap, bp, yp, n, nb, [](float u, float v) { return u + v; }); return;
    case Binary::Sub: apply(ap, bp, yp, n, nb, [](float u, float v) { return u - v; }); return;
    case Binary::Mul: apply(ap, bp, yp, n, nb, [](float u, float v) { return u * v; }); return;
  }
  fail("binary: unknown op {}", static_cast<int>(op));
}

void affine(const Tensor& x, float a, float b, const Tensor& y) {
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  parallel_for(x.numel(), 1 << 14, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) yp[i] = a * xp[i] + b;
  });
}

}  // namespace ib::ops::cpu
