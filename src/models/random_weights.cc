// The synthetic models' weight init (models/random_weights.h).
#include "models/random_weights.h"

#include <algorithm>
#include <cmath>

#include "core/parallel.h"

namespace ib {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

uint64_t name_hash(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : s) h = (h ^ ch) * 1099511628211ull;
  return h;
}


}  // namespace

// One random tensor: norms and gammas one, biases zero, everything else uniform with variance
// 1/fan_in (embeddings and position tables: variance 1/last dim).
Tensor random_weight(const std::string& name, const Shape& shape, DType dtype, uint64_t seed) {
  Tensor t = Tensor::empty(shape, DType::F32);
  float* p = t.data<float>();
  const int64_t n = t.numel();
  const bool is_gamma = ends_with(name, ".gamma") ||
                        (shape.size() == 1 && ends_with(name, ".weight") && name.find("norm") != std::string::npos) ||
                        name.find("img_emb.proj.0.weight") != std::string::npos ||
                        name.find("img_emb.proj.4.weight") != std::string::npos;
  if (is_gamma) {
    std::fill_n(p, n, 1.0f);
  } else if (ends_with(name, ".bias")) {
    std::fill_n(p, n, 0.0f);
  } else {
    int64_t fan_in = shape.size() >= 2 ? n / shape[0] : std::max<int64_t>(n, 1);
    if (name.find("embedding") != std::string::npos || name.find("emb_pos") != std::string::npos ||
        name.find("modulation") != std::string::npos)
      fan_in = shape.back();
    const float a = static_cast<float>(std::sqrt(3.0 / static_cast<double>(std::max<int64_t>(fan_in, 1))));
    const uint64_t base = mix(seed ^ name_hash(name));
    constexpr int64_t kChunk = 1 << 16;
    parallel_for((n + kChunk - 1) / kChunk, 1, [&](int64_t c0, int64_t c1) {
      for (int64_t c = c0; c < c1; ++c) {
        uint64_t state = mix(base + static_cast<uint64_t>(c));
        const int64_t end = std::min(n, (c + 1) * kChunk);
        for (int64_t i = c * kChunk; i < end; ++i) {
          state = mix(state);
          const float u = static_cast<float>(state >> 40) * 0x1.0p-24f;  // [0, 1)
          p[i] = a * (2.0f * u - 1.0f);
        }
      }
    });
  }
  return t.to(dtype);
}

std::vector<std::pair<std::string, Tensor>> make_weights(const WeightShapes& specs, DType dtype, uint64_t seed) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const auto& [name, shape] : specs) out.emplace_back(name, random_weight(name, shape, dtype, seed));
  return out;
}

}  // namespace ib
