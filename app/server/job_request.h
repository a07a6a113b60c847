// Validation of POST /v1/jobs: the multipart fields, their ranges and the two images. Everything
// a client can get wrong is reported as a RequestError naming the field; nothing here touches the
// file system.
#pragma once

#include <httplib.h>

#include <cstddef>
#include <cstdint>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>

#include "job.h"

namespace ib::server {

struct Limits {
  size_t max_body_bytes = 64u << 20;
  size_t max_image_bytes = 32u << 20;
  int64_t max_image_side = 8192;
  size_t max_prompt_chars = 2000;  // Unicode code points
  int64_t max_frames = 257;
  int max_steps = 200;
  int64_t max_area = 2048 * 2048;  // also caps --size
  int64_t max_side = 2048;         // one side of --size
  int max_fps = 120;
  int max_keyframes = 16;  // POST /v1/stories
  int max_decodes = 2;  // uploads decoded at once (an 8192x8192 image takes about 400 MB while it decodes)
};

// A client's text as error messages show it: quoted, and cut after `max` bytes (with its size),
// so an error never echoes a whole oversized field.
std::string shown(std::string_view text, size_t max = 48);

// A client error: HTTP status (400 unless said otherwise), the field at fault (may be empty) and
// a message meant for people.
class RequestError : public std::runtime_error {
 public:
  RequestError(std::string field, const std::string& message, int status = 400)
      : std::runtime_error(message), field_(std::move(field)), status_(status) {}
  const std::string& field() const { return field_; }
  int status() const { return status_; }

 private:
  std::string field_;
  int status_;
};

struct JobRequest {
  JobParams params;          // first_file / last_file already named ("first.png", ...)
  std::string first, last;   // the uploaded bytes (each decodes as an image)
  int64_t first_width = 0, first_height = 0, last_width = 0, last_height = 0;
};

// Parses and checks a multipart POST /v1/jobs. Throws RequestError.
JobRequest parse_job_request(const httplib::Request& req, const Limits& limits);

// The fields a job and a story share (all but the images), parsed and checked into p.
void parse_generation_fields(const httplib::Request& req, const Limits& limits, JobParams& p);
// A multipart body whose fields are all `accepted`, each once unless `repeatable`. Throws RequestError.
void check_field_names(const httplib::Request& req, const std::vector<std::string>& accepted,
                       const std::set<std::string>& repeatable);
// A text field: valid UTF-8 without NUL, at most max_prompt_chars code points.
void check_text(const std::string& field, const std::string& s, const Limits& limits);
// An uploaded image: size, format, decodability and sides. Returns its extension ("png", ...).
std::string check_image(const std::string& field, const std::string& data, const Limits& limits, int64_t& width,
                        int64_t& height);

// The request field of an error from Pipeline::validate() or estimate(): the option an
// ib::OptionError names, as this API calls it ("first_image" -> "first", "width" -> "size");
// "" for other errors.
std::string field_for_pipeline_error(const std::exception& e);

// The fields POST /v1/jobs accepts.
const std::vector<std::string>& job_fields();

}  // namespace ib::server
