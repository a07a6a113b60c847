// Still images: decoding PNG, JPEG and WebP to the f32 [3, H, W] tensors in [-1, 1] that the
// pipeline starts from (spec 4.1), and writing 8-bit RGB PNG frames.
//
// Decoding follows PIL's Image.open(...).convert("RGB"):
//  * greyscale is replicated to RGB, palettes are expanded, alpha is dropped without compositing
//    (a palette's or a colour's transparency is ignored), gamma/colour profiles are ignored and the
//    EXIF orientation is not applied;
//  * 16-bit PNG: colour and grey+alpha samples keep their high byte (PIL's "RGB;16B" unpacking);
//    plain 16-bit greyscale opens as PIL mode "I;16" whose conversion clips to 255, so a sample v
//    becomes min(v, 255) (most such images come out white, as in PIL);
//  * JPEG through libjpeg(-turbo) with its defaults, as PIL uses them: integer slow IDCT
//    (JDCT_ISLOW) and fancy upsampling. CMYK/YCCK JPEGs are refused;
//  * WebP: the first (only) frame of a still image; animated WebP is refused.
// Truncated or corrupt files, empty images, unknown formats and images over kMaxImageSide pixels
// a side are refused with an ib::Error naming the file and the problem.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace ib {

constexpr int64_t kMaxImageSide = 8192;

// Interleaved 8-bit RGB, row-major (height rows of width * 3 bytes).
struct RgbImage {
  int64_t width = 0;
  int64_t height = 0;
  std::vector<uint8_t> rgb;
};

// Decodes an image held in memory; `label` names it in errors (a file name, "upload", ...).
RgbImage decode_image(const void* data, size_t size, const std::string& label);
// Reads and decodes a file.
RgbImage read_image(const std::string& path);

// [3, H, W] f32 with v = (p / 255 - 0.5) / 0.5, each operation rounded to f32.
Tensor rgb_to_tensor(const RgbImage& image);

// read_image + rgb_to_tensor.
Tensor load_image(const std::string& path);
// decode_image + rgb_to_tensor.
Tensor load_image_from_memory(const void* data, size_t size, const std::string& label);

// Encodes interleaved 8-bit RGB as PNG.
std::vector<uint8_t> encode_png(const uint8_t* rgb, int64_t width, int64_t height);
// Writes an 8-bit RGB PNG; the file appears only when complete (AtomicFile).
void save_png(const std::string& path, const uint8_t* rgb, int64_t width, int64_t height);

}  // namespace ib
