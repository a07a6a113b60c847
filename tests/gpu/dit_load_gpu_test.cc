// DitRunner::load (the checkpoint tensor by tensor to the device, LoRAs merged there) against the
// runner made from a WanDiT on the host: without a LoRA, every weight and the forward the same bits,
// in bf16 and fp8, resident or streamed; with LoRAs, the GPU merge equals apply_loras' CPU merge
// within one bf16 rounding step per weight (the two sum the rank-r products in other orders), a
// bound an unmerged model fails by far; and LoRA errors are apply_loras' errors. Every size comes
// from the fixture's files.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "common/lora_files.h"
#include "gpu/dit_runner.h"
#include "gpu/fp8.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "models/dit.h"
#include "models/lora.h"

namespace ib {
namespace {

using Format = gpu::DitRunner::Format;

struct Model {
  ModelFolder folder = ModelFolder::open(test::model_dir());
  std::shared_ptr<TensorStore> store = open_tensor_store(folder.dit_path);
  std::shared_ptr<SafetensorsFile> io = test::open_fixture("dit.safetensors");
};

// Every tensor a runner holds, by a name for messages (the streamed blocks' linear layers are in
// page-locked memory: the runners compared here keep all blocks on the device).
std::vector<std::pair<std::string, const Tensor*>> all_tensors(const gpu::DitWeightsGpu& w) {
  std::vector<std::pair<std::string, const Tensor*>> out;
  auto lin = [&](const std::string& n, const gpu::LinearWeight& l) {
    out.emplace_back(n + ".w", &l.w);
    out.emplace_back(n + ".scale", &l.scale);
    out.emplace_back(n + ".bias", &l.bias);
  };
  lin("patch", w.patch);
  for (const auto& [n, t] : std::vector<std::pair<std::string, const Tensor*>>{
           {"text0_w", &w.text0_w}, {"text0_b", &w.text0_b}, {"text2_w", &w.text2_w}, {"text2_b", &w.text2_b},
           {"time0_w", &w.time0_w}, {"time0_b", &w.time0_b}, {"time2_w", &w.time2_w}, {"time2_b", &w.time2_b},
           {"time_proj_w", &w.time_proj_w}, {"time_proj_b", &w.time_proj_b}, {"head_modulation", &w.head_modulation},
           {"head_w", &w.head_w}, {"head_b", &w.head_b}, {"img_ln0_w", &w.img_ln0_w}, {"img_ln0_b", &w.img_ln0_b},
           {"img1_w", &w.img1_w}, {"img1_b", &w.img1_b}, {"img3_w", &w.img3_w}, {"img3_b", &w.img3_b},
           {"img_ln4_w", &w.img_ln4_w}, {"img_ln4_b", &w.img_ln4_b}, {"emb_pos", &w.emb_pos}})
    out.emplace_back(n, t);
  for (size_t i = 0; i < w.blocks.size(); ++i) {
    const gpu::DitBlockGpu& g = w.blocks[i];
    const std::string p = "blocks." + std::to_string(i) + ".";
    const char* names[] = {"qkv", "o", "cq", "ckv", "ckv_img", "co", "ffn0", "ffn2"};
    const auto ls = g.linears();
    for (size_t k = 0; k < ls.size(); ++k) lin(p + names[k], *ls[k]);
    for (const auto& [n, t] : std::vector<std::pair<std::string, const Tensor*>>{
             {"modulation", &g.modulation}, {"norm_q", &g.norm_q}, {"norm_k", &g.norm_k}, {"norm3_w", &g.norm3_w},
             {"norm3_b", &g.norm3_b}, {"cnorm_q", &g.cnorm_q}, {"cnorm_k", &g.cnorm_k}, {"cnorm_k_img", &g.cnorm_k_img}})
      out.emplace_back(p + n, t);
  }
  return out;
}

std::vector<unsigned char> bytes_of(const Tensor& t) {
  const Tensor h = t.to(Device::CPU);
  std::vector<unsigned char> b(h.nbytes());
  if (!b.empty()) std::memcpy(b.data(), h.raw(), b.size());
  return b;
}

void expect_same_weights(const gpu::DitRunner& a, const gpu::DitRunner& b) {
  const auto ta = all_tensors(a.weights()), tb = all_tensors(b.weights());
  ASSERT_EQ(ta.size(), tb.size());
  size_t compared = 0;
  for (size_t i = 0; i < ta.size(); ++i) {
    const Tensor& x = *ta[i].second;
    const Tensor& y = *tb[i].second;
    ASSERT_EQ(x.defined(), y.defined()) << ta[i].first;
    if (!x.defined()) continue;
    EXPECT_EQ(x.shape(), y.shape()) << ta[i].first;
    EXPECT_EQ(x.dtype(), y.dtype()) << ta[i].first;
    EXPECT_TRUE(bytes_of(x) == bytes_of(y)) << ta[i].first << " differs";
    ++compared;
  }
  EXPECT_GT(compared, 10 * a.weights().blocks.size());
  EXPECT_EQ(a.weights().bytes, b.weights().bytes);
}

Tensor forward(const gpu::DitRunner& r, const Model& m) {
  const Tensor clip = m.io->contains("clip_fea") ? m.io->get("clip_fea") : Tensor();
  const Tensor y = m.io->contains("y") ? m.io->get("y").to(Device::CUDA) : Tensor();
  const gpu::DitContext ctx = r.prepare(m.io->get("context"), clip);
  const double t = static_cast<double>(m.io->get("t").data<int64_t>()[0]);
  return r.forward(m.io->get("x").to(Device::CUDA), t, ctx, y).to(Device::CPU);
}

std::vector<Format> formats() {
  std::vector<Format> f{Format::BF16};
  if (gpu::fp8_supported()) f.push_back(Format::FP8);
  return f;
}

TEST(DitLoad, FromTheStoreEqualsFromTheHostModel) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  const Model m;
  const Model fresh_model;  // its own map, never released
  const TensorStore& fresh = *fresh_model.store;
  for (const Format f : formats()) {
    SCOPED_TRACE(f == Format::FP8 ? "fp8" : "bf16");
    const auto host = gpu::DitRunner::create(WanDiT::load(*m.store, m.folder.dit), f);
    const auto loaded = gpu::DitRunner::load(*m.store, m.folder.dit, {}, f);
    expect_same_weights(*loaded, *host);
    EXPECT_EQ(loaded->text_dim(), host->text_dim());
    EXPECT_EQ(loaded->clip_dim(), host->clip_dim());
    EXPECT_EQ(loaded->image_tokens(), host->image_tokens());
    EXPECT_EQ(loaded->load_stats().lora_tensors, 0u);
    const Tensor ref = forward(*host, m);
    EXPECT_TENSOR_CLOSE_ABS(forward(*loaded, m), ref, 0.0);
    // Streamed blocks (stashed as they load): the same forward.
    const int64_t n = m.folder.dit.num_layers;
    const auto streamed = gpu::DitRunner::load(*m.store, m.folder.dit, {}, f, n / 2);
    EXPECT_EQ(streamed->resident_blocks(), n / 2);
    EXPECT_GT(streamed->streamed_host_bytes(), 0u);
    EXPECT_TENSOR_CLOSE_ABS(forward(*streamed, m), ref, 0.0);
  }
  // The store still reads after the loads released its pages.
  const std::string name = "blocks.0.self_attn.q.weight";
  EXPECT_TRUE(bytes_of(m.store->get(name)) == bytes_of(fresh.get(name)));
}

// A LoRA on every matrix (random values: the f32 products round differently on the two sides), a
// second file in another format on one of them, and diff / diff_b patches.
std::vector<LoraSpec> write_loras(const Model& m) {
  test::NamedTensors a, b;
  const int64_t layers = m.folder.dit.num_layers;
  uint32_t seed = 100;
  auto low_rank = [&](test::NamedTensors& file, const std::string& stem, const std::string& module, int64_t rank,
                      bool alpha) {
    const Shape ws = m.store->info(module + ".weight").shape;
    Shape down = ws;
    down[0] = rank;
    // Products of the weights' own size: a merge left out or applied twice moves them by far.
    file.emplace_back(stem + ".lora_down.weight", test::random_tensor(down, ++seed, 0.2f).to(DType::BF16));
    file.emplace_back(stem + ".lora_up.weight", test::random_tensor({ws[0], rank}, ++seed, 0.2f));
    if (alpha) file.emplace_back(stem + ".alpha", Tensor::from_vector(std::vector<float>{static_cast<float>(rank) / 2}, {}));
  };
  for (int64_t i = 0; i < layers; ++i)
    for (const char* n : {"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                          "cross_attn.v", "cross_attn.o", "cross_attn.k_img", "cross_attn.v_img", "ffn.0", "ffn.2"}) {
      const std::string module = "blocks." + std::to_string(i) + "." + n;
      if (m.store->contains(module + ".weight")) low_rank(a, "diffusion_model." + module, module, 8, true);
    }
  for (const char* n : {"patch_embedding", "text_embedding.0", "time_embedding.2", "head.head", "img_emb.proj.1"})
    if (m.store->contains(std::string(n) + ".weight")) low_rank(a, std::string("diffusion_model.") + n, n, 4, true);
  // diff patches: bare parameters by their name, a module's weight by the module's.
  for (const auto& [stem, target] : {std::pair{"blocks.0.modulation", "blocks.0.modulation"},
                                     std::pair{"blocks.1.norm3", "blocks.1.norm3.weight"},
                                     std::pair{"head.modulation", "head.modulation"}})
    a.emplace_back(std::string("diffusion_model.") + stem + ".diff",
                   test::random_tensor(m.store->info(target).shape, ++seed, 0.05f));
  a.emplace_back("diffusion_model.blocks.0.ffn.2.diff_b", test::random_tensor(m.store->info("blocks.0.ffn.2.bias").shape, ++seed, 0.05f));
  low_rank(b, "blocks.0.self_attn.q", "blocks.0.self_attn.q", 4, false);  // bare release names, no alpha
  const std::string dir = test::temp_dir();
  save_safetensors(dir + "/a.safetensors", a);
  save_safetensors(dir + "/b.safetensors", b);
  return {{dir + "/a.safetensors", 0.8}, {dir + "/b.safetensors", -1.5}};
}

// Elements of two same-shaped bf16 / f32 weights that differ, and those that differ by more than
// one bf16 rounding step of the larger value (f32 weights: 1e-5 relative), or than the f32 sums'
// own error where the merge cancels the weight out (1e-6 of the tensor's largest value).
struct Diff {
  int64_t n = 0, differ = 0, beyond = 0;
};
Diff compare_weights(const Tensor& got, const Tensor& want) {
  const Tensor g = got.to(Device::CPU).to(DType::F32), w = want.to(Device::CPU).to(DType::F32);
  const bool bf16 = want.dtype() == DType::BF16;
  float max_abs = 0;
  for (int64_t i = 0; i < w.numel(); ++i) max_abs = std::max(max_abs, std::fabs(w.data<float>()[i]));
  Diff d;
  d.n = g.numel();
  for (int64_t i = 0; i < d.n; ++i) {
    const float a = g.data<float>()[i], b = w.data<float>()[i];
    if (a == b) continue;
    ++d.differ;
    const float big = std::max(std::fabs(a), std::fabs(b));
    int e = 0;
    std::frexp(big, &e);                                            // big = f * 2^e, f in [0.5, 1)
    const float step = bf16 ? std::ldexp(1.0f, e - 8) : 1e-5f * big;  // bf16 keeps 8 significant bits
    if (std::fabs(a - b) > std::max(step * 1.0001f, 1e-6f * max_abs)) ++d.beyond;
  }
  return d;
}

TEST(DitLoad, LoraMergedOnTheGpuEqualsTheCpuMerge) {
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  const Model m;
  const std::vector<LoraSpec> loras = write_loras(m);
  WanDiT cpu = WanDiT::load(*m.store, m.folder.dit);
  const size_t patched = apply_loras(cpu, loras);
  const auto want = gpu::DitRunner::create(cpu, Format::BF16);
  const auto got = gpu::DitRunner::load(*m.store, m.folder.dit, loras, Format::BF16);
  const auto plain = gpu::DitRunner::load(*m.store, m.folder.dit, {}, Format::BF16);
  EXPECT_EQ(got->load_stats().lora_tensors, patched);
  EXPECT_GT(got->load_stats().lora_seconds, 0.0);

  const auto tg = all_tensors(got->weights()), tw = all_tensors(want->weights()), tp = all_tensors(plain->weights());
  Diff total, unmerged;  // total: the bf16 weights
  for (size_t i = 0; i < tg.size(); ++i) {
    if (!tw[i].second->defined()) continue;
    const Diff d = compare_weights(*tg[i].second, *tw[i].second);
    EXPECT_EQ(d.beyond, 0) << tg[i].first << ": " << d.beyond << " of " << d.n
                           << " values differ by more than one bf16 step (f32: 1e-5) from the CPU merge";
    if (tw[i].second->dtype() == DType::BF16) {
      total.n += d.n;
      total.differ += d.differ;
    }
    const Diff u = compare_weights(*tp[i].second, *tw[i].second);
    unmerged.n += u.n;
    unmerged.differ += u.differ;
    unmerged.beyond += u.beyond;
  }
  std::printf("[measured] GPU vs CPU LoRA merge: %lld of %lld bf16 weights differ (all within one step); unmerged: "
              "%lld differ, %lld beyond one step\n",
              static_cast<long long>(total.differ), static_cast<long long>(total.n),
              static_cast<long long>(unmerged.differ), static_cast<long long>(unmerged.beyond));
  EXPECT_LT(total.differ, total.n / 50);  // most products round alike
  // The check is not blind: the unmerged model is far outside it.
  EXPECT_GT(unmerged.beyond, unmerged.n / 4);

  // The forwards: the merged runners agree far more closely than the merge moves the output, in
  // bf16 and fp8.
  for (const Format f : formats()) {
    SCOPED_TRACE(f == Format::FP8 ? "fp8" : "bf16");
    const auto w = f == Format::BF16 ? nullptr : gpu::DitRunner::create(cpu, f);
    const auto g = f == Format::BF16 ? nullptr : gpu::DitRunner::load(*m.store, m.folder.dit, loras, f);
    const auto p = f == Format::BF16 ? nullptr : gpu::DitRunner::load(*m.store, m.folder.dit, {}, f);
    const Tensor ref = forward(w ? *w : *want, m);
    const test::Closeness merged = test::compare(forward(g ? *g : *got, m), ref, 0.0);
    const test::Closeness none = test::compare(forward(p ? *p : *plain, m), ref, 0.0);
    std::printf("[measured] forward, %s weights: GPU-merged vs CPU-merged max abs %.3g; unmerged vs CPU-merged %.3g "
                "(max|ref| %.3g)\n", f == Format::FP8 ? "fp8" : "bf16", merged.max_abs_err, none.max_abs_err,
                merged.max_abs_ref);
    EXPECT_GT(none.max_abs_err, 0.02 * (1 + none.max_abs_ref)) << "the LoRA hardly moves the output: the check is blind";
    EXPECT_LT(merged.max_abs_err, 0.05 * none.max_abs_err);
  }
}

TEST(DitLoad, LoraErrorsAreTheCpuMergesErrors) {
  const Model m;
  const std::string q = "blocks.0.self_attn.q";
  const Shape qs = m.store->info(q + ".weight").shape;
  const std::string dir = test::temp_dir();
  auto both = [&](const test::NamedTensors& t, const std::string& name, const std::vector<std::string>& parts) {
    save_safetensors(dir + "/" + name, t);
    const std::vector<LoraSpec> specs{{dir + "/" + name, 1.0}};
    WanDiT cpu = WanDiT::load(*m.store, m.folder.dit);
    const std::string want = test::error_message([&] { apply_loras(cpu, specs); });
    const std::string got = test::error_message([&] { (void)gpu::DitRunner::load(*m.store, m.folder.dit, specs); });
    EXPECT_EQ(got, want);
    test::expect_error([&] { (void)gpu::DitRunner::load(*m.store, m.folder.dit, specs); }, parts);
  };
  {  // another model's width
    test::NamedTensors t;
    t.emplace_back("diffusion_model." + q + ".lora_down.weight", test::dyadic_tensor({4, qs[1] * 2}, 1));
    t.emplace_back("diffusion_model." + q + ".lora_up.weight", test::dyadic_tensor({qs[0] * 2, 4}, 2));
    both(t, "shape.safetensors", {"does not fit this model", "'" + q + ".weight'", shape_str(qs)});
  }
  {  // keys that match nothing
    test::NamedTensors t;
    t.emplace_back("diffusion_model.blocks.0.self_attn.qq.lora_down.weight", test::dyadic_tensor({4, qs[1]}, 1));
    t.emplace_back("text_encoder.layer.0.weight", test::dyadic_tensor({2, 2}, 2));
    both(t, "keys.safetensors", {"match no weight of this model", "text_encoder.layer.0.weight"});
  }
}

}  // namespace
}  // namespace ib
