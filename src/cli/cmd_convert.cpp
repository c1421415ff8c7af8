// `llamaft convert --gguf FILE --output DIR [--dtype fp32|bf16] [--force]`:
// a llama-architecture GGUF -> a Hugging Face folder (config.json,
// model.safetensors, tokenizer.json, tokenizer_config.json,
// generation_config.json). The folder is written whole under DIR.partial
// (every file fsynced) and renamed into place, so DIR is either absent, the
// previous folder, or complete; an existing DIR is replaced only with
// --force. Weights go through the exports' own writer (save_hf_model), one
// tensor at a time.
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "core/error.hpp"
#include "core/util.hpp"
#include "data/gguf_tokenizer.hpp"
#include "io/gguf.hpp"
#include "model/gguf_import.hpp"
#include "model/hf_model.hpp"

namespace llamaft {

namespace fs = std::filesystem;

int run_convert(const Config& cfg) {
  apply_runtime_settings(cfg);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string gguf_path = cfg.get_string("convert.gguf");
  std::string out = cfg.get_string("init.output");
  while (out.size() > 1 && out.back() == '/') out.pop_back();
  const bool force = cfg.get_bool("init.force");
  const bool bf16 = cfg.get_string("init.dtype") == "bfloat16";

  std::error_code ec;
  const fs::file_status st = fs::symlink_status(out, ec);
  if (fs::exists(st)) {
    LLAMAFT_REQUIRE(fs::is_directory(st), "convert: '", out, "' exists and is not a folder; refusing to replace it");
    LLAMAFT_REQUIRE(force || fs::is_empty(out, ec), "convert: '", out, "' exists and is not empty; pass --force to replace it");
  }

  {  // --force must never delete the input: refuse a GGUF inside the output folder
    const fs::path in_abs = fs::weakly_canonical(gguf_path, ec), out_abs = fs::weakly_canonical(out, ec);
    const std::string in_s = in_abs.string(), out_s = out_abs.string() + "/";
    LLAMAFT_REQUIRE(in_s.compare(0, out_s.size(), out_s) != 0, "convert: the GGUF '", gguf_path,
                    "' is inside the output folder '", out, "'; choose another --output");
  }
  // Everything is read and checked before anything is written.
  io::GgufFile gguf(gguf_path);
  const LlamaConfig mc = llama_config_from_gguf(gguf);
  const ParamLayout layout(mc);
  check_gguf_tensors_mapped(gguf, layout);
  HfTokenizerFiles tok;
  try {
    tok = hf_tokenizer_files_from_gguf(gguf, mc.max_position_embeddings);
  } catch (const nlohmann::json::exception& e) {
    LLAMAFT_FAIL(gguf_path, ": the tokenizer metadata cannot be written as JSON (", e.what(), ")");
  }

  const std::string partial = partial_path(out);
  fs::remove_all(partial, ec);  // left by an earlier, interrupted convert
  LLAMAFT_REQUIRE(!ec, "convert: cannot remove the stale '", partial, "': ", ec.message());
  try {
    make_directories(partial);
    write_file_durably(partial + "/tokenizer.json", tok.tokenizer_json);
    write_file_durably(partial + "/tokenizer_config.json", tok.tokenizer_config_json);
    write_file_durably(partial + "/generation_config.json", tok.generation_config_json);
    save_hf_model(partial, mc, layout, bf16,
                  [&](const TensorSlot& slot, float* dst) { gguf_slot_values(gguf, mc, slot, dst); });
    fsync_path(partial);
    // Replace: the old folder steps aside, the new one takes its name, then
    // the old one goes.
    const std::string old = out + ".replaced";
    if (fs::exists(out)) {
      fs::remove_all(old, ec);
      fs::rename(out, old);
    }
    fs::rename(partial, out);
    fsync_path(fs::absolute(out).parent_path().string());
    if (fs::exists(old)) fs::remove_all(old);
  } catch (const fs::filesystem_error& e) {
    fs::remove_all(partial, ec);
    LLAMAFT_FAIL("convert: writing '", out, "' failed: ", e.what());
  } catch (...) {
    fs::remove_all(partial, ec);
    throw;
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  int64_t types[64] = {};
  for (const auto& t : gguf.tensors()) ++types[t.type < 64 ? t.type : 63];
  std::string mix;
  for (uint32_t t = 0; t < 64; ++t)
    if (types[t]) mix += (mix.empty() ? "" : ", ") + std::to_string(types[t]) + " " + io::ggml_type_name(t);
  std::cout << "convert: " << gguf_path << " (GGUF v" << gguf.version() << ", " << mc.num_hidden_layers
            << " layers, " << mc.num_parameters() << " parameters; tensors: " << mix << ") -> " << out << " ("
            << (bf16 ? "bf16" : "fp32") << ", " << (mc.tie_word_embeddings ? "tied" : "untied") << " embeddings) in "
            << secs << " s\n";
  return 0;
}

}  // namespace llamaft
