// CUDA pixel attention with cuBLAS, channel-first throughout (no transposes): qkv [3C, N] = W·x + b
// in one GEMM, then for a block of query rows at a time (the logits block stays under ~256 MB)
// S = scale·Qᵀ K [rows, N], a row softmax in place, and O[:, rows] = V·Sᵀ. f32 weights: exact f32
// (SGEMM, the CPU reference's precision). bf16 weights: bf16 projections with f32 accumulation and
// the two attention products in TF32, the precision class of upstream's bf16 autocast.
#include <cublas_v2.h>

#include <algorithm>
#include <cmath>

#include "ops/convert.h"
#include "ops/cuda/cuda_common.h"
#include "ops/vae_attention.h"

namespace ib::ops::cuda {

namespace {

constexpr int kThreads = 256;

__device__ float block_reduce(float v, float* shared, bool is_max) {
  for (int o = 16; o > 0; o >>= 1) {
    const float u = __shfl_xor_sync(0xffffffffu, v, o);
    v = is_max ? fmaxf(v, u) : v + u;
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // `shared` may still be read from a previous call
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  float t = shared[0];
  for (int w = 1; w < kThreads / 32; ++w) t = is_max ? fmaxf(t, shared[w]) : t + shared[w];
  return t;
}

// Row i of s (length n) becomes softmax(row), max subtracted. One block per row.
__global__ void softmax_rows(float* __restrict__ s, int64_t n) {
  __shared__ float shared[kThreads / 32];
  float* row = s + static_cast<int64_t>(blockIdx.x) * n;
  float m = -INFINITY;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) m = fmaxf(m, row[j]);
  m = block_reduce(m, shared, true);
  float sum = 0.0f;
  for (int64_t j = threadIdx.x; j < n; j += kThreads) sum += expf(row[j] - m);
  const float inv = 1.0f / block_reduce(sum, shared, false);
  for (int64_t j = threadIdx.x; j < n; j += kThreads) row[j] = expf(row[j] - m) * inv;
}

__global__ void fill_rows(const float* __restrict__ b, float* __restrict__ y, int64_t N, int64_t n) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x)
    y[i] = b[i / N];
}

int to_int(int64_t v) {
  IB_CHECK(v >= 0 && v <= 0x7fffffff, "pixel_attention on CUDA: size {} is too large", v);
  return static_cast<int>(v);
}

}  // namespace

void pixel_attention(const Tensor& x, const Tensor& qkv_w, const Tensor& qkv_b, float scale, const Tensor& y) {
  const int64_t C = x.size(0), N = x.size(1);
  const bool bf16 = qkv_w.dtype() == DType::BF16;
  const int c = to_int(C), n = to_int(N);
  const float one = 1.0f, zero = 0.0f;
  cublasHandle_t h = cublas_handle();

  // qkv [3C, N] = W [3C, C] · x [C, N] + b. Column-major: qkvᵀ [N, 3C] = xᵀ [N, C] · Wᵀ [C, 3C].
  const Tensor qkv = Tensor::empty({3 * C, N}, DType::F32, Device::CUDA);
  float* qp = qkv.data<float>();
  fill_rows<<<blocks_for(3 * C * N), 256>>>(dev_f32(qkv_b, "pixel_attention"), qp, N, 3 * C * N);
  check_launch("fill_rows");
  if (!bf16) {
    check_cublas(cublasSgemm(h, CUBLAS_OP_N, CUBLAS_OP_N, n, 3 * c, c, &one, dev_f32(x, "pixel_attention"), n,
                             qkv_w.data<float>(), c, &one, qp, n),
                 "cublasSgemm (pixel_attention qkv)");
  } else {
    const Tensor xb = Tensor::empty({C, N}, DType::BF16, Device::CUDA);
    convert_f32_to_bf16(dev_f32(x, "pixel_attention"), xb.raw(), C * N);
    check_cublas(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, n, 3 * c, c, &one, xb.raw(), CUDA_R_16BF, n, qkv_w.raw(),
                              CUDA_R_16BF, c, &one, qp, CUDA_R_32F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (pixel_attention qkv, bf16)");
  }
  const float* q = qp;
  const float* k = qp + C * N;
  const float* v = qp + 2 * C * N;
  float* out = dev_f32(y, "pixel_attention");

  constexpr int64_t kScoreBudget = int64_t{64} << 20;  // floats in one logits block
  const int64_t rows = std::clamp<int64_t>(kScoreBudget / N, 1, N);
  const Tensor s = Tensor::empty({rows, N}, DType::F32, Device::CUDA);
  const cublasComputeType_t compute = bf16 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  for (int64_t i0 = 0; i0 < N; i0 += rows) {
    const int nb = to_int(std::min(rows, N - i0));
    // S [nb, N] (row-major) = scale · Q[:, i0..]ᵀ K. Column-major: Sᵀ [N, nb] = Kᵀ [N, C] · Q[:, i0..] [C, nb].
    check_cublas(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_T, n, nb, c, &scale, k, CUDA_R_32F, n, q + i0, CUDA_R_32F, n,
                              &zero, s.data<float>(), CUDA_R_32F, n, compute, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (pixel_attention logits)");
    softmax_rows<<<static_cast<unsigned>(nb), kThreads>>>(s.data<float>(), N);
    check_launch("softmax_rows");
    // O[:, i0..] = V · Pᵀ. Column-major: Oᵀ[i0.., C] (ld N) = P [nb, N] · Vᵀ [N, C].
    check_cublas(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, nb, c, n, &one, s.data<float>(), CUDA_R_32F, n, v,
                              CUDA_R_32F, n, &zero, out + i0, CUDA_R_32F, n, compute, CUBLAS_GEMM_DEFAULT),
                 "cublasGemmEx (pixel_attention output)");
  }
}

}  // namespace ib::ops::cuda
