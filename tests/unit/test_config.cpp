// The config system and the CLI's error messages: unknown keys with
// suggestions and file:line, bad values, missing keys, precedence.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>

#include "config/config.hpp"
#include "core/error.hpp"

namespace llamaft {
namespace {

std::string write_temp(const std::string& name, const std::string& text) {
  const std::string path = ::testing::TempDir() + "/" + name;
  std::ofstream(path) << text;
  return path;
}

std::string error_of(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

TEST(Config, UnknownKeyNamesFileLineAndSuggests) {
  const auto path = write_temp("typo.cfg", "[data]\nseq_len = 128\n\n[data]\nsequence_len = 64\n");
  Config cfg;
  const std::string msg = error_of([&] { cfg.load_file(path); });
  EXPECT_NE(msg.find("typo.cfg:5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'data.sequence_len'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'data.seq_len'"), std::string::npos) << msg;
}

TEST(Config, KeyInWrongSectionSuggestsTheRightOne) {
  const auto path = write_temp("section.cfg", "[eval]\nseq_len = 128\n");
  Config cfg;
  const std::string msg = error_of([&] { cfg.load_file(path); });
  EXPECT_NE(msg.find("did you mean 'data.seq_len'"), std::string::npos) << msg;
}

TEST(Config, BadValuesAreRejectedWithTheReason) {
  Config cfg;
  EXPECT_NE(error_of([&] { cfg.set("data.seq_len", "12x", "cli"); }).find("expected an integer"), std::string::npos);
  EXPECT_NE(error_of([&] { cfg.set("data.seq_len", "1", "cli"); }).find("must be between 2"), std::string::npos);
  EXPECT_NE(error_of([&] { cfg.set("generate.temperature", "warm", "cli"); }).find("expected a number"),
            std::string::npos);
  EXPECT_NE(error_of([&] { cfg.set("generate.json", "maybe", "cli"); }).find("expected true or false"),
            std::string::npos);
  EXPECT_NE(error_of([&] { cfg.set("runtime.backend", "tpu", "cli"); }).find("expected one of cpu|cuda"),
            std::string::npos);
}

TEST(Config, MalformedLinesNameTheLine) {
  Config cfg;
  EXPECT_NE(error_of([&] { cfg.load_file(write_temp("m1.cfg", "[data\n")); }).find("m1.cfg:1: malformed section"),
            std::string::npos);
  EXPECT_NE(error_of([&] { cfg.load_file(write_temp("m2.cfg", "[data]\nseq_len 5\n")); })
                .find("m2.cfg:2: expected 'key = value'"),
            std::string::npos);
  EXPECT_NE(error_of([&] { cfg.load_file(write_temp("m3.cfg", "seq_len = 5\n")); }).find("outside any [section]"),
            std::string::npos);
  EXPECT_NE(error_of([&] { cfg.load_file("/nonexistent/x.cfg"); }).find("cannot open config file"),
            std::string::npos);
}

TEST(Config, MissingRequiredKeyExplainsHowToSetIt) {
  Config cfg;
  const std::string msg = error_of([&] { cfg.require("model.path", "eval"); });
  EXPECT_NE(msg.find("missing required key 'model.path'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("--model.path"), std::string::npos) << msg;
}

TEST(Config, ValuesCommentsAndSources) {
  const auto path = write_temp("ok.cfg", "# comment\n[data]\nseq_len = 128   # inline\n[model]\npath = \"/m\"\n");
  Config cfg;
  cfg.load_file(path);
  EXPECT_EQ(cfg.get_int("data.seq_len"), 128);
  EXPECT_EQ(cfg.get_string("model.path"), "/m");
  EXPECT_EQ(cfg.source("data.seq_len"), path + ":3");
  cfg.set("data.seq_len", "64", "command line");  // the command line wins
  EXPECT_EQ(cfg.get_int("data.seq_len"), 64);
  EXPECT_EQ(cfg.get_int("eval.batch_size"), 8);  // default
  const std::string dump = cfg.dump();
  EXPECT_NE(dump.find("seq_len = 64"), std::string::npos) << dump;
  EXPECT_NE(dump.find("# command line"), std::string::npos) << dump;
}

// ---- the binary's behaviour on bad command lines ------------------------------------
struct RunResult {
  int code;
  std::string output;
};
RunResult run(const std::string& args) {
  const std::string cmd = std::string(LLAMAFT_BINARY) + " " + args + " 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  std::string out;
  std::array<char, 4096> buf;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe.get())) > 0) out.append(buf.data(), n);
  const int status = pclose(pipe.release());
  return {WEXITSTATUS(status), out};
}

TEST(Cli, UnknownOptionSuggestsTheFlag) {
  const auto r = run("eval --modle /x --data /y");
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.output.find("unknown option '--modle'"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did you mean '--model'"), std::string::npos) << r.output;
}

TEST(Cli, UnknownCommandSuggests) {
  const auto r = run("generat --model /x");
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.output.find("did you mean 'generate'"), std::string::npos) << r.output;
}

TEST(Cli, MissingModelDirIsAClearError) {
  const auto r = run("eval --model /nonexistent/model --data /nonexistent/d.jsonl");
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.output.find("model directory '/nonexistent/model' does not exist"), std::string::npos) << r.output;
}

TEST(Cli, ConfigFileTypoFromTheBinary) {
  const auto path = write_temp("cli_typo.cfg", "[model]\npath = /m\n[eval]\nbatchsize = 4\n");
  const auto r = run("eval --config " + path + " --data /d");
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.output.find("cli_typo.cfg:4"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("did you mean 'eval.batch_size'"), std::string::npos) << r.output;
}

TEST(Cli, PrintConfigShowsOverrides) {
  const auto r = run("eval --model /m --data /d --seq-len 77 --print-config");
  EXPECT_EQ(r.code, 0) << r.output;
  EXPECT_NE(r.output.find("seq_len = 77"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("[eval]"), std::string::npos) << r.output;
}

TEST(Config, DuplicateKeyNamesBothLines) {
  const auto path = write_temp("dup.cfg", "[train]\nlr = 1e-4\nsteps = 5\n\n[train]\nlr = 3e-4\n");
  Config cfg;
  const std::string msg = error_of([&] { cfg.load_file(path); });
  EXPECT_NE(msg.find("dup.cfg:6"), std::string::npos) << msg;
  EXPECT_NE(msg.find("dup.cfg:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("'train.lr' is set twice"), std::string::npos) << msg;
}

TEST(Config, EveryDtypeKeyTakesEverySpelling) {
  Config cfg;
  for (const char* v : {"bf16", "bfloat16"}) {
    cfg.set("init.dtype", v, "cli");
    EXPECT_EQ(cfg.get_string("init.dtype"), "bfloat16") << v;
    cfg.set("output.export_dtype", v, "cli");
    EXPECT_EQ(cfg.get_string("output.export_dtype"), "bfloat16") << v;
    cfg.set("train.param_dtype", v, "cli");
    EXPECT_EQ(cfg.get_string("train.param_dtype"), "bf16") << v;
    cfg.set("eval.dtype", v, "cli");
    EXPECT_EQ(cfg.get_string("eval.dtype"), "bf16") << v;
  }
  for (const char* v : {"fp32", "float32", "f32"}) {
    cfg.set("init.dtype", v, "cli");
    EXPECT_EQ(cfg.get_string("init.dtype"), "float32") << v;
    cfg.set("train.param_dtype", v, "cli");
    EXPECT_EQ(cfg.get_string("train.param_dtype"), "fp32") << v;
  }
  EXPECT_NE(error_of([&] { cfg.set("init.dtype", "fp16", "cli"); }).find("expected one of"), std::string::npos);
}

// eval.dtype is eval's and generate's: train refuses one it would ignore.
TEST(Cli, TrainRefusesAnEvalDtypeItWouldIgnore) {
  const auto r = run("train --model.path /nonexistent --data.path /nonexistent --output.dir /nonexistent/out "
                     "--eval.dtype bf16");
  EXPECT_EQ(r.code, 2) << r.output;
  EXPECT_NE(r.output.find("eval.dtype = bf16 is for eval and generate"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("set train.param_dtype = bf16"), std::string::npos) << r.output;
  // Agreeing with train.param_dtype is no conflict: the run goes on to the missing model.
  const auto ok = run("train --model.path /nonexistent --data.path /nonexistent --output.dir /nonexistent/out "
                      "--eval.dtype bf16 --train.param_dtype bf16");
  EXPECT_EQ(ok.output.find("eval.dtype"), std::string::npos) << ok.output;
}

TEST(Cli, CommandLineTypoOfASectionKeySuggests) {
  const auto r = run("eval --model /m --data /d --eval.batch_sise 4");
  EXPECT_EQ(r.code, kExitUserError);
  EXPECT_NE(r.output.find("did you mean '--eval.batch_size'"), std::string::npos) << r.output;
  // A name from Hugging Face's TrainingArguments, misspelt, still finds ours.
  const auto hf = run("train --model /m --data /d --output.dir /o --train.learnig_rate 1e-4");
  EXPECT_EQ(hf.code, kExitUserError);
  EXPECT_NE(hf.output.find("did you mean '--train.lr'"), std::string::npos) << hf.output;
}

TEST(Cli, PrintConfigListsEachSectionOnce) {
  const auto r = run("train --model /m --data /d --output.dir /o --print-config");
  EXPECT_EQ(r.code, 0) << r.output;
  for (const char* sec : {"[model]", "[data]", "[train]", "[lora]", "[quant]", "[checkpoint]"}) {
    const auto first = r.output.find(sec);
    ASSERT_NE(first, std::string::npos) << sec;
    EXPECT_EQ(r.output.find(sec, first + 1), std::string::npos) << sec << " printed twice:\n" << r.output;
  }
}

TEST(Cli, InitTakesBf16) {
  const std::string dir = ::testing::TempDir() + "/init_bf16";
  std::filesystem::remove_all(dir);  // init refuses a non-empty folder without --force
  const auto r = run("init --preset tiny --dtype bf16 --output " + dir);
  EXPECT_EQ(r.code, 0) << r.output;
  std::ifstream cfg(dir + "/config.json");
  std::stringstream ss;
  ss << cfg.rdbuf();
  EXPECT_NE(ss.str().find("\"dtype\": \"bfloat16\""), std::string::npos) << ss.str();
}

TEST(Cli, VersionAndHelp) {
  EXPECT_NE(run("--version").output.find("llamaft 0."), std::string::npos);
  const auto help = run("--help");
  EXPECT_EQ(help.code, 0);
  for (const char* cmd : {"init", "eval", "generate"}) EXPECT_NE(help.output.find(cmd), std::string::npos);
  const auto eval_help = run("eval --help");
  EXPECT_EQ(eval_help.code, 0);
  EXPECT_NE(eval_help.output.find("--seq-len"), std::string::npos) << eval_help.output;
}

}  // namespace
}  // namespace llamaft

namespace llamaft {
namespace {
// Every shipped config parses with the schema (typos in them would be caught).
TEST(Cli, ShippedConfigsParse) {
  for (const char* name : {"tiny_full.cfg", "llama3_8b_full.cfg", "llama3_70b_full.cfg", "llama3_8b_lora.cfg",
                           "llama3_8b_qlora.cfg"}) {
    const auto r = run(std::string("train --config ") + LLAMAFT_SOURCE_DIR + "/configs/" + name + " --print-config");
    EXPECT_EQ(r.code, 0) << name << ": " << r.output;
    EXPECT_NE(r.output.find("[fsdp]"), std::string::npos) << name;
  }
}
}  // namespace
}  // namespace llamaft
