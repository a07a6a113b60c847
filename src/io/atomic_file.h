// Writes a file so that it appears only when complete: data goes to a temporary file beside the
// target, which commit() renames into place. Without commit() the temporary file is removed.
#pragma once

#include <cstdio>
#include <string>

namespace ib {

class AtomicFile {
 public:
  explicit AtomicFile(std::string path);  // throws when the folder is not writable
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t bytes);
  void commit();
  const std::string& temp_path() const { return temp_; }

 private:
  std::string path_, temp_;
  std::FILE* f_ = nullptr;
  bool committed_ = false;
};

}  // namespace ib
