// conv3d / conv2d against a direct six-loop reference (double accumulation) on random data.
#include <gtest/gtest.h>

#include <random>

#include "common/fixture.h"
#include "ops/conv.h"
#include "ops/vae_layout.h"

namespace ib {
namespace {

using test::random_tensor;

Tensor naive_conv3d(const Tensor& x, const Tensor& w, const Tensor& b, const ops::Conv3dArgs& a,
                    const Tensor& residual) {
  const int64_t Cin = x.size(0), T = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t Cout = w.size(0), kt = w.size(2), kh = w.size(3), kw = w.size(4);
  const int64_t To = (a.pad_front + T - kt) / a.stride_t + 1, Ho = (a.pad_top + H + a.pad_bottom - kh) / a.stride_h + 1,
                Wo = (a.pad_left + W + a.pad_right - kw) / a.stride_w + 1;
  Tensor y = Tensor::zeros({Cout, To, Ho, Wo});
  const float* xp = x.data<float>();
  const float* wp = w.data<float>();
  float* yp = y.data<float>();
  for (int64_t co = 0; co < Cout; ++co)
    for (int64_t to = 0; to < To; ++to)
      for (int64_t oy = 0; oy < Ho; ++oy)
        for (int64_t ox = 0; ox < Wo; ++ox) {
          double acc = b.defined() ? b.data<float>()[co] : 0.0;
          for (int64_t ci = 0; ci < Cin; ++ci)
            for (int64_t dt = 0; dt < kt; ++dt)
              for (int64_t dy = 0; dy < kh; ++dy)
                for (int64_t dx = 0; dx < kw; ++dx) {
                  const int64_t ti = to * a.stride_t + dt - a.pad_front, iy = oy * a.stride_h + dy - a.pad_top,
                                ix = ox * a.stride_w + dx - a.pad_left;
                  if (ti < 0 || ti >= T || iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  acc += static_cast<double>(xp[((ci * T + ti) * H + iy) * W + ix]) *
                         wp[(((co * Cin + ci) * kt + dt) * kh + dy) * kw + dx];
                }
          const int64_t o = ((co * To + to) * Ho + oy) * Wo + ox;
          if (residual.defined()) acc += residual.data<float>()[o];
          yp[o] = static_cast<float>(acc);
        }
  return y;
}

struct Case {
  const char* name;
  Shape x, w;
  ops::Conv3dArgs args;
  bool bias, residual;
};

ops::Conv3dArgs make_args(int64_t st, int64_t sh, int64_t sw, int64_t front, int64_t top, int64_t bottom,
                          int64_t left, int64_t right) {
  ops::Conv3dArgs a;
  a.stride_t = st;
  a.stride_h = sh;
  a.stride_w = sw;
  a.pad_front = front;
  a.pad_top = top;
  a.pad_bottom = bottom;
  a.pad_left = left;
  a.pad_right = right;
  return a;
}

// The shapes the VAE uses, plus odd sizes and strides.
const Case kCases[] = {
    {"causal3x3x3", {5, 4, 7, 9}, {6, 5, 3, 3, 3}, make_args(1, 1, 1, 2, 1, 1, 1, 1), true, false},
    {"causal3x3x3_residual", {4, 1, 6, 10}, {8, 4, 3, 3, 3}, make_args(1, 1, 1, 2, 1, 1, 1, 1), true, true},
    {"pointwise", {7, 3, 5, 6}, {9, 7, 1, 1, 1}, {}, true, true},
    {"pointwise_nobias", {7, 3, 5, 6}, {9, 7, 1, 1, 1}, {}, false, false},
    {"downsample2d", {4, 3, 8, 10}, {4, 4, 1, 3, 3}, make_args(1, 2, 2, 0, 0, 1, 0, 1), true, false},
    {"time_conv_stride2", {6, 5, 4, 3}, {6, 6, 3, 1, 1}, make_args(2, 1, 1, 0, 0, 0, 0, 0), true, false},
    {"odd_everything", {3, 6, 11, 13}, {5, 3, 2, 4, 3}, make_args(2, 3, 2, 1, 2, 0, 1, 3), true, true},
    {"pad_wider_than_kernel", {2, 2, 3, 4}, {3, 2, 1, 3, 3}, make_args(1, 1, 1, 0, 4, 4, 5, 5), true, false},
    // K·Wo·rows exceeds the col buffer: several tiles, some spanning frame boundaries.
    {"many_tiles", {64, 2, 64, 80}, {4, 64, 3, 3, 3}, make_args(1, 1, 1, 2, 1, 1, 1, 1), true, true},
};

TEST(Conv3d, MatchesNaiveReference) {
  uint32_t seed = 1;
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.name);
    const Tensor x = random_tensor(c.x, seed++), w = random_tensor(c.w, seed++);
    const Tensor b = c.bias ? random_tensor({c.w[0]}, seed++) : Tensor();
    const Tensor ref0 = naive_conv3d(x, w, b, c.args, Tensor());
    const Tensor r = c.residual ? random_tensor(ref0.shape(), seed++) : Tensor();
    const Tensor ref = c.residual ? naive_conv3d(x, w, b, c.args, r) : ref0;
    EXPECT_TENSOR_CLOSE(ops::conv3d(x, w, b, c.args, r), ref, 1e-5);
  }
}

TEST(Conv2d, IsTheSingleFrameCase) {
  const Tensor x = random_tensor({5, 9, 12}, 40), w = random_tensor({7, 5, 3, 3}, 41), b = random_tensor({7}, 42);
  const ops::Conv3dArgs a = make_args(1, 2, 1, 0, 1, 1, 0, 2);
  const Tensor y = ops::conv2d(x, w, b, a);
  const Tensor ref = naive_conv3d(x.view({5, 1, 9, 12}), w.view({7, 5, 1, 3, 3}), b, a, Tensor());
  EXPECT_EQ(y.shape(), (Shape{7, 5, 12}));
  EXPECT_TENSOR_CLOSE(y, ref.view({7, 5, 12}), 1e-5);
}

TEST(Conv3d, ChecksShapes) {
  const Tensor x = random_tensor({4, 3, 6, 6}, 50);
  EXPECT_THROW(ops::conv3d(x, random_tensor({2, 5, 3, 3, 3}, 51)), Error);           // Cin mismatch
  EXPECT_THROW(ops::conv3d(x, random_tensor({2, 4, 3, 3}, 52)), Error);              // 4-D weight
  EXPECT_THROW(ops::conv3d(x, random_tensor({2, 4, 4, 3, 3}, 53)), Error);           // kernel longer than T
  EXPECT_THROW(ops::conv3d(x, random_tensor({2, 4, 1, 1, 1}, 54), random_tensor({3}, 55)), Error);  // bias
  EXPECT_THROW(ops::conv3d(x, random_tensor({2, 4, 1, 1, 1}, 56), Tensor(), {}, random_tensor({2, 3, 6, 5}, 57)),
               Error);  // residual shape
  EXPECT_EQ(ops::conv3d(x, random_tensor({2, 4, 3, 3, 3}, 58), Tensor(), ops::Conv3dArgs::spatial_pad(1)).shape(),
            (Shape{2, 1, 6, 6}));
  // bf16 activations exist on CUDA only (with bf16 weights).
  const Tensor w = random_tensor({2, 4, 1, 1, 1}, 59);
  EXPECT_THROW(ops::conv3d(x.to(DType::BF16), w), Error);
  EXPECT_THROW(ops::conv3d(x, w, Tensor(), {}, Tensor(), DType::BF16), Error);
  EXPECT_THROW(ops::upsample2x_conv3d(x, w, Tensor(), {}, DType::BF16), Error);
}

// The fused nearest-×2 conv is, on the CPU, exactly its composition.
TEST(Upsample2xConv3d, IsTheComposition) {
  const Tensor x = random_tensor({6, 2, 5, 7}, 60), w = random_tensor({3, 6, 1, 3, 3}, 61), b = random_tensor({3}, 62);
  const ops::Conv3dArgs a = ops::Conv3dArgs::spatial_pad(1);
  const Tensor y = ops::upsample2x_conv3d(x, w, b, a);
  EXPECT_EQ(y.shape(), (Shape{3, 2, 10, 14}));
  EXPECT_TENSOR_CLOSE(y, ops::conv3d(ops::upsample_nearest2x(x), w, b, a), 0.0);
}

// Cached frames in two parts (the VAE encoder's frame-by-frame caches) are the same frames as one
// concatenated prefix; three parts are refused.
TEST(NormSiluConv3d, PrefixInTwoParts) {
  const Tensor p0 = random_tensor({5, 1, 4, 6}, 70), p1 = random_tensor({5, 1, 4, 6}, 71);
  const Tensor x = random_tensor({5, 2, 4, 6}, 72), g = random_tensor({5, 1, 1, 1}, 73);
  const Tensor w = random_tensor({4, 5, 3, 3, 3}, 74), b = random_tensor({4}, 75);
  const ops::Conv3dArgs a = ops::Conv3dArgs::spatial_pad(1);
  const Tensor ref = ops::norm_silu_conv3d(ops::cat_frames({p0, p1}), x, g, w, b, a);
  EXPECT_EQ(ref.shape(), (Shape{4, 2, 4, 6}));
  EXPECT_TENSOR_CLOSE(ops::norm_silu_conv3d(std::vector<Tensor>{p0, p1}, x, g, w, b, a), ref, 0.0);
  EXPECT_THROW(ops::norm_silu_conv3d(std::vector<Tensor>{p0, p1, p1}, x, g, w, b, a), Error);
}

}  // namespace
}  // namespace ib
