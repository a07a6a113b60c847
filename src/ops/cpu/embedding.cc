// CPU embedding lookup: each selected row is widened to f32; ids are bounds-checked first.
#include <vector>

#include "core/parallel.h"
#include "ops/embedding.h"

namespace ib::ops::cpu {

void embedding(const Tensor& table, const Tensor& ids, const Tensor& out) {
  const int64_t V = table.size(0), D = table.size(1), L = ids.size(0);
  std::vector<int64_t> idx(static_cast<size_t>(L));
  for (int64_t i = 0; i < L; ++i) {
    const int64_t id = ids.dtype() == DType::I32 ? ids.data<int32_t>()[i] : ids.data<int64_t>()[i];
    IB_CHECK(id >= 0 && id < V, "embedding: id {} at position {} is outside the table's {} rows", id, i, V);
    idx[static_cast<size_t>(i)] = id;
  }
  const size_t esz = dtype_size(table.dtype());
  const auto* src = static_cast<const char*>(table.raw());
  float* dst = out.data<float>();
  parallel_for(L, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      convert_to_f32(src + static_cast<size_t>(idx[static_cast<size_t>(i)] * D) * esz, table.dtype(), dst + i * D,
                     static_cast<size_t>(D));
  });
}

}  // namespace ib::ops::cpu
