// Video output through libavcodec/libavformat/libswscale (MP4) and libpng (frames).
#include "io/video_writer.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <thread>

#ifdef INBETWEEN_HAVE_LIBAV
extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
}
#endif

#include "core/check.h"
#include "io/atomic_file.h"
#include "io/image.h"
#include "io/safetensors.h"

namespace ib {
namespace {

namespace fs = std::filesystem;

struct VideoDims {
  int64_t frames = 0, height = 0, width = 0;
};

// The video as a CPU f32 tensor, after checking it is [3, F, H, W] with F, H, W >= 1.
Tensor checked_video(const Tensor& video, const std::string& what, VideoDims* dims) {
  IB_CHECK(video.defined(), "{}: the video tensor is undefined", what);
  IB_CHECK(video.dim() == 4 && video.size(0) == 3, "{}: video must be [3, F, H, W], got {}", what,
           shape_str(video.shape()));
  IB_CHECK(dtype_is_float(video.dtype()), "{}: video must be a float tensor, got {}", what,
           dtype_name(video.dtype()));
  dims->frames = video.size(1);
  dims->height = video.size(2);
  dims->width = video.size(3);
  IB_CHECK(dims->frames >= 1 && dims->height >= 1 && dims->width >= 1, "{}: empty video {}", what,
           shape_str(video.shape()));
  IB_CHECK(dims->height <= 65535 && dims->width <= 65535, "{}: frames of {}x{} are too large", what,
           dims->width, dims->height);
  return video.to(Device::CPU).to(DType::F32);
}

inline uint8_t to_byte(float x) {
  if (x != x) return 0;  // NaN
  x = std::min(std::max(x, -1.0f), 1.0f);
  const float u = (x + 1.0f) / 2.0f;
  return static_cast<uint8_t>(u * 255.0f);  // truncates toward zero, as torch's .type(uint8)
}

// Frame f of a CPU f32 [3, F, H, W] video as H*W*3 interleaved bytes.
void frame_rgb8(const Tensor& v, const VideoDims& d, int64_t f, uint8_t* out) {
  const int64_t plane = d.height * d.width;
  const float* p = v.data<float>();
  for (int64_t c = 0; c < 3; ++c) {
    const float* src = p + (c * d.frames + f) * plane;
    for (int64_t i = 0; i < plane; ++i) out[i * 3 + c] = to_byte(src[i]);
  }
}

#ifdef INBETWEEN_HAVE_LIBAV
// ---- MP4 ----

std::string av_error(int err) {
  char buf[AV_ERROR_MAX_STRING_SIZE] = {};
  av_strerror(err, buf, sizeof(buf));
  return buf;
}

struct CodecContextFree {
  void operator()(AVCodecContext* c) const { avcodec_free_context(&c); }
};
struct FormatContextFree {
  void operator()(AVFormatContext* f) const {
    if (f->pb != nullptr) avio_closep(&f->pb);
    avformat_free_context(f);
  }
};
struct FrameFree {
  void operator()(AVFrame* f) const { av_frame_free(&f); }
};
struct PacketFree {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsFree {
  void operator()(SwsContext* s) const { sws_freeContext(s); }
};
struct Dict {
  AVDictionary* d = nullptr;
  Dict() = default;
  Dict(const Dict&) = delete;
  Dict& operator=(const Dict&) = delete;
  ~Dict() { av_dict_free(&d); }
};

// x264 and the MP4 muxer report progress at AV_LOG_INFO ("frame I: ...", "Starting second pass");
// unless the program has chosen a level itself, keep libav to warnings and errors.
void quiet_libav_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    if (av_log_get_level() == AV_LOG_INFO) av_log_set_level(AV_LOG_WARNING);
  });
}
#endif  // INBETWEEN_HAVE_LIBAV

}  // namespace

std::vector<uint8_t> video_to_rgb8(const Tensor& video) {
  VideoDims d;
  const Tensor v = checked_video(video, "video_to_rgb8", &d);
  const auto frame_bytes = static_cast<size_t>(d.height * d.width * 3);
  std::vector<uint8_t> out(frame_bytes * static_cast<size_t>(d.frames));
  for (int64_t f = 0; f < d.frames; ++f) frame_rgb8(v, d, f, out.data() + static_cast<size_t>(f) * frame_bytes);
  return out;
}

#ifdef INBETWEEN_HAVE_LIBAV
bool mp4_supported() { return true; }

// The encoder (libav objects, opened at the first add()) and the thread that feeds it. Members are
// destroyed in reverse order: the thread is joined first (~Mp4Stream), libav closes the file, and
// the AtomicFile, declared first, removes an uncommitted temporary file last.
struct Mp4Stream::Impl {
  std::string path;
  int fps = 0;
  int W = 0, H = 0;
  std::unique_ptr<AtomicFile> file;
  std::unique_ptr<AVFormatContext, FormatContextFree> oc;
  std::unique_ptr<AVCodecContext, CodecContextFree> enc;
  AVStream* st = nullptr;
  std::unique_ptr<SwsContext, SwsFree> sws;
  std::unique_ptr<AVFrame, FrameFree> frame;
  std::unique_ptr<AVPacket, PacketFree> pkt;
  int64_t added = 0, encoded = 0;
  bool finished = false;

  // Frames handed from add() to the encoder thread, as RGB bytes.
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::vector<uint8_t>> queue;
  bool closing = false;
  std::exception_ptr error;
  std::thread worker;

  void check(int r, const char* step) const { IB_CHECK(r >= 0, "MP4 '{}': {} failed: {}", path, step, av_error(r)); }

  void open(int width, int height) {
    W = width;
    H = height;
    quiet_libav_once();
    const AVCodec* codec = avcodec_find_encoder_by_name("libx264");
    IB_CHECK(codec != nullptr, "MP4 '{}': this FFmpeg has no libx264 encoder", path);
    file = std::make_unique<AtomicFile>(path);
    const std::string& temp = file->temp_path();

    AVFormatContext* oc_raw = nullptr;
    check(avformat_alloc_output_context2(&oc_raw, nullptr, "mp4", temp.c_str()), "creating the MP4 muxer");
    oc.reset(oc_raw);

    enc.reset(avcodec_alloc_context3(codec));
    IB_CHECK(enc != nullptr, "MP4 '{}': out of memory", path);
    enc->width = W;
    enc->height = H;
    enc->pix_fmt = AV_PIX_FMT_YUV420P;
    enc->time_base = AVRational{1, fps};
    enc->framerate = AVRational{fps, 1};
    if (oc->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    {
      Dict opts;
      av_dict_set(&opts.d, "crf", "10", 0);  // imageio quality 8 -> crf int((1 - 0.8) * 51)
      check(avcodec_open2(enc.get(), codec, &opts.d), "opening libx264");
    }

    st = avformat_new_stream(oc.get(), nullptr);
    IB_CHECK(st != nullptr, "MP4 '{}': out of memory", path);
    st->time_base = enc->time_base;
    st->avg_frame_rate = enc->framerate;
    check(avcodec_parameters_from_context(st->codecpar, enc.get()), "setting the stream parameters");

    check(avio_open(&oc->pb, temp.c_str(), AVIO_FLAG_WRITE), "opening the output");
    {
      Dict opts;
      av_dict_set(&opts.d, "movflags", "+faststart", 0);
      check(avformat_write_header(oc.get(), &opts.d), "writing the MP4 header");
    }

    // swscale with the ffmpeg command line's default flags; BT.601 limited range is its default.
    sws.reset(sws_getContext(W, H, AV_PIX_FMT_RGB24, W, H, AV_PIX_FMT_YUV420P, SWS_BICUBIC, nullptr, nullptr, nullptr));
    IB_CHECK(sws != nullptr, "MP4 '{}': cannot set up RGB -> YUV conversion", path);

    frame.reset(av_frame_alloc());
    pkt.reset(av_packet_alloc());
    IB_CHECK(frame != nullptr && pkt != nullptr, "MP4 '{}': out of memory", path);
    frame->format = AV_PIX_FMT_YUV420P;
    frame->width = W;
    frame->height = H;
    check(av_frame_get_buffer(frame.get(), 0), "allocating a frame");
    worker = std::thread([this] { work(); });
  }

  void drain() {
    for (;;) {
      const int r = avcodec_receive_packet(enc.get(), pkt.get());
      if (r == AVERROR(EAGAIN) || r == AVERROR_EOF) return;
      check(r, "encoding");
      av_packet_rescale_ts(pkt.get(), enc->time_base, st->time_base);
      pkt->stream_index = st->index;
      check(av_interleaved_write_frame(oc.get(), pkt.get()), "writing a packet");
    }
  }

  void encode(const std::vector<uint8_t>& rgb) {
    check(av_frame_make_writable(frame.get()), "allocating a frame");
    const uint8_t* src[1] = {rgb.data()};
    const int src_stride[1] = {3 * W};
    sws_scale(sws.get(), src, src_stride, 0, H, frame->data, frame->linesize);
    frame->pts = encoded++;
    check(avcodec_send_frame(enc.get(), frame.get()), "encoding");
    drain();
  }

  // The encoder thread: frames in order until finish() (or the destructor) closes the queue; the
  // first error stops it and is kept for add() / finish() to rethrow.
  void work() {
    for (;;) {
      std::vector<uint8_t> rgb;
      {
        std::unique_lock lock(mu);
        cv.wait(lock, [&] { return closing || !queue.empty(); });
        if (queue.empty()) return;
        rgb = std::move(queue.front());
        queue.pop_front();
      }
      try {
        encode(rgb);
      } catch (...) {
        std::lock_guard lock(mu);
        error = std::current_exception();
        queue.clear();
        return;
      }
    }
  }

  void rethrow_locked() {
    if (error) std::rethrow_exception(error);
  }

  void stop_worker() {
    {
      std::lock_guard lock(mu);
      closing = true;
    }
    cv.notify_all();
    if (worker.joinable()) worker.join();
  }
};

Mp4Stream::Mp4Stream(const std::string& path, int fps) : impl_(std::make_unique<Impl>()) {
  IB_CHECK(fps >= 1 && fps <= 1000, "MP4 '{}': fps must be in [1, 1000], got {}", path, fps);
  impl_->path = path;
  impl_->fps = fps;
}

Mp4Stream::~Mp4Stream() {
  if (!impl_) return;
  {
    std::lock_guard lock(impl_->mu);
    impl_->queue.clear();  // abandoned: nothing more is encoded
  }
  impl_->stop_worker();
}

void Mp4Stream::add(const Tensor& frames) {
  Impl& s = *impl_;
  IB_CHECK(!s.finished, "MP4 '{}': frames added after finish() (internal error)", s.path);
  VideoDims d;
  const Tensor v = checked_video(frames, fmt::format("MP4 '{}'", s.path), &d);
  if (s.W == 0) {
    IB_CHECK(d.height % 2 == 0 && d.width % 2 == 0,
             "MP4 '{}': width and height must be even for yuv420p, got {}x{}", s.path, d.width, d.height);
    s.open(static_cast<int>(d.width), static_cast<int>(d.height));
  }
  IB_CHECK(d.height == s.H && d.width == s.W, "MP4 '{}': frames of {}x{} after frames of {}x{}", s.path, d.width,
           d.height, s.W, s.H);
  const auto frame_bytes = static_cast<size_t>(d.height * d.width * 3);
  for (int64_t f = 0; f < d.frames; ++f) {
    std::vector<uint8_t> rgb(frame_bytes);
    frame_rgb8(v, d, f, rgb.data());
    {
      std::lock_guard lock(s.mu);
      s.rethrow_locked();
      s.queue.push_back(std::move(rgb));
    }
    s.cv.notify_one();
    ++s.added;
  }
}

void Mp4Stream::finish() {
  Impl& s = *impl_;
  IB_CHECK(s.added > 0, "MP4 '{}': no frames to write", s.path);
  IB_CHECK(!s.finished, "MP4 '{}': finished twice (internal error)", s.path);
  s.stop_worker();
  s.rethrow_locked();
  s.check(avcodec_send_frame(s.enc.get(), nullptr), "flushing the encoder");
  s.drain();
  s.check(av_write_trailer(s.oc.get()), "finishing the MP4");
  s.check(avio_closep(&s.oc->pb), "closing the output");
  s.file->commit();
  s.finished = true;
}

int64_t Mp4Stream::frames() const { return impl_->added; }

#else
bool mp4_supported() { return false; }

struct Mp4Stream::Impl {};

Mp4Stream::Mp4Stream(const std::string& path, int) {
  fail("cannot write '{}': this build of inbetween has no MP4 writer (configured with -DINBETWEEN_MP4=OFF); "
       "write a .safetensors file or a folder of PNG frames instead", path);
}
Mp4Stream::~Mp4Stream() = default;
void Mp4Stream::add(const Tensor&) {}
void Mp4Stream::finish() {}
int64_t Mp4Stream::frames() const { return 0; }
#endif  // INBETWEEN_HAVE_LIBAV

void write_mp4(const std::string& path, const Tensor& video, int fps) {
  Mp4Stream stream(path, fps);
  stream.add(video);
  stream.finish();
}

// ---- PNG ----

void write_png_frames(const std::string& dir, const Tensor& video) {
  VideoDims d;
  const Tensor v = checked_video(video, fmt::format("PNG frames '{}'", dir), &d);
  IB_CHECK(!dir.empty(), "the PNG frames' folder name is empty");
  fs::path folder(dir);
  if (!folder.has_filename() && folder.has_parent_path() && folder.parent_path() != folder)
    folder = folder.parent_path();  // "out/" -> "out"

  std::error_code ec;
  std::vector<fs::path> created;  // deepest last
  if (fs::exists(folder, ec)) {
    IB_CHECK(fs::is_directory(folder, ec), "'{}' exists and is not a folder (PNG frames need a new or empty folder)",
             dir);
    IB_CHECK(fs::is_empty(folder, ec) && !ec,
             "folder '{}' is not empty; PNG frames go to a new or empty folder", dir);
  } else {
    for (fs::path p = folder; !p.empty() && !fs::exists(p, ec); p = p.parent_path()) {
      created.insert(created.begin(), p);
      if (p == p.parent_path()) break;
    }
    fs::create_directories(folder, ec);
    IB_CHECK(!ec, "cannot create folder '{}': {}", dir, ec.message());
  }

  std::vector<fs::path> written;
  try {
    const auto frame_bytes = static_cast<size_t>(d.height * d.width * 3);
    std::vector<uint8_t> rgb(frame_bytes);
    std::vector<uint8_t> png;
    for (int64_t f = 0; f < d.frames; ++f) {
      frame_rgb8(v, d, f, rgb.data());
      const fs::path file = folder / fmt::format("frame_{:05d}.png", f);
      try {
        png = encode_png(rgb.data(), d.width, d.height);  // the one PNG encoder (io/image.h)
      } catch (const Error& e) {
        fail("encoding PNG frame '{}' failed: {}", file.string(), e.what());
      }
      AtomicFile out(file.string());
      out.write(png.data(), png.size());
      out.commit();
      written.push_back(file);
    }
  } catch (...) {
    for (const fs::path& p : written) fs::remove(p, ec);
    for (auto it = created.rbegin(); it != created.rend(); ++it) fs::remove(*it, ec);  // only if empty
    throw;
  }
}

// ---- dispatch ----

namespace {
std::string lower_extension(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return ext;
}
bool is_folder_path(const std::string& path) {
  std::error_code ec;
  return !path.empty() && (path.back() == '/' || fs::is_directory(path, ec));
}
}  // namespace

bool is_mp4_path(const std::string& path) { return !is_folder_path(path) && lower_extension(path) == ".mp4"; }

void write_video(const std::string& path, const Tensor& video, int fps) {
  IB_CHECK(!path.empty(), "the output path is empty");
  const std::string ext = lower_extension(path);
  if (is_folder_path(path)) {
    write_png_frames(path, video);
  } else if (ext == ".mp4") {
    write_mp4(path, video, fps);
  } else if (ext == ".safetensors") {
    VideoDims d;
    const Tensor v = checked_video(video, fmt::format("'{}'", path), &d);
    save_safetensors(path, {{"video", v}});
  } else if (ext.empty()) {
    write_png_frames(path, video);
  } else {
    fail("cannot write '{}': use a .mp4 file (H.264), a .safetensors file (the raw [3, F, H, W] "
         "tensor), or a folder for PNG frames (a path ending in '/', an existing folder, or a name without "
         "extension)",
         path);
  }
}

namespace {

// Creates and removes a file in `folder`, so a read-only folder, a full disk or missing permissions
// show up before the work that would end in writing there.
void probe_writable(const fs::path& folder, const std::string& path) {
  const fs::path probe = folder / fmt::format(".inbetween-write-test-{}", static_cast<long>(::getpid()));
  std::FILE* f = std::fopen(probe.c_str(), "wb");
  IB_CHECK(f != nullptr, "cannot write '{}': creating a file in '{}' fails ({})", path,
           folder.empty() ? "." : folder.string(), std::strerror(errno));
  const bool ok = std::fputc('x', f) != EOF;
  const bool closed = std::fclose(f) == 0;
  std::error_code ec;
  fs::remove(probe, ec);
  IB_CHECK(ok && closed, "cannot write '{}': writing a file in '{}' fails ({})", path,
           folder.empty() ? "." : folder.string(), std::strerror(errno));
}

}  // namespace

void check_video_output(const std::string& path) {
  IB_CHECK(!path.empty(), "the output path is empty");
  const std::string ext = lower_extension(path);
  std::error_code ec;
  const bool folder = is_folder_path(path) || ext.empty();
  if (folder) {
    fs::path dir(path);
    if (!dir.has_filename() && dir.has_parent_path() && dir.parent_path() != dir) dir = dir.parent_path();
    if (fs::exists(dir, ec)) {
      IB_CHECK(fs::is_directory(dir, ec), "'{}' exists and is not a folder (PNG frames need a new or empty folder)",
               path);
      IB_CHECK(fs::is_empty(dir, ec) && !ec, "folder '{}' is not empty; PNG frames go to a new or empty folder", path);
      probe_writable(dir, path);
    } else {
      fs::path p = dir;
      while (!p.empty() && p != p.parent_path() && !fs::exists(p, ec)) p = p.parent_path();
      if (p.empty()) p = ".";
      IB_CHECK(fs::is_directory(p, ec), "cannot create folder '{}': '{}' is not a folder", path, p.string());
      probe_writable(p, path);
    }
    return;
  }
  IB_CHECK(ext == ".mp4" || ext == ".safetensors",
           "cannot write '{}': use a .mp4 file (H.264), a .safetensors file (the raw [3, F, H, W] tensor), or a "
           "folder for PNG frames (a path ending in '/', an existing folder, or a name without extension)",
           path);
#ifndef INBETWEEN_HAVE_LIBAV
  IB_CHECK(ext != ".mp4",
           "cannot write '{}': this build of inbetween has no MP4 writer (configured with -DINBETWEEN_MP4=OFF); "
           "write a .safetensors file or a folder of PNG frames instead",
           path);
#endif
  const fs::path p(path);
  const fs::path parent = p.has_parent_path() ? p.parent_path() : fs::path(".");
  IB_CHECK(fs::is_directory(parent, ec), "cannot write '{}': folder '{}' does not exist", path, parent.string());
  if (fs::exists(p, ec))
    IB_CHECK(fs::is_regular_file(p, ec), "cannot write '{}': it exists and is not a regular file", path);
  probe_writable(parent, path);
}

}  // namespace ib
