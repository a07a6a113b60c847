// The tiled VAE decode (models/vae_tiling.h): the tile layout, the blend (tiles cut from one image
// blend back into it), and the decode of the fixture's latents: bit for bit with one tile, close to
// the plain decode with several.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <utility>
#include <vector>

#include "common/fixture.h"
#include "io/model_config.h"
#include "models/vae.h"
#include "models/vae_tiling.h"

namespace ib {
namespace {

TEST(VaeTiling, TileStartsCoverTheAxis) {
  EXPECT_EQ(tile_starts(10, 4, 1), (std::vector<int64_t>{0, 3, 6}));
  EXPECT_EQ(tile_starts(9, 4, 2), (std::vector<int64_t>{0, 2, 4, 5}));
  EXPECT_EQ(tile_starts(10, 20, 2), (std::vector<int64_t>{0}));
  EXPECT_EQ(tile_starts(8, 8, 3), (std::vector<int64_t>{0}));
  EXPECT_THROW(tile_starts(8, 4, 4), Error);  // overlap must be below the tile
}

TEST(VaeTiling, TilesCutFromAnImageBlendBackIntoIt) {
  const int64_t C = 3, F = 5, H = 37, W = 53, tile = 16, overlap = 6;
  const Tensor img = test::random_tensor({C, F, H, W}, 77, 1.0f);
  std::vector<PlacedTile> tiles;
  for (int64_t y0 : tile_starts(H, tile, overlap))
    for (int64_t x0 : tile_starts(W, tile, overlap)) {
      Tensor t = Tensor::empty({C, F, tile, tile}, DType::F32);
      for (int64_t cf = 0; cf < C * F; ++cf)
        for (int64_t y = 0; y < tile; ++y)
          for (int64_t x = 0; x < tile; ++x)
            t.data<float>()[(cf * tile + y) * tile + x] = img.data<float>()[(cf * H + y0 + y) * W + x0 + x];
      tiles.push_back({t, y0, x0});
    }
  EXPECT_GT(tiles.size(), 4u);
  EXPECT_TENSOR_CLOSE_ABS(blend_tiles(tiles, H, W, overlap), img, 1e-5);
  // A tile of the wrong values shows: the blend is not blind to what the tiles hold.
  tiles[1].pixels = Tensor::zeros(tiles[1].pixels.shape());
  const test::Closeness c = test::compare(blend_tiles(tiles, H, W, overlap), img, 0.0);
  EXPECT_GT(c.max_abs_err, 0.1);
}

const WanVAE& model() {
  static const ModelFolder f = ModelFolder::open(test::model_dir());
  static const WanVAE vae = WanVAE::load(*open_tensor_store(f.vae_path), f.vae);
  return vae;
}

TEST(VaeTiling, DecodeInTilesMatchesThePlainDecode) {
  const auto f = test::open_fixture("vae.safetensors");
  for (const char* name : {"latent", "random_latent"}) {
    const Tensor latent = f->get(name).to(DType::F32);
    const int64_t h = latent.size(2), w = latent.size(3);
    const Tensor plain = model().decode(latent);
    // One tile as large as the latent: the plain decode.
    EXPECT_TENSOR_CLOSE_ABS(decode_tiled(model(), latent, {std::max(h, w), 1}), plain, 0.0) << name;
    // Tiles of half the latent (at least 2 latent pixels) sharing half a tile.
    const int64_t tile = std::max<int64_t>(2, std::max(h, w) / 2);
    const VaeTiling t{tile, tile / 2};
    if (tile >= h && tile >= w) continue;
    int64_t chunks = 0, total = 0;
    std::vector<std::pair<int64_t, Tensor>> handed;  // tiles are final only once blended: all at the end
    const Tensor tiled = decode_tiled(
        model(), latent, t,
        [&](int64_t done, int64_t all) {
          chunks = done;
          total = all;
        },
        [&](const Tensor& frames, int64_t first) { handed.emplace_back(first, frames.clone()); });
    ASSERT_EQ(tiled.shape(), plain.shape());
    ASSERT_EQ(handed.size(), 1u);
    EXPECT_EQ(handed[0].first, 0);
    EXPECT_TENSOR_CLOSE_ABS(handed[0].second, tiled, 0.0);
    EXPECT_EQ(chunks, total);
    const int64_t th = std::min(tile, h), tw = std::min(tile, w);
    const auto n_tiles = static_cast<int64_t>(tile_starts(h, th, std::min(tile / 2, th - 1)).size() *
                                              tile_starts(w, tw, std::min(tile / 2, tw - 1)).size());
    EXPECT_GT(n_tiles, 1);
    EXPECT_EQ(total, latent.size(1) * n_tiles) << "progress counts each tile's chunks";
    double se = 0;
    for (int64_t i = 0; i < plain.numel(); ++i) {
      const double d = static_cast<double>(tiled.data<float>()[i]) - plain.data<float>()[i];
      se += d * d;
    }
    const double psnr = 10.0 * std::log10(4.0 / std::max(se / static_cast<double>(plain.numel()), 1e-30));
    // Tiles this small (a few latent pixels) are mostly seam: the figure is for information; real
    // tiles are ~100 latent pixels. A misplaced tile would be far below this sanity floor.
    std::printf("[measured] %s: tiled decode (tile %lld, overlap %lld) vs plain: PSNR %.1f dB\n", name,
                static_cast<long long>(tile), static_cast<long long>(tile / 2), psnr);
    EXPECT_GE(psnr, 10.0);
    // Where only the first tile reaches (before the second one starts), the result is that tile's
    // own decode, bit for bit.
    const std::vector<int64_t> ys = tile_starts(h, th, std::min(tile / 2, th - 1)),
                               xs = tile_starts(w, tw, std::min(tile / 2, tw - 1));
    const int64_t sf = model().spatial_factor();
    const int64_t only_y = (ys.size() > 1 ? ys[1] : h) * sf, only_x = (xs.size() > 1 ? xs[1] : w) * sf;
    Tensor crop = Tensor::empty({latent.size(0), latent.size(1), th, tw}, DType::F32);
    for (int64_t p = 0; p < latent.size(0) * latent.size(1); ++p)
      for (int64_t y = 0; y < th; ++y)
        for (int64_t x = 0; x < tw; ++x)
          crop.data<float>()[(p * th + y) * tw + x] = latent.data<float>()[(p * h + y) * w + x];
    const Tensor first = model().decode(crop);
    const int64_t H = plain.size(2), W = plain.size(3), FH = first.size(2), FW = first.size(3);
    int64_t compared = 0;
    for (int64_t cf = 0; cf < plain.size(0) * plain.size(1); ++cf)
      for (int64_t y = 0; y < only_y; ++y)
        for (int64_t x = 0; x < only_x; ++x, ++compared)
          ASSERT_EQ(tiled.data<float>()[(cf * H + y) * W + x], first.data<float>()[(cf * FH + y) * FW + x])
              << name << " at " << cf << "," << y << "," << x;
    EXPECT_GT(compared, 0);
  }
}

// Strips across the whole short side (VaeTiling::tile_w; what the planner picks when one fits):
// only the long side is cut, progress counts each strip's chunks, and where only the first strip
// reaches the result is that strip's own decode, bit for bit.
TEST(VaeTiling, StripsAcrossTheShortSide) {
  const auto f = test::open_fixture("vae.safetensors");
  const Tensor latent = f->get("latent").to(DType::F32);
  const int64_t h = latent.size(2), w = latent.size(3);
  const bool cut_width = w >= h;
  const int64_t along = std::max(h, w);
  if (along <= 2) GTEST_SKIP() << "a latent of " << h << "x" << w << " has no room for two strips";
  const int64_t ts = std::max<int64_t>(2, along / 2), overlap = std::max<int64_t>(1, ts / 2);
  const int64_t th = cut_width ? h : ts, tw = cut_width ? ts : w;
  const VaeTiling strips{th, overlap, tw};
  int64_t total = 0;
  const Tensor tiled = decode_tiled(model(), latent, strips, [&](int64_t, int64_t all) { total = all; });
  const Tensor plain = model().decode(latent);
  ASSERT_EQ(tiled.shape(), plain.shape());
  const std::vector<int64_t> starts = tile_starts(along, ts, overlap);
  ASSERT_GT(starts.size(), 1u);
  EXPECT_EQ(total, latent.size(1) * static_cast<int64_t>(starts.size())) << "one strip per step, none across";
  Tensor crop = Tensor::empty({latent.size(0), latent.size(1), th, tw}, DType::F32);
  for (int64_t p = 0; p < latent.size(0) * latent.size(1); ++p)
    for (int64_t y = 0; y < th; ++y)
      for (int64_t x = 0; x < tw; ++x) crop.data<float>()[(p * th + y) * tw + x] = latent.data<float>()[(p * h + y) * w + x];
  const Tensor first = model().decode(crop);
  const int64_t sf = model().spatial_factor(), H = plain.size(2), W = plain.size(3), FW = first.size(3);
  const int64_t only_y = cut_width ? H : starts[1] * sf, only_x = cut_width ? starts[1] * sf : W;
  for (int64_t cf = 0; cf < plain.size(0) * plain.size(1); ++cf)
    for (int64_t y = 0; y < only_y; ++y)
      for (int64_t x = 0; x < only_x; ++x)
        ASSERT_EQ(tiled.data<float>()[(cf * H + y) * W + x], first.data<float>()[(cf * first.size(2) + y) * FW + x])
            << cf << "," << y << "," << x;
}

}  // namespace
}  // namespace ib
