// GpuMonitor (core/gpu_monitor.h) on NVML, loaded with dlopen: five entry points of its stable C
// API, declared here with NVML's own signatures (nvml.h: nvmlReturn_t is an int enum, nvmlDevice_t
// an opaque pointer, NVML_CLOCK_SM = 1, power in milliwatts).
#include "core/gpu_monitor.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <algorithm>
#include <chrono>

namespace ib::cuda {

namespace {

using NvmlDevice = void*;
struct Nvml {
  int (*init)() = nullptr;
  int (*handle)(unsigned, NvmlDevice*) = nullptr;
  int (*clock)(NvmlDevice, int, unsigned*) = nullptr;
  int (*power)(NvmlDevice, unsigned*) = nullptr;
  bool ok = false;
};

// Loaded and initialised once per process (never unloaded).
const Nvml& nvml() {
  static const Nvml n = [] {
    Nvml r;
    void* lib = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr) return r;
    r.init = reinterpret_cast<int (*)()>(dlsym(lib, "nvmlInit_v2"));
    r.handle = reinterpret_cast<int (*)(unsigned, NvmlDevice*)>(dlsym(lib, "nvmlDeviceGetHandleByIndex_v2"));
    r.clock = reinterpret_cast<int (*)(NvmlDevice, int, unsigned*)>(dlsym(lib, "nvmlDeviceGetClockInfo"));
    r.power = reinterpret_cast<int (*)(NvmlDevice, unsigned*)>(dlsym(lib, "nvmlDeviceGetPowerUsage"));
    r.ok = r.init && r.handle && r.clock && r.power && r.init() == 0;
    return r;
  }();
  return n;
}

constexpr int kNvmlClockSm = 1;

}  // namespace

std::string GpuMonitor::Summary::str() const {
  if (samples == 0) return "";
  return fmt::format("SM {:.2f} GHz (min {:.2f}), {:.0f} W (max {:.0f})", sm_mhz_mean / 1000.0, sm_mhz_min / 1000.0,
                     watts_mean, watts_max);
}

GpuMonitor::GpuMonitor(int device, int period_ms) {
  if (!nvml().ok) return;
  thread_ = std::thread([this, device, period_ms] { run(device, period_ms); });
}

GpuMonitor::~GpuMonitor() { (void)stop(); }

void GpuMonitor::run(int device, int period_ms) {
  const Nvml& n = nvml();
  NvmlDevice d = nullptr;
  if (n.handle(static_cast<unsigned>(device), &d) != 0) return;
  while (!stop_.load()) {
    unsigned mhz = 0, mw = 0;
    if (n.clock(d, kNvmlClockSm, &mhz) == 0 && n.power(d, &mw) == 0) {
      const double w = mw / 1000.0;
      sum_.sm_mhz_min = sum_.samples == 0 ? mhz : std::min(sum_.sm_mhz_min, static_cast<double>(mhz));
      sum_.watts_max = std::max(sum_.watts_max, w);
      sm_total_ += mhz;
      watts_total_ += w;
      ++sum_.samples;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(period_ms));
  }
}

GpuMonitor::Summary GpuMonitor::stop() {
  if (!stopped_) {
    stopped_ = true;
    stop_.store(true);
    if (thread_.joinable()) thread_.join();
    if (sum_.samples > 0) {
      sum_.sm_mhz_mean = sm_total_ / sum_.samples;
      sum_.watts_mean = watts_total_ / sum_.samples;
    }
  }
  return sum_;
}

}  // namespace ib::cuda
