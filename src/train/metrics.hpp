// What a run leaves in output.dir for people and tools: config.cfg (the
// effective configuration), run_info.json (versions, world, hosts, Slurm),
// metrics.jsonl (one line per logged step, validation and sample lines; the
// source of truth), TensorBoard events when asked, and summary.json at the
// end. Only rank 0 writes; on other ranks every call is a no-op.
#pragma once

#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "backend/step_counters.hpp"
#include "train/tensorboard.hpp"

namespace llamaft {

struct StepMetrics {
  int64_t step = 0;            // 1-based: the step just completed
  double loss = 0;             // mean over the global batch's targets
  double lr = 0;
  double grad_norm = 0;
  bool skipped = false;        // non-finite loss or gradients: no update
  double input_tokens = 0;     // over every rank
  double target_tokens = 0;
  double step_s = 0;
  double comm_wait_s = 0;
  int64_t all_gather_bytes = 0, reduce_scatter_bytes = 0, all_reduce_bytes = 0;
  double tokens_per_s() const { return input_tokens / step_s; }
};

// A device backend's counters for one step, as metrics.jsonl's "device"
// field: totals, host syncs by site, and each op family's calls, launches,
// bytes and FLOPs (bench/roofline.py reads either this or a dry run's dump).
nlohmann::ordered_json step_counters_json(const StepCounters& c);

class MetricsWriter {
 public:
  // Rank 0: creates out_dir, appends to metrics.jsonl, writes config.cfg.
  MetricsWriter(bool lead, const std::string& out_dir, const std::string& effective_config, bool tensorboard);
  void run_info(const nlohmann::ordered_json& info);
  // The step line plus the fields that stay the same within a run (memory,
  // world, strategy, restarts).
  void step(const StepMetrics& m, const nlohmann::ordered_json& extra);
  void validation(int64_t step, double loss, double accuracy, int64_t tokens);
  // train.eval_task's scores: {step, task, task_<metric>...} (TaskResult::summary's fields, prefixed).
  void task(int64_t step, const nlohmann::ordered_json& summary);
  // A greedy sample: the prompt's ids and the continuation's, plus the prompt
  // as written and the continuation decoded ("" where there is no text).
  void sample(int64_t step, size_t index, const std::vector<int32_t>& prompt, const std::vector<int32_t>& ids,
              const std::string& prompt_text = "", const std::string& sample_text = "");
  void summary(const nlohmann::ordered_json& summary);

 private:
  bool lead_;
  std::string dir_;
  std::ofstream metrics_;
  std::unique_ptr<TensorBoardWriter> tb_;
};

}  // namespace llamaft
