// The command registry: each `llamaft <command>` declares its short flags
// (aliases of config keys), its required keys and its entry point. Parsing is
// Boost.Program_options; every schema key is also accepted as --section.key.
#pragma once

#include <string>
#include <vector>

#include "config/config.hpp"

namespace llamaft {

struct FlagAlias {
  std::string flag;   // "seq-len"
  std::string key;    // "data.seq_len"
  bool is_switch = false;  // takes no value; sets the key to true
};

struct Command {
  std::string name;
  std::string summary;  // one line for `llamaft --help`
  std::string usage;    // e.g. "--model DIR --data FILE [--seq-len N]"
  std::vector<FlagAlias> flags;
  std::vector<std::string> required;
  int (*run)(const Config& cfg) = nullptr;
  std::string positional = "";  // a key that one bare argument sets ("" : none), e.g. `track RUN_DIR`
};

const std::vector<Command>& all_commands();

// Parses argv (after the command name) into cfg. Returns false when the
// command should exit right away (after --help or --print-config).
bool parse_command_line(const Command& cmd, const std::vector<std::string>& args, Config& cfg);

int run_train(const Config& cfg);
int run_plan(const Config& cfg);
int run_tokenize(const Config& cfg);
int run_prepare(const Config& cfg);
int run_merge(const Config& cfg);
int run_init(const Config& cfg);
int run_eval(const Config& cfg);
int run_eval_task(const Config& cfg);  // eval --task (cmd_eval_task.cpp)
int run_generate(const Config& cfg);
int run_track(const Config& cfg);
int run_convert(const Config& cfg);
int run_export(const Config& cfg);

}  // namespace llamaft
