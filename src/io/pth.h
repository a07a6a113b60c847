// PyTorch `.pth` zip checkpoints (torch.save of a state dict) through a restricted unpickler that
// understands only what a state dict needs and never executes anything.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "io/tensor_store.h"

namespace ib {

// One tensor as the pickle describes it: where its bytes live in the archive and how to view them.
struct PthTensorRecord {
  std::string storage_key;  // entry `<top>/data/<key>`
  DType dtype = DType::F32;
  int64_t storage_offset = 0;  // in elements
  Shape shape;
  std::vector<int64_t> stride;  // in elements
  int64_t storage_numel = 0;    // elements in the storage, as its persistent id declares
};

// Parses a state-dict pickle (protocol 2; the protocol 4/5 framing, memo and string opcodes too)
// into tensor records. Accepts only the opcodes and globals a state dict uses
// (torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter, torch.*Storage,
// collections.OrderedDict); anything else is refused with an error naming the opcode or global.
// Checks each tensor's extent against its storage's declared size. `label` names the file in errors.
// Never reads past `size`, never recurses, never calls anything.
std::map<std::string, PthTensorRecord> parse_state_dict_pickle(const unsigned char* data, size_t size,
                                                              const std::string& label);

class PthFile : public TensorStore {
 public:
  static std::shared_ptr<PthFile> open(const std::string& path);

  bool contains(const std::string& name) const override;
  std::vector<std::string> names() const override;
  TensorInfo info(const std::string& name) const override;
  // Zero-copy when the tensor is contiguous in its storage and suitably aligned; a copy otherwise.
  Tensor get(const std::string& name) const override;
  std::string source(const std::string& name) const override;

 private:
  struct Entry {
    size_t offset = 0;  // byte offset of the entry's data in the file
    size_t size = 0;
  };
  std::shared_ptr<MappedFile> file_;
  std::map<std::string, Entry> storages_;  // storage key -> stored zip entry
  std::map<std::string, PthTensorRecord> tensors_;
};

}  // namespace ib
