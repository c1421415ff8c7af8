// `llamaft prepare`: JSONL/JSON instruction, chat, text or token data ->
// tokenized, templated, loss-masked, optionally packed binary splits that
// train and eval memory-map. Every bad row is reported with file:line and
// counted; past prepare.max_bad_fraction the command fails. The output folder
// is replaced as a whole (written into OUTPUT.partial, then swapped in), so no
// split of an earlier prepare survives. With --pack true a document longer
// than seq_len fills the rest of its row and continues in the next rows;
// without packing it is truncated, with a warning.
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/ignore_index.hpp"
#include "cli/command.hpp"
#include "core/error.hpp"
#include "core/util.hpp"
#include "core/rng.hpp"
#include "data/prepared_dataset.hpp"
#include "data/templates.hpp"
#include "data/tokenizer.hpp"

namespace llamaft {

namespace {

using nlohmann::json;

struct Stats {
  int64_t documents = 0, bad_rows = 0, truncated_documents = 0, truncated_tokens = 0, dropped_documents = 0;
  int64_t split_documents = 0;  // packed documents longer than seq_len, continued across rows
  int64_t target_tokens = 0, input_bytes = 0;
};

// One record of a delimited file: its fields and the line it starts on.
struct DelimitedRow {
  std::vector<std::string> fields;
  int64_t line = 0;
};

// RFC 4180 as Python's csv module reads it (dialect excel / excel-tab): a
// field that starts with '"' is quoted, "" inside it is one quote, and it may
// hold the delimiter and newlines; a quote elsewhere is a character. Records
// end at LF or CRLF; blank lines are skipped; a UTF-8 BOM is dropped. An
// unterminated quote is an error naming its line.
std::vector<DelimitedRow> parse_delimited(const std::string& text, char delim, const std::string& path) {
  std::vector<DelimitedRow> rows;
  size_t i = text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? 3 : 0;
  int64_t line = 1;
  const size_t n = text.size();
  while (i < n) {
    DelimitedRow row;
    row.line = line;
    bool end_of_record = false;
    while (!end_of_record) {
      std::string field;
      if (i < n && text[i] == '"') {
        const int64_t opened = line;
        ++i;
        for (;;) {
          LLAMAFT_REQUIRE(i < n, "prepare: ", path, ":", opened, ": a quoted field is never closed");
          if (text[i] == '"') {
            if (i + 1 < n && text[i + 1] == '"') {
              field += '"';
              i += 2;
              continue;
            }
            ++i;
            break;
          }
          if (text[i] == '\n') ++line;
          field += text[i++];
        }
      }
      while (i < n && text[i] != delim && text[i] != '\n' && !(text[i] == '\r' && i + 1 < n && text[i + 1] == '\n'))
        field += text[i++];
      row.fields.push_back(std::move(field));
      if (i >= n) {
        end_of_record = true;
      } else if (text[i] == delim) {
        ++i;
      } else {
        i += text[i] == '\r' ? 2 : 1;
        ++line;
        end_of_record = true;
      }
    }
    if (!(row.fields.size() == 1 && row.fields[0].empty())) rows.push_back(std::move(row));
  }
  return rows;
}

// prepare.columns: {field, column} pairs ("instruction=Q,output=A").
std::vector<std::pair<std::string, std::string>> parse_columns(const std::string& spec) {
  std::vector<std::pair<std::string, std::string>> out;
  std::stringstream ss(spec);
  for (std::string item; std::getline(ss, item, ',');) {
    const auto eq = item.find('=');
    LLAMAFT_REQUIRE(eq != std::string::npos && eq > 0 && eq + 1 < item.size(), "prepare.columns: '", item,
                    "' is not FIELD=COLUMN (e.g. instruction=question,output=answer)");
    const std::string f = item.substr(0, eq);
    LLAMAFT_REQUIRE(f == "instruction" || f == "input" || f == "output" || f == "text", "prepare.columns: unknown "
                    "field '", f, "'; the fields are instruction, input, output (Alpaca rows) or text (documents)");
    for (const auto& [g, c] : out) LLAMAFT_REQUIRE(g != f, "prepare.columns: '", f, "' is given twice");
    out.emplace_back(f, item.substr(eq + 1));
  }
  return out;
}

// What a csv/tsv row is once its columns are mapped: "alpaca" or "text".
std::string delimited_kind(const std::vector<std::pair<std::string, std::string>>& cols) {
  bool text = false, output = false, instruction = false;
  for (const auto& [f, c] : cols) text |= f == "text", output |= f == "output", instruction |= f == "instruction";
  LLAMAFT_REQUIRE(text != (output || instruction), "prepare.columns: map either text=COLUMN (documents) or "
                  "instruction=COLUMN and output=COLUMN (Alpaca rows, input=COLUMN optional), not both or neither");
  LLAMAFT_REQUIRE(text || (output && instruction), "prepare.columns: Alpaca rows need both instruction= and output=");
  return text ? "text" : "alpaca";
}

// The render format of an input format (csv/tsv: by their columns).
std::string render_format(const std::string& format, const std::string& columns) {
  if (format == "sharegpt") return "sharegpt";
  if (format != "csv" && format != "tsv") return format;
  if (columns.empty()) return "alpaca_or_text";  // decided by each file's header
  return delimited_kind(parse_columns(columns));
}

// Rows of a csv/tsv file as JSON records of the mapped fields.
std::vector<std::pair<std::string, json>> read_delimited(const std::string& path, const std::string& text, char delim,
                                                         const std::string& columns, std::string* kind, Stats& st,
                                                         std::vector<std::string>& errors) {
  std::vector<DelimitedRow> rows = parse_delimited(text, delim, path);
  LLAMAFT_REQUIRE(!rows.empty(), "prepare: ", path, " has no header row");
  const std::vector<std::string>& header = rows[0].fields;
  std::string names;
  for (const auto& h : header) names += (names.empty() ? "" : ", ") + h;
  auto cols = parse_columns(columns);
  if (cols.empty()) {  // the header's own names
    for (const char* f : {"instruction", "input", "output", "text"})
      if (std::find(header.begin(), header.end(), f) != header.end()) cols.emplace_back(f, f);
    LLAMAFT_REQUIRE(!cols.empty(), "prepare: ", path, "'s columns are ", names, "; say which is which with --columns "
                    "instruction=COLUMN,input=COLUMN,output=COLUMN (Alpaca rows) or --columns text=COLUMN");
    if (std::find_if(cols.begin(), cols.end(), [](const auto& c) { return c.first == "text"; }) != cols.end() &&
        cols.size() > 1)
      cols.erase(std::remove_if(cols.begin(), cols.end(), [](const auto& c) { return c.first == "text"; }), cols.end());
  }
  *kind = delimited_kind(cols);
  std::vector<std::pair<std::string, size_t>> index;  // field -> column number
  for (const auto& [f, c] : cols) {
    const auto it = std::find(header.begin(), header.end(), c);
    LLAMAFT_REQUIRE(it != header.end(), "prepare: ", path, " has no column '", c, "' (for ", f, "); its columns are ",
                    names);
    index.emplace_back(f, static_cast<size_t>(it - header.begin()));
  }
  std::vector<std::pair<std::string, json>> out;
  for (size_t r = 1; r < rows.size(); ++r) {
    const std::string where = path + ":" + std::to_string(rows[r].line);
    if (rows[r].fields.size() != header.size()) {
      errors.push_back(str_cat(where, ": ", rows[r].fields.size(), " fields where the header has ", header.size()));
      st.bad_rows++;
      continue;
    }
    json j = json::object();
    for (const auto& [f, c] : index) j[f] = rows[r].fields[c];
    out.emplace_back(where, std::move(j));
  }
  return out;
}

// Records of one input file with their line (JSONL) or element (JSON array) numbers.
std::vector<std::pair<std::string, json>> read_records(const std::string& path, const std::string& format,
                                                       const std::string& columns, std::string* kind,
                                                       Stats& st, std::vector<std::string>& errors) {
  std::ifstream in(path, std::ios::binary);
  LLAMAFT_REQUIRE(in.good(), "prepare: cannot open input '", path, "'");
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  st.input_bytes += static_cast<int64_t>(text.size());
  *kind = format;
  if (format == "csv" || format == "tsv")
    return read_delimited(path, text, format == "csv" ? ',' : '\t', columns, kind, st, errors);
  std::vector<std::pair<std::string, json>> out;
  const bool is_txt = path.size() > 4 && path.compare(path.size() - 4, 4, ".txt") == 0;
  if (format == "text" && is_txt) {  // a plain text file is one document
    out.emplace_back(path, json{{"text", text}});
    return out;
  }
  const auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {  // a JSON array (alpaca_data.json style)
    json arr = json::parse(text, nullptr, false);
    LLAMAFT_REQUIRE(!arr.is_discarded() && arr.is_array(), "prepare: '", path, "' starts with [ but is not a JSON array");
    for (size_t i = 0; i < arr.size(); ++i) out.emplace_back(path + ":[" + std::to_string(i) + "]", arr[i]);
    return out;
  }
  std::istringstream lines(text);
  std::string line;
  int64_t lineno = 0;
  while (std::getline(lines, line)) {
    ++lineno;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    json j = json::parse(line, nullptr, false);
    const std::string where = path + ":" + std::to_string(lineno);
    if (j.is_discarded() || !j.is_object()) {
      errors.push_back(where + ": not a JSON object");
      st.bad_rows++;
      continue;
    }
    out.emplace_back(where, std::move(j));
  }
  return out;
}

std::string field(const json& j, const char* key, bool required) {
  if (!j.contains(key) || j[key].is_null()) {
    if (required) throw Error(str_cat("missing '", key, "'"));
    return "";
  }
  if (!j[key].is_string()) throw Error(str_cat("'", key, "' is not a string"));
  return j[key].get<std::string>();
}

// tok may be null for format "tokens".
Rendered render_record(const json& j, const std::string& format, const Tokenizer* tok, const ChatTemplate& t,
                       bool train_on_prompt,
                       int64_t vocab) {
  if (format == "alpaca") {
    const std::string out = field(j, "output", true);
    if (out.empty()) throw Error("empty 'output'");
    return render_alpaca(*tok, t, field(j, "instruction", true), field(j, "input", false), out, train_on_prompt);
  }
  if (format == "sharegpt") {
    // ShareGPT: {"conversations": [{"from": "system"|"human"|"gpt", "value": ...}]}, as Axolotl and
    // FastChat read it ("user"/"assistant" also taken); any other speaker is refused, never guessed.
    if (!j.contains("conversations") || !j["conversations"].is_array() || j["conversations"].empty())
      throw Error("missing or empty 'conversations' list");
    json chat = {{"messages", json::array()}};
    for (const auto& m : j["conversations"]) {
      if (!m.is_object()) throw Error("a conversation turn is not an object");
      const std::string from = field(m, "from", true);
      std::string role;
      if (from == "system") role = "system";
      else if (from == "human" || from == "user") role = "user";
      else if (from == "gpt" || from == "assistant") role = "assistant";
      else throw Error(str_cat("unknown speaker 'from': '", from, "' (ShareGPT's are system, human and gpt)"));
      chat["messages"].push_back({{"role", role}, {"content", field(m, "value", true)}});
    }
    return render_record(chat, "chat", tok, t, train_on_prompt, vocab);
  }
  if (format == "chat") {
    if (!j.contains("messages") || !j["messages"].is_array() || j["messages"].empty())
      throw Error("missing or empty 'messages' list");
    std::vector<Message> msgs;
    bool has_assistant = false;
    for (const auto& m : j["messages"]) {
      if (!m.is_object()) throw Error("a message is not an object");
      msgs.push_back({field(m, "role", true), field(m, "content", true)});
      has_assistant |= msgs.back().role == "assistant";
    }
    if (!has_assistant && !train_on_prompt) throw Error("no assistant turn to train on");
    return render_chat(*tok, t, msgs, train_on_prompt);
  }
  if (format == "text") {
    const std::string text = field(j, "text", true);
    if (text.empty()) throw Error("empty 'text'");
    return render_text(*tok, text);
  }
  // tokens
  if (!j.contains("input_ids") || !j["input_ids"].is_array() || j["input_ids"].empty())
    throw Error("missing or empty 'input_ids'");
  Rendered r;
  for (const auto& v : j["input_ids"]) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab)
      throw Error(str_cat("input id ", v.dump(), " is not in [0, ", vocab, ")"));
    r.ids.push_back(v.get<int32_t>());
  }
  if (j.contains("labels")) {
    if (!j["labels"].is_array() || j["labels"].size() != r.ids.size()) throw Error("'labels' must match 'input_ids'");
    for (const auto& v : j["labels"]) {
      if (!v.is_number_integer() || (v.get<int64_t>() != kIgnoreIndex && (v.get<int64_t>() < 0 || v.get<int64_t>() >= vocab)))
        throw Error(str_cat("label ", v.dump(), " is neither -100 nor in [0, ", vocab, ")"));
      r.labels.push_back(v.get<int32_t>());
    }
  } else {
    r.labels = r.ids;
  }
  return r;
}

// Documents into the train/val splits: truncation (unpacked), the
// dropped-document rule, the seeded split, and packing into seq_len rows.
// Packing moves a document that fits in a row but not in the rest of the
// current one to the next row whole (so a packed batch has exactly the loss
// of its documents run one by one); a document longer than a row fills the
// rest of the current row and continues in the next rows, as torchtune's
// packer with split_across_pack: its positions continue (modulo seq_len), its
// attention stays within each row, and the target of the last token of each
// row is the one token that the split costs.
class SplitWriter {
 public:
  SplitWriter(const std::string& out_dir, int seq_len, bool pack, double val_fraction, int64_t vocab)
      : seq_len_(seq_len), pack_(pack), val_fraction_(val_fraction), train_(out_dir + "/train", vocab) {
    if (val_fraction > 0) val_ = std::make_unique<PreparedWriter>(out_dir + "/val", vocab);
  }

  void add(Rendered r, const std::string& where, Stats& st, std::vector<std::string>& errors) {
    const size_t row_len = static_cast<size_t>(seq_len_);
    if (!pack_ && r.ids.size() > row_len) {
      st.truncated_documents++;
      st.truncated_tokens += static_cast<int64_t>(r.ids.size() - row_len);
      r.ids.resize(row_len);
      r.labels.resize(row_len);
    }
    int64_t trained = 0;
    for (size_t i = 1; i < r.labels.size(); ++i) trained += r.labels[i] != kIgnoreIndex;
    if (trained == 0) {  // e.g. a prompt longer than seq_len: nothing left to learn
      st.dropped_documents++;
      errors.push_back(where + ": dropped, no trained token within seq_len " + std::to_string(seq_len_));
      return;
    }
    st.documents++;
    Rng split_rng(0x5917, static_cast<uint64_t>(doc_index_++));
    const int split = val_ && split_rng.uniform() < val_fraction_ ? 1 : 0;
    if (!pack_) {
      st.target_tokens += trained;
      writer(split).add_row(r.ids, r.labels, {});
      return;
    }
    Pack& p = packs_[split];
    const size_t n = r.ids.size();
    if (n <= row_len && p.ids.size() + n > row_len) flush(split);
    if (n > row_len) st.split_documents++;
    for (size_t done = 0; done < n;) {
      if (p.ids.size() == row_len) flush(split);
      if (done > 0) trained -= r.labels[done] != kIgnoreIndex;  // its predecessor ended the previous row
      const size_t take = std::min(n - done, row_len - p.ids.size());
      // Row-relative start of the document: negative once it continues from earlier rows.
      const int32_t start = static_cast<int32_t>(static_cast<int64_t>(p.ids.size()) - static_cast<int64_t>(done));
      p.ids.insert(p.ids.end(), r.ids.begin() + done, r.ids.begin() + done + take);
      p.labels.insert(p.labels.end(), r.labels.begin() + done, r.labels.begin() + done + take);
      p.docs.insert(p.docs.end(), take, start);
      done += take;
    }
    st.target_tokens += trained;
  }

  void flush_all() {
    flush(0);
    if (val_) flush(1);
  }
  PreparedWriter& train() { return train_; }
  PreparedWriter* val() { return val_.get(); }

 private:
  struct Pack {
    std::vector<int32_t> ids, labels, docs;
  };
  PreparedWriter& writer(int split) { return split ? *val_ : train_; }
  void flush(int split) {
    Pack& p = packs_[split];
    if (p.ids.empty()) return;
    writer(split).add_row(p.ids, p.labels, p.docs);
    p = Pack{};
  }

  int seq_len_;
  bool pack_;
  double val_fraction_;
  PreparedWriter train_;
  std::unique_ptr<PreparedWriter> val_;
  Pack packs_[2];  // the row being packed, per split
  int64_t doc_index_ = 0;
};

// The tokenizer `prepare` needs: none for token data (ids are checked
// against the model at train time), else --tokenizer or the model's.
std::unique_ptr<Tokenizer> prepare_tokenizer(const Config& cfg, const std::string& format) {
  const std::string tok_path = cfg.get_string("model.tokenizer");
  const bool need_tok = format != "tokens";
  LLAMAFT_REQUIRE(!need_tok || !tok_path.empty() || !cfg.get_string("model.path").empty(),
                  "prepare: pass --tokenizer PATH (tokenizer.model or tokenizer.json)");
  std::unique_ptr<Tokenizer> tok;
  if (need_tok || !tok_path.empty() || !cfg.get_string("model.path").empty())
    tok = load_tokenizer(tok_path, cfg.get_string("model.path"));
  LLAMAFT_REQUIRE(tok || !need_tok, "prepare: no tokenizer found next to the model; pass --tokenizer PATH");
  return tok;
}

void report_errors(const std::vector<std::string>& errors, const Stats& st, const Config& cfg,
                   const std::string& inputs_list) {
  for (size_t i = 0; i < errors.size() && i < 20; ++i) std::cerr << "prepare: " << errors[i] << "\n";
  if (errors.size() > 20) std::cerr << "prepare: ... and " << errors.size() - 20 << " more\n";
  const int64_t total = st.documents + st.bad_rows + st.dropped_documents;
  const double bad_fraction = total ? static_cast<double>(st.bad_rows) / static_cast<double>(total) : 1.0;
  LLAMAFT_REQUIRE(st.documents > 0, "prepare: no usable rows in ", inputs_list);
  LLAMAFT_REQUIRE(bad_fraction <= cfg.get_float("prepare.max_bad_fraction"), "prepare: ", st.bad_rows, " of ", total,
                  " rows are bad (", 100 * bad_fraction, "%), over prepare.max_bad_fraction = ",
                  cfg.get_float("prepare.max_bad_fraction"), "; fix the input or raise the limit");
}

// The template: --template, or (auto) the chat template next to the
// tokenizer (or the model) when there is one; only Alpaca and chat rows use it.
ChatTemplate prepare_template(const Config& cfg, const std::string& rformat) {
  if (rformat == "text" || rformat == "tokens") return named_template("none");
  const std::string tok_path = cfg.get_string("model.tokenizer");
  const std::string dir = !tok_path.empty()
                              ? (tok_path.find('/') == std::string::npos ? "." : tok_path.substr(0, tok_path.rfind('/')))
                              : cfg.get_string("model.path");
  ChatTemplate tmpl = resolve_template(cfg.get_string("prepare.template"), dir, "none", "prepare");
  std::cerr << "prepare: template " << tmpl.describe() << "\n";
  return tmpl;
}

// --input's comma-separated list of files.
std::vector<std::string> input_files(const std::string& inputs_list) {
  std::vector<std::string> inputs;
  std::stringstream ss(inputs_list);
  for (std::string s; std::getline(ss, s, ',');)
    if (!s.empty()) inputs.push_back(s);
  LLAMAFT_REQUIRE(!inputs.empty(), "prepare: no --input files");
  return inputs;
}

// What prepare prints and commits as the output's summary.
nlohmann::ordered_json summary_json(const Stats& st, const PreparedWriter& train, const PreparedWriter* val,
                                    double secs, const std::string& out_dir) {
  return {{"documents", st.documents}, {"train_rows", train.rows()}, {"train_tokens", train.tokens()},
          {"val_rows", val ? val->rows() : 0}, {"bad_rows", st.bad_rows}, {"truncated_documents", st.truncated_documents},
          {"truncated_tokens", st.truncated_tokens}, {"split_documents", st.split_documents},
          {"dropped_documents", st.dropped_documents}, {"seconds", secs},
          {"tokens_per_s", static_cast<double>(train.tokens() + (val ? val->tokens() : 0)) / secs},
          {"input_mb_per_s", static_cast<double>(st.input_bytes) / 1e6 / secs}, {"output", out_dir}};
}

}  // namespace

int run_prepare(const Config& cfg) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string tok_path = cfg.get_string("model.tokenizer");
  const std::string format = cfg.get_string("prepare.format");
  const std::string columns = cfg.get_string("prepare.columns");
  LLAMAFT_REQUIRE(columns.empty() || format == "csv" || format == "tsv",
                  "prepare: --columns is for --format csv or tsv (the format is ", format, ")");
  const std::string rformat = render_format(format, columns);
  const std::unique_ptr<Tokenizer> tok = prepare_tokenizer(cfg, format);
  const ChatTemplate tmpl = prepare_template(cfg, rformat);
  const int seq_len = static_cast<int>(cfg.get_int("prepare.seq_len"));
  const bool pack = cfg.get_bool("prepare.pack");
  const bool train_on_prompt = cfg.get_bool("prepare.train_on_prompt");
  const double val_fraction = cfg.get_float("prepare.val_fraction");
  const std::string out_dir = cfg.get_string("prepare.output");
  const bool tty = isatty(STDERR_FILENO);
  const std::string inputs_list = cfg.get_string("prepare.input");

  const std::vector<std::string> inputs = input_files(inputs_list);

  PreparedOutput output(out_dir);  // refuses a folder that is not an earlier prepare's, before any work
  const int64_t vocab = tok ? tok->vocab_size() : INT32_MAX;
  SplitWriter splits(output.staging(), seq_len, pack, val_fraction, vocab);
  PreparedWriter& train = splits.train();
  PreparedWriter* val = splits.val();
  Stats st;
  std::vector<std::string> errors;
  for (const auto& path : inputs) {
    std::string kind;
    for (auto& [where, rec] : read_records(path, format, columns, &kind, st, errors)) {
      Rendered r;
      try {
        r = render_record(rec, kind, tok.get(), tmpl, train_on_prompt, vocab);
      } catch (const Error& e) {
        errors.push_back(where + ": " + e.what());
        st.bad_rows++;
        continue;
      }
      splits.add(std::move(r), where, st, errors);
      if (tty && st.documents % 1000 == 0)
        std::fprintf(stderr, "\rprepare: %lld documents, %lld tokens", static_cast<long long>(st.documents),
                     static_cast<long long>(train.tokens()));
    }
  }
  splits.flush_all();
  if (tty) std::fprintf(stderr, "\n");
  report_errors(errors, st, cfg, inputs_list);
  if (st.truncated_documents > 0)
    std::cerr << "prepare: warning: " << st.truncated_documents << " document(s) longer than --seq-len " << seq_len
              << " were truncated (" << st.truncated_tokens << " tokens dropped); --pack true continues them in "
              << "the next rows instead\n";

  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::string tok_file =
      !tok ? std::string("none") : tok_path.empty() ? cfg.get_string("model.path") + "/tokenizer.model" : tok_path;
  auto manifest = [&](const PreparedWriter& w, const char* split) {
    nlohmann::ordered_json m = {
        {"format", kPreparedFormat}, {"split", split}, {"rows", w.rows()}, {"tokens", w.tokens()},
        {"tokenizer", tok_file}, {"tokenizer_hash", tok ? tokenizer_file_hash(tok_file) : "none"},
        {"tokenizer_kind", tok ? tok->kind() : "none"},
        {"input_format", format}, {"template", tmpl.name()}, {"template_source", tmpl.describe()},
        {"seq_len", seq_len},
        {"packed", pack}, {"train_on_prompt", train_on_prompt}, {"val_fraction", val_fraction},
        {"inputs", inputs}, {"documents_total", st.documents}, {"target_tokens_total", st.target_tokens},
        {"bad_rows", st.bad_rows}, {"truncated_documents", st.truncated_documents},
        {"truncated_tokens", st.truncated_tokens}, {"dropped_documents", st.dropped_documents},
        {"split_documents", st.split_documents}, {"run_id", output.run_id()}};
    return m.dump(2);
  };
  train.finish(manifest(train, "train"));
  if (val) val->finish(manifest(*val, "val"));
  const nlohmann::ordered_json summary = summary_json(st, train, val, secs, out_dir);
  output.commit(val ? std::vector<std::string>{"train", "val"} : std::vector<std::string>{"train"}, summary.dump());
  std::cout << summary.dump() << std::endl;
  return 0;
}

}  // namespace llamaft
