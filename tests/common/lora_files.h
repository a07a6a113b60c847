// Test helpers for LoRA files: synthetic low-rank pairs and patches sized from a checkpoint, written
// under the key names of each format in circulation, and the merge computed by plain loops (the
// reference the library's merge is checked against, written without any of its code).
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"
#include "io/tensor_store.h"

namespace ib::test {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Multiples of 1/8 in [-1/2, 1/2]: every product and sum of a merge of rank <= 64 is exact in f32,
// whatever order a matrix product sums in, so merges can be compared bit for bit.
inline Tensor dyadic_tensor(const Shape& shape, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(-4, 4);
  std::vector<float> v(static_cast<size_t>(shape_numel(shape)));
  for (float& x : v) x = static_cast<float>(d(rng)) / 8.0f;
  return Tensor::from_vector(v, shape);
}

// w + factor·(up @ down) in w's shape, by loops in f32: acc = Σ_k up[o,k]·down[k,i] for k = 0..r-1,
// then w + factor·acc. up: [out, r(, 1...)], down: [r, in...].
inline Tensor reference_low_rank(const Tensor& w, const Tensor& up, const Tensor& down, float factor) {
  const Tensor W = w.to(DType::F32), U = up.to(DType::F32), D = down.to(DType::F32);
  const int64_t r = D.size(0), in = D.numel() / r, out = U.size(0);
  Tensor m = Tensor::empty(w.shape(), DType::F32);
  const float* wp = W.data<float>();
  const float* u = U.data<float>();
  const float* d = D.data<float>();
  float* mp = m.data<float>();
  for (int64_t o = 0; o < out; ++o)
    for (int64_t i = 0; i < in; ++i) {
      float acc = 0.0f;
      for (int64_t k = 0; k < r; ++k) acc += u[o * r + k] * d[k * in + i];
      mp[o * in + i] = wp[o * in + i] + factor * acc;
    }
  return m;
}

// w + factor·patch (same number of values), f32.
inline Tensor reference_patch(const Tensor& w, const Tensor& patch, float factor) {
  const Tensor W = w.to(DType::F32), P = patch.to(DType::F32);
  Tensor m = Tensor::empty(w.shape(), DType::F32);
  for (int64_t i = 0; i < W.numel(); ++i) m.data<float>()[i] = W.data<float>()[i] + factor * P.data<float>()[i];
  return m;
}

// The release name -> diffusers name, as diffusers' scripts/convert_wan_to_diffusers.py does it:
// TRANSFORMER_KEYS_RENAME_DICT applied in order with str.replace.
inline std::string diffusers_name(std::string key) {
  static const std::pair<const char*, const char*> kRename[] = {
      {"time_embedding.0", "condition_embedder.time_embedder.linear_1"},
      {"time_embedding.2", "condition_embedder.time_embedder.linear_2"},
      {"text_embedding.0", "condition_embedder.text_embedder.linear_1"},
      {"text_embedding.2", "condition_embedder.text_embedder.linear_2"},
      {"time_projection.1", "condition_embedder.time_proj"},
      {"head.modulation", "scale_shift_table"},
      {"head.head", "proj_out"},
      {"modulation", "scale_shift_table"},
      {"ffn.0", "ffn.net.0.proj"},
      {"ffn.2", "ffn.net.2"},
      {"norm2", "norm__placeholder"},
      {"norm3", "norm2"},
      {"norm__placeholder", "norm3"},
      {"img_emb.proj.0", "condition_embedder.image_embedder.norm1"},
      {"img_emb.proj.1", "condition_embedder.image_embedder.ff.net.0.proj"},
      {"img_emb.proj.3", "condition_embedder.image_embedder.ff.net.2"},
      {"img_emb.proj.4", "condition_embedder.image_embedder.norm2"},
      {"img_emb.emb_pos", "condition_embedder.image_embedder.pos_embed"},
      {"self_attn.q", "attn1.to_q"},
      {"self_attn.k", "attn1.to_k"},
      {"self_attn.v", "attn1.to_v"},
      {"self_attn.o", "attn1.to_out.0"},
      {"self_attn.norm_q", "attn1.norm_q"},
      {"self_attn.norm_k", "attn1.norm_k"},
      {"cross_attn.q", "attn2.to_q"},
      {"cross_attn.k", "attn2.to_k"},
      {"cross_attn.v", "attn2.to_v"},
      {"cross_attn.o", "attn2.to_out.0"},
      {"cross_attn.norm_q", "attn2.norm_q"},
      {"cross_attn.norm_k", "attn2.norm_k"},
      {"attn2.to_k_img", "attn2.add_k_proj"},
      {"attn2.to_v_img", "attn2.add_v_proj"},
      {"attn2.norm_k_img", "attn2.norm_added_k"},
  };
  for (const auto& [from, to] : kRename)
    for (size_t pos = 0; (pos = key.find(from, pos)) != std::string::npos; pos += std::string(to).size())
      key.replace(pos, std::string(from).size(), to);
  return key;
}

enum class LoraFormat {
  Kohya,           // diffusion_model.<m>.lora_down.weight / .lora_up.weight / .alpha
  KohyaModel,      // model.diffusion_model.<m>..., same parts
  KohyaUnet,       // lora_unet_<m with '_' for '.'>..., same parts
  Peft,            // diffusion_model.<m>.lora_A.weight / .lora_B.weight, no alpha
  PeftBare,        // <m>.lora_A.weight / .lora_B.weight, no prefix, no alpha
  Diffusers,       // transformer.<diffusers m>.lora_A.weight / .lora_B.weight, no alpha
};

inline const char* format_name(LoraFormat f) {
  switch (f) {
    case LoraFormat::Kohya: return "kohya";
    case LoraFormat::KohyaModel: return "kohya model.diffusion_model.";
    case LoraFormat::KohyaUnet: return "kohya lora_unet_";
    case LoraFormat::Peft: return "peft";
    case LoraFormat::PeftBare: return "peft bare";
    case LoraFormat::Diffusers: return "diffusers";
  }
  return "?";
}

inline bool format_has_alpha(LoraFormat f) {
  return f == LoraFormat::Kohya || f == LoraFormat::KohyaModel || f == LoraFormat::KohyaUnet;
}

// The key stem of release module `m` in format `f`.
inline std::string lora_stem(LoraFormat f, const std::string& m) {
  switch (f) {
    case LoraFormat::Kohya:
    case LoraFormat::Peft: return "diffusion_model." + m;
    case LoraFormat::KohyaModel: return "model.diffusion_model." + m;
    case LoraFormat::KohyaUnet: {
      std::string u = m;
      for (char& c : u)
        if (c == '.') c = '_';
      return "lora_unet_" + u;
    }
    case LoraFormat::PeftBare: return m;
    case LoraFormat::Diffusers: return "transformer." + diffusers_name(m);
  }
  return m;
}

// A low-rank pair for module `m` of the checkpoint (weight shape [out, in...]): down [r, in...],
// up [out, r, 1...], dyadic values; appended under format `f`'s keys (with alpha when it has one).
struct LowRankPair {
  std::string module;
  Tensor up, down;
  float alpha = 0;  // 0: none in the file
};
inline LowRankPair add_low_rank(NamedTensors& file, const TensorStore& dit, LoraFormat f, const std::string& m,
                                int64_t rank, float alpha, uint32_t seed) {
  const Shape ws = dit.info(m + ".weight").shape;
  Shape down_shape = ws, up_shape = {ws[0], rank};
  down_shape[0] = rank;
  for (size_t i = 2; i < ws.size(); ++i) up_shape.push_back(1);
  LowRankPair p{m, dyadic_tensor(up_shape, seed), dyadic_tensor(down_shape, seed + 7777), 0};
  const std::string stem = lora_stem(f, m);
  const bool kohya = format_has_alpha(f);
  file.emplace_back(stem + (kohya ? ".lora_down.weight" : ".lora_A.weight"), p.down);
  file.emplace_back(stem + (kohya ? ".lora_up.weight" : ".lora_B.weight"), p.up);
  if (kohya && alpha > 0) {
    p.alpha = alpha;
    file.emplace_back(stem + ".alpha", Tensor::from_vector(std::vector<float>{alpha}, {}));
  }
  return p;
}

}  // namespace ib::test
