// Logging to stderr through spdlog. Levels: debug, info, warn, error; INBETWEEN_LOG sets the level.
#pragma once

#include <spdlog/spdlog.h>

namespace ib {

// Configures the default logger once (stderr, short pattern). Safe to call repeatedly.
void init_logging();
void set_log_level(const std::string& level);  // "debug", "info", "warn", "error", "off"

}  // namespace ib
