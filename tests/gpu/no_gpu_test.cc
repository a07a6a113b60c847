// On a machine without a GPU (CI), --device cuda and `inbetween bench` stop at once with a message
// that names the problem and a non-zero exit, whether or not the build has CUDA.
#include <gtest/gtest.h>

#include <string>

#include "common/command.h"
#include "common/fixture.h"
#include "core/cuda_memory.h"

namespace ib {
namespace {

using test::run_command;

class WithoutGpu : public ::testing::Test {
 protected:
  void SetUp() override {
    if (cuda::device_count() > 0) GTEST_SKIP() << "this machine has a GPU: the gpu-labelled tests cover --device cuda";
  }
  std::string cli() const { return test::binary_dir() + "/inbetween"; }
};

TEST_F(WithoutGpu, GenerateOnCudaSaysSo) {
  const std::string dir = test::fixture_dir();
  const test::CommandResult r = run_command(cli() + " generate --device cuda --model '" + test::model_dir() + "' --first '" + dir +
                       "/first.png' --last '" + dir + "/last.png' --frames 5 --max-area 4096 --steps 1 --output '" +
                       test::temp_dir() + "/v.safetensors' --quiet");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("no CUDA device"), std::string::npos) << r.output;
}

TEST_F(WithoutGpu, BenchSaysSo) {
  const test::CommandResult r = run_command(cli() + " bench --size 832x480 --frames 81");
  EXPECT_NE(r.status, 0) << r.output;
  const bool named = r.output.find("no CUDA device") != std::string::npos ||
                     r.output.find("no CUDA support") != std::string::npos;
  EXPECT_TRUE(named) << r.output;
}

TEST_F(WithoutGpu, BenchRejectsBadArgumentsFirst) {
  const test::CommandResult r = run_command(cli() + " bench --size 830x480");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("multiples of 16"), std::string::npos) << r.output;
  const test::CommandResult s = run_command(cli() + " bench --frames 80");
  EXPECT_NE(s.status, 0) << s.output;
  EXPECT_NE(s.output.find("4n+1"), std::string::npos) << s.output;
  // --precision takes Precision's names; the bench times bf16 and fp8 only.
  const test::CommandResult f = run_command(cli() + " bench --precision f32");
  EXPECT_NE(f.status, 0) << f.output;
  EXPECT_NE(f.output.find("--precision 'f32': expected bf16 or fp8"), std::string::npos) << f.output;
  const test::CommandResult u = run_command(cli() + " bench --vae-precision fp16");
  EXPECT_NE(u.status, 0) << u.output;
  EXPECT_NE(u.output.find("unknown precision 'fp16'"), std::string::npos) << u.output;
}

}  // namespace
}  // namespace ib
