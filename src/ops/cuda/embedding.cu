// CUDA embedding lookup: each selected row of an f32, bf16 or f16 table is widened to f32 (exactly,
// as the CPU reference does). The ids live on the device, so they are not checked on the host:
// an id outside [0, V) gives a row of NaNs rather than a read out of bounds (checking would need a
// device-to-host copy and a sync per call). Callers that hold the ids on the host check them there
// (T5Encoder::encode does).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cmath>

#include "ops/cuda/cuda_common.h"
#include "ops/embedding.h"

namespace ib::ops::cuda {

namespace {

__device__ inline float widen(float v) { return v; }
__device__ inline float widen(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline float widen(__half v) { return __half2float(v); }

struct EmbeddingParams {
  const void* table;  // [V, D]
  const void* ids;    // [L], i32 or i64
  float* out;         // [L, D]
  int64_t V, D, n;    // n = L * D
};

template <typename T, typename I>
__global__ void embedding_kernel(EmbeddingParams p) {
  const auto* table = static_cast<const T*>(p.table);
  const auto* ids = static_cast<const I*>(p.ids);
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < p.n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t row = i / p.D, c = i - row * p.D;
    const auto id = static_cast<int64_t>(ids[row]);
    p.out[i] = (id >= 0 && id < p.V) ? widen(table[id * p.D + c]) : NAN;
  }
}

template <typename T>
void launch(const EmbeddingParams& p, DType id_dtype) {
  if (id_dtype == DType::I32)
    embedding_kernel<T, int32_t><<<blocks_for(p.n), 256>>>(p);
  else
    embedding_kernel<T, int64_t><<<blocks_for(p.n), 256>>>(p);
}

}  // namespace

void embedding(const Tensor& table, const Tensor& ids, const Tensor& out) {
  EmbeddingParams p{table.raw(), ids.raw(), dev_f32(out, "embedding"), table.size(0), table.size(1),
                    ids.size(0) * table.size(1)};
  if (p.n == 0) return;
  IB_CHECK(table.device() == Device::CUDA && ids.device() == Device::CUDA,
           "embedding on CUDA: table {} and ids {} must be device tensors", table.str(), ids.str());
  switch (table.dtype()) {
    case DType::F32: launch<float>(p, ids.dtype()); break;
    case DType::BF16: launch<__nv_bfloat16>(p, ids.dtype()); break;
    case DType::F16: launch<__half>(p, ids.dtype()); break;
    default: fail("embedding on CUDA: table dtype {} is not supported (f32, bf16, f16)", dtype_name(table.dtype()));
  }
  check_launch("embedding");
}

}  // namespace ib::ops::cuda
