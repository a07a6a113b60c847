#include "core/log.h"

#include <spdlog/sinks/stdout_color_sinks.h>

#include <cstdlib>
#include <mutex>

namespace ib {

void init_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    auto logger = spdlog::stderr_color_mt("inbetween");
    logger->set_pattern("[%H:%M:%S.%e] %^%l%$ %v");
    spdlog::set_default_logger(logger);
    spdlog::set_level(spdlog::level::info);
    if (const char* lvl = std::getenv("INBETWEEN_LOG")) spdlog::set_level(spdlog::level::from_str(lvl));
  });
}

void set_log_level(const std::string& level) {
  init_logging();
  spdlog::set_level(spdlog::level::from_str(level));
}

}  // namespace ib
