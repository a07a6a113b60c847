// LoRA merging (models/lora.h) on the fixture DiT: for every key format the merged weights equal
// W + scale·(alpha/rank)·up @ down computed by the test's own loops, bit for bit (dyadic values make
// the product exact in any summation order) and to f32 rounding for random values; diff/diff_b
// patches; several files on one weight; untouched weights stay the memory map; every bad file
// (truncated, wrong shapes, unknown keys, a bad scale, half a pair...) is refused with an error
// naming the problem, before anything is merged. All sizes come from the fixture's checkpoint.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "common/lora_files.h"
#include "io/model_config.h"
#include "models/dit.h"
#include "models/lora.h"
#include "synth/synth_model.h"

namespace ib {
namespace {

using test::LoraFormat;
using test::NamedTensors;

struct Model {
  ModelFolder folder = ModelFolder::open(test::model_dir());
  std::shared_ptr<TensorStore> store = open_tensor_store(folder.dit_path);
  WanDiT load() const { return WanDiT::load(*store, folder.dit); }
};

// The held tensors of a loaded DiT by checkpoint name.
std::map<std::string, Tensor*> by_name(WanDiT& dit, std::vector<WanDiT::NamedWeight>& keep) {
  keep = dit.named_weights();
  std::map<std::string, Tensor*> m;
  for (auto& w : keep) m[w.name] = w.tensor;
  return m;
}

// Bit-for-bit comparison of the held tensor (any view shape) with a reference of the same values.
void expect_same_bits(const Tensor& got, const Tensor& want, const std::string& what) {
  ASSERT_EQ(got.dtype(), DType::F32) << what;
  ASSERT_EQ(got.numel(), want.numel()) << what;
  const float* g = got.data<float>();
  const float* w = want.data<float>();
  int64_t diff = 0;
  for (int64_t i = 0; i < got.numel(); ++i) diff += g[i] != w[i];
  EXPECT_EQ(diff, 0) << what << ": " << diff << " of " << got.numel() << " values differ";
}

std::string write_lora(const NamedTensors& t, const std::string& name = "lora.safetensors") {
  const std::string path = test::temp_dir() + "/" + name;
  save_safetensors(path, t);
  return path;
}

// Every matrix the fixture's checkpoint holds: the blocks' 12 linear layers (k_img/v_img when
// present), the embeddings, the head, the image projector and the patch-embedding conv.
std::vector<std::string> linear_modules(const TensorStore& s, int64_t layers) {
  std::vector<std::string> m;
  for (int64_t i = 0; i < layers; ++i)
    for (const char* n : {"self_attn.q", "self_attn.k", "self_attn.v", "self_attn.o", "cross_attn.q", "cross_attn.k",
                          "cross_attn.v", "cross_attn.o", "cross_attn.k_img", "cross_attn.v_img", "ffn.0", "ffn.2"}) {
      const std::string name = fmt::format("blocks.{}.{}", i, n);
      if (s.contains(name + ".weight")) m.push_back(name);
    }
  for (const char* n : {"text_embedding.0", "text_embedding.2", "time_embedding.0", "time_embedding.2",
                        "time_projection.1", "head.head", "img_emb.proj.1", "img_emb.proj.3", "patch_embedding"})
    if (s.contains(std::string(n) + ".weight")) m.push_back(n);
  return m;
}

#ifndef IB_LORA_GPU_TESTS  // the CPU cases (test_models_lora); the GPU case is below
TEST(Lora, MergedWeightsEqualTheFormulaForEveryFormat) {
  const Model model;
  const std::vector<std::string> modules = linear_modules(*model.store, model.folder.dit.num_layers);
  ASSERT_GE(modules.size(), 12u * static_cast<size_t>(model.folder.dit.num_layers));
  for (LoraFormat f : {LoraFormat::Kohya, LoraFormat::KohyaModel, LoraFormat::KohyaUnet, LoraFormat::Peft,
                       LoraFormat::PeftBare, LoraFormat::Diffusers}) {
    SCOPED_TRACE(test::format_name(f));
    NamedTensors file;
    std::vector<test::LowRankPair> pairs;
    uint32_t seed = 1;
    for (const std::string& m : modules) {
      const int64_t rank = 1 + static_cast<int64_t>(seed % 8);  // ranks 1..8 across the layers
      pairs.push_back(test::add_low_rank(file, *model.store, f, m, rank, seed % 3 == 0 ? 0.0f : 2.0f * static_cast<float>(rank), seed));
      ++seed;
    }
    const double scale = 0.75;
    WanDiT dit = model.load();
    EXPECT_EQ(apply_loras(dit, {{write_lora(file), scale}}), modules.size());
    std::vector<WanDiT::NamedWeight> keep;
    const auto held = by_name(dit, keep);
    for (const test::LowRankPair& p : pairs) {
      const std::string name = p.module + ".weight";
      const int64_t rank = p.down.size(0);
      // alpha defaults to the rank: alpha/rank = 1.
      const float factor = static_cast<float>(scale * (p.alpha > 0 ? p.alpha / static_cast<double>(rank) : 1.0));
      expect_same_bits(*held.at(name), test::reference_low_rank(model.store->get(name), p.up, p.down, factor), name);
    }
    // What no key names is untouched: still the checkpoint's bytes in place.
    for (const char* untouched : {"blocks.0.self_attn.q.bias", "blocks.0.modulation", "head.head.bias"})
      EXPECT_EQ(held.at(untouched)->raw(), model.store->get(untouched).raw()) << untouched;
  }
}

TEST(Lora, RandomValuesMatchToFloatRounding) {
  const Model model;
  NamedTensors file;
  const std::string m = "blocks.1.ffn.0";
  const Shape ws = model.store->info(m + ".weight").shape;
  const int64_t rank = 16;
  const Tensor down = test::random_tensor({rank, ws[1]}, 11, 0.3f), up = test::random_tensor({ws[0], rank}, 12, 0.3f);
  file.emplace_back("diffusion_model." + m + ".lora_down.weight", down.to(DType::BF16));
  file.emplace_back("diffusion_model." + m + ".lora_up.weight", up.to(DType::BF16));
  file.emplace_back("diffusion_model." + m + ".alpha", Tensor::from_vector(std::vector<float>{8.0f}, {}));
  WanDiT dit = model.load();
  apply_loras(dit, {{write_lora(file), 1.3}});
  std::vector<WanDiT::NamedWeight> keep;
  const Tensor ref = test::reference_low_rank(model.store->get(m + ".weight"), up.to(DType::BF16), down.to(DType::BF16),
                                              static_cast<float>(1.3 * 8.0 / 16.0));
  EXPECT_TENSOR_CLOSE(by_name(dit, keep).at(m + ".weight")->view(ref.shape()), ref, 1e-6);
}

TEST(Lora, DiffPatchesAndDiffusersNames) {
  const Model model;
  const int64_t dim = model.folder.dit.dim;
  NamedTensors file;
  std::map<std::string, Tensor> patch;  // target -> values
  auto add = [&](const std::string& key, const std::string& target, uint32_t seed) {
    const Tensor t = test::dyadic_tensor(model.store->info(target).shape, seed);
    file.emplace_back(key, t);
    patch[target] = t;
  };
  add("diffusion_model.blocks.0.modulation.diff", "blocks.0.modulation", 1);
  add("diffusion_model.head.modulation.diff", "head.modulation", 2);
  add("diffusion_model.img_emb.emb_pos.diff", "img_emb.emb_pos", 3);
  add("diffusion_model.blocks.1.norm3.diff", "blocks.1.norm3.weight", 4);
  add("diffusion_model.blocks.0.self_attn.q.diff_b", "blocks.0.self_attn.q.bias", 5);
  add("diffusion_model.head.head.diff_b", "head.head.bias", 6);
  add("diffusion_model.blocks.1.cross_attn.o.diff", "blocks.1.cross_attn.o.weight", 7);
  // diffusers' names: norm2 is the release's norm3; scale_shift_table the modulation; lora_B.bias a
  // bias patch (diffusers' form of diff_b).
  add("transformer.blocks.0.norm2.diff", "blocks.0.norm3.weight", 8);
  add("transformer.blocks.1.scale_shift_table.diff", "blocks.1.modulation", 9);
  add("transformer.blocks.1.attn2.add_v_proj.lora_B.bias", "blocks.1.cross_attn.v_img.bias", 10);
  add("lora_unet_blocks_1_ffn_2.diff_b", "blocks.1.ffn.2.bias", 11);
  ASSERT_EQ(model.store->info("blocks.0.modulation").shape, (Shape{1, 6, dim}));
  WanDiT dit = model.load();
  EXPECT_EQ(apply_loras(dit, {{write_lora(file), -0.5}}), patch.size());
  std::vector<WanDiT::NamedWeight> keep;
  const auto held = by_name(dit, keep);
  for (const auto& [target, values] : patch)
    expect_same_bits(*held.at(target), test::reference_patch(model.store->get(target), values, -0.5f), target);
}

TEST(Lora, SeveralFilesOnOneWeightApplyInOrder) {
  const Model model;
  const std::string m = "blocks.0.cross_attn.k";
  NamedTensors a, b;
  const test::LowRankPair pa = test::add_low_rank(a, *model.store, LoraFormat::Kohya, m, 4, 8.0f, 21);
  const test::LowRankPair pb = test::add_low_rank(b, *model.store, LoraFormat::Diffusers, m, 2, 0.0f, 22);
  const Tensor diff = test::dyadic_tensor(model.store->info(m + ".weight").shape, 23);
  b.emplace_back("diffusion_model." + m + ".diff", diff);
  WanDiT dit = model.load();
  EXPECT_EQ(apply_loras(dit, {{write_lora(a, "a.safetensors"), 0.5}, {write_lora(b, "b.safetensors"), 2.0}}), 1u);
  Tensor want = test::reference_low_rank(model.store->get(m + ".weight"), pa.up, pa.down, 0.5f * 8.0f / 4.0f);
  want = test::reference_low_rank(want, pb.up, pb.down, 2.0f);
  want = test::reference_patch(want, diff, 2.0f);
  std::vector<WanDiT::NamedWeight> keep;
  expect_same_bits(*by_name(dit, keep).at(m + ".weight"), want, m);
}

// Weights wider than one block of rows of the merge's product, stored in bf16 (widened exactly to
// f32 before the sum): a one-block synthetic DiT in memory.
TEST(Lora, WideBf16WeightsMergeBlockByBlock) {
  DitConfig cfg;
  cfg.dim = 512;
  cfg.ffn_dim = 8192;  // ffn.0 [8192, 512] and ffn.2 [512, 8192]: 4M values, more than one block
  cfg.num_heads = 4;
  cfg.num_layers = 1;
  cfg.text_len = 16;
  MemoryTensorStore store(make_weights(dit_weight_shapes(cfg, 64, 64, 8), DType::BF16, 3));
  ASSERT_EQ(store.info("blocks.0.ffn.0.weight").shape, (Shape{8192, 512}));
  NamedTensors file;
  std::vector<test::LowRankPair> pairs;
  for (const char* m : {"blocks.0.ffn.0", "blocks.0.ffn.2", "blocks.0.self_attn.q"})
    pairs.push_back(test::add_low_rank(file, store, LoraFormat::Kohya, m, 8, 4.0f, 5));
  WanDiT dit = WanDiT::load(store, cfg);
  apply_loras(dit, {{write_lora(file), 3.0}});
  std::vector<WanDiT::NamedWeight> keep;
  const auto held = by_name(dit, keep);
  for (const test::LowRankPair& p : pairs) {
    const std::string name = p.module + ".weight";
    expect_same_bits(*held.at(name), test::reference_low_rank(store.get(name), p.up, p.down, 3.0f * 4.0f / 8.0f), name);
  }
  EXPECT_EQ(held.at("blocks.0.ffn.2.bias")->dtype(), DType::BF16);  // untouched
}

TEST(Lora, ParseSpec) {
  EXPECT_EQ(parse_lora_spec("a.safetensors"), (LoraSpec{"a.safetensors", 1.0}));
  EXPECT_EQ(parse_lora_spec("/x/a.safetensors:0.8"), (LoraSpec{"/x/a.safetensors", 0.8}));
  EXPECT_EQ(parse_lora_spec("dir/a:b.safetensors:-1.5"), (LoraSpec{"dir/a:b.safetensors", -1.5}));
  test::expect_error([] { parse_lora_spec("a.safetensors:abc"); }, {"'a.safetensors:abc'", "scale 'abc' is not a number"});
  test::expect_error([] { parse_lora_spec("a.safetensors:"); }, {"scale '' is not a number"});
  test::expect_error([] { parse_lora_spec("a.safetensors:inf"); }, {"scale 'inf' is not a number"});
  test::expect_error([] { parse_lora_spec("a.safetensors:0.5x"); }, {"scale '0.5x'"});
  test::expect_error([] { parse_lora_spec(":1"); }, {"no file before the scale"});
  test::expect_error([] { parse_lora_spec(""); }, {"empty"});
}

// Errors: each names the file and the problem; a failing file leaves the DiT as it was.
TEST(Lora, BadFilesAreRefusedWithTheProblem) {
  const Model model;
  const ModelFolder& mf = model.folder;
  const std::string q = "blocks.0.self_attn.q";
  const Shape qs = model.store->info(q + ".weight").shape;
  auto good = [&] {
    NamedTensors t;
    test::add_low_rank(t, *model.store, LoraFormat::Kohya, q, 4, 4.0f, 1);
    return t;
  };
  auto apply = [&](const NamedTensors& t, const std::string& name = "bad.safetensors", double scale = 1.0) {
    WanDiT dit = model.load();
    const std::string path = write_lora(t, name);
    apply_loras(dit, {{path, scale}});
  };
  const std::string model_shape = shape_str(qs);

  // Wrong shapes: another model's width (names the tensor and both shapes).
  {
    NamedTensors t;
    const Shape other{qs[0] * 2, qs[1] * 2};
    t.emplace_back("diffusion_model." + q + ".lora_down.weight", test::dyadic_tensor({4, other[1]}, 1));
    t.emplace_back("diffusion_model." + q + ".lora_up.weight", test::dyadic_tensor({other[0], 4}, 2));
    test::expect_error([&] { apply(t); },
                       {"does not fit this model", "'" + q + ".weight'", model_shape,
                        fmt::format("lora_up [{}, 4] @ lora_down [4, {}]", other[0], other[1])});
  }
  // Mismatched ranks between up and down.
  {
    NamedTensors t;
    t.emplace_back("diffusion_model." + q + ".lora_down.weight", test::dyadic_tensor({4, qs[1]}, 1));
    t.emplace_back("diffusion_model." + q + ".lora_up.weight", test::dyadic_tensor({qs[0], 3}, 2));
    test::expect_error([&] { apply(t); }, {"does not fit", model_shape, "[4, " + std::to_string(qs[1]) + "]"});
  }
  // A diff of the wrong shape.
  {
    NamedTensors t;
    t.emplace_back("diffusion_model.blocks.0.modulation.diff", test::dyadic_tensor({6, mf.dit.dim}, 1));
    test::expect_error([&] { apply(t); }, {"'blocks.0.modulation'", fmt::format("[1, 6, {}]", mf.dit.dim),
                                           fmt::format("[6, {}]", mf.dit.dim)});
  }
  // Unknown keys are all listed: a module this model lacks, a block past its last, a key of no
  // known form; the good keys beside them do not hide them.
  {
    NamedTensors t = good();
    const std::string past = fmt::format("diffusion_model.blocks.{}.self_attn.q.lora_down.weight", mf.dit.num_layers);
    t.emplace_back(past, test::dyadic_tensor({4, qs[1]}, 3));
    t.emplace_back("diffusion_model.blocks.0.self_attn.qq.lora_up.weight", test::dyadic_tensor({qs[0], 4}, 4));
    t.emplace_back("text_encoder.layer.0.weight", test::dyadic_tensor({2, 2}, 5));
    t.emplace_back("diffusion_model." + q + ".dora_scale", test::dyadic_tensor({qs[0], 1}, 6));
    test::expect_error([&] { apply(t); },
                       {"bad.safetensors", "4 of its 7 keys match no weight of this model", past,
                        "diffusion_model.blocks.0.self_attn.qq.lora_up.weight", "text_encoder.layer.0.weight",
                        "diffusion_model." + q + ".dora_scale"});
  }
  // Half a pair; an alpha alone; an alpha that is not a scalar; an integer tensor.
  {
    NamedTensors t;
    t.emplace_back("diffusion_model." + q + ".lora_down.weight", test::dyadic_tensor({4, qs[1]}, 1));
    test::expect_error([&] { apply(t); }, {"'diffusion_model." + q + "' has a lora_down (lora_A) but no lora_up"});
    NamedTensors u;
    u.emplace_back("diffusion_model." + q + ".alpha", Tensor::from_vector(std::vector<float>{4.0f}, {}));
    test::expect_error([&] { apply(u); }, {"has an alpha but no lora_down/lora_up pair"});
    NamedTensors v = good();
    v.pop_back();  // the scalar alpha
    v.emplace_back("diffusion_model." + q + ".alpha", Tensor::from_vector(std::vector<float>{4.0f, 4.0f}, {2}));
    test::expect_error([&] { apply(v); }, {"alpha 'diffusion_model." + q + ".alpha' has shape [2], expected a scalar"});
    NamedTensors w = good();
    w[0].second = Tensor::from_vector(std::vector<int32_t>(static_cast<size_t>(4 * qs[1]), 1), {4, qs[1]});
    test::expect_error([&] { apply(w); }, {"lora_down.weight' is i32, not a float type"});
  }
  // Truncated: the header promises more bytes than the file holds.
  {
    const std::string path = write_lora(good(), "truncated.safetensors");
    const auto size = std::filesystem::file_size(path);
    std::filesystem::resize_file(path, size - 100);
    WanDiT dit = model.load();
    test::expect_error([&] { apply_loras(dit, {{path, 1.0}}); }, {"LoRA '" + path + "' cannot be read"});
    std::filesystem::resize_file(path, 5);
    test::expect_error([&] { apply_loras(dit, {{path, 1.0}}); }, {"LoRA '" + path + "' cannot be read"});
  }
  // Not there; not safetensors; no tensors; a non-finite scale.
  {
    WanDiT dit = model.load();
    test::expect_error([&] { apply_loras(dit, {{"/nonexistent/x.safetensors", 1.0}}); },
                       {"LoRA file not found: '/nonexistent/x.safetensors'"});
    const std::string pth = test::temp_dir() + "/x.pth";
    std::ofstream(pth) << "x";
    test::expect_error([&] { apply_loras(dit, {{pth, 1.0}}); }, {"not a .safetensors file"});
    test::expect_error([&] { apply(NamedTensors{}); }, {"holds no tensors"});
    test::expect_error([&] { apply(good(), "nan.safetensors", std::nan("")); }, {"is not a finite number"});
  }
  // Nothing is merged when a later file fails: the good file's weight is still the checkpoint's.
  {
    WanDiT dit = model.load();
    const std::string ok = write_lora(good(), "ok.safetensors");
    NamedTensors t;
    t.emplace_back("diffusion_model.nothing.lora_down.weight", test::dyadic_tensor({2, 2}, 1));
    const std::string bad = write_lora(t, "bad2.safetensors");
    EXPECT_THROW(apply_loras(dit, {{ok, 1.0}, {bad, 1.0}}), Error);
    std::vector<WanDiT::NamedWeight> keep;
    EXPECT_EQ(by_name(dit, keep).at(q + ".weight")->raw(), model.store->get(q + ".weight").raw());
  }
  // check_loras (what Pipeline::validate runs) finds the same problems from the headers alone.
  {
    NamedTensors t = good();
    t.emplace_back("diffusion_model.blocks.0.ffn.1.lora_down.weight", test::dyadic_tensor({4, 4}, 1));
    const std::string path = write_lora(t, "check.safetensors");
    test::expect_error([&] { check_loras(*model.store, {{path, 1.0}}); },
                       {"match no weight", "diffusion_model.blocks.0.ffn.1.lora_down.weight"});
    EXPECT_NO_THROW(check_loras(*model.store, {{write_lora(good(), "fine.safetensors"), 1.0}}));
  }
}

#else  // test_models_lora_gpu (label gpu): the case that needs a GPU
TEST(Lora, MergesBeforeTheDeviceMove) {
  const Model model;
  ASSERT_TRUE(cuda_available()) << "a gpu-labelled test on a machine without a CUDA device";
  NamedTensors t;
  test::add_low_rank(t, *model.store, LoraFormat::Kohya, "blocks.0.self_attn.q", 4, 4.0f, 1);
  WanDiT dit = model.load();
  dit.to(Device::CUDA);
  test::expect_error([&] { apply_loras(dit, {{write_lora(t), 1.0}}); }, {"merged on the CPU"});
}
#endif

}  // namespace
}  // namespace ib
