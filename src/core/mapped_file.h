// Read-only memory map of a whole file. Shared so tensors borrowed from it keep it mapped.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

namespace ib {

class MappedFile {
 public:
  // Throws ib::Error naming the path when the file is missing or cannot be mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const unsigned char* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }
  // Drops this process's pages of bytes [offset, offset + bytes) that were read (whole pages
  // inside the range; madvise MADV_DONTNEED): they leave the resident set, and a later read maps
  // them again from the file (or the page cache). For data read once, such as weights on their
  // way to the GPU.
  void release(size_t offset, size_t bytes) const;

 private:
  MappedFile() = default;
  const unsigned char* data_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

}  // namespace ib
