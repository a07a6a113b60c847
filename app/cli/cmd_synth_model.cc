// `inbetween synth-model`: writes a model folder in the release layout: random weights, or the
// hand-built demo model (--preset demo).
#include <cstdio>

#include "app_commands.h"
#include "synth/synth_model.h"

namespace ib::cli {

void register_synth_model(CLI::App& app) {
  struct Args {
    std::string preset = "tiny", out;
    uint64_t seed = 0;
    bool overwrite = false, quiet = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("synth-model",
                                 "Write a model folder in the release layout: the hand-built demo model, or random "
                                 "weights for tests and benchmarks");
  cmd->add_option("--preset", a->preset,
                  fmt::format("One of: {} (demo: hand-built, its videos go from the first keyframe to the last)",
                              fmt::join(synth_preset_names(), ", ")))
      ->capture_default_str();
  cmd->add_option("--out", a->out, "Folder to create")->required();
  cmd->add_option("--seed", a->seed, "Seed of the random weights")->capture_default_str();
  cmd->add_flag("--overwrite", a->overwrite, "Replace the folder if it exists");
  cmd->add_flag("-q,--quiet", a->quiet, "Print nothing");
  cmd->callback([a] {
    SynthOptions o;
    o.out_dir = a->out;
    o.seed = a->seed;
    o.overwrite = a->overwrite;
    if (!a->quiet) o.on_file = [](const std::string& f) { std::fprintf(stderr, "  wrote %s\n", f.c_str()); };
    const SynthPreset p = synth_preset(a->preset);
    write_synth_model(p, o);
    if (!a->quiet) std::fprintf(stderr, "synthetic model '%s' written to %s\n", a->preset.c_str(), a->out.c_str());
  });
}

}  // namespace ib::cli
