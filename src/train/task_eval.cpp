#include "train/task_eval.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>

#include "core/error.hpp"

namespace llamaft {

namespace {

// lm_eval's mean and mean_stderr (sample standard deviation / sqrt(n)).
std::pair<double, double> mean_and_stderr(const std::vector<double>& x) {
  const double n = static_cast<double>(x.size());
  const double mu = std::accumulate(x.begin(), x.end(), 0.0) / n;
  if (x.size() < 2) return {mu, NAN};
  double ss = 0;
  for (double v : x) ss += (v - mu) * (v - mu);
  return {mu, std::sqrt(ss / (n - 1)) / std::sqrt(n)};
}

// numpy's true division of a loglikelihood by a length (0 gives -inf, or NaN for 0/0).
double divide(double ll, double len) {
  if (len != 0) return ll / len;
  if (ll == 0 || std::isnan(ll)) return NAN;
  return ll < 0 ? -INFINITY : INFINITY;
}

}  // namespace

TaskEvalSettings TaskEvalSettings::from_config(const Config& cfg) {
  TaskEvalSettings t;
  t.limit = cfg.get_int("eval.limit");
  t.max_length = cfg.get_int("eval.max_length");
  return t;
}

size_t numpy_argmax(const std::vector<double>& v) {
  size_t best = 0;
  for (size_t i = 0; i < v.size(); ++i) {
    if (std::isnan(v[i])) return i;
    if (v[i] > v[best]) best = i;
  }
  return best;
}

double TaskResult::metric(const std::string& name) const {
  for (const auto& [k, v] : metrics)
    if (k == name) return v;
  return NAN;
}

nlohmann::ordered_json TaskResult::summary() const {
  nlohmann::ordered_json j = {{"task", task}, {"output_type", task_output_name(output)}, {"items", items},
                              {"requests", requests}};
  for (const auto& [k, v] : metrics) j[k] = std::isfinite(v) ? nlohmann::ordered_json(v) : nullptr;
  j["truncated_requests"] = truncated;
  j["tokens"] = tokens;
  j["forward_s"] = forward_s;
  j["items_per_s"] = forward_s > 0 ? static_cast<double>(items) / forward_s : 0.0;
  return j;
}

TaskEvaluator::TaskEvaluator(LmTask task, const Tokenizer& tok, const HfEncoding& enc, int max_length)
    : task_(std::move(task)) {
  LLAMAFT_REQUIRE(max_length >= 2, "the task's max_length must be at least 2 (got ", max_length, ")");
  requests_ = build_requests(task_, tok, enc, max_length);
  item_requests_.resize(task_.items.size());
  for (size_t r = 0; r < requests_.size(); ++r) item_requests_[requests_[r].item].push_back(r);
}

TaskResult TaskEvaluator::run(LlamaModel& model, UnitAccess& params, DeviceBatch& dev, int batch_rows,
                              Communicator* world) {
  TaskResult r;
  r.task = task_.name;
  r.output = task_.output;
  r.items = static_cast<int64_t>(task_.items.size());
  r.requests = static_cast<int64_t>(requests_.size());
  for (const auto& q : requests_) r.truncated += q.truncated;
  std::vector<double> ll, greedy;
  score(model, params, dev, batch_rows, world, ll, greedy, r);
  if (task_.output == TaskOutput::kMultipleChoice) aggregate_choices(ll, greedy, r);
  else aggregate_rolling(ll, r);
  return r;
}

void TaskEvaluator::score(LlamaModel& model, UnitAccess& params, DeviceBatch& dev, int batch_rows,
                          Communicator* world, std::vector<double>& ll, std::vector<double>& greedy,
                          TaskResult& r) {
  const int rank = world ? world->rank() : 0, nranks = world ? world->size() : 1;
  const size_t n = requests_.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return requests_[a].input.size() > requests_[b].input.size(); });
  const int64_t batches = (static_cast<int64_t>(n) + batch_rows - 1) / batch_rows;
  const int64_t rounds = (batches + nranks - 1) / nranks;
  // result[q] = ll, result[n + q] = greedy (1/0); the owner fills its requests, the sum spreads them.
  std::vector<double> result(2 * n, 0.0);
  std::vector<double> logprob;
  std::vector<uint8_t> is_greedy;
  int64_t tokens = 0;
  const auto t0 = std::chrono::steady_clock::now();
  for (int64_t k = 0; k < rounds; ++k) {
    const int64_t batch = k * nranks + rank;
    const size_t first = static_cast<size_t>(std::min<int64_t>(batch * batch_rows, static_cast<int64_t>(n)));
    const size_t last = std::min(n, first + static_cast<size_t>(batch_rows));
    HostBatch hb;
    hb.batch = std::max<int>(1, static_cast<int>(last - first));
    hb.seq = first < last ? static_cast<int>(requests_[order[first]].input.size()) : 2;  // the longest first
    hb.seq = std::max(hb.seq, 2);
    const size_t cells = static_cast<size_t>(hb.batch) * hb.seq;
    hb.ids.assign(cells, 0);
    hb.targets.assign(cells, -100);  // right padding scores nothing
    hb.positions.resize(cells);
    for (size_t i = 0; i < cells; ++i) hb.positions[i] = static_cast<int32_t>(i % hb.seq);
    for (size_t j = first; j < last; ++j) {
      const LlRequest& q = requests_[order[j]];
      const size_t row = (j - first) * hb.seq, len = q.input.size(), c = q.continuation.size();
      std::copy(q.input.begin(), q.input.end(), hb.ids.begin() + static_cast<std::ptrdiff_t>(row));
      // input position t predicts input[t + 1]; the last c positions predict the continuation.
      for (size_t i = 0; i < c; ++i) hb.targets[row + len - c + i] = q.continuation[i];
      hb.target_tokens += static_cast<int64_t>(c);
      tokens += static_cast<int64_t>(len);
    }
    logprob.assign(cells, 0.0);
    is_greedy.assign(cells, 0);
    model.forward_token_logprobs(dev.upload(hb), params, TokenLogprobs{logprob.data(), is_greedy.data()});
    for (size_t j = first; j < last; ++j) {
      const LlRequest& q = requests_[order[j]];
      const size_t row = (j - first) * hb.seq, len = q.input.size(), c = q.continuation.size();
      double sum = 0;
      bool all = true;
      for (size_t i = row + len - c; i < row + len; ++i) sum += logprob[i], all = all && is_greedy[i];
      result[order[j]] = sum;
      result[n + order[j]] = all ? 1.0 : 0.0;
    }
  }
  r.forward_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (world) {
    world->all_reduce_sum(result.data(), result.size());
    int64_t stats[2] = {static_cast<int64_t>(r.forward_s * 1e6), 0};
    world->all_reduce_max(stats, 1);
    r.forward_s = stats[0] * 1e-6;
    double t = static_cast<double>(tokens);
    world->all_reduce_sum(&t, 1);
    tokens = static_cast<int64_t>(t);
  }
  r.tokens = tokens;
  ll.assign(result.begin(), result.begin() + static_cast<std::ptrdiff_t>(n));
  greedy.assign(result.begin() + static_cast<std::ptrdiff_t>(n), result.end());
}

void TaskEvaluator::aggregate_choices(const std::vector<double>& ll, const std::vector<double>& greedy,
                                      TaskResult& r) const {
  std::map<std::string, std::vector<double>> per_metric;
  for (size_t i = 0; i < task_.items.size(); ++i) {
    const TaskItem& it = task_.items[i];
    std::vector<double> lls, by_chars, by_bytes;
    std::vector<bool> greedy_flags;
    for (size_t q : item_requests_[i]) {
      lls.push_back(ll[q]);
      greedy_flags.push_back(greedy[q] != 0);
    }
    for (size_t c = 0; c < it.choices.size(); ++c) {
      by_chars.push_back(divide(lls[c], static_cast<double>(utf8_code_points(it.choices[c]))));
      by_bytes.push_back(divide(lls[c], static_cast<double>(it.choices[c].size())));
    }
    const int64_t pred = static_cast<int64_t>(numpy_argmax(lls));
    const int64_t pred_norm = static_cast<int64_t>(numpy_argmax(by_chars));
    const int64_t pred_bytes = static_cast<int64_t>(numpy_argmax(by_bytes));
    const std::map<std::string, double> scores = {{"acc", pred == it.gold ? 1.0 : 0.0},
                                                  {"acc_norm", pred_norm == it.gold ? 1.0 : 0.0},
                                                  {"acc_bytes", pred_bytes == it.gold ? 1.0 : 0.0}};
    nlohmann::ordered_json j = {{"doc_id", i}, {"doc", task_.docs[i]}, {"context", it.context},
                                {"choices", it.choices}, {"gold", it.gold}, {"loglikelihoods", lls},
                                {"is_greedy", greedy_flags}, {"pred", pred}, {"pred_norm", pred_norm}};
    for (const auto& m : task_.metrics) {
      j[m] = scores.at(m);
      per_metric[m].push_back(scores.at(m));
    }
    r.per_item.push_back(std::move(j));
  }
  for (const auto& m : task_.metrics) {
    const auto [mean, stderr_] = mean_and_stderr(per_metric[m]);
    r.metrics.emplace_back(m, mean);
    r.metrics.emplace_back(m + "_stderr", stderr_);
  }
}

void TaskEvaluator::aggregate_rolling(const std::vector<double>& ll, TaskResult& r) const {
  double sum_ll = 0, words = 0, bytes = 0;
  for (size_t i = 0; i < task_.items.size(); ++i) {
    const std::string& text = task_.items[i].text;
    double doc_ll = 0;  // lm_eval sums the windows of a doc, then the docs
    int64_t tokens = 0;
    for (size_t q : item_requests_[i]) {
      doc_ll += ll[q];
      tokens += static_cast<int64_t>(requests_[q].continuation.size());
    }
    const int64_t w = python_word_count(text), b = static_cast<int64_t>(text.size());
    sum_ll += doc_ll, words += static_cast<double>(w), bytes += static_cast<double>(b);
    r.per_item.push_back({{"doc_id", i}, {"doc", task_.docs[i]}, {"loglikelihood", doc_ll}, {"words", w},
                          {"bytes", b}, {"windows", item_requests_[i].size()}, {"tokens", tokens}});
  }
  for (const auto& m : task_.metrics) {
    double v = NAN;
    if (m == "word_perplexity") v = std::exp(-sum_ll / words);
    if (m == "byte_perplexity") v = std::exp(-sum_ll / bytes);
    if (m == "bits_per_byte") v = -sum_ll / bytes / std::log(2.0);
    r.metrics.emplace_back(m, v);
  }
}

}  // namespace llamaft
