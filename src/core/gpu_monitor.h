// The GPU's SM clock and board power, sampled on a thread while a benchmark runs. On the lent H200
// the DiT's forwards run at 660-693 W of a 700 W cap and the SM clock drops from 1.98 GHz to
// 1.5-1.8 GHz (bench/NOTES.md, version 24): a kernel's speed varies with the machine and the load
// by more than many changes save, so `inbetween bench` prints both beside each timed row.
// NVML is loaded at run time (libnvidia-ml.so.1 comes with the NVIDIA driver): where it is missing
// the monitor samples nothing and its summary says so. CUDA builds only (src/core/cuda/).
#pragma once

#include <atomic>
#include <string>
#include <thread>

namespace ib::cuda {

class GpuMonitor {
 public:
  struct Summary {
    int samples = 0;  // 0: NVML unavailable, or the run was shorter than one period
    double sm_mhz_mean = 0, sm_mhz_min = 0;
    double watts_mean = 0, watts_max = 0;
    std::string str() const;  // "SM 1.73 GHz (min 1.52), 681 W (max 693)", or "" without samples
  };

  // Starts sampling device `device` every `period_ms` milliseconds.
  explicit GpuMonitor(int device = 0, int period_ms = 50);
  ~GpuMonitor();
  GpuMonitor(const GpuMonitor&) = delete;
  GpuMonitor& operator=(const GpuMonitor&) = delete;

  // Stops sampling (once) and returns what was sampled.
  Summary stop();

 private:
  void run(int device, int period_ms);
  std::atomic<bool> stop_{false};
  Summary sum_;  // accumulated by the thread; read after it joins
  double sm_total_ = 0, watts_total_ = 0;
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace ib::cuda
