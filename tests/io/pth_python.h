// An independent reader of PyTorch .pth archives for the tests: Python's zipfile (CRCs, names) and
// pickle with a restricted unpickler standing in for torch's globals. python3 is a test dependency
// (scripts/setup.sh installs it); without it the tests that use this fail, they do not skip.
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "common/fixture.h"
#include "core/tensor.h"

namespace ib::test {

inline std::string run_capture(const std::string& cmd, int* status) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) {
    *status = -1;
    return out;
  }
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  *status = ::pclose(p);
  return out;
}

inline bool have_python() {
  int status = 0;
  run_capture("python3 -c 'import zipfile, pickle, pickletools' >/dev/null 2>&1", &status);
  return status == 0;
}

// Reads the archive as torch.load would. Prints {top, names, dict_type (of the state dict: dict or
// OrderedDict), version, byteorder, tensors: [{key, storage: [tag, class, key, location, numel],
// offset, size, stride, requires_grad, data}]} with `data` the hex of the tensor's whole storage,
// in the pickle's order.
constexpr const char* kReadPthScript = R"PY(
import collections, io, json, pickle, pickletools, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None, 'bad CRC'
names = z.namelist()
top = names[0].split('/')[0]
assert all(n.startswith(top + '/') for n in names), names
assert all(i.compress_type == zipfile.ZIP_STORED for i in z.infolist())
pkl = z.read(top + '/data.pkl')
pickletools.dis(pkl, out=io.StringIO())
class U(pickle.Unpickler):
    def find_class(self, mod, name):
        if (mod, name) == ('collections', 'OrderedDict'): return collections.OrderedDict
        if (mod, name) == ('torch._utils', '_rebuild_tensor_v2'): return lambda *a: a
        if mod == 'torch' and name.endswith('Storage'): return 'torch.' + name
        raise pickle.UnpicklingError(mod + '.' + name)
    def persistent_load(self, pid):
        assert type(pid) is tuple
        return list(pid)
sd = U(io.BytesIO(pkl)).load()
assert isinstance(sd, dict)
tensors = []
for k, args in sd.items():
    st, off, size, stride, rg, hooks = args
    assert type(size) is tuple and type(stride) is tuple
    assert type(hooks) is collections.OrderedDict and not hooks
    data = z.read(top + '/data/' + st[2])
    tensors.append({'key': k, 'storage': st, 'offset': off, 'size': list(size), 'stride': list(stride),
                    'requires_grad': rg, 'data': data.hex()})
print(json.dumps({'top': top, 'names': names, 'dict_type': type(sd).__name__, 'version': z.read(top + '/version').decode(),
                  'byteorder': z.read(top + '/byteorder').decode(), 'tensors': tensors}))
)PY";

// The archive as Python reads it (see kReadPthScript); a failure and an empty object when python3
// is missing or cannot read it.
inline nlohmann::json python_read_pth(const std::string& path) {
  if (!have_python()) {
    ADD_FAILURE() << "python3 (with zipfile, pickle, pickletools) is needed to check .pth files; "
                     "scripts/setup.sh installs it";
    return nlohmann::json::object();
  }
  const std::string script = temp_dir() + "/read_pth.py";
  std::ofstream(script) << kReadPthScript;
  int status = 0;
  const std::string out = run_capture("python3 '" + script + "' '" + path + "'", &status);
  if (status != 0) {
    ADD_FAILURE() << "python3 could not read " << path << ": " << out;
    return nlohmann::json::object();
  }
  return nlohmann::json::parse(out);
}

inline std::string hex(const void* data, size_t bytes) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  s.reserve(2 * bytes);
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) {
    s += digits[p[i] >> 4];
    s += digits[p[i] & 15];
  }
  return s;
}
inline std::string hex(const Tensor& t) { return t.nbytes() ? hex(t.raw(), t.nbytes()) : std::string(); }

}  // namespace ib::test
