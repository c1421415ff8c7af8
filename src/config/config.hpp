// The configuration system: a schema of every key (type, default, range,
// help), INI files with [section] key = value, and command-line overrides
// `--section.key value`. Every value remembers where it came from, so errors
// say "train.cfg:12" and --print-config can show the effective config.
// Unknown keys and bad values are errors that suggest the nearest valid key.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace llamaft {

enum class KeyType { kInt, kFloat, kBool, kString, kChoice };

struct KeySpec {
  std::string key;            // "section.name"
  KeyType type = KeyType::kString;
  std::string default_value;  // "" with required=false means unset
  std::string help;
  std::vector<std::string> choices;  // kChoice
  double min = -1e300, max = 1e300;  // kInt / kFloat inclusive range
  bool list = false;  // a comma-separated list; repeated flags append
};

class ConfigSchema {
 public:
  void add(KeySpec spec);
  const KeySpec* find(const std::string& key) const;
  const std::vector<KeySpec>& keys() const { return keys_; }
  // The closest known key by edit distance, or "" if nothing is close.
  std::string nearest(const std::string& key) const;
  // What differs when `key` is another tool's name for nearest(key) ("" when nothing).
  std::string note(const std::string& key) const;

 private:
  std::vector<KeySpec> keys_;
  std::map<std::string, size_t> index_;
};

// The schema of every key llamaft knows (config_schema.cpp).
const ConfigSchema& global_schema();

class Config {
 public:
  explicit Config(const ConfigSchema& schema = global_schema());

  // Parses an INI file; errors name the file and line.
  void load_file(const std::string& path);
  // Sets a value after validating it; `source` names where it came from.
  void set(const std::string& key, const std::string& value, const std::string& source);

  bool has(const std::string& key) const;        // set explicitly or has a default
  bool is_explicit(const std::string& key) const;  // set by a file or the command line
  const std::string& source(const std::string& key) const;
  std::string get_string(const std::string& key) const;
  int64_t get_int(const std::string& key) const;
  double get_float(const std::string& key) const;
  bool get_bool(const std::string& key) const;
  // Throws a user error naming the key when it has no value.
  void require(const std::string& key, const std::string& command) const;

  // The effective configuration as INI, each value annotated with its source.
  std::string dump() const;

 private:
  const KeySpec& spec(const std::string& key) const;
  struct Value {
    std::string text;
    std::string source;
  };
  const ConfigSchema& schema_;
  std::map<std::string, Value> values_;
};

// Edit distance, used for "did you mean" suggestions.
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace llamaft
