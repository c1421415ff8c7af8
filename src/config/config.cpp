#include "config/config.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "core/error.hpp"

namespace llamaft {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] != b[j - 1])});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

void ConfigSchema::add(KeySpec spec) {
  LLAMAFT_CHECK(!index_.count(spec.key), "duplicate config key ", spec.key);
  index_[spec.key] = keys_.size();
  keys_.push_back(std::move(spec));
}

const KeySpec* ConfigSchema::find(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &keys_[it->second];
}

namespace {
// Names users bring from Hugging Face TrainingArguments, PEFT, torchtune and
// Axolotl, matched on the part after the section (README "Names from other
// tools"): ours, and a note where the meaning is not one-to-one.
struct ForeignName {
  const char* name;
  const char* key;
  const char* note;
};
const std::vector<ForeignName>& foreign_names() {
  static const std::vector<ForeignName> names = {
      {"learning_rate", "train.lr", ""},
      {"max_steps", "train.steps", ""},
      {"num_steps", "train.steps", ""},
      {"total_steps", "train.steps", ""},
      {"num_train_epochs", "train.epochs", ""},
      {"num_epochs", "train.epochs", ""},
      {"epochs", "train.epochs", ""},
      {"save_steps", "checkpoint.every_steps", ""},
      {"save_every", "checkpoint.every_steps", ""},
      {"save_total_limit", "checkpoint.keep_last", ""},
      {"resume_from_checkpoint", "checkpoint.resume", ""},
      {"logging_steps", "output.log_every_steps", "the progress lines; train.log_every sets metrics.jsonl's"},
      {"log_every_n_steps", "output.log_every_steps", "the progress lines; train.log_every sets metrics.jsonl's"},
      {"eval_steps", "train.eval_every", ""},
      {"eval_every_n_steps", "train.eval_every", ""},
      {"gradient_accumulation_steps", "train.global_batch_size",
       "llamaft derives the accumulation: train.global_batch_size = train.micro_batch_size x ranks x "
       "accumulation steps"},
      {"gradient_accumulation", "train.global_batch_size",
       "llamaft derives the accumulation: train.global_batch_size = train.micro_batch_size x ranks x "
       "accumulation steps"},
      {"per_device_train_batch_size", "train.micro_batch_size", ""},
      {"micro_batch_size", "train.micro_batch_size", ""},
      {"batch_size", "train.global_batch_size", "rows per optimizer step over all ranks"},
      {"train_batch_size", "train.global_batch_size", "rows per optimizer step over all ranks"},
      {"warmup_ratio", "train.warmup_steps", "in steps, not a fraction: warmup_ratio x train.steps"},
      {"num_warmup_steps", "train.warmup_steps", ""},
      {"lr_scheduler_type", "train.lr_schedule", ""},
      {"lr_scheduler", "train.lr_schedule", ""},
      {"adam_epsilon", "train.eps", ""},
      {"adam_beta1", "train.beta1", ""},
      {"adam_beta2", "train.beta2", ""},
      {"max_grad_norm", "train.max_grad_norm", ""},
      {"clip_grad_norm", "train.max_grad_norm", ""},
      {"gradient_checkpointing", "fsdp.activation_checkpointing", ""},
      {"bf16", "train.param_dtype", "train.param_dtype = bf16"},
      {"max_seq_length", "data.seq_len", ""},
      {"max_seq_len", "data.seq_len", ""},
      {"sequence_len", "data.seq_len", ""},
      {"lora_rank", "lora.r", ""},
      {"lora_r", "lora.r", ""},
      {"rank", "lora.r", ""},
      {"lora_alpha", "lora.alpha", ""},
      {"lora_dropout", "lora.dropout", ""},
      {"target_modules", "lora.targets", ""},
      {"lora_target_modules", "lora.targets", ""},
      {"output_dir", "output.dir", ""},
      {"seed", "train.seed", ""},
  };
  return names;
}

std::vector<std::string> split_words(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == '_') {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

std::string without_underscores(const std::string& s) {
  std::string out;
  for (char c : s)
    if (c != '_') out += c;
  return out;
}

// Whether `typed` is plausibly `name` mistyped or abbreviated, never another
// word: a typo (edit distance 1, or 2 from 8 characters on), the same words
// joined or split differently ("batchsize"), or the same words each written
// as a prefix of the other ("seq_len" for "sequence_len"). "eps" is not
// "epochs" and "steps" is not "save_steps": a dropped or different word is
// another meaning.
bool is_spelling_of(const std::string& typed, const std::string& name) {
  const size_t d = edit_distance(typed, name);
  if (d <= 1 || (d <= 2 && std::min(typed.size(), name.size()) >= 8)) return true;
  if (edit_distance(without_underscores(typed), without_underscores(name)) <= 1) return true;
  const auto a = split_words(typed), b = split_words(name);
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string& s = a[i].size() <= b[i].size() ? a[i] : b[i];
    const std::string& l = a[i].size() <= b[i].size() ? b[i] : a[i];
    if (s != l && (s.size() < 3 || l.compare(0, s.size(), s) != 0)) return false;
  }
  return true;
}

const ForeignName* foreign_match(const std::string& short_key) {
  const ForeignName* best = nullptr;
  size_t best_d = 3;
  for (const auto& f : foreign_names()) {
    const std::string name = f.name;
    const size_t d = edit_distance(short_key, name);
    if (d == 0) return &f;
    if (d <= std::max<size_t>(1, name.size() / 6) && d < best_d) best_d = d, best = &f;
  }
  return best;
}

std::string short_part(const std::string& key) {
  const auto dot = key.find('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

}  // namespace

std::string ConfigSchema::nearest(const std::string& key) const {
  const std::string short_key = short_part(key);
  const auto dot = key.find('.');
  const std::string section = dot == std::string::npos ? "" : key.substr(0, dot);
  // 1. A spelling of one of our keys in the section typed.
  std::string best;
  size_t best_d = SIZE_MAX;
  for (const auto& k : keys_) {
    if (!section.empty() && k.key.compare(0, section.size() + 1, section + ".") != 0) continue;
    if (!is_spelling_of(short_key, short_part(k.key))) continue;
    const size_t d = edit_distance(short_key, short_part(k.key));
    if (d < best_d) best_d = d, best = k.key;
  }
  if (!best.empty()) return best;
  // 2. A name from another tool (or a typo of one): what it is called here.
  if (const ForeignName* f = foreign_match(short_key); f && find(f->key)) return f->key;
  // 3. The right name in the wrong section ("eval.seq_len"), or a spelling of a key of another section.
  for (const auto& k : keys_) {
    const std::string short_k = short_part(k.key);
    if (short_k == short_key) return k.key;
    if (!is_spelling_of(short_key, short_k)) continue;
    const size_t d = 1 + edit_distance(short_key, short_k);
    if (d < best_d) best_d = d, best = k.key;
  }
  return best;
}

std::string ConfigSchema::note(const std::string& key) const {
  const ForeignName* f = foreign_match(short_part(key));
  return f && nearest(key) == f->key ? f->note : "";
}

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string suggestion(const ConfigSchema& schema, const std::string& key) {
  const std::string near = schema.nearest(key);
  const std::string note = schema.note(key);
  return near.empty() ? "" : "; did you mean '" + near + "'?" + (note.empty() ? "" : " (" + note + ")");
}

bool parse_bool(const std::string& v, bool* out) {
  std::string l = v;
  std::transform(l.begin(), l.end(), l.begin(), ::tolower);
  if (l == "true" || l == "1" || l == "yes" || l == "on") return *out = true, true;
  if (l == "false" || l == "0" || l == "no" || l == "off") return *out = false, true;
  return false;
}

bool parse_int(const std::string& v, int64_t* out) {
  if (v.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const long long x = std::strtoll(v.c_str(), &end, 10);
  if (errno || *end != '\0') return false;
  *out = x;
  return true;
}

bool parse_float(const std::string& v, double* out) {
  if (v.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const double x = std::strtod(v.c_str(), &end);
  if (errno || *end != '\0' || !std::isfinite(x)) return false;
  *out = x;
  return true;
}

// One dtype, several spellings: every dtype key accepts each of them.
std::string dtype_spelling_in(const std::string& v, const std::vector<std::string>& choices) {
  static const std::vector<std::vector<std::string>> groups = {
      {"float32", "fp32", "f32"}, {"bfloat16", "bf16"}, {"float16", "fp16", "f16", "half"}};
  for (const auto& g : groups) {
    if (std::find(g.begin(), g.end(), v) == g.end()) continue;
    for (const auto& c : choices)
      if (std::find(g.begin(), g.end(), c) != g.end()) return c;
  }
  return "";
}

}  // namespace

Config::Config(const ConfigSchema& schema) : schema_(schema) {}

const KeySpec& Config::spec(const std::string& key) const {
  const KeySpec* s = schema_.find(key);
  LLAMAFT_CHECK(s, "config key '", key, "' is not in the schema");
  return *s;
}

void Config::set(const std::string& key, const std::string& raw, const std::string& source) {
  const KeySpec* s = schema_.find(key);
  if (!s) LLAMAFT_FAIL(source, ": unknown key '", key, "'", suggestion(schema_, key));
  std::string value = trim(raw);
  auto bad = [&](const std::string& why) {
    LLAMAFT_FAIL(source, ": bad value '", value, "' for '", key, "': ", why);
  };
  switch (s->type) {
    case KeyType::kInt: {
      int64_t x;
      if (!parse_int(value, &x)) bad("expected an integer");
      if (x < s->min || x > s->max)
        bad(str_cat("must be between ", static_cast<int64_t>(s->min), " and ",
                    s->max >= 1e18 ? std::string("inf") : std::to_string(static_cast<int64_t>(s->max))));
      break;
    }
    case KeyType::kFloat: {
      double x;
      if (!parse_float(value, &x)) bad("expected a number");
      if (x < s->min || x > s->max) bad(str_cat("must be between ", s->min, " and ", s->max));
      break;
    }
    case KeyType::kBool: {
      bool b;
      if (!parse_bool(value, &b)) bad("expected true or false");
      break;
    }
    case KeyType::kChoice: {
      if (std::find(s->choices.begin(), s->choices.end(), value) != s->choices.end()) break;
      if (const std::string same = dtype_spelling_in(value, s->choices); !same.empty()) {
        value = same;
        break;
      }
      {
        std::string list;
        for (const auto& c : s->choices) list += (list.empty() ? "" : "|") + c;
        bad("expected one of " + list);
      }
      break;
    }
    case KeyType::kString:
      break;
  }
  values_[key] = {value, source};
}

void Config::load_file(const std::string& path) {
  struct stat st;
  LLAMAFT_REQUIRE(stat(path.c_str(), &st) == 0, "cannot open config file '", path, "': ", std::strerror(errno));
  // An ifstream opens a folder and reads nothing from it: an empty config.
  LLAMAFT_REQUIRE(!S_ISDIR(st.st_mode), "config file '", path, "' is a folder; --config takes an INI file");
  std::ifstream in(path);
  LLAMAFT_REQUIRE(in.good(), "cannot open config file '", path, "'");
  std::string line, section;
  int lineno = 0;
  std::map<std::string, int> first_line;  // key -> the line that set it
  while (std::getline(in, line)) {
    ++lineno;
    const std::string where = path + ":" + std::to_string(lineno);
    // Strip comments: full-line # or ;, and inline " #" / " ;".
    std::string s = trim(line);
    if (s.empty() || s[0] == '#' || s[0] == ';') continue;
    for (const char* marker : {" #", "\t#", " ;", "\t;"}) {
      const auto pos = s.find(marker);
      if (pos != std::string::npos) s = trim(s.substr(0, pos));
    }
    if (s.front() == '[') {
      LLAMAFT_REQUIRE(s.back() == ']', where, ": malformed section header '", s, "'");
      section = trim(s.substr(1, s.size() - 2));
      LLAMAFT_REQUIRE(!section.empty(), where, ": empty section name");
      continue;
    }
    const auto eq = s.find('=');
    LLAMAFT_REQUIRE(eq != std::string::npos, where, ": expected 'key = value', got '", s, "'");
    const std::string name = trim(s.substr(0, eq));
    std::string value = trim(s.substr(eq + 1));
    if (value.size() >= 2 && (value.front() == '"' || value.front() == '\'') && value.back() == value.front())
      value = value.substr(1, value.size() - 2);
    LLAMAFT_REQUIRE(!section.empty() || name.find('.') != std::string::npos, where, ": key '", name,
                    "' is outside any [section]");
    const std::string key = section.empty() ? name : section + "." + name;
    const auto [it, fresh] = first_line.emplace(key, lineno);
    LLAMAFT_REQUIRE(fresh, where, ": '", key, "' is set twice, here and at ", path, ":", it->second,
                    "; remove one (a config file states each value once)");
    set(key, value, where);
  }
}

bool Config::has(const std::string& key) const {
  return values_.count(key) || !spec(key).default_value.empty();
}
bool Config::is_explicit(const std::string& key) const { return values_.count(key) > 0; }

const std::string& Config::source(const std::string& key) const {
  static const std::string kDefault = "default";
  auto it = values_.find(key);
  return it == values_.end() ? kDefault : it->second.source;
}

std::string Config::get_string(const std::string& key) const {
  auto it = values_.find(key);
  if (it != values_.end()) return it->second.text;
  return spec(key).default_value;
}

int64_t Config::get_int(const std::string& key) const {
  int64_t x = 0;
  LLAMAFT_CHECK(spec(key).type == KeyType::kInt, key, " is not an integer key");
  LLAMAFT_REQUIRE(parse_int(get_string(key), &x), "config key '", key, "' has no value");
  return x;
}
double Config::get_float(const std::string& key) const {
  double x = 0;
  LLAMAFT_CHECK(spec(key).type == KeyType::kFloat, key, " is not a float key");
  LLAMAFT_REQUIRE(parse_float(get_string(key), &x), "config key '", key, "' has no value");
  return x;
}
bool Config::get_bool(const std::string& key) const {
  bool b = false;
  LLAMAFT_CHECK(spec(key).type == KeyType::kBool, key, " is not a bool key");
  LLAMAFT_REQUIRE(parse_bool(get_string(key), &b), "config key '", key, "' has no value");
  return b;
}

void Config::require(const std::string& key, const std::string& command) const {
  if (has(key) && !get_string(key).empty()) return;
  const KeySpec& s = spec(key);
  const auto dot = key.find('.');
  LLAMAFT_FAIL("llamaft ", command, ": missing required key '", key, "' (", s.help, "); set it as '",
               key.substr(dot + 1), " = ...' under [", key.substr(0, dot), "] in --config, or pass --",
               key);
}

std::string Config::dump() const {
  // Sections in the order they first appear in the schema, each once.
  std::vector<std::string> sections;
  for (const auto& s : schema_.keys()) {
    const std::string sec = s.key.substr(0, s.key.find('.'));
    if (std::find(sections.begin(), sections.end(), sec) == sections.end()) sections.push_back(sec);
  }
  std::ostringstream os;
  for (size_t i = 0; i < sections.size(); ++i) {
    os << (i ? "\n" : "") << "[" << sections[i] << "]\n";
    for (const auto& s : schema_.keys()) {
      const auto dot = s.key.find('.');
      if (s.key.compare(0, dot, sections[i]) != 0 || dot != sections[i].size()) continue;
      const std::string v = get_string(s.key);
      os << s.key.substr(dot + 1) << " = " << v;
      os << std::string(v.size() < 24 ? 24 - v.size() : 1, ' ') << "# " << source(s.key) << "\n";
    }
  }
  return os.str();
}

}  // namespace llamaft
