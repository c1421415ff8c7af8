#include <boost/program_options.hpp>
#include <algorithm>
#include <iostream>

#include "cli/command.hpp"
#include "core/error.hpp"
#include "model/hub_cache.hpp"

namespace po = boost::program_options;

namespace llamaft {

namespace {

Command train_command() {
  return {"train", "fine-tune with FSDP over MPI: mpirun -np N llamaft train --config FILE",
          "--config FILE [--section.key VALUE ...]",
          {{"model", "model.path"}, {"data", "data.path"}, {"output", "output.dir"}, {"steps", "train.steps"},
           {"strategy", "fsdp.strategy"}, {"threads", "runtime.threads"}},
          {"model.path", "data.path", "output.dir"},
          run_train};
}

Command plan_command() {
  return {"plan", "per-rank memory estimate of a training config for each FSDP strategy",
          "--config FILE --np N | --preset NAME --np N [--seq-len N --micro-batch-size B --all --json]",
          {{"np", "plan.np"}, {"preset", "plan.preset"}, {"all", "plan.all", true}, {"model", "model.path"}, {"seq-len", "data.seq_len"},
           {"micro-batch-size", "train.micro_batch_size"}, {"method", "finetune.method"},
           {"json", "plan.json", true}},
          {},
          run_plan};
}

Command prepare_command() {
  return {"prepare", "tokenize, template, mask and pack instruction/chat/text data into a training dataset",
          "--tokenizer PATH --input FILE... --format alpaca|chat|sharegpt|text|tokens|csv|tsv [--columns MAP] "
          "[--template auto|model|chatml|llama2|llama3|llama3.1|alpaca|none] --output DIR "
          "[--seq-len N --pack true --val-fraction F --train-on-prompt]",
          {{"tokenizer", "model.tokenizer"}, {"model", "model.path"}, {"input", "prepare.input"},
           {"format", "prepare.format"}, {"template", "prepare.template"}, {"output", "prepare.output"},
           {"columns", "prepare.columns"}, {"seq-len", "prepare.seq_len"}, {"pack", "prepare.pack"}, {"val-fraction", "prepare.val_fraction"},
           {"train-on-prompt", "prepare.train_on_prompt", true}},
          {"prepare.input", "prepare.output"},
          run_prepare};
}

Command tokenize_command() {
  return {"tokenize", "encode text with a Llama 2 (SentencePiece) or byte-level BPE tokenizer, one JSON line per input "
          "line; --chat renders conversations with a chat template",
          "--tokenizer PATH --input FILE [--json-lines] [--bos] [--decode] | --chat [--template T] "
          "[--add-generation-prompt]",
          {{"tokenizer", "model.tokenizer"}, {"model", "model.path"}, {"input", "tokenize.input"},
           {"json-lines", "tokenize.json_lines", true}, {"bos", "tokenize.bos", true}, {"decode", "tokenize.decode", true},
           {"chat", "tokenize.chat", true}, {"template", "tokenize.template"},
           {"add-generation-prompt", "tokenize.add_generation_prompt", true},
           {"train-on-prompt", "prepare.train_on_prompt", true}},
          {"tokenize.input"},
          run_tokenize};
}

Command merge_command() {
  return {"merge", "fold a LoRA adapter into its base model and write HF safetensors",
          "--model BASE --adapter DIR --output DIR [--force]",
          {{"model", "model.path"}, {"adapter", "model.adapter"}, {"output", "init.output"}, {"dtype", "init.dtype"},
           {"max-shard-size", "init.max_shard_size"}, {"force", "init.force", true}},
          {"model.path", "model.adapter", "init.output"},
          run_merge};
}

Command init_command() {
  return {"init", "write a randomly initialised Llama in Hugging Face format",
          "--preset NAME --seed S --output DIR [--force]",
          {{"preset", "init.preset"}, {"seed", "init.seed"}, {"output", "init.output"}, {"dtype", "init.dtype"},
           {"max-shard-size", "init.max_shard_size"}, {"force", "init.force", true}},
          {"init.preset", "init.output"},
          run_init};
}

Command eval_command() {
  return {"eval", "loss and perplexity on a token dataset, or an lm-evaluation-harness task (acc, acc_norm, perplexities)",
          "--model DIR [--adapter DIR] [--quant nf4|int8|bf16] [--dtype fp32|bf16] (--data FILE [--seq-len N] | "
          "--task FILE.yaml|FILE.jsonl [--output-items FILE.jsonl --limit N --max-length N]) [--batch-size B]",
          {{"model", "model.path"}, {"adapter", "model.adapter"}, {"data", "data.path"}, {"format", "data.format"},
           {"seq-len", "data.seq_len"}, {"quant", "quant.base"}, {"double-quant", "quant.double_quant"},
           {"batch-size", "eval.batch_size"}, {"dtype", "eval.dtype"}, {"threads", "runtime.threads"},
           {"task", "eval.task"}, {"output-items", "eval.output_items"}, {"limit", "eval.limit"},
           {"max-length", "eval.max_length"}, {"tokenizer", "model.tokenizer"}},
          {"model.path"},
          run_eval};
}

Command generate_command() {
  return {"generate", "generate text with a KV cache (greedy when --temperature 0)",
          "--model DIR [--adapter DIR] [--quant nf4|int8|bf16] [--dtype fp32|bf16] (--prompt TEXT [--template auto|model|chatml|llama2|llama3|llama3.1|alpaca|none --system TEXT] | --prompt-ids IDS) --max-new-tokens N "
          "[--temperature T --top-p P --seed S --stop-ids IDS --json]",
          {{"model", "model.path"}, {"adapter", "model.adapter"}, {"tokenizer", "model.tokenizer"},
           {"quant", "quant.base"}, {"double-quant", "quant.double_quant"}, {"prompt", "generate.prompt"}, {"template", "generate.template"}, {"system", "generate.system"},
           {"stop-ids", "generate.stop_ids"},
           {"prompt-ids", "generate.prompt_ids"}, {"max-new-tokens", "generate.max_new_tokens"},
           {"temperature", "generate.temperature"}, {"top-p", "generate.top_p"}, {"seed", "generate.seed"},
           {"json", "generate.json", true}, {"dtype", "eval.dtype"}, {"threads", "runtime.threads"}},
          {"model.path"},
          run_generate};
}

Command convert_command() {
  return {"convert", "turn a GGUF file (llama architecture) into a Hugging Face folder: weights, config, tokenizer",
          "--gguf FILE --output DIR [--dtype fp32|bf16] [--force]",
          {{"gguf", "convert.gguf"}, {"output", "init.output"}, {"dtype", "init.dtype"}, {"force", "init.force", true},
           {"threads", "runtime.threads"}},
          {"convert.gguf", "init.output"},
          run_convert};
}

Command export_command() {
  return {"export", "write a Hugging Face Llama (optionally with a LoRA adapter folded in) as a GGUF file for llama.cpp",
          "--format gguf --outtype f32|f16|bf16|q8_0|q4_0|q4_k_m --model DIR [--adapter DIR] [--tokenizer PATH] "
          "--output FILE.gguf [--name NAME] [--force]",
          {{"format", "export.format"}, {"outtype", "export.outtype"}, {"model", "model.path"},
           {"adapter", "model.adapter"}, {"tokenizer", "model.tokenizer"}, {"output", "export.output"},
           {"name", "export.name"}, {"force", "export.force", true}, {"threads", "runtime.threads"}},
          {"model.path", "export.output"},
          run_export};
}

Command track_command() {
  return {"track", "log a run folder to W&B or MLflow after the fact, or finish one the follower left",
          "RUN_DIR [--tracker wandb|mlflow --mode offline|online --uri URI --project P --python PY --artifact]",
          {{"tracker", "output.tracker"}, {"project", "tracker.project"}, {"run-name", "tracker.run_name"},
           {"entity", "tracker.entity"}, {"mode", "tracker.mode"}, {"uri", "tracker.uri"},
           {"python", "tracker.python"}, {"artifact", "tracker.log_artifact", true}},
          {"output.dir"},
          run_track,
          "output.dir"};
}

}  // namespace

const std::vector<Command>& all_commands() {
  static const std::vector<Command> commands = {
      train_command(), plan_command(),     prepare_command(), tokenize_command(), merge_command(), init_command(),
      eval_command(),  generate_command(), convert_command(), export_command(),   track_command()};
  return commands;
}

namespace {

std::string nearest_option(const Command& cmd, const std::string& name) {
  std::string best;
  size_t best_d = std::max<size_t>(3, name.size() / 3) + 1;
  auto consider = [&](const std::string& cand) {
    const size_t dist = edit_distance(name, cand);
    if (dist < best_d) best_d = dist, best = cand;
  };
  for (const auto& f : cmd.flags) consider(f.flag);
  for (const char* g : {"config", "print-config", "help"}) consider(g);
  // Section keys: the same rules as keys in a config file.
  if (best.empty() || name.find('.') != std::string::npos) {
    const std::string key = global_schema().nearest(name);
    if (!key.empty()) best = key;
  }
  return best;
}

// Every config key, section by section: name = default, then what it does.
void print_every_key(std::ostream& os) {
  const auto& keys = global_schema().keys();
  os << "\nEvery config key (" << keys.size() << "; in a file as [section] name = value):\n";
  std::vector<std::string> sections;  // in order of first appearance, each once
  for (const auto& k : keys) {
    const std::string sec = k.key.substr(0, k.key.find('.'));
    if (std::find(sections.begin(), sections.end(), sec) == sections.end()) sections.push_back(sec);
  }
  for (const auto& sec : sections) {
    os << "\n[" << sec << "]\n";
    for (const auto& k : keys) {
      if (k.key.compare(0, sec.size() + 1, sec + ".") != 0) continue;
      std::string lhs = "  " + k.key.substr(sec.size() + 1) + " = " + (k.default_value.empty() ? "(unset)" : k.default_value);
      if (!k.choices.empty()) {
        std::string c;
        for (const auto& x : k.choices) c += (c.empty() ? "" : "|") + x;
        lhs += "  {" + c + "}";
      }
      os << lhs << "\n      " << k.help << "\n";
    }
  }
}

// The command's own flags, each documented by the key it sets.
void add_flag_options(const Command& cmd, po::options_description& visible) {
  for (const auto& f : cmd.flags) {
    const KeySpec* spec = global_schema().find(f.key);
    LLAMAFT_CHECK(spec, "flag --", f.flag, " maps to unknown key ", f.key);
    const std::string help = spec->help + " (= " + f.key + ")";
    if (f.is_switch) visible.add_options()(f.flag.c_str(), help.c_str());
    else if (spec->list)
      visible.add_options()(f.flag.c_str(), po::value<std::vector<std::string>>()->multitoken()->composing(), help.c_str());
    else visible.add_options()(f.flag.c_str(), po::value<std::vector<std::string>>()->composing()->value_name("V"), help.c_str());
  }
}

// --section.key values, then the command's flags, over what cfg holds.
void apply_command_line(const Command& cmd, const po::variables_map& vm, Config& cfg) {
  // A key given twice takes its last value (scripts append overrides).
  for (const auto& k : global_schema().keys())
    if (vm.count(k.key)) cfg.set(k.key, vm[k.key].as<std::vector<std::string>>().back(), "command line --" + k.key);
  for (const auto& f : cmd.flags) {
    if (!vm.count(f.flag)) continue;
    std::string value = "true";
    if (!f.is_switch) {
      const auto& all = vm[f.flag].as<std::vector<std::string>>();
      value = all.back();
      if (global_schema().find(f.key)->list) {  // list keys collect every occurrence
        value.clear();
        for (const auto& v : all) value += (value.empty() ? "" : ",") + v;
      }
    }
    cfg.set(f.key, value, "command line --" + f.flag);
  }
}

}  // namespace

bool parse_command_line(const Command& cmd, const std::vector<std::string>& args, Config& cfg) {
  po::options_description visible("Options for 'llamaft " + cmd.name + "'");
  visible.add_options()("help,h", "show this help")(
      "config", po::value<std::string>()->value_name("FILE"), "INI config file ([section] key = value)")(
      "print-config", "print the effective configuration and exit");
  add_flag_options(cmd, visible);
  po::options_description keys("Any config key, as --section.key VALUE");
  for (const auto& k : global_schema().keys())
    keys.add_options()(k.key.c_str(), po::value<std::vector<std::string>>()->composing(), k.help.c_str());
  po::options_description all;
  all.add(visible).add(keys);

  po::variables_map vm;
  try {
    // No prefix guessing: a truncated key is a typo, not an abbreviation.
    const int style = po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
    po::positional_options_description positional;
    if (!cmd.positional.empty()) positional.add(cmd.positional.c_str(), 1);
    po::store(po::command_line_parser(args).options(all).positional(positional).style(style).run(), vm);
  } catch (const po::unknown_option& e) {
    std::string name = e.get_option_name();
    while (!name.empty() && name[0] == '-') name.erase(0, 1);
    const std::string near = nearest_option(cmd, name);
    const std::string note = near.empty() ? "" : global_schema().note(name);
    LLAMAFT_FAIL("llamaft ", cmd.name, ": unknown option '--", name, "'",
                 near.empty() ? "" : "; did you mean '--" + near + "'?", note.empty() ? "" : " (" + note + ")",
                 " (see llamaft ", cmd.name, " --help)");
  } catch (const po::error& e) {
    LLAMAFT_FAIL("llamaft ", cmd.name, ": ", e.what(), " (see llamaft ", cmd.name, " --help)");
  }

  if (vm.count("help")) {
    std::cout << "Usage: llamaft " << cmd.name << " " << cmd.usage << "\n\n"
              << cmd.summary << "\n\n"
              << visible << "\nEvery config key can also be given as --section.key VALUE; "
              << "the command line wins over --config.\n";
    if (cmd.name == "train") print_every_key(std::cout);
    else std::cout << "llamaft train --help lists every key; --print-config shows their values.\n";
    return false;
  }
  // Precedence: defaults < config file < command line.
  if (vm.count("config")) cfg.load_file(vm["config"].as<std::string>());
  apply_command_line(cmd, vm, cfg);
  if (vm.count("print-config")) {
    std::cout << cfg.dump();
    return false;
  }
  // model.path may name a model by its hub id, found in the local Hugging Face cache.
  if (cfg.has("model.path")) {
    std::string note;
    const std::string resolved = resolve_model_path(cfg.get_string("model.path"), &note);
    if (!note.empty()) {
      if (process_rank() <= 0) std::cerr << "llamaft " << cmd.name << ": " << note << "\n";
      cfg.set("model.path", resolved, "the Hugging Face cache");
    }
  }
  for (const auto& key : cmd.required) cfg.require(key, cmd.name);
  return true;
}

}  // namespace llamaft
