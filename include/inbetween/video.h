// Writing a generated video, for the front ends: the public form of the library's video writers
// (src/io/video_writer.h), taking the GeneratedVideo that Pipeline::generate returns.
#pragma once

#include <string>

#include "inbetween/pipeline.h"

namespace ib {

// Chooses the writer by the path: *.mp4 (H.264, yuv420p), *.safetensors (tensor "video", f32
// [3, F, H, W]), or a folder of PNG frames (a path ending in '/', an existing folder, or one
// without extension). Every file appears only when complete. Throws ib::Error naming the path.
void write_video(const std::string& path, const GeneratedVideo& video, int fps);

// Checks before anything is computed that write_video(path, ...) can write there (the form, the
// folder, an existing file). Messages name the path only. (Defined with the writers in src/io.)
void check_video_output(const std::string& path);

}  // namespace ib
