#include "ops/embedding.h"

#include "ops/dispatch.h"

namespace ib::ops {

Tensor embedding(const Tensor& table, const Tensor& ids) {
  IB_CHECK(table.dim() == 2 && dtype_is_float(table.dtype()), "embedding: table must be a 2-D float tensor, got {}",
           table.str());
  IB_CHECK(ids.dim() == 1 && (ids.dtype() == DType::I32 || ids.dtype() == DType::I64),
           "embedding: ids must be 1-D i32 or i64, got {}", ids.str());
  const Device d = same_device("embedding", {&table, &ids});
  Tensor out = Tensor::empty({ids.size(0), table.size(1)}, DType::F32, d);
  IB_DISPATCH(d, embedding, table, ids, out);
  return out;
}

}  // namespace ib::ops
