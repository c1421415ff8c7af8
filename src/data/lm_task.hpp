// lm-evaluation-harness tasks read from local files, as lm_eval 0.4.x's
// ConfigurableTask builds them, zero-shot:
//  - an lm_eval task YAML with `dataset_path: json` and
//    `dataset_kwargs.data_files` (paths relative to the working directory, as
//    `datasets` resolves them), `test_split` (else `validation_split`),
//    `output_type` multiple_choice or loglikelihood_rolling, and
//    `doc_to_text` / `doc_to_target` / `doc_to_choice` / `description` as a
//    field name or a Jinja template of `{{ field }}` references;
//  - or JSONL rows {"context", "choices", "gold"} (multiple choice, the YAML
//    doc_to_text: context, doc_to_choice: choices, doc_to_target: gold with
//    target_delimiter " "), or rows {"text"} (loglikelihood_rolling).
// Anything lm_eval would do that cannot be reproduced exactly here (few-shot,
// filters, Python functions, other output types, metric options, templates
// beyond field references, ...) is refused by name, never approximated.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace llamaft {

enum class TaskOutput { kMultipleChoice, kRolling };

struct TaskItem {
  std::string context;               // multiple choice: description + doc_to_text
  std::vector<std::string> choices;  // multiple choice: doc_to_choice
  int64_t gold = -100;               // index into choices; outside [0, n): lm_eval scores the item 0
  std::string text;                  // loglikelihood_rolling: doc_to_target
};

struct LmTask {
  std::string name;    // `task`, or the JSONL file's stem
  std::string source;  // the data file read
  std::string split;   // the split evaluated ("" for JSONL)
  TaskOutput output = TaskOutput::kMultipleChoice;
  std::string target_delimiter = " ";
  std::vector<std::string> metrics;  // in the task's order: acc, acc_norm, ... or word_perplexity, ...
  std::vector<nlohmann::ordered_json> docs;
  std::vector<TaskItem> items;  // one per doc
};

// Reads a task (.yaml/.yml: lm_eval config; otherwise JSONL) and its first
// `limit` docs (all when limit <= 0). Throws Error (exit 2) naming the file
// and the key, field or row that cannot be honoured.
LmTask load_lm_task(const std::string& path, int64_t limit = 0);

const char* task_output_name(TaskOutput o);  // "multiple_choice", "loglikelihood_rolling"

// Renders an lm_eval template against a doc as jinja2 would for the subset
// accepted: literal text and {{ field }} (a top-level field holding a string,
// an integer or a boolean; jinja2's StrictUndefined makes a missing field an
// error). Exposed for the tests.
std::string render_task_template(const std::string& tmpl, const nlohmann::ordered_json& doc, const std::string& what);

}  // namespace llamaft
