// Image decoding and PNG writing: PIL-compatible conversions (alpha dropped, grey/palette
// expanded, 16-bit reduced), the [-1, 1] mapping, and clear errors for bad files. PNGs are built
// by hand (stored deflate blocks) so every colour type and bit depth is covered; JPEG and WebP
// inputs come from the encoders of the same libraries.
#include <gtest/gtest.h>
#include <jpeglib.h>
#include <webp/decode.h>
#include <webp/encode.h>

#include <csetjmp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "common/fixture.h"
#include "io/image.h"

namespace ib {
namespace {

using Bytes = std::vector<uint8_t>;

// ---- a minimal PNG writer ------------------------------------------------------------------

uint32_t crc32(const uint8_t* p, size_t n, uint32_t crc = 0) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

void put32(Bytes& b, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) b.push_back(static_cast<uint8_t>(v >> s));
}

void chunk(Bytes& png, const char* type, const Bytes& data) {
  put32(png, static_cast<uint32_t>(data.size()));
  Bytes td(type, type + 4);
  td.insert(td.end(), data.begin(), data.end());
  png.insert(png.end(), td.begin(), td.end());
  put32(png, crc32(td.data(), td.size()));
}

// zlib stream of stored (uncompressed) deflate blocks.
Bytes zlib_stored(const Bytes& raw) {
  Bytes z = {0x78, 0x01};
  size_t pos = 0;
  do {
    const size_t n = std::min<size_t>(65535, raw.size() - pos);
    const bool last = pos + n == raw.size();
    z.push_back(last ? 1 : 0);
    z.push_back(static_cast<uint8_t>(n & 0xff));
    z.push_back(static_cast<uint8_t>(n >> 8));
    z.push_back(static_cast<uint8_t>(~n & 0xff));
    z.push_back(static_cast<uint8_t>((~n >> 8) & 0xff));
    z.insert(z.end(), raw.begin() + static_cast<std::ptrdiff_t>(pos), raw.begin() + static_cast<std::ptrdiff_t>(pos + n));
    pos += n;
  } while (pos < raw.size());
  uint32_t a = 1, b = 0;
  for (uint8_t c : raw) {
    a = (a + c) % 65521;
    b = (b + a) % 65521;
  }
  put32(z, (b << 16) | a);
  return z;
}

// `rows`: the scanlines without filter bytes (filter 0 is added). `extra`: chunks before IDAT.
Bytes make_png(uint32_t w, uint32_t h, uint8_t depth, uint8_t color, const std::vector<Bytes>& rows,
               const std::vector<std::pair<std::string, Bytes>>& extra = {}) {
  Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  Bytes ihdr;
  put32(ihdr, w);
  put32(ihdr, h);
  ihdr.insert(ihdr.end(), {depth, color, 0, 0, 0});
  chunk(png, "IHDR", ihdr);
  for (const auto& [type, data] : extra) chunk(png, type.c_str(), data);
  Bytes raw;
  for (const Bytes& r : rows) {
    raw.push_back(0);
    raw.insert(raw.end(), r.begin(), r.end());
  }
  if (!rows.empty()) chunk(png, "IDAT", zlib_stored(raw));
  chunk(png, "IEND", {});
  return png;
}

RgbImage decode(const Bytes& b) { return decode_image(b.data(), b.size(), "test"); }

std::string write_file(const std::string& name, const Bytes& b) {
  const std::string path = test::temp_dir() + "/" + name;
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  return path;
}

// The call throws ib::Error whose message contains every one of `parts`.
void expect_error(const std::function<void()>& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "'" << p << "' not in: " << msg;
  }
}

Bytes random_rgb(int64_t w, int64_t h, uint32_t seed) {
  std::mt19937 rng(seed);
  Bytes b(static_cast<size_t>(w * h * 3));
  for (auto& v : b) v = static_cast<uint8_t>(rng() & 0xff);
  return b;
}

// ---- conversions ---------------------------------------------------------------------------

TEST(Image, PngRoundTripAndTensorMapping) {
  const int64_t w = 7, h = 5;
  Bytes rgb = random_rgb(w, h, 1);
  rgb[0] = 0;
  rgb[1] = 255;
  rgb[2] = 128;
  const std::string path = test::temp_dir() + "/rt.png";
  save_png(path, rgb.data(), w, h);
  const RgbImage img = read_image(path);
  EXPECT_EQ(img.width, w);
  EXPECT_EQ(img.height, h);
  EXPECT_EQ(img.rgb, rgb);

  const Tensor t = load_image(path);
  ASSERT_EQ(t.shape(), (Shape{3, h, w}));
  const float* p = t.data<float>();
  EXPECT_EQ(p[0], -1.0f);                           // R of pixel 0 = 0
  EXPECT_EQ(p[h * w], 1.0f);                        // G of pixel 0 = 255
  EXPECT_EQ(p[2 * h * w], (128.0f / 255.0f - 0.5f) / 0.5f);  // B of pixel 0 = 128
  for (int64_t i = 0; i < w * h; ++i)
    for (int64_t c = 0; c < 3; ++c) {
      const float want = (static_cast<float>(rgb[static_cast<size_t>(3 * i + c)]) / 255.0f - 0.5f) / 0.5f;
      ASSERT_EQ(p[c * h * w + i], want);
    }
  // No temporary file is left beside the output.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 1);

  const Tensor m = load_image_from_memory(encode_png(rgb.data(), w, h).data(), encode_png(rgb.data(), w, h).size(), "mem");
  EXPECT_TENSOR_CLOSE_ABS(m, t, 0.0);
}

TEST(Image, PngColourTypesAsPilConvertRgb) {
  // 8-bit RGBA: alpha dropped without compositing.
  {
    const RgbImage im = decode(make_png(2, 1, 8, 6, {{10, 20, 30, 0, 40, 50, 60, 128}}));
    EXPECT_EQ(im.rgb, (Bytes{10, 20, 30, 40, 50, 60}));
  }
  // 8-bit grey and grey + alpha: replicated.
  {
    EXPECT_EQ(decode(make_png(2, 1, 8, 0, {{7, 200}})).rgb, (Bytes{7, 7, 7, 200, 200, 200}));
    EXPECT_EQ(decode(make_png(2, 1, 8, 4, {{7, 0, 200, 255}})).rgb, (Bytes{7, 7, 7, 200, 200, 200}));
  }
  // 1-bit and 4-bit grey scale to 0..255 (bit patterns 1,0,1 -> 0b101xxxxx; nibbles 3, 15).
  {
    EXPECT_EQ(decode(make_png(3, 1, 1, 0, {{0xa0}})).rgb, (Bytes{255, 255, 255, 0, 0, 0, 255, 255, 255}));
    EXPECT_EQ(decode(make_png(2, 1, 4, 0, {{0x3f}})).rgb, (Bytes{51, 51, 51, 255, 255, 255}));
  }
  // Palette (2-bit indices) with a tRNS chunk: colours expanded, transparency ignored.
  {
    const Bytes plte = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    const Bytes trns = {0, 128};
    const RgbImage im = decode(make_png(3, 1, 2, 3, {{0b00011000}}, {{"PLTE", plte}, {"tRNS", trns}}));
    EXPECT_EQ(im.rgb, (Bytes{1, 2, 3, 4, 5, 6, 7, 8, 9}));
  }
  // 16-bit RGB and grey + alpha: high byte (PIL "RGB;16B", "LA;16B").
  {
    EXPECT_EQ(decode(make_png(1, 1, 16, 2, {{0x12, 0x34, 0xab, 0xcd, 0x00, 0xff}})).rgb, (Bytes{0x12, 0xab, 0x00}));
    EXPECT_EQ(decode(make_png(1, 1, 16, 6, {{1, 2, 3, 4, 5, 6, 7, 8}})).rgb, (Bytes{1, 3, 5}));
    EXPECT_EQ(decode(make_png(1, 1, 16, 4, {{0x80, 0xff, 0x00, 0x00}})).rgb, (Bytes{0x80, 0x80, 0x80}));
  }
  // 16-bit grey: PIL mode I;16, whose conversion clips to 255.
  {
    const RgbImage im = decode(make_png(4, 1, 16, 0, {{0x00, 0x10, 0x00, 0xff, 0x01, 0x00, 0xff, 0xff}}));
    EXPECT_EQ(im.rgb, (Bytes{16, 16, 16, 255, 255, 255, 255, 255, 255, 255, 255, 255}));
  }
}

// ---- JPEG ----------------------------------------------------------------------------------

struct JpegErr {
  jpeg_error_mgr pub;
  std::jmp_buf jump;
};
extern "C" void test_jpeg_error_exit(j_common_ptr c) { std::longjmp(reinterpret_cast<JpegErr*>(c->err)->jump, 1); }

Bytes encode_jpeg(const Bytes& px, int w, int h, int components) {
  jpeg_compress_struct c{};
  JpegErr err{};
  c.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = test_jpeg_error_exit;
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&c);
    return {};
  }
  jpeg_create_compress(&c);
  jpeg_mem_dest(&c, &buf, &size);
  c.image_width = static_cast<JDIMENSION>(w);
  c.image_height = static_cast<JDIMENSION>(h);
  c.input_components = components;
  c.in_color_space = components == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 85, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = const_cast<uint8_t*>(px.data()) + static_cast<size_t>(c.next_scanline) * static_cast<size_t>(w * components);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  Bytes out(buf, buf + size);
  std::free(buf);
  return out;
}

// libjpeg's own defaults (JDCT_ISLOW, fancy upsampling), RGB output: what PIL gets.
Bytes reference_jpeg_decode(const Bytes& jpg) {
  jpeg_decompress_struct d{};
  JpegErr err{};
  d.err = jpeg_std_error(&err.pub);
  err.pub.error_exit = test_jpeg_error_exit;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&d);
    return {};
  }
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, jpg.data(), static_cast<unsigned long>(jpg.size()));
  jpeg_read_header(&d, TRUE);
  d.out_color_space = JCS_RGB;
  jpeg_start_decompress(&d);
  Bytes out(static_cast<size_t>(d.output_width) * d.output_height * 3);
  while (d.output_scanline < d.output_height) {
    JSAMPROW row = out.data() + static_cast<size_t>(d.output_scanline) * d.output_width * 3;
    jpeg_read_scanlines(&d, &row, 1);
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  return out;
}

TEST(Image, JpegMatchesLibjpegDefaults) {
  // A smooth picture with chroma detail, 4:2:0 (jpeg_set_defaults), odd size.
  const int w = 37, h = 29;
  Bytes px(static_cast<size_t>(w * h * 3));
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &px[static_cast<size_t>((y * w + x) * 3)];
      p[0] = static_cast<uint8_t>(x * 7);
      p[1] = static_cast<uint8_t>(y * 9);
      p[2] = static_cast<uint8_t>((x * y) & 0xff);
    }
  const Bytes jpg = encode_jpeg(px, w, h, 3);
  ASSERT_FALSE(jpg.empty());
  const RgbImage im = decode(jpg);
  EXPECT_EQ(im.width, w);
  EXPECT_EQ(im.height, h);
  EXPECT_EQ(im.rgb, reference_jpeg_decode(jpg));

  // Greyscale JPEG: replicated to RGB.
  Bytes grey(static_cast<size_t>(w * h));
  for (size_t i = 0; i < grey.size(); ++i) grey[i] = static_cast<uint8_t>(i * 3);
  const Bytes gjpg = encode_jpeg(grey, w, h, 1);
  const RgbImage gim = decode(gjpg);
  const Bytes ref = reference_jpeg_decode(gjpg);
  EXPECT_EQ(gim.rgb, ref);
  for (size_t i = 0; i < grey.size(); ++i) {
    ASSERT_EQ(gim.rgb[3 * i], gim.rgb[3 * i + 1]);
    ASSERT_EQ(gim.rgb[3 * i], gim.rgb[3 * i + 2]);
  }

  // Truncated: refused, not grey-filled.
  const Bytes cut(jpg.begin(), jpg.begin() + static_cast<std::ptrdiff_t>(jpg.size() / 2));
  const std::string path = write_file("cut.jpg", cut);
  expect_error([&] { load_image(path); }, {path, "truncated"});
}

// ---- WebP ----------------------------------------------------------------------------------

TEST(Image, WebpDropsAlphaAndMatchesLibwebp) {
  const int w = 6, h = 4;
  Bytes rgba(static_cast<size_t>(w * h * 4));
  std::mt19937 rng(3);
  for (size_t i = 0; i < rgba.size(); ++i) rgba[i] = static_cast<uint8_t>(i % 4 == 3 ? 1 + rng() % 255 : rng() & 0xff);
  uint8_t* out = nullptr;
  const size_t n = WebPEncodeLosslessRGBA(rgba.data(), w, h, w * 4, &out);
  ASSERT_GT(n, 0u);
  const Bytes webp(out, out + n);
  WebPFree(out);
  const RgbImage im = decode(webp);
  ASSERT_EQ(im.rgb.size(), static_cast<size_t>(w * h * 3));
  for (size_t i = 0; i < static_cast<size_t>(w * h); ++i)
    for (size_t c = 0; c < 3; ++c) ASSERT_EQ(im.rgb[3 * i + c], rgba[4 * i + c]) << i;

  // Lossy: same samples as libwebp's own RGB decode.
  const Bytes rgb = random_rgb(w, h, 4);
  const size_t m = WebPEncodeRGB(rgb.data(), w, h, w * 3, 80.0f, &out);
  ASSERT_GT(m, 0u);
  const Bytes lossy(out, out + m);
  WebPFree(out);
  int rw = 0, rh = 0;
  uint8_t* ref = WebPDecodeRGB(lossy.data(), lossy.size(), &rw, &rh);
  ASSERT_NE(ref, nullptr);
  EXPECT_EQ(decode(lossy).rgb, Bytes(ref, ref + rw * rh * 3));
  WebPFree(ref);

  const std::string path = write_file("cut.webp", Bytes(webp.begin(), webp.end() - 8));
  expect_error([&] { load_image(path); }, {path});
}

// ---- bad files -----------------------------------------------------------------------------

TEST(Image, BadFilesAreClearErrors) {
  const std::string dir = test::temp_dir();
  const std::string missing = dir + "/missing.png";
  expect_error([&] { load_image(missing); }, {missing, "does not exist"});
  expect_error([&] { load_image(dir); }, {dir, "not a regular file"});

  const std::string empty = write_file("empty.png", {});
  expect_error([&] { load_image(empty); }, {empty, "empty"});

  const std::string garbage = write_file("garbage.png", Bytes(100, 0x42));
  expect_error([&] { load_image(garbage); }, {garbage, "unknown image format"});

  const Bytes rgb = random_rgb(16, 16, 5);
  const Bytes png = encode_png(rgb.data(), 16, 16);
  const std::string truncated = write_file("truncated.png", Bytes(png.begin(), png.begin() + static_cast<std::ptrdiff_t>(png.size() / 2)));
  expect_error([&] { load_image(truncated); }, {truncated, "truncated"});

  Bytes bad_crc = png;
  bad_crc[20] ^= 0x01;  // inside IHDR
  const std::string crc = write_file("crc.png", bad_crc);
  expect_error([&] { load_image(crc); }, {crc, "PNG"});

  // A header and one short IDAT: the size check happens before pixel data is needed.
  const std::string zero = write_file("zero.png", make_png(0, 10, 8, 2, {{1, 2, 3}}));
  expect_error([&] { load_image(zero); }, {zero});
  const std::string huge = write_file("huge.png", make_png(9000, 10, 8, 2, {{1, 2, 3}}));
  expect_error([&] { load_image(huge); }, {huge, "9000x10", "8192"});
  const std::string tall = write_file("tall.png", make_png(10, 8193, 8, 2, {{1, 2, 3}}));
  expect_error([&] { load_image(tall); }, {tall, "10x8193"});

  // JPEG: a start-of-image marker followed by garbage.
  Bytes jgarbage = {0xff, 0xd8, 0xff, 0xe0};
  jgarbage.resize(64, 0x11);
  const std::string jg = write_file("garbage.jpg", jgarbage);
  expect_error([&] { load_image(jg); }, {jg, "JPEG"});

  // WebP: RIFF header, nonsense body.
  Bytes wgarbage = {'R', 'I', 'F', 'F', 40, 0, 0, 0, 'W', 'E', 'B', 'P'};
  wgarbage.resize(48, 0x11);
  const std::string wg = write_file("garbage.webp", wgarbage);
  expect_error([&] { load_image(wg); }, {wg, "WebP"});

  expect_error([&] { load_image_from_memory(garbage.data(), 0, "upload"); }, {"upload"});
}

TEST(Image, SavePngRefusesBadArguments) {
  const Bytes rgb = random_rgb(2, 2, 6);
  const std::string dir = test::temp_dir();
  EXPECT_THROW(save_png(dir + "/no/such/dir/x.png", rgb.data(), 2, 2), Error);
  EXPECT_THROW(save_png(dir + "/x.png", rgb.data(), 0, 2), Error);
  EXPECT_TRUE(std::filesystem::is_empty(dir));
}

}  // namespace
}  // namespace ib
