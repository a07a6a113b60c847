// CUDA sampler arithmetic: the CPU reference's expressions with every operation spelled as a
// round-to-nearest intrinsic (__fmul_rn, __fadd_rn, __fsub_rn, __fdiv_rn), which nvcc never
// contracts into a fused multiply-add, so each element gets the CPU's bits.
#include "ops/cuda/cuda_common.h"
#include "ops/sampler.h"

namespace ib::ops::cuda {

namespace {

struct UpdateParams {
  const float* x;
  const float* m0;
  const float* m1;  // null when the update does not use it
  const float* mt;  // null when the update does not use it
  float* out;
  int64_t n;
  float c_x, c_m, c_b, r, rho0, rho1, inv_r0;
  float zero_res;  // c_b·0, formed on the host as the CPU does
};

template <SamplerUpdate kUpdate>
__global__ void update_kernel(UpdateParams p) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float m0 = p.m0[i];
    const float base = __fsub_rn(__fmul_rn(p.c_x, p.x[i]), __fmul_rn(p.c_m, m0));
    float y;
    if constexpr (kUpdate == SamplerUpdate::UniPCPredictor1) {
      y = __fsub_rn(base, p.zero_res);
    } else if constexpr (kUpdate == SamplerUpdate::UniPCPredictor2) {
      const float d1 = __fdiv_rn(__fsub_rn(p.m1[i], m0), p.r);
      y = __fsub_rn(base, __fmul_rn(p.c_b, __fmul_rn(0.5f, d1)));
    } else if constexpr (kUpdate == SamplerUpdate::UniPCCorrector1) {
      const float d_t = __fsub_rn(p.mt[i], m0);
      const float res = __fadd_rn(0.0f, __fmul_rn(0.5f, d_t));
      y = __fsub_rn(base, __fmul_rn(p.c_b, res));
    } else if constexpr (kUpdate == SamplerUpdate::UniPCCorrector2) {
      const float d1 = __fdiv_rn(__fsub_rn(p.m1[i], m0), p.r);
      const float d_t = __fsub_rn(p.mt[i], m0);
      const float res = __fadd_rn(__fmul_rn(p.rho0, d1), __fmul_rn(p.rho1, d_t));
      y = __fsub_rn(base, __fmul_rn(p.c_b, res));
    } else if constexpr (kUpdate == SamplerUpdate::DpmFirst) {
      y = base;
    } else {  // DpmSecond
      const float d1 = __fmul_rn(p.inv_r0, __fsub_rn(m0, p.m1[i]));
      y = __fsub_rn(base, __fmul_rn(p.c_b, d1));
    }
    p.out[i] = y;
  }
}

__global__ void data_prediction_kernel(const float* v, const float* x, float sigma, float* m, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    m[i] = __fsub_rn(x[i], __fmul_rn(sigma, v[i]));
}

__global__ void cfg_kernel(const float* vc, const float* vu, float g, float* v, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const float u = vu[i];
    v[i] = __fadd_rn(u, __fmul_rn(g, __fsub_rn(vc[i], u)));
  }
}

__global__ void euler_kernel(const float* v, const float* x, float dt, float* out, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    out[i] = __fadd_rn(x[i], __fmul_rn(dt, v[i]));
}

const float* optional(const Tensor& t, const char* op) { return t.defined() ? dev_f32(t, op) : nullptr; }

}  // namespace

void sampler_update(const SamplerArgs& a, const Tensor& x, const Tensor& m0, const Tensor& m1, const Tensor& mt,
                    const Tensor& out) {
  const char* op = "sampler_update";
  UpdateParams p{dev_f32(x, op), dev_f32(m0, op), optional(m1, op), optional(mt, op), dev_f32(out, op), x.numel(),
                 a.c_x,          a.c_m,           a.c_b,            a.r,              a.rho0,           a.rho1,
                 a.inv_r0,       a.c_b * 0.0f};
  if (p.n == 0) return;
  const unsigned blocks = blocks_for(p.n);
  switch (a.update) {
    case SamplerUpdate::UniPCPredictor1: update_kernel<SamplerUpdate::UniPCPredictor1><<<blocks, 256>>>(p); break;
    case SamplerUpdate::UniPCPredictor2: update_kernel<SamplerUpdate::UniPCPredictor2><<<blocks, 256>>>(p); break;
    case SamplerUpdate::UniPCCorrector1: update_kernel<SamplerUpdate::UniPCCorrector1><<<blocks, 256>>>(p); break;
    case SamplerUpdate::UniPCCorrector2: update_kernel<SamplerUpdate::UniPCCorrector2><<<blocks, 256>>>(p); break;
    case SamplerUpdate::DpmFirst: update_kernel<SamplerUpdate::DpmFirst><<<blocks, 256>>>(p); break;
    case SamplerUpdate::DpmSecond: update_kernel<SamplerUpdate::DpmSecond><<<blocks, 256>>>(p); break;
  }
  check_launch(op);
}

void flow_data_prediction(const Tensor& v, const Tensor& x, float sigma, const Tensor& out) {
  const int64_t n = x.numel();
  if (n == 0) return;
  const char* op = "flow_data_prediction";
  data_prediction_kernel<<<blocks_for(n), 256>>>(dev_f32(v, op), dev_f32(x, op), sigma, dev_f32(out, op), n);
  check_launch(op);
}

void cfg_combine(const Tensor& vc, const Tensor& vu, float g, const Tensor& out) {
  const int64_t n = vu.numel();
  if (n == 0) return;
  const char* op = "cfg_combine";
  cfg_kernel<<<blocks_for(n), 256>>>(dev_f32(vc, op), dev_f32(vu, op), g, dev_f32(out, op), n);
  check_launch(op);
}

void flow_euler_step(const Tensor& v, const Tensor& x, float dt, const Tensor& out) {
  const int64_t n = x.numel();
  if (n == 0) return;
  const char* op = "flow_euler_step";
  euler_kernel<<<blocks_for(n), 256>>>(dev_f32(v, op), dev_f32(x, op), dt, dev_f32(out, op), n);
  check_launch(op);
}

}  // namespace ib::ops::cuda
