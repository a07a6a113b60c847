// The VRAM plan (pipeline/vram_plan.h) at the release's shapes: each block's streamed bytes summed
// here layer by layer from the spec's shapes, budgets that keep every block, some, or refuse.
#include <gtest/gtest.h>

#include <string>

#include "common/fixture.h"
#include "core/check.h"
#include "io/model_config.h"
#include "pipeline/vram_plan.h"

namespace ib {
namespace {

constexpr size_t kGiB = 1024ull * 1024 * 1024;

VramPlan plan_14b(int bytes_per_weight, int64_t w, int64_t h, double budget_gib) {
  return plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, bytes_per_weight, w, h, 81,
                   static_cast<size_t>(budget_gib * static_cast<double>(kGiB)), T5Placement::Auto);
}

// One block's linear layers of the 14B FLF2V model, layer by layer (spec 7.5-7.7): q, k, v, o of
// self-attention; q, k, v, k_img, v_img, o of cross-attention; FFN up and down. bf16 weights and
// biases; fp8 weights with one f32 scale per output row.
size_t block_bytes_by_hand(int bytes_per_weight) {
  const size_t d = 5120, f = 13824;
  struct L { size_t out, in; };
  const L layers[] = {{d, d}, {d, d}, {d, d}, {d, d}, {d, d}, {d, d}, {d, d}, {d, d}, {d, d}, {d, d}, {f, d}, {d, f}};
  size_t n = 0;
  for (const L& l : layers)
    n += l.out * l.in * static_cast<size_t>(bytes_per_weight) + l.out * 2 + (bytes_per_weight == 1 ? l.out * 4 : 0);
  return n;
}

TEST(VramPlan, BlockBytesFollowTheLayers) {
  EXPECT_EQ(plan_14b(2, 832, 480, 0).block_bytes, block_bytes_by_hand(2));
  EXPECT_EQ(plan_14b(1, 832, 480, 0).block_bytes, block_bytes_by_hand(1));
}

TEST(VramPlan, NoBudgetKeepsEveryBlock) {
  const VramPlan p = plan_14b(2, 1280, 720, 0);
  EXPECT_EQ(p.resident_blocks, 40);
  EXPECT_TRUE(p.t5_on_gpu);
}

TEST(VramPlan, BudgetsBetweenMinimumAndEverythingStreamSome) {
  const VramPlan all = plan_14b(2, 832, 480, 141);
  EXPECT_EQ(all.resident_blocks, 40);
  const VramPlan p24 = plan_14b(2, 832, 480, 24);
  EXPECT_GT(p24.resident_blocks, 0);
  EXPECT_LT(p24.resident_blocks, 40);
  // What stays on the device fits the budget with the larger of the two working sets.
  const size_t vae_weights = 512ull << 20;  // the VAE stays loaded through the denoising
  const size_t held = p24.fixed_bytes + static_cast<size_t>(p24.resident_blocks + 2) * p24.block_bytes +
                      std::max(p24.activation_bytes + p24.context_bytes + vae_weights, p24.vae_bytes);
  EXPECT_LE(held, 24 * kGiB);
  // One more block would not.
  EXPECT_GT(held + p24.block_bytes, 24 * kGiB);
  // fp8 blocks are half the size: more of them stay.
  EXPECT_GT(plan_14b(1, 832, 480, 24).resident_blocks, p24.resident_blocks);
  // T5 (bf16, ~11 GiB) does not fit a 10 GiB budget: it runs on the CPU.
  const VramPlan p10 = plan_14b(1, 832, 480, 10);
  EXPECT_FALSE(p10.t5_on_gpu);
  EXPECT_GE(p10.resident_blocks, 0);
  EXPECT_TRUE(p24.t5_on_gpu);
}

// Under a budget, a VAE decode larger than the denoising's working set runs in tiles whose peak
// fits it: 720p bf16 then completes in 16 GiB (the whole-frame decode alone is ~18 GiB).
TEST(VramPlan, TheDecodeIsTiledToFitTheDenoisingsWorkingSet) {
  EXPECT_EQ(plan_14b(2, 1280, 720, 0).vae_tile, 0);
  const VramPlan p16 = plan_14b(2, 1280, 720, 16);
  EXPECT_GT(p16.vae_tile, 0);
  EXPECT_LT(p16.vae_tile, 1280 / 8);
  EXPECT_GE(p16.vae_overlap, 2);
  EXPECT_LT(p16.vae_overlap, p16.vae_tile);
  EXPECT_LE(p16.vae_bytes, p16.activation_bytes + p16.context_bytes + (512ull << 20));
  EXPECT_GE(p16.resident_blocks, 0);
  EXPECT_LE(p16.minimum_bytes, 16 * kGiB);
  // A budget that fits everything decodes whole frames.
  EXPECT_EQ(plan_14b(2, 1280, 720, 141).vae_tile, 0);
}

TEST(VramPlan, TooSmallABudgetIsRefusedWithTheMinimum) {
  const VramPlan any = plan_14b(2, 1280, 720, 0);
  try {
    (void)plan_14b(2, 1280, 720, 1.0);
    FAIL() << "a 1 GiB budget was accepted";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("1.00 GiB is too small"), std::string::npos) << m;
    EXPECT_NE(m.find(fmt::format("at least {:.2f} GiB", static_cast<double>(any.minimum_bytes) / kGiB)),
              std::string::npos)
        << m;
  }
  // The minimum itself is accepted, and streams every block.
  const VramPlan at_min =
      plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, 2, 1280, 720, 81, any.minimum_bytes, T5Placement::Auto);
  EXPECT_EQ(at_min.resident_blocks, 0);
  EXPECT_THROW(
      plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, 2, 1280, 720, 81, any.minimum_bytes - 1, T5Placement::Auto),
      Error);
}

// An 8 GB card at 480p: with the attention and projection outputs living in the memory of the
// normed input and q | k | v (models/dit_memory.h), fp8 and bf16 weights fit with room to spare and
// keep the whole FFN and the held contexts; fp8 attention's e4m3 copies need the FFN in chunks.
// What the plan holds at once fits the budget, and a roomy budget squeezes nothing.
TEST(VramPlan, EightGibAt480p) {
  for (const auto& [bpw, fp8_attention] :
       {std::pair{1, false}, std::pair{1, true}, std::pair{2, false}, std::pair{2, true}}) {
    SCOPED_TRACE(std::to_string(bpw) + " bytes a weight" + (fp8_attention ? ", fp8 attention" : ""));
    const VramPlan p = plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, bpw, 832, 480, 81, 8 * kGiB,
                                 T5Placement::Auto, fp8_attention);
    std::printf("[measured] 480p, %s%s: minimum %.2f GiB; %s\n", bpw == 1 ? "fp8" : "bf16",
                fp8_attention ? " + fp8 attention" : "", static_cast<double>(p.minimum_bytes) / kGiB,
                p.describe().c_str());
    EXPECT_LE(p.minimum_bytes, 8 * kGiB);
    EXPECT_EQ(p.ffn_chunk_rows, fp8_attention ? 4096 : 0);
    EXPECT_FALSE(p.contexts_per_block);
    EXPECT_FALSE(p.t5_on_gpu);
    EXPECT_LE(p.fixed_bytes + static_cast<size_t>(std::max<int64_t>(p.resident_blocks, 2)) * p.block_bytes +
                  std::max<size_t>(p.activation_bytes + p.context_bytes + (512ull << 20), p.vae_bytes),
              8 * kGiB);
    const VramPlan roomy = plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, bpw, 832, 480, 81, 80 * kGiB,
                                     T5Placement::Auto, fp8_attention);
    EXPECT_EQ(roomy.ffn_chunk_rows, 0);
    EXPECT_FALSE(roomy.contexts_per_block);
  }
  // fp8 attention's e4m3 copies are counted: 4 bytes a row per model width.
  const VramPlan plain = plan_14b(2, 832, 480, 0);
  const VramPlan with = plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, 2, 832, 480, 81, 0, T5Placement::Auto, true);
  EXPECT_EQ(with.activation_bytes - plain.activation_bytes, size_t{4} * 5120 * 21 * 30 * 52);
}

// An 8 GB card at 720p (75,600 tokens): bf16 and fp8 weights fit with both squeezes (the FFN in
// chunks, the cross-attention's keys and values projected per block) and the decode in tiles; fp8
// attention's e4m3 copies (1.4 GiB more) do not, and are refused with the minimum. The context
// squeeze is what makes the difference: without it the held contexts take 1.57 GiB.
TEST(VramPlan, EightGibAt720pProjectsContextsPerBlock) {
  for (const int bpw : {1, 2}) {
    SCOPED_TRACE(std::to_string(bpw) + " bytes a weight");
    const VramPlan p = plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, bpw, 1280, 720, 81, 8 * kGiB,
                                 T5Placement::Auto, false);
    std::printf("[measured] 720p, %s: minimum %.2f GiB; %s\n", bpw == 1 ? "fp8" : "bf16",
                static_cast<double>(p.minimum_bytes) / kGiB, p.describe().c_str());
    EXPECT_EQ(p.ffn_chunk_rows, 4096);
    EXPECT_TRUE(p.contexts_per_block);
    // The decode in strips across the whole height (90 latent pixels), cut only along the width:
    // the strips decode less than 1.25x the frame's pixels (squares of the same area would decode
    // ~2x, their overlap cut twice).
    EXPECT_EQ(p.vae_tile, 720 / 8);
    EXPECT_GT(p.vae_tile_w, 16);
    EXPECT_LT(p.vae_tile_w, 1280 / 8);
    const auto strips = static_cast<int64_t>(tile_starts(1280 / 8, p.vae_tile_w, p.vae_overlap).size());
    EXPECT_LT(strips * p.vae_tile_w * 4, 160 * 5);
    const VramPlan held = plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, bpw, 1280, 720, 81, 0, T5Placement::Auto);
    EXPECT_LT(p.context_bytes * 20, held.context_bytes);
    EXPECT_LE(p.fixed_bytes + static_cast<size_t>(std::max<int64_t>(p.resident_blocks, 2)) * p.block_bytes +
                  std::max<size_t>(p.activation_bytes + p.context_bytes + (512ull << 20), p.vae_bytes),
              8 * kGiB);
    // A budget just above the minimum without the context squeeze keeps the contexts held.
    const size_t without = p.minimum_bytes - p.context_bytes + held.context_bytes;
    const VramPlan more = plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, bpw, 1280, 720, 81,
                                    without + (256ull << 20), T5Placement::Auto, false);
    EXPECT_FALSE(more.contexts_per_block);
  }
  try {
    plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, 1, 1280, 720, 81, 8 * kGiB, T5Placement::Auto, true);
    ADD_FAILURE() << "fp8 with fp8 attention planned into 8 GiB at 720p";
  } catch (const Error& e) {
    std::printf("[measured] 720p, fp8 + fp8 attention at 8 GiB: %s\n", e.what());
    EXPECT_NE(std::string(e.what()).find("8.00 GiB is too small"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("projected block by block"), std::string::npos);
  }
}

// The VAE encode runs before the denoising with the same DiT weights placed; it is chunked in time
// (its peak follows the pixels of a frame, not the frame count) and not tiled, so it is a floor of
// the minimum. Without a budget it runs whole chunks (faster); the minimum counts it one frame at a
// time, which a tight budget then asks for. A short 720p video, whose denoising and tiled decode
// are small, needs exactly the frame-at-a-time encode's peak, and a budget of that minimum keeps no
// block resident.
TEST(VramPlan, TheEncodeCountsInTheMinimum) {
  const VramPlan p81 = plan_14b(2, 1280, 720, 0);
  EXPECT_FALSE(p81.vae_encode_by_frame);
  const VramPlan p5 = plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, 2, 1280, 720, 5, 0, T5Placement::Auto);
  EXPECT_EQ(p5.vae_encode_bytes, p81.vae_encode_bytes);
  EXPECT_GT(p81.vae_encode_bytes, plan_14b(2, 832, 480, 0).vae_encode_bytes);
  const size_t dit_min = p5.fixed_bytes + 2 * p5.block_bytes;
  const VramPlan at_min =
      plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, 2, 1280, 720, 5, p5.minimum_bytes, T5Placement::Auto);
  EXPECT_TRUE(at_min.vae_encode_by_frame);
  EXPECT_LT(at_min.vae_encode_bytes, p5.vae_encode_bytes / 2);
  EXPECT_GT(at_min.vae_encode_bytes, at_min.activation_bytes + at_min.context_bytes + (512ull << 20));
  EXPECT_EQ(p5.minimum_bytes, dit_min + at_min.vae_encode_bytes);
  EXPECT_EQ(at_min.resident_blocks, 0);
  EXPECT_THROW(
      plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, 2, 1280, 720, 5, p5.minimum_bytes - 1, T5Placement::Auto),
      Error);
  // 81 frames: the denoising's working set is the larger, the minimum holds the encode too; a
  // budget with room for the whole-chunk encode keeps it.
  EXPECT_GE(p81.minimum_bytes, p81.fixed_bytes + 2 * p81.block_bytes + at_min.vae_encode_bytes);
  const VramPlan roomy = plan_vram(DitConfig{}, T5Config{}, 1280, 514, 4096, 2, 1280, 720, 81, 40 * kGiB,
                                   T5Placement::Auto);
  EXPECT_FALSE(roomy.vae_encode_by_frame);
  EXPECT_EQ(roomy.vae_encode_bytes, p81.vae_encode_bytes);
}

}  // namespace
}  // namespace ib
