#include "train/metrics.hpp"

#include <cmath>

#include "core/error.hpp"
#include "core/util.hpp"

namespace llamaft {

MetricsWriter::MetricsWriter(bool lead, const std::string& out_dir, const std::string& effective_config,
                             bool tensorboard)
    : lead_(lead), dir_(out_dir) {
  if (!lead_) return;
  make_directories(out_dir);
  metrics_.open(out_dir + "/metrics.jsonl", std::ios::app);
  LLAMAFT_REQUIRE(metrics_.good(), "cannot write '", out_dir, "/metrics.jsonl'");
  std::ofstream(out_dir + "/config.cfg") << effective_config;
  if (tensorboard) tb_ = std::make_unique<TensorBoardWriter>(out_dir + "/tensorboard");
}

nlohmann::ordered_json step_counters_json(const StepCounters& c) {
  nlohmann::ordered_json ops = nlohmann::ordered_json::object();
  for (const auto& [name, f] : c.ops) {
    ops[name] = {{"calls", f.calls},
                 {"launches", f.launches},
                 {"library_calls", f.library_calls},
                 {"bytes", f.bytes},
                 {"flops", f.flops}};
    if (c.timed) ops[name]["seconds"] = f.seconds;
  }
  nlohmann::ordered_json syncs = nlohmann::ordered_json::object();
  for (const auto& [site, n] : c.syncs) syncs[site] = n;
  return {{"host_syncs", c.total_syncs()},
          {"launches", c.total_launches()},
          {"bytes", c.total(&StepCounters::Family::bytes)},
          {"flops", c.total(&StepCounters::Family::flops)},
          {"syncs", syncs},
          {"ops", ops}};
}

void MetricsWriter::run_info(const nlohmann::ordered_json& info) {
  if (lead_) std::ofstream(dir_ + "/run_info.json") << info.dump(2) << "\n";
}

void MetricsWriter::step(const StepMetrics& m, const nlohmann::ordered_json& extra) {
  if (!lead_) return;
  nlohmann::ordered_json j = {
      {"step", m.step},
      {"loss", m.loss},
      {"lr", m.lr},
      {"grad_norm", m.grad_norm},
      {"tokens", static_cast<int64_t>(m.input_tokens)},
      {"target_tokens", static_cast<int64_t>(m.target_tokens)},
      {"tokens_per_s", m.tokens_per_s()},
      {"step_s", m.step_s},
      {"comm_s", m.comm_wait_s},
      {"comm_bytes", m.all_gather_bytes + m.reduce_scatter_bytes + m.all_reduce_bytes},
      {"all_gather_bytes", m.all_gather_bytes},
      {"reduce_scatter_bytes", m.reduce_scatter_bytes},
      {"all_reduce_bytes", m.all_reduce_bytes},
      {"skipped", m.skipped},
  };
  for (const auto& [k, v] : extra.items()) j[k] = v;
  metrics_ << j.dump() << std::endl;
  if (tb_) {
    tb_->scalar("train/loss", m.loss, m.step);
    tb_->scalar("train/lr", m.lr, m.step);
    tb_->scalar("train/grad_norm", m.grad_norm, m.step);
    tb_->scalar("perf/tokens_per_s", m.tokens_per_s(), m.step);
    tb_->flush();
  }
}

void MetricsWriter::validation(int64_t step, double loss, double accuracy, int64_t tokens) {
  if (!lead_) return;
  nlohmann::ordered_json j = {{"step", step},
                              {"val_loss", loss},
                              {"val_ppl", std::exp(loss)},
                              {"val_accuracy", accuracy},
                              {"val_tokens", tokens}};
  metrics_ << j.dump() << std::endl;
  if (tb_) tb_->scalar("val/loss", loss, step);
}

void MetricsWriter::task(int64_t step, const nlohmann::ordered_json& summary) {
  if (!lead_) return;
  nlohmann::ordered_json j = {{"step", step}, {"task", summary.value("task", "")}};
  for (const auto& [k, v] : summary.items())
    if (k != "task" && k != "output_type") j["task_" + k] = v;
  metrics_ << j.dump() << std::endl;
  if (tb_) {
    for (const char* m : {"acc", "acc_norm", "word_perplexity", "byte_perplexity", "bits_per_byte"})
      if (summary.contains(m) && summary[m].is_number()) tb_->scalar(std::string("task/") + m, summary[m].get<double>(), step);
    tb_->flush();
  }
}

void MetricsWriter::sample(int64_t step, size_t index, const std::vector<int32_t>& prompt,
                           const std::vector<int32_t>& ids, const std::string& prompt_text,
                           const std::string& sample_text) {
  if (!lead_) return;
  nlohmann::ordered_json j = {{"step", step}, {"sample", index}, {"prompt_ids", prompt}, {"sample_ids", ids}};
  if (!prompt_text.empty()) j["prompt"] = prompt_text;
  if (!sample_text.empty()) j["sample_text"] = sample_text;
  // A byte-level tokenizer's continuation can end inside a UTF-8 sequence.
  metrics_ << j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace) << std::endl;
}

void MetricsWriter::summary(const nlohmann::ordered_json& summary) {
  if (lead_) std::ofstream(dir_ + "/summary.json") << summary.dump(2) << "\n";
}

}  // namespace llamaft
