// cuDNN's fused scaled-dot-product attention (flash, bf16 in and out, f32 softmax and
// accumulation) through cuDNN's backend graph API in plain C calls: no cudnn-frontend.
//
// The operation graph is one CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR node (Q, K, V, O and a
// by-value f32 scale; no mask, dropout or stats), cuDNN >= 9.13.1: what cudnn-frontend's sdpa()
// lowers to on those versions. (The older lowering, matmul -> scale -> max -> sub -> exp -> sum ->
// div -> matmul with virtual f32 intermediates, finds no engine on cuDNN 9.19 when built by hand:
// its pattern matcher rejects it; older runtimes simply fall back to our own kernel.)
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

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

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

enum Uid : int64_t { kQ = 1, kK, kV, kO, kScale };

using Dims = std::array<int64_t, 4>;

// A 4-d tensor descriptor. Tensors in memory are 16-byte aligned (checked per call).
Desc tensor(int64_t uid, const Dims& dims, const Dims& strides, cudnnDataType_t type, bool by_value = false) {
  Desc t(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t alignment = 16;
  t.set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &uid)
      .set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &type)
      .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims.data(), 4)
      .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides.data(), 4)
      .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &alignment);
  if (by_value) {
    const bool yes = true;
    t.set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, &yes);
  }
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
  Desc& scale = keep.emplace_back(tensor(kScale, scalar, scalar, CUDNN_DATA_FLOAT, /*by_value=*/true));
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

// ---- plans and their cache -----------------------------------------------------------------------

struct Plan {
  bool ok = false;
  std::string reason;  // why cuDNN refused the problem (when !ok)
  std::deque<Desc> keep;  // tensors, the operation and the operation graph (a deque: stable references)
  std::unique_ptr<Desc> plan;
  int64_t workspace_bytes = 0;
  Tensor workspace;  // shared by every call with this signature
  std::string description;
};

// Builds the operation graph, asks heuristics mode A for engine configs and keeps the first one
// whose execution plan finalizes. Throws ib::Error when none does.
void build_plan(const AttentionProblem& p, cudnnHandle_t handle, Plan& out) {
#if CUDNN_VERSION >= 91301
  IB_CHECK(cudnnGetVersion() >= 91301, "the SDPA_FWD operation needs cuDNN 9.13.1 or later (runtime {})",
           cudnnGetVersion());
  std::deque<Desc> keep;
  const Desc& op = keep.emplace_back(sdpa_operation(p, keep));
  Desc& graph = keep.emplace_back(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  const cudnnBackendDescriptor_t ops[] = {op.get()};
  graph.set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &handle)
      .set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, ops, 1);
  graph.finalize("the operation graph");

  // Heuristics mode A ranks the engines for the graph; the fallback mode lists more when A has
  // nothing that finalizes.
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

    for (int64_t i = 0; i < count; ++i) {
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
      int64_t engine_index = -1;  // for the log only
      {
        Desc engine(CUDNN_BACKEND_ENGINE_DESCRIPTOR);
        cudnnBackendDescriptor_t e = engine.get();
        if (cudnnBackendGetAttribute(cfg.get(), CUDNN_ATTR_ENGINECFG_ENGINE, CUDNN_TYPE_BACKEND_DESCRIPTOR, 1, &n,
                                     &e) == CUDNN_STATUS_SUCCESS)
          cudnnBackendGetAttribute(e, CUDNN_ATTR_ENGINE_GLOBAL_INDEX, CUDNN_TYPE_INT64, 1, &n, &engine_index);
      }
      out.ok = true;
      out.keep = std::move(keep);
      out.plan = std::move(plan);
      out.workspace_bytes = ws;
      if (ws > 0) out.workspace = Tensor::empty({ws}, DType::U8, Device::CUDA);
      out.description = fmt::format("SDPA_FWD graph, engine {} (heuristics {} choice {} of {}), workspace {} bytes",
                                    engine_index, mode_name, i + 1, count, ws);
      return;
    }
  }
  fail("no engine config of the SDPA_FWD graph finalizes{}", refusals);
#else
  (void)p, (void)handle, (void)out;
  fail("the SDPA_FWD operation needs cuDNN 9.13.1 headers (built with {})", CUDNN_VERSION);
#endif
}

// The signature a plan is built for: device, shape and strides. The scale is passed by value at
// run time, so it is not part of it.
using Key = std::array<int64_t, 14>;

Key key_of(const AttentionProblem& p, int device) {
  return {device, p.batch, p.heads, p.head_dim, p.lq, p.lk,
          p.q_row_stride, p.k_row_stride, p.v_row_stride, p.o_row_stride,
          p.q_batch_stride, p.k_batch_stride, p.v_batch_stride, p.o_batch_stride};
}

std::string shape_text(const AttentionProblem& p) {
  return fmt::format("batch {}, heads {}, head dim {}, Lq {}, Lk {}, row strides q/k/v/o {}/{}/{}/{}", p.batch,
                     p.heads, p.head_dim, p.lq, p.lk, p.q_row_stride, p.k_row_stride, p.v_row_stride,
                     p.o_row_stride);
}

// Problems that no cuDNN graph can take, whatever the runtime: a reason, or empty.
std::string static_refusal(const AttentionProblem& p) {
  if (p.batch < 1 || p.heads < 1 || p.head_dim < 1 || p.lq < 1 || p.lk < 1) return "empty or negative sizes";
  if (p.head_dim % 8 != 0) return "head dim not a multiple of 8";
  // 16-byte alignment of every row and batch start (bf16: 8 elements), as the descriptors declare.
  for (int64_t s : {p.q_row_stride, p.k_row_stride, p.v_row_stride, p.o_row_stride, p.q_batch_stride,
                    p.k_batch_stride, p.v_batch_stride, p.o_batch_stride})
    if (s % 8 != 0) return "a row or batch stride not a multiple of 8 elements";
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
  float scale = p.scale;  // read by the host when the kernel is launched
  std::array<int64_t, 5> uids{kQ, kK, kV, kO, kScale};
  std::array<void*, 5> ptrs{const_cast<void*>(p.q), const_cast<void*>(p.k), const_cast<void*>(p.v), p.out, &scale};
  void* workspace = plan->workspace_bytes > 0 ? plan->workspace.raw() : nullptr;
  Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
  pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, uids.data(), 5)
      .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, ptrs.data(), 5)
      .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &workspace);
  pack.finalize("the variant pack");
  check(cudnnBackendExecute(handle, plan->plan->get(), pack.get()), "cudnnBackendExecute");
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
