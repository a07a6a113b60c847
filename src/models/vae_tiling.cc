// Tiled VAE decode (see vae_tiling.h).
#include "models/vae_tiling.h"

#include <algorithm>
#include <cstring>

#include "core/check.h"
#include "core/device_to_host.h"
#include "core/parallel.h"

namespace ib {

std::vector<int64_t> tile_starts(int64_t length, int64_t tile, int64_t overlap) {
  IB_CHECK(length > 0 && tile > 0 && overlap >= 0 && overlap < tile, "tile_starts: length {} tile {} overlap {}",
           length, tile, overlap);
  if (tile >= length) return {0};
  std::vector<int64_t> s;
  for (int64_t p = 0; p + tile < length; p += tile - overlap) s.push_back(p);
  s.push_back(length - tile);
  return s;
}

namespace {
// Weight of pixel i of a tile spanning [p0, p0 + n) in an axis of `length`: ramps up over `ramp`
// pixels from a side that is not the image's edge, down towards the other.
float axis_weight(int64_t i, int64_t p0, int64_t n, int64_t length, int64_t ramp) {
  float w = 1.0f;
  if (ramp > 0 && p0 > 0) w = std::min(w, (static_cast<float>(i) + 0.5f) / static_cast<float>(ramp));
  if (ramp > 0 && p0 + n < length) w = std::min(w, (static_cast<float>(n - i) - 0.5f) / static_cast<float>(ramp));
  return w;
}

// Columns [x0, x0 + w) and rows [y0, y0 + h) of a CPU [C, T, H, W] tensor.
Tensor crop(const Tensor& t, int64_t y0, int64_t h, int64_t x0, int64_t w) {
  const int64_t C = t.size(0), T = t.size(1), H = t.size(2), W = t.size(3);
  Tensor out = Tensor::empty({C, T, h, w}, DType::F32);
  const float* src = t.data<float>();
  float* dst = out.data<float>();
  for (int64_t p = 0; p < C * T; ++p)
    for (int64_t y = 0; y < h; ++y)
      std::memcpy(dst + (p * h + y) * w, src + (p * H + y0 + y) * W + x0, static_cast<size_t>(w) * sizeof(float));
  return out;
}
}  // namespace

Tensor blend_tiles(const std::vector<PlacedTile>& tiles, int64_t height, int64_t width, int64_t ramp) {
  IB_CHECK(!tiles.empty(), "blend_tiles: no tiles");
  const int64_t C = tiles[0].pixels.size(0), F = tiles[0].pixels.size(1);
  Tensor out = Tensor::zeros({C, F, height, width}, DType::F32);
  std::vector<float> wsum(static_cast<size_t>(height * width), 0.0f);
  float* o = out.data<float>();
  for (const PlacedTile& t : tiles) {
    const int64_t th = t.pixels.size(2), tw = t.pixels.size(3);
    IB_CHECK(t.pixels.size(0) == C && t.pixels.size(1) == F && t.y0 >= 0 && t.x0 >= 0 && t.y0 + th <= height &&
                 t.x0 + tw <= width,
             "blend_tiles: tile {} at ({}, {}) outside [{}, {}, {}, {}]", t.pixels.str(), t.y0, t.x0, C, F, height,
             width);
    std::vector<float> wy(static_cast<size_t>(th)), wx(static_cast<size_t>(tw));
    for (int64_t y = 0; y < th; ++y) wy[static_cast<size_t>(y)] = axis_weight(y, t.y0, th, height, ramp);
    for (int64_t x = 0; x < tw; ++x) wx[static_cast<size_t>(x)] = axis_weight(x, t.x0, tw, width, ramp);
    const float* p = t.pixels.data<float>();
    for (int64_t y = 0; y < th; ++y)
      for (int64_t x = 0; x < tw; ++x) wsum[static_cast<size_t>((t.y0 + y) * width + t.x0 + x)] += wy[static_cast<size_t>(y)] * wx[static_cast<size_t>(x)];
    // Each channel's frame is its own plane: the planes in parallel.
    parallel_for(C * F, 1, [&](int64_t begin, int64_t end) {
      for (int64_t cf = begin; cf < end; ++cf)
        for (int64_t y = 0; y < th; ++y) {
          float* row = o + (cf * height + t.y0 + y) * width + t.x0;
          const float* src = p + (cf * th + y) * tw;
          const float a = wy[static_cast<size_t>(y)];
          for (int64_t x = 0; x < tw; ++x) row[x] += a * wx[static_cast<size_t>(x)] * src[x];
        }
    });
  }
  for (int64_t i = 0; i < height * width; ++i)
    IB_CHECK(wsum[static_cast<size_t>(i)] > 0.0f, "blend_tiles: pixel {} covered by no tile", i);
  parallel_for(C * F, 1, [&](int64_t begin, int64_t end) {
    for (int64_t cf = begin; cf < end; ++cf)
      for (int64_t i = 0; i < height * width; ++i) o[cf * height * width + i] /= wsum[static_cast<size_t>(i)];
  });
  return out;
}

Tensor decode_to_host(const WanVAE& vae, const Tensor& latent, const VaeChunkFn& on_chunk,
                      const WanVAE::FramesFn& on_frames) {
  Tensor video = Tensor::empty(vae.decoded_shape(latent), DType::F32, Device::CPU);
  const int64_t plane = video.size(2) * video.size(3);
  float* const out = video.data<float>();
  const int64_t frames_total = video.size(1);
  // Chunk frames [3, n, H, W] (host memory at src) -> channel c's frames f0 .. f0 + n - 1 of the
  // video, then to on_frames.
  auto place = [out, frames_total, plane, &video, &on_frames](const float* src, int64_t f0, int64_t n) {
    for (int64_t c = 0; c < 3; ++c)
      std::memcpy(out + (c * frames_total + f0) * plane, src + c * n * plane,
                  static_cast<size_t>(n * plane) * sizeof(float));
    if (on_frames) on_frames(Tensor::host_view(src, {3, n, video.size(2), video.size(3)}), f0);
  };
  auto check_chunk = [](const Tensor& frames) {
    IB_CHECK(frames.dtype() == DType::F32 && frames.dim() == 4 && frames.size(0) == 3,
             "vae decode: chunk {} (internal error)", frames.str());
  };
  if (vae.device() == Device::CPU) {
    vae.decode_frames(
        latent,
        [&](const Tensor& frames, int64_t f0) {
          check_chunk(frames);
          place(frames.data<float>(), f0, frames.size(1));
        },
        on_chunk);
    return video;
  }
  // A chunk is at most temporal_factor() frames.
  cuda::DeviceToHostQueue queue(static_cast<size_t>(3 * vae.temporal_factor() * plane) * sizeof(float));
  vae.decode_frames(
      latent,
      [&](const Tensor& frames, int64_t f0) {
        check_chunk(frames);
        const int64_t n = frames.size(1);
        queue.push(frames.raw(), frames.nbytes(),
                   [&place, f0, n](const void* host) { place(static_cast<const float*>(host), f0, n); });
      },
      on_chunk);
  queue.finish();
  return video;
}

Tensor decode_tiled(const WanVAE& vae, const Tensor& latent, const VaeTiling& tiling, const VaeChunkFn& on_chunk,
                    const WanVAE::FramesFn& on_frames) {
  IB_CHECK(latent.dim() == 4, "decode_tiled: expected a latent [z, T, h, w], got {}", latent.str());
  const int64_t T = latent.size(1), h = latent.size(2), w = latent.size(3);
  const int64_t tile_w = tiling.tile_w > 0 ? tiling.tile_w : tiling.tile;
  if (tiling.tile <= 0 || (tiling.tile >= h && tile_w >= w)) return decode_to_host(vae, latent, on_chunk, on_frames);
  const Tensor lat = latent.to(Device::CPU);
  const int64_t th = std::min(tiling.tile, h), tw = std::min(tile_w, w), sf = vae.spatial_factor();
  const std::vector<int64_t> ys = tile_starts(h, th, std::min(tiling.overlap, th - 1));
  const std::vector<int64_t> xs = tile_starts(w, tw, std::min(tiling.overlap, tw - 1));
  const auto n = static_cast<int64_t>(ys.size() * xs.size());
  std::vector<PlacedTile> tiles;
  int64_t k = 0;
  for (int64_t y0 : ys)
    for (int64_t x0 : xs) {
      const VaeChunkFn tick = on_chunk ? VaeChunkFn([&, k](int64_t done, int64_t) { on_chunk(k * T + done, n * T); })
                                       : VaeChunkFn();
      tiles.push_back({decode_to_host(vae, crop(lat, y0, th, x0, tw), tick), y0 * sf, x0 * sf});
      ++k;
    }
  Tensor video = blend_tiles(tiles, h * sf, w * sf, std::max<int64_t>(1, tiling.overlap * sf));
  if (on_frames) on_frames(video, 0);
  return video;
}

}  // namespace ib
