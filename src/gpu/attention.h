// Attention on the tensor cores for the GPU engine: bf16 q, k, v and output, f32 softmax and
// accumulation, never materialising the Lq x Lk logits. Three back-ends share one problem struct:
// our own flash kernel (flash_attention.cu, any head dim it was built for, mma.sync), our Hopper
// kernel (hopper_attention.cu: head dim 128 on sm_90, TMA and wgmma) and cuDNN's fused SDPA
// through the graph API (cudnn_attention.cc, when the build has cuDNN). attention() picks one.
// The CPU reference is ops::cpu::attention on the same bf16-rounded values in f32.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace ib::gpu {

// Token-major layout, as the linear layers write it: row t of batch b of q starts at
// q + b*q_batch_stride + t*q_row_stride and holds heads*head_dim bf16 values, head n owning
// features n*head_dim ... n*head_dim + head_dim - 1 (so q, k and v may be column slices of one
// fused [L, 3*dim] buffer). Same for k, v and out. Strides are in elements. No mask, no bias.
struct AttentionProblem {
  const void* q = nullptr;  // bf16
  const void* k = nullptr;  // bf16
  const void* v = nullptr;  // bf16
  void* out = nullptr;      // bf16
  int64_t batch = 1, heads = 1, head_dim = 0;
  int64_t lq = 0, lk = 0;
  int64_t q_row_stride = 0, k_row_stride = 0, v_row_stride = 0, o_row_stride = 0;
  int64_t q_batch_stride = 0, k_batch_stride = 0, v_batch_stride = 0, o_batch_stride = 0;
  float scale = 1.0f;  // logits = scale * q.k
  cudaStream_t stream = nullptr;
  // Non-null: fp8 attention (gpu/attention_fp8.h): q and k are e4m3 and this points at the call's
  // device scales, indexed by Fp8Scale. Strides still count elements. Then either
  // - v_transposed is null: v and out are e4m3 in the layout above (cuDNN's fp8 kernel), or
  // - v_transposed holds v transposed per head as quantize_qkv_fp8_vt writes it (v is unused) and
  //   out is bf16 (our Hopper fp8 kernel).
  float* fp8_scales = nullptr;
  const void* v_transposed = nullptr;
};

// Self-attention over a fused [L, 3*heads*head_dim] buffer of q | k | v (the DiT's qkv product),
// output [L, heads*head_dim], scale 1/sqrt(head_dim).
AttentionProblem fused_self_attention(const void* qkv, void* out, int64_t tokens, int64_t heads, int64_t head_dim);

enum class AttentionBackend { Auto, Flash, Cudnn, Hopper };

// Our flash kernel (flash_attention.cu). Supported head dims: flash_attention_supports().
bool flash_attention_supports(int64_t head_dim);
void flash_attention(const AttentionProblem& p);

// Our Hopper kernel (hopper_attention.cu): head dim 128, bf16, an sm_90 GPU, q/k/v rows 16-byte
// aligned (the TMA's rule). hopper_attention() throws ib::Error naming the problem otherwise.
bool hopper_attention_supports(const AttentionProblem& p);
void hopper_attention(const AttentionProblem& p);

// Our Hopper fp8 kernel (hopper_attention_fp8.cu): an fp8 problem with v_transposed, head dim
// 128, an sm_90 GPU, 16-byte aligned rows. hopper_fp8_available() says whether this GPU runs it at
// all (the engine picks the fp8 layout it quantises into before the problem's buffers exist).
bool hopper_attention_fp8_supports(const AttentionProblem& p);
bool hopper_fp8_available();
void hopper_attention_fp8(const AttentionProblem& p);

// cuDNN's fused SDPA (cudnn_attention.cc). cudnn_attention_supports() is false in builds without
// cuDNN, for head dims cuDNN's fused kernels do not take, or when cuDNN refuses the graph at run
// time (then the reason is logged once).
bool cudnn_attention_supports(const AttentionProblem& p);
void cudnn_attention(const AttentionProblem& p);

// Runs p on `backend` (Auto: the Hopper kernel where it supports p and Lk >= 2048, else cuDNN where
// it supports p, else the flash kernel; fp8 problems go by their layout: with v_transposed our
// Hopper fp8 kernel, without it cuDNN's). Throws ib::Error naming the head dim when no back-end
// takes it.
void attention(const AttentionProblem& p, AttentionBackend backend = AttentionBackend::Auto);

// Whether an fp8 self-attention of this head dim and key count should be quantised into our Hopper
// kernel's layout (quantize_qkv_fp8_vt) rather than cuDNN's: backend Hopper, or Auto with head dim
// 128, Lk >= 2048 and an sm_90 GPU.
bool fp8_attention_uses_hopper(int64_t head_dim, int64_t lk, AttentionBackend backend);

}  // namespace ib::gpu
