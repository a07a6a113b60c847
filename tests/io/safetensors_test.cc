// safetensors bad input: truncation, overlapping or out-of-range offsets, unknown dtypes, missing
// files and shards, and require() shape/dtype mismatches. Each must be a clear ib::Error.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <vector>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/safetensors.h"
#include "pth_builder.h"

namespace ib {
namespace {

using test::expect_error;

// A safetensors file with the given header JSON and `data_bytes` bytes of data.
std::string write_st(const std::string& header, size_t data_bytes, const std::string& name = "t.safetensors") {
  std::string b(8, '\0');
  for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  b += header;
  b.append(data_bytes, '\0');
  const std::string path = test::temp_dir() + "/" + name;
  test::write_file(path, b);
  return path;
}

TEST(SafetensorsBad, Truncated) {
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/ok.safetensors";
  save_safetensors(path, {{"w", Tensor::full({4, 4}, 1.f)}});
  EXPECT_EQ(SafetensorsFile::open(path)->get("w").item_f32(5), 1.f);
  std::string bytes;
  {
    auto mf = MappedFile::open(path);
    bytes.assign(reinterpret_cast<const char*>(mf->data()), mf->size());
  }
  for (size_t keep : {size_t{0}, size_t{5}, size_t{20}, bytes.size() - 1}) {
    const std::string p = dir + "/cut" + std::to_string(keep) + ".safetensors";
    test::write_file(p, bytes.substr(0, keep));
    expect_error([&] { SafetensorsFile::open(p); }, {p});
  }
  const std::string p = dir + "/cut_data.safetensors";
  test::write_file(p, bytes.substr(0, bytes.size() - 1));
  expect_error([&] { SafetensorsFile::open(p); }, {"'w'", "past the end", "truncated"});
}

TEST(SafetensorsBad, OverlappingOffsets) {
  const std::string p = write_st(
      R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})", 12);
  expect_error([&] { SafetensorsFile::open(p); }, {p, "overlap"});
}

TEST(SafetensorsBad, OffsetsPastTheFile) {
  const std::string p = write_st(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", 8);
  expect_error([&] { SafetensorsFile::open(p); }, {p, "'a'", "past the end"});
  const std::string q = write_st(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,12]}})", 16, "q.safetensors");
  expect_error([&] { SafetensorsFile::open(q); }, {q, "'a'", "needs 16 bytes"});
  const std::string r = write_st(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", 16, "r.safetensors");
  expect_error([&] { SafetensorsFile::open(r); }, {r, "backwards"});
}

TEST(SafetensorsBad, UnknownDtypeAndBadJson) {
  const std::string p = write_st(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,1]}})", 1);
  expect_error([&] { SafetensorsFile::open(p); }, {p, "'a'", "Q7"});
  const std::string q = write_st(R"({"a":)", 0, "q.safetensors");
  expect_error([&] { SafetensorsFile::open(q); }, {q, "JSON"});
  const std::string r = write_st(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4, "r.safetensors");
  expect_error([&] { SafetensorsFile::open(r); }, {r, "'a'"});
}

TEST(SafetensorsBad, MissingFileAndShard) {
  const std::string dir = test::temp_dir();
  expect_error([&] { SafetensorsFile::open(dir + "/nope.safetensors"); }, {dir + "/nope.safetensors"});
  expect_error([&] { open_tensor_store(dir + "/nope.safetensors"); }, {"nope.safetensors"});
  save_safetensors(dir + "/s1.safetensors", {{"a", Tensor::full({2}, 1.f)}});
  test::write_file(dir + "/m.safetensors.index.json",
                   R"({"weight_map":{"a":"s1.safetensors","b":"s2.safetensors"}})");
  expect_error([&] { ShardedSafetensors::open(dir + "/m.safetensors.index.json"); },
               {"s2.safetensors", "m.safetensors.index.json", "missing"});
  test::write_file(dir + "/n.safetensors.index.json", R"({"weight_map":{"c":"s1.safetensors"}})");
  expect_error([&] { ShardedSafetensors::open(dir + "/n.safetensors.index.json"); }, {"'c'", "s1.safetensors"});
  test::write_file(dir + "/o.safetensors.index.json", R"({"weight_map":{"a":"../s1.safetensors"}})");
  expect_error([&] { ShardedSafetensors::open(dir + "/o.safetensors.index.json"); }, {"plain file name"});
}

TEST(SafetensorsBad, RequireNamesTensorShapesAndFile) {
  const std::string dir = test::temp_dir();
  const std::string path = dir + "/w.safetensors";
  save_safetensors(path, {{"blocks.0.weight", Tensor::full({4, 8}, 1.f)}});
  auto f = SafetensorsFile::open(path);
  expect_error([&] { require(*f, "blocks.0.weight", Shape{8, 4}); },
               {"'blocks.0.weight'", "[8, 4]", "[4, 8]", path});
  expect_error([&] { require(*f, "blocks.1.weight", Shape{8, 4}); }, {"'blocks.1.weight'", "missing", path});
  expect_error([&] { require(*f, "blocks.0.weight", std::nullopt, DType::I64); }, {"'blocks.0.weight'", path});
  EXPECT_EQ(require(*f, "blocks.0.weight", Shape{-1, 8}, DType::BF16).dtype(), DType::BF16);
  EXPECT_FALSE(optional_tensor(*f, "absent").defined());
}

// release(): the pages of a tensor that was read leave the resident set (what the GPU engine's
// loader relies on to keep host memory at one tensor), and the tensor still reads the same after.
TEST(Safetensors, ReleaseDropsATensorsPagesAndKeepsItReadable) {
  auto resident_kib = [] {
    long pages = 0, rss = 0;
    std::FILE* f = std::fopen("/proc/self/statm", "r");
    if (f == nullptr) return -1L;
    const int got = std::fscanf(f, "%ld %ld", &pages, &rss);
    std::fclose(f);
    return got == 2 ? rss * (sysconf(_SC_PAGESIZE) / 1024) : -1L;
  };
  if (resident_kib() < 0) GTEST_SKIP() << "no /proc/self/statm";
  const int64_t n = int64_t{16} << 20;  // 64 MiB of f32
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) v[static_cast<size_t>(i)] = static_cast<float>(i % 1000);
  const std::string path = test::temp_dir() + "/big.safetensors";
  save_safetensors(path, {{"small", Tensor::full({4}, 2.f)}, {"w", Tensor::from_vector(v, {n})}});
  v = {};
  const auto store = SafetensorsFile::open(path);
  const Tensor w = store->get("w");
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += w.data<float>()[i];  // every page read
  const long before = resident_kib();
  store->release("w");
  const long after = resident_kib();
  EXPECT_GT(before - after, 48 * 1024) << "resident KiB before " << before << ", after " << after;
  double again = 0;
  for (int64_t i = 0; i < n; ++i) again += w.data<float>()[i];
  EXPECT_EQ(again, sum);
  EXPECT_EQ(store->get("small").item_f32(3), 2.f);
  store->release("nothing");  // unknown names are ignored
}

}  // namespace
}  // namespace ib
