// Trainer's reporting as a job runs: the peak that MFU divides by (measured
// once at start-up), the parameter counts of the banner, the progress line,
// and the time, epoch and MFU fields of metrics.jsonl (train/mfu.hpp has the
// FLOPs convention).
#include <chrono>
#include <iostream>

#include "core/proc_stats.hpp"
#include "train/mfu.hpp"
#include "train/trainer.hpp"

namespace llamaft {

void Trainer::measure_peak() {
  if (settings_.peak_tflops > 0) {
    peak_flops_ = settings_.peak_tflops * 1e12 * world_->size();
    peak_source_ = "output.peak_tflops";
    return;
  }
  // Every rank at once: ranks that share a node's cores share its peak.
  const GemmPeak p = measure_gemm_peak(*backend_, model_options_.bf16_storage);
  double v[2] = {p.flops_per_s, p.seconds};
  world_->all_reduce_sum(v, 2);
  peak_flops_ = v[0];
  peak_source_ = str_cat(model_options_.bf16_storage ? "bf16" : "fp32", " GEMM ", p.size, "^3 measured at start-up (",
                         v[1] / world_->size(), " s)");
}

Trainer::ParamCounts Trainer::param_counts() const {
  ParamCounts c;
  for (const Unit& u : fsdp_->layout().units()) {
    c.total += u.numel;
    if (u.trainable) c.trainable += u.numel;
    if (u.kind == UnitKind::kLora) c.adapter += u.numel;
  }
  return c;
}

double Trainer::mfu(const StepMetrics& m) const {
  if (peak_flops_ <= 0 || m.step_s <= 0) return -1;
  return flops_per_token_ * m.tokens_per_s() / peak_flops_;
}

nlohmann::ordered_json Trainer::progress_fields(const StepMetrics& m) const {
  const double rows = static_cast<double>(train_data_.rows.size());
  return {{"time", std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count()},
          {"elapsed_s", progress_->elapsed_s()},
          {"epoch", rows > 0 ? static_cast<double>(state_.consumed_rows) / rows : 0.0},
          {"mfu", mfu(m)}};
}

void Trainer::report_progress(const StepMetrics& m) {
  ProgressPoint p;
  p.step = m.step;
  p.loss = m.loss;
  p.lr = m.lr;
  p.tokens_per_s = m.tokens_per_s();
  p.mfu = mfu(m);
  p.peak_bytes = static_cast<int64_t>(backend_->peak_bytes());
  if (lead_) p.rss_peak_bytes = read_proc_memory().hwm;
  progress_->update(p);
}

}  // namespace llamaft
