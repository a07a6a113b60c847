// expect_error(fn, {parts...}): asserts that fn throws ib::Error whose message contains every part
// (a bad-input test must say which problem it expects, not only that something threw).
// error_message(fn): the message of the ib::Error fn throws, "" when it throws none.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "inbetween/error.h"

namespace ib::test {

template <typename Fn>
void expect_error(Fn&& fn, const std::vector<std::string>& parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown; expected one mentioning '" << (parts.empty() ? "" : parts.front()) << "'";
  } catch (const Error& e) {
    const std::string msg = e.what();
    for (const auto& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nlacks: " << p;
  }
}

template <typename Fn>
std::string error_message(Fn&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace ib::test
