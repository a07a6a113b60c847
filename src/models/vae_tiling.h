// The VAE decode in spatial tiles (the VRAM budget): the latent is cut into overlapping tiles, each
// decoded on its own (the decoder's memory peak follows a tile's pixels, not the frame's), and the
// decoded tiles are blended back with linear ramps across each overlap. A tile as large as the
// latent is the plain decode, bit for bit; smaller tiles differ near their seams (the decoder's
// zero padding and its per-frame attention see only the tile), which the ramps smooth.
#pragma once

#include <cstdint>
#include <vector>

#include "core/tensor.h"
#include "models/vae.h"

namespace ib {

struct VaeTiling {
  int64_t tile = 0;     // tile height in latent pixels (and width unless tile_w); 0: no tiling
  int64_t overlap = 0;  // latent pixels shared by neighbouring tiles
  int64_t tile_w = 0;   // tile width when not `tile` (strips across the whole height, say)
};

// Starts of the tiles covering [0, length): every `tile - overlap`, the last one flush with the end.
std::vector<int64_t> tile_starts(int64_t length, int64_t tile, int64_t overlap);

// Blends tiles of a [C, F, H, W] image back together: each tile (its pixel origin y0, x0) is
// weighted by ramps of `ramp` pixels on the sides it shares with a neighbour, and the sum is
// normalised by the summed weights. CPU tensors; returns f32 [C, F, H, W].
struct PlacedTile {
  Tensor pixels;  // f32 [C, F, th, tw]
  int64_t y0 = 0, x0 = 0;
};
Tensor blend_tiles(const std::vector<PlacedTile>& tiles, int64_t height, int64_t width, int64_t ramp);

// vae.decode of `latent` into a CPU tensor [3, 1 + 4(T-1), 8h, 8w]. On the GPU each chunk's frames
// go to the host behind the next chunk's work (cuda::DeviceToHostQueue), instead of the whole
// video after the decode (0.27 s of a 1.46 s 480p decode on the H200).
// on_frames (optional) gets each chunk's final frames as soon as they are in host memory, in order
// (a CPU f32 [3, n, H, W] valid during the call, and its first frame's index): on the GPU on the
// queue's worker thread, so it should be quick (a slow one holds up the decode). An exception it
// throws ends the decode with that error.
Tensor decode_to_host(const WanVAE& vae, const Tensor& latent, const VaeChunkFn& on_chunk = {},
                      const WanVAE::FramesFn& on_frames = {});

// vae.decode of `latent` in tiles (see above); on_chunk counts every tile's chunks. Returns a CPU
// tensor [3, 1 + 4(T-1), 8h, 8w]. on_frames as decode_to_host's; in tiles the frames are final
// only once every tile is blended, so it then gets the whole video at the end.
Tensor decode_tiled(const WanVAE& vae, const Tensor& latent, const VaeTiling& tiling, const VaeChunkFn& on_chunk = {},
                    const WanVAE::FramesFn& on_frames = {});

}  // namespace ib
