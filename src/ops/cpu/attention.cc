// CPU attention reference: logits, softmax (max subtracted) and the weighted sum of values, all
// in f32, for a block of query rows of one head per work item. The dot products use eight
// partial sums so the compiler can vectorise them.
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
  const float* bp = args.bias.defined() ? args.bias.data<float>() : nullptr;
  float* op = out.data<float>();
  const float scale = args.scale;
  // Keys and values per head, contiguous ([H, Lk, D]), so a block of query rows streams them once.
  std::vector<float> kh(static_cast<size_t>(H * Lk * D)), vh(static_cast<size_t>(H * Lk * Dv));
  parallel_for(Lk, 256, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j)
      for (int64_t h = 0; h < H; ++h) {
        std::copy_n(k.data<float>() + j * qs + h * D, D, kh.data() + (h * Lk + j) * D);
        std::copy_n(v.data<float>() + j * vs + h * Dv, Dv, vh.data() + (h * Lk + j) * Dv);
      }
  });
  // Work item: one head and a block of query rows. The arithmetic per row (dot products, max,
  // exp, sums in key order) is the same as a row-at-a-time loop; blocking only reuses loads.
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (Lq + kBlock - 1) / kBlock;
  parallel_for(H * blocks, 1, [&](int64_t w0, int64_t w1) {
    std::vector<float> s(static_cast<size_t>(kBlock * Lk));
    std::vector<float> acc(static_cast<size_t>(kBlock * Dv));
    float m[kBlock], sum[kBlock];
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t h = w / blocks, i0 = (w % blocks) * kBlock, nb = std::min(kBlock, Lq - i0);
      const float* kb = kh.data() + h * Lk * D;
      const float* vb = vh.data() + h * Lk * Dv;
      for (int64_t r = 0; r < nb; ++r) m[r] = -std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < Lk; ++j) {
        const float* kr = kb + j * D;
        for (int64_t r = 0; r < nb; ++r) {
          float x = scale * dot(qp + (i0 + r) * qs + h * D, kr, D);
          if (bp) x += bp[(h * Lq + i0 + r) * Lk + j];
          s[static_cast<size_t>(r * Lk + j)] = x;
          m[r] = std::max(m[r], x);
        }
      }
      std::fill(acc.begin(), acc.end(), 0.0f);
      for (int64_t r = 0; r < nb; ++r) {
        sum[r] = 0;
        if (m[r] == -std::numeric_limits<float>::infinity()) continue;  // nothing to attend to
        float* sr = s.data() + r * Lk;
        for (int64_t j = 0; j < Lk; ++j) {
          sr[j] = std::exp(sr[j] - m[r]);
          sum[r] += sr[j];
        }
      }
      for (int64_t j = 0; j < Lk; ++j) {
        const float* vr = vb + j * Dv;
        for (int64_t r = 0; r < nb; ++r) {
          const float p = s[static_cast<size_t>(r * Lk + j)];
          float* ar = acc.data() + r * Dv;
          for (int64_t c = 0; c < Dv; ++c) ar[c] += p * vr[c];
        }
      }
      for (int64_t r = 0; r < nb; ++r) {
        float* orow = op + (i0 + r) * vs + h * Dv;
        if (Lk == 0 || m[r] == -std::numeric_limits<float>::infinity()) {
          std::fill_n(orow, Dv, 0.0f);
          continue;
        }
        const float inv = 1.0f / sum[r];
        for (int64_t c = 0; c < Dv; ++c) orow[c] = acc[static_cast<size_t>(r * Dv + c)] * inv;
      }
    }
  });
}

}  // namespace ib::ops::cpu
