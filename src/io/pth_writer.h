// Writes PyTorch `.pth` zip checkpoints (what torch.save of a state dict produces) so that
// torch.load and ib::PthFile can read them: a stored (uncompressed) ZIP with `<stem>/data.pkl`
// (pickle protocol 2), `<stem>/byteorder`, `<stem>/data/<n>` (raw bytes, 64-byte aligned) and
// `<stem>/version`. Zip64 records are used for entries or offsets past 4 GiB.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace ib {

// Writes `tensors` (f32, f16 or bf16, any device, copied to the CPU) as an OrderedDict in key
// order, one storage per tensor, atomically (a temporary file renamed into place). The archive's
// top folder is the file stem (characters outside [A-Za-z0-9._-] become '_'; "archive" when empty).
// Throws ib::Error on an undefined tensor, another dtype, a duplicate key or an I/O failure.
void save_pth(const std::string& path, const std::vector<std::pair<std::string, Tensor>>& tensors);

namespace detail {
// As save_pth, but with zip64 records for every entry and the end of the archive even when
// nothing needs them: lets tests check the zip64 layout without writing 4 GiB.
void save_pth_forced_zip64(const std::string& path,
                           const std::vector<std::pair<std::string, Tensor>>& tensors);
}  // namespace detail

}  // namespace ib
