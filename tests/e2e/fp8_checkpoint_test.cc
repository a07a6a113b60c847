// fp8 checkpoints (io/scaled_fp8_store.h): a safetensors file with float8 weights and their
// scales reads as its dequantisation (values worked out from the codes in the test), bad scales are
// refused by name, and a generation on the fixture model with its DiT stored in fp8 (per-tensor
// `scale_weight` for most layers, per-channel `weight_scale` for the FFN) equals, bit for bit, one on
// a folder holding the dequantised f32 weights written by the test.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "e2e/e2e_settings.h"
#include "core/dtype.h"
#include "inbetween/pipeline.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "io/scaled_fp8_store.h"
#include "ops/quantize.h"

namespace ib {
namespace {

Tensor codes(const std::vector<uint8_t>& c, const Shape& shape) {
  Tensor t = Tensor::empty(shape, DType::F8E4M3);
  std::memcpy(t.raw(), c.data(), c.size());
  return t;
}

TEST(Fp8Checkpoint, ReadsAsItsDequantisation) {
  // e4m3 codes: 0x38 = 1.0, 0x40 = 2.0, 0xB8 = -1.0, 0x30 = 0.5, 0x44 = 3.0, 0x01 = 2^-9.
  const std::vector<uint8_t> c = {0x38, 0x40, 0xB8, 0x30, 0x44, 0x01};
  const std::string path = test::temp_dir() + "/fp8_small.safetensors";
  save_safetensors(path, {{"a.weight", codes(c, {2, 3})},
                          {"a.scale_weight", Tensor::from_vector(std::vector<float>{0.25f}, {})},
                          {"a.scale_input", Tensor::from_vector(std::vector<float>{3.0f}, {})},
                          {"b.weight", codes(c, {3, 2})},
                          {"b.weight_scale", Tensor::from_vector(std::vector<float>{1.0f, 10.0f, -2.0f}, {3, 1})},
                          {"c.weight", codes(c, {6})},
                          {"c.bias", Tensor::from_vector(std::vector<float>{7.0f}, {1})},
                          {"scaled_fp8", Tensor::empty({0}, DType::F8E4M3)}});
  const auto store = open_tensor_store(path);
  ASSERT_NE(dynamic_cast<const ScaledFp8Store*>(store.get()), nullptr);
  EXPECT_EQ(store->names(), (std::vector<std::string>{"a.weight", "b.weight", "c.bias", "c.weight"}));
  EXPECT_FALSE(store->contains("a.scale_weight"));
  EXPECT_EQ(store->info("a.weight").dtype, DType::F32);
  const float v[6] = {1.0f, 2.0f, -1.0f, 0.5f, 3.0f, 1.0f / 512.0f};
  const float row_scale[3] = {1.0f, 10.0f, -2.0f};
  const Tensor a = store->get("a.weight"), b = store->get("b.weight"), cw = store->get("c.weight");
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(a.data<float>()[i], v[i] * 0.25f) << i;
    EXPECT_EQ(b.data<float>()[i], v[i] * row_scale[i / 2]) << i;
    EXPECT_EQ(cw.data<float>()[i], v[i]) << i;  // no scale: the codes' values
  }
  EXPECT_EQ(store->get("c.bias").data<float>()[0], 7.0f);
  // A file without float8 tensors is opened as it is.
  const std::string plain = test::temp_dir() + "/plain.safetensors";
  save_safetensors(plain, {{"x.weight", Tensor::zeros({2, 2})}});
  EXPECT_EQ(dynamic_cast<const ScaledFp8Store*>(open_tensor_store(plain).get()), nullptr);
}

TEST(Fp8Checkpoint, BadScalesAreNamed) {
  const std::vector<uint8_t> c(8, 0x38);
  const std::string wrong = test::temp_dir() + "/fp8_wrong_scale.safetensors";
  save_safetensors(wrong, {{"blocks.0.ffn.0.weight", codes(c, {4, 2})},
                           {"blocks.0.ffn.0.scale_weight", Tensor::from_vector(std::vector<float>{1, 2}, {2})}});
  test::expect_error([&] { open_tensor_store(wrong); },
                     {"blocks.0.ffn.0.scale_weight", "[2]", "one value or one per output channel"});
  const std::string orphan = test::temp_dir() + "/fp8_orphan_scale.safetensors";
  save_safetensors(orphan, {{"a.weight", codes(c, {2, 4})},
                            {"b.weight", Tensor::zeros({2, 2})},
                            {"b.scale_weight", Tensor::from_vector(std::vector<float>{2.0f}, {})}});
  test::expect_error([&] { open_tensor_store(orphan); }, {"'b.scale_weight' is the scale of no float8 weight", "f32"});
}

// The fixture's DiT in fp8: every 2-D block weight quantised (the FFN's first layer per output
// channel, the rest per tensor), written as float8 codes with their scales; `reference` receives
// the dequantised values.
std::string fp8_folder(const TensorStore& dit, std::map<std::string, Tensor>& reference, const std::string& name) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& n : dit.names()) {
    const Tensor t = dit.get(n);
    const bool linear = n.starts_with("blocks.") && n.ends_with(".weight") && t.dim() == 2;
    if (!linear) {
      tensors.emplace_back(n, t);
      continue;
    }
    const std::string stem = n.substr(0, n.size() - 7);
    if (n.find(".ffn.0.") != std::string::npos) {
      const ops::QuantizedRows q = ops::quantize_rows_e4m3(t);
      tensors.emplace_back(n, q.q);
      tensors.emplace_back(stem + ".weight_scale", q.scale.view({t.size(0), 1}));
      reference[n] = ops::dequantize_rows(q);
    } else {
      const ops::QuantizedTensor q = ops::quantize_tensor_e4m3(t);
      tensors.emplace_back(n, q.q);
      tensors.emplace_back(stem + ".scale_weight", Tensor::from_vector(std::vector<float>{q.scale}, {}));
      reference[n] = ops::dequantize_tensor(q);
    }
  }
  tensors.emplace_back("scaled_fp8", Tensor::empty({0}, DType::F8E4M3));
  return test::model_with_dit(name, tensors);
}

std::string f32_folder(const TensorStore& dit, const std::map<std::string, Tensor>& replaced, const std::string& name) {
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (const std::string& n : dit.names()) tensors.emplace_back(n, replaced.count(n) ? replaced.at(n) : dit.get(n));
  return test::model_with_dit(name, tensors);
}

TEST(Fp8Checkpoint, GenerationEqualsTheDequantisedFolder) {
  const ModelFolder folder = ModelFolder::open(test::model_dir());
  const auto dit = open_tensor_store(folder.dit_path);
  std::map<std::string, Tensor> dequantised;
  const std::string fp8 = fp8_folder(*dit, dequantised, "fp8_model");
  ASSERT_GE(dequantised.size(), 4u * static_cast<size_t>(folder.dit.num_layers));
  const std::string ref = f32_folder(*dit, dequantised, "dequantised_model");
  const auto fp8_store = open_tensor_store(ModelFolder::open(fp8).dit_path);
  EXPECT_EQ(dynamic_cast<const ScaledFp8Store*>(fp8_store.get())->fp8_weights(), dequantised.size());

  const GenerateOptions o = test::fixture_options();
  Pipeline from_fp8(PipelineOptions{fp8, ComputeDevice::CPU, 0});
  from_fp8.check_files();  // the scales and the marker are not taken for unknown tensors
  const GeneratedVideo a = from_fp8.generate(o);
  const GeneratedVideo b = Pipeline(PipelineOptions{ref, ComputeDevice::CPU, 0}).generate(o);
  const GeneratedVideo original = Pipeline(PipelineOptions{test::model_dir(), ComputeDevice::CPU, 0}).generate(o);
  ASSERT_EQ(a.data.size(), b.data.size());
  int64_t differ = 0, differ_original = 0;
  for (size_t i = 0; i < a.data.size(); ++i) {
    differ += a.data[i] != b.data[i];
    differ_original += a.data[i] != original.data[i];
  }
  EXPECT_EQ(differ, 0) << "the fp8 checkpoint's video differs from the dequantised folder's";
  EXPECT_GT(differ_original, 0) << "quantising the weights changed nothing: the comparison above proves little";
  std::printf("[measured] fp8 checkpoint: %lld of %zu values differ from the unquantised model's video\n",
              static_cast<long long>(differ_original), a.data.size());
}

}  // namespace
}  // namespace ib
