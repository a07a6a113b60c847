// GPU checks (label gpu, run on the lent GPU machine): every op with a CUDA kernel against its
// CPU reference, over one table of cases per op (odd sizes, broadcasts, head dims from 8 to 256,
// T5's bias), with the float32 tolerance. Inputs are random, never zeros.
#include <gtest/gtest.h>

#include "common/fixture.h"
#include "ops/activation.h"
#include "ops/attention.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"
#include "ops/rope.h"

namespace ib {
namespace {

using test::random_tensor;

Tensor gpu(const Tensor& t) { return t.defined() ? t.to(Device::CUDA) : t; }
Tensor cpu(const Tensor& t) { return t.to(Device::CPU); }

// bf16 weights: the GPU rounds the input to bf16 and accumulates in f32, so the reference is the
// CPU product of the same bf16-rounded operands.
TEST(GpuOps, LinearBf16) {
  for (const Shape& xs : {Shape{7, 33}, Shape{300, 512}, Shape{2, 3, 1024}}) {
    const int64_t n = xs.back() == 512 ? 640 : 19;
    const Tensor x = random_tensor(xs, 20), w = random_tensor({n, xs.back()}, 21).to(DType::BF16),
                 b = random_tensor({n}, 22);
    const Tensor ref = ops::linear(x.to(DType::BF16).to(DType::F32), w, b);
    EXPECT_TENSOR_CLOSE(cpu(ops::linear(gpu(x), gpu(w), gpu(b))), ref, 1e-5);
  }
}

TEST(GpuOps, Norms) {
  for (const Shape& s : {Shape{1, 7}, Shape{33, 128}, Shape{5, 5120}, Shape{2, 3, 1000}}) {
    const Tensor x = random_tensor(s, 1, 2.0f, 0.5f), w = random_tensor({s.back()}, 2), b = random_tensor({s.back()}, 3);
    EXPECT_TENSOR_CLOSE(cpu(ops::layer_norm(gpu(x), gpu(w), gpu(b), 1e-6f)), ops::layer_norm(x, w, b, 1e-6f), 1e-5);
    EXPECT_TENSOR_CLOSE(cpu(ops::layer_norm(gpu(x), Tensor(), Tensor(), 1e-5f)), ops::layer_norm(x, Tensor(), Tensor(), 1e-5f),
                        1e-5);
    EXPECT_TENSOR_CLOSE(cpu(ops::rms_norm(gpu(x), gpu(w), 1e-6f)), ops::rms_norm(x, w, 1e-6f), 1e-5);
  }
}

TEST(GpuOps, Activations) {
  const Tensor x = random_tensor({3, 1001}, 4, 3.0f);
  for (ops::Activation a : {ops::Activation::Gelu, ops::Activation::GeluTanh, ops::Activation::Silu})
    EXPECT_TENSOR_CLOSE(cpu(ops::activate(gpu(x), a)), ops::activate(x, a), 1e-5) << static_cast<int>(a);
}

TEST(GpuOps, ElementwiseWithBroadcast) {
  const Tensor a = random_tensor({7, 300}, 5);
  for (const Shape& bs : {Shape{7, 300}, Shape{300}}) {
    const Tensor b = random_tensor(bs, 6);
    for (ops::Binary op : {ops::Binary::Add, ops::Binary::Sub, ops::Binary::Mul})
      EXPECT_TENSOR_CLOSE(cpu(ops::binary(gpu(a), gpu(b), op)), ops::binary(a, b, op), 1e-6) << static_cast<int>(op);
  }
  const Tensor d = gpu(a).clone();
  const Tensor row = random_tensor({300}, 7);
  ops::add_(d, gpu(row));
  EXPECT_TENSOR_CLOSE(cpu(d), ops::add(a, row), 1e-6);
  EXPECT_TENSOR_CLOSE(cpu(ops::affine(gpu(a), 1.5f, -0.25f)), ops::affine(a, 1.5f, -0.25f), 1e-6);
}

TEST(GpuOps, Rope3d) {
  struct Case { int64_t heads, d; ops::RopeGrid grid; };
  // Head dims 12 (split 2/2/2), 64, 128 (the release: 44/42/42) and a grid with every axis > 1.
  for (const Case& c : {Case{2, 12, {3, 2, 5}}, Case{4, 64, {2, 3, 4}}, Case{3, 128, {5, 4, 6}}}) {
    const int64_t L = c.grid.frames * c.grid.height * c.grid.width;
    const Tensor x = random_tensor({L, c.heads * c.d}, 8);
    EXPECT_TENSOR_CLOSE(cpu(ops::rope_3d(gpu(x), c.heads, c.grid)), ops::rope_3d(x, c.heads, c.grid), 1e-6)
        << "d " << c.d;
  }
}

TEST(GpuOps, Attention) {
  struct Case { int64_t Lq, Lk, heads, d, dv; bool bias; };
  const Case cases[] = {{1, 1, 1, 8, 8, false},     {37, 53, 3, 16, 16, false}, {100, 17, 2, 64, 64, false},
                        {70, 70, 4, 128, 128, false}, {9, 300, 1, 256, 256, false}, {20, 20, 4, 16, 16, true},
                        {19, 41, 2, 40, 24, false}};
  for (const Case& c : cases) {
    const Tensor q = random_tensor({c.Lq, c.heads * c.d}, 9), k = random_tensor({c.Lk, c.heads * c.d}, 10),
                 v = random_tensor({c.Lk, c.heads * c.dv}, 11);
    ops::AttentionArgs args;
    args.num_heads = c.heads;
    args.scale = 1.0f / std::sqrt(static_cast<float>(c.d));
    if (c.bias) {
      args.bias = random_tensor({c.heads, c.Lq, c.Lk}, 12, 2.0f);
      // T5's padding: masked keys hold the lowest finite value.
      for (int64_t i = 0; i < args.bias.numel(); i += 3) args.bias.data<float>()[i] = -3.4028234e38f;
    }
    const Tensor ref = ops::attention(q, k, v, args);
    ops::AttentionArgs dargs = args;
    dargs.bias = gpu(args.bias);
    EXPECT_TENSOR_CLOSE(cpu(ops::attention(gpu(q), gpu(k), gpu(v), dargs)), ref, 1e-5)
        << c.Lq << "x" << c.Lk << " heads " << c.heads << " d " << c.d;
  }
}

}  // namespace
}  // namespace ib
