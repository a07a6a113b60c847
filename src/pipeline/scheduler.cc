// Upstream Wan2.1's FlowUniPCMultistepScheduler and FlowDPMSolverMultistepScheduler (spec §9),
// restricted to the configuration generate.py uses, and a flow-matching Euler sampler. Scalar factors (0-dim f32 tensors upstream)
// are formed here first, in f32 on the host; the tensor expressions run as ops::sampler_update /
// ops::flow_data_prediction on the tensors' device, elementwise with one f32 rounding per upstream
// tensor op, in upstream's order.
#include "pipeline/scheduler.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "ops/sampler.h"

// Each f32 product/sum must be rounded on its own, as in upstream's separate tensor ops: no FMA
// contraction (GCC in ISO mode already does not contract; clang would).
#ifdef __clang__
#pragma clang fp contract(off)
#endif

namespace ib {

Tensor Scheduler::step(const Tensor& model_output, const Tensor& sample) {
  IB_CHECK(step_index_ < num_steps(), "scheduler step: all {} steps have been taken", num_steps());
  IB_CHECK(model_output.defined() && sample.defined(), "scheduler step: undefined tensor");
  IB_CHECK(model_output.dtype() == DType::F32 && sample.dtype() == DType::F32 &&
               model_output.device() == sample.device(),
           "scheduler step: model_output {} ({}) and sample {} ({}) must be f32 tensors on one device",
           model_output.str(), device_name(model_output.device()), sample.str(), device_name(sample.device()));
  IB_CHECK(model_output.shape() == sample.shape(), "scheduler step: model_output {} and sample {} differ in shape",
           model_output.str(), sample.str());
  Tensor out = step_at(step_index_, model_output, sample);
  ++step_index_;
  return out;
}

namespace {

// The first `num - 1` values of numpy.linspace(start, stop, num): k * ((stop - start) / (num - 1))
// + start, in double (numpy multiplies arange by the step, then adds start).
std::vector<double> linspace_drop_last(double start, double stop, int num) {
  const double step = (stop - start) / static_cast<double>(num - 1);
  std::vector<double> y(static_cast<size_t>(num - 1));
  for (int k = 0; k + 1 < num; ++k) y[static_cast<size_t>(k)] = static_cast<double>(k) * step + start;
  return y;
}

// Shifts the sigmas (double, as numpy does), truncates timesteps = N * sigma' to int64 and
// appends the final sigma 0 to the f32 solver sigmas.
void shifted_schedule(const std::vector<double>& base, double shift, int num_train_timesteps,
                      std::vector<int64_t>& timesteps, std::vector<float>& sigmas) {
  timesteps.clear();
  sigmas.clear();
  for (double s : base) {
    const double shifted = shift * s / (1.0 + (shift - 1.0) * s);
    timesteps.push_back(static_cast<int64_t>(shifted * static_cast<double>(num_train_timesteps)));
    sigmas.push_back(static_cast<float>(shifted));
  }
  sigmas.push_back(0.0f);
}

// f32 log, exp and expm1, correctly rounded (evaluated in double, then rounded). Upstream's 0-dim
// f32 tensors go through PyTorch's vectorised CPU kernels (MKL VML / SLEEF, within 1 ulp), which
// match the correctly rounded value on every fixture step; glibc's expm1f is often an ulp off,
// enough to change last bits of the UniPC trajectories. On other schedules MKL/SLEEF are an ulp
// off now and then (about 1% of exp inputs, measured with torch 2.11 on AVX-512: e.g. unipc 20
// steps, dpm++ 50 steps at several shifts), so trajectories then agree to float32 rounding, not
// to the bit.
float log_f32(float x) { return static_cast<float>(std::log(static_cast<double>(x))); }
float exp_f32(float x) { return static_cast<float>(std::exp(static_cast<double>(x))); }
float expm1_f32(float x) { return static_cast<float>(std::expm1(static_cast<double>(x))); }

// λ(σ) = log(α) − log(σ) with α = 1 − σ, all f32 (0-dim tensor math upstream).
// λ(0) = +inf, λ(1) = −inf.
float lambda_of(float sigma) {
  const float alpha = 1.0f - sigma;
  return log_f32(alpha) - log_f32(sigma);
}

// x0 prediction of flow matching: m = x − σ·v.
Tensor data_prediction(const Tensor& v, const Tensor& x, float sigma) { return ops::flow_data_prediction(v, x, sigma); }

// torch.linalg.solve of [[1, 1], [r, 1]]·ρ = b in f32 as the reference's LAPACK (getrf + getrs)
// did it, which reproduces the fixtures bit for bit: LU with partial pivoting (rows swap only when
// |r| > 1), the multiplier a10·(1/pivot), forward substitution with a fused multiply-add, back
// substitution multiplying by the reciprocal of the diagonal.
void solve_2x2(float r, float b0, float b1, float& rho0, float& rho1) {
  float a00 = 1.0f, a01 = 1.0f, a10 = r, a11 = 1.0f;
  float y0 = b0, y1 = b1;
  if (std::fabs(a10) > std::fabs(a00)) {
    std::swap(a00, a10);
    std::swap(a01, a11);
    std::swap(y0, y1);
  }
  const float l10 = a10 * (1.0f / a00);
  const float u11 = a11 - l10 * a01;
  y1 = std::fma(-l10, y0, y1);
  rho1 = y1 * (1.0f / u11);
  rho0 = (y0 - a01 * rho1) * (1.0f / a00);
}

// ---------------------------------------------------------------------------------------------
// UniPC: bh2, solver order 2, predict-x0, lower_order_final, corrector on every step but the
// first (spec §9.1).
class UniPC final : public Scheduler {
 public:
  UniPC(std::vector<int64_t> t, std::vector<float> s) : Scheduler(Solver::UniPC, std::move(t), std::move(s)) {}

 protected:
  Tensor step_at(int k, const Tensor& v, const Tensor& sample) override {
    const Tensor m = data_prediction(v, sample, sigmas()[static_cast<size_t>(k)]);
    // The corrector refines the sample that came out of the previous predictor, using this
    // step's prediction; model_outputs are not updated yet.
    Tensor x = (k > 0 && last_sample_.defined()) ? corrector(k, m) : sample.clone();
    m_prev2_ = m_prev_;
    m_prev_ = m;
    // lower_order_final: order 1 on the last step; warm-up: order 1 on the first.
    const int order = std::min({2, num_steps() - k, lower_order_nums_ + 1});
    IB_CHECK(order > 0, "UniPC: solver order {} at step {}", order, k);
    last_order_ = order;
    last_sample_ = x;
    Tensor out = predictor(k, x, order);
    lower_order_nums_ = std::min(lower_order_nums_ + 1, 2);
    return out;
  }

 private:
  float sig(int i) const { return sigmas()[static_cast<size_t>(i)]; }

  // multistep_uni_p_bh_update: from σ_s = sig[k] to σ_t = sig[k+1], m0 = m_prev_.
  // On the last step σ_t = 0: λ_t = h = +inf, φ = expm1(−inf) = −1, α_t = 1, σ_t/σ_s = 0, so the
  // result is exactly m0.
  Tensor predictor(int k, const Tensor& x, int order) const {
    const float sigma_s = sig(k), sigma_t = sig(k + 1);
    const float alpha_t = 1.0f - sigma_t;
    const float lambda_s = lambda_of(sigma_s);
    const float h = lambda_of(sigma_t) - lambda_s;
    const float hh = -h;
    const float phi = expm1_f32(hh);  // h·φ1(h)
    const float B = expm1_f32(hh);    // bh2
    const float c_x = sigma_t / sigma_s;
    const float c_m = alpha_t * phi;
    const float c_b = alpha_t * B;

    ops::SamplerArgs a;
    a.c_x = c_x;
    a.c_m = c_m;
    a.c_b = c_b;
    if (order == 1) {
      // pred_res = 0 (a Python int): x_t = x_t_ − (α_t·B)·0.
      a.update = ops::SamplerUpdate::UniPCPredictor1;
      return ops::sampler_update(a, x, m_prev_);
    }
    // D1 = (m_prev − m0)/r with r = (λ(sig[k−1]) − λ_s)/h; order 2 uses the hard-coded ρ = 0.5.
    a.update = ops::SamplerUpdate::UniPCPredictor2;
    a.r = (lambda_of(sig(k - 1)) - lambda_s) / h;
    return ops::sampler_update(a, x, m_prev_, m_prev2_);
  }

  // multistep_uni_c_bh_update: σ_s = sig[k−1], σ_t = sig[k], m0 = m_prev_ (prediction of step
  // k−1), m_t = this step's prediction, x = last_sample_; order = the previous predictor's.
  Tensor corrector(int k, const Tensor& m_t) const {
    const int order = last_order_;
    const float sigma_s = sig(k - 1), sigma_t = sig(k);
    const float alpha_t = 1.0f - sigma_t;
    const float lambda_s = lambda_of(sigma_s);
    const float h = lambda_of(sigma_t) - lambda_s;
    const float hh = -h;
    const float phi = expm1_f32(hh);
    const float B = expm1_f32(hh);
    const float c_x = sigma_t / sigma_s;
    const float c_m = alpha_t * phi;
    const float c_b = alpha_t * B;

    ops::SamplerArgs a;
    a.c_x = c_x;
    a.c_m = c_m;
    a.c_b = c_b;
    if (order == 1) {
      // ρ = [0.5] hard-coded; corr_res = 0 (a Python int) is added to ρ·D_t.
      a.update = ops::SamplerUpdate::UniPCCorrector1;
      return ops::sampler_update(a, last_sample_, m_prev_, Tensor(), m_t);
    }
    a.update = ops::SamplerUpdate::UniPCCorrector2;
    a.r = (lambda_of(sig(k - 2)) - lambda_s) / h;
    // b_i = h_phi_k·i!/B with h_phi_1 = φ/hh − 1, h_phi_2 = h_phi_1/hh − 1/2.
    const float g1 = phi / hh - 1.0f;
    const float b0 = g1 * 1.0f / B;
    const float g2 = g1 / hh - 0.5f;
    const float b1 = g2 * 2.0f / B;
    solve_2x2(a.r, b0, b1, a.rho0, a.rho1);
    return ops::sampler_update(a, last_sample_, m_prev_, m_prev2_, m_t);
  }

  Tensor m_prev_, m_prev2_;  // model_outputs[-1], model_outputs[-2] (x0 predictions)
  Tensor last_sample_;       // the sample that entered the previous predictor
  int last_order_ = 0;       // the previous predictor's order (this_order)
  int lower_order_nums_ = 0;
};

// ---------------------------------------------------------------------------------------------
// DPM-Solver++ 2M, midpoint, final sigma 0 (spec §9.2).
class DpmSolverPP final : public Scheduler {
 public:
  DpmSolverPP(std::vector<int64_t> t, std::vector<float> s) : Scheduler(Solver::DpmPP, std::move(t), std::move(s)) {}

 protected:
  Tensor step_at(int k, const Tensor& v, const Tensor& sample) override {
    const float sigma_s = sig(k), sigma_t = sig(k + 1);
    const Tensor m = data_prediction(v, sample, sigma_s);
    const Tensor m1 = m_prev_;
    m_prev_ = m;

    const float alpha_t = 1.0f - sigma_t;
    const float lambda_s = lambda_of(sigma_s);
    const float h = lambda_of(sigma_t) - lambda_s;
    // exp(−h) − 1, not expm1. At σ_s = 1 (step 0) λ_s = −inf, h = +inf, so this is −1.
    const float c_m = alpha_t * (exp_f32(-h) - 1.0f);
    const float c_x = sigma_t / sigma_s;

    ops::SamplerArgs a;
    a.c_x = c_x;
    a.c_m = c_m;
    Tensor out;
    // First order while there is no history and on the last step (final_sigmas_type "zero").
    if (lower_order_nums_ < 1 || k == num_steps() - 1) {
      a.update = ops::SamplerUpdate::DpmFirst;
      out = ops::sampler_update(a, sample, m);
    } else {
      // r0 = h0/h; the code forms 1/r0 and multiplies. With σ_{k−1} = 1, h0 = r0 = +inf and
      // 1/r0 = 0, so D1 = 0: step 1 is effectively first order.
      const float h0 = lambda_s - lambda_of(sig(k - 1));
      const float r0 = h0 / h;
      a.update = ops::SamplerUpdate::DpmSecond;
      a.inv_r0 = 1.0f / r0;
      a.c_b = 0.5f * c_m;
      out = ops::sampler_update(a, sample, m, m1);
    }
    lower_order_nums_ = std::min(lower_order_nums_ + 1, 2);
    return out;
  }

 private:
  float sig(int i) const { return sigmas()[static_cast<size_t>(i)]; }

  Tensor m_prev_;  // model_outputs[-1] of the previous step
  int lower_order_nums_ = 0;
};

// ---------------------------------------------------------------------------------------------
// Flow-matching Euler (diffusers' FlowMatchEulerDiscreteScheduler.step, lightx2v's step-distill
// sampler): x_{k+1} = x_k + (σ_{k+1} − σ_k)·v with the f32 solver sigmas, the last one 0; dt is
// one f32 subtraction, then x + dt·v as two f32 operations (upstream's 0-dim tensor math).
//
// Convention: the sigmas are shifted exactly as FlowUniPC/FlowDPM shift theirs,
// σ' = s·σ/(1 + (s−1)·σ) in double from σ = t/N, and the DiT sees the integer trunc(N·σ'),
// as it does under those solvers (spec §9, §11 quirk 3). lightx2v feeds the untruncated float
// N·σ' (937.5 for t = 750 at shift 5, where we pass 937); diffusers' Euler with an explicit list
// feeds the unshifted t. Both differ from this by less than one training timestep or by the shift.
class FlowEuler final : public Scheduler {
 public:
  FlowEuler(std::vector<int64_t> t, std::vector<float> s) : Scheduler(Solver::Euler, std::move(t), std::move(s)) {}

 protected:
  Tensor step_at(int k, const Tensor& v, const Tensor& sample) override {
    const float dt = sigmas()[static_cast<size_t>(k) + 1] - sigmas()[static_cast<size_t>(k)];
    return ops::flow_euler_step(v, sample, dt);
  }
};

void check_shift(double shift, int num_train_timesteps) {
  IB_CHECK(std::isfinite(shift) && shift > 0.0, "scheduler: shift must be a finite number > 0, got {}", shift);
  IB_CHECK(num_train_timesteps >= 2, "scheduler: num_train_timesteps must be >= 2, got {}", num_train_timesteps);
}

}  // namespace

std::unique_ptr<Scheduler> Scheduler::create(Solver s, const std::vector<int64_t>& timesteps, double shift,
                                             int num_train_timesteps) {
  IB_CHECK(s == Solver::Euler,
           "--timesteps works with the euler solver only; {} builds its own schedule from --steps and --shift "
           "(use --solver euler, or drop --timesteps)",
           solver_name(s));
  check_shift(shift, num_train_timesteps);
  IB_CHECK(!timesteps.empty(), "scheduler: the timestep list is empty");
  std::vector<double> base;
  for (size_t i = 0; i < timesteps.size(); ++i) {
    const int64_t t = timesteps[i];
    IB_CHECK(t >= 1 && t <= num_train_timesteps, "--timesteps: {} is outside [1, {}]", t, num_train_timesteps);
    IB_CHECK(i == 0 || t < timesteps[i - 1], "--timesteps must be strictly decreasing; {} follows {}", t,
             timesteps[i - 1]);
    base.push_back(static_cast<double>(t) / static_cast<double>(num_train_timesteps));
  }
  std::vector<int64_t> ts;
  std::vector<float> sigmas;
  shifted_schedule(base, shift, num_train_timesteps, ts, sigmas);
  return std::make_unique<FlowEuler>(std::move(ts), std::move(sigmas));
}

std::unique_ptr<Scheduler> Scheduler::create(Solver s, int steps, double shift, int num_train_timesteps) {
  IB_CHECK(steps >= 1, "scheduler: steps must be >= 1, got {}", steps);
  IB_CHECK(std::isfinite(shift) && shift > 0.0, "scheduler: shift must be a finite number > 0, got {}", shift);
  IB_CHECK(num_train_timesteps >= 2, "scheduler: num_train_timesteps must be >= 2, got {}", num_train_timesteps);
  std::vector<int64_t> timesteps;
  std::vector<float> sigmas;
  if (s == Solver::UniPC) {
    // The training grid: σ_i = f32(1 − a_i) with a = linspace(1, 1/N, N) reversed, so
    // σ_max = f32(1 − 1/N) (0.999 for N = 1000) and σ_min = 0.
    const double sigma_max = static_cast<double>(static_cast<float>(1.0 - 1.0 / num_train_timesteps));
    // Upstream then picks its start index by searching timesteps()[0] in the schedule and takes
    // the second match when the value occurs twice (shift 16: steps >= 68 begin 999, 999), which
    // runs the solver one sigma ahead and fails on the last step. We do the intended thing: the
    // step index always starts at 0 (spec §11 quirk 4).
    shifted_schedule(linspace_drop_last(sigma_max, 0.0, steps + 1), shift, num_train_timesteps, timesteps, sigmas);
    return std::make_unique<UniPC>(std::move(timesteps), std::move(sigmas));
  }
  // DPM++: generate.py passes get_sampling_sigmas = linspace(1, 0, S + 1)[:S] shifted, to a
  // scheduler built with shift 1 (a no-op), so σ'_0 = 1 and the first timestep is N. Euler uses
  // the same grid.
  shifted_schedule(linspace_drop_last(1.0, 0.0, steps + 1), shift, num_train_timesteps, timesteps, sigmas);
  if (s == Solver::Euler) return std::make_unique<FlowEuler>(std::move(timesteps), std::move(sigmas));
  return std::make_unique<DpmSolverPP>(std::move(timesteps), std::move(sigmas));
}

}  // namespace ib
