#include "io/atomic_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/check.h"

namespace ib {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  const std::filesystem::path p(path_);
  const std::string dir = p.has_parent_path() ? p.parent_path().string() : ".";
  std::string templ = dir + "/." + p.filename().string() + ".partial-XXXXXX";
  const int fd = ::mkstemp(templ.data());
  IB_CHECK(fd >= 0, "cannot write '{}': {}", path_, std::strerror(errno));
  temp_ = templ;
  f_ = ::fdopen(fd, "wb");
  if (f_ == nullptr) {
    ::close(fd);
    std::remove(temp_.c_str());
    fail("cannot write '{}': {}", path_, std::strerror(errno));
  }
}

AtomicFile::~AtomicFile() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_) std::remove(temp_.c_str());
}

void AtomicFile::write(const void* data, size_t bytes) {
  IB_CHECK(f_ != nullptr && !committed_, "write to a closed file '{}'", path_);
  if (bytes == 0) return;
  IB_CHECK(std::fwrite(data, 1, bytes, f_) == bytes, "writing '{}' failed: {}", path_, std::strerror(errno));
}

void AtomicFile::commit() {
  IB_CHECK(f_ != nullptr && !committed_, "commit of a closed file '{}'", path_);
  const bool ok = std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
  const int e = errno;
  std::fclose(f_);
  f_ = nullptr;
  IB_CHECK(ok, "writing '{}' failed: {}", path_, std::strerror(e));
  ::chmod(temp_.c_str(), 0644);
  IB_CHECK(std::rename(temp_.c_str(), path_.c_str()) == 0, "cannot move '{}' into place: {}", path_,
           std::strerror(errno));
  committed_ = true;
}

}  // namespace ib
