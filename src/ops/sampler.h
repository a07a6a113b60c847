// The elementwise arithmetic of the flow-matching samplers (pipeline/scheduler.cc, spec §8.4, §9):
// the data prediction, the UniPC predictor/corrector and DPM-Solver++ updates, the flow-matching
// Euler step, and the guidance combination. The scalar coefficients are formed by the caller (in f32, on the host); each op here
// evaluates its tensor expression elementwise with one f32 rounding per operation, in the order
// written below (no fused multiply-add on either backend), so the CPU and CUDA results are the
// same bits.
#pragma once

#include "core/tensor.h"

namespace ib::ops {

// The solver updates. `base` = c_x·x − c_m·m0 (the products first, then the difference).
enum class SamplerUpdate {
  UniPCPredictor1,  // out = base − (c_b·0)                                  (pred_res = 0, a Python int)
  UniPCPredictor2,  // out = base − c_b·(0.5·((m1 − m0)/r))
  UniPCCorrector1,  // out = base − c_b·(0 + 0.5·(mt − m0))
  UniPCCorrector2,  // out = base − c_b·(rho0·((m1 − m0)/r) + rho1·(mt − m0))
  DpmFirst,         // out = c_x·x − c_m·m0
  DpmSecond,        // out = base − c_b·(inv_r0·(m0 − m1))
};

struct SamplerArgs {
  SamplerUpdate update = SamplerUpdate::DpmFirst;
  float c_x = 0;     // σ_t/σ_s
  float c_m = 0;     // UniPC α_t·φ; DPM++ α_t·(e^{−h} − 1)
  float c_b = 0;     // UniPC α_t·B; DPM++ 0.5·c_m
  float r = 1;       // UniPC order 2: the divisor of m1 − m0
  float rho0 = 0;    // UniPC corrector order 2
  float rho1 = 0;
  float inv_r0 = 0;  // DPM++ second order: the factor of m0 − m1
};

// All tensors f32, one shape, one device. x: the sample; m0: the latest data prediction (UniPC
// corrector: the previous step's); m1: the one before it (UniPC order 2, DpmSecond); mt: this
// step's prediction (UniPC correctors). Tensors an update does not use may be left undefined.
// Returns a new f32 tensor on that device.
Tensor sampler_update(const SamplerArgs& args, const Tensor& x, const Tensor& m0, const Tensor& m1 = Tensor(),
                      const Tensor& mt = Tensor());

// Flow-matching data prediction m = x − sigma·v (x, v: f32, one shape and device).
Tensor flow_data_prediction(const Tensor& v, const Tensor& x, float sigma);

// Classifier-free guidance v = vu + g·(vc − vu) (vc, vu: f32, one shape and device).
Tensor cfg_combine(const Tensor& vc, const Tensor& vu, float g);

// Flow-matching Euler step x' = x + dt·v (the product first, then the sum; x, v: f32, one shape and
// device), with dt = σ_next − σ formed by the caller in f32.
Tensor flow_euler_step(const Tensor& v, const Tensor& x, float dt);

namespace cpu {
void sampler_update(const SamplerArgs& args, const Tensor& x, const Tensor& m0, const Tensor& m1, const Tensor& mt,
                    const Tensor& out);
void flow_data_prediction(const Tensor& v, const Tensor& x, float sigma, const Tensor& out);
void cfg_combine(const Tensor& vc, const Tensor& vu, float g, const Tensor& out);
void flow_euler_step(const Tensor& v, const Tensor& x, float dt, const Tensor& out);
}  // namespace cpu
namespace cuda {
void sampler_update(const SamplerArgs& args, const Tensor& x, const Tensor& m0, const Tensor& m1, const Tensor& mt,
                    const Tensor& out);
void flow_data_prediction(const Tensor& v, const Tensor& x, float sigma, const Tensor& out);
void cfg_combine(const Tensor& vc, const Tensor& vu, float g, const Tensor& out);
void flow_euler_step(const Tensor& v, const Tensor& x, float dt, const Tensor& out);
}  // namespace cuda

}  // namespace ib::ops
