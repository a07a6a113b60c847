// Runs a shell command for a test and collects its exit status and output (stdout and stderr).
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <string>

namespace ib::test {

struct CommandResult {
  int status = -1;  // the exit code, -1 when the command did not exit normally
  std::string output;
};

inline CommandResult run_command(const std::string& cmd) {
  CommandResult r;
  FILE* p = ::popen((cmd + " 2>&1").c_str(), "r");
  if (p == nullptr) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

}  // namespace ib::test
