// Small files that outlive a process and may be lost at any time (choices that are slow to make and
// cheap to make again, such as cuDNN's timed convolution plans): where they live, reading them, and
// replacing them whole so that a reader never sees half a file. Every failure here is quiet: a
// cache that cannot be read or written is simply not used.
#pragma once

#include <string>
#include <vector>

namespace ib {

// The folder for such files: $INBETWEEN_CACHE_DIR when set (empty: caching off, returns ""), else
// $XDG_CACHE_HOME/inbetween, else $HOME/.cache/inbetween; "" when none of them is set. The folder
// is not created here.
std::string cache_dir();

// The lines of a text file (without their newlines); empty when it is missing or unreadable.
std::vector<std::string> read_cache_lines(const std::string& path);

// Writes the lines to path through a temporary file in the same folder and a rename, creating the
// folder; false (and nothing half-written) when that fails.
bool write_cache_lines(const std::string& path, const std::vector<std::string>& lines);

}  // namespace ib
