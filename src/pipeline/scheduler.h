// Flow-matching samplers of upstream Wan2.1 (spec §9): UniPC (bh2, order 2, predict-x0, the
// default) and DPM-Solver++ (2M, midpoint); and the flow-matching Euler sampler that step- and
// guidance-distilled models (lightx2v's LoRAs) are run with, optionally on an explicit timestep list. Schedules are built in double with numpy linspace
// semantics; each step forms its scalar factors on the host in f32 from the f32 sigmas and runs the
// elementwise update (ops/sampler.h) on the tensors' device, CPU or CUDA, in upstream's order of
// operations, so results match the reference to f32 rounding (both backends give the same bits).
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "inbetween/pipeline.h"

namespace ib {

// Solver, parse_solver and solver_name are inbetween/pipeline.h's.

class Scheduler {
 public:
  // steps >= 1, shift > 0 (finite), num_train_timesteps >= 2; otherwise ib::Error.
  // Euler's grid is DPM++'s: σ_k = 1 − k/steps, shifted (steps 4 gives timesteps 1000, 750, 500, 250
  // before the shift).
  static std::unique_ptr<Scheduler> create(Solver s, int steps, double shift, int num_train_timesteps = 1000);
  // An explicit list of training timesteps (`--timesteps 1000,750,500,250`), strictly decreasing in
  // [1, num_train_timesteps]: σ_k = t_k / N, shifted as everywhere, then run like create()'s grid.
  // Only the Euler solver takes one; unipc and dpm++ are refused (they build their own schedules).
  static std::unique_ptr<Scheduler> create(Solver s, const std::vector<int64_t>& timesteps, double shift,
                                           int num_train_timesteps = 1000);
  virtual ~Scheduler() = default;
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  Solver solver() const { return solver_; }
  int num_steps() const { return static_cast<int>(timesteps_.size()); }
  // The integer timesteps the DiT sees, one per step: trunc(num_train_timesteps * sigma'_k).
  const std::vector<int64_t>& timesteps() const { return timesteps_; }
  // The solver's f32 sigmas, num_steps() + 1 entries, the last one 0.
  const std::vector<float>& sigmas() const { return sigmas_; }
  // Index of the next step (0 before the first; num_steps() when done).
  int step_index() const { return step_index_; }

  // One solver step: `model_output` is the (guided) velocity v at timesteps()[step_index()] for
  // `sample`; returns the next sample. Both are f32 tensors of the same, arbitrary shape on one
  // device (CPU or CUDA); the result and the solver's history stay on that device, with no copy
  // to the host, so every step of a run must use the same device. Throws when the shapes, dtypes
  // or devices are wrong or every step has been taken.
  Tensor step(const Tensor& model_output, const Tensor& sample);

 protected:
  Scheduler(Solver s, std::vector<int64_t> timesteps, std::vector<float> sigmas)
      : solver_(s), timesteps_(std::move(timesteps)), sigmas_(std::move(sigmas)) {}
  // Does step k = step_index(); the base class advances the index afterwards.
  virtual Tensor step_at(int k, const Tensor& model_output, const Tensor& sample) = 0;

 private:
  Solver solver_;
  std::vector<int64_t> timesteps_;
  std::vector<float> sigmas_;
  int step_index_ = 0;
};

}  // namespace ib
