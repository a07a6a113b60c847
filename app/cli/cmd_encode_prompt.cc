// `inbetween encode-prompt`: runs the text path (clean, tokenize, umT5) and prints a summary.
#include <cstdio>

#include "app_commands.h"
#include "inbetween/error.h"

namespace ib::cli {

void register_encode_prompt(CLI::App& app) {
  auto* cmd = app.add_subcommand("encode-prompt", "Clean, tokenize and T5-encode a prompt; print a summary");
  auto model = std::make_shared<std::string>();
  auto prompt = std::make_shared<std::string>();
  cmd->add_option("--model", *model, "Model folder (release layout)")->required();
  cmd->add_option("--prompt", *prompt, "Prompt text")->required();
  cmd->callback([model, prompt] { throw Error("encode-prompt: the text encoder is not built yet"); });
}

}  // namespace ib::cli
