// save_pth: round trips through ib::PthFile byte for byte, and an independent check of the archive
// with Python's zipfile (CRCs, names) and pickle (a restricted unpickler standing in for torch).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>

#include "common/fixture.h"
#include "io/pth.h"
#include "io/pth_writer.h"
#include "io/zip.h"
#include "pth_python.h"

namespace ib {
namespace {

namespace fs = std::filesystem;
using Named = std::vector<std::pair<std::string, Tensor>>;

Tensor random_tensor(const Shape& s, DType dt, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd;
  Tensor t = Tensor::empty(s, DType::F32);
  for (int64_t i = 0; i < t.numel(); ++i) t.data<float>()[i] = nd(rng);
  return t.to(dt);
}

Named sample_tensors() {
  return {
      {"blocks.0.self_attn.q.weight", random_tensor({3, 4}, DType::F32, 1)},
      {"half", random_tensor({5}, DType::F16, 2)},
      {"b16.four_dims", random_tensor({2, 3, 4, 5}, DType::BF16, 3)},
      {"scalar", random_tensor({}, DType::F32, 4)},
      {"empty", Tensor::empty({0}, DType::F32)},
      {"empty_middle", Tensor::empty({2, 0, 3}, DType::BF16)},
      {"long", random_tensor({70001}, DType::F32, 5)},  // numel past BININT2
      {"unicode ключ", random_tensor({1, 1}, DType::F16, 6)},
  };
}

void expect_round_trip(const std::string& path, const Named& tensors) {
  const auto pth = PthFile::open(path);
  std::vector<std::string> expected_names;
  for (const auto& [name, t] : tensors) expected_names.push_back(name);
  std::sort(expected_names.begin(), expected_names.end());
  EXPECT_EQ(pth->names(), expected_names);
  for (const auto& [name, t] : tensors) {
    SCOPED_TRACE(name);
    ASSERT_TRUE(pth->contains(name));
    EXPECT_EQ(pth->info(name).dtype, t.dtype());
    EXPECT_EQ(pth->info(name).shape, t.shape());
    const Tensor r = pth->get(name);
    ASSERT_EQ(r.dtype(), t.dtype());
    ASSERT_EQ(r.shape(), t.shape());
    ASSERT_EQ(r.nbytes(), t.nbytes());
    if (t.nbytes() > 0) {
      EXPECT_EQ(std::memcmp(r.raw(), t.raw(), t.nbytes()), 0);
    }
  }
}

// Python's reading of the archive (python3 is a test dependency: a failure, not a skip, without it).
void expect_python_reads(const std::string& path, const std::string& top, const Named& tensors) {
  const auto j = test::python_read_pth(path);
  ASSERT_FALSE(j.empty()) << path;
  EXPECT_EQ(j["top"], top);
  EXPECT_EQ(j["dict_type"], "OrderedDict");  // as torch's state_dict()
  EXPECT_EQ(j["version"], "3\n");
  EXPECT_EQ(j["byteorder"], "little");
  ASSERT_EQ(j["tensors"].size(), tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const auto& [name, t] = tensors[i];
    const auto& r = j["tensors"][i];
    SCOPED_TRACE(name);
    EXPECT_EQ(r["key"], name);
    const char* cls = t.dtype() == DType::F32 ? "torch.FloatStorage"
                      : t.dtype() == DType::F16 ? "torch.HalfStorage" : "torch.BFloat16Storage";
    EXPECT_EQ(r["storage"], nlohmann::json::array({"storage", cls, std::to_string(i), "cpu", t.numel()}));
    EXPECT_EQ(r["offset"], 0);
    EXPECT_EQ(r["size"], nlohmann::json(t.shape()));
    std::vector<int64_t> stride(t.shape().size());
    int64_t s = 1;
    for (size_t k = stride.size(); k-- > 0;) {
      stride[k] = s;
      s *= std::max<int64_t>(t.shape()[k], 1);
    }
    EXPECT_EQ(r["stride"], nlohmann::json(stride));
    EXPECT_EQ(r["requires_grad"], false);
    EXPECT_EQ(r["data"], test::hex(t));
  }
}

std::vector<unsigned char> read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

void expect_aligned_entries(const std::string& path, const std::string& top, size_t n_tensors) {
  const auto bytes = read_all(path);
  const auto entries = parse_zip_directory(bytes.data(), bytes.size(), path);
  std::vector<std::string> names;
  for (const auto& e : entries) {
    names.push_back(e.name);
    EXPECT_EQ(e.offset % 64, 0u) << e.name;
  }
  std::vector<std::string> expected = {top + "/data.pkl", top + "/byteorder"};
  for (size_t i = 0; i < n_tensors; ++i) expected.push_back(top + "/data/" + std::to_string(i));
  expected.push_back(top + "/version");
  EXPECT_EQ(names, expected);
}

TEST(PthWriter, RoundTripsEveryDtypeAndShape) {
  const std::string path = test::temp_dir() + "/model.pth";
  const Named tensors = sample_tensors();
  save_pth(path, tensors);
  expect_aligned_entries(path, "model", tensors.size());
  expect_round_trip(path, tensors);
  expect_python_reads(path, "model", tensors);
}

TEST(PthWriter, Zip64LayoutReadsBack) {
  const std::string path = test::temp_dir() + "/big.pth";
  const Named tensors = sample_tensors();
  detail::save_pth_forced_zip64(path, tensors);
  expect_aligned_entries(path, "big", tensors.size());
  expect_round_trip(path, tensors);
  expect_python_reads(path, "big", tensors);
}

TEST(PthWriter, ManyTensorsUseLongMemoAndSetitemsBatches) {
  // > 256 memo slots (LONG_BINPUT/LONG_BINGET) and > 1000 items (several SETITEMS batches).
  Named tensors;
  for (int i = 0; i < 1203; ++i)
    tensors.emplace_back("layer." + std::to_string(i), random_tensor({i % 3 + 1}, i % 2 ? DType::BF16 : DType::F32,
                                                                     static_cast<uint32_t>(i)));
  const std::string path = test::temp_dir() + "/many.pth";
  save_pth(path, tensors);
  expect_round_trip(path, tensors);
  expect_python_reads(path, "many", tensors);
}

TEST(PthWriter, SingleAndNoTensors) {
  const std::string dir = test::temp_dir();
  const Named one = {{"w", random_tensor({2, 2}, DType::F32, 9)}};  // SETITEM rather than SETITEMS
  save_pth(dir + "/one.pth", one);
  expect_round_trip(dir + "/one.pth", one);
  expect_python_reads(dir + "/one.pth", "one", one);
  save_pth(dir + "/none.pth", {});
  expect_round_trip(dir + "/none.pth", {});
  expect_python_reads(dir + "/none.pth", "none", {});
}

TEST(PthWriter, OddStemBecomesSafeFolderName) {
  const std::string path = test::temp_dir() + "/my model+v2.pth";
  const Named one = {{"w", random_tensor({3}, DType::F16, 10)}};
  save_pth(path, one);
  expect_aligned_entries(path, "my_model_v2", 1);
  expect_round_trip(path, one);
}

TEST(PthWriter, RejectsBadInputAndLeavesNothing) {
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/bad.pth";
  const Tensor ok = random_tensor({2}, DType::F32, 11);
  EXPECT_THROW(save_pth(path, {{"a", ok}, {"b", Tensor()}}), Error);
  EXPECT_THROW(save_pth(path, {{"a", Tensor::zeros({2}, DType::I64)}}), Error);
  EXPECT_THROW(save_pth(path, {{"a", ok}, {"a", ok}}), Error);
  EXPECT_THROW(save_pth(dir + "/missing/folder/x.pth", {{"a", ok}}), Error);
  EXPECT_TRUE(fs::is_empty(dir));
  try {
    save_pth(path, {{"a", Tensor::zeros({2}, DType::I64)}});
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("'a'"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace ib
