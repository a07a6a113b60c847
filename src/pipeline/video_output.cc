// The public video writer (include/inbetween/video.h) over io/video_writer, which also defines
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
  write_video(path, Tensor::from_vector(video.data, {3, video.frames, video.height, video.width}), fps);
}

}  // namespace ib
