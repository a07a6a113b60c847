// Element types, their sizes and names, and scalar conversions between the float formats.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace ib {

enum class DType : uint8_t { F32, F16, BF16, F8E4M3, F8E5M2, F64, I64, I32, I16, I8, U8, Bool };

size_t dtype_size(DType t);
const char* dtype_name(DType t);  // "f32", "bf16", ...
bool dtype_is_float(DType t);
// safetensors dtype strings ("F32", "BF16", ...); throws on an unknown one.
DType dtype_from_safetensors(std::string_view s);
const char* dtype_to_safetensors(DType t);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// Round to nearest even, as PyTorch does; NaN stays NaN.
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

inline float round_bf16(float f) { return bf16_to_f32(f32_to_bf16(f)); }

float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
float f8e4m3_to_f32(uint8_t v);
// e4m3fn (no infinities, largest finite 448), round to nearest even, saturating to +-448 as
// cuda_fp8.h's __NV_SATFINITE conversion does; NaN stays NaN.
uint8_t f32_to_f8e4m3(float f);
float f8e5m2_to_f32(uint8_t v);

// Converts n elements of any float type to f32.
void convert_to_f32(const void* src, DType t, float* dst, size_t n);
// Converts n f32 values to a float type (round to nearest even).
void convert_from_f32(const float* src, DType t, void* dst, size_t n);

}  // namespace ib
