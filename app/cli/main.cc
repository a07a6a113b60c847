// The `inbetween` command line: parses arguments, calls the library, prints results and errors.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "app_commands.h"
#include "core/log.h"
#include "inbetween/error.h"

int main(int argc, char** argv) {
  ib::init_logging();
  CLI::App app{"inbetween: generate the video between two keyframes with Wan2.1-FLF2V"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "inbetween 0.1.0");
  ib::cli::register_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const ib::Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
