// cuDNN's fused scaled-dot-product attention (flash, bf16 in and out, f32 softmax and
// accumulation) through cuDNN's backend graph API in plain C calls: no cudnn-frontend.
//
// bf16: the operation graph is one CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR node (Q, K, V, O
// and a by-value f32 scale; no mask, dropout or stats), cuDNN >= 9.13.1: what cudnn-frontend's
// sdpa() lowers to on those versions. (The older lowering, matmul -> scale -> max -> sub -> exp ->
// sum -> div -> matmul with virtual f32 intermediates, finds no engine on cuDNN 9.19 for bf16 when
// built by hand; older runtimes simply fall back to our own kernel.)
//
// fp8 (AttentionProblem::fp8_scales, gpu/attention_fp8.h): cuDNN has no single fp8 operation; its
// fp8 flash kernel is found by the pattern that cudnn-frontend's sdpa_fp8() lowers to (Hopper and
// later), built here op by op: bmm1 (e4m3 q . k^T, f32) -> * scale -> * descale_q -> * descale_k
// -> softmax (max, sub, exp, sum, div; and the statistics max + log sum as an output) -> amax_s,
// * scale_s -> e4m3 -> bmm2 (. v, f32) -> * descale_s -> * descale_v -> * scale_o -> e4m3 O, and
// amax_o.
//
// Where heuristics offer several engine configs, the first call of a signature times each one
// (a warm-up and two runs, on the call's own buffers) and keeps the fastest (IB_CUDNN_AUTOTUNE=0:
// the heuristics' first choice).
//
// Logical dims are (B, H, S, D) with our token-major strides (batch_stride, head_dim, row_stride,
// 1), so q, k, v and out are read and written in place. The scale is passed by value at run time,
// so one plan serves every scale. Plans (with their workspace) are built once per problem
// signature and device and cached; each thread has its own cudnnHandle_t per device, the stream
// set per call. A plan's workspace is shared by the calls with its signature: calls on streams that
// run concurrently must not share a signature (the engine runs everything on one stream).
#include "gpu/attention.h"

#include "core/check.h"
#include "core/log.h"

#if defined(INBETWEEN_HAVE_CUDNN)

#include <cudnn_graph.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "gpu/attention_fp8.h"

namespace ib::gpu {
namespace {

std::string last_error() {
  char buf[1024] = {};
  cudnnGetLastErrorString(buf, sizeof(buf));
  return buf;
}

std::string status_text(cudnnStatus_t s) {
  std::string msg = cudnnGetErrorString(s);
  const std::string detail = last_error();
  if (!detail.empty()) msg += ": " + detail;
  return msg;
}

void check(cudnnStatus_t s, const char* call) {
  if (s != CUDNN_STATUS_SUCCESS) fail("cuDNN attention: {} failed: {}", call, status_text(s));
}

// One backend descriptor, destroyed with its owner.
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) {
    check(cudnnBackendCreateDescriptor(type, &d_), "cudnnBackendCreateDescriptor");
  }
  ~Desc() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  Desc(Desc&& o) noexcept : d_(std::exchange(o.d_, nullptr)) {}
  Desc& operator=(Desc&&) = delete;

  cudnnBackendDescriptor_t get() const { return d_; }

  template <typename T>
  Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const T* values,
            int64_t count = 1) {
    check(cudnnBackendSetAttribute(d_, name, type, count, values), "cudnnBackendSetAttribute");
    return *this;
  }
  Desc& set(cudnnBackendAttributeName_t name, const Desc& other) {
    const cudnnBackendDescriptor_t raw = other.get();
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, &raw);
  }
  void finalize(const char* what) {
    const cudnnStatus_t s = cudnnBackendFinalize(d_);
    if (s != CUDNN_STATUS_SUCCESS) fail("cuDNN attention: finalizing {} failed: {}", what, status_text(s));
  }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

// ---- handles: one per thread and device -----------------------------------------------------------
// Never destroyed: a plan is built on the handle of the thread that first meets its signature and
// is then shared with every thread, so that handle must outlive the thread. A handle is small, and
// the engine's threads are few and long-lived.

int current_device() {
  int device = 0;
  const cudaError_t e = cudaGetDevice(&device);
  IB_CHECK(e == cudaSuccess, "cuDNN attention: cudaGetDevice failed: {}", cudaGetErrorString(e));
  return device;
}

void log_runtime_version_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    init_logging();
    spdlog::debug("cuDNN runtime {} (built against headers {})", cudnnGetVersion(), CUDNN_VERSION);
  });
}

cudnnHandle_t thread_handle(int device) {
  thread_local std::vector<std::pair<int, cudnnHandle_t>> handles;
  for (auto& [d, h] : handles)
    if (d == device) return h;
  log_runtime_version_once();
  IB_CHECK(cudnnGetVersion() / 10000 == CUDNN_MAJOR, "cuDNN attention: runtime cuDNN {} does not match headers {}",
           cudnnGetVersion(), CUDNN_VERSION);
  cudnnHandle_t h = nullptr;
  check(cudnnCreate(&h), "cudnnCreate");
  return handles.emplace_back(device, h).second;
}

// ---- the graphs ----------------------------------------------------------------------------------

// The graphs' memory tensors (the fp8 scales follow gpu/attention_fp8.h's Fp8Scale order).
enum Uid : int64_t {
  kQ = 1, kK, kV, kO, kScale,
  kDescaleQUid, kDescaleKUid, kDescaleVUid, kDescaleSUid, kScaleSUid, kScaleOUid, kAmaxSUid, kAmaxOUid,
  kStatsUid, kFirstVirtual = 100
};

using Dims = std::array<int64_t, 4>;

enum class Kind { Memory, ByValue, Virtual };

// A 4-d tensor descriptor. Tensors in memory are 16-byte aligned (checked per call).
Desc tensor(int64_t uid, const Dims& dims, const Dims& strides, cudnnDataType_t type, Kind kind = Kind::Memory) {
  Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t alignment = 16;
  t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &uid)
      .set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &type)
      .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims.data(), 4)
      .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides.data(), 4)
      .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &alignment);
  const bool yes = true;
  if (kind == Kind::ByValue) t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, &yes);
  if (kind == Kind::Virtual) t.set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &yes);
  t.finalize("a tensor descriptor");
  return t;
}

#if CUDNN_VERSION >= 91301
// The SDPA_FWD operation on q [B,H,Lq,D], k and v [B,H,Lk,D] and out [B,H,Lq,D] in our strides.
// `keep` receives the tensor descriptors, which must live as long as the plan.
Desc sdpa_operation(const AttentionProblem& p, std::deque<Desc>& keep) {
  const int64_t b = p.batch, h = p.heads, d = p.head_dim;
  const cudnnDataType_t bf16 = CUDNN_DATA_BFLOAT16;
  const Dims scalar{1, 1, 1, 1};
  Desc& q = keep.emplace_back(tensor(kQ, {b, h, p.lq, d}, {p.q_batch_stride, d, p.q_row_stride, 1}, bf16));
  Desc& k = keep.emplace_back(tensor(kK, {b, h, p.lk, d}, {p.k_batch_stride, d, p.k_row_stride, 1}, bf16));
  Desc& v = keep.emplace_back(tensor(kV, {b, h, p.lk, d}, {p.v_batch_stride, d, p.v_row_stride, 1}, bf16));
  Desc& o = keep.emplace_back(tensor(kO, {b, h, p.lq, d}, {p.o_batch_stride, d, p.o_row_stride, 1}, bf16));
  Desc& scale = keep.emplace_back(tensor(kScale, scalar, scalar, CUDNN_DATA_FLOAT, Kind::ByValue));
  Desc op(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR);
  op.set(CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, q)
      .set(CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, k)
      .set(CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, v)
      .set(CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, o)
      .set(CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, scale);
  op.finalize("the SDPA_FWD operation");
  return op;
}
#endif

// ---- the fp8 graph, op by op ---------------------------------------------------------------------

// Builds the ops of cudnn-frontend's sdpa_fp8() lowering (no mask; with the softmax statistics as an
// output, which cuDNN needs here: see below) in its order.
class Fp8Graph {
 public:
  Fp8Graph(const AttentionProblem& p, std::deque<Desc>& keep) : keep_(keep) {
    const int64_t b = p.batch, h = p.heads, d = p.head_dim, sq = p.lq, skv = p.lk;
    const cudnnDataType_t e4m3 = CUDNN_DATA_FP8_E4M3;
    const Dims scalar{1, 1, 1, 1};
    const Desc& q = mem(kQ, {b, h, sq, d}, {p.q_batch_stride, d, p.q_row_stride, 1}, e4m3);
    const Desc& kt = mem(kK, {b, h, d, skv}, {p.k_batch_stride, d, 1, p.k_row_stride}, e4m3);  // k transposed
    const Desc& v = mem(kV, {b, h, skv, d}, {p.v_batch_stride, d, p.v_row_stride, 1}, e4m3);
    const Desc& o = mem(kO, {b, h, sq, d}, {p.o_batch_stride, d, p.o_row_stride, 1}, e4m3);
    const Desc& attn_scale = keep_.emplace_back(tensor(kScale, scalar, scalar, CUDNN_DATA_FLOAT, Kind::ByValue));
    auto f32_scalar = [&](int64_t uid) -> const Desc& { return mem(uid, scalar, scalar, CUDNN_DATA_FLOAT); };
    const Desc& descale_q = f32_scalar(kDescaleQUid);
    const Desc& descale_k = f32_scalar(kDescaleKUid);
    const Desc& descale_v = f32_scalar(kDescaleVUid);
    const Desc& descale_s = f32_scalar(kDescaleSUid);
    const Desc& scale_s = f32_scalar(kScaleSUid);
    const Desc& scale_o = f32_scalar(kScaleOUid);
    const Desc& amax_s = f32_scalar(kAmaxSUid);
    const Desc& amax_o = f32_scalar(kAmaxOUid);

    const Dims logits{b, h, sq, skv}, logits_strides{h * sq * skv, sq * skv, skv, 1};
    const Dims rows{b, h, sq, 1}, rows_strides{h * sq, sq, 1, 1};
    const Dims out{b, h, sq, d}, out_strides{h * sq * d, sq * d, d, 1};
    auto logit_tensor = [&](cudnnDataType_t t = CUDNN_DATA_FLOAT) -> const Desc& { return virt(logits, logits_strides, t); };

    const Desc& s1 = logit_tensor();
    matmul(q, kt, s1);
    const Desc& s2 = logit_tensor();
    pointwise(CUDNN_POINTWISE_MUL, s1, &attn_scale, s2);
    const Desc& s3 = logit_tensor();
    pointwise(CUDNN_POINTWISE_MUL, s2, &descale_q, s3);
    const Desc& s4 = logit_tensor();
    pointwise(CUDNN_POINTWISE_MUL, s3, &descale_k, s4);
    // softmax
    const Desc& max = virt(rows, rows_strides, CUDNN_DATA_FLOAT);
    reduction(CUDNN_REDUCE_TENSOR_MAX, s4, max);
    const Desc& s5 = logit_tensor();
    pointwise(CUDNN_POINTWISE_SUB, s4, &max, s5);
    const Desc& s6 = logit_tensor();
    pointwise(CUDNN_POINTWISE_EXP, s5, nullptr, s6);
    const Desc& sum = virt(rows, rows_strides, CUDNN_DATA_FLOAT);
    reduction(CUDNN_REDUCE_TENSOR_ADD, s6, sum);
    // The softmax statistics (max + log sum, per row) as an output: cuDNN 9.14 on Hopper tags the
    // fp8 graph as attention only with them (without: "last operation in the graph is not the 2nd
    // matmul"), so the plan writes them to a buffer of its own that nothing reads.
    const Desc& log_sum = virt(rows, rows_strides, CUDNN_DATA_FLOAT);
    pointwise(CUDNN_POINTWISE_LOG, sum, nullptr, log_sum);
    const Desc& stats = mem(kStatsUid, rows, rows_strides, CUDNN_DATA_FLOAT);
    pointwise(CUDNN_POINTWISE_ADD, max, &log_sum, stats);
    const Desc& s7 = logit_tensor();
    pointwise(CUDNN_POINTWISE_DIV, s6, &sum, s7);
    reduction(CUDNN_REDUCE_TENSOR_AMAX, s7, amax_s);
    const Desc& s8 = logit_tensor(e4m3);
    pointwise(CUDNN_POINTWISE_MUL, s7, &scale_s, s8);
    // bmm2 with its scales
    const Desc& o1 = virt(out, out_strides, CUDNN_DATA_FLOAT);
    matmul(s8, v, o1);
    const Desc& o2 = virt(out, out_strides, CUDNN_DATA_FLOAT);
    pointwise(CUDNN_POINTWISE_MUL, o1, &descale_s, o2);
    const Desc& o3 = virt(out, out_strides, CUDNN_DATA_FLOAT);
    pointwise(CUDNN_POINTWISE_MUL, o2, &descale_v, o3);
    pointwise(CUDNN_POINTWISE_MUL, o3, &scale_o, o);
    reduction(CUDNN_REDUCE_TENSOR_AMAX, o3, amax_o);
  }

  const std::vector<cudnnBackendDescriptor_t>& ops() const { return ops_; }

 private:
  std::deque<Desc>& keep_;
  std::vector<cudnnBackendDescriptor_t> ops_;
  int64_t next_virtual_ = kFirstVirtual;

  const Desc& mem(int64_t uid, const Dims& dims, const Dims& strides, cudnnDataType_t t) {
    return keep_.emplace_back(tensor(uid, dims, strides, t));
  }
  const Desc& virt(const Dims& dims, const Dims& strides, cudnnDataType_t t) {
    return keep_.emplace_back(tensor(next_virtual_++, dims, strides, t, Kind::Virtual));
  }
  void add(Desc& op, const char* what) {
    op.finalize(what);
    ops_.push_back(op.get());
  }
  void matmul(const Desc& a, const Desc& b, const Desc& c) {
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    Desc& desc = keep_.emplace_back(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
    desc.set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &f32);
    desc.finalize("a matmul descriptor");
    Desc& op = keep_.emplace_back(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
        .set(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
        .set(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
        .set(CUDNN_ATTR_OPERATION_MATMUL_DESC, desc);
    add(op, "a matmul operation");
  }
  void pointwise(cudnnPointwiseMode_t mode, const Desc& x, const Desc* b, const Desc& y) {
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    Desc& desc = keep_.emplace_back(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
    desc.set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode)
        .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &f32);
    desc.finalize("a pointwise descriptor");
    Desc& op = keep_.emplace_back(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, desc).set(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
    if (b) op.set(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y);
    const float one = 1.0f;  // as cudnn-frontend sets them
    op.set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA1, CUDNN_TYPE_FLOAT, &one)
        .set(CUDNN_ATTR_OPERATION_POINTWISE_ALPHA2, CUDNN_TYPE_FLOAT, &one);
    add(op, "a pointwise operation");
  }
  void reduction(cudnnReduceTensorOp_t mode, const Desc& x, const Desc& y) {
    const cudnnDataType_t f32 = CUDNN_DATA_FLOAT;
    Desc& desc = keep_.emplace_back(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
    const bool deterministic = false;
    desc.set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, &mode)
        .set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &f32)
        .set(CUDNN_ATTR_REDUCTION_IS_DETERMINISTIC, CUDNN_TYPE_BOOLEAN, &deterministic);
    desc.finalize("a reduction descriptor");
    Desc& op = keep_.emplace_back(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
    op.set(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
        .set(CUDNN_ATTR_OPERATION_REDUCTION_DESC, desc);
    add(op, "a reduction operation");
  }
};

// ---- plans and their cache -----------------------------------------------------------------------

struct Plan {
  bool ok = false;
  std::string reason;  // why cuDNN refused the problem (when !ok)
  std::deque<Desc> keep;  // tensors, the operation and the operation graph (a deque: stable references)
  std::unique_ptr<Desc> plan;
  int64_t workspace_bytes = 0;
  Tensor workspace;  // shared by every call with this signature
  Tensor stats;      // the fp8 graph's softmax statistics (written, never read)
  std::string description;
};

// The uids and pointers of one call (the plan's variant pack).
struct Pointers {
  std::vector<int64_t> uids;
  std::vector<void*> ptrs;
};

Pointers pointers_of(const AttentionProblem& p, float* scale, void* stats) {
  Pointers v{{kQ, kK, kV, kO, kScale},
             {const_cast<void*>(p.q), const_cast<void*>(p.k), const_cast<void*>(p.v), p.out, scale}};
  if (p.fp8_scales) {
    const std::pair<int64_t, int> scales[] = {{kDescaleQUid, kDescaleQ}, {kDescaleKUid, kDescaleK},
                                              {kDescaleVUid, kDescaleV}, {kDescaleSUid, kDescaleS},
                                              {kScaleSUid, kScaleS},     {kScaleOUid, kScaleO},
                                              {kAmaxSUid, kAmaxS},       {kAmaxOUid, kAmaxO}};
    for (const auto& [uid, index] : scales) {
      v.uids.push_back(uid);
      v.ptrs.push_back(p.fp8_scales + index);
    }
    if (stats) {
      v.uids.push_back(kStatsUid);
      v.ptrs.push_back(stats);
    }
  }
  return v;
}

cudnnStatus_t execute(cudnnHandle_t handle, const Desc& plan, const AttentionProblem& p, void* workspace,
                      void* stats) {
  float scale = p.scale;  // read by the host when the kernel is launched
  Pointers v = pointers_of(p, &scale, stats);
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, v.uids.data(), static_cast<int64_t>(v.uids.size()))
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, v.ptrs.data(), static_cast<int64_t>(v.ptrs.size()))
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &workspace);
  pack.finalize("the variant pack");
  return cudnnBackendExecute(handle, plan.get(), pack.get());
}

bool autotune_enabled() {
  const char* v = std::getenv("IB_CUDNN_AUTOTUNE");
  return v == nullptr || std::string(v) != "0";
}

// Mean device ms of two runs of `plan` on p's buffers after a warm-up; < 0 when it fails.
double time_plan(cudnnHandle_t handle, const Desc& plan, const AttentionProblem& p, void* workspace, void* stats) {
  if (execute(handle, plan, p, workspace, stats) != CUDNN_STATUS_SUCCESS) return -1;
  cudaEvent_t start = nullptr, stop = nullptr;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  cudaEventRecord(start, p.stream);
  bool ok = true;
  for (int i = 0; i < 2 && ok; ++i) ok = execute(handle, plan, p, workspace, stats) == CUDNN_STATUS_SUCCESS;
  cudaEventRecord(stop, p.stream);
  float ms = -1;
  if (cudaEventSynchronize(stop) != cudaSuccess || cudaEventElapsedTime(&ms, start, stop) != cudaSuccess) ok = false;
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  return ok ? ms / 2 : -1;
}

// Builds the operation graph, asks heuristics (mode A, then the fallback list) for engine configs
// and keeps those whose execution plan finalizes (at most kMaxCandidates); with several and
// autotuning on, times each on p's buffers and keeps the fastest. Throws ib::Error when none does.
void build_plan(const AttentionProblem& p, cudnnHandle_t handle, Plan& out) {
#if CUDNN_VERSION >= 91301
  IB_CHECK(cudnnGetVersion() >= 91301, "cuDNN attention needs cuDNN 9.13.1 or later (runtime {})", cudnnGetVersion());
  std::deque<Desc> keep;
  std::vector<cudnnBackendDescriptor_t> ops;
  std::unique_ptr<Fp8Graph> fp8;
  if (p.fp8_scales) {
    fp8 = std::make_unique<Fp8Graph>(p, keep);
    ops = fp8->ops();
  } else {
    ops.push_back(keep.emplace_back(sdpa_operation(p, keep)).get());
  }
  const char* graph_name = p.fp8_scales ? "fp8 SDPA graph" : "SDPA_FWD graph";
  if (fp8) out.stats = Tensor::empty({p.batch * p.heads * p.lq}, DType::F32, Device::CUDA);
  Desc& graph = keep.emplace_back(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &handle)
      .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops.data(), static_cast<int64_t>(ops.size()));
  graph.finalize("the operation graph");

  struct Candidate {
    std::unique_ptr<Desc> plan;
    int64_t workspace = 0, engine = -1;
    std::string origin;
    double ms = -1;
  };
  constexpr size_t kMaxCandidates = 6;
  std::vector<Candidate> found;
  std::vector<int64_t> engines_seen;
  std::string refusals;
  for (const cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    const char* mode_name = mode == CUDNN_HEUR_MODE_A ? "A" : "fallback";
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.set(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, graph).set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, &mode);
    if (const cudnnStatus_t s = cudnnBackendFinalize(heur.get()); s != CUDNN_STATUS_SUCCESS) {
      refusals += fmt::format("; heuristics {}: {}", mode_name, status_text(s));
      continue;
    }
    int64_t listed = 0, count = 0;
    check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, 0,
                                   &listed, nullptr),
          "cudnnBackendGetAttribute(ENGINEHEUR_RESULTS count)");
    std::vector<Desc> cfgs;
    std::vector<cudnnBackendDescriptor_t> raw;
    for (int64_t i = 0; i < listed; ++i) raw.push_back(cfgs.emplace_back(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR).get());
    if (listed > 0)
      check(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS, CUDNN_TYPE_BACKEND_DESCRIPTOR, listed,
                                     &count, raw.data()),
            "cudnnBackendGetAttribute(ENGINEHEUR_RESULTS)");
    if (count == 0) refusals += fmt::format("; heuristics {} offered no engine config ({} listed)", mode_name, listed);

    for (int64_t i = 0; i < count && found.size() < kMaxCandidates; ++i) {
      const Desc& cfg = cfgs[static_cast<size_t>(i)];
      auto plan = std::make_unique<Desc>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
      plan->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, &handle)
          .set(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, cfg);
      if (const cudnnStatus_t s = cudnnBackendFinalize(plan->get()); s != CUDNN_STATUS_SUCCESS) {
        refusals += fmt::format("; heuristics {} config {}: {}", mode_name, i, status_text(s));
        continue;
      }
      int64_t ws = 0, n = 0;
      check(cudnnBackendGetAttribute(plan->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE, CUDNN_TYPE_INT64, 1, &n,
                                     &ws),
            "cudnnBackendGetAttribute(EXECUTION_PLAN_WORKSPACE_SIZE)");
      int64_t engine_index = -1;
      {
        Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
        cudnnBackendDescriptor_t e = engine.get();
        if (cudnnBackendGetAttribute(cfg.get(), CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                                     &e) == CUDNN_STATUS_SUCCESS)
          cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &engine_index);
      }
      // The fallback list repeats mode A's engines (without knobs): one of each engine.
      if (mode != CUDNN_HEUR_MODE_A && engine_index >= 0 &&
          std::find(engines_seen.begin(), engines_seen.end(), engine_index) != engines_seen.end())
        continue;
      engines_seen.push_back(engine_index);
      found.push_back({std::move(plan), ws, engine_index, fmt::format("heuristics {} choice {} of {}", mode_name, i + 1, count)});
    }
  }
  if (found.empty()) fail("no engine config of the {} finalizes{}", graph_name, refusals);

  size_t best = 0;
  std::string timings;
  const bool has_buffers = p.q && p.k && p.v && p.out;
  if (found.size() > 1 && has_buffers && autotune_enabled()) {
    check(cudnnSetStream(handle, p.stream), "cudnnSetStream");
    int64_t ws_max = 0;
    for (const Candidate& c : found) ws_max = std::max(ws_max, c.workspace);
    const Tensor ws = ws_max > 0 ? Tensor::empty({ws_max}, DType::U8, Device::CUDA) : Tensor();
    for (Candidate& c : found) {
      c.ms = time_plan(handle, *c.plan, p, ws_max > 0 ? ws.raw() : nullptr, out.stats.defined() ? out.stats.raw() : nullptr);
      timings += fmt::format("{}engine {}: {}", timings.empty() ? "" : ", ", c.engine,
                             c.ms < 0 ? std::string("failed") : fmt::format("{:.3f} ms", c.ms));
    }
    for (size_t i = 0; i < found.size(); ++i)
      if (found[i].ms >= 0 && (found[best].ms < 0 || found[i].ms < found[best].ms)) best = i;
  }
  Candidate& c = found[best];
  out.ok = true;
  out.keep = std::move(keep);
  out.plan = std::move(c.plan);
  out.workspace_bytes = c.workspace;
  if (c.workspace > 0) out.workspace = Tensor::empty({c.workspace}, DType::U8, Device::CUDA);
  out.description = fmt::format("{}, engine {} ({}), workspace {} bytes{}", graph_name, c.engine, c.origin,
                                c.workspace, timings.empty() ? "" : "; timed: " + timings);
#else
  (void)p, (void)handle, (void)out;
  fail("cuDNN attention needs cuDNN 9.13.1 headers (built with {})", CUDNN_VERSION);
#endif
}

// The signature a plan is built for: device, shape and strides. The scale is passed by value at
// run time, so it is not part of it.
using Key = std::array<int64_t, 15>;

Key key_of(const AttentionProblem& p, int device) {
  return {device, p.fp8_scales != nullptr, p.batch, p.heads, p.head_dim, p.lq, p.lk,
          p.q_row_stride, p.k_row_stride, p.v_row_stride, p.o_row_stride,
          p.q_batch_stride, p.k_batch_stride, p.v_batch_stride, p.o_batch_stride};
}

std::string shape_text(const AttentionProblem& p) {
  return fmt::format("{}batch {}, heads {}, head dim {}, Lq {}, Lk {}, row strides q/k/v/o {}/{}/{}/{}",
                     p.fp8_scales ? "fp8, " : "", p.batch,
                     p.heads, p.head_dim, p.lq, p.lk, p.q_row_stride, p.k_row_stride, p.v_row_stride,
                     p.o_row_stride);
}

// Problems that no cuDNN graph can take, whatever the runtime: a reason, or empty.
std::string static_refusal(const AttentionProblem& p) {
  if (p.batch < 1 || p.heads < 1 || p.head_dim < 1 || p.lq < 1 || p.lk < 1) return "empty or negative sizes";
  if (p.head_dim % 8 != 0) return "head dim not a multiple of 8";
  // 16-byte alignment of every row and batch start (bf16: 8 elements, e4m3: 16), as the descriptors declare.
  const int64_t per16 = p.fp8_scales ? 16 : 8;
  for (int64_t s : {p.q_row_stride, p.k_row_stride, p.v_row_stride, p.o_row_stride, p.q_batch_stride,
                    p.k_batch_stride, p.v_batch_stride, p.o_batch_stride})
    if (s % per16 != 0) return fmt::format("a row or batch stride not a multiple of {} elements", per16);
  if (p.q_row_stride < p.heads * p.head_dim || p.k_row_stride < p.heads * p.head_dim ||
      p.v_row_stride < p.heads * p.head_dim || p.o_row_stride < p.heads * p.head_dim)
    return "a row stride shorter than heads * head_dim";
  for (const void* ptr : {p.q, p.k, p.v, static_cast<const void*>(p.out)})
    if (reinterpret_cast<uintptr_t>(ptr) % 16 != 0) return "a pointer not 16-byte aligned";
  return {};
}

std::mutex cache_mutex;
// Leaked on purpose: plans hold device memory and cuDNN descriptors that must not be released
// during static destruction, after the allocator or the CUDA runtime may be gone.
auto* const cache = new std::map<Key, std::shared_ptr<Plan>>;

// The cached plan for p (built on first use); !ok with the reason when cuDNN refuses it. Logs a
// refusal once, when it is first seen.
std::shared_ptr<Plan> plan_for(const AttentionProblem& p) {
  const int device = current_device();
  const Key key = key_of(p, device);
  std::lock_guard lock(cache_mutex);
  if (auto it = cache->find(key); it != cache->end()) return it->second;

  auto plan = std::make_shared<Plan>();
  std::string reason;
  try {
    build_plan(p, thread_handle(device), *plan);
  } catch (const std::exception& e) {
    reason = e.what();
  }
  init_logging();
  if (plan->ok) {
    spdlog::debug("cuDNN attention ({}): {}", shape_text(p), plan->description);
  } else {
    plan->reason = reason;
    spdlog::warn("cuDNN attention refuses {}: {}", shape_text(p), reason);
  }
  cache->emplace(key, plan);
  return plan;
}

}  // namespace

bool cudnn_attention_supports(const AttentionProblem& p) {
  if (const std::string why = static_refusal(p); !why.empty()) {
    static std::mutex m;
    static std::map<std::string, bool> logged;
    std::lock_guard lock(m);
    if (!logged[why]) {
      logged[why] = true;
      init_logging();
      spdlog::warn("cuDNN attention refuses {}: {}", shape_text(p), why);
    }
    return false;
  }
  try {
    return plan_for(p)->ok;
  } catch (const std::exception& e) {  // e.g. no device
    init_logging();
    spdlog::warn("cuDNN attention: {}", e.what());
    return false;
  }
}

void cudnn_attention(const AttentionProblem& p) {
  if (const std::string why = static_refusal(p); !why.empty())
    fail("cuDNN attention cannot take {}: {}", shape_text(p), why);
  const std::shared_ptr<Plan> plan = plan_for(p);
  if (!plan->ok) fail("cuDNN attention cannot take {}: {}", shape_text(p), plan->reason);

  const cudnnHandle_t handle = thread_handle(current_device());
  check(cudnnSetStream(handle, p.stream), "cudnnSetStream");
  void* workspace = plan->workspace_bytes > 0 ? plan->workspace.raw() : nullptr;
  check(execute(handle, *plan->plan, p, workspace, plan->stats.defined() ? plan->stats.raw() : nullptr),
        "cudnnBackendExecute");
}

}  // namespace ib::gpu

#else  // no cuDNN in this build

namespace ib::gpu {

bool cudnn_attention_supports(const AttentionProblem&) { return false; }

void cudnn_attention(const AttentionProblem& p) {
  fail("cuDNN attention (head dim {}): this build has no cuDNN", p.head_dim);
}

}  // namespace ib::gpu

#endif
