// CUDA layout helpers of the Wan-VAE: the frame-block copy (one strided 2-D copy on the stream, a
// row per channel), nearest ×2 upsampling and a tiled 2-D transpose.
#include "ops/cuda/cuda_common.h"
#include "ops/vae_layout.h"

namespace ib::ops::cuda {

namespace {

// y[..., Y, X] = x[..., Y/2, X/2]; one thread per output element, so writes are coalesced.
__global__ void upsample_nearest2x_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t H, int64_t W,
                                          int64_t n) {
  const int64_t W2 = 2 * W, H2 = 2 * H;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t X = i % W2, r = i / W2, Y = r % H2, plane = r / H2;
    y[i] = x[(plane * H + Y / 2) * W + X / 2];
  }
}

// y[C, R] = x[R, C]ᵀ through a 32×32 shared tile. Grid: (C tiles, R tiles); block 32×8.
__global__ void transpose2d_kernel(const float* __restrict__ x, float* __restrict__ y, int64_t R, int64_t C) {
  __shared__ float tile[32][33];
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * 32, r0 = static_cast<int64_t>(blockIdx.y) * 32;
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t r = r0 + i, c = c0 + threadIdx.x;
    if (r < R && c < C) tile[i][threadIdx.x] = x[r * C + c];
  }
  __syncthreads();
  for (int i = threadIdx.y; i < 32; i += blockDim.y) {
    const int64_t c = c0 + i, r = r0 + threadIdx.x;
    if (r < R && c < C) y[c * R + r] = tile[threadIdx.x][i];
  }
}

}  // namespace

void copy_frames(const Tensor& src, const Tensor& dst, const FrameBlock& b) {
  if (b.channels == 0 || b.frames == 0) return;
  IB_CHECK(src.device() == Device::CUDA && dst.device() == Device::CUDA, "copy_frames on CUDA: {} -> {} off the device",
           src.str(), dst.str());
  const size_t frame = static_cast<size_t>(src.size(1) > 0 ? src.numel() / (src.size(0) * src.size(1)) : 0) *
                       dtype_size(src.dtype());  // bytes of one frame of one channel
  const auto Ts = static_cast<size_t>(src.size(1)), Td = static_cast<size_t>(dst.size(1));
  const char* s = static_cast<const char*>(src.raw()) + (static_cast<size_t>(b.src_c0) * Ts + b.src_t0) * frame;
  char* d = static_cast<char*>(dst.raw()) + (static_cast<size_t>(b.dst_c0) * Td + b.dst_t0) * frame;
  check_cuda(cudaMemcpy2DAsync(d, Td * frame, s, Ts * frame, static_cast<size_t>(b.frames) * frame,
                               static_cast<size_t>(b.channels), cudaMemcpyDeviceToDevice, nullptr),
             "cudaMemcpy2DAsync (copy_frames)");
}

void upsample_nearest2x(const Tensor& x, const Tensor& y) {
  const int64_t n = y.numel();
  if (n == 0) return;
  upsample_nearest2x_kernel<<<blocks_for(n), 256>>>(dev_f32(x, "upsample_nearest2x"), dev_f32(y, "upsample_nearest2x"),
                                                    x.size(-2), x.size(-1), n);
  check_launch("upsample_nearest2x");
}

void transpose2d(const Tensor& x, const Tensor& y) {
  const int64_t R = x.size(0), C = x.size(1);
  if (R == 0 || C == 0) return;
  IB_CHECK((R + 31) / 32 <= 65535, "transpose2d on CUDA: {} rows is too many", R);
  const dim3 grid(static_cast<unsigned>((C + 31) / 32), static_cast<unsigned>((R + 31) / 32));
  transpose2d_kernel<<<grid, dim3(32, 8)>>>(dev_f32(x, "transpose2d"), dev_f32(y, "transpose2d"), R, C);
  check_launch("transpose2d");
}

}  // namespace ib::ops::cuda
