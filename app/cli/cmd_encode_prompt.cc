// `inbetween encode-prompt`: runs the text path alone (clean, tokenize, umT5) and prints a summary.
#include <chrono>
#include <cmath>
#include <cstdio>

#include "app_commands.h"
#include "io/model_config.h"
#include "io/safetensors.h"
#include "models/t5.h"
#include "text/prompt.h"
#include "text/tokenizer.h"

namespace ib::cli {

void register_encode_prompt(CLI::App& app) {
  struct Args {
    std::string model, prompt, output;
    bool negative = false;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("encode-prompt", "Clean, tokenize and T5-encode a prompt; print a summary");
  cmd->add_option("--model", a->model, "Model folder (release layout)")->required();
  cmd->add_option("--prompt", a->prompt, "Prompt text");
  cmd->add_flag("--negative", a->negative, "Encode the model's default negative prompt instead");
  cmd->add_option("--output", a->output, "Also save the trimmed embedding as tensor `context` in this .safetensors file");
  cmd->callback([a] {
    const auto t0 = std::chrono::steady_clock::now();
    const ModelFolder folder = ModelFolder::open(a->model);
    const std::string raw = a->negative ? text::default_negative_prompt(folder.dit.model_type) : a->prompt;
    const std::string cleaned = text::clean_prompt(raw);
    const text::Tokenizer tok = text::Tokenizer::load(folder.tokenizer_path);
    const text::Tokens t = tok.encode(cleaned, folder.dit.text_len);
    const T5Encoder t5 = T5Encoder::load(*open_tensor_store(folder.t5_path), folder.t5);
    const auto t1 = std::chrono::steady_clock::now();
    const Tensor hidden = t5.encode(t.ids, t.mask).slice(0, t.length);
    const double enc_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    double sum = 0, sq = 0;
    const float* p = hidden.data<float>();
    for (int64_t i = 0; i < hidden.numel(); ++i) {
      sum += p[i];
      sq += static_cast<double>(p[i]) * p[i];
    }
    const double n = static_cast<double>(hidden.numel());
    std::printf("cleaned:   %s\n", cleaned.c_str());
    std::printf("tokens:    %lld of %lld (", static_cast<long long>(t.length), static_cast<long long>(folder.dit.text_len));
    for (int64_t i = 0; i < t.length; ++i) std::printf("%s%d", i ? " " : "", t.ids[static_cast<size_t>(i)]);
    std::printf(")\n");
    std::printf("embedding: f32 [%lld, %lld], mean %.6f, std %.6f\n", static_cast<long long>(hidden.size(0)),
                static_cast<long long>(hidden.size(1)), sum / n, std::sqrt(std::max(0.0, sq / n - (sum / n) * (sum / n))));
    std::printf("time:      %.3f s total, %.3f s in the encoder\n",
                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), enc_s);
    if (!a->output.empty()) save_safetensors(a->output, {{"context", hidden.clone()}});
  });
}

}  // namespace ib::cli
