#include "job_store.h"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "core/log.h"
#include "inbetween/error.h"
#include "io/atomic_file.h"

namespace ib::server {

namespace fs = std::filesystem;

bool valid_job_id(std::string_view id) {
  return id.size() == 32 &&
         std::all_of(id.begin(), id.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

std::string image_extension(std::string_view d) {
  if (d.size() >= 8 && d.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8)) return "png";
  if (d.size() >= 3 && d.substr(0, 3) == std::string_view("\xff\xd8\xff", 3)) return "jpg";
  if (d.size() >= 12 && d.substr(0, 4) == "RIFF" && d.substr(8, 4) == "WEBP") return "webp";
  return "";
}

namespace {

bool allowed_image_name(const std::string& name) {
  for (const char* base : {"first.", "last."})
    for (const char* ext : {"png", "jpg", "webp"})
      if (name == std::string(base) + ext) return true;
  // A story's keyframes: keyframe-NN.ext.
  for (const char* ext : {"png", "jpg", "webp"})
    if (name.size() == 12 + std::strlen(ext) && name.rfind("keyframe-", 0) == 0 && std::isdigit(static_cast<unsigned char>(name[9])) &&
        std::isdigit(static_cast<unsigned char>(name[10])) && name.compare(11, std::string::npos, std::string(".") + ext) == 0)
      return true;
  return false;
}

}  // namespace

JobStore::JobStore(std::string root) : root_(std::move(root)), jobs_((fs::path(root_) / "jobs").string()) {
  std::error_code ec;
  fs::create_directories(jobs_, ec);
  if (ec) throw Error("data dir: cannot create '" + jobs_ + "': " + ec.message());
}

std::string JobStore::create_job_dir() {
  static thread_local std::mt19937_64 rng{[] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }()};
  // Mixed with a fresh random_device draw each time, so ids are unpredictable across threads.
  std::random_device rd;
  for (int attempt = 0; attempt < 16; ++attempt) {
    char buf[33];
    for (int half = 0; half < 2; ++half) {
      const uint64_t v = rng() ^ (uint64_t{rd()} << 32 | rd());
      std::snprintf(buf + half * 16, 17, "%016llx", static_cast<unsigned long long>(v));
    }
    const std::string id(buf, 32);
    const std::string dir = job_dir(id);
    if (::mkdir(dir.c_str(), 0755) == 0) return id;
    if (errno != EEXIST) throw Error("data dir: cannot create '" + dir + "': " + std::strerror(errno));
  }
  throw Error("data dir: could not make a unique job id");
}

std::string JobStore::job_dir(const std::string& id) const {
  if (!valid_job_id(id)) throw Error("invalid job id");
  return (fs::path(jobs_) / id).string();
}

std::string JobStore::video_path(const std::string& id) const { return (fs::path(job_dir(id)) / "video.mp4").string(); }

void JobStore::save(const Job& job) const {
  write_file(job.id, "job.json", job_to_disk_json(job).dump(2) + "\n");
}

void JobStore::write_file(const std::string& id, const std::string& name, std::string_view data) const {
  AtomicFile f((fs::path(job_dir(id)) / name).string());
  f.write(data.data(), data.size());
  f.commit();
}

void JobStore::remove_job(const std::string& id) const {
  std::error_code ec;
  fs::remove_all(job_dir(id), ec);
  if (ec) spdlog::warn("cannot remove job folder {}: {}", id, ec.message());
}

std::vector<Job> JobStore::load_all() const {
  std::vector<Job> jobs;
  std::vector<std::string> orphans;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(jobs_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !valid_job_id(name)) continue;
    const fs::path file = entry.path() / "job.json";
    std::ifstream in(file, std::ios::binary);
    if (!in) {
      // A submission that was never acknowledged (the server stopped while storing it).
      spdlog::warn("job {}: no job.json (an unfinished upload), removed", name);
      orphans.push_back(name);
      continue;
    }
    std::stringstream ss;
    ss << in.rdbuf();
    try {
      Job job = job_from_disk_json(nlohmann::json::parse(ss.str()));
      if (job.id != name) throw Error("id does not match its folder");
      if (!allowed_image_name(job.params.first_file) || !allowed_image_name(job.params.last_file) ||
          !std::all_of(job.params.keyframe_files.begin(), job.params.keyframe_files.end(), allowed_image_name))
        throw Error("unexpected image file names");
      jobs.push_back(std::move(job));
    } catch (const std::exception& e) {
      spdlog::warn("job {}: unreadable job.json ({}), skipped", name, e.what());
    }
  }
  if (ec) throw Error("data dir: cannot list '" + jobs_ + "': " + ec.message());
  for (const std::string& id : orphans) remove_job(id);
  std::sort(jobs.begin(), jobs.end(), [](const Job& a, const Job& b) {
    return a.created != b.created ? a.created < b.created : a.id < b.id;
  });
  return jobs;
}

}  // namespace ib::server
