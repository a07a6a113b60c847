#include "common/fixture.h"

#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <random>

namespace ib::test {

namespace fs = std::filesystem;

std::string repo_root() { return IB_REPO_ROOT; }
std::string binary_dir() {
  const char* env = std::getenv("INBETWEEN_BINARY_DIR");  // the build copied to another machine
  return env != nullptr && *env != '\0' ? std::string(env) : std::string(IB_BINARY_DIR);
}

std::string fixture_dir() {
  const char* env = std::getenv("INBETWEEN_FIXTURE");
  fs::path p = (env && *env) ? fs::path(env) : fs::path("../shared/fixtures/tiny-flf2v");
  if (p.is_relative()) p = fs::path(repo_root()) / p;
  return fs::weakly_canonical(p).string();
}

std::string fixture_path(const std::string& name) { return (fs::path(fixture_dir()) / name).string(); }
std::string model_dir() { return fixture_path("model"); }

std::shared_ptr<SafetensorsFile> open_fixture(const std::string& name) { return SafetensorsFile::open(fixture_path(name)); }

namespace {
std::vector<std::string>& temp_dirs() {
  static auto* dirs = new std::vector<std::string>();  // leaked: read by the exit handler
  return *dirs;
}
void remove_temp_dirs() {
  std::error_code ec;
  for (const auto& d : temp_dirs()) fs::remove_all(d, ec);
}
}  // namespace

std::string temp_dir() {
  if (temp_dirs().empty()) std::atexit(remove_temp_dirs);
  std::string templ = (fs::temp_directory_path() / "inbetween-test-XXXXXX").string();
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  temp_dirs().push_back(templ);
  return templ;
}

Tensor random_tensor(const Shape& shape, uint32_t seed, float sd, float mean) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> nd(mean, sd);
  Tensor t = Tensor::empty(shape, DType::F32);
  float* p = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = nd(rng);
  return t;
}

double relative_rms(const Tensor& a, const Tensor& b) {
  IB_CHECK(a.numel() == b.numel() && a.dtype() == DType::F32 && b.dtype() == DType::F32,
           "relative_rms: two f32 tensors of one size expected, got {} and {}", a.str(), b.str());
  double d = 0, r = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double u = a.data<float>()[i], v = b.data<float>()[i];
    d += (u - v) * (u - v);
    r += v * v;
  }
  return std::sqrt(d / r);
}

Closeness compare(const Tensor& actual, const Tensor& expected, double rel) {
  Closeness c;
  c.shape_ok = actual.shape() == expected.shape();
  if (!c.shape_ok) return c;
  const Tensor a = actual.to(Device::CPU).to(DType::F32), e = expected.to(Device::CPU).to(DType::F32);
  const float* ap = a.data<float>();
  const float* ep = e.data<float>();
  for (int64_t i = 0; i < a.numel(); ++i) {
    const double err = std::fabs(static_cast<double>(ap[i]) - ep[i]);
    c.max_abs_err = std::isnan(err) ? INFINITY : std::max(c.max_abs_err, err);
    c.max_abs_ref = std::max(c.max_abs_ref, std::fabs(static_cast<double>(ep[i])));
  }
  c.bound = rel * (1.0 + c.max_abs_ref);
  return c;
}

namespace {
::testing::AssertionResult judge(const char* a_expr, const char* e_expr, const Tensor& actual, const Tensor& expected,
                                 const Closeness& c) {
  if (!c.shape_ok)
    return ::testing::AssertionFailure() << a_expr << " has shape " << actual.str() << " but " << e_expr << " has "
                                         << expected.str();
  std::printf("[measured] %s vs %s: max_abs_err=%.3g (max|ref|=%.3g, bound=%.3g)\n", a_expr, e_expr, c.max_abs_err,
              c.max_abs_ref, c.bound);
  if (c.max_abs_err <= c.bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << a_expr << " differs from " << e_expr << ": max abs error " << c.max_abs_err
                                       << " > bound " << c.bound << " (max|ref| " << c.max_abs_ref << ")";
}
}  // namespace

::testing::AssertionResult tensors_close(const char* a_expr, const char* e_expr, const char*, const Tensor& actual,
                                         const Tensor& expected, double rel) {
  return judge(a_expr, e_expr, actual, expected, compare(actual, expected, rel));
}

::testing::AssertionResult tensors_close_abs(const char* a_expr, const char* e_expr, const char*, const Tensor& actual,
                                             const Tensor& expected, double abs_bound) {
  Closeness c = compare(actual, expected, 0.0);
  c.bound = abs_bound;
  return judge(a_expr, e_expr, actual, expected, c);
}

std::string model_with_dit(const std::string& name, const std::vector<std::pair<std::string, Tensor>>& dit) {
  const std::filesystem::path dir = std::filesystem::path(temp_dir()) / name;
  std::filesystem::create_directories(dir);
  for (const auto& e : std::filesystem::directory_iterator(model_dir())) {
    const std::string file = e.path().filename().string();
    if (file.rfind("diffusion_pytorch_model", 0) == 0) continue;
    std::filesystem::create_symlink(std::filesystem::absolute(e.path()), dir / file);
  }
  save_safetensors((dir / "diffusion_pytorch_model.safetensors").string(), dit);
  return dir.string();
}

}  // namespace ib::test
