// Registration of the CLI's subcommands; each lives in its own file (cmd_*.cc).
#pragma once

#include <CLI/CLI.hpp>

namespace ib::cli {

void register_commands(CLI::App& app);

// One subcommand's registration; each cmd_*.cc defines one.
void register_encode_prompt(CLI::App& app);
void register_generate(CLI::App& app);
void register_synth_model(CLI::App& app);
void register_serve(CLI::App& app);

}  // namespace ib::cli
