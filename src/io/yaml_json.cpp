#include "io/yaml_json.hpp"

#include <yaml.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <vector>

#include "core/error.hpp"

namespace llamaft::io {

namespace {

using Json = nlohmann::ordered_json;

const std::string kStr = "tag:yaml.org,2002:str", kInt = "tag:yaml.org,2002:int",
                  kFloat = "tag:yaml.org,2002:float", kBool = "tag:yaml.org,2002:bool",
                  kNull = "tag:yaml.org,2002:null", kSeq = "tag:yaml.org,2002:seq", kMap = "tag:yaml.org,2002:map";

// PyYAML's implicit resolvers (yaml/resolver.py), YAML 1.1.
const std::regex kBoolRe("yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF");
const std::regex kFloatRe(
    "[-+]?(?:[0-9][0-9_]*)\\.[0-9_]*(?:[eE][-+][0-9]+)?|\\.[0-9_]+(?:[eE][-+][0-9]+)?"
    "|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\\.[0-9_]*|[-+]?\\.(?:inf|Inf|INF)|\\.(?:nan|NaN|NAN)");
const std::regex kIntRe(
    "[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+|[-+]?[1-9][0-9_]*(?::[0-5]?[0-9])+");
const std::regex kNullRe("~|null|Null|NULL|");
const std::regex kTimestampRe("[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?.*");

std::string strip_underscores(std::string s) {
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  return s;
}

class Builder {
 public:
  explicit Builder(std::string name) : name_(std::move(name)) {}

  Json scalar(const std::string& value, const char* tag, bool plain, size_t line) {
    std::string t = tag ? tag : (plain ? "" : kStr);
    if (t == "!") t = kStr;  // the non-specific tag of a quoted scalar
    if (t.empty()) t = implicit_tag(value, line);
    if (t == kStr) return value;
    if (t == kNull) return nullptr;
    if (t == kBool) {
      LLAMAFT_REQUIRE(std::regex_match(value, kBoolRe), where(line), "'", value, "' is not a YAML boolean");
      return value[0] == 'y' || value[0] == 'Y' || value[0] == 't' || value[0] == 'T' ||
             (value.size() == 2 && (value[1] == 'n' || value[1] == 'N'));
    }
    if (t == kInt) return to_int(value, line);
    if (t == kFloat) return to_float(value, line);
    LLAMAFT_FAIL(where(line), "the YAML tag '", t, "' on '", value, "' is not supported (only plain data: ",
                 "a Python function, `!function`, cannot be honoured outside Python)");
  }

  std::string where(size_t line) const { return str_cat(name_, ":", line + 1, ": "); }

 private:
  std::string implicit_tag(const std::string& v, size_t line) const {
    if (std::regex_match(v, kNullRe)) return kNull;
    if (std::regex_match(v, kBoolRe)) return kBool;
    if (std::regex_match(v, kIntRe)) return kInt;
    if (std::regex_match(v, kFloatRe)) return kFloat;
    LLAMAFT_REQUIRE(!std::regex_match(v, kTimestampRe), where(line), "'", v,
                    "' is a YAML 1.1 timestamp to PyYAML (a datetime); quote it to make it a string");
    LLAMAFT_REQUIRE(v != "<<" && v != "=", where(line), "the YAML merge/value key '", v, "' is not supported");
    return kStr;
  }

  Json to_int(const std::string& value, size_t line) const {
    LLAMAFT_REQUIRE(value.find(':') == std::string::npos, where(line), "the sexagesimal YAML 1.1 integer '", value,
                    "' is not supported");
    std::string s = strip_underscores(value);
    int sign = 1;
    if (!s.empty() && (s[0] == '-' || s[0] == '+')) sign = s[0] == '-' ? -1 : 1, s.erase(0, 1);
    int base = 10;
    if (s.rfind("0b", 0) == 0) base = 2, s.erase(0, 2);
    else if (s.rfind("0x", 0) == 0) base = 16, s.erase(0, 2);
    else if (s.size() > 1 && s[0] == '0') base = 8, s.erase(0, 1);
    try {
      size_t used = 0;
      const long long v = std::stoll(s, &used, base);
      LLAMAFT_REQUIRE(used == s.size(), where(line), "'", value, "' is not a YAML integer");
      return sign * v;
    } catch (const std::out_of_range&) {
      LLAMAFT_FAIL(where(line), "the integer '", value, "' is out of range");
    } catch (const std::invalid_argument&) {
      LLAMAFT_FAIL(where(line), "'", value, "' is not a YAML integer");
    }
  }

  Json to_float(const std::string& value, size_t line) const {
    LLAMAFT_REQUIRE(value.find(':') == std::string::npos, where(line), "the sexagesimal YAML 1.1 number '", value,
                    "' is not supported");
    const std::string s = strip_underscores(value);
    const std::string mag = !s.empty() && (s[0] == '-' || s[0] == '+') ? s.substr(1) : s;
    if (mag == ".inf" || mag == ".Inf" || mag == ".INF") return s[0] == '-' ? -INFINITY : INFINITY;
    if (s == ".nan" || s == ".NaN" || s == ".NAN") return NAN;
    return std::strtod(s.c_str(), nullptr);
  }

  std::string name_;
};

// One node under construction: a sequence or a mapping (with its pending key).
struct Frame {
  Json value;
  bool is_map = false;
  bool has_key = false;
  std::string key;
  std::string anchor;
  std::map<std::string, bool> keys;
};

std::string tag_of(const unsigned char* tag) { return tag ? reinterpret_cast<const char*>(tag) : ""; }

// The document under construction: the open sequences and mappings, the
// anchors seen so far, and the root once the outermost value is complete.
class Tree {
 public:
  explicit Tree(const Builder& b) : b_(b) {}

  // Adds a finished value to the frame below (as a key, a map value or an item).
  void add(Json v, size_t line) {
    if (stack_.empty()) return void(root_ = std::move(v));
    Frame& f = stack_.back();
    if (!f.is_map) return f.value.push_back(std::move(v));
    if (!f.has_key) {
      LLAMAFT_REQUIRE(v.is_string(), b_.where(line), "a mapping key must be a string (got ", v.dump(), ")");
      f.key = v.get<std::string>();
      LLAMAFT_REQUIRE(!f.keys.count(f.key), b_.where(line), "the key '", f.key, "' appears twice");
      f.keys[f.key] = true;
      f.has_key = true;
      return;
    }
    f.value[f.key] = std::move(v);
    f.has_key = false;
  }
  void add_alias(const std::string& a, size_t line) {
    LLAMAFT_REQUIRE(anchors_.count(a), b_.where(line), "the alias *", a, " has no anchor");
    add(anchors_[a], line);
  }
  void add_scalar(Json v, const unsigned char* anchor, size_t line) {
    if (anchor) anchors_[reinterpret_cast<const char*>(anchor)] = v;
    add(std::move(v), line);
  }
  // A sequence or mapping starts; it is added when it ends.
  void open(bool is_map, const unsigned char* anchor) {
    Frame f;
    f.is_map = is_map;
    f.value = is_map ? Json::object() : Json::array();
    f.anchor = anchor ? reinterpret_cast<const char*>(anchor) : "";
    stack_.push_back(std::move(f));
  }
  void close(size_t line) {
    Frame f = std::move(stack_.back());
    stack_.pop_back();
    if (!f.anchor.empty()) anchors_[f.anchor] = f.value;
    add(std::move(f.value), line);
  }
  Json take_root() { return std::move(root_); }

 private:
  const Builder& b_;
  std::vector<Frame> stack_;
  std::map<std::string, Json> anchors_;
  Json root_;
};

}  // namespace

Json parse_yaml(const std::string& text, const std::string& name) {
  yaml_parser_t parser;
  LLAMAFT_CHECK(yaml_parser_initialize(&parser), "libyaml: cannot initialise a parser");
  struct Closer {
    yaml_parser_t* p;
    ~Closer() { yaml_parser_delete(p); }
  } closer{&parser};
  yaml_parser_set_input_string(&parser, reinterpret_cast<const unsigned char*>(text.data()), text.size());
  Builder b(name);
  Tree tree(b);
  int documents = 0;
  bool done = false;
  while (!done) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev))
      LLAMAFT_FAIL(name, ":", parser.problem_mark.line + 1, ": not valid YAML: ",
                   parser.problem ? parser.problem : "parse error",
                   parser.context ? std::string(" ") + parser.context : std::string());
    struct EventCloser {
      yaml_event_t* e;
      ~EventCloser() { yaml_event_delete(e); }
    } ev_closer{&ev};
    const size_t line = ev.start_mark.line;
    switch (ev.type) {
      case YAML_STREAM_END_EVENT: done = true; break;
      case YAML_DOCUMENT_START_EVENT:
        LLAMAFT_REQUIRE(++documents == 1, b.where(line), "a YAML stream of several documents is not a task config");
        break;
      case YAML_ALIAS_EVENT:
        tree.add_alias(reinterpret_cast<const char*>(ev.data.alias.anchor), line);
        break;
      case YAML_SCALAR_EVENT: {
        const std::string value(reinterpret_cast<const char*>(ev.data.scalar.value), ev.data.scalar.length);
        const std::string tag = tag_of(ev.data.scalar.tag);
        Json v = b.scalar(value, tag.empty() ? nullptr : tag.c_str(), ev.data.scalar.plain_implicit, line);
        tree.add_scalar(std::move(v), ev.data.scalar.anchor, line);
        break;
      }
      case YAML_SEQUENCE_START_EVENT:
      case YAML_MAPPING_START_EVENT: {
        const bool is_map = ev.type == YAML_MAPPING_START_EVENT;
        const unsigned char* tag = is_map ? ev.data.mapping_start.tag : ev.data.sequence_start.tag;
        const unsigned char* anchor = is_map ? ev.data.mapping_start.anchor : ev.data.sequence_start.anchor;
        const std::string t = tag_of(tag);
        LLAMAFT_REQUIRE(t.empty() || t == "!" || t == (is_map ? kMap : kSeq), b.where(line), "the YAML tag '", t,
                        "' is not supported");
        tree.open(is_map, anchor);
        break;
      }
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        tree.close(line);
        break;
      default: break;
    }
  }
  return tree.take_root();
}

Json read_yaml_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  LLAMAFT_REQUIRE(in.good(), "cannot open '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_yaml(ss.str(), path);
}

}  // namespace llamaft::io
