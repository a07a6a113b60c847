// The server's data folder: one folder per job, DATA/jobs/<id>/ holding job.json, the two
// uploaded images (first.<ext>, last.<ext>) and video.mp4. Every file is written atomically
// (temporary file + rename), so a crash leaves either the old or the new version.
// Only ids made here (random hex) and fixed file names ever form a path.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "job.h"

namespace ib::server {

// 32 lowercase hex digits.
bool valid_job_id(std::string_view id);
// "png", "jpg" or "webp" from the leading bytes; empty when none of them.
std::string image_extension(std::string_view data);
// The length of the PNG, JPEG or WebP image at the start of `data`: anything after its end (junk
// appended to an upload) is not part of it. data.size() when the end is not found.
size_t image_length(std::string_view data);

class JobStore {
 public:
  explicit JobStore(std::string root);  // creates root/jobs when missing

  // A fresh random id whose (new, empty) folder now exists.
  std::string create_job_dir();
  std::string job_dir(const std::string& id) const;  // id must be valid_job_id
  std::string video_path(const std::string& id) const;

  void save(const Job& job) const;  // job.json
  void write_file(const std::string& id, const std::string& name, std::string_view data) const;
  void remove_job(const std::string& id) const;

  // Every job whose job.json parses (and whose folder name is its id), oldest first. Removes what
  // a crash left: folders without job.json and temporary files of unfinished writes.
  std::vector<Job> load_all() const;

  // Bytes of the job folders, as of the last write or removal here (refresh() after files that
  // are written elsewhere, like the video).
  uint64_t usage() const;
  void refresh(const std::string& id) const;

  const std::string& root() const { return root_; }

 private:
  std::string root_, jobs_;
  mutable std::mutex usage_mu_;
  mutable std::map<std::string, uint64_t> sizes_;  // per job folder
  mutable uint64_t usage_ = 0;
};

}  // namespace ib::server
