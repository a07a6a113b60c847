// Writing a generated video, for the front ends: the public form of the library's video writers
// (src/io/video_writer.h), taking the GeneratedVideo that Pipeline::generate returns.
#pragma once

#include <memory>
#include <string>

#include "inbetween/pipeline.h"

namespace ib {

// Chooses the writer by the path: *.mp4 (H.264, yuv420p), *.safetensors (tensor "video", f32
// [3, F, H, W]), or a folder of PNG frames (a path ending in '/', an existing folder, or one
// without extension). Every file appears only when complete. Throws ib::Error naming the path.
void write_video(const std::string& path, const GeneratedVideo& video, int fps);

// write_video while Pipeline::generate() is still decoding: pass frames() to generate(), then
// finish() with the video it returned. An MP4 is encoded as its frames arrive, on the writer's own
// thread, so finish() waits only for the last few frames instead of the whole encode; the other
// forms are written by finish() from the whole video. The file appears only at finish(); a writer
// destroyed before (an error, a cancelled job) leaves nothing behind. Throws ib::Error naming the
// path (an .mp4 in a build without the MP4 writer already when constructed).
class VideoFileWriter {
 public:
  VideoFileWriter(const std::string& path, int fps);
  ~VideoFileWriter();
  VideoFileWriter(const VideoFileWriter&) = delete;
  VideoFileWriter& operator=(const VideoFileWriter&) = delete;

  FramesFn frames();  // empty where nothing is written early (the forms other than MP4)
  void finish(const GeneratedVideo& video);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Checks before anything is computed that write_video(path, ...) can write there (the form, the
// folder, an existing file). Messages name the path only. (Defined with the writers in src/io.)
void check_video_output(const std::string& path);

}  // namespace ib
