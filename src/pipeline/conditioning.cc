#include "pipeline/conditioning.h"

#include <cmath>
#include <cstring>
#include <utility>

#include "ops/resize.h"

namespace ib {

namespace {
// Python's round(): half to even.
int64_t round_half_even(double v) { return static_cast<int64_t>(std::nearbyint(v)); }

// Upstream's S = [round(W1 r), round(H1 r)] with r = max(W0/W1, H0/H1): the last image's size
// scaled to cover the first one's, as {width, height}.
std::pair<int64_t, int64_t> cover_size(int64_t h1, int64_t w1, int64_t height, int64_t width) {
  const double r = std::max(static_cast<double>(width) / static_cast<double>(w1),
                            static_cast<double>(height) / static_cast<double>(h1));
  return {round_half_even(static_cast<double>(w1) * r), round_half_even(static_cast<double>(h1) * r)};
}

// The h x w window of img [3, H, W] whose top-left corner is at (top, left); pixels outside the
// image are 0 (mid-grey in [-1, 1]).
Tensor crop(const Tensor& img, int64_t top, int64_t left, int64_t h, int64_t w) {
  const int64_t H = img.size(1), W = img.size(2);
  Tensor out = Tensor::zeros({3, h, w}, DType::F32);
  const float* src = img.data<float>();
  float* dst = out.data<float>();
  const int64_t x0 = std::max<int64_t>(0, -left), x1 = std::min(w, W - left);
  if (x1 <= x0) return out;
  for (int64_t c = 0; c < 3; ++c)
    for (int64_t y = 0; y < h; ++y) {
      const int64_t sy = y + top;
      if (sy < 0 || sy >= H) continue;
      std::memcpy(dst + (c * h + y) * w + x0, src + (c * H + sy) * W + left + x0,
                  static_cast<size_t>(x1 - x0) * sizeof(float));
    }
  return out;
}
}  // namespace

VideoSize target_size(int64_t image_height, int64_t image_width, double max_area) {
  IB_CHECK(image_height > 0 && image_width > 0, "image size {}x{} is empty", image_width, image_height);
  IB_CHECK(max_area >= 256.0, "max area {} is too small (at least 256 pixels, one 16x16 block)", max_area);
  const double ar = static_cast<double>(image_height) / static_cast<double>(image_width);
  // Python: round(sqrt(max_area * ar) // 8 // 2 * 2); the floors act on the double results.
  const double lat_h = std::floor(std::floor(std::sqrt(max_area * ar) / 8.0) / 2.0) * 2.0;
  const double lat_w = std::floor(std::floor(std::sqrt(max_area / ar) / 8.0) / 2.0) * 2.0;
  IB_CHECK(lat_h >= 2 && lat_w >= 2,
           "an image of {}x{} at max area {} gives an empty video; use a larger --max-area or a less extreme "
           "aspect ratio", image_width, image_height, max_area);
  return {static_cast<int64_t>(lat_h) * 8, static_cast<int64_t>(lat_w) * 8};
}

int64_t latent_frames(int64_t frames) {
  IB_CHECK(frames >= 1 && (frames - 1) % 4 == 0, "frame count {} must be of the form 4n+1 (5, 9, ..., 81)", frames);
  return (frames - 1) / 4 + 1;
}

Tensor fit_last_frame(const Tensor& last, int64_t height, int64_t width) {
  IB_CHECK(last.dim() == 3 && last.size(0) == 3, "last frame must be [3, H, W], got {}", last.str());
  const int64_t h1 = last.size(1), w1 = last.size(2);
  if (h1 == height && w1 == width) return last;
  const auto [cover_w, cover_h] = cover_size(h1, w1, height, width);
  const int64_t sw = std::max(width, cover_w), sh = std::max(height, cover_h);
  const Tensor scaled = ops::resize_bicubic(last, sh, sw);
  return crop(scaled, round_half_even(static_cast<double>(sh - height) / 2.0),
              round_half_even(static_cast<double>(sw - width) / 2.0), height, width);
}

Tensor fit_last_frame_upstream(const Tensor& last, int64_t height, int64_t width) {
  IB_CHECK(last.dim() == 3 && last.size(0) == 3, "last frame must be [3, H, W], got {}", last.str());
  const int64_t h1 = last.size(1), w1 = last.size(2);
  if (h1 == height && w1 == width) return last;
  // center_crop reads S = [round(W1 r), round(H1 r)] as (height, width).
  const auto [ch, cw] = cover_size(h1, w1, height, width);
  // Zero padding (left/top floor((c - n) / 2), right/bottom the rest) where the crop is larger...
  const int64_t pad_top = ch > h1 ? (ch - h1) / 2 : 0, pad_bottom = ch > h1 ? (ch - h1 + 1) / 2 : 0;
  const int64_t pad_left = cw > w1 ? (cw - w1) / 2 : 0, pad_right = cw > w1 ? (cw - w1 + 1) / 2 : 0;
  // ...then the crop at round((H' - ch) / 2), round((W' - cw) / 2) of the padded image (0 where the
  // padding made it exactly ch x cw).
  const int64_t top = round_half_even(static_cast<double>(h1 + pad_top + pad_bottom - ch) / 2.0) - pad_top;
  const int64_t left = round_half_even(static_cast<double>(w1 + pad_left + pad_right - cw) / 2.0) - pad_left;
  return crop(last, top, left, ch, cw);
}

Tensor frame_mask(int64_t frames, int64_t lat_h, int64_t lat_w, bool with_last) {
  const int64_t t = latent_frames(frames);
  // Pixel-frame mask M[k] = 1 for the first and last frame; M0 repeated four times, then viewed
  // as [T', 4] and transposed: mask[c, tau] = M'[4 tau + c].
  std::vector<float> m(static_cast<size_t>(frames + 3), 0.0f);
  for (int i = 0; i < 4; ++i) m[static_cast<size_t>(i)] = 1.0f;
  if (with_last) m[static_cast<size_t>(frames + 2)] = 1.0f;
  Tensor out = Tensor::empty({4, t, lat_h, lat_w}, DType::F32);
  float* p = out.data<float>();
  const int64_t plane = lat_h * lat_w;
  for (int64_t c = 0; c < 4; ++c)
    for (int64_t tau = 0; tau < t; ++tau)
      std::fill_n(p + (c * t + tau) * plane, plane, m[static_cast<size_t>(4 * tau + c)]);
  return out;
}

Tensor conditioning_video(const Tensor& first, const Tensor& last, int64_t frames) {
  latent_frames(frames);
  IB_CHECK(first.dim() == 3 && first.size(0) == 3 && (!last.defined() || first.shape() == last.shape()),
           "first and last frames must both be [3, H, W] of one size, got {} and {}", first.str(),
           last.defined() ? last.str() : "none");
  const int64_t h = first.size(1), w = first.size(2), plane = h * w;
  Tensor v = Tensor::zeros({3, frames, h, w}, DType::F32);
  float* p = v.data<float>();
  for (int64_t c = 0; c < 3; ++c) {
    std::memcpy(p + (c * frames) * plane, first.data<float>() + c * plane, static_cast<size_t>(plane) * 4);
    if (frames > 1 && last.defined())
      std::memcpy(p + (c * frames + frames - 1) * plane, last.data<float>() + c * plane,
                  static_cast<size_t>(plane) * 4);
  }
  return v;
}

}  // namespace ib
