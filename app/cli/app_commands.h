// Registration of the CLI's subcommands; each lives in its own file (cmd_*.cc).
#pragma once

#include <CLI/CLI.hpp>

#include "inbetween/pipeline.h"

namespace ib::cli {

// --model, --device, --threads, --precision, --vram-budget and --t5-device, shared by generate, story
// and serve.
void add_pipeline_options(CLI::App* cmd, PipelineOptions& p);

void register_commands(CLI::App& app);

// --size WIDTHxHEIGHT (or WIDTH*HEIGHT) as {width, height}; ranges are the library's to check.
struct SizeOption {
  int64_t width = 0, height = 0;
};
SizeOption parse_size_option(const std::string& s);

// Validators that run on an option's text before CLI11 converts it, so `--seed abc` gets our own
// message ("--seed 'abc' is not a whole number; expected ...") instead of a conversion error.
CLI::Validator integer_check(const std::string& flag, const std::string& expected);
CLI::Validator number_check(const std::string& flag, const std::string& expected);
// A named option's validator: the library's parse function (parse_device, parse_solver, ...) decides,
// and its message ("unknown device 'gpu' (expected cpu or cuda)") is the one printed.
template <class Parse>
CLI::Validator name_check(Parse parse) {
  return CLI::Validator(
      [parse](std::string& text) -> std::string {
        try {
          parse(text);
          return "";
        } catch (const std::exception& e) {
          return e.what();
        }
      },
      "");
}
// A named option (--device, --solver, ...) stored as its enum: the text is checked by name_check and
// converted by the same parse function; --help shows the default by its name.
template <class E>
CLI::Option* add_named_option(CLI::App* cmd, const std::string& flag, E& target, E (*parse)(std::string_view),
                              const char* (*name)(E), const std::string& help) {
  auto store = [&target, parse](const std::string& text) { target = parse(text); };
  return cmd->add_option_function<std::string>(flag, store, help)
      ->check(name_check(parse))
      ->default_str(name(target));
}

// One subcommand's registration; each cmd_*.cc defines one.
void register_encode_prompt(CLI::App& app);
void register_generate(CLI::App& app);
void register_story(CLI::App& app);
void register_synth_model(CLI::App& app);
void register_serve(CLI::App& app);
void register_bench(CLI::App& app);

}  // namespace ib::cli
