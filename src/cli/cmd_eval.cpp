// `llamaft eval`: mean next-token NLL over the non-ignored targets of a
// dataset (train/evaluate, the same code as train's validation), printed as
// one JSON line {"loss", "ppl", "tokens", "accuracy", "dtype", "seconds", "tokens_per_s"}.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <chrono>
#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "core/error.hpp"
#include "data/data_settings.hpp"
#include "data/prepared_dataset.hpp"
#include "data/token_dataset.hpp"
#include "model/device_batch.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"
#include "train/evaluate.hpp"

namespace llamaft {

int run_eval(const Config& cfg) {
  const DataSettings data_settings = DataSettings::from_config(cfg);
  const bool task = !cfg.get_string("eval.task").empty(), data = !data_settings.path.empty();
  LLAMAFT_REQUIRE(task != data, "eval: give either --data FILE (loss and perplexity) or --task FILE (an "
                  "lm-evaluation-harness task)", task ? ", not both" : "");
  if (task) return run_eval_task(cfg);
  apply_runtime_settings(cfg);
  auto be = make_backend(cfg);
  ResidentModel rm = load_resident_model(cfg.get_string("model.path"), cfg.get_string("model.adapter"), *be,
                                         eval_quant_from_config(cfg), cfg.get_string("eval.dtype") == "bf16");
  const LlamaConfig& mc = rm.config;
  LlamaModel& model = *rm.model;
  ResidentParams& params = *rm.params;

  const int seq_len = data_settings.resolved_seq_len(true, "--seq-len");
  const int batch_size = static_cast<int>(cfg.get_int("eval.batch_size"));
  std::string split;
  const std::string data_path = resolve_prepared_split(data_settings.path, true, &split);
  if (!split.empty())
    std::cerr << "eval: " << data_settings.path << " is a prepared dataset; evaluating its " << split
              << " split (" << data_path << ")\n";
  if (!mc.unused_keys.empty()) std::cerr << "eval: " << unused_keys_note(mc) << "\n";
  if (cfg.get_string("eval.dtype") == "bf16")
    std::cerr << "eval: computing in bf16 (GEMMs: " << be->bf16_gemm_name() << ")\n";
  const TokenDataset ds = load_dataset(data_path, data_settings.format, seq_len, mc.vocab_size);
  if (ds.truncated_rows)
    std::cerr << "eval: truncated " << ds.truncated_rows << " rows (" << ds.truncated_tokens
              << " tokens) to seq_len " << seq_len << "\n";

  DeviceBatch dev(*be);
  const auto t0 = std::chrono::steady_clock::now();
  const SplitLoss total = evaluate_split(model, params, dev, ds, 0, batch_size, nullptr);
  be->synchronize();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  LLAMAFT_REQUIRE(total.tokens > 0, "eval: the dataset has no target tokens (all labels are -100?)");
  const double loss = total.mean();
  if (!std::isfinite(loss))
    throw Error(str_cat("eval: the loss is ", loss, " (non-finite): the model's weights or activations overflow; "
                        "nothing is reported"),
                kExitDiverged);
  nlohmann::json j = {{"loss", loss},
                      {"ppl", std::exp(loss)},
                      {"tokens", static_cast<int64_t>(total.tokens)},
                      {"accuracy", total.correct / total.tokens},
                      {"dtype", cfg.get_string("eval.dtype")},
                      // the forward passes alone (loading excluded), and target tokens per second of them
                      {"seconds", seconds},
                      {"tokens_per_s", seconds > 0 ? static_cast<double>(total.tokens) / seconds : 0.0}};
  std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace llamaft
