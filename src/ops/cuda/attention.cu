// CUDA attention, f32 and simple (correctness first; the fast tensor-core kernel comes with the
// GPU issue): one warp per query row of one head, keys and values streamed through shared memory
// in tiles of kTile, online softmax (running max and sum), accumulation in f32. Lane l holds
// features l, l+32, ... of q and of the output row.
#include <cmath>

#include "ops/attention.h"
#include "ops/cuda/cuda_common.h"

namespace ib::ops::cuda {

namespace {

constexpr int kWarps = 8;  // query rows per block
constexpr int kTile = 16;  // keys per shared-memory tile

struct AttnParams {
  const float* q;
  const float* k;
  const float* v;
  const float* bias;  // [H, Lq, Lk] or null
  float* out;
  int64_t Lq, Lk, D, Dv, q_stride, v_stride;
  float scale;
};

template <int kPer>  // features per lane: D, Dv <= 32 * kPer
__global__ void attention_kernel(AttnParams p) {
  extern __shared__ float smem[];
  float* ks = smem;                  // [kTile, D]
  float* vs = smem + kTile * p.D;    // [kTile, Dv]
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t h = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * kWarps + warp;
  const bool active = i < p.Lq;
  float q[kPer], acc[kPer];
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int64_t c = lane + 32 * e;
    q[e] = (active && c < p.D) ? p.q[i * p.q_stride + h * p.D + c] : 0.0f;
    acc[e] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int64_t j0 = 0; j0 < p.Lk; j0 += kTile) {
    const int n = static_cast<int>(min(static_cast<int64_t>(kTile), p.Lk - j0));
    __syncthreads();  // the previous tile is no longer read
    for (int64_t t = threadIdx.x; t < n * p.D; t += blockDim.x)
      ks[t] = p.k[(j0 + t / p.D) * p.q_stride + h * p.D + t % p.D];
    for (int64_t t = threadIdx.x; t < n * p.Dv; t += blockDim.x)
      vs[t] = p.v[(j0 + t / p.Dv) * p.v_stride + h * p.Dv + t % p.Dv];
    __syncthreads();
    if (!active) continue;
    float s[kTile];
    float tile_max = -INFINITY;
#pragma unroll
    for (int jj = 0; jj < kTile; ++jj) {
      if (jj >= n) break;
      float d = 0.0f;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        const int64_t c = lane + 32 * e;
        if (c < p.D) d += q[e] * ks[jj * p.D + c];
      }
      for (int o = 16; o > 0; o >>= 1) d += __shfl_xor_sync(0xffffffffu, d, o);
      float x = p.scale * d;
      if (p.bias != nullptr) x += p.bias[(h * p.Lq + i) * p.Lk + j0 + jj];
      s[jj] = x;
      tile_max = fmaxf(tile_max, x);
    }
    const float m_new = fmaxf(m, tile_max);
    const float corr = m == -INFINITY ? 0.0f : expf(m - m_new);
    l *= corr;
#pragma unroll
    for (int e = 0; e < kPer; ++e) acc[e] *= corr;
#pragma unroll
    for (int jj = 0; jj < kTile; ++jj) {
      if (jj >= n) break;
      const float w = expf(s[jj] - m_new);
      l += w;
#pragma unroll
      for (int e = 0; e < kPer; ++e) {
        const int64_t c = lane + 32 * e;
        if (c < p.Dv) acc[e] += w * vs[jj * p.Dv + c];
      }
    }
    m = m_new;
  }
  if (!active) return;
#pragma unroll
  for (int e = 0; e < kPer; ++e) {
    const int64_t c = lane + 32 * e;
    if (c < p.Dv) p.out[i * p.v_stride + h * p.Dv + c] = acc[e] / l;
  }
}

template <int kPer>
void launch(const AttnParams& p, int64_t H) {
  const size_t shared = static_cast<size_t>(kTile * (p.D + p.Dv)) * sizeof(float);
  const dim3 grid(static_cast<unsigned>((p.Lq + kWarps - 1) / kWarps), static_cast<unsigned>(H));
  attention_kernel<kPer><<<grid, kWarps * 32, shared>>>(p);
  check_launch("attention");
}

}  // namespace

void attention(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionArgs& args, const Tensor& out) {
  const int64_t H = args.num_heads;
  AttnParams p{};
  p.q = dev_f32(q, "attention");
  p.k = dev_f32(k, "attention");
  p.v = dev_f32(v, "attention");
  p.bias = args.bias.defined() ? dev_f32(args.bias, "attention") : nullptr;
  p.out = dev_f32(out, "attention");
  p.Lq = q.size(0);
  p.Lk = k.size(0);
  p.D = q.size(1) / H;
  p.Dv = v.size(1) / H;
  p.q_stride = q.size(1);
  p.v_stride = v.size(1);
  p.scale = args.scale;
  if (p.Lq == 0 || p.Dv == 0) return;
  IB_CHECK(p.Lk > 0, "attention on CUDA: no keys");
  IB_CHECK(H <= 65535 && (p.Lq + kWarps - 1) / kWarps <= 0x7fffffff, "attention on CUDA: {} heads x {} rows is too many",
           H, p.Lq);
  const int64_t widest = std::max(p.D, p.Dv);
  if (widest <= 32) return launch<1>(p, H);
  if (widest <= 64) return launch<2>(p, H);
  if (widest <= 128) return launch<4>(p, H);
  if (widest <= 256) return launch<8>(p, H);
  fail("attention on CUDA: head dim {} is over 256", widest);
}

}  // namespace ib::ops::cuda
