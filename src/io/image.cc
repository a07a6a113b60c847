// PNG (libpng), JPEG (libjpeg-turbo) and WebP (libwebp) decoding to 8-bit RGB, PNG encoding.
// libpng and libjpeg report fatal errors through callbacks that must not return; ours record the
// message and longjmp back to the decode function, which then throws. All state those functions
// touch after setjmp lives in a context object outside their frame, and nothing with a destructor
// is created between setjmp and the end of the function.
#include "io/image.h"

#include <cstdio>  // before jpeglib.h, which uses FILE
#include <jpeglib.h>
#include <jerror.h>
#include <png.h>
#include <webp/decode.h>

#include <array>
#include <cerrno>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <new>

#include "core/check.h"
#include "io/atomic_file.h"

namespace ib {

namespace {

constexpr size_t kMessageSize = 256;

void set_message(char* dst, const char* msg) { std::snprintf(dst, kMessageSize, "%s", msg); }

bool side_ok(int64_t v) { return v > 0 && v <= kMaxImageSide; }

// ---------------------------------------------------------------------------------------------
// PNG

struct PngReadContext {
  const uint8_t* data = nullptr;
  size_t size = 0;
  size_t pos = 0;
  png_structp png = nullptr;
  png_infop info = nullptr;
  char message[kMessageSize] = {};
  RgbImage* out = nullptr;
  std::vector<uint8_t> raw;
  std::vector<png_bytep> rows;
};

extern "C" void png_error_cb(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngReadContext*>(png_get_error_ptr(png));
  if (ctx->message[0] == '\0') set_message(ctx->message, msg);
  png_longjmp(png, 1);
}

extern "C" void png_warning_cb(png_structp, png_const_charp) {}  // ancillary problems: ignored, as PIL does

extern "C" void png_read_cb(png_structp png, png_bytep out, size_t n) {
  auto* ctx = static_cast<PngReadContext*>(png_get_io_ptr(png));
  if (n > ctx->size - ctx->pos) png_error(png, "the file is truncated");
  std::memcpy(out, ctx->data + ctx->pos, n);
  ctx->pos += n;
}

// Returns false with ctx->message set on failure. ctx->png/info are destroyed by the caller.
bool png_decode(PngReadContext* ctx) {
  if (setjmp(png_jmpbuf(ctx->png))) return false;
  png_structp png = ctx->png;
  png_infop info = ctx->info;
  png_set_read_fn(png, ctx, png_read_cb);
  png_set_user_limits(png, 0x7fffffffu, 0x7fffffffu);  // the size check below gives a clearer message
  png_read_info(png, info);
  png_uint_32 w = 0, h = 0;
  int depth = 0, color = 0;
  png_get_IHDR(png, info, &w, &h, &depth, &color, nullptr, nullptr, nullptr);
  if (w == 0 || h == 0) {
    set_message(ctx->message, "the image is empty");
    return false;
  }
  if (!side_ok(w) || !side_ok(h)) {
    std::snprintf(ctx->message, kMessageSize, "the image is %ux%u pixels; at most %lld a side are accepted",
                  static_cast<unsigned>(w), static_cast<unsigned>(h), static_cast<long long>(kMaxImageSide));
    return false;
  }
  // PIL opens 16-bit greyscale as mode I;16 and clips it to 255 on conversion; every other 16-bit
  // layout keeps the high byte of each sample.
  const bool gray16 = depth == 16 && color == PNG_COLOR_TYPE_GRAY;
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16 && !gray16) png_set_strip_16(png);
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  const size_t channels = png_get_channels(png, info);
  const size_t row_bytes = png_get_rowbytes(png, info);
  const size_t bytes_per_sample = gray16 ? 2 : 1;
  if (channels < 1 || channels > 4 || row_bytes != static_cast<size_t>(w) * channels * bytes_per_sample) {
    set_message(ctx->message, "unsupported PNG sample layout");
    return false;
  }
  ctx->raw.resize(row_bytes * h);
  ctx->rows.resize(h);
  for (png_uint_32 y = 0; y < h; ++y) ctx->rows[y] = ctx->raw.data() + y * row_bytes;
  png_read_image(png, ctx->rows.data());

  RgbImage& out = *ctx->out;
  out.width = w;
  out.height = h;
  out.rgb.resize(static_cast<size_t>(w) * h * 3);
  const size_t n = static_cast<size_t>(w) * h;
  const uint8_t* src = ctx->raw.data();
  uint8_t* dst = out.rgb.data();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* px = src + i * channels * bytes_per_sample;
    if (gray16) {
      const unsigned v = (static_cast<unsigned>(px[0]) << 8) | px[1];  // PNG samples are big-endian
      dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = static_cast<uint8_t>(v > 255 ? 255 : v);
    } else if (channels <= 2) {  // grey, grey + alpha
      dst[3 * i] = dst[3 * i + 1] = dst[3 * i + 2] = px[0];
    } else {  // RGB, RGBA: alpha dropped without compositing
      dst[3 * i] = px[0];
      dst[3 * i + 1] = px[1];
      dst[3 * i + 2] = px[2];
    }
  }
  return true;
}

RgbImage decode_png(const uint8_t* data, size_t size, const std::string& label) {
  RgbImage out;
  PngReadContext ctx;
  ctx.data = data;
  ctx.size = size;
  ctx.out = &out;
  ctx.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &ctx, png_error_cb, png_warning_cb);
  IB_CHECK(ctx.png != nullptr, "image '{}': cannot initialise libpng", label);
  ctx.info = png_create_info_struct(ctx.png);
  bool ok = false;
  if (ctx.info != nullptr) {
    try {
      ok = png_decode(&ctx);
    } catch (const std::bad_alloc&) {
      set_message(ctx.message, "out of memory");
    }
  } else {
    set_message(ctx.message, "cannot initialise libpng");
  }
  png_destroy_read_struct(&ctx.png, ctx.info != nullptr ? &ctx.info : nullptr, nullptr);
  IB_CHECK(ok, "image '{}': cannot decode PNG: {}", label, ctx.message);
  return out;
}

// ---------------------------------------------------------------------------------------------
// JPEG

struct JpegErrorManager {
  jpeg_error_mgr pub;  // first member: libjpeg sees a jpeg_error_mgr*
  std::jmp_buf jump;
  char message[kMessageSize];
};

struct JpegReadContext {
  jpeg_decompress_struct cinfo;
  JpegErrorManager err;
  RgbImage* out = nullptr;
};

extern "C" void jpeg_error_exit_cb(j_common_ptr c) {
  auto* err = reinterpret_cast<JpegErrorManager*>(c->err);
  char buf[JMSG_LENGTH_MAX] = {};
  (*c->err->format_message)(c, buf);
  if (err->message[0] == '\0') set_message(err->message, buf);
  std::longjmp(err->jump, 1);
}

// Warnings are ignored (as PIL does) except running out of data: PIL refuses truncated files.
extern "C" void jpeg_emit_message_cb(j_common_ptr c, int level) {
  if (level == -1 && c->err->msg_code == JWRN_JPEG_EOF) {
    auto* err = reinterpret_cast<JpegErrorManager*>(c->err);
    set_message(err->message, "the file is truncated");
    std::longjmp(err->jump, 1);
  }
}

bool jpeg_decode(JpegReadContext* ctx, const uint8_t* data, size_t size) {
  jpeg_decompress_struct* cinfo = &ctx->cinfo;
  if (setjmp(ctx->err.jump)) return false;
  jpeg_create_decompress(cinfo);
  jpeg_mem_src(cinfo, data, static_cast<unsigned long>(size));
  jpeg_read_header(cinfo, TRUE);
  const JDIMENSION w = cinfo->image_width, h = cinfo->image_height;
  if (w == 0 || h == 0) {
    set_message(ctx->err.message, "the image is empty");
    return false;
  }
  if (!side_ok(w) || !side_ok(h)) {
    std::snprintf(ctx->err.message, kMessageSize, "the image is %ux%u pixels; at most %lld a side are accepted",
                  static_cast<unsigned>(w), static_cast<unsigned>(h), static_cast<long long>(kMaxImageSide));
    return false;
  }
  if (cinfo->jpeg_color_space == JCS_CMYK || cinfo->jpeg_color_space == JCS_YCCK) {
    set_message(ctx->err.message, "CMYK JPEG images are not supported");
    return false;
  }
  // libjpeg's defaults, which PIL keeps: JDCT_ISLOW and fancy upsampling. Greyscale is
  // replicated to RGB by the library, exactly as PIL's L -> RGB conversion does.
  cinfo->out_color_space = JCS_RGB;
  cinfo->dct_method = JDCT_ISLOW;
  cinfo->do_fancy_upsampling = TRUE;
  jpeg_start_decompress(cinfo);
  if (cinfo->output_components != 3 || cinfo->output_width != w || cinfo->output_height != h) {
    set_message(ctx->err.message, "unexpected decoder output layout");
    return false;
  }
  RgbImage& out = *ctx->out;
  out.width = w;
  out.height = h;
  out.rgb.resize(static_cast<size_t>(w) * h * 3);
  while (cinfo->output_scanline < h) {
    JSAMPROW row = out.rgb.data() + static_cast<size_t>(cinfo->output_scanline) * w * 3;
    jpeg_read_scanlines(cinfo, &row, 1);
  }
  return true;
}

RgbImage decode_jpeg(const uint8_t* data, size_t size, const std::string& label) {
  RgbImage out;
  auto ctx = std::make_unique<JpegReadContext>();
  std::memset(&ctx->cinfo, 0, sizeof(ctx->cinfo));
  ctx->cinfo.err = jpeg_std_error(&ctx->err.pub);
  ctx->err.pub.error_exit = jpeg_error_exit_cb;
  ctx->err.pub.emit_message = jpeg_emit_message_cb;
  ctx->err.message[0] = '\0';
  ctx->out = &out;
  bool ok = false;
  try {
    ok = jpeg_decode(ctx.get(), data, size);
  } catch (const std::bad_alloc&) {
    set_message(ctx->err.message, "out of memory");
  }
  jpeg_destroy_decompress(&ctx->cinfo);
  IB_CHECK(ok, "image '{}': cannot decode JPEG: {}", label, ctx->err.message);
  return out;
}

// ---------------------------------------------------------------------------------------------
// WebP

const char* webp_status(VP8StatusCode s) {
  switch (s) {
    case VP8_STATUS_OK: return "ok";
    case VP8_STATUS_OUT_OF_MEMORY: return "out of memory";
    case VP8_STATUS_INVALID_PARAM: return "invalid parameter";
    case VP8_STATUS_BITSTREAM_ERROR: return "corrupt bitstream";
    case VP8_STATUS_UNSUPPORTED_FEATURE: return "unsupported feature";
    case VP8_STATUS_SUSPENDED: return "suspended";
    case VP8_STATUS_USER_ABORT: return "aborted";
    case VP8_STATUS_NOT_ENOUGH_DATA: return "the file is truncated";
  }
  return "unknown error";
}

RgbImage decode_webp(const uint8_t* data, size_t size, const std::string& label) {
  WebPBitstreamFeatures f;
  const VP8StatusCode st = WebPGetFeatures(data, size, &f);
  IB_CHECK(st == VP8_STATUS_OK, "image '{}': cannot decode WebP: {}", label, webp_status(st));
  IB_CHECK(!f.has_animation, "image '{}': animated WebP images are not supported", label);
  IB_CHECK(f.width > 0 && f.height > 0, "image '{}': the image is empty", label);
  IB_CHECK(side_ok(f.width) && side_ok(f.height), "image '{}': the image is {}x{} pixels; at most {} a side are accepted",
           label, f.width, f.height, kMaxImageSide);
  RgbImage out;
  out.width = f.width;
  out.height = f.height;
  out.rgb.resize(static_cast<size_t>(f.width) * static_cast<size_t>(f.height) * 3);
  // MODE_RGB drops alpha without compositing (non-premultiplied samples), like convert("RGB").
  WebPDecoderConfig config;
  IB_CHECK(WebPInitDecoderConfig(&config), "image '{}': libwebp version mismatch", label);
  config.output.colorspace = MODE_RGB;
  config.output.is_external_memory = 1;
  config.output.u.RGBA.rgba = out.rgb.data();
  config.output.u.RGBA.stride = f.width * 3;
  config.output.u.RGBA.size = out.rgb.size();
  const VP8StatusCode ds = WebPDecode(data, size, &config);
  WebPFreeDecBuffer(&config.output);
  IB_CHECK(ds == VP8_STATUS_OK, "image '{}': cannot decode WebP: {}", label, webp_status(ds));
  return out;
}

// ---------------------------------------------------------------------------------------------
// PNG encoding

struct PngWriteContext {
  std::vector<uint8_t>* out = nullptr;
  png_structp png = nullptr;
  png_infop info = nullptr;
  char message[kMessageSize] = {};
  std::vector<png_bytep> rows;
};

extern "C" void png_write_cb(png_structp png, png_bytep data, size_t n) {
  auto* ctx = static_cast<PngWriteContext*>(png_get_io_ptr(png));
  bool ok = true;
  try {
    ctx->out->insert(ctx->out->end(), data, data + n);
  } catch (...) {
    ok = false;
  }
  if (!ok) png_error(png, "out of memory");
}

extern "C" void png_flush_cb(png_structp) {}

extern "C" void png_write_error_cb(png_structp png, png_const_charp msg) {
  auto* ctx = static_cast<PngWriteContext*>(png_get_error_ptr(png));
  if (ctx->message[0] == '\0') set_message(ctx->message, msg);
  png_longjmp(png, 1);
}

bool png_encode(PngWriteContext* ctx, int64_t width, int64_t height) {
  if (setjmp(png_jmpbuf(ctx->png))) return false;
  png_set_write_fn(ctx->png, ctx, png_write_cb, png_flush_cb);
  png_set_IHDR(ctx->png, ctx->info, static_cast<png_uint_32>(width), static_cast<png_uint_32>(height), 8,
               PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(ctx->png, ctx->info);
  png_write_image(ctx->png, ctx->rows.data());
  png_write_end(ctx->png, nullptr);
  return true;
}

constexpr size_t kMaxFileBytes = size_t{1} << 30;

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  IB_CHECK(std::filesystem::exists(path, ec), "image '{}': the file does not exist", path);
  IB_CHECK(std::filesystem::is_regular_file(path, ec), "image '{}': not a regular file", path);
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  IB_CHECK(f.good(), "image '{}': cannot open the file: {}", path, std::strerror(errno));
  const std::streamoff end = f.tellg();
  IB_CHECK(end >= 0, "image '{}': cannot read the file", path);
  IB_CHECK(static_cast<size_t>(end) <= kMaxFileBytes, "image '{}': the file is larger than {} bytes", path,
           kMaxFileBytes);
  std::vector<uint8_t> bytes(static_cast<size_t>(end));
  f.seekg(0);
  f.read(reinterpret_cast<char*>(bytes.data()), end);
  IB_CHECK(f.good() || bytes.empty(), "image '{}': cannot read the file", path);
  return bytes;
}

}  // namespace

RgbImage decode_image(const void* data, size_t size, const std::string& label) {
  const auto* p = static_cast<const uint8_t*>(data);
  IB_CHECK(p != nullptr || size == 0, "image '{}': no data", label);
  IB_CHECK(size > 0, "image '{}': the file is empty", label);
  static constexpr std::array<uint8_t, 8> kPng = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (size >= 8 && std::memcmp(p, kPng.data(), 8) == 0) return decode_png(p, size, label);
  if (size >= 3 && p[0] == 0xff && p[1] == 0xd8 && p[2] == 0xff) return decode_jpeg(p, size, label);
  if (size >= 12 && std::memcmp(p, "RIFF", 4) == 0 && std::memcmp(p + 8, "WEBP", 4) == 0)
    return decode_webp(p, size, label);
  fail("image '{}': unknown image format (expected PNG, JPEG or WebP)", label);
}

RgbImage read_image(const std::string& path) {
  const std::vector<uint8_t> bytes = read_file(path);
  return decode_image(bytes.data(), bytes.size(), path);
}

Tensor rgb_to_tensor(const RgbImage& image) {
  IB_CHECK(image.width > 0 && image.height > 0 &&
               image.rgb.size() == static_cast<size_t>(image.width * image.height * 3),
           "rgb_to_tensor: {}x{} image with {} bytes", image.width, image.height, image.rgb.size());
  // p / 255 is a correctly rounded f32 division; then - 0.5 and / 0.5, each rounded to f32.
  std::array<float, 256> lut{};
  for (int p = 0; p < 256; ++p) {
    const float q = static_cast<float>(p) / 255.0f;
    const float c = q - 0.5f;
    lut[static_cast<size_t>(p)] = c / 0.5f;
  }
  const int64_t hw = image.width * image.height;
  Tensor t = Tensor::empty({3, image.height, image.width}, DType::F32);
  float* dst = t.data<float>();
  const uint8_t* src = image.rgb.data();
  for (int64_t i = 0; i < hw; ++i)
    for (int64_t c = 0; c < 3; ++c) dst[c * hw + i] = lut[src[3 * i + c]];
  return t;
}

Tensor load_image(const std::string& path) { return rgb_to_tensor(read_image(path)); }

Tensor load_image_from_memory(const void* data, size_t size, const std::string& label) {
  return rgb_to_tensor(decode_image(data, size, label));
}

std::vector<uint8_t> encode_png(const uint8_t* rgb, int64_t width, int64_t height) {
  IB_CHECK(width > 0 && height > 0 && width <= 0x7fffffff && height <= 0x7fffffff,
           "encode_png: invalid image size {}x{}", width, height);
  IB_CHECK(rgb != nullptr, "encode_png: no pixels");
  std::vector<uint8_t> out;
  PngWriteContext ctx;
  ctx.out = &out;
  ctx.rows.resize(static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y) ctx.rows[static_cast<size_t>(y)] = const_cast<uint8_t*>(rgb + y * width * 3);
  out.reserve(static_cast<size_t>(width * height) + 1024);
  ctx.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &ctx, png_write_error_cb, png_warning_cb);
  IB_CHECK(ctx.png != nullptr, "encode_png: cannot initialise libpng");
  ctx.info = png_create_info_struct(ctx.png);
  bool ok = false;
  if (ctx.info != nullptr) {
    ok = png_encode(&ctx, width, height);
  } else {
    set_message(ctx.message, "cannot initialise libpng");
  }
  png_destroy_write_struct(&ctx.png, ctx.info != nullptr ? &ctx.info : nullptr);
  IB_CHECK(ok, "encode_png: {}", ctx.message);
  return out;
}

void save_png(const std::string& path, const uint8_t* rgb, int64_t width, int64_t height) {
  std::vector<uint8_t> bytes;
  try {
    bytes = encode_png(rgb, width, height);
  } catch (const Error& e) {
    fail("cannot write '{}': {}", path, e.what());
  }
  AtomicFile f(path);
  f.write(bytes.data(), bytes.size());
  f.commit();
}

}  // namespace ib
