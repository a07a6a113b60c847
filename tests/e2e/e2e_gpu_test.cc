// GPU checks of the pipeline (label gpu, run on the lent GPU machine): the DiT on CUDA against the
// upstream oracle (dit.safetensors), and the whole FLF2V generation with --device cuda against
// e2e.safetensors, with the same float32 tolerances as on the CPU.
#include <gtest/gtest.h>

#include "common/fixture.h"
#include "e2e/e2e_settings.h"
#include "inbetween/pipeline.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "models/dit.h"

namespace ib {
namespace {

TEST(GpuPipeline, DitMatchesOracle) {
  const ModelFolder folder = ModelFolder::open(test::model_dir());
  WanDiT dit = WanDiT::load(*open_tensor_store(folder.dit_path), folder.dit);
  dit.to(Device::CUDA);
  EXPECT_EQ(dit.weights().patch_w.device(), Device::CUDA);
  const auto f = test::open_fixture("dit.safetensors");
  for (const auto& [t_name, out_name] : {std::pair{"t", "out"}, std::pair{"t2", "out2"}}) {
    const double t = static_cast<double>(f->get(t_name).data<int64_t>()[0]);
    const Tensor out = dit.forward(f->get("x"), t, f->get("context"), f->get("clip_fea"), f->get("y"));
    EXPECT_EQ(out.device(), Device::CPU);
    EXPECT_TENSOR_CLOSE(out, f->get(out_name), test::kComponentRel) << out_name;
  }
}

TEST(GpuPipeline, WholeGenerationMatchesReferenceVideo) {
  const GenerateOptions o = test::fixture_options();
  Pipeline pipeline(PipelineOptions{test::model_dir(), "cuda", 0});
  EXPECT_NE(pipeline.describe().find("cuda"), std::string::npos);
  const GeneratedVideo v = pipeline.generate(o);
  const Tensor ref = test::open_fixture("e2e.safetensors")->get("video");
  ASSERT_EQ((Shape{3, v.frames, v.height, v.width}), ref.shape());
  Tensor got = Tensor::empty(ref.shape(), DType::F32);
  std::copy(v.data.begin(), v.data.end(), got.data<float>());
  EXPECT_TENSOR_CLOSE_ABS(got, ref, 1e-3);
}

}  // namespace
}  // namespace ib
