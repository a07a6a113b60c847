#include "app_commands.h"

namespace ib::cli {

void register_commands(CLI::App& app) {
  register_generate(app);
  register_serve(app);
  register_synth_model(app);
  register_encode_prompt(app);
}

}  // namespace ib::cli
