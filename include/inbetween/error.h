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

// An option that Pipeline::validate() or estimate() refuses, or a name that a parse function of
// inbetween/pipeline.h does not know. field() is the option's member name in GenerateOptions
// ("frames", "steps", "shift", "guidance", "solver", "timesteps", "width" for an explicit size,
// "max_area", "last_frame_fit", "first_image", "last_image", "init_noise", "loras") or
// PipelineOptions ("device", "precision", "t5_device"), so a front end names its own flag or form
// field without reading the message.
class OptionError : public Error {
 public:
  OptionError(std::string field, const std::string& what) : Error(what), field_(std::move(field)) {}
  const std::string& field() const { return field_; }

 private:
  std::string field_;
};

// Thrown when a long-running job is cancelled through its progress callback.
class Cancelled : public Error {
 public:
  Cancelled() : Error("cancelled") {}
};

}  // namespace ib
