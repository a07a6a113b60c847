// cuBLASLt products for the GPU engine (see gemm.h), described by LtProduct (gemm_lt.h: the
// row-major product as cuBLASLt's column-major one, the bias and scales). One handle and workspace
// per thread; the algorithm of each (M, N, K, epilogue) is looked up once and cached.
#include "gpu/gemm.h"

#include <cublasLt.h>
#include <cuda_bf16.h>

#include <compare>
#include <map>
#include <mutex>
#include <optional>
#include <utility>

#include "core/check.h"
#include "gpu/fp8.h"
#include "gpu/gemm_lt.h"
#include "gpu/kernels.h"

namespace ib::gpu {

namespace {

void check_lt(cublasStatus_t s, const char* what) {
  IB_CHECK(s == CUBLAS_STATUS_SUCCESS, "cuBLASLt error in {}: status {}", what, static_cast<int>(s));
}

constexpr size_t kWorkspace = 64u << 20;

}  // namespace

// ---- LtProduct (gemm_lt.h) ---------------------------------------------------------------

LtProduct::LtProduct(const LtProductSpec& s) {
  try {
    check_lt(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "cublasLtMatmulDescCreate");
    const cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
    check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof(ta)), "TRANSA");
    check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof(tb)), "TRANSB");
    const cublasLtEpilogue_t e = s.ep == Epilogue::Bias       ? CUBLASLT_EPILOGUE_BIAS
                                 : s.ep == Epilogue::BiasGelu ? CUBLASLT_EPILOGUE_GELU_BIAS
                                                              : CUBLASLT_EPILOGUE_DEFAULT;
    check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_EPILOGUE, &e, sizeof(e)), "EPILOGUE");
    if (s.fp8) {
      // One operand's scaling: its mode and its scale pointer (none without a mode).
      const auto scale = [&](const std::optional<cublasLtMatmulMatrixScale_t>& mode, const void* ptr,
                             cublasLtMatmulDescAttributes_t mode_attr, cublasLtMatmulDescAttributes_t ptr_attr,
                             const char* what) {
        if (!mode) return;
        check_lt(cublasLtMatmulDescSetAttribute(op, mode_attr, &*mode, sizeof(*mode)), what);
        check_lt(cublasLtMatmulDescSetAttribute(op, ptr_attr, &ptr, sizeof(ptr)), what);
      };
      scale(s.a_scale_mode, s.a_scale, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER,
            "A's scale");
      scale(s.b_scale_mode, s.b_scale, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER,
            "B's scale");
      if (s.ep != Epilogue::None) {
        const cudaDataType_t bias_type = CUDA_R_16BF;
        check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bias_type, sizeof(bias_type)),
                 "BIAS_DATA_TYPE");
      }
    }
    if (s.ep != Epilogue::None) set_bias(s.bias);
    const cudaDataType_t in_type = s.fp8 ? CUDA_R_8F_E4M3 : CUDA_R_16BF;
    const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
    check_lt(cublasLtMatrixLayoutCreate(&a, in_type, u(s.K), u(s.N), s.K), "layout A");
    check_lt(cublasLtMatrixLayoutCreate(&b, in_type, u(s.K), u(s.M), s.ldx), "layout B");
    check_lt(cublasLtMatrixLayoutCreate(&d, s.d_type, u(s.N), u(s.M), s.ldy), "layout D");
  } catch (...) {
    release();
    throw;
  }
}

LtProduct::~LtProduct() { release(); }

void LtProduct::release() {
  if (d) cublasLtMatrixLayoutDestroy(d);
  if (b) cublasLtMatrixLayoutDestroy(b);
  if (a) cublasLtMatrixLayoutDestroy(a);
  if (op) cublasLtMatmulDescDestroy(op);
  op = nullptr;
  a = b = d = nullptr;
}

LtProduct::LtProduct(LtProduct&& o) noexcept : op(o.op), a(o.a), b(o.b), d(o.d) {
  o.op = nullptr;
  o.a = o.b = o.d = nullptr;
}

LtProduct& LtProduct::operator=(LtProduct&& o) noexcept {
  if (this != &o) {
    release();
    std::swap(op, o.op), std::swap(a, o.a), std::swap(b, o.b), std::swap(d, o.d);
  }
  return *this;
}

void LtProduct::set_bias(const void* bias) const {
  check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof(bias)), "BIAS_POINTER");
}

void LtProduct::set_scales(const void* a_scale, const void* b_scale) const {
  check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, &a_scale, sizeof(a_scale)),
           "A_SCALE_POINTER");
  check_lt(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, &b_scale, sizeof(b_scale)),
           "B_SCALE_POINTER");
}

std::vector<cublasLtMatmulHeuristicResult_t> LtProduct::heuristic(cublasLtHandle_t handle, size_t workspace,
                                                                  int n) const {
  cublasLtMatmulPreference_t pref = nullptr;
  check_lt(cublasLtMatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  check_lt(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &workspace,
                                                sizeof(workspace)),
           "MAX_WORKSPACE_BYTES");
  std::vector<cublasLtMatmulHeuristicResult_t> res(static_cast<size_t>(n));
  int found = 0;
  // The bias pointer is not part of the heuristic; the operands' alignment is (16 bytes here).
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle, op, a, b, d, d, pref, n, res.data(), &found);
  cublasLtMatmulPreferenceDestroy(pref);
  res.resize(st == CUBLAS_STATUS_SUCCESS ? static_cast<size_t>(found) : 0);
  return res;
}

namespace {


struct Plan {
  LtProduct product;
  cublasLtMatmulAlgo_t algo{};
  // The epilogue cuBLASLt runs; what it cannot (some fp8 algorithms) runs after as bias_act_bf16.
  Epilogue in_product = Epilogue::None, after = Epilogue::None;
};

struct PlanKey {
  int64_t M, N, K, ldx, ldy;
  int ep, fp8;
  auto operator<=>(const PlanKey&) const = default;
};

struct LtContext {
  cublasLtHandle_t handle = nullptr;
  Tensor workspace;
  std::map<PlanKey, Plan> plans;

  LtContext() {
    check_lt(cublasLtCreate(&handle), "cublasLtCreate");
    workspace = Tensor::empty({static_cast<int64_t>(kWorkspace)}, DType::U8, Device::CUDA);
  }

  // The description and the heuristic's first algorithm for one epilogue, or nullopt when it has
  // none.
  std::optional<Plan> try_plan(LtProductSpec spec, Epilogue ep) {
    spec.ep = ep;
    LtProduct prod(spec);
    const std::vector<cublasLtMatmulHeuristicResult_t> found = prod.heuristic(handle, kWorkspace, 1);
    if (found.empty()) return std::nullopt;
    return Plan{std::move(prod), found[0].algo, ep, Epilogue::None};
  }

  const Plan& plan(const LtProductSpec& spec) {
    const PlanKey key{spec.M, spec.N, spec.K, spec.ldx, spec.ldy, static_cast<int>(spec.ep), spec.fp8 ? 1 : 0};
    auto it = plans.find(key);
    if (it != plans.end()) return it->second;
    std::optional<Plan> p = try_plan(spec, spec.ep);
    if (!p) {
      // An fp8 algorithm without this epilogue: the bare product, then bias_act_bf16.
      if (spec.fp8 && spec.ep != Epilogue::None) p = try_plan(spec, Epilogue::None);
      IB_CHECK(p.has_value(), "cuBLASLt has no algorithm for a {} product of {} x {} x {} (epilogue {})",
               spec.fp8 ? "fp8" : "bf16", spec.M, spec.N, spec.K, static_cast<int>(spec.ep));
      p->after = spec.ep;
    }
    return plans.emplace(key, std::move(*p)).first->second;
  }
};

LtContext& context() {
  thread_local LtContext ctx;
  return ctx;
}

void check_weight(const LinearWeight& w, Epilogue ep) {
  const bool fp8 = w.format == LinearWeight::Format::FP8;
  IB_CHECK(w.w.device() == Device::CUDA && w.w.dtype() == (fp8 ? DType::F8E4M3 : DType::BF16) &&
               (!fp8 || (w.scale.defined() && w.scale.numel() == w.out_features())),
           "gpu::linear: the weight must be a {} device tensor, got {}", fp8 ? "e4m3 (with scales)" : "bf16",
           w.w.str());
  IB_CHECK(ep == Epilogue::None || w.bias.defined(), "gpu::linear: epilogue with a bias but the layer has none");
}

// The product on its B operand: bf16 rows (b_scale null) or, for an FP8 weight, e4m3 rows with
// their per-row scales.
void product(const void* b_ptr, const float* b_scale, int64_t M, int64_t ldb, const LinearWeight& w, Epilogue ep,
             void* y, int64_t ldy, cudaStream_t stream) {
  const bool fp8 = w.format == LinearWeight::Format::FP8;
  LtContext& c = context();
  LtProductSpec spec;
  spec.M = M;
  spec.N = w.out_features();
  spec.K = w.in_features();
  spec.ldx = ldb;
  spec.ldy = ldy;
  spec.fp8 = fp8;
  spec.ep = ep;
  spec.bias = w.bias.defined() ? w.bias.raw() : nullptr;
  if (fp8) {
    spec.a_scale = w.scale.raw();
    spec.b_scale = b_scale;
  }
  const Plan& p = c.plan(spec);
  if (p.in_product != Epilogue::None) p.product.set_bias(spec.bias);
  if (fp8) p.product.set_scales(spec.a_scale, spec.b_scale);
  const float one = 1.0f, zero = 0.0f;
  const LtProduct& d = p.product;
  check_lt(cublasLtMatmul(c.handle, d.op, &one, w.w.raw(), d.a, b_ptr, d.b, &zero, y, d.d, y, d.d, &p.algo,
                          c.workspace.raw(), kWorkspace, stream),
           "cublasLtMatmul");
  if (p.after != Epilogue::None)
    bias_act_bf16(y, spec.M, spec.N, ldy, w.bias.raw(), p.after == Epilogue::BiasGelu, stream);
}

void run(const void* x, int64_t M, int64_t ldx, const LinearWeight& w, Epilogue ep, void* y, int64_t ldy,
         cudaStream_t stream) {
  check_weight(w, ep);
  const int64_t N = w.out_features(), K = w.in_features();
  IB_CHECK(ldx >= K && ldy >= N, "gpu::linear: row strides {} / {} below the widths {} / {}", ldx, ldy, K, N);
  if (M == 0) return;
  if (w.format == LinearWeight::Format::BF16) {
    product(x, nullptr, M, ldx, w, ep, y, ldy, stream);
    return;
  }
  // fp8: the input quantised per row into dense scratch (freed in stream order when this returns).
  Tensor xq = Tensor::empty({M, K}, DType::F8E4M3, Device::CUDA);
  Tensor xs = Tensor::empty({M}, DType::F32, Device::CUDA);
  QuantizeRowsArgs qa;
  qa.x = x;
  qa.rows = M;
  qa.cols = K;
  qa.ld = ldx;
  qa.q = xq.raw();
  qa.scale = xs.data<float>();
  quantize_rows_fp8(qa, stream);
  product(xq.raw(), xs.data<float>(), M, K, w, ep, y, ldy, stream);
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
    IB_CHECK(p->format == Format::BF16, "LinearWeight::stack: stack bf16 layers, then quantise");
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

LinearWeight LinearWeight::fp8(const LinearWeight& l) {
  IB_CHECK(l.format == Format::BF16 && l.w.defined(), "LinearWeight::fp8: expected a bf16 layer");
  if (!fp8_capable(l.in_features())) return l;
  require_fp8("fp8 weights");
  LinearWeight q;
  q.format = Format::FP8;
  q.w = Tensor::empty({l.out_features(), l.in_features()}, DType::F8E4M3, Device::CUDA);
  q.scale = Tensor::empty({l.out_features()}, DType::F32, Device::CUDA);
  q.bias = l.bias;
  QuantizeRowsArgs a;
  a.x = l.w.raw();
  a.rows = l.out_features();
  a.cols = a.ld = l.in_features();
  a.q = q.w.raw();
  a.scale = q.scale.data<float>();
  quantize_rows_fp8(a);
  return q;
}

void linear(const void* x, int64_t M, int64_t ldx, const LinearWeight& w, Epilogue ep, void* y, int64_t ldy,
            cudaStream_t stream) {
  run(x, M, ldx, w, ep, y, ldy, stream);
}

void linear(const Fp8Input& x, int64_t M, const LinearWeight& w, Epilogue ep, void* y, int64_t ldy,
            cudaStream_t stream) {
  IB_CHECK(w.format == LinearWeight::Format::FP8,
           "gpu::linear: an input quantised to fp8 was given for a bf16 weight [{}, {}]; pass its bf16 rows",
           w.out_features(), w.in_features());
  check_weight(w, ep);
  IB_CHECK(ldy >= w.out_features(), "gpu::linear: output row stride {} below the width {}", ldy, w.out_features());
  if (M == 0) return;
  IB_CHECK(x.q != nullptr && x.scale != nullptr, "gpu::linear: the fp8 input lacks its codes or its scales");
  product(x.q, x.scale, M, w.in_features(), w, ep, y, ldy, stream);
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
