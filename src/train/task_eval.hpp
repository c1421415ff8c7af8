// lm-evaluation-harness task evaluation on the model as it is held (resident
// or FSDP shards): the task's loglikelihood requests (data/lm_requests) run
// through LlamaModel::forward_token_logprobs, and the scores are aggregated
// as lm_eval 0.4.x aggregates them:
//  - multiple_choice: acc = [argmax ll == gold], acc_norm = [argmax ll /
//    len(choice) == gold] (len in code points, Python's len; lm_eval's
//    completion_len), acc_bytes with the UTF-8 byte length; argmax is
//    numpy's (first maximum, a NaN wins); means, and mean_stderr
//    (sample standard deviation / sqrt(n));
//  - loglikelihood_rolling: word_perplexity = exp(-sum ll / sum words),
//    byte_perplexity = exp(-sum ll / sum bytes), bits_per_byte =
//    -sum ll / sum bytes / ln 2, summed over every doc.
// Requests are sorted by length and cut into batches of at most batch_rows
// rows (right-padded); batch k goes to rank k mod W, every rank runs the same
// number of forward passes (padding with a batch that scores nothing), and
// the per-request results are summed across ranks.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "comm/communicator.hpp"
#include "config/config.hpp"
#include "data/lm_requests.hpp"
#include "data/lm_task.hpp"
#include "model/device_batch.hpp"
#include "model/llama.hpp"

namespace llamaft {

struct TaskResult {
  std::string task;
  TaskOutput output = TaskOutput::kMultipleChoice;
  int64_t items = 0, requests = 0, truncated = 0, tokens = 0;  // tokens: every row's input, over all ranks
  std::vector<std::pair<std::string, double>> metrics;         // in the task's order, each with its _stderr
  std::vector<nlohmann::ordered_json> per_item;                 // for --output-items (every rank)
  double forward_s = 0;                                         // the forward passes (slowest rank)
  double metric(const std::string& name) const;                 // NaN when absent
  nlohmann::ordered_json summary() const;                       // one JSON object, without per_item
};

// How much of a task is scored and how long its requests may be (eval.limit,
// eval.max_length): `eval --task` and train.eval_task read them here.
struct TaskEvalSettings {
  int64_t limit = 0;       // documents (0: all)
  int64_t max_length = 0;  // tokens per request (0: the model's max_position_embeddings)

  static TaskEvalSettings from_config(const Config& cfg);
  int max_length_for(const LlamaConfig& mc) const {
    return static_cast<int>(max_length > 0 ? max_length : mc.max_position_embeddings);
  }
};

class TaskEvaluator {
 public:
  // Tokenizes every request once (max_length: lm_eval's, the model's
  // max_position_embeddings unless overridden).
  TaskEvaluator(LmTask task, const Tokenizer& tok, const HfEncoding& enc, int max_length);
  const LmTask& task() const { return task_; }
  size_t num_requests() const { return requests_.size(); }

  // Collective over `world` (null: one process).
  TaskResult run(LlamaModel& model, UnitAccess& params, DeviceBatch& dev, int batch_rows, Communicator* world);

 private:
  // Each request's loglikelihood (sum of its continuation's log-probabilities)
  // and whether every continuation token was the argmax, on every rank.
  void score(LlamaModel& model, UnitAccess& params, DeviceBatch& dev, int batch_rows, Communicator* world,
             std::vector<double>& ll, std::vector<double>& greedy, TaskResult& r);
  void aggregate_choices(const std::vector<double>& ll, const std::vector<double>& greedy, TaskResult& r) const;
  void aggregate_rolling(const std::vector<double>& ll, TaskResult& r) const;

  LmTask task_;
  std::vector<LlRequest> requests_;
  std::vector<std::vector<size_t>> item_requests_;  // item -> its requests, in order
};

// numpy.argmax over a row of scores (first maximum; the first NaN if any).
size_t numpy_argmax(const std::vector<double>& v);

}  // namespace llamaft
