// Writing the generated video (spec section 10): RGB24 bytes from the decoded [-1, 1] tensor, then
// an H.264 MP4 (libx264, yuv420p, crf 10, as the official imageio writer), PNG frames, or the raw
// tensor as safetensors. Every file appears only when complete (temporary file, then rename).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace ib {

// video: [3, F, H, W], any float dtype and device. Returns F frames of H*W*3 bytes (RGB, row-major)
// one after another. Per value in f32: clamp to [-1, 1], u = (x + 1) / 2, byte = trunc(u * 255);
// NaN gives 0.
std::vector<uint8_t> video_to_rgb8(const Tensor& video);

// H.264 (libx264, default preset, crf 10) in yuv420p, converted from RGB by swscale with
// SWS_BICUBIC and its defaults (BT.601, limited range, no colour tags) as the ffmpeg command line
// does; time base 1/fps, MP4 with +faststart, no audio. H and W must be even, fps > 0.
void write_mp4(const std::string& path, const Tensor& video, int fps);

// One PNG (8-bit RGB) per frame: dir/frame_00000.png, frame_00001.png, ... The folder is created
// when missing (with its parents); an existing folder must be empty, so frames of two videos never
// mix. Each file is written atomically; on failure the frames written so far are removed again
// (and the folder, when this call created it).
void write_png_frames(const std::string& dir, const Tensor& video);

// Chooses the writer by the path:
//   *.mp4                                   -> write_mp4
//   *.safetensors                           -> tensor "video", f32 [3, F, H, W], values as given
//   ends in '/', an existing folder, or no extension -> write_png_frames
// Anything else throws ib::Error listing these forms. Extensions are matched case-insensitively.
void write_video(const std::string& path, const Tensor& video, int fps);

// Checks before anything is computed that write_video(path, ...) can write there: the form is one
// of the above (and this build has an MP4 writer for .mp4), the folder exists (PNG frames: its
// nearest existing ancestor) and takes a new file (one is created beside the output and removed
// again), a PNG folder is new or empty, and an existing output file is a regular file. Messages
// name the path only (front ends add their option's name).
void check_video_output(const std::string& path);

}  // namespace ib
