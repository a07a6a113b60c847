// Placeholder until the restricted unpickler lands: refuses every .pth file.
#include "io/pth.h"

namespace ib {

std::map<std::string, PthTensorRecord> parse_state_dict_pickle(const unsigned char*, size_t, const std::string& label) {
  fail("'{}': .pth reading is not implemented yet", label);
}

std::shared_ptr<PthFile> PthFile::open(const std::string& path) { fail("'{}': .pth reading is not implemented yet", path); }
bool PthFile::contains(const std::string& name) const { return tensors_.count(name) != 0; }
std::vector<std::string> PthFile::names() const { return {}; }
TensorInfo PthFile::info(const std::string& name) const { fail("tensor '{}' is missing", name); }
Tensor PthFile::get(const std::string& name) const { fail("tensor '{}' is missing", name); }
std::string PthFile::source(const std::string&) const { return file_ ? file_->path() : ""; }

}  // namespace ib
