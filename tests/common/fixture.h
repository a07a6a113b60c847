// Shared test helpers: locating the fixture case (INBETWEEN_FIXTURE), opening its files, and
// comparing tensors against references with the README's tolerances (errors are printed, so the
// test log holds the measured numbers).
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "io/safetensors.h"

namespace ib::test {

// The fixture case folder: $INBETWEEN_FIXTURE (relative paths are taken from the repo root),
// else ../shared/fixtures/tiny-flf2v beside the repo.
std::string fixture_dir();
std::string fixture_path(const std::string& name);     // fixture_dir()/name
std::string model_dir();                                // fixture_dir()/model
std::shared_ptr<SafetensorsFile> open_fixture(const std::string& name);
std::string repo_root();
std::string binary_dir();  // the CMake build folder (holds the inbetween executable)
// A fresh empty temporary folder, removed at process exit.
std::string temp_dir();
// temp_dir()/name: a copy of the fixture's model folder (its files linked) whose DiT is one
// safetensors file holding `dit` (in that order). Returns the folder.
std::string model_with_dit(const std::string& name, const std::vector<std::pair<std::string, Tensor>>& dit);

struct Closeness {
  double max_abs_err = 0;
  double max_abs_ref = 0;
  double bound = 0;
  bool shape_ok = false;
};
// Max abs error of `actual` against `expected` (any float dtypes, converted to f32) and the bound
// rel * (1 + max|expected|).
Closeness compare(const Tensor& actual, const Tensor& expected, double rel);

// Asserts shape equality and max_abs_err <= rel * (1 + max|ref|); prints the measured error.
::testing::AssertionResult tensors_close(const char* a_expr, const char* e_expr, const char* r_expr,
                                         const Tensor& actual, const Tensor& expected, double rel);
// Asserts shape equality and max_abs_err <= abs_bound.
::testing::AssertionResult tensors_close_abs(const char* a_expr, const char* e_expr, const char* r_expr,
                                             const Tensor& actual, const Tensor& expected, double abs_bound);

// sqrt(sum (a - b)^2 / sum b^2) over two host f32 tensors of one size: a's rms distance from b,
// relative to b's rms.
double relative_rms(const Tensor& a, const Tensor& b);

// A tensor of normal(mean, sd) values from std::mt19937(seed): the random inputs of the op tests.
Tensor random_tensor(const Shape& shape, uint32_t seed, float sd = 1.0f, float mean = 0.0f);

// Component tolerance from the fixture README: 1e-4 x (1 + max|ref|).
constexpr double kComponentRel = 1e-4;

}  // namespace ib::test

#define EXPECT_TENSOR_CLOSE(actual, expected, rel) \
  EXPECT_PRED_FORMAT3(::ib::test::tensors_close, actual, expected, rel)
#define EXPECT_TENSOR_CLOSE_ABS(actual, expected, bound) \
  EXPECT_PRED_FORMAT3(::ib::test::tensors_close_abs, actual, expected, bound)
