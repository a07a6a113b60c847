// Placeholder until the model-folder loader lands.
#include "core/check.h"
#include "io/model_config.h"

namespace ib {

ModelFolder ModelFolder::open(const std::string& dir) { fail("'{}': model folder loading is not implemented yet", dir); }

}  // namespace ib
