// Writing the generated video (spec section 10): RGB24 bytes from the decoded [-1, 1] tensor, then
// an H.264 MP4 (libx264, yuv420p, crf 10, as the official imageio writer), PNG frames, or the raw
// tensor as safetensors. Every file appears only when complete (temporary file, then rename).
#pragma once

#include <cstdint>
#include <memory>
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

// Whether this build has the MP4 writer (libav); without it write_mp4 and Mp4Stream fail with a
// message saying so.
bool mp4_supported();

// An MP4 written while its frames are still being made (write_mp4 is one add() of the whole
// video): add() converts the frames to bytes on the caller's thread and hands them to the stream's
// own encoder thread, so a caller that adds frames as they are decoded waits at finish() only for
// the last few. The encoder opens at the first add() (its frames fix the size); the file appears
// only at finish(), and a stream destroyed before (an error, a cancelled job) leaves nothing behind.
class Mp4Stream {
 public:
  Mp4Stream(const std::string& path, int fps);  // fps in [1, 1000]
  ~Mp4Stream();
  Mp4Stream(const Mp4Stream&) = delete;
  Mp4Stream& operator=(const Mp4Stream&) = delete;

  // frames: [3, n, H, W], any float dtype and device, the size of the first call's frames (H and
  // W even). Rethrows an encoding error met since the last call.
  void add(const Tensor& frames);
  // Encodes what is queued, writes the trailer and moves the file into place; throws on an error
  // met on the way or when no frame was added.
  void finish();
  int64_t frames() const;  // added so far

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

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
// Whether write_video(path, ...) writes an MP4.
bool is_mp4_path(const std::string& path);

// Checks before anything is computed that write_video(path, ...) can write there: the form is one
// of the above (and this build has an MP4 writer for .mp4), the folder exists (PNG frames: its
// nearest existing ancestor) and takes a new file (one is created beside the output and removed
// again), a PNG folder is new or empty, and an existing output file is a regular file. Messages
// name the path only (front ends add their option's name).
void check_video_output(const std::string& path);

}  // namespace ib
