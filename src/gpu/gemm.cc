// cuBLASLt products for the GPU engine (see gemm.h). Row-major y[M,N] = x[M,K] w[N,K]^T is the
// column-major product y^T[N,M] = w^T(op T of the stored K x N) x^T(K x M), so the bias, a vector
// over N, is cuBLASLt's per-row bias of D. One handle and workspace per thread; the algorithm of
// each (M, N, K, epilogue) is looked up once and cached.
#include "gpu/gemm.h"

#include <cublasLt.h>
#include <cuda_bf16.h>

#include <map>
#include <mutex>
#include <tuple>

#include "core/check.h"
#include "gpu/kernels.h"

namespace ib::gpu {

namespace {

void check_lt(cublasStatus_t s, const char* what) {
  IB_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLASLt error in {}: status {}", what, static_cast<int>(s));
}

constexpr size_t kWorkspace = 64u << 20;

struct Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
  cublasLtMatmulAlgo_t algo{};
};

struct LtContext {
  cublasLtHandle_t handle = nullptr;
  Tensor workspace;
  std::map<std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, int>, Plan> plans;

  LtContext() {
    check_lt(cublasLtCreate(&handle), "cublasLtCreate");
    workspace = Tensor::empty({static_cast<int64_t>(kWorkspace)}, DType::U8, Device::CUDA);
  }

  // M rows of x (ld ldx), N = out, K = in, output ld ldy.
  const Plan& plan(int64_t M, int64_t N, int64_t K, int64_t ldx, int64_t ldy, Epilogue ep) {
    const auto key = std::make_tuple(M, N, K, ldx, ldy, static_cast<int>(ep));
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    Plan p;
    check_lt(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "TRANSA");
    check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "TRANSB");
    cublasLtEpilogue_t e = CUBLASLT_EPILOGUE_DEFAULT;
    if (ep == Epilogue::Bias) e = CUBLASLT_EPILOGUE_BIAS;
    if (ep == Epilogue::BiasGelu) e = CUBLASLT_EPILOGUE_GELU_BIAS;
    check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)), "EPILOGUE");
    check_lt(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, static_cast<uint64_t>(K), static_cast<uint64_t>(N), K),
             "layout A");
    check_lt(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, static_cast<uint64_t>(K), static_cast<uint64_t>(M), ldx),
             "layout B");
    check_lt(cublasLtMatrixLayoutCreate(&p.d, CUDA_R_16BF, static_cast<uint64_t>(N), static_cast<uint64_t>(M), ldy),
             "layout D");
    cublasLtMatmulPreference_t pref = nullptr;
    check_lt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
    const size_t ws = kWorkspace;
    check_lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof(ws)),
             "MAX_WORKSPACE_BYTES");
    cublasLtMatmulHeuristicResult_t res{};
    int found = 0;
    // The bias pointer is not part of the heuristic; alignment of the operands is (16 bytes here).
    const cublasStatus_t s = cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.d, p.d, pref, 1, &res, &found);
    cublasLtMatmulPreferenceDestroy(pref);
    IB_CHECK(s == CUBLAS_STATUS_SUCCESS && found > 0,
             "cuBLASLt has no algorithm for a bf16 product of {} x {} x {} (epilogue {}); status {}", M, N, K,
             static_cast<int>(ep), static_cast<int>(s));
    p.algo = res.algo;
    return plans.emplace(key, p).first->second;
  }
};

LtContext& context() {
  thread_local LtContext ctx;
  return ctx;
}

void run(const void* x, int64_t M, int64_t ldx, const LinearWeight& w, Epilogue ep, void* y, int64_t ldy,
         cudaStream_t stream) {
  IB_CHECK(w.format == LinearWeight::Format::BF16 && w.w.dtype() == DType::BF16 && w.w.device() == Device::CUDA,
           "gpu::linear: the weight must be a bf16 device tensor, got {}", w.w.str());
  const int64_t N = w.out_features(), K = w.in_features();
  IB_CHECK(ep == Epilogue::None || w.bias.defined(), "gpu::linear: epilogue with a bias but the layer has none");
  IB_CHECK(ldx >= K && ldy >= N, "gpu::linear: row strides {} / {} below the widths {} / {}", ldx, ldy, K, N);
  if (M == 0) return;
  LtContext& c = context();
  const Plan& p = c.plan(M, N, K, ldx, ldy, ep);
  if (ep != Epilogue::None) {
    const void* bias = w.bias.raw();
    check_lt(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)),
             "BIAS_POINTER");
  }
  const float one = 1.0f, zero = 0.0f;
  check_lt(cublasLtMatmul(c.handle, p.op, &one, w.w.raw(), p.a, x, p.b, &zero, y, p.d, y, p.d, &p.algo,
                          c.workspace.raw(), kWorkspace, stream),
           "cublasLtMatmul");
}

}  // namespace

LinearWeight LinearWeight::bf16(const Tensor& w, const Tensor& bias) {
  IB_CHECK(w.defined() && w.dim() == 2, "LinearWeight: weight must be 2-D, got {}", w.defined() ? w.str() : "none");
  LinearWeight l;
  l.w = to_bf16_device(w);
  if (bias.defined()) {
    IB_CHECK(bias.numel() == w.size(0), "LinearWeight: bias {} for weight {}", bias.str(), w.str());
    l.bias = to_bf16_device(bias.view({w.size(0)}));
  }
  return l;
}

LinearWeight LinearWeight::stack(const std::vector<const LinearWeight*>& parts) {
  IB_CHECK(!parts.empty(), "LinearWeight::stack: nothing to stack");
  const int64_t K = parts[0]->in_features();
  int64_t N = 0;
  bool bias = true;
  for (const LinearWeight* p : parts) {
    IB_CHECK(p->in_features() == K, "LinearWeight::stack: input widths {} and {} differ", K, p->in_features());
    N += p->out_features();
    bias = bias && p->bias.defined();
  }
  LinearWeight l;
  l.w = Tensor::empty({N, K}, DType::BF16, Device::CUDA);
  if (bias) l.bias = Tensor::empty({N}, DType::BF16, Device::CUDA);
  int64_t row = 0;
  for (const LinearWeight* p : parts) {
    const int64_t n = p->out_features();
    copy_bytes(l.w.slice(row, row + n), p->w);
    if (bias) copy_bytes(l.bias.slice(row, row + n), p->bias);
    row += n;
  }
  return l;
}

void linear(const void* x, int64_t M, int64_t ldx, const LinearWeight& w, Epilogue ep, void* y, int64_t ldy,
            cudaStream_t stream) {
  run(x, M, ldx, w, ep, y, ldy, stream);
}

Tensor linear(const Tensor& x, const LinearWeight& w, Epilogue ep) {
  IB_CHECK(x.device() == Device::CUDA && x.dtype() == DType::BF16 && x.dim() == 2 && x.size(1) == w.in_features(),
           "gpu::linear: input must be bf16 [M, {}] on the device, got {}", w.in_features(), x.str());
  Tensor y = Tensor::empty({x.size(0), w.out_features()}, DType::BF16, Device::CUDA);
  run(x.raw(), x.size(0), x.size(1), w, ep, y.raw(), w.out_features(), nullptr);
  return y;
}

void matmul_bare(const void* x, int64_t M, const LinearWeight& w, void* y, cudaStream_t stream) {
  run(x, M, w.in_features(), w, Epilogue::None, y, w.out_features(), stream);
}

}  // namespace ib::gpu
