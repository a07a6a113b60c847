// conv3d: PyTorch's Conv3d (cross-correlation) on one channel-first video [Cin, T, H, W] with
// weight [Cout, Cin, kt, kh, kw]. H/W get explicit zero padding (any side); in time only zero
// frames *before* the first frame are supported (causal convs) — other temporal context, like
// the VAE's cached frames, is concatenated by the caller. conv2d is the kt = 1 case on [Cin, H, W].
// Activations (x, cached frames, residual, output) are f32; on CUDA with bf16 weights each may
// also be bf16 (the VAE's bf16 activations, as under upstream's bf16 autocast): out_dtype
// picks the output's, the inputs' are read from the tensors. Bias and accumulation stay f32.
#pragma once

#include <vector>

#include "core/tensor.h"

namespace ib::ops {

struct Conv3dArgs {
  int64_t stride_t = 1, stride_h = 1, stride_w = 1;
  int64_t pad_top = 0, pad_bottom = 0, pad_left = 0, pad_right = 0;  // zeros around each frame
  int64_t pad_front = 0;                                              // zero frames before frame 0

  // Symmetric spatial padding p on all four sides (PyTorch's padding=(·, p, p)).
  static Conv3dArgs spatial_pad(int64_t p) {
    Conv3dArgs a;
    a.pad_top = a.pad_bottom = a.pad_left = a.pad_right = p;
    return a;
  }
};

// x: f32 [Cin, T, H, W]; w: f32 [Cout, Cin, kt, kh, kw] (or bf16 on CUDA: the input is rounded
// to bf16 and the products run on the tensor cores with f32 accumulation); b: optional f32 [Cout];
// residual: optional f32 [Cout, To, Ho, Wo], added to the output (a fused skip connection).
// Returns [Cout, To, Ho, Wo] in out_dtype with To = (pad_front + T - kt) / stride_t + 1, Ho =
// (pad_top + H + pad_bottom - kh) / stride_h + 1, Wo likewise. (x and residual may be bf16, and
// out_dtype bf16, with bf16 weights on CUDA only.)
Tensor conv3d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), const Conv3dArgs& args = {},
              const Tensor& residual = Tensor(), DType out_dtype = DType::F32);

// The VAE's RMS_norm → SiLU → CausalConv3d in one op: conv3d(rms_norm_channels(cat_frames({prefix,
// x}), gamma, true), w, b, args, residual). prefix (optional, [Cin, Tp, H, W]) holds the frames
// cached from the previous chunk, before the norm (the norm acts per position, so normalising
// them again gives exactly the values upstream caches). On CUDA the normalised input is never
// stored: the norm runs while the input is packed for cuDNN; without cuDNN the op composes.
// prefix and x may differ in dtype (f32 or bf16, as conv3d allows).
Tensor norm_silu_conv3d(const Tensor& prefix, const Tensor& x, const Tensor& gamma, const Tensor& w,
                        const Tensor& b = Tensor(), const Conv3dArgs& args = {}, const Tensor& residual = Tensor(),
                        DType out_dtype = DType::F32);
// The same with the cached frames in up to two tensors, oldest first (cat_frames(prefix) is the
// prefix above): a cache fed one frame at a time holds its newest frame as the tensor it was,
// without a copy. Each part may be f32 or bf16.
Tensor norm_silu_conv3d(const std::vector<Tensor>& prefix, const Tensor& x, const Tensor& gamma, const Tensor& w,
                        const Tensor& b = Tensor(), const Conv3dArgs& args = {}, const Tensor& residual = Tensor(),
                        DType out_dtype = DType::F32);

// The VAE's Resample upsampling: conv3d(upsample_nearest2x(x), w, b, args) (nearest ×2 of every
// frame, then the conv). On CUDA the upsampled input is never stored: the conv's packing reads
// pixel (y, x) from (y/2, x/2); without cuDNN the op composes.
Tensor upsample2x_conv3d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), const Conv3dArgs& args = {},
                         DType out_dtype = DType::F32);

// x: f32 [Cin, H, W]; w: f32 [Cout, Cin, kh, kw]. Temporal fields of args are ignored.
Tensor conv2d(const Tensor& x, const Tensor& w, const Tensor& b = Tensor(), const Conv3dArgs& args = {},
              const Tensor& residual = Tensor());

namespace cpu {
void conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& args, const Tensor& residual,
            const Tensor& y);
}
namespace cuda {
void conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& args, const Tensor& residual,
            const Tensor& y);
// Which implementation the CUDA conv3d uses (the GPU tests run both): Auto is cuDNN where the build
// has it (falling back per shape when cuDNN offers no algorithm), else im2col + cuBLAS GEMM.
enum class ConvBackend { Auto, Cudnn, Gemm };
void set_conv_backend(ConvBackend backend);
bool conv_backend_available(ConvBackend backend);
// Whether cuDNN's bf16 convs may compute extra zero output channels (rounded up to 64 or 128) when
// its search finds that faster: Search (the default) times both; Never and Always pin one, for
// tests and measurements. Changing it forgets the plans already chosen.
enum class ConvOutputPadding { Search, Never, Always };
void set_conv_output_padding(ConvOutputPadding mode);
// cuDNN's plan searches (each times the algorithms of one new bf16 or f32 conv shape) made by this
// process so far. The bf16 plans found are also kept on disk (core/cache_file.h's cache_dir(),
// cudnn-conv-plans.txt, valid for one GPU model and cuDNN version) and read by later processes
// instead of searching; forget_conv_plans() drops the plans held in memory, so that the next conv
// reads the file again (for the tests).
int64_t conv_plan_searches();
void forget_conv_plans();
// The fused norm_silu_conv3d into y; false when this case has no fused path (the op then composes).
// prefix: at most two parts (see the op).
bool norm_silu_conv3d(const std::vector<Tensor>& prefix, const Tensor& x, const Tensor& gamma, const Tensor& w,
                      const Tensor& b, const Conv3dArgs& args, const Tensor& residual, const Tensor& y);
// The fused upsample2x_conv3d into y; false when this case has no fused path (the op then composes).
bool upsample2x_conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const Conv3dArgs& args, const Tensor& y);
}

}  // namespace ib::ops
