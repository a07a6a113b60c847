// LoRA merging on the device (see lora_merge.h).
#include "gpu/lora_merge.h"

#include <chrono>
#include <climits>

#include "core/check.h"
#include "core/cuda_memory.h"
#include "gpu/kernels.h"
#include "ops/cuda/cuda_common.h"

namespace ib::gpu {

namespace {

int as_int(int64_t v, const std::string& what) {
  IB_CHECK(v >= 0 && v <= INT_MAX, "LoRA merge on the GPU: {} ({}) is too large for one cuBLAS call", what, v);
  return static_cast<int>(v);
}

// w[out, in] += factor · up[out, r] @ down[r, in], all f32 on the device, row-major. In cuBLAS's
// column-major terms: wᵀ[in, out] += factor · downᵀ[in, r] · upᵀ[r, out], one SGEMM with beta = 1.
void add_low_rank(float* w, int64_t out, int64_t in, const Tensor& up, const Tensor& down, float factor,
                  const std::string& what) {
  const int64_t r = down.size(0);
  const float one = 1.0f;
  ops::cuda::check_cublas(cublasSgemm(ops::cuda::cublas_handle(), CUBLAS_OP_N, CUBLAS_OP_N, as_int(in, what),
                                      as_int(out, what), as_int(r, what), &factor, down.data<float>(),
                                      as_int(in, what), up.data<float>(), as_int(r, what), &one, w, as_int(in, what)),
                          "cublasSgemm (LoRA merge)");
}

}  // namespace

LoraMerge::LoraMerge(std::vector<LoraPatch> patches) {
  for (LoraPatch& p : patches) by_target_[p.target].push_back(std::move(p));
}

Tensor LoraMerge::apply(const std::string& name, const Tensor& t) {
  const auto it = by_target_.find(name);
  if (it == by_target_.end()) return t;
  const auto t0 = std::chrono::steady_clock::now();
  // A new tensor even when t is f32 on the device already: t may be the caller's.
  Tensor w = to_f32_device(t);
  for (const LoraPatch& p : it->second) {
    const bool low_rank = p.kind == LoraPatch::Kind::LowRank;
    const int64_t n = low_rank ? p.up.size(0) * (p.down.numel() / p.down.size(0)) : p.diff.numel();
    IB_CHECK(n == w.numel(), "LoRA patch '{}' of '{}': {} values for a tensor of {}", p.key, p.target, n, w.numel());
    if (low_rank) {
      const Tensor up = to_f32_device(p.up), down = to_f32_device(p.down);
      const int64_t out = p.up.size(0);
      add_low_rank(w.data<float>(), out, w.numel() / out, up, down, p.factor, p.target);
    } else {
      const Tensor d = to_f32_device(p.diff);
      ops::cuda::check_cublas(cublasSaxpy(ops::cuda::cublas_handle(), as_int(n, p.target), &p.factor, d.data<float>(),
                                          1, w.data<float>(), 1),
                              "cublasSaxpy (LoRA merge)");
    }
  }
  cuda::synchronize("merging a LoRA on the GPU");
  by_target_.erase(it);
  ++patched_;
  seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return w;
}

std::vector<std::string> LoraMerge::pending() const {
  std::vector<std::string> out;
  for (const auto& [name, patches] : by_target_) out.push_back(name);
  return out;
}

}  // namespace ib::gpu
