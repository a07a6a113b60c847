// CPU linear: OpenBLAS sgemm. Weights in bf16/f16 are widened to f32 a block of rows at a time,
// so a half-precision model is never held in f32 as a whole.
#include <cblas.h>

#include <algorithm>
#include <vector>

#include "core/parallel.h"
#include "ops/linear.h"

namespace ib::ops::cpu {

void linear(const Tensor& x, const Tensor& w, const Tensor& b, const Tensor& y) {
  const int64_t K = w.size(1), N = w.size(0);
  const int64_t M = x.numel() / std::max<int64_t>(K, 1);
  const float* xp = x.data<float>();
  float* yp = y.data<float>();
  if (b.defined()) {
    const Tensor bf = b.to(DType::F32);
    const float* bp = bf.data<float>();
    for (int64_t m = 0; m < M; ++m) std::copy(bp, bp + N, yp + m * N);
  }
  const float beta = b.defined() ? 1.0f : 0.0f;
  if (M == 0 || N == 0) return;
  if (K == 0) {
    if (!b.defined()) std::fill_n(yp, M * N, 0.0f);
    return;
  }
  const auto mi = static_cast<blasint>(M), ki = static_cast<blasint>(K);
  if (w.dtype() == DType::F32) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mi, static_cast<blasint>(N), ki, 1.0f, xp, ki,
                w.data<float>(), ki, beta, yp, static_cast<blasint>(N));
    return;
  }
  const int64_t block = std::max<int64_t>(64, (int64_t{1} << 22) / K);  // ~16 MB of f32 rows
  std::vector<float> wf(static_cast<size_t>(std::min(block, N) * K));
  const size_t esz = dtype_size(w.dtype());
  for (int64_t n0 = 0; n0 < N; n0 += block) {
    const int64_t nb = std::min(block, N - n0);
    const auto* src = static_cast<const char*>(w.raw()) + static_cast<size_t>(n0 * K) * esz;
    parallel_for(nb, 16, [&](int64_t r0, int64_t r1) {
      convert_to_f32(src + static_cast<size_t>(r0 * K) * esz, w.dtype(), wf.data() + r0 * K,
                     static_cast<size_t>((r1 - r0) * K));
    });
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, mi, static_cast<blasint>(nb), ki, 1.0f, xp, ki, wf.data(),
                ki, beta, yp + n0, static_cast<blasint>(N));
  }
}

}  // namespace ib::ops::cpu
