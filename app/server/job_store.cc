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

uint32_t be32(std::string_view d, size_t i) {
  return static_cast<uint32_t>(static_cast<uint8_t>(d[i])) << 24 | static_cast<uint32_t>(static_cast<uint8_t>(d[i + 1])) << 16 |
         static_cast<uint32_t>(static_cast<uint8_t>(d[i + 2])) << 8 | static_cast<uint8_t>(d[i + 3]);
}

// PNG: chunks (length, type, data, CRC) up to and including IEND.
size_t png_length(std::string_view d) {
  for (size_t pos = 8; pos + 12 <= d.size();) {
    const size_t next = pos + 12 + be32(d, pos);
    if (next > d.size()) break;
    if (d.substr(pos + 4, 4) == "IEND") return next;
    pos = next;
  }
  return d.size();
}

// JPEG: marker segments; after each start of scan the entropy-coded data runs to the next marker
// that is not a stuffed 0xFF00 or a restart marker; EOI ends the image.
size_t jpeg_length(std::string_view d) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(d[i]); };
  for (size_t pos = 2; pos + 1 < d.size();) {
    if (byte(pos) != 0xff) return d.size();
    const uint8_t m = byte(pos + 1);
    if (m == 0xff) {  // fill byte
      ++pos;
      continue;
    }
    if (m == 0xd9) return pos + 2;  // EOI
    if (m == 0x01 || (m >= 0xd0 && m <= 0xd7)) {
      pos += 2;
      continue;
    }
    if (pos + 4 > d.size()) break;
    pos += 2 + (static_cast<size_t>(byte(pos + 2)) << 8 | byte(pos + 3));
    if (m == 0xda) {
      while (pos + 1 < d.size() && !(byte(pos) == 0xff && byte(pos + 1) != 0 && (byte(pos + 1) < 0xd0 || byte(pos + 1) > 0xd7)))
        ++pos;
    }
  }
  return d.size();
}

// WebP: the RIFF container's size, padded to even.
size_t webp_length(std::string_view d) {
  const size_t size = static_cast<uint8_t>(d[4]) | static_cast<size_t>(static_cast<uint8_t>(d[5])) << 8 |
                      static_cast<size_t>(static_cast<uint8_t>(d[6])) << 16 |
                      static_cast<size_t>(static_cast<uint8_t>(d[7])) << 24;
  return std::min(d.size(), 8 + size + (size & 1));
}

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

size_t image_length(std::string_view data) {
  const std::string ext = image_extension(data);
  if (ext == "png") return png_length(data);
  if (ext == "jpg") return jpeg_length(data);
  if (ext == "webp") return webp_length(data);
  return data.size();
}

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
  refresh(id);
}

void JobStore::remove_job(const std::string& id) const {
  std::error_code ec;
  fs::remove_all(job_dir(id), ec);
  if (ec) spdlog::warn("cannot remove job folder {}: {}", id, ec.message());
  std::lock_guard lock(usage_mu_);
  if (auto it = sizes_.find(id); it != sizes_.end()) {
    usage_ -= it->second;
    sizes_.erase(it);
  }
}

void JobStore::refresh(const std::string& id) const {
  uint64_t bytes = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(job_dir(id), ec)) {
    const uintmax_t n = e.is_regular_file(ec) ? e.file_size(ec) : 0;
    if (!ec) bytes += n;
  }
  std::lock_guard lock(usage_mu_);
  uint64_t& entry = sizes_[id];
  usage_ = usage_ - entry + bytes;
  entry = bytes;
}

uint64_t JobStore::usage() const {
  std::lock_guard lock(usage_mu_);
  return usage_;
}

std::vector<Job> JobStore::load_all() const {
  std::vector<Job> jobs;
  std::vector<std::string> orphans;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(jobs_, ec)) {
    const std::string name = entry.path().filename().string();
    if (!entry.is_directory() || !valid_job_id(name)) continue;
    // A write cut short (SIGKILL, power loss) leaves AtomicFile's temporary ".NAME.partial-XXXXXX".
    for (const auto& f : fs::directory_iterator(entry.path(), ec)) {
      const std::string fname = f.path().filename().string();
      if (fname.front() == '.' && fname.find(".partial-") != std::string::npos) {
        spdlog::warn("job {}: removing {} (a write that did not finish)", name, fname);
        fs::remove(f.path(), ec);
      }
    }
    ec.clear();
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
      refresh(name);
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
