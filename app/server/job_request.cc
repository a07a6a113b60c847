#include "job_request.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <mutex>
#include <semaphore>
#include <set>

#include "inbetween/error.h"
#include "io/image.h"
#include "job_store.h"

namespace ib::server {

std::string shown(std::string_view text, size_t max) {
  if (text.size() <= max) return fmt::format("'{}'", text);
  size_t cut = max;
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;  // not inside a UTF-8 character
  return fmt::format("'{}...' ({} bytes)", text.substr(0, cut), text.size());
}

namespace {

// Decodes on the HTTP threads are limited to limits.max_decodes at once (the first call's value).
std::counting_semaphore<1024>& decode_slots(const Limits& limits) {
  static std::counting_semaphore<1024> slots(std::clamp<std::ptrdiff_t>(limits.max_decodes, 1, 1024));
  return slots;
}

[[noreturn]] void bad(const std::string& field, const std::string& message) { throw RequestError(field, message); }

int64_t parse_int(const std::string& field, const std::string& text, int64_t lo, int64_t hi) {
  int64_t v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end) bad(field, fmt::format("{}: {} is not an integer", field, shown(text)));
  if (v < lo || v > hi) bad(field, fmt::format("{}: {} is out of range [{}, {}]", field, v, lo, hi));
  return v;
}

double parse_number(const std::string& field, const std::string& text, double lo, double hi, bool lo_open = false) {
  double v = 0;
  const char* end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, v);
  if (text.empty() || ec != std::errc() || ptr != end || !std::isfinite(v))
    bad(field, fmt::format("{}: {} is not a number", field, shown(text)));
  if (v > hi || v < lo || (lo_open && v == lo))
    bad(field, fmt::format("{}: {} is out of range {}{}, {}]", field, shown(text), lo_open ? "(" : "[", lo, hi));
  return v;
}

// Checks UTF-8 and returns the number of code points.
size_t utf8_length(const std::string& field, const std::string& s) {
  size_t n = 0;
  for (size_t i = 0; i < s.size(); ++n) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || i + len > s.size()) bad(field, field + ": not valid UTF-8");
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) bad(field, field + ": not valid UTF-8");
    i += len;
  }
  return n;
}

}  // namespace

void check_text(const std::string& field, const std::string& s, const Limits& limits) {
  if (s.find('\0') != std::string::npos) bad(field, field + ": contains a NUL character");
  const size_t n = utf8_length(field, s);
  if (n > limits.max_prompt_chars)
    bad(field, fmt::format("{}: {} characters, at most {} allowed", field, n, limits.max_prompt_chars));
}

// Checks an uploaded image: size, format, decodability and sides. Returns its extension.
std::string check_image(const std::string& field, const std::string& data, const Limits& limits, int64_t& width,
                        int64_t& height) {
  if (data.empty()) bad(field, field + ": empty file");
  if (data.size() > limits.max_image_bytes)
    bad(field, fmt::format("{}: {} bytes, at most {} allowed", field, data.size(), limits.max_image_bytes));
  const std::string ext = image_extension(data);
  if (ext.empty()) bad(field, field + ": not a PNG, JPEG or WebP image");
  try {
    std::counting_semaphore<1024>& slots = decode_slots(limits);
    slots.acquire();
    struct Release {
      std::counting_semaphore<1024>& s;
      ~Release() { s.release(); }
    } release{slots};
    const RgbImage img = decode_image(data.data(), data.size(), field);
    width = img.width;
    height = img.height;
  } catch (const std::exception& e) {
    bad(field, e.what());
  }
  if (width > limits.max_image_side || height > limits.max_image_side)
    bad(field, fmt::format("{}: {}x{} is larger than {} pixels a side", field, width, height, limits.max_image_side));
  return ext;
}

namespace {

// "NAME[:SCALE],NAME[:SCALE]...": LoRA file names inside the server's folder (checked against the
// folder by the HTTP handler); anything that could leave the folder is refused here.
std::vector<LoraFile> parse_loras(const std::string& text) {
  constexpr size_t kMaxLoras = 8;
  std::vector<LoraFile> out;
  size_t begin = 0;
  while (begin <= text.size()) {
    size_t end = text.find(',', begin);
    if (end == std::string::npos) end = text.size();
    std::string item = text.substr(begin, end - begin);
    while (!item.empty() && item.front() == ' ') item.erase(0, 1);
    while (!item.empty() && item.back() == ' ') item.pop_back();
    begin = end + 1;
    if (item.empty()) bad("loras", "loras: empty entry (write NAME or NAME:SCALE, separated by commas)");
    LoraFile l;
    const size_t colon = item.rfind(':');
    l.path = item.substr(0, colon);
    if (colon != std::string::npos) l.scale = parse_number("loras", item.substr(colon + 1), -100, 100);
    const std::string& n = l.path;
    if (n.empty() || n.size() > 255 || n.front() == '.' || n.find_first_of(std::string("/\\\0:", 4)) != std::string::npos)
      bad("loras", "loras: " + shown(n) + " is not a file name of the server's LoRA folder (no paths)");
    if (n.size() < 12 || n.compare(n.size() - 12, 12, ".safetensors") != 0)
      bad("loras", "loras: " + shown(n) + " is not a .safetensors file");
    out.push_back(l);
  }
  if (out.size() > kMaxLoras) bad("loras", fmt::format("loras: {} files, at most {} allowed", out.size(), kMaxLoras));
  return out;
}

}  // namespace

const std::vector<std::string>& job_fields() {
  static const std::vector<std::string> fields = {"first",  "last",     "prompt",    "negative_prompt", "frames",
                                                  "max_area", "size",   "steps",     "shift",           "guidance",
                                                  "solver", "timesteps", "loras",    "seed",            "fps",
                                                  "last_frame_fit"};
  return fields;
}

void check_field_names(const httplib::Request& req, const std::vector<std::string>& accepted,
                       const std::set<std::string>& repeatable) {
  if (!req.is_multipart_form_data()) bad("", "expected a multipart/form-data body");
  for (const auto& [name, value] : req.params) {
    if (name != "api_key") bad(name.substr(0, 64), "unknown query parameter " + shown(name));
  }
  std::set<std::string> seen;
  for (const auto& [name, part] : req.files) {
    if (std::find(accepted.begin(), accepted.end(), name) == accepted.end())
      bad(name.substr(0, 64), fmt::format("unknown field {}; accepted: {}", shown(name), fmt::join(accepted, ", ")));
    if (!seen.insert(name).second && !repeatable.count(name))
      bad(name.substr(0, 64), "field " + shown(name) + " given more than once");
  }
}

JobRequest parse_job_request(const httplib::Request& req, const Limits& limits) {
  check_field_names(req, job_fields(), {});
  auto has = [&](const char* name) { return req.files.count(name) > 0; };
  auto text = [&](const char* name) { return req.files.find(name)->second.content; };

  JobRequest r;
  if (!has("first")) bad("first", "first: missing (the start image)");
  if (!has("last")) bad("last", "last: missing (the end image)");
  parse_generation_fields(req, limits, r.params);
  r.first = text("first");
  r.last = text("last");
  r.params.first_file = "first." + check_image("first", r.first, limits, r.first_width, r.first_height);
  r.params.last_file = "last." + check_image("last", r.last, limits, r.last_width, r.last_height);
  // Stored as far as the image goes: bytes after its end were not decoded and are not kept.
  r.first.resize(image_length(r.first));
  r.last.resize(image_length(r.last));
  return r;
}

void parse_generation_fields(const httplib::Request& req, const Limits& limits, JobParams& p) {
  auto has = [&](const char* name) { return req.files.count(name) > 0; };
  auto text = [&](const char* name) { return req.files.find(name)->second.content; };
  // A named option through the library's parse function; its OptionError names the field.
  auto named = [&](const char* name, auto parse) {
    try {
      return parse(text(name));
    } catch (const OptionError& e) {
      bad(name, e.what());  // "unknown solver 'rk4' (expected unipc, dpm++ or euler)"
    }
  };
  if (has("prompt")) {
    p.gen.prompt = text("prompt");
    check_text("prompt", p.gen.prompt, limits);
  }
  if (has("negative_prompt")) {
    p.gen.negative_prompt = text("negative_prompt");
    check_text("negative_prompt", p.gen.negative_prompt, limits);
  }
  if (has("frames")) {
    p.gen.frames = parse_int("frames", text("frames"), 1, limits.max_frames);
    if (p.gen.frames % 4 != 1) {
      const int64_t below = p.gen.frames - (p.gen.frames - 1) % 4;
      bad("frames", fmt::format("frames: {} is not of the form 4n+1; the nearest are {} and {}", p.gen.frames, below,
                                below + 4));
    }
  }
  if (has("max_area") && has("size")) bad("size", "size: give either size or max_area, not both");
  if (has("max_area")) p.gen.max_area = parse_number("max_area", text("max_area"), 256, static_cast<double>(limits.max_area));
  if (has("size")) {
    const std::string s = text("size");
    const size_t x = s.find_first_of("xX");
    if (x == std::string::npos) bad("size", "size: " + shown(s) + " is not WIDTHxHEIGHT");
    p.gen.width = parse_int("size", s.substr(0, x), 16, limits.max_side);
    p.gen.height = parse_int("size", s.substr(x + 1), 16, limits.max_side);
    if (p.gen.width % 16 != 0 || p.gen.height % 16 != 0)
      bad("size", fmt::format("size: {}x{}: both sides must be multiples of 16", p.gen.width, p.gen.height));
    if (p.gen.width * p.gen.height > limits.max_area)
      bad("size", fmt::format("size: {}x{} is more than {} pixels", p.gen.width, p.gen.height, limits.max_area));
  }
  if (has("steps")) p.gen.steps = static_cast<int>(parse_int("steps", text("steps"), 1, limits.max_steps));
  if (has("shift")) p.gen.shift = parse_number("shift", text("shift"), 0, 100, true);
  if (has("guidance")) p.gen.guidance = parse_number("guidance", text("guidance"), 0, 50);
  if (has("solver")) p.gen.solver = named("solver", parse_solver);
  if (has("last_frame_fit")) p.gen.last_frame_fit = named("last_frame_fit", parse_last_frame_fit);
  if (has("timesteps")) {
    // "1000,750,500,250"; the order and the solver are Pipeline::validate's to check.
    const std::string s = text("timesteps");
    for (size_t b = 0; b <= s.size();) {
      size_t e = s.find(',', b);
      if (e == std::string::npos) e = s.size();
      p.gen.timesteps.push_back(parse_int("timesteps", s.substr(b, e - b), 1, 1000));
      b = e + 1;
    }
    const int n = static_cast<int>(p.gen.timesteps.size());
    if (n > limits.max_steps) bad("timesteps", fmt::format("timesteps: {} entries, at most {} allowed", n, limits.max_steps));
    if (has("steps") && p.gen.steps != n)
      bad("timesteps", fmt::format("timesteps: {} entries but steps is {}", n, p.gen.steps));
    p.gen.steps = n;
  }
  if (has("loras")) p.gen.loras = parse_loras(text("loras"));
  if (has("seed")) {
    const std::string s = text("seed");
    p.gen.seed = (s.empty() || s == "random") ? -1 : parse_int("seed", s, -1, INT64_MAX);
  }
  if (has("fps")) p.fps = static_cast<int>(parse_int("fps", text("fps"), 1, limits.max_fps));
}

std::string field_for_pipeline_error(const std::exception& e) {
  const auto* option = dynamic_cast<const OptionError*>(&e);
  if (option == nullptr) return "";
  static const std::pair<const char*, const char*> renamed[] = {
      {"first_image", "first"}, {"last_image", "last"}, {"width", "size"}, {"height", "size"}};
  for (const auto& [from, to] : renamed)
    if (option->field() == from) return to;
  // The others are spelt alike in both (frames, steps, shift, guidance, solver, timesteps,
  // max_area, loras, last_frame_fit); init_noise is not a request field.
  const auto& fields = job_fields();
  return std::find(fields.begin(), fields.end(), option->field()) != fields.end() ? option->field() : "";
}

}  // namespace ib::server
