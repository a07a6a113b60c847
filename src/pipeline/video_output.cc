// The public video writers (include/inbetween/video.h) over io/video_writer, which also defines
// check_video_output (declared in both headers).
#include "inbetween/video.h"

#include "core/check.h"
#include "core/tensor.h"
#include "io/video_writer.h"

namespace ib {

namespace {
// The video's values as a CPU tensor over the same memory (no copy of the ~0.4-0.9 GB).
Tensor borrowed_video(const GeneratedVideo& v) {
  return Tensor::from_storage(Storage::borrow(const_cast<float*>(v.data.data()), v.data.size() * sizeof(float),
                                              Device::CPU, nullptr),
                              0, {3, v.frames, v.height, v.width}, DType::F32);
}
}  // namespace

void write_video(const std::string& path, const GeneratedVideo& video, int fps) {
  IB_CHECK(video.frames > 0 && video.height > 0 && video.width > 0 &&
               video.data.size() == static_cast<size_t>(3 * video.frames * video.height * video.width),
           "cannot write '{}': the video holds {} values, not 3 x {} x {} x {}", path, video.data.size(), video.frames,
           video.height, video.width);
  write_video(path, borrowed_video(video), fps);
}

struct VideoFileWriter::Impl {
  std::string path;
  int fps = 0;
  std::unique_ptr<Mp4Stream> mp4;  // for an .mp4 path
  int64_t next = 0;                // the next frame frames() expects
};

VideoFileWriter::VideoFileWriter(const std::string& path, int fps) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->fps = fps;
  if (is_mp4_path(path)) impl_->mp4 = std::make_unique<Mp4Stream>(path, fps);
}

VideoFileWriter::~VideoFileWriter() = default;

FramesFn VideoFileWriter::frames() {
  if (!impl_->mp4) return {};
  return [this](const DecodedFrames& d) {
    Impl& w = *impl_;
    IB_CHECK(d.first == w.next && d.count > 0, "'{}': frames from {} arrived where frame {} was due (internal error)",
             w.path, d.first, w.next);
    const size_t bytes = static_cast<size_t>(3 * d.count * d.height * d.width) * sizeof(float);
    w.mp4->add(Tensor::from_storage(Storage::borrow(const_cast<float*>(d.data), bytes, Device::CPU, nullptr), 0,
                                    {3, d.count, d.height, d.width}, DType::F32));
    w.next += d.count;
  };
}

void VideoFileWriter::finish(const GeneratedVideo& video) {
  Impl& w = *impl_;
  if (!w.mp4 || w.mp4->frames() == 0) {  // nothing came early: the whole video now
    write_video(w.path, video, w.fps);
    return;
  }
  IB_CHECK(w.mp4->frames() == video.frames, "'{}': {} frames were encoded of the video's {} (internal error)", w.path,
           w.mp4->frames(), video.frames);
  w.mp4->finish();
}

}  // namespace ib
