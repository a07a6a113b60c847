// DitRunner: the GPU engine's DiT forward (see dit_runner.h). Shapes are written for one video of
// L tokens of width dim.
#include "gpu/dit_runner.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string_view>

#include "core/check.h"
#include "core/cuda_memory.h"
#include "gpu/attention_fp8.h"
#include "gpu/fp8.h"
#include "gpu/lora_merge.h"
#include "models/dit_memory.h"
#include "ops/activation.h"
#include "ops/elementwise.h"
#include "ops/linear.h"
#include "ops/norm.h"

namespace ib::gpu {

namespace {

constexpr float kImgEmbEps = 1e-5f;  // torch.nn.LayerNorm default in img_emb.proj

Tensor dev_f32(const Tensor& t) { return t.defined() ? to_f32_device(t) : Tensor(); }
Tensor dev_bf16(const Tensor& t) { return t.defined() ? to_bf16_device(t) : Tensor(); }

size_t bytes_of(const Tensor& t) { return t.defined() ? t.nbytes() : 0; }

// Device events around named regions of one forward, summed per name after the forward.
class Events {
 public:
  explicit Events(DitProfile* p) : p_(p) {}
  ~Events() {
    for (auto& m : marks_) cudaEventDestroy(m.ev);
  }
  void mark(const char* name) {
    if (p_ == nullptr) return;
    cudaEvent_t e = nullptr;
    cudaEventCreate(&e);
    cudaEventRecord(e, nullptr);
    marks_.push_back({name, e});
  }
  // Time from each mark to the next is booked to the first one's name.
  void finish() {
    if (p_ == nullptr || marks_.size() < 2) return;
    cudaEventSynchronize(marks_.back().ev);
    for (size_t i = 0; i + 1 < marks_.size(); ++i) {
      float ms = 0;
      cudaEventElapsedTime(&ms, marks_[i].ev, marks_[i + 1].ev);
      p_->ms[marks_[i].name] += ms;
      p_->total_ms += ms;
    }
  }

 private:
  struct Mark {
    const char* name;
    cudaEvent_t ev;
  };
  DitProfile* p_;
  std::vector<Mark> marks_;
};

Tensor filled(const Shape& s, DType dt, uint64_t seed, float bound) {
  Tensor t = Tensor::empty(s, dt, Device::CUDA);
  fill_uniform(t, seed, bound);
  return t;
}

}  // namespace

namespace {
bool ends_with(const std::string& s, std::string_view p) {
  return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0;
}

// Device bytes the engine's formats take for a checkpoint's matrices (biases and norms left out):
// `fixed` those outside the blocks (bf16 embeddings; the time MLP, head and emb_pos at 4 bytes),
// `block` one block's linear layers in the chosen format.
struct WeightBytes {
  size_t fixed = 0, block = 0;
};
WeightBytes estimate_bytes(const WeightShapes& list, LinearWeight::Format format) {
  WeightBytes n;
  const size_t block_el = format == LinearWeight::Format::FP8 ? 1 : 2;
  for (const auto& [name, shape] : list) {
    const auto el = static_cast<size_t>(shape_numel(shape));
    if (name.rfind("blocks.0.", 0) == 0) {
      if (shape.size() == 2 && ends_with(name, ".weight")) n.block += el * block_el;
    } else if (name.rfind("blocks.", 0) != 0) {
      for (const char* m : {"patch_embedding.weight", "text_embedding.0.weight", "text_embedding.2.weight",
                            "img_emb.proj.1.weight", "img_emb.proj.3.weight"})
        if (name == m) n.fixed += el * 2;
      for (const char* m : {"time_embedding.0.weight", "time_embedding.2.weight", "time_projection.1.weight",
                            "head.head.weight", "img_emb.emb_pos"})
        if (name == m) n.fixed += el * 4;
    }
  }
  return n;
}

// Refuses a model that cannot fit before copying half of it (with streamed blocks, only the
// resident ones and two slots need the device).
void check_fits(const WeightShapes& list, int64_t layers, LinearWeight::Format format, int64_t resident) {
  const WeightBytes est = estimate_bytes(list, format);
  const int64_t keep = resident < 0 ? layers : std::min(resident, layers);
  const size_t need = est.fixed + static_cast<size_t>(keep) * est.block + (keep < layers ? 2 * est.block : 0);
  const size_t avail = cuda::available_bytes();
  const cuda::MemoryStats st = cuda::memory_stats();
  const double gib = 1024.0 * 1024.0 * 1024.0;
  IB_CHECK(need <= avail,
           "the DiT does not fit the GPU: its weights take {:.1f} GiB in {} ({} of {} blocks on the device), and "
           "{:.1f} GiB {} free (the GPU has {:.1f} GiB); try --vram-budget to stream blocks from host memory",
           static_cast<double>(need) / gib, format == LinearWeight::Format::FP8 ? "fp8" : "bf16", keep, layers,
           static_cast<double>(avail) / gib, st.budget > 0 ? "of the --vram-budget are" : "are",
           static_cast<double>(st.device_total) / gib);
}

size_t tensor_bytes(std::initializer_list<const Tensor*> ts) {
  size_t n = 0;
  for (const Tensor* t : ts) n += bytes_of(*t);
  return n;
}
}  // namespace

size_t DitRunner::fixed_bytes() const {
  const DitWeightsGpu& w = w_;
  size_t n = w.patch.bytes() +
             tensor_bytes({&w.text0_w, &w.text0_b, &w.text2_w, &w.text2_b, &w.time0_w, &w.time0_b, &w.time2_w,
                           &w.time2_b, &w.time_proj_w, &w.time_proj_b, &w.head_modulation, &w.head_w, &w.head_b,
                           &w.img_ln0_w, &w.img_ln0_b, &w.img1_w, &w.img1_b, &w.img3_w, &w.img3_b, &w.img_ln4_w,
                           &w.img_ln4_b, &w.emb_pos});
  for (const DitBlockGpu& g : w.blocks)
    n += tensor_bytes({&g.modulation, &g.norm_q, &g.norm_k, &g.norm3_w, &g.norm3_b, &g.cnorm_q, &g.cnorm_k,
                       &g.cnorm_k_img});
  return n;
}

size_t DitRunner::block_linear_bytes() const {
  if (stream_) return stream_->blob_bytes();
  size_t n = 0;
  for (const LinearWeight* l : w_.blocks.at(0).linears())
    if (l->w.defined()) n += l->bytes();
  return n;
}

void DitRunner::count_bytes() {
  size_t n = fixed_bytes();
  for (DitBlockGpu& g : w_.blocks)
    for (const LinearWeight* l : g.linears())
      if (l->w.defined()) n += l->bytes();
  if (stream_) n += 2 * stream_->blob_bytes();
  w_.bytes = n;
}

int64_t DitRunner::resident_blocks() const {
  if (!stream_) return static_cast<int64_t>(w_.blocks.size());
  return static_cast<int64_t>(std::count(blob_of_.begin(), blob_of_.end(), -1));
}

namespace {
Tensor* part_of(LinearWeight& l, size_t part) { return part == 0 ? &l.w : part == 1 ? &l.scale : &l.bias; }

std::vector<BlobEntry> blob_layout(DitBlockGpu& g, size_t& total) {
  std::vector<BlobEntry> out;
  total = 0;
  const auto ls = g.linears();
  for (size_t li = 0; li < ls.size(); ++li)
    for (size_t part = 0; part < 3; ++part) {
      const Tensor* t = part_of(*ls[li], part);
      if (!t->defined()) continue;
      out.push_back({li, part, total, t->shape(), t->dtype()});
      total += (t->nbytes() + 255) / 256 * 256;
    }
  return out;
}
}  // namespace

void DitRunner::stash_block(size_t b, size_t streamed_blocks) {
  DitBlockGpu& g = w_.blocks.at(b);
  size_t blob = 0;
  const std::vector<BlobEntry> layout = blob_layout(g, blob);
  if (!stream_) {
    stream_ = std::make_unique<BlobStream>(blob, streamed_blocks);
    blob_of_.assign(static_cast<size_t>(cfg_.num_layers), -1);
    stream_layout_ = layout;
  }
  IB_CHECK(blob == stream_->blob_bytes() && layout.size() == stream_layout_.size(),
           "DitRunner: block {} differs in layout from the first streamed block", b);
  const auto k = static_cast<size_t>(std::count_if(blob_of_.begin(), blob_of_.end(), [](int64_t v) { return v >= 0; }));
  IB_CHECK(k < stream_->blobs(), "DitRunner: more streamed blocks than planned ({})", stream_->blobs());
  blob_of_.at(b) = static_cast<int64_t>(k);
  const auto ls = g.linears();
  for (const BlobEntry& e : stream_layout_) {
    Tensor* t = part_of(*ls[e.linear], e.part);
    IB_CHECK(t->defined() && t->shape() == e.shape && t->dtype() == e.dtype,
             "DitRunner: block {} differs in layout from the first streamed block", b);
    cuda::memcpy_any(stream_->host(k) + e.offset, false, t->raw(), true, t->nbytes());
    *t = Tensor();  // its device memory goes back to the allocator
  }
}

void DitRunner::finish_streaming() {
  if (!stream_) return;
  const auto ls0 = w_.blocks.back().linears();
  for (size_t s = 0; s < 2; ++s) {
    slot_linears_[s].assign(8, LinearWeight{});
    for (size_t li = 0; li < 8; ++li) slot_linears_[s][li].format = ls0[li]->format;
    const Tensor& slot = stream_->slot(static_cast<int>(s));
    for (const BlobEntry& e : stream_layout_)
      *part_of(slot_linears_[s][e.linear], e.part) =
          Tensor::from_storage(slot.storage(), slot.byte_offset() + e.offset, e.shape, e.dtype);
  }
  cuda::empty_cache();
}

void DitRunner::place_blocks(int64_t resident) {
  const auto n = static_cast<int64_t>(w_.blocks.size());
  IB_CHECK(!stream_, "DitRunner::place_blocks: the blocks were placed already");
  IB_CHECK(resident >= 0, "DitRunner::place_blocks: {} resident blocks", resident);
  if (resident >= n) return;
  for (int64_t b = resident; b < n; ++b) stash_block(static_cast<size_t>(b), static_cast<size_t>(n - resident));
  finish_streaming();
  count_bytes();
}

DitRunner::BlockPass::BlockPass(const DitRunner& r) : r_(r) {
  if (!r_.stream_) return;
  std::vector<size_t> order;  // the streamed blocks' blobs, in block order
  for (int64_t k : r_.blob_of_)
    if (k >= 0) order.push_back(static_cast<size_t>(k));
  r_.stream_->begin(order);
}

const DitBlockGpu& DitRunner::BlockPass::enter(size_t i) {
  if (!r_.stream_ || r_.blob_of_[i] < 0) return r_.w_.blocks[i];
  return r_.block_view(i, r_.stream_->acquire(next_), scratch_);
}

void DitRunner::BlockPass::leave(size_t i) {
  if (r_.stream_ && r_.blob_of_[i] >= 0) r_.stream_->release(next_++);
}

const DitBlockGpu& DitRunner::block_view(size_t i, int slot, DitBlockGpu& scratch) const {
  if (!stream_ || blob_of_[i] < 0) return w_.blocks[i];
  scratch = w_.blocks[i];
  const auto ls = scratch.linears();
  for (size_t li = 0; li < 8; ++li) *ls[li] = slot_linears_[static_cast<size_t>(slot)][li];
  return scratch;
}

void DitRunner::add_block(DitBlockGpu g, int64_t resident) {
  if (format_ == Format::FP8)
    for (LinearWeight* l : g.linears())
      if (l->w.defined()) *l = LinearWeight::fp8(*l);
  w_.blocks.push_back(std::move(g));
  const auto idx = static_cast<int64_t>(w_.blocks.size()) - 1;
  if (resident >= 0 && idx >= resident)
    stash_block(static_cast<size_t>(idx), static_cast<size_t>(cfg_.num_layers - resident));
}

std::unique_ptr<DitRunner> DitRunner::build(const DitConfig& cfg, int64_t text_dim, int64_t clip_dim,
                                            int64_t image_tokens, const WeightFetch& fetch, Format format,
                                            int64_t resident) {
  if (format == Format::FP8) require_fp8("--precision fp8");
  auto r = std::make_unique<DitRunner>();
  r->format_ = format;
  r->cfg_ = cfg;
  r->text_dim_ = text_dim;
  r->has_img_ = cfg.model_type != "t2v";
  r->clip_dim_ = r->has_img_ ? clip_dim : 0;
  r->img_tokens_ = cfg.model_type == "flf2v" ? image_tokens : 0;
  check_fits(dit_weight_shapes(cfg, text_dim, r->clip_dim_, r->img_tokens_), cfg.num_layers, format, resident);
  const int64_t dim = cfg.dim;
  auto lin = [&](const std::string& m) { return LinearWeight::bf16(fetch(m + ".weight"), fetch(m + ".bias")); };
  auto f32 = [&](const std::string& name) { return dev_f32(fetch(name)); };
  auto bf16 = [&](const std::string& name) { return dev_bf16(fetch(name)); };
  DitWeightsGpu& w = r->w_;
  w.patch = LinearWeight::bf16(fetch("patch_embedding.weight").view({dim, cfg.in_dim * 4}),  // [dim, in, 1, 2, 2]
                               fetch("patch_embedding.bias"));
  w.text0_w = bf16("text_embedding.0.weight");
  w.text0_b = f32("text_embedding.0.bias");
  w.text2_w = bf16("text_embedding.2.weight");
  w.text2_b = f32("text_embedding.2.bias");
  w.time0_w = f32("time_embedding.0.weight");
  w.time0_b = f32("time_embedding.0.bias");
  w.time2_w = f32("time_embedding.2.weight");
  w.time2_b = f32("time_embedding.2.bias");
  w.time_proj_w = f32("time_projection.1.weight");
  w.time_proj_b = f32("time_projection.1.bias");
  for (int64_t i = 0; i < cfg.num_layers; ++i) {
    const std::string p = fmt::format("blocks.{}.", i);
    DitBlockGpu g;
    g.modulation = f32(p + "modulation").view({6, dim});  // [1, 6, dim]
    {
      const LinearWeight q = lin(p + "self_attn.q"), k = lin(p + "self_attn.k"), v = lin(p + "self_attn.v");
      g.qkv = LinearWeight::stack({&q, &k, &v});
    }
    g.o = lin(p + "self_attn.o");
    g.norm_q = f32(p + "self_attn.norm_q.weight");
    g.norm_k = f32(p + "self_attn.norm_k.weight");
    g.norm3_w = f32(p + "norm3.weight");
    g.norm3_b = f32(p + "norm3.bias");
    g.cq = lin(p + "cross_attn.q");
    {
      const LinearWeight k = lin(p + "cross_attn.k"), v = lin(p + "cross_attn.v");
      g.ckv = LinearWeight::stack({&k, &v});
    }
    if (r->has_img_) {
      const LinearWeight k = lin(p + "cross_attn.k_img"), v = lin(p + "cross_attn.v_img");
      g.ckv_img = LinearWeight::stack({&k, &v});
      g.cnorm_k_img = f32(p + "cross_attn.norm_k_img.weight");
    }
    g.co = lin(p + "cross_attn.o");
    g.cnorm_q = f32(p + "cross_attn.norm_q.weight");
    g.cnorm_k = f32(p + "cross_attn.norm_k.weight");
    g.ffn0 = lin(p + "ffn.0");
    g.ffn2 = lin(p + "ffn.2");
    r->add_block(std::move(g), resident);
  }
  w.head_modulation = f32("head.modulation").view({2, dim});  // [1, 2, dim]
  w.head_w = f32("head.head.weight");
  w.head_b = f32("head.head.bias");
  if (r->has_img_) {
    w.img_ln0_w = f32("img_emb.proj.0.weight");
    w.img_ln0_b = f32("img_emb.proj.0.bias");
    w.img1_w = bf16("img_emb.proj.1.weight");
    w.img1_b = f32("img_emb.proj.1.bias");
    w.img3_w = bf16("img_emb.proj.3.weight");
    w.img3_b = f32("img_emb.proj.3.bias");
    w.img_ln4_w = f32("img_emb.proj.4.weight");
    w.img_ln4_b = f32("img_emb.proj.4.bias");
    if (r->img_tokens_ > 0) w.emb_pos = f32("img_emb.emb_pos").view({r->img_tokens_, r->clip_dim_});  // [1, tok, clip]
  }
  r->finish_streaming();
  r->count_bytes();
  cuda::synchronize("loading the DiT");
  return r;
}

namespace {
// Held tensors by checkpoint name, looked up with an error that names what is missing.
struct HeldWeights {
  std::map<std::string, Tensor> by_name;
  explicit HeldWeights(WanDiT& model) {
    for (const WanDiT::NamedWeight& nw : model.named_weights()) by_name.emplace(nw.name, *nw.tensor);
  }
  const Tensor& at(const std::string& name) const {
    const auto it = by_name.find(name);
    IB_CHECK(it != by_name.end(), "DitRunner: the DiT holds no '{}'", name);
    return it->second;
  }
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void check_merged(const LoraMerge& merge) {
  const std::vector<std::string> left = merge.pending();
  IB_CHECK(left.empty(), "DitRunner: LoRA patches of {} tensors were not merged (first: '{}')", left.size(),
           left.empty() ? "" : left[0]);
}
}  // namespace

std::unique_ptr<DitRunner> DitRunner::create(const WanDiT& model, Format format, int64_t resident) {
  const auto t0 = std::chrono::steady_clock::now();
  WanDiT view = model;  // shares the tensors (named_weights needs a mutable model)
  const HeldWeights held(view);
  auto r = build(model.config(), model.text_dim(), model.clip_dim(), model.image_tokens(),
                 [&](const std::string& name) { return held.at(name); }, format, resident);
  r->load_stats_.seconds = seconds_since(t0);
  return r;
}

std::unique_ptr<DitRunner> DitRunner::load(const TensorStore& store, const DitConfig& cfg,
                                           const std::vector<LoraSpec>& loras, Format format, int64_t resident) {
  const auto t0 = std::chrono::steady_clock::now();
  WanDiT model = WanDiT::load(store, cfg);  // every check; the weights stay in the map, unread
  const HeldWeights held(model);
  const auto t_lora = std::chrono::steady_clock::now();
  LoraMerge merge(read_loras(model, loras));  // every file read and checked before the first upload
  const double read_s = seconds_since(t_lora);
  auto r = build(model.config(), model.text_dim(), model.clip_dim(), model.image_tokens(),
                 [&](const std::string& name) {
                   const Tensor t = held.at(name).to(Device::CUDA);  // the copy reads the map's pages once
                   store.release(name);
                   return merge.apply(name, t);
                 },
                 format, resident);
  check_merged(merge);
  r->load_stats_ = {seconds_since(t0), read_s + merge.seconds(), merge.patched_tensors()};
  return r;
}

std::unique_ptr<DitRunner> DitRunner::synthetic(const DitConfig& cfg, int64_t text_dim, int64_t clip_dim,
                                                int64_t image_tokens, uint64_t seed, Format format, int64_t resident,
                                                const std::vector<LoraSpec>& loras) {
  const auto t0 = std::chrono::steady_clock::now();
  const bool img = cfg.model_type != "t2v";
  const WeightShapes list = dit_weight_shapes(cfg, text_dim, img ? clip_dim : 0, cfg.model_type == "flf2v" ? image_tokens : 0);
  const std::map<std::string, Shape> shapes(list.begin(), list.end());
  LoraMerge merge(read_loras(shapes, loras));
  const double read_s = seconds_since(t0);
  // Uniform weights of variance 1/in keep activations of order one through the layers; small
  // modulations (gates near zero), norms of one. Matrices in bf16 (the bf16 release's), the
  // time MLP, head and vectors in f32. Each tensor's seed from its name.
  auto make = [&](const std::string& name) {
    const Shape& s = shapes.at(name);
    if (s.size() == 1 && ends_with(name, ".weight")) return Tensor::full(s, 1.0f).to(Device::CUDA);  // norms
    float bound = 0.02f;  // biases
    if (ends_with(name, "modulation")) bound = 0.05f;
    else if (name == "time_projection.1.weight") bound = 0.002f;
    else if (name == "img_emb.emb_pos") bound = 0.1f;
    else if (ends_with(name, ".weight")) bound = std::sqrt(3.0f / static_cast<float>(shape_numel(s) / s[0]));
    const bool f32 = s.size() < 2 || ends_with(name, "modulation") || name.rfind("time_", 0) == 0 ||
                     name.rfind("head.", 0) == 0 || name == "img_emb.emb_pos";
    uint64_t h = seed * 1000003ull;
    for (const char c : name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;  // FNV-1a
    return filled(s, f32 ? DType::F32 : DType::BF16, h, bound);
  };
  auto r = build(cfg, text_dim, clip_dim, image_tokens,
                 [&](const std::string& name) { return merge.apply(name, make(name)); }, format, resident);
  check_merged(merge);
  r->load_stats_ = {seconds_since(t0), read_s + merge.seconds(), merge.patched_tensors()};
  return r;
}

DitContext DitRunner::prepare(const Tensor& context, const Tensor& clip_fea) const {
  const DitConfig& c = cfg_;
  const DitWeightsGpu& w = w_;
  IB_CHECK(context.defined() && context.dim() == 2 && context.size(1) == text_dim_ && context.size(0) <= c.text_len,
           "DiT context must be [Lt <= {}, {}], got {}", c.text_len, text_dim_,
           context.defined() ? context.str() : "undefined");
  // 7.4: the text padded with exact zero rows to text_len, then embedded (f32 activations here).
  Tensor ctx = Tensor::zeros({c.text_len, text_dim_}, DType::F32, Device::CUDA);
  if (context.size(0) > 0) copy_bytes(ctx.slice(0, context.size(0)), to_f32_device(context));
  const Tensor ctx_txt = ops::linear(ops::gelu_tanh(ops::linear(ctx, w.text0_w, w.text0_b)), w.text2_w,
                                     w.text2_b);  // [text_len, dim]
  Tensor ctx_img;
  if (has_img_) {
    IB_CHECK(clip_fea.defined() && clip_fea.dim() >= 2 && clip_fea.size(-1) == clip_dim_,
             "DiT: CLIP features must be [tokens, {}] or [n, tokens, {}], got {}", clip_dim_, clip_dim_,
             clip_fea.defined() ? clip_fea.str() : "undefined");
    Tensor ci = to_f32_device(clip_fea).view({-1, clip_dim_});  // [Li, clip_dim]
    if (w.emb_pos.defined()) {
      IB_CHECK(ci.size(0) == img_tokens_, "DiT: {} CLIP feature rows, the model's emb_pos has {}", ci.size(0),
               img_tokens_);
      ci = ops::add(ci, w.emb_pos);
    }
    ci = ops::layer_norm(ci, w.img_ln0_w, w.img_ln0_b, kImgEmbEps);
    ci = ops::gelu(ops::linear(ci, w.img1_w, w.img1_b));
    ci = ops::linear(ci, w.img3_w, w.img3_b);
    ctx_img = ops::layer_norm(ci, w.img_ln4_w, w.img_ln4_b, kImgEmbEps);  // [Li, dim]
  } else {
    IB_CHECK(!clip_fea.defined(), "DiT: model_type 't2v' takes no CLIP features");
  }
  DitContext out;
  const Tensor txt_bf = to_bf16_device(ctx_txt);
  const Tensor img_bf = ctx_img.defined() ? to_bf16_device(ctx_img) : Tensor();
  out.text_rows = txt_bf.size(0);
  out.image_rows = img_bf.defined() ? img_bf.size(0) : 0;
  if (contexts_per_block_) {  // the forward projects each block's keys and values
    out.text_emb = txt_bf;
    out.image_emb = img_bf;
    return out;
  }
  BlockPass blocks(*this);
  for (size_t i = 0; i < w.blocks.size(); ++i) {
    const DitBlockGpu& g = blocks.enter(i);
    out.kv_txt.push_back(project_context(txt_bf, g.ckv, g.cnorm_k));
    if (img_bf.defined()) out.kv_img.push_back(project_context(img_bf, g.ckv_img, g.cnorm_k_img));
    blocks.leave(i);
  }
  return out;
}

// One block's cross-attention [k | v] = ctx . [Wk ; Wv]^T + b, then k's RMSNorm in place (bf16
// [Lk, 2*dim]).
Tensor DitRunner::project_context(const Tensor& src, const LinearWeight& kv, const Tensor& gamma) const {
  Tensor r = linear(src, kv, Epilogue::Bias);
  QkNormArgs a;
  a.x = r.raw();
  a.rows = r.size(0);
  a.cols = cfg_.dim;
  a.ld = 2 * cfg_.dim;
  a.gamma = gamma.data<float>();
  a.eps = cfg_.eps;
  a.heads = cfg_.num_heads;
  qk_norm(a);
  return r;
}

Tensor DitRunner::forward(const Tensor& x, double t, const DitContext& ctx, const Tensor& y,
                          DitProfile* profile) const {
  return forward_batch(x, t, {&ctx}, y, profile).at(0);
}

void DitRunner::set_fp8_attention(bool on) {
  if (on) require_fp8("fp8 attention");
  fp8_attention_ = on;
}

size_t DitRunner::activation_bytes(int64_t L, int64_t batch) const {
  const DitActivationBytes b = dit_activation_bytes(cfg_.dim, cfg_.ffn_dim, fp8_attention_, format_ == Format::FP8);
  const size_t rows = static_cast<size_t>(L) * static_cast<size_t>(batch);
  const size_t ffn_rows = ffn_chunk_rows_ > 0 ? std::min(rows, static_cast<size_t>(ffn_chunk_rows_)) : rows;
  return b.per_row * rows + b.per_ffn_row * ffn_rows;
}

bool DitRunner::fits_batched_branches(int64_t tokens) const {
  // A quarter spare for the allocator's rounding and the products' workspaces.
  return static_cast<double>(activation_bytes(tokens, 2)) * 1.25 <= static_cast<double>(cuda::available_bytes());
}

std::vector<Tensor> DitRunner::forward_batch(const Tensor& x, double t, const std::vector<const DitContext*>& ctxs,
                                             const Tensor& y, DitProfile* profile) const {
  const DitConfig& c = cfg_;
  const DitWeightsGpu& w = w_;
  IB_CHECK(x.defined() && x.device() == Device::CUDA && x.dtype() == DType::F32 && x.dim() == 4 &&
               x.size(0) == c.out_dim,
           "DiT (GPU) forward: latent must be f32 [{}, T, h, w] on the device, got {}", c.out_dim,
           x.defined() ? x.str() : "undefined");
  const int64_t T = x.size(1), h = x.size(2), wd = x.size(3);
  IB_CHECK(T > 0 && h > 0 && wd > 0 && h % 2 == 0 && wd % 2 == 0,
           "DiT forward: latent {} must have frames and an even, non-zero height and width", x.str());
  const int64_t hp = h / 2, wp = wd / 2, L = T * hp * wp, dim = c.dim, H = c.num_heads, D = dim / H;
  if (has_img_) {
    IB_CHECK(y.defined() && y.device() == Device::CUDA && y.dtype() == DType::F32 &&
                 y.shape() == (Shape{c.in_dim - c.out_dim, T, h, wd}),
             "DiT forward: conditioning must be f32 {} on the device, got {}", shape_str({c.in_dim - c.out_dim, T, h, wd}),
             y.defined() ? y.str() : "undefined");
  }
  IB_CHECK(!ctxs.empty(), "DiT forward: no context");
  for (const DitContext* ctx : ctxs) {
    IB_CHECK(ctx != nullptr, "DiT forward: no context");
    const bool per_block = ctx->text_emb.defined();  // keys and values projected block by block below
    IB_CHECK(per_block ? ctx->text_emb.size(1) == c.dim : ctx->kv_txt.size() == w.blocks.size(),
             "DiT forward: the context was prepared for another model");
    IB_CHECK(!has_img_ || (per_block ? ctx->image_emb.defined() : ctx->kv_img.size() == w.blocks.size()),
             "DiT forward: the context was prepared without image features");
  }
  // B videos that share the latent, the timestep and the conditioning and differ in their text
  // context (the two guidance branches): their L-row blocks are stacked into R = B*L rows, so each
  // product, norm and self-attention runs once for all of them.
  const auto B = static_cast<int64_t>(ctxs.size());
  const int64_t R = B * L;
  Events ev(profile);

  // 7.2: patch embedding (bf16 product) -> the residual stream, f32 from here on.
  ev.mark("patch_embedding");
  Tensor tokens = Tensor::empty({L, c.in_dim * 4}, DType::BF16, Device::CUDA);
  patchify(x.data<float>(), c.out_dim, has_img_ ? y.data<float>() : nullptr, c.in_dim - c.out_dim, T, h, wd,
           tokens.raw());
  Tensor xs = Tensor::empty({R, dim}, DType::F32, Device::CUDA);  // [B*L, dim] f32
  {
    const Tensor x0 = to_f32_device(linear(tokens, w.patch, Epilogue::Bias));  // [L, dim]
    for (int64_t b = 0; b < B; ++b) copy_bytes(xs.slice(b * L, (b + 1) * L), x0);
  }
  tokens = Tensor();

  // 7.3: time embedding, f32.
  ev.mark("time_embedding");
  const Tensor sin_emb = sinusoidal_embedding_device(c.freq_dim, t);  // [1, freq_dim]
  const Tensor e = ops::linear(ops::silu(ops::linear(sin_emb, w.time0_w, w.time0_b)), w.time2_w, w.time2_b);  // [1, dim]
  const Tensor e0 = ops::linear(ops::silu(e), w.time_proj_w, w.time_proj_b).view({6, dim});                 // [6, dim]

  const RopeTables& rope = rope_for(T, hp, wp);

  // Scratch of one forward, reused by every block (the allocator keeps it across forwards): the
  // normed block input `a` and q | k | v. Three more [R, dim] bf16 buffers live in their memory,
  // each while the owner is dead. A block, in order: qkv <- a; att <- self-attention(qkv);
  // proj <- o(att); a <- norm(x + proj); proj <- cross q(a); att, att2 <- cross-attention(proj);
  // proj <- co(att + att2); a <- norm(x + proj); proj <- FFN(a); a <- norm(x + proj).
  // - att (the attention outputs) is `a`: a is dead from each product that reads it until the norm
  //   that rewrites it, and att's last reader (o, co) comes before that norm.
  // - att2 (the image cross-attention's output) and proj (the o, co and FFN-down outputs) are the
  //   second and last thirds of qkv's memory, dead once the self-attention has read q, k and v. proj
  //   is the last third, so that the head's f32 input (the first two thirds, written by the last
  //   block's final norm as it reads proj) does not overlap it.
  // - a8 (fp8 products): the e4m3 rows and per-row scales of every width-dim product input. Each
  //   norm that writes `a` writes a8 too, and qkv, cross q and FFN-up read it instead of
  //   quantising `a` themselves; o and co quantise att into it (a8 is dead from each product that
  //   reads it until the next norm or quantisation rewrites it).
  // (models/dit_memory.h counts these buffers for the VRAM planner.)
  Tensor a = Tensor::empty({R, dim}, DType::BF16, Device::CUDA);        // normed block input
  Tensor qkv = Tensor::empty({R, 3 * dim}, DType::BF16, Device::CUDA);  // [q | k | v]
  Tensor att = a;                                                       // attention output
  Tensor att2 =
      has_img_ ? Tensor::from_storage(qkv.storage(), qkv.byte_offset() + R * dim * 2, {R, dim}, DType::BF16) : Tensor();
  Tensor proj = Tensor::from_storage(qkv.storage(), qkv.byte_offset() + 2 * R * dim * 2, {R, dim}, DType::BF16);
  // The FFN runs over row chunks of ffn_rows (all rows unless a VRAM budget asked for chunks), so
  // its hidden activations take ffn_rows rows.
  const int64_t ffn_rows = ffn_chunk_rows_ > 0 ? std::min(R, ffn_chunk_rows_) : R;
  Tensor hid = Tensor::empty({ffn_rows, c.ffn_dim}, DType::BF16, Device::CUDA);  // FFN hidden
  // The head's f32 input: qkv's first two thirds (free once the last block's attention is done).
  const Tensor head_in = Tensor::from_storage(qkv.storage(), qkv.byte_offset(), {R, dim}, DType::F32);
  auto bp = [](const Tensor& buf) { return static_cast<char*>(buf.raw()); };
  const size_t el = 2;  // bf16 bytes
  // Every block's width-dim layers are FP8 when the format is and fp8 products take that width
  // (LinearWeight::fp8); each product below still checks its own layer's format.
  const bool fp8_in = format_ == Format::FP8 && LinearWeight::fp8_capable(dim);
  Tensor a8, a8_scale;
  if (fp8_in) {
    a8 = Tensor::empty({R, dim}, DType::F8E4M3, Device::CUDA);  // e4m3 rows of a (or att)
    a8_scale = Tensor::empty({R}, DType::F32, Device::CUDA);    // their scales
  }
  // Rows r0 .. r0+rows of `a` through layer l: the e4m3 copy its norm wrote when l is FP8, else
  // the bf16 rows. A chunk whose scales would start off a 16-byte boundary (chunks of the FFN that
  // are not a multiple of 4 rows; the planner's are) takes the bf16 rows too, quantised by the
  // product into scratch of its own: the same bits.
  auto linear_a = [&](const LinearWeight& l, int64_t r0, int64_t rows, Epilogue ep, void* out, int64_t ldo) {
    if (fp8_in && l.format == Format::FP8 && r0 % 4 == 0) {
      Fp8Input q;
      q.q = bp(a8) + r0 * dim;
      q.scale = a8_scale.data<float>() + r0;
      linear(q, rows, l, ep, out, ldo);
    } else {
      linear(bp(a) + r0 * dim * el, rows, dim, l, ep, out, ldo);
    }
  };
  // The o and co products of att (all rows): quantised into a8, where the product would otherwise
  // quantise into scratch of its own beside a8. With att2 (the image cross-attention's output) the
  // product's input is bf16(att + att2): added into att first, or, quantising, on the fly (the same
  // values, one memory pass fewer).
  auto linear_att = [&](const LinearWeight& l, void* out, const void* att2_or_null = nullptr) {
    if (!fp8_in || l.format != Format::FP8) {
      if (att2_or_null != nullptr) add_bf16(att.raw(), att2_or_null, att.raw(), R * dim);  // in f32, then bf16
      linear(att.raw(), R, dim, l, Epilogue::Bias, out, dim);
      return;
    }
    QuantizeRowsArgs qa;
    qa.x = att.raw();
    qa.x2 = att2_or_null;
    qa.rows = R;
    qa.cols = qa.ld = dim;
    qa.q = a8.raw();
    qa.scale = a8_scale.data<float>();
    quantize_rows_fp8(qa);
    Fp8Input q;
    q.q = a8.raw();
    q.scale = a8_scale.data<float>();
    linear(q, R, l, Epilogue::Bias, out, dim);
  };

  AttentionProblem self = fused_self_attention(qkv.raw(), att.raw(), L, H, D);
  self.batch = B;  // each video attends to its own L tokens
  self.q_batch_stride = self.k_batch_stride = self.v_batch_stride = L * 3 * dim;
  self.o_batch_stride = L * dim;
  // fp8 self-attention, the scales on the device. Our Hopper kernel's layout (q | k in e4m3, v
  // transposed, the output straight to bf16 `att`) where it runs, else cuDNN's (q | k | v and the
  // output in e4m3, then dequantised).
  Tensor qkv8, att8, vt8, scales8;
  AttentionProblem self8;
  const bool hopper8 = fp8_attention_ && fp8_attention_uses_hopper(D, L, backend_);
  if (hopper8) {
    qkv8 = Tensor::empty({R, 2 * dim}, DType::F8E4M3, Device::CUDA);
    vt8 = Tensor::empty({B, dim, fp8_vt_keys(L)}, DType::F8E4M3, Device::CUDA);
    scales8 = Tensor::empty({kFp8ScaleCount}, DType::F32, Device::CUDA);
    self8 = fp8_self_attention_vt(qkv8.raw(), vt8.raw(), att.raw(), scales8.data<float>(), L, H, D);
    self8.batch = B;
    self8.q_batch_stride = self8.k_batch_stride = L * 2 * dim;
    self8.o_batch_stride = L * dim;
  } else if (fp8_attention_) {
    qkv8 = Tensor::empty({R, 3 * dim}, DType::F8E4M3, Device::CUDA);
    att8 = Tensor::empty({R, dim}, DType::F8E4M3, Device::CUDA);
    scales8 = Tensor::empty({kFp8ScaleCount}, DType::F32, Device::CUDA);
    self8 = fp8_self_attention(qkv8.raw(), att8.raw(), scales8.data<float>(), L, H, D);
    self8.batch = B;
    self8.q_batch_stride = self8.k_batch_stride = self8.v_batch_stride = L * 3 * dim;
    self8.o_batch_stride = L * dim;
  }
  AttentionProblem cross = fused_self_attention(qkv.raw(), att.raw(), L, H, D);
  cross.q = proj.raw();  // the cross-attention's q lives in `proj` until o overwrites it
  cross.q_row_stride = dim;
  cross.k_row_stride = cross.v_row_stride = 2 * dim;

  auto norm_args = [&](const Tensor& m_rows, int64_t shift_row, int64_t scale_row) {
    ResidualNormArgs r;
    r.x = xs.data<float>();
    r.rows = R;
    r.cols = dim;
    r.mode = ResidualNormArgs::Mode::Modulate;
    r.p0 = m_rows.data<float>() + scale_row * dim;
    r.p1 = m_rows.data<float>() + shift_row * dim;
    r.eps = c.eps;
    r.out = a.raw();
    if (fp8_in) {  // and its e4m3 copy for the fp8 product that reads it
      r.q8 = a8.raw();
      r.q8_scale = a8_scale.data<float>();
    }
    return r;
  };

  // Per block m = modulation + e0: rows shift1 scale1 gate1 shift2 scale2 gate2.
  std::vector<Tensor> mods;
  mods.reserve(w.blocks.size());
  for (const DitBlockGpu& g : w.blocks) mods.push_back(ops::add(g.modulation, e0));
  const Tensor hm = ops::add(w.head_modulation, e.view({dim}));  // [2, dim]: shift, scale

  {  // block 0's norm1: its input is still bf16, so LN's output is rounded to bf16 (spec 7.9)
    ev.mark("norm_modulate");
    ResidualNormArgs r = norm_args(mods[0], 0, 1);
    r.round_norm = true;
    residual_norm(r);
  }
  BlockPass blocks(*this);
  for (size_t i = 0; i < w.blocks.size(); ++i) {
    const DitBlockGpu& g = blocks.enter(i);
    const Tensor& m = mods[i];
    // Self-attention.
    ev.mark("qkv_gemm");
    linear_a(g.qkv, 0, R, Epilogue::Bias, qkv.raw(), 3 * dim);
    ev.mark("qk_norm_rope");
    QkNormArgs qa;
    qa.rows = R;
    qa.tokens = L;
    qa.cols = dim;
    qa.ld = 3 * dim;
    qa.eps = c.eps;
    qa.heads = H;
    qa.rope = &rope;
    qa.x = qkv.raw();
    qa.gamma = g.norm_q.data<float>();
    if (hopper8) {  // the norms also measure q's and k's amax for the quantisation below
      cuda::memset_device(scales8.data<float>() + kAmaxQ, 0, 2 * sizeof(float));
      qa.amax = scales8.data<float>() + kAmaxQ;
    }
    qk_norm(qa);
    qa.x = bp(qkv) + dim * el;
    qa.gamma = g.norm_k.data<float>();
    if (hopper8) qa.amax = scales8.data<float>() + kAmaxK;
    qk_norm(qa);
    if (hopper8) {
      ev.mark("fp8_quantize");
      quantize_qkv_fp8_vt(qkv.raw(), B, L, dim, 3 * dim, qkv8.raw(), vt8.raw(), scales8.data<float>(), nullptr,
                          /*qk_amax_ready=*/true);
      ev.mark("self_attention");
      attention(self8, backend_);
    } else if (fp8_attention_) {
      ev.mark("fp8_quantize");
      quantize_qkv_fp8(qkv.raw(), R, dim, 3 * dim, qkv8.raw(), scales8.data<float>());
      ev.mark("self_attention");
      attention(self8, backend_);
      ev.mark("fp8_quantize");
      dequantize_attention_fp8(att8.raw(), R, dim, scales8.data<float>(), att.raw());
    } else {
      ev.mark("self_attention");
      attention(self, backend_);
    }
    ev.mark("o_gemm");
    linear_att(g.o, proj.raw());
    ev.mark("residual_norm");
    {  // x += o * gate1; a = norm3(x)
      ResidualNormArgs r = norm_args(m, 0, 0);
      r.y = proj.raw();
      r.ldy = dim;
      r.gate = m.data<float>() + 2 * dim;
      r.mode = ResidualNormArgs::Mode::Affine;
      r.p0 = g.norm3_w.data<float>();
      r.p1 = g.norm3_b.data<float>();
      residual_norm(r);
    }
    // Cross-attention: q from the normed stream, k/v from the prepared context.
    ev.mark("cross_q_gemm");
    linear_a(g.cq, 0, R, Epilogue::Bias, proj.raw(), dim);
    ev.mark("qk_norm_rope");
    QkNormArgs cqa;
    cqa.x = proj.raw();
    cqa.rows = R;
    cqa.cols = dim;
    cqa.ld = dim;
    cqa.gamma = g.cnorm_q.data<float>();
    cqa.eps = c.eps;
    cqa.heads = H;
    qk_norm(cqa);
    ev.mark("cross_attention");
    for (int64_t b = 0; b < B; ++b) {  // each video with its own context
      const DitContext& ctx = *ctxs[static_cast<size_t>(b)];
      const bool per_block = ctx.text_emb.defined();
      const Tensor kv_txt = per_block ? project_context(ctx.text_emb, g.ckv, g.cnorm_k) : ctx.kv_txt[i];
      const Tensor kv_img = !has_img_   ? Tensor()
                            : per_block ? project_context(ctx.image_emb, g.ckv_img, g.cnorm_k_img)
                                        : ctx.kv_img[i];
      AttentionProblem ct = cross;
      ct.q = bp(proj) + b * L * dim * el;
      ct.out = bp(att) + b * L * dim * el;
      ct.k = kv_txt.raw();
      ct.v = bp(kv_txt) + dim * el;
      ct.lk = ctx.text_rows;
      attention(ct, backend_);
      if (has_img_) {
        AttentionProblem ci = ct;
        ci.k = kv_img.raw();
        ci.v = bp(kv_img) + dim * el;
        ci.lk = ctx.image_rows;
        ci.out = bp(att2) + b * L * dim * el;
        attention(ci, backend_);
      }
    }
    ev.mark("o_gemm");
    linear_att(g.co, proj.raw(), has_img_ ? att2.raw() : nullptr);  // o_txt + o_img
    ev.mark("residual_norm");
    {  // x += cross; a = LN(x) * (1 + scale2) + shift2
      ResidualNormArgs r = norm_args(m, 3, 4);
      r.y = proj.raw();
      r.ldy = dim;
      residual_norm(r);
    }
    // FFN.
    ev.mark("ffn_up_gelu_gemm");
    for (int64_t r0 = 0; r0 < R; r0 += ffn_rows) {
      const int64_t rows = std::min(ffn_rows, R - r0);
      if (r0 > 0) ev.mark("ffn_up_gelu_gemm");
      linear_a(g.ffn0, r0, rows, Epilogue::BiasGelu, hid.raw(), c.ffn_dim);
      ev.mark("ffn_down_gemm");
      linear(hid.raw(), rows, c.ffn_dim, g.ffn2, Epilogue::Bias, bp(proj) + r0 * dim * el, dim);
    }
    ev.mark("residual_norm");
    // x += ffn * gate2, then the next block's norm1-modulation (or the head's, in f32).
    const bool last = i + 1 == w.blocks.size();
    ResidualNormArgs r = last ? norm_args(hm, 0, 1) : norm_args(mods[i + 1], 0, 1);
    r.y = proj.raw();
    r.ldy = dim;
    r.gate = m.data<float>() + 5 * dim;
    if (last) {
      r.out = head_in.raw();
      r.out_bf16 = false;
      r.q8 = nullptr;  // the head's f32 input has no fp8 product
      r.q8_scale = nullptr;
    }
    residual_norm(r);
    blocks.leave(i);
  }

  // 7.8: head in f32, then unpatchify.
  ev.mark("head");
  const Tensor out = ops::linear(head_in, w.head_w, w.head_b);  // [B*L, out_dim*4]
  std::vector<Tensor> vs;
  for (int64_t b = 0; b < B; ++b) {
    Tensor v = Tensor::empty({c.out_dim, T, h, wd}, DType::F32, Device::CUDA);
    unpatchify(out.data<float>() + b * L * c.out_dim * 4, c.out_dim, T, hp, wp, v.data<float>());
    vs.push_back(std::move(v));
  }
  ev.mark("end");
  ev.finish();
  return vs;
}

const RopeTables& DitRunner::rope_for(int64_t frames, int64_t height, int64_t width) const {
  std::lock_guard<std::mutex> lock(rope_mu_);
  const std::array<int64_t, 3> key{frames, height, width};
  auto it = rope_cache_.find(key);
  if (it == rope_cache_.end()) {
    Rope r;
    r.store = make_rope_tables({frames, height, width}, cfg_.dim / cfg_.num_heads, r.tables);
    it = rope_cache_.emplace(key, std::move(r)).first;
  }
  return it->second.tables;
}

double DitRunner::forward_flops(int64_t L) const {
  const double dim = static_cast<double>(cfg_.dim), ffn = static_cast<double>(cfg_.ffn_dim);
  const double l = static_cast<double>(L);
  const double per_block_linear = 2.0 * l * (4 * dim * dim + 2 * dim * dim + 2 * dim * ffn);  // qkv,o; cq,co; ffn
  const double cross_attn = 4.0 * l * dim * static_cast<double>(cfg_.text_len + (has_img_ ? img_tokens_ : 0));
  return static_cast<double>(cfg_.num_layers) * (per_block_linear + cross_attn) + self_attention_flops(L);
}

double DitRunner::self_attention_flops(int64_t L) const {
  const double l = static_cast<double>(L);
  return static_cast<double>(cfg_.num_layers) * 4.0 * l * l * static_cast<double>(cfg_.dim);
}

}  // namespace ib::gpu
