// Parsers under hostile input keep memory and time bounded (issue 12, section 3): the unpickler's
// key and name bombs, deeply nested or oversized JSON (safetensors headers, shard indexes,
// config.json, inbetween.json), sizes in config files far beyond any model, and weight or config
// files that are FIFOs. Memory is measured by counting the bytes allocated through operator new
// while a parser runs: past a budget the allocation fails, so a blow-up ends the test as a failure
// instead of exhausting the machine.
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <new>
#include <nlohmann/json.hpp>
#include <tuple>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/model_config.h"
#include "io/pth.h"
#include "io/safetensors.h"
#include "pth_builder.h"

namespace {

std::atomic<bool> g_counting{false};
std::atomic<int64_t> g_live{0};
std::atomic<int64_t> g_peak{0};
int64_t g_budget = 0;

void* counted_new(size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) throw std::bad_alloc();
  if (g_counting.load(std::memory_order_relaxed)) {
    const auto bytes = static_cast<int64_t>(malloc_usable_size(p));
    const int64_t live = g_live.fetch_add(bytes) + bytes;
    if (live > g_budget) {
      g_live.fetch_sub(bytes);
      std::free(p);
      throw std::bad_alloc();
    }
    int64_t peak = g_peak.load();
    while (live > peak && !g_peak.compare_exchange_weak(peak, live)) {
    }
  }
  return p;
}

void counted_delete(void* p) noexcept {
  if (p == nullptr) return;
  if (g_counting.load(std::memory_order_relaxed)) g_live.fetch_sub(static_cast<int64_t>(malloc_usable_size(p)));
  std::free(p);
}

}  // namespace

void* operator new(size_t n) { return counted_new(n); }
void* operator new[](size_t n) { return counted_new(n); }
void operator delete(void* p) noexcept { counted_delete(p); }
void operator delete[](void* p) noexcept { counted_delete(p); }
void operator delete(void* p, size_t) noexcept { counted_delete(p); }
void operator delete[](void* p, size_t) noexcept { counted_delete(p); }

namespace ib {
namespace {

namespace fs = std::filesystem;
using test::expect_error;
using test::PickleBuilder;

// Runs fn with at most `budget` bytes allocated at once through operator new (a larger need fails
// the test, reporting the peak so far); returns the peak.
template <typename Fn>
int64_t peak_bytes(int64_t budget, Fn&& fn) {
  g_budget = budget;
  g_live = 0;
  g_peak = 0;
  g_counting = true;
  try {
    fn();
  } catch (const std::bad_alloc&) {
    g_counting = false;
    ADD_FAILURE() << "needed more than " << budget << " bytes at once (peak so far " << g_peak.load() << ")";
    return g_peak.load();
  } catch (...) {
    g_counting = false;
    throw;
  }
  g_counting = false;
  return g_peak.load();
}

const unsigned char* bytes_of(const std::string& s) { return reinterpret_cast<const unsigned char*>(s.data()); }

// A state dict of `count` tensors over one storage whose key (`key_bytes` long) is written once,
// memoised, and loaded again by every later tensor (BINGET), as the issue's 1.4 MB .pth does.
std::string key_bomb(size_t key_bytes, int count) {
  PickleBuilder p;
  p.proto(2).ordered_dict().mark();
  for (int i = 0; i < count; ++i) {
    p.str(fmt::format("t{}", i)).global("torch._utils", "_rebuild_tensor_v2").mark();
    p.mark().str("storage").global("torch", "FloatStorage");
    if (i == 0)
      p.str(std::string(key_bytes, 'k')).put(1);
    else
      p.get(1);
    p.str("cpu").integer(4).op('t').op('Q');
    p.integer(0).tuple_of({4}).tuple_of({1}).op(0x89).ordered_dict().op('t').op('R');
  }
  return p.op('u').stop().bytes();
}

std::string pth_of(const std::string& pkl, const std::string& key) {
  const std::string path = test::temp_dir() + "/bomb.pth";
  test::write_file(path, test::make_zip({{"m/data.pkl", pkl},
                                         {"m/byteorder", "little"},
                                         {"m/data/" + key, std::string(16, '\0')}}));
  return path;
}

TEST(ParseLimits, PickleStorageKeyBomb) {
  // 1 MiB key loaded 1000 times: before, each load copied the key (GBs); now the key's length is
  // refused at once, within a small budget.
  const std::string path = pth_of(key_bomb(size_t{1} << 20, 1000), std::string(size_t{1} << 20, 'k'));
  const int64_t peak = peak_bytes(64 << 20, [&] {
    expect_error([&] { PthFile::open(path); }, {path, "storage key", "limit of 64 bytes"});
  });
  EXPECT_LT(peak, 64 << 20);
  // A key within the limit, loaded 20000 times: memory stays a small multiple of the pickle's size.
  const std::string ok = key_bomb(64, 20000);
  const int64_t ok_peak = peak_bytes(64 << 20, [&] {
    EXPECT_EQ(parse_state_dict_pickle(bytes_of(ok), ok.size(), "ok.pth").size(), 20000u);
  });
  EXPECT_LT(ok_peak, static_cast<int64_t>(16 * ok.size())) << "pickle of " << ok.size() << " bytes";
}

TEST(ParseLimits, PickleNamesAreBoundedAndUnique) {
  // One 1 MiB tensor name, memoised (1) with its tensor (2) and used for 1000 entries.
  PickleBuilder q;
  q.proto(2).ordered_dict().mark();
  q.str(std::string(size_t{1} << 20, 'n')).put(1);
  q.global("torch._utils", "_rebuild_tensor_v2").mark().mark().str("storage").global("torch", "FloatStorage");
  q.str("0").str("cpu").integer(4).op('t').op('Q').integer(0).tuple_of({4}).tuple_of({1}).op(0x89).ordered_dict();
  q.op('t').op('R').put(2);
  for (int i = 0; i < 1000; ++i) q.get(1).get(2);
  q.op('u').stop();
  expect_error([&] { parse_state_dict_pickle(bytes_of(q.bytes()), q.bytes().size(), "n.pth"); },
               {"n.pth", "limit of 1024 bytes for a tensor name", "(1048576 bytes)"});

  PickleBuilder d;
  d.proto(2).ordered_dict().mark();
  d.tensor("w", "FloatStorage", "0", 4, 0, {4}, {1}).tensor("w", "FloatStorage", "0", 4, 0, {2}, {1});
  d.op('u').stop();
  expect_error([&] { parse_state_dict_pickle(bytes_of(d.bytes()), d.bytes().size(), "d.pth"); },
               {"d.pth", "'w' appears twice"});
}

TEST(ParseLimits, PickleValuesStaySmall) {
  // A million one-byte EMPTY_DICT opcodes: each builds a value, which must stay small (~64 bytes);
  // and a million NONE opcodes share one value.
  for (const unsigned char op : {'}', 'N'}) {
    PickleBuilder p;
    p.proto(2);
    for (int i = 0; i < 1000000; ++i) p.op(op);
    p.stop();
    const int64_t peak = peak_bytes(96 << 20, [&] {
      try {  // an empty state dict (the last '}'), or "the root is a None"
        EXPECT_TRUE(parse_state_dict_pickle(bytes_of(p.bytes()), p.bytes().size(), "n.pth").empty());
      } catch (const Error& e) {
        EXPECT_NE(std::string(e.what()).find("root is a None"), std::string::npos) << e.what();
      }
    });
    EXPECT_LT(peak, op == 'N' ? (24 << 20) : (96 << 20)) << op;
  }
}

TEST(ParseLimits, PickleTensorCount) {
  // 2^17 + 1 tensors sharing one memoised argument tuple: ~12 bytes of pickle each.
  PickleBuilder p;
  p.proto(2).ordered_dict().mark();
  p.str("t").global("torch._utils", "_rebuild_tensor_v2").put(1).mark().mark().str("storage");
  p.global("torch", "FloatStorage").str("0").str("cpu").integer(4).op('t').op('Q');
  p.integer(0).tuple_of({4}).tuple_of({1}).op(0x89).ordered_dict().op('t').put(2).op('R');
  for (int i = 1; i <= (1 << 17); ++i) p.str(std::to_string(i)).get(1).get(2).op('R');
  p.op('u').stop();
  expect_error([&] { parse_state_dict_pickle(bytes_of(p.bytes()), p.bytes().size(), "c.pth"); },
               {"c.pth", "more than 131072 tensors"});
}

// The 8-byte length and the header of a safetensors file.
std::string safetensors_bytes(const std::string& header) {
  std::string b(8, '\0');
  for (int i = 0; i < 8; ++i) b[static_cast<size_t>(i)] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  return b + header;
}

TEST(ParseLimits, SafetensorsHeaderDepthAndSize) {
  // 1 MiB of nested arrays (the format's 100 MB of them took 4 GB and 23 s): refused at depth 8.
  const std::string deep = safetensors_bytes(std::string(size_t{1} << 20, '['));
  const int64_t peak = peak_bytes(16 << 20, [&] {
    expect_error([&] { parse_safetensors_header(bytes_of(deep), deep.size(), "deep.safetensors"); },
                 {"deep.safetensors", "safetensors header", "more than 8 deep"});
  });
  EXPECT_LT(peak, 16 << 20);
  // 3 levels, as every real header has, are fine.
  const std::string ok = safetensors_bytes(R"({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})") +
                         std::string(4, '\0');
  EXPECT_EQ(parse_safetensors_header(bytes_of(ok), ok.size(), "ok.safetensors").tensors.size(), 1u);
  // Over 16 MiB of header: refused before parsing, however valid.
  const std::string big = safetensors_bytes("{}" + std::string((size_t{16} << 20) - 1, ' '));
  expect_error([&] { parse_safetensors_header(bytes_of(big), big.size(), "big.safetensors"); },
               {"big.safetensors", "header length 16777217", "limit of 16777216 bytes"});
}

// A model folder whose weights are empty placeholders (ModelFolder::open only locates them) with
// the given config.json and, when not empty, inbetween.json.
std::string stub_folder(const std::string& config, const std::string& inbetween = "") {
  const std::string dir = test::temp_dir();
  for (const char* f : {"diffusion_pytorch_model.safetensors", "models_t5_umt5-xxl-enc-bf16.pth",
                        "models_clip_open-clip-xlm-roberta-large-vit-huge-14.pth", "Wan2.1_VAE.pth"})
    test::write_file(dir + "/" + f, "");
  fs::create_directories(dir + "/google/umt5-xxl");
  test::write_file(dir + "/google/umt5-xxl/spiece.model", "");
  test::write_file(dir + "/config.json", config);
  if (!inbetween.empty()) test::write_file(dir + "/inbetween.json", inbetween);
  return dir;
}

std::string config_json(const std::string& key = "", const std::string& value = "") {
  nlohmann::json j = {{"model_type", "flf2v"}, {"text_len", 512}, {"in_dim", 36},     {"dim", 5120},
                      {"ffn_dim", 13824},      {"freq_dim", 256},  {"out_dim", 16},    {"num_heads", 40},
                      {"num_layers", 40},      {"eps", 1e-6}};
  if (!key.empty()) j[key] = nlohmann::json::parse(value);
  return j.dump();
}

TEST(ParseLimits, ConfigJsonSizeAndDepth) {
  EXPECT_EQ(ModelFolder::open(stub_folder(config_json())).dit.dim, 5120);
  // 2 MiB of config.json (a long ignored value): over the 1 MiB limit.
  std::string big = config_json();
  big.insert(1, "\"_name_or_path\": \"" + std::string(size_t{2} << 20, 'x') + "\", ");
  std::string dir = stub_folder(big);
  expect_error([&] { ModelFolder::open(dir); }, {dir + "/config.json", "limit of 1048576 bytes for a config"});
  // An ignored key nested 10 deep.
  dir = stub_folder(config_json("window_size", "[[[[[[[[[1]]]]]]]]]"));
  expect_error([&] { ModelFolder::open(dir); }, {dir + "/config.json", "more than 8 deep"});
  // 1 MiB of nesting in inbetween.json, within a small budget.
  dir = stub_folder(config_json(), std::string(size_t{1} << 20, '['));
  const int64_t peak = peak_bytes(16 << 20, [&] {
    expect_error([&] { ModelFolder::open(dir); }, {dir + "/inbetween.json", "more than 8 deep"});
  });
  EXPECT_LT(peak, 16 << 20);
}

TEST(ParseLimits, ShardIndexDepth) {
  const std::string dir = test::temp_dir();
  test::write_file(dir + "/m.safetensors.index.json", R"({"weight_map": {}, "metadata": )" +
                                                           std::string(100, '[') + std::string(100, ']') + "}");
  expect_error([&] { ShardedSafetensors::open(dir + "/m.safetensors.index.json"); },
               {dir + "/m.safetensors.index.json", "shard index", "more than 8 deep"});
}

TEST(ParseLimits, ConfigSizesHaveBounds) {
  // Each size one past its bound (config_limits in io/model_config.h) is refused naming the bound.
  const std::vector<std::tuple<std::string, int64_t, int64_t>> dit = {
      {"text_len", 65536, 4096}, {"text_len", 4097, 4096}, {"dim", 65537, 65536},  {"ffn_dim", 65537, 65536},
      {"in_dim", 65537, 65536},  {"out_dim", 65537, 65536}, {"freq_dim", 65538, 65536}, {"num_heads", 1025, 1024},
      {"num_layers", 1025, 1024}};
  for (const auto& [key, value, limit] : dit) {
    const std::string dir = stub_folder(config_json(key, std::to_string(value)));
    expect_error([&] { ModelFolder::open(dir); },
                 {dir + "/config.json", fmt::format("'{}' is {}, above the limit of {}", key, value, limit)});
  }
  EXPECT_EQ(ModelFolder::open(stub_folder(config_json("text_len", "4096"))).dit.text_len, 4096);

  const std::vector<std::tuple<std::string, int64_t, int64_t>> extra = {
      {"t5.vocab", 1048577, 1048576},    {"t5.dim", 65537, 65536},        {"t5.dim_ffn", 65537, 65536},
      {"t5.num_layers", 1025, 1024},     {"t5.num_buckets", 4097, 4096},  {"t5.max_distance", 1048577, 1048576},
      {"clip.image_size", 8193, 8192},   {"clip.dim", 65537, 65536},      {"clip.mlp_ratio", 65, 64},
      {"clip.num_layers", 1025, 1024},   {"vae.dim", 65537, 65536},       {"vae.z_dim", 65537, 65536},
      {"vae.num_res_blocks", 65, 64}};
  for (const auto& [key, value, limit] : extra) {
    const size_t dot = key.find('.');
    const nlohmann::json j = {{key.substr(0, dot), {{key.substr(dot + 1), value}}}};
    const std::string dir = stub_folder(config_json(), j.dump());
    expect_error([&] { ModelFolder::open(dir); },
                 {dir + "/inbetween.json", fmt::format("'{}' is {}, above the limit of {}", key, value, limit)});
  }
  const std::string dir = stub_folder(config_json(), R"({"vae": {"dim": 20000, "dim_mult": [1, 2, 4, 4]}})");
  expect_error([&] { ModelFolder::open(dir); }, {"vae.dim 20000 x vae.dim_mult entry 4", "limit of 65536"});
}

// fn must refuse `fifo` without opening it; if it blocks in open(), the FIFO is opened for writing
// (which releases the reader) and the test fails.
template <typename Fn>
void expect_fifo_refused(const std::string& fifo, Fn&& fn, std::vector<std::string> parts) {
  auto done = std::async(std::launch::async, [&] { return test::error_message(fn); });
  if (done.wait_for(std::chrono::seconds(5)) != std::future_status::ready) {
    ADD_FAILURE() << "blocked opening the FIFO " << fifo;
    while (done.wait_for(std::chrono::milliseconds(50)) != std::future_status::ready) {
      const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
    }
  }
  const std::string msg = done.get();
  for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nlacks: " << p;
}

std::string make_fifo(const std::string& path) {
  EXPECT_EQ(::mkfifo(path.c_str(), 0600), 0) << path;
  return path;
}

TEST(ParseLimits, FifosAreRefusedWithoutBlocking) {
  const std::string dir = test::temp_dir();
  // A shard index that names a FIFO (what made `generate` hang).
  const std::string shard = make_fifo(dir + "/s-00001-of-00001.safetensors");
  test::write_file(dir + "/s.safetensors.index.json", R"({"weight_map": {"w": "s-00001-of-00001.safetensors"}})");
  expect_fifo_refused(shard, [&] { ShardedSafetensors::open(dir + "/s.safetensors.index.json"); },
                      {shard, "is a FIFO, not a regular file"});
  expect_fifo_refused(shard, [&] { open_tensor_store(shard); }, {shard, "is a FIFO"});
  const std::string index = make_fifo(dir + "/f.safetensors.index.json");
  expect_fifo_refused(index, [&] { open_tensor_store(index); }, {index, "shard index", "is a FIFO"});
  const std::string pth = make_fifo(dir + "/f.pth");
  expect_fifo_refused(pth, [&] { PthFile::open(pth); }, {pth, "is a FIFO"});
  // inbetween.json is optional, so only its existence was checked.
  const std::string folder = stub_folder(config_json());
  const std::string extra = make_fifo(folder + "/inbetween.json");
  expect_fifo_refused(extra, [&] { ModelFolder::open(folder); }, {extra, "is a FIFO"});
  // A folder where a file should be.
  fs::create_directory(dir + "/d.safetensors");
  expect_error([&] { SafetensorsFile::open(dir + "/d.safetensors"); }, {"d.safetensors", "is a folder"});
}

}  // namespace
}  // namespace ib
