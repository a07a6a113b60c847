// The command line's first-run behaviour: bad options and files are refused before anything is
// computed with the option's name in the message (no progress line is printed first), SIGTERM
// stops a generation at its next VAE chunk, `serve` refuses a broken model folder before it
// listens, and `synth-model --quiet` prints nothing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include "common/command.h"
#include "common/fixture.h"

namespace ib {
namespace {

namespace fs = std::filesystem;
using test::run_command;

std::string cli() { return test::binary_dir() + "/inbetween"; }

// One model folder for the whole file, written by the CLI itself.
const std::string& model(const std::string& preset) {
  static std::map<std::string, std::string> dirs;
  auto it = dirs.find(preset);
  if (it != dirs.end()) return it->second;
  const std::string dir = test::temp_dir() + "/" + preset;
  const test::CommandResult r = run_command(cli() + " synth-model --quiet --preset " + preset + " --out " + dir);
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "") << "--quiet prints nothing";
  return dirs[preset] = dir;
}

// `generate` with small settings; `extra` ("--frames 80") replaces an option of the same name.
std::string generate(const std::string& model_dir, const std::string& extra, const std::string& out) {
  const std::string assets = test::repo_root() + "/assets";
  std::vector<std::pair<std::string, std::string>> opts = {{"--model", model_dir},
                                                           {"--first", assets + "/first.png"},
                                                           {"--last", assets + "/last.png"},
                                                           {"--frames", "5"},
                                                           {"--size", "64x32"},
                                                           {"--steps", "1"},
                                                           {"--seed", "1"},
                                                           {"--output", out}};
  if (!extra.empty()) {
    const size_t sp = extra.find(' ');
    const std::string name = extra.substr(0, sp), value = extra.substr(sp + 1);
    bool replaced = false;
    for (auto& [k, v] : opts)
      if (k == name) {
        v = value;
        replaced = true;
      }
    if (!replaced) opts.emplace_back(name, value);
  }
  std::string cmd = cli() + " generate";
  for (const auto& [k, v] : opts) cmd += " " + k + " '" + v + "'";
  return cmd;
}

// The command fails with every part in its output and without having started a stage.
void expect_refused(const std::string& cmd, const std::vector<std::string>& parts, const std::string& out) {
  SCOPED_TRACE(cmd);
  const auto t0 = std::chrono::steady_clock::now();
  const test::CommandResult r = run_command(cmd);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_NE(r.status, 0) << r.output;
  for (const std::string& p : parts)
    EXPECT_NE(r.output.find(p), std::string::npos) << "lacks '" << p << "': " << r.output;
  for (const char* stage : {"images", "text ", "vae-encode", "denoise"})
    EXPECT_EQ(r.output.find(stage), std::string::npos) << "a stage ran: " << r.output;
  EXPECT_EQ(r.output.find("Could not convert"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_LT(secs, 10.0);
}

TEST(Cli, OptionsAreRefusedWithTheirNames) {
  const std::string m = model("tiny"), out = test::temp_dir() + "/x.mp4";
  expect_refused(generate(m, "--seed abc", out), {"--seed", "'abc' is not a whole number"}, out);
  expect_refused(generate(m, "--steps 2.5", out), {"--steps", "'2.5'"}, out);
  expect_refused(generate(m, "--guidance lots", out), {"--guidance", "'lots' is not a number"}, out);
  expect_refused(generate(m, "--frames 80", out), {"--frames 80", "use 77 or 81"}, out);
  expect_refused(generate(m, "--size 100x48", out), {"--size 100x48", "multiples of 16"}, out);
  expect_refused(generate(m, "--fps 0", out), {"--fps 0"}, out);
}

TEST(Cli, FilesAreCheckedBeforeAnyStage) {
  const std::string m = model("tiny"), dir = test::temp_dir(), out = dir + "/x.mp4";
  expect_refused(generate(m, "", dir + "/absent/x.mp4"), {"--output", dir + "/absent", "does not exist"},
                 dir + "/absent/x.mp4");
  expect_refused(generate(m, "", "/proc/x.safetensors"), {"--output", "/proc"}, "/proc/x.safetensors");
  std::ofstream(dir + "/notes.png") << "no pixels here";
  expect_refused(generate(m, "--last " + dir + "/notes.png", out), {"--last", dir + "/notes.png", "not a readable"},
                 out);
  // A broken model: one DiT shard gone.
  const std::string broken = dir + "/broken";
  fs::copy(m, broken, fs::copy_options::recursive);
  fs::remove(broken + "/diffusion_pytorch_model-00002-of-00002.safetensors");
  expect_refused(generate(broken, "", out), {"diffusion_pytorch_model-00002-of-00002.safetensors", "missing"}, out);
  // `serve` stops before listening.
  const test::CommandResult r =
      run_command(cli() + " serve --port 0 --model " + broken + " --data-dir " + dir + "/data");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("diffusion_pytorch_model-00002-of-00002.safetensors"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("listening on"), std::string::npos) << r.output;
}

// A child process whose stderr we read line by line.
struct Child {
  pid_t pid = -1;
  FILE* err = nullptr;
};

Child spawn(const std::vector<std::string>& args) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  Child c;
  c.pid = ::fork();
  if (c.pid == 0) {
    ::dup2(fds[1], STDERR_FILENO);
    ::close(fds[0]);
    ::close(fds[1]);
    std::vector<char*> argv;
    for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(fds[1]);
  c.err = ::fdopen(fds[0], "r");
  return c;
}

TEST(Cli, SigtermStopsTheVaeEncodeAtTheNextChunk) {
  const std::string m = model("demo"), out = test::temp_dir() + "/sig.mp4", assets = test::repo_root() + "/assets";
  Child c = spawn({cli(), "generate", "--model", m, "--first", assets + "/first.png", "--last", assets + "/last.png",
                   "--frames", "33", "--size", "320x176", "--steps", "2", "--output", out});
  ASSERT_GT(c.pid, 0);
  std::string all;
  char line[512];
  std::chrono::steady_clock::time_point sent;
  bool signalled = false;
  while (std::fgets(line, sizeof line, c.err) != nullptr) {
    all += line;
    if (!signalled && std::string(line).find("vae-encode   2/9") != std::string::npos) {
      ::kill(c.pid, SIGTERM);
      sent = std::chrono::steady_clock::now();
      signalled = true;
    }
  }
  std::fclose(c.err);
  int st = 0;
  ::waitpid(c.pid, &st, 0);
  const double latency = std::chrono::duration<double>(std::chrono::steady_clock::now() - sent).count();
  ASSERT_TRUE(signalled) << all;
  std::printf("[measured] generate exited %.3f s after SIGTERM during vae-encode\n", latency);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 0) << all;
  EXPECT_NE(all.find("stopped by a signal"), std::string::npos) << all;
  EXPECT_EQ(all.find("vae-encode   9/9"), std::string::npos) << "the encode ran to its end: " << all;
  EXPECT_EQ(all.find("denoise"), std::string::npos) << all;
  EXPECT_FALSE(fs::exists(out));
  EXPECT_LT(latency, 5.0);
}

}  // namespace
}  // namespace ib
