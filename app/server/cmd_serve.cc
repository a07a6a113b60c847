// Placeholder for `inbetween serve` until the server lands.
#include "app_commands.h"

namespace ib::cli {

void register_serve(CLI::App&) {}

}  // namespace ib::cli
