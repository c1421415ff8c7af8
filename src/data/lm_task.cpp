#include "data/lm_task.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "core/error.hpp"
#include "io/yaml_json.hpp"

namespace llamaft {

namespace {

using Json = nlohmann::ordered_json;
namespace fs = std::filesystem;

// Python's str() of a value jinja2 would print; floats, lists and dicts are
// refused (their Python spellings are not reproduced here).
std::string python_str(const Json& v, const std::string& what) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "True" : "False";
  if (v.is_number_integer()) return v.dump();
  if (v.is_null()) return "None";
  LLAMAFT_FAIL(what, ": a template prints ", v.type_name(), " ", v.dump(),
               "; only strings, integers and booleans print as lm_eval's jinja2 would here");
}

bool is_identifier(const std::string& s) {
  if (s.empty() || std::isdigit(static_cast<unsigned char>(s[0]))) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; });
}

// The field of a template that is exactly one {{ field }} reference, or "".
std::string sole_reference(const std::string& tmpl) {
  if (tmpl.size() < 4 || tmpl.compare(0, 2, "{{") != 0 || tmpl.compare(tmpl.size() - 2, 2, "}}") != 0) return "";
  std::string inner = tmpl.substr(2, tmpl.size() - 4);
  const auto b = inner.find_first_not_of(" \t"), e = inner.find_last_not_of(" \t");
  if (b == std::string::npos) return "";
  inner = inner.substr(b, e - b + 1);
  return is_identifier(inner) ? inner : "";
}

bool all_ascii_digits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// One task config, its docs and the lm_eval semantics of each doc_to_* key.
class TaskBuilder {
 public:
  TaskBuilder(const Json& cfg, std::vector<Json> docs, std::string where)
      : cfg_(cfg), docs_(std::move(docs)), where_(std::move(where)) {
    for (const auto& d : docs_)
      for (const auto& [k, v] : d.items()) features_.insert(k);
    for (auto& d : docs_)  // datasets gives every row every column, missing ones as None
      for (const auto& f : features_)
        if (!d.contains(f)) d[f] = nullptr;
  }

  LmTask build(TaskOutput output, std::string delimiter) {
    LmTask t;
    t.output = output;
    t.target_delimiter = std::move(delimiter);
    for (size_t i = 0; i < docs_.size(); ++i) {
      const std::string at = str_cat(where_, ": doc ", i);
      TaskItem item;
      if (output == TaskOutput::kRolling) {
        const Json target = resolve("doc_to_target", docs_[i], at);
        LLAMAFT_REQUIRE(target.is_string(), at, ": doc_to_target gives ", target.dump(),
                        "; loglikelihood_rolling scores a string");
        item.text = target.get<std::string>();
      } else {
        item.choices = choices(docs_[i], at);
        const Json text = resolve("doc_to_text", docs_[i], at);
        LLAMAFT_REQUIRE(text.is_string(), at, ": doc_to_text gives ", text.dump(),
                        (text.is_number_integer() ? " (lm_eval's multiple-input form, not supported)" : ""),
                        "; the context must be a string");
        item.context = description(docs_[i], at) + text.get<std::string>();
        item.gold = gold(resolve("doc_to_target", docs_[i], at), item.choices, at);
      }
      t.items.push_back(std::move(item));
    }
    t.docs = std::move(docs_);
    return t;
  }

 private:
  // doc_to_text / doc_to_target as ConfigurableTask reads them: an integer
  // constant, a feature name (the raw value), or a template whose output
  // becomes an integer when it is all digits and doc_to_choice is set.
  Json resolve(const std::string& key, const Json& doc, const std::string& at) const {
    LLAMAFT_REQUIRE(cfg_.contains(key) && !cfg_[key].is_null(), where_, ": '", key, "' is required");
    const Json& spec = cfg_[key];
    if (spec.is_number_integer()) return spec;
    LLAMAFT_REQUIRE(spec.is_string(), where_, ": '", key, "' must be a field name, a template or an integer");
    const std::string s = spec.get<std::string>();
    if (features_.count(s)) return doc[s];
    const std::string out = render_task_template(s, doc, at + " " + key);
    if (all_ascii_digits(out) && cfg_.contains("doc_to_choice") && !cfg_["doc_to_choice"].is_null())
      return std::stoll(out);
    if (key == "doc_to_target" && out.size() >= 2 && out.front() == '[' && out.back() == ']')
      LLAMAFT_FAIL(at, ": doc_to_target renders '", out, "', a list to lm_eval (multiple targets, not supported)");
    return out;
  }

  std::vector<std::string> choices(const Json& doc, const std::string& at) const {
    LLAMAFT_REQUIRE(cfg_.contains("doc_to_choice") && !cfg_["doc_to_choice"].is_null(), where_,
                    ": multiple_choice needs 'doc_to_choice'");
    const Json& spec = cfg_["doc_to_choice"];
    Json list;
    if (spec.is_array()) {
      list = spec;
    } else if (spec.is_object()) {
      list = Json::array();
      for (const auto& [k, v] : spec.items()) list.push_back(v);
    } else {
      LLAMAFT_REQUIRE(spec.is_string(), where_, ": 'doc_to_choice' must be a field name, a list or a mapping");
      std::string field = spec.get<std::string>();
      if (!features_.count(field)) {
        // jinja2 prints the list's Python repr and lm_eval literal_evals it
        // back: for a list of strings, the list itself.
        const std::string ref = sole_reference(field);
        LLAMAFT_REQUIRE(!ref.empty() && features_.count(ref), where_, ": doc_to_choice '", field,
                        "' is neither a field nor the template {{ field }} of a list field; other templates "
                        "are Python expressions to lm_eval and are not supported");
        field = ref;
      }
      list = doc[field];
    }
    LLAMAFT_REQUIRE(list.is_array() && !list.empty(), at, ": doc_to_choice gives ", list.dump(),
                    ", not a non-empty list");
    std::vector<std::string> out;
    for (const auto& c : list) {
      LLAMAFT_REQUIRE(c.is_string(), at, ": choice ", c.dump(), " is not a string");
      out.push_back(c.get<std::string>());
    }
    return out;
  }

  // ConfigurableTask.process_results: an integer is an index (one past the
  // end and beyond score 0), a string is looked up in the choices.
  int64_t gold(const Json& target, const std::vector<std::string>& choices, const std::string& at) const {
    if (target.is_number_integer()) {
      const int64_t g = target.get<int64_t>();
      return g < static_cast<int64_t>(choices.size()) ? g : -100;
    }
    LLAMAFT_REQUIRE(target.is_string(), at, ": doc_to_target gives ", target.dump(),
                    "; an index or one of the choices is needed (lists: multiple targets, not supported)");
    const auto it = std::find(choices.begin(), choices.end(), target.get<std::string>());
    return it == choices.end() ? -100 : it - choices.begin();
  }

  std::string description(const Json& doc, const std::string& at) const {
    if (!cfg_.contains("description") || cfg_["description"].is_null()) return "";
    LLAMAFT_REQUIRE(cfg_["description"].is_string(), where_, ": 'description' must be a string");
    const std::string d = cfg_["description"].get<std::string>();
    if (d.empty()) return "";
    if (doc.contains(d)) return python_str(doc[d], at + " description");
    return render_task_template(d, doc, at + " description");
  }

  const Json& cfg_;
  std::vector<Json> docs_;
  std::string where_;
  std::set<std::string> features_;
};

std::vector<Json> read_json_rows(const std::string& path, int64_t limit) {
  std::ifstream in(path, std::ios::binary);
  LLAMAFT_REQUIRE(in.good(), "cannot open the task data '", path, "'");
  std::vector<Json> rows;
  const int c = in.peek();
  if (c == '[') {  // one JSON array of rows
    Json all = Json::parse(in, nullptr, false);
    LLAMAFT_REQUIRE(all.is_array(), path, ": not valid JSON");
    for (auto& r : all) rows.push_back(std::move(r));
  } else {
    std::string line;
    for (int64_t n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
      Json r = Json::parse(line, nullptr, false);
      LLAMAFT_REQUIRE(!r.is_discarded(), path, ":", n, ": not valid JSON");
      rows.push_back(std::move(r));
      if (limit > 0 && static_cast<int64_t>(rows.size()) >= limit) break;
    }
  }
  for (size_t i = 0; i < rows.size(); ++i)
    LLAMAFT_REQUIRE(rows[i].is_object(), path, ": row ", i, " is not a JSON object");
  if (limit > 0 && static_cast<int64_t>(rows.size()) > limit) rows.resize(static_cast<size_t>(limit));
  LLAMAFT_REQUIRE(!rows.empty(), path, ": no rows");
  return rows;
}

// The keys a zero-shot task may carry and ignore, those refused, and the rest.
void check_keys(const Json& cfg, const std::string& path) {
  static const std::set<std::string> used = {
      "task", "dataset_path", "dataset_name", "dataset_kwargs", "test_split", "validation_split", "output_type",
      "doc_to_text", "doc_to_target", "doc_to_choice", "description", "target_delimiter", "metric_list",
      "num_fewshot", "repeats"};
  // Naming, few-shot sources (unused zero-shot) and bookkeeping.
  static const std::set<std::string> ignored = {
      "tag", "task_alias", "metadata", "training_split", "fewshot_split", "fewshot_delimiter", "fewshot_config",
      "should_decontaminate", "doc_to_decontamination_query", "unsafe_code"};
  for (const auto& [k, v] : cfg.items()) {
    if (used.count(k) || ignored.count(k)) continue;
    if (v.is_null()) continue;
    LLAMAFT_FAIL(path, ": '", k, "' is not supported by llamaft's lm_eval task reader (it reads zero-shot "
                 "multiple_choice and loglikelihood_rolling tasks whose docs come from local JSON files; ",
                 "process_docs, process_results, filter_list, use_prompt, gen_prefix, include, group and the "
                 "multimodal keys are refused rather than approximated)");
  }
}

std::vector<std::string> metric_names(const Json& cfg, TaskOutput output, const std::string& path) {
  const std::vector<std::string> allowed =
      output == TaskOutput::kMultipleChoice ? std::vector<std::string>{"acc", "acc_norm", "acc_bytes"}
                                            : std::vector<std::string>{"word_perplexity", "byte_perplexity",
                                                                       "bits_per_byte"};
  if (!cfg.contains("metric_list") || cfg["metric_list"].is_null())
    return output == TaskOutput::kMultipleChoice ? std::vector<std::string>{"acc", "acc_norm"} : allowed;
  LLAMAFT_REQUIRE(cfg["metric_list"].is_array(), path, ": 'metric_list' must be a list");
  const std::map<std::string, std::string> default_agg = {{"acc", "mean"}, {"acc_norm", "mean"},
      {"acc_bytes", "mean"}, {"word_perplexity", "weighted_perplexity"}, {"byte_perplexity", "weighted_perplexity"},
      {"bits_per_byte", "bits_per_byte"}};
  std::vector<std::string> out;
  for (const auto& m : cfg["metric_list"]) {
    LLAMAFT_REQUIRE(m.is_object() && m.contains("metric") && m["metric"].is_string(), path,
                    ": every metric_list entry needs 'metric'");
    const std::string name = m["metric"].get<std::string>();
    LLAMAFT_REQUIRE(std::find(allowed.begin(), allowed.end(), name) != allowed.end(), path, ": metric '", name,
                    "' is not supported for ", task_output_name(output));
    for (const auto& [k, v] : m.items()) {
      if (k == "metric" || k == "higher_is_better") continue;
      LLAMAFT_REQUIRE(k == "aggregation" && v.is_string() && v.get<std::string>() == default_agg.at(name), path,
                      ": metric '", name, "': '", k, "' = ", v.dump(), " is not supported (only the default ",
                      "aggregation, ", default_agg.at(name), ")");
    }
    out.push_back(name);
  }
  LLAMAFT_REQUIRE(!out.empty(), path, ": 'metric_list' is empty");
  return out;
}

// dataset_kwargs.data_files -> the file of `split`, resolved as `datasets`
// resolves a packaged builder's data_files: against the working directory.
std::string data_file(const Json& cfg, const std::string& split, const std::string& path) {
  LLAMAFT_REQUIRE(cfg.contains("dataset_kwargs") && cfg["dataset_kwargs"].is_object(), path,
                  ": dataset_kwargs.data_files is required (dataset_path: json reads local files)");
  for (const auto& [k, v] : cfg["dataset_kwargs"].items())
    LLAMAFT_REQUIRE(k == "data_files", path, ": dataset_kwargs.", k, " is not supported (only data_files)");
  const Json& files = cfg["dataset_kwargs"]["data_files"];
  Json chosen;
  if (files.is_string() || files.is_array()) {
    LLAMAFT_REQUIRE(split == "train", path, ": data_files without split names is datasets' 'train' split, but ",
                    "the task evaluates '", split, "'");
    chosen = files;
  } else {
    LLAMAFT_REQUIRE(files.is_object() && files.contains(split), path, ": dataset_kwargs.data_files has no '", split,
                    "' split");
    chosen = files[split];
  }
  if (chosen.is_array()) {
    LLAMAFT_REQUIRE(chosen.size() == 1, path, ": split '", split, "' lists ", chosen.size(),
                    " files; one file per split is supported");
    chosen = Json(chosen[0]);
  }
  LLAMAFT_REQUIRE(chosen.is_string(), path, ": data_files of '", split, "' must be a path");
  const std::string f = chosen.get<std::string>();
  LLAMAFT_REQUIRE(f.find_first_of("*?[") == std::string::npos && f.find("://") == std::string::npos, path,
                  ": data_files '", f, "': glob patterns and URLs are not supported");
  LLAMAFT_REQUIRE(fs::exists(f), path, ": data_files '", f, "' does not exist (relative paths are relative to the ",
                  "working directory ", fs::current_path().string(), ", as datasets resolves them)");
  return f;
}

LmTask load_yaml_task(const std::string& path, int64_t limit) {
  const Json cfg = io::read_yaml_file(path);
  LLAMAFT_REQUIRE(cfg.is_object(), path, ": an lm_eval task config is a YAML mapping");
  check_keys(cfg, path);
  auto str = [&](const char* key) {
    if (!cfg.contains(key) || cfg[key].is_null()) return std::string();
    LLAMAFT_REQUIRE(cfg[key].is_string(), path, ": '", key, "' must be a string");
    return cfg[key].get<std::string>();
  };
  LLAMAFT_REQUIRE(!str("task").empty(), path, ": 'task' (the task's name) is required");
  LLAMAFT_REQUIRE(str("dataset_path") == "json", path, ": dataset_path '", str("dataset_path"),
                  "': only local JSON files are read (dataset_path: json with dataset_kwargs.data_files)");
  LLAMAFT_REQUIRE(str("dataset_name").empty(), path, ": dataset_name is not supported with dataset_path: json");
  for (const char* k : {"num_fewshot"})
    LLAMAFT_REQUIRE(!cfg.contains(k) || cfg[k].is_null() || cfg[k] == 0, path, ": '", k, "' = ", cfg[k].dump(),
                    ": only zero-shot evaluation is supported");
  LLAMAFT_REQUIRE(!cfg.contains("repeats") || cfg["repeats"] == 1, path, ": 'repeats' must be 1");
  const std::string type = str("output_type");
  TaskOutput output;
  if (type == "multiple_choice") output = TaskOutput::kMultipleChoice;
  else if (type == "loglikelihood_rolling") output = TaskOutput::kRolling;
  else LLAMAFT_FAIL(path, ": output_type '", type.empty() ? "generate_until (the default)" : type,
                    "' is not supported (multiple_choice, loglikelihood_rolling)");
  const std::string split = !str("test_split").empty() ? str("test_split") : str("validation_split");
  LLAMAFT_REQUIRE(!split.empty(), path, ": test_split or validation_split is required");
  const std::string file = data_file(cfg, split, path);
  std::string delimiter = " ";
  if (cfg.contains("target_delimiter") && !cfg["target_delimiter"].is_null()) delimiter = str("target_delimiter");
  LLAMAFT_REQUIRE(output == TaskOutput::kMultipleChoice || (cfg.contains("doc_to_target") && !cfg["doc_to_target"].is_null()),
                  path, ": loglikelihood_rolling needs 'doc_to_target' (the text)");
  TaskBuilder b(cfg, read_json_rows(file, limit), file);
  LmTask t = b.build(output, delimiter);
  t.name = str("task");
  t.source = file;
  t.split = split;
  t.metrics = metric_names(cfg, output, path);
  return t;
}

LmTask load_jsonl_task(const std::string& path, int64_t limit) {
  std::vector<Json> rows = read_json_rows(path, limit);
  const bool rolling = rows[0].contains("text") && !rows[0].contains("context");
  Json cfg = rolling ? Json{{"doc_to_target", "text"}}
                     : Json{{"doc_to_text", "context"}, {"doc_to_choice", "choices"}, {"doc_to_target", "gold"}};
  for (size_t i = 0; i < rows.size(); ++i)
    for (const char* k : rolling ? std::vector<const char*>{"text"} : std::vector<const char*>{"context", "choices", "gold"})
      LLAMAFT_REQUIRE(rows[i].contains(k), path, ": row ", i, " has no '", k, "'");
  const TaskOutput output = rolling ? TaskOutput::kRolling : TaskOutput::kMultipleChoice;
  TaskBuilder b(cfg, std::move(rows), path);
  LmTask t = b.build(output, " ");
  t.name = fs::path(path).stem().string();
  t.source = path;
  t.metrics = metric_names(Json::object(), output, path);
  return t;
}

}  // namespace

const char* task_output_name(TaskOutput o) {
  return o == TaskOutput::kMultipleChoice ? "multiple_choice" : "loglikelihood_rolling";
}

std::string render_task_template(const std::string& tmpl, const Json& doc, const std::string& what) {
  std::string out;
  size_t i = 0;
  while (i < tmpl.size()) {
    const size_t open = tmpl.find('{', i);
    if (open == std::string::npos || open + 1 >= tmpl.size()) {
      out += tmpl.substr(i);
      break;
    }
    const char next = tmpl[open + 1];
    LLAMAFT_REQUIRE(next != '%' && next != '#', what, ": the Jinja ", next == '%' ? "statement {% ... %}" : "comment",
                    " in '", tmpl, "' is not supported (only {{ field }} references)");
    if (next != '{') {
      out += tmpl.substr(i, open + 1 - i);
      i = open + 1;
      continue;
    }
    out += tmpl.substr(i, open - i);
    const size_t close = tmpl.find("}}", open + 2);
    LLAMAFT_REQUIRE(close != std::string::npos, what, ": unclosed {{ in '", tmpl, "'");
    const std::string field = sole_reference(tmpl.substr(open, close + 2 - open));
    LLAMAFT_REQUIRE(!field.empty(), what, ": '", tmpl.substr(open, close + 2 - open), "' in '", tmpl,
                    "' is a Jinja expression; only {{ field }} references are supported");
    LLAMAFT_REQUIRE(doc.contains(field), what, ": the template refers to '", field,
                    "', which the doc does not have (jinja2's StrictUndefined would fail too)");
    out += python_str(doc[field], what);
    i = close + 2;
  }
  return out;
}

LmTask load_lm_task(const std::string& path, int64_t limit) {
  const std::string ext = fs::path(path).extension().string();
  return ext == ".yaml" || ext == ".yml" ? load_yaml_task(path, limit) : load_jsonl_task(path, limit);
}

}  // namespace llamaft
