// The one exception type the library throws. Messages say what was wrong and where
// (file, tensor, option), so front ends can print them as they are.
#pragma once

#include <stdexcept>
#include <string>

namespace ib {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Thrown when a long-running job is cancelled through its progress callback.
class Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled") {}
};

}  // namespace ib
