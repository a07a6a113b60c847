// See scaled_fp8_store.h.
#include "io/scaled_fp8_store.h"

#include <algorithm>

#include "core/check.h"
#include "core/dtype.h"

namespace ib {
namespace {

bool is_fp8(DType t) { return t == DType::F8E4M3 || t == DType::F8E5M2; }

}  // namespace

ScaledFp8Store::ScaledFp8Store(std::shared_ptr<TensorStore> base) : base_(std::move(base)) {
  IB_CHECK(base_ != nullptr, "ScaledFp8Store: no checkpoint");
  for (const std::string& name : base_->names()) {
    if (!name.ends_with(".weight")) continue;
    const TensorInfo weight = base_->info(name);
    if (!is_fp8(weight.dtype)) continue;
    const std::string stem = name.substr(0, name.size() - 7);
    const Shape& w_shape = weight.shape;
    std::string scale;
    for (const char* suffix : {".scale_weight", ".weight_scale"}) {
      if (!base_->contains(stem + suffix)) continue;
      IB_CHECK(scale.empty(), "fp8 weight '{}' in {} has two scales, '{}' and '{}'", name, base_->source(name), scale,
               stem + suffix);
      scale = stem + suffix;
    }
    if (!scale.empty()) {
      const TensorInfo s = base_->info(scale);
      const int64_t n = shape_numel(s.shape);
      const int64_t out = w_shape.empty() ? 1 : w_shape[0];
      const bool per_tensor = n == 1;
      const bool per_channel = n == out && !s.shape.empty() && s.shape[0] == out;
      IB_CHECK(dtype_is_float(s.dtype) && !is_fp8(s.dtype) && (per_tensor || per_channel),
               "fp8 weight '{}' {} in {}: its scale '{}' is {} {}; expected one value or one per output channel "
               "([{}] or [{}, 1]) in a float type",
               name, shape_str(w_shape), base_->source(name), scale, dtype_name(s.dtype), shape_str(s.shape), out, out);
      hidden_.push_back(scale);
    }
    for (const char* input_scale : {".scale_input", ".input_scale"})
      if (base_->contains(stem + input_scale)) hidden_.push_back(stem + input_scale);
    scale_of_.emplace(name, scale);
  }
  if (base_->contains("scaled_fp8") && !scale_of_.empty()) hidden_.push_back("scaled_fp8");
  std::sort(hidden_.begin(), hidden_.end());
  // A weight scale whose weight is not in fp8 would be dropped silently: refuse it, naming it.
  for (const std::string& name : base_->names())
    for (const std::string suffix : {".scale_weight", ".weight_scale"}) {
      if (!name.ends_with(suffix) || std::binary_search(hidden_.begin(), hidden_.end(), name)) continue;
      const std::string weight = name.substr(0, name.size() - suffix.size()) + ".weight";
      fail("checkpoint {}: '{}' is the scale of no float8 weight ('{}' is {})", base_->source(name), name, weight,
           base_->contains(weight) ? dtype_name(base_->info(weight).dtype) : "absent");
    }
}

bool ScaledFp8Store::contains(const std::string& name) const {
  return base_->contains(name) && !std::binary_search(hidden_.begin(), hidden_.end(), name);
}

std::vector<std::string> ScaledFp8Store::names() const {
  std::vector<std::string> v;
  for (std::string& n : base_->names())
    if (!std::binary_search(hidden_.begin(), hidden_.end(), n)) v.push_back(std::move(n));
  return v;
}

TensorInfo ScaledFp8Store::info(const std::string& name) const {
  IB_CHECK(contains(name), "tensor '{}' is missing from {}", name, base_->source(name));
  TensorInfo i = base_->info(name);
  if (scale_of_.count(name)) i.dtype = DType::F32;
  return i;
}

void ScaledFp8Store::release(const std::string& name) const {
  base_->release(name);
  auto it = scale_of_.find(name);
  if (it != scale_of_.end() && !it->second.empty()) base_->release(it->second);
}

Tensor ScaledFp8Store::get(const std::string& name) const {
  IB_CHECK(contains(name), "tensor '{}' is missing from {}", name, base_->source(name));
  const auto it = scale_of_.find(name);
  if (it == scale_of_.end()) return base_->get(name);
  Tensor w = base_->get(name).to(DType::F32);  // the codes' exact values
  if (it->second.empty()) return w;
  const Tensor s = base_->get(it->second).to(DType::F32);
  float* p = w.data<float>();
  const float* sp = s.data<float>();
  const int64_t n = w.numel();
  if (s.numel() == 1) {
    for (int64_t i = 0; i < n; ++i) p[i] *= sp[0];
  } else {
    const int64_t rows = s.numel(), cols = n / rows;
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c) p[r * cols + c] *= sp[r];
  }
  return w;
}

std::shared_ptr<TensorStore> with_fp8_dequantisation(std::shared_ptr<TensorStore> base) {
  for (const std::string& name : base->names())
    if (is_fp8(base->info(name).dtype)) return std::make_shared<ScaledFp8Store>(std::move(base));
  return base;
}

}  // namespace ib
