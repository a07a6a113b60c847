// .pth reader on hand-built archives: strides, shared storages, zip64, protocol 4 opcodes, and
// bad input (refused globals and opcodes, truncated or compressed zips, garbage pickles).
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "common/expect_error.h"
#include "common/fixture.h"
#include "io/pth.h"
#include "io/zip.h"
#include "pth_builder.h"

namespace ib {
namespace {

using test::PickleBuilder;
using test::ZipItem;
using test::expect_error;

// A state dict over one f32 storage "0" holding 0..11 and one f16 storage "1":
//   a   [3,4] stride [4,1]            (contiguous, the whole storage)
//   t   [4,3] stride [1,4]            (a's transpose)
//   s   [2]   stride [3], offset 5    (elements 5 and 8)
//   row [4]   stride [1], offset 4    (a[1], contiguous inside the shared storage)
//   h   [2]   f16
std::string strided_pickle() {
  PickleBuilder p;
  p.proto(2).ordered_dict().put(0).mark();
  p.tensor("a", "FloatStorage", "0", 12, 0, {3, 4}, {4, 1});
  p.tensor("t", "FloatStorage", "0", 12, 0, {4, 3}, {1, 4});
  p.tensor("s", "FloatStorage", "0", 12, 5, {2}, {3});
  p.tensor("row", "FloatStorage", "0", 12, 4, {4}, {1});
  p.tensor("h", "HalfStorage", "1", 2, 0, {2}, {1});
  p.op('u');
  p.op('}').op('b');  // BUILD with an empty state, as an OrderedDict may carry
  return p.stop().bytes();
}

std::vector<ZipItem> archive(const std::string& pkl, const std::string& top = "weird-name_0") {
  std::vector<float> f(12);
  for (int i = 0; i < 12; ++i) f[static_cast<size_t>(i)] = static_cast<float>(i);
  const std::vector<uint16_t> h = {0x3c00, 0xc000};  // 1, -2
  return {{top + "/data.pkl", pkl},
          {top + "/byteorder", "little"},
          {top + "/data/0", test::raw_bytes(f)},
          {top + "/data/1", test::raw_bytes(h)},
          {top + "/version", "3\n"}};
}

std::string write_pth(const std::string& bytes, const std::string& name = "m.pth") {
  const std::string path = test::temp_dir() + "/" + name;
  test::write_file(path, bytes);
  return path;
}

void check_strided(const PthFile& f) {
  EXPECT_EQ(f.names(), (std::vector<std::string>{"a", "h", "row", "s", "t"}));
  const Tensor a = f.get("a");
  for (int i = 0; i < 12; ++i) EXPECT_EQ(a.data<float>()[i], static_cast<float>(i));
  const Tensor t = f.get("t");
  EXPECT_EQ(t.shape(), (Shape{4, 3}));
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 3; ++j) EXPECT_EQ(t.data<float>()[i * 3 + j], static_cast<float>(i + 4 * j));
  const Tensor s = f.get("s");
  EXPECT_EQ(s.data<float>()[0], 5.f);
  EXPECT_EQ(s.data<float>()[1], 8.f);
  const Tensor row = f.get("row");
  for (int i = 0; i < 4; ++i) EXPECT_EQ(row.data<float>()[i], static_cast<float>(4 + i));
  // a and row share the mapped storage (zero copy): row starts 16 bytes into a.
  EXPECT_EQ(static_cast<const char*>(row.raw()) - static_cast<const char*>(a.raw()), 16);
  const Tensor h = f.get("h");
  EXPECT_EQ(h.dtype(), DType::F16);
  EXPECT_EQ(h.item_f32(0), 1.f);
  EXPECT_EQ(h.item_f32(1), -2.f);
}

TEST(Pth, StridesOffsetsAndSharedStorage) {
  auto f = PthFile::open(write_pth(test::make_zip(archive(strided_pickle()))));
  check_strided(*f);
  const auto rec = parse_state_dict_pickle(reinterpret_cast<const unsigned char*>(strided_pickle().data()),
                                           strided_pickle().size(), "x");
  EXPECT_EQ(rec.at("s").storage_offset, 5);
  EXPECT_EQ(rec.at("t").stride, (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(rec.at("t").storage_numel, 12);
}

TEST(Pth, Zip64Archive) {
  auto f = PthFile::open(write_pth(test::make_zip(archive(strided_pickle()), /*zip64=*/true)));
  check_strided(*f);
}

TEST(Pth, Protocol4Opcodes) {
  // FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL, LONG1, BINGET of a memoized storage class.
  PickleBuilder p;
  p.proto(4).op(0x95).le(0, 8);
  p.op(0x8c).le(11, 1).raw("collections").op(0x94);  // memo 0
  p.op(0x8c).le(11, 1).raw("OrderedDict").op(0x94);  // memo 1
  p.op(0x93).op(0x94).op(')').op('R').op(0x94);       // memo 2, 3
  p.mark().op(0x8c).le(1, 1).raw("a");
  p.global("torch._utils", "_rebuild_tensor_v2");
  p.mark().mark().str("storage").global("torch", "FloatStorage").op(0x94).str("0").str("cpu");
  p.op(0x8a).le(1, 1).le(12, 1).op('t').op('Q');
  p.op(0x8a).le(0, 1).tuple_of({3, 4}).tuple_of({4, 1}).op(0x88).op('N').op('t').op('R');
  p.op('u').stop();
  auto f = PthFile::open(write_pth(test::make_zip(archive(p.bytes()))));
  EXPECT_EQ(f->info("a").shape, (Shape{3, 4}));
  EXPECT_EQ(f->get("a").data<float>()[11], 11.f);
}

TEST(Pth, StateDictMetadataIsIgnored) {
  // model.state_dict() pickles as OrderedDict + SETITEMS + BUILD({'_metadata': OrderedDict({'': {'version': 1}})}).
  PickleBuilder p;
  p.proto(2).ordered_dict().put(0).mark();
  p.tensor("w", "FloatStorage", "0", 12, 0, {12}, {1});
  p.op('u');
  p.op('}').str("_metadata").ordered_dict().mark().str("").op('}').str("version").integer(1).op('s');
  p.str("blocks.0").mark().str("version").integer(2).op('d').op('u').op('s').op('b').stop();
  auto f = PthFile::open(write_pth(test::make_zip(archive(p.bytes()))));
  EXPECT_EQ(f->names(), (std::vector<std::string>{"w"}));
  EXPECT_EQ(f->get("w").data<float>()[3], 3.f);
  // _rebuild_parameter(tensor, requires_grad, hooks) unwraps to the tensor.
  PickleBuilder q;
  q.proto(2).op('}').mark().str("p").global("torch._utils", "_rebuild_parameter").mark();
  q.raw(PickleBuilder().tensor("", "FloatStorage", "0", 12, 4, {2}, {1}).bytes().substr(5));  // without the key
  q.op(0x88).ordered_dict().op('t').op('R').op('u').stop();
  auto g = PthFile::open(write_pth(test::make_zip(archive(q.bytes())), "q.pth"));
  EXPECT_EQ(g->get("p").data<float>()[1], 5.f);
}

TEST(PthBad, RefusesArbitraryGlobals) {
  const std::vector<std::pair<std::string, std::string>> evil = {
      {"os", "system"}, {"builtins", "eval"}, {"posix", "system"}, {"torch", "load"}, {"subprocess", "Popen"}};
  for (const auto& [module, name] : evil) {
    PickleBuilder p;
    p.proto(2).global(module, name).mark().str("touch /tmp/pwned").op('t').op('R').stop();
    const std::string path = write_pth(test::make_zip(archive(p.bytes())));
    expect_error([&] { PthFile::open(path); }, {"refusing global '" + module + "." + name + "'", path});
  }
  // STACK_GLOBAL goes through the same check.
  PickleBuilder p;
  p.proto(4).op(0x8c).le(8, 1).raw("builtins").op(0x8c).le(4, 1).raw("exec").op(0x93).stop();
  expect_error([&] { parse_state_dict_pickle(reinterpret_cast<const unsigned char*>(p.bytes().data()), p.bytes().size(), "f.pth"); },
               {"refusing global 'builtins.exec'", "f.pth"});
}

TEST(PthBad, RefusesOtherOpcodesByName) {
  auto parse = [](const PickleBuilder& p) {
    return parse_state_dict_pickle(reinterpret_cast<const unsigned char*>(p.bytes().data()), p.bytes().size(), "f.pth");
  };
  expect_error([&] { parse(PickleBuilder().proto(2).op(']').stop()); }, {"0x5d", "EMPTY_LIST", "f.pth"});
  expect_error([&] { parse(PickleBuilder().proto(2).op('i').raw("os\nsystem\n").stop()); }, {"0x69", "INST"});
  expect_error([&] { parse(PickleBuilder().proto(2).op(0x81).stop()); }, {"0x81", "NEWOBJ"});
  expect_error([&] { parse(PickleBuilder().proto(2).op(0xff)); }, {"0xff"});
  // Storage classes are not callable, and REDUCE needs a global.
  expect_error([&] { parse(PickleBuilder().proto(2).global("torch", "FloatStorage").op(')').op('R').stop()); },
               {"refusing to call 'torch.FloatStorage'"});
  expect_error([&] { parse(PickleBuilder().proto(2).str("x").op(')').op('R').stop()); }, {"REDUCE"});
  // Unknown memo entries, stack underflow, missing STOP, wrong root.
  expect_error([&] { parse(PickleBuilder().proto(2).get(7).stop()); }, {"memo entry 7"});
  expect_error([&] { parse(PickleBuilder().proto(2).op('s').stop()); }, {"underflow"});
  expect_error([&] { parse(PickleBuilder().proto(2).op('}')); }, {"without a STOP"});
  expect_error([&] { parse(PickleBuilder().proto(2).str("x").stop()); }, {"root is a str"});
  expect_error([&] { parse(PickleBuilder().proto(2).op('}').mark().str("k").integer(3).op('u').stop()); },
               {"'k' is a int, not a tensor"});
}

TEST(PthBad, TensorOutsideItsStorage) {
  PickleBuilder p;
  p.proto(2).op('}').mark().tensor("big", "FloatStorage", "0", 12, 2, {3, 4}, {4, 1}).op('u').stop();
  expect_error([&] { PthFile::open(write_pth(test::make_zip(archive(p.bytes())))); },
               {"tensor 'big'", "runs past its storage '0' of 12 elements", "[3, 4]"});
  // A storage declared larger than its zip entry.
  PickleBuilder q;
  q.proto(2).op('}').mark().tensor("w", "FloatStorage", "0", 100, 0, {100}, {1}).op('u').stop();
  expect_error([&] { PthFile::open(write_pth(test::make_zip(archive(q.bytes())))); },
               {"tensor 'w'", "storage '0'", "only 48 bytes"});
  // A storage key that has no entry.
  PickleBuilder r;
  r.proto(2).op('}').mark().tensor("w", "FloatStorage", "9", 1, 0, {1}, {1}).op('u').stop();
  expect_error([&] { PthFile::open(write_pth(test::make_zip(archive(r.bytes())))); },
               {"storage '9'", "missing from the archive"});
}

TEST(PthBad, TruncatedZip) {
  const std::string good = test::make_zip(archive(strided_pickle()));
  for (size_t keep : {size_t{0}, size_t{10}, good.size() / 2, good.size() - 30, good.size() - 1}) {
    const std::string path = write_pth(good.substr(0, keep));
    expect_error([&] { PthFile::open(path); }, {path});
  }
  expect_error([&] { PthFile::open(write_pth(good.substr(0, good.size() / 2))); }, {"not a zip archive"});
  // Directory intact, but an entry claims more bytes than the file has.
  std::string cut = good;
  const std::string name = "weird-name_0/data/1";
  const size_t cd = cut.find(std::string("\x50\x4b\x01\x02", 4));
  const size_t at = cut.find(name, cd);
  ASSERT_NE(at, std::string::npos);
  for (size_t k : {at - 46 + 20, at - 46 + 24}) cut.replace(k, 4, std::string("\xff\xff\xff\x7f", 4));
  expect_error([&] { parse_zip_directory(reinterpret_cast<const unsigned char*>(cut.data()), cut.size(), "z.pth"); },
               {"z.pth", name, "runs past the end of the file"});
}

TEST(PthBad, CompressedEntry) {
  auto items = archive(strided_pickle());
  items[2].method = 8;
  const std::string path = write_pth(test::make_zip(items));
  expect_error([&] { PthFile::open(path); }, {"data/0", "compressed", "deflate", path});
}

TEST(PthBad, NotAZipOrNoPickle) {
  const std::string path = write_pth(std::string(1000, 'x'));
  expect_error([&] { PthFile::open(path); }, {"not a zip archive", path});
  const std::string nopkl = write_pth(test::make_zip({{"top/other.bin", "abc"}}));
  expect_error([&] { PthFile::open(nopkl); }, {"data.pkl", nopkl});
  auto items = archive(strided_pickle());
  items[1].data = "big";
  expect_error([&] { PthFile::open(write_pth(test::make_zip(items))); }, {"'big' byte order"});
  expect_error([&] { PthFile::open(test::temp_dir() + "/absent.pth"); }, {"absent.pth"});
}

TEST(PthBad, GarbageAndMutatedPickles) {
  // Random bytes, truncations and single-byte mutations of a valid pickle: each is either refused with
  // an ib::Error or parses; nothing crashes (the fuzz targets push this much further).
  std::mt19937 rng(1234);
  const std::string good = strided_pickle();
  int refused = 0;
  auto try_parse = [&](const std::string& b) {
    try {
      parse_state_dict_pickle(reinterpret_cast<const unsigned char*>(b.data()), b.size(), "g.pth");
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("g.pth"), std::string::npos) << e.what();
      ++refused;
    }
  };
  for (int n = 0; n < 200; ++n) {
    std::string b(static_cast<size_t>(rng() % 200), '\0');
    for (auto& c : b) c = static_cast<char>(rng());
    try_parse(b);
  }
  for (size_t k = 0; k < good.size(); ++k) try_parse(good.substr(0, k));
  for (int n = 0; n < 2000; ++n) {
    std::string b = good;
    b[rng() % b.size()] = static_cast<char>(rng());
    try_parse(b);
  }
  EXPECT_GT(refused, 200);
  // A garbage data.pkl inside a valid zip.
  const std::string path = write_pth(test::make_zip(archive(std::string("\x80\x02garbage", 9))));
  expect_error([&] { PthFile::open(path); }, {path, "opcode"});
}

}  // namespace
}  // namespace ib
