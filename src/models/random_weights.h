// Random weights for a weight list (models/<model>.h), the synthetic models' init: uniform with the
// variance of PyTorch's default init scale (1/fan_in), norms and gammas one, biases zero; made in
// parallel on the CPU, the same for a given seed and name. For synthetic model folders, benchmarks
// and tests.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/tensor_store.h"

namespace ib {

// One tensor of the list, by its name (its kind: norm, bias, embedding) and shape.
Tensor random_weight(const std::string& name, const Shape& shape, DType dtype, uint64_t seed);
// All of them.
std::vector<std::pair<std::string, Tensor>> make_weights(const WeightShapes& specs, DType dtype, uint64_t seed);

}  // namespace ib
