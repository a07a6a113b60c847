// Checks that throw ib::Error with a formatted message. Library code never aborts.
#pragma once

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "inbetween/error.h"

namespace ib {

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ib

// IB_CHECK(cond, "format {}", args...): throws ib::Error with the message when cond is false.
#define IB_CHECK(cond, ...)        \
  do {                             \
    if (!(cond)) ::ib::fail(__VA_ARGS__); \
  } while (0)
