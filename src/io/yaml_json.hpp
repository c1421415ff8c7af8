// YAML files read as PyYAML's loaders read them (lm-evaluation-harness task
// configs), into nlohmann::json. Parsed by libyaml, the C library PyYAML
// binds; untagged plain scalars are typed by PyYAML's YAML 1.1 implicit
// resolvers (null ~/null/empty, bool yes/no/on/off/true/false, int in bases
// 2/8/10/16 with underscores, float only with a dot, .inf/.nan), quoted and
// block scalars stay strings. What PyYAML would turn into something JSON
// cannot hold is refused with the file, line and what it was: a tag other
// than the standard str/int/float/bool/null/seq/map (lm_eval's `!function`),
// sexagesimal numbers, timestamps, merge keys, non-string keys, duplicate
// keys and a stream of several documents.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace llamaft::io {

// Throws Error (exit 2) naming `path` and the line of the problem.
nlohmann::ordered_json read_yaml_file(const std::string& path);
nlohmann::ordered_json parse_yaml(const std::string& text, const std::string& name);

}  // namespace llamaft::io
