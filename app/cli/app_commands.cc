#include "app_commands.h"

namespace ib::cli {

void register_commands(CLI::App& app) { register_encode_prompt(app); }

}  // namespace ib::cli
