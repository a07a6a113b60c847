// Embedding lookup: rows of a table selected by integer ids.
#pragma once

#include "core/tensor.h"

namespace ib::ops {

// table: [V, D] any float dtype; ids: i32 or i64 [L] (each checked to be in [0, V)). Returns f32 [L, D].
Tensor embedding(const Tensor& table, const Tensor& ids);

namespace cpu {
void embedding(const Tensor& table, const Tensor& ids, const Tensor& out);
}
namespace cuda {
void embedding(const Tensor& table, const Tensor& ids, const Tensor& out);
}

}  // namespace ib::ops
