// The public video writers (include/inbetween/video.h) over io/video_writer, which also defines
// check_video_output (declared in both headers).
#include "inbetween/video.h"

#include "core/check.h"
#include "core/tensor.h"
#include "io/video_writer.h"

namespace ib {

void write_video(const std::string& path, const GeneratedVideo& video, int fps) {
  IB_CHECK(video.frames > 0 && video.height > 0 && video.width > 0 &&
               video.data.size() == static_cast<size_t>(3 * video.frames * video.height * video.width),
           "cannot write '{}': the video holds {} values, not 3 x {} x {} x {}", path, video.data.size(), video.frames,
           video.height, video.width);
  // Over the video's own memory: no copy of its ~0.4-0.9 GB.
  write_video(path, Tensor::host_view(video.data.data(), {3, video.frames, video.height, video.width}), fps);
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
    w.mp4->add(Tensor::host_view(d.data, {3, d.count, d.height, d.width}));
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
