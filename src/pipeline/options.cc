// The named options' parse and name functions (inbetween/pipeline.h): one table per option, the
// only place its names are spelt. The front ends (CLI flags, HTTP fields, job.json) parse through
// these; the library takes the enums.
#include <array>
#include <fmt/format.h>
#include <utility>

#include "inbetween/error.h"
#include "inbetween/pipeline.h"

namespace ib {
namespace {

template <class E, size_t N>
using Names = std::array<std::pair<E, const char*>, N>;

constexpr Names<ComputeDevice, 2> kDevices{{{ComputeDevice::CPU, "cpu"}, {ComputeDevice::CUDA, "cuda"}}};
constexpr Names<Precision, 3> kPrecisions{{{Precision::BF16, "bf16"}, {Precision::FP8, "fp8"}, {Precision::F32, "f32"}}};
constexpr Names<T5Placement, 3> kT5Placements{
    {{T5Placement::Auto, "auto"}, {T5Placement::CPU, "cpu"}, {T5Placement::CUDA, "cuda"}}};
constexpr Names<Solver, 3> kSolvers{{{Solver::UniPC, "unipc"}, {Solver::DpmPP, "dpm++"}, {Solver::Euler, "euler"}}};
constexpr Names<LastFrameFit, 2> kFits{{{LastFrameFit::Cover, "cover"}, {LastFrameFit::Upstream, "upstream"}}};
constexpr Names<AttentionPrecision, 2> kAttentions{{{AttentionPrecision::BF16, "bf16"}, {AttentionPrecision::FP8, "fp8"}}};

// At most 48 bytes of a refused value go into the message (a client may send megabytes).
std::string quoted(std::string_view value) {
  constexpr size_t kMax = 48;
  if (value.size() <= kMax) return fmt::format("'{}'", value);
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xc0) == 0x80) --cut;  // not inside a UTF-8 character
  return fmt::format("'{}...' ({} bytes)", value.substr(0, cut), value.size());
}

// "unknown precision 'fp16' (expected bf16, fp8 or f32)", as an OptionError for `field`.
template <class E, size_t N>
E parse(const Names<E, N>& names, const char* field, std::string_view value) {
  for (const auto& [e, name] : names)
    if (value == name) return e;
  std::string list;
  for (size_t i = 0; i < N; ++i) list += fmt::format("{}{}", i == 0 ? "" : i + 1 == N ? " or " : ", ", names[i].second);
  throw OptionError(field, fmt::format("unknown {} {} (expected {})", field, quoted(value), list));
}

template <class E, size_t N>
const char* name_of(const Names<E, N>& names, E e) {
  for (const auto& [v, name] : names)
    if (v == e) return name;
  return "?";
}

}  // namespace

ComputeDevice parse_device(std::string_view name) { return parse(kDevices, "device", name); }
Precision parse_precision(std::string_view name) { return parse(kPrecisions, "precision", name); }
T5Placement parse_t5_placement(std::string_view name) { return parse(kT5Placements, "t5_device", name); }
Solver parse_solver(std::string_view name) { return parse(kSolvers, "solver", name); }
LastFrameFit parse_last_frame_fit(std::string_view name) { return parse(kFits, "last_frame_fit", name); }
AttentionPrecision parse_attention(std::string_view name) { return parse(kAttentions, "attention", name); }

const char* device_option_name(ComputeDevice d) { return name_of(kDevices, d); }
const char* precision_name(Precision p) { return name_of(kPrecisions, p); }
const char* t5_placement_name(T5Placement p) { return name_of(kT5Placements, p); }
const char* solver_name(Solver s) { return name_of(kSolvers, s); }
const char* last_frame_fit_name(LastFrameFit f) { return name_of(kFits, f); }
const char* attention_name(AttentionPrecision a) { return name_of(kAttentions, a); }

}  // namespace ib
