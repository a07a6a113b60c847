// CPU attention reference: one (head, query row) per work item; logits, softmax (max subtracted)
// and the weighted sum of values all in f32. The dot products use eight partial sums so the
// compiler can vectorise them.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/parallel.h"
#include "ops/attention.h"

namespace ib::ops::cpu {

namespace {
inline float dot(const float* a, const float* b, int64_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t c = 0;
  for (; c + 8 <= n; c += 8)
    for (int64_t u = 0; u < 8; ++u) acc[u] += a[c + u] * b[c + u];
  float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  for (; c < n; ++c) s += a[c] * b[c];
  return s;
}
}  // namespace

void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionArgs& args, const Tensor& out) {
  const int64_t H = args.num_heads, Lq = q.size(0), Lk = k.size(0);
  const int64_t D = q.size(1) / H, Dv = v.size(1) / H;
  const int64_t qs = q.size(1), vs = v.size(1);
  const float* qp = q.data<float>();
  const float* kp = k.data<float>();
  const float* vp = v.data<float>();
  const float* bp = args.bias.defined() ? args.bias.data<float>() : nullptr;
  float* op = out.data<float>();
  const float scale = args.scale;
  parallel_for(H * Lq, std::max<int64_t>(1, 8192 / std::max<int64_t>(Lk * (D + Dv), 1)), [&](int64_t r0, int64_t r1) {
    std::vector<float> s(static_cast<size_t>(Lk));
    std::vector<float> acc(static_cast<size_t>(Dv));
    for (int64_t r = r0; r < r1; ++r) {
      const int64_t h = r / Lq, i = r % Lq;
      const float* qr = qp + i * qs + h * D;
      const float* br = bp ? bp + (h * Lq + i) * Lk : nullptr;
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < Lk; ++j) {
        float x = scale * dot(qr, kp + j * qs + h * D, D);
        if (br) x += br[j];
        s[static_cast<size_t>(j)] = x;
        m = std::max(m, x);
      }
      std::fill(acc.begin(), acc.end(), 0.0f);
      float* orow = op + i * vs + h * Dv;
      if (Lk == 0 || m == -std::numeric_limits<float>::infinity()) {  // nothing to attend to
        std::fill_n(orow, Dv, 0.0f);
        continue;
      }
      float sum = 0;
      for (int64_t j = 0; j < Lk; ++j) {
        const float p = std::exp(s[static_cast<size_t>(j)] - m);
        sum += p;
        const float* vr = vp + j * vs + h * Dv;
        for (int64_t c = 0; c < Dv; ++c) acc[static_cast<size_t>(c)] += p * vr[c];
      }
      const float inv = 1.0f / sum;
      for (int64_t c = 0; c < Dv; ++c) orow[c] = acc[static_cast<size_t>(c)] * inv;
    }
  });
}

}  // namespace ib::ops::cpu
