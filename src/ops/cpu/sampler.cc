// CPU sampler arithmetic: the loops pipeline/scheduler.cc ran before the op existed, expression for
// expression, so trajectories stay bit-identical to the fixtures.
#include "core/parallel.h"
#include "ops/sampler.h"

// Each f32 product/sum must be rounded on its own, as in upstream's separate tensor ops: no FMA
// contraction (GCC in ISO mode already does not contract; clang would).
#ifdef __clang__
#pragma clang fp contract(off)
#endif

namespace ib::ops::cpu {

namespace {
constexpr int64_t kGrain = 1 << 14;

const float* ptr(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
}  // namespace

void sampler_update(const SamplerArgs& a, const Tensor& x, const Tensor& m0_t, const Tensor& m1_t,
                    const Tensor& mt_t, const Tensor& out) {
  const float* xp = x.data<float>();
  const float* m0 = m0_t.data<float>();
  const float* m1 = ptr(m1_t);
  const float* mt = ptr(mt_t);
  float* op = out.data<float>();
  const float c_x = a.c_x, c_m = a.c_m, c_b = a.c_b, r = a.r, rho0 = a.rho0, rho1 = a.rho1, inv_r0 = a.inv_r0;
  const SamplerUpdate u = a.update;
  parallel_for(x.numel(), kGrain, [&](int64_t s, int64_t e) {
    switch (u) {
      case SamplerUpdate::UniPCPredictor1: {
        const float zero_res = c_b * 0.0f;
        for (int64_t i = s; i < e; ++i) {
          const float base = c_x * xp[i] - c_m * m0[i];
          op[i] = base - zero_res;
        }
        return;
      }
      case SamplerUpdate::UniPCPredictor2:
        for (int64_t i = s; i < e; ++i) {
          const float base = c_x * xp[i] - c_m * m0[i];
          const float d1 = (m1[i] - m0[i]) / r;
          const float pred_res = 0.5f * d1;
          op[i] = base - c_b * pred_res;
        }
        return;
      case SamplerUpdate::UniPCCorrector1:
        for (int64_t i = s; i < e; ++i) {
          const float base = c_x * xp[i] - c_m * m0[i];
          const float d_t = mt[i] - m0[i];
          const float res = 0.0f + 0.5f * d_t;
          op[i] = base - c_b * res;
        }
        return;
      case SamplerUpdate::UniPCCorrector2:
        for (int64_t i = s; i < e; ++i) {
          const float base = c_x * xp[i] - c_m * m0[i];
          const float d1 = (m1[i] - m0[i]) / r;
          const float d_t = mt[i] - m0[i];
          const float res = rho0 * d1 + rho1 * d_t;
          op[i] = base - c_b * res;
        }
        return;
      case SamplerUpdate::DpmFirst:
        for (int64_t i = s; i < e; ++i) op[i] = c_x * xp[i] - c_m * m0[i];
        return;
      case SamplerUpdate::DpmSecond:
        for (int64_t i = s; i < e; ++i) {
          const float d1 = inv_r0 * (m0[i] - m1[i]);
          const float base = c_x * xp[i] - c_m * m0[i];
          op[i] = base - c_b * d1;
        }
        return;
    }
  });
}

void flow_data_prediction(const Tensor& v, const Tensor& x, float sigma, const Tensor& out) {
  const float* vp = v.data<float>();
  const float* xp = x.data<float>();
  float* mp = out.data<float>();
  parallel_for(x.numel(), kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) mp[i] = xp[i] - sigma * vp[i];
  });
}

void cfg_combine(const Tensor& vc, const Tensor& vu, float g, const Tensor& out) {
  const float* pc = vc.data<float>();
  const float* pu = vu.data<float>();
  float* pv = out.data<float>();
  parallel_for(vu.numel(), kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) pv[i] = pu[i] + g * (pc[i] - pu[i]);
  });
}

void flow_euler_step(const Tensor& v, const Tensor& x, float dt, const Tensor& out) {
  const float* vp = v.data<float>();
  const float* xp = x.data<float>();
  float* op = out.data<float>();
  parallel_for(x.numel(), kGrain, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) op[i] = xp[i] + dt * vp[i];
  });
}

}  // namespace ib::ops::cpu
