// The named options' parse and name functions (inbetween/pipeline.h): every name parses to its
// value and back, and anything else is an OptionError naming the option and the accepted names,
// quoting at most a little of the refused text.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "inbetween/error.h"
#include "inbetween/pipeline.h"

namespace ib {
namespace {

// parse(bad) must throw an OptionError for `field` whose message holds every one of `parts`.
template <class Parse>
void expect_refused(Parse parse, const std::string& bad, const std::string& field, const std::vector<std::string>& parts) {
  try {
    parse(bad);
    ADD_FAILURE() << field << ": '" << bad << "' accepted";
  } catch (const OptionError& e) {
    EXPECT_EQ(e.field(), field);
    const std::string msg = e.what();
    for (const std::string& p : parts) EXPECT_NE(msg.find(p), std::string::npos) << "message: " << msg << "\nlacks: " << p;
  }
}

TEST(Options, Device) {
  EXPECT_EQ(parse_device("cpu"), ComputeDevice::CPU);
  EXPECT_EQ(parse_device("cuda"), ComputeDevice::CUDA);
  for (ComputeDevice d : {ComputeDevice::CPU, ComputeDevice::CUDA}) EXPECT_EQ(parse_device(device_option_name(d)), d);
  EXPECT_STREQ(device_option_name(ComputeDevice::CUDA), "cuda");
  expect_refused(parse_device, "gpu", "device", {"unknown device 'gpu'", "(expected cpu or cuda)"});
  expect_refused(parse_device, "CPU", "device", {"'CPU'", "cpu or cuda"});  // names are lower case only
  expect_refused(parse_device, "", "device", {"''", "cpu or cuda"});
}

TEST(Options, Precision) {
  EXPECT_EQ(parse_precision("bf16"), Precision::BF16);
  EXPECT_EQ(parse_precision("fp8"), Precision::FP8);
  EXPECT_EQ(parse_precision("f32"), Precision::F32);
  for (Precision p : {Precision::BF16, Precision::FP8, Precision::F32}) EXPECT_EQ(parse_precision(precision_name(p)), p);
  EXPECT_STREQ(precision_name(Precision::FP8), "fp8");
  expect_refused(parse_precision, "fp16", "precision", {"unknown precision 'fp16'", "(expected bf16, fp8 or f32)"});
  expect_refused(parse_precision, "bf16 ", "precision", {"'bf16 '"});
}

TEST(Options, Solver) {
  EXPECT_EQ(parse_solver("unipc"), Solver::UniPC);
  EXPECT_EQ(parse_solver("dpm++"), Solver::DpmPP);
  EXPECT_EQ(parse_solver("euler"), Solver::Euler);
  for (Solver s : {Solver::UniPC, Solver::DpmPP, Solver::Euler}) EXPECT_EQ(parse_solver(solver_name(s)), s);
  expect_refused(parse_solver, "rk4", "solver", {"unknown solver 'rk4'", "(expected unipc, dpm++ or euler)"});
  expect_refused(parse_solver, "dpm", "solver", {"'dpm'"});
}

// --t5-device: its field is PipelineOptions::t5_device; "gpu" is not a placement.
TEST(Options, T5Placement) {
  EXPECT_EQ(parse_t5_placement("auto"), T5Placement::Auto);
  EXPECT_EQ(parse_t5_placement("cpu"), T5Placement::CPU);
  EXPECT_EQ(parse_t5_placement("cuda"), T5Placement::CUDA);
  for (T5Placement p : {T5Placement::Auto, T5Placement::CPU, T5Placement::CUDA})
    EXPECT_EQ(parse_t5_placement(t5_placement_name(p)), p);
  EXPECT_STREQ(t5_placement_name(PipelineOptions{}.t5_device), "auto");
  expect_refused(parse_t5_placement, "gpu", "t5_device", {"unknown t5_device 'gpu'", "(expected auto, cpu or cuda)"});
  expect_refused(parse_t5_placement, "Auto", "t5_device", {"'Auto'", "auto, cpu or cuda"});
}

TEST(Options, LastFrameFit) {
  EXPECT_EQ(parse_last_frame_fit("cover"), LastFrameFit::Cover);
  EXPECT_EQ(parse_last_frame_fit("upstream"), LastFrameFit::Upstream);
  for (LastFrameFit f : {LastFrameFit::Cover, LastFrameFit::Upstream})
    EXPECT_EQ(parse_last_frame_fit(last_frame_fit_name(f)), f);
  expect_refused(parse_last_frame_fit, "stretch", "last_frame_fit",
                 {"unknown last_frame_fit 'stretch'", "(expected cover or upstream)"});
}

TEST(Options, Attention) {
  EXPECT_EQ(parse_attention("bf16"), AttentionPrecision::BF16);
  EXPECT_EQ(parse_attention("fp8"), AttentionPrecision::FP8);
  for (AttentionPrecision a : {AttentionPrecision::BF16, AttentionPrecision::FP8})
    EXPECT_EQ(parse_attention(attention_name(a)), a);
  EXPECT_STREQ(attention_name(PipelineOptions{}.attention), "bf16");
  expect_refused(parse_attention, "int8", "attention", {"unknown attention 'int8'", "(expected bf16 or fp8)"});
}

// A client may send megabytes: the message quotes 48 bytes of them at most, not cutting a UTF-8
// character, and says how long the text was.
TEST(Options, LongValuesAreQuotedShort) {
  const std::string huge(1 << 20, '7');
  try {
    parse_solver(huge);
    ADD_FAILURE() << "accepted";
  } catch (const OptionError& e) {
    const std::string msg = e.what();
    EXPECT_LT(msg.size(), 200u);
    EXPECT_NE(msg.find("(1048576 bytes)"), std::string::npos) << msg;
    EXPECT_NE(msg.find("unipc, dpm++ or euler"), std::string::npos) << msg;
  }
  const std::string accents = std::string(47, 'a') + "\xc3\xa9\xc3\xa9";  // é straddles byte 48
  try {
    parse_last_frame_fit(accents);
    ADD_FAILURE() << "accepted";
  } catch (const OptionError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'" + std::string(47, 'a') + "...'"), std::string::npos) << msg;
  }
}

}  // namespace
}  // namespace ib
