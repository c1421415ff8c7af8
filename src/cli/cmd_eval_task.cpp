// `llamaft eval --task FILE`: an lm-evaluation-harness task (train/task_eval)
// on every rank of the launch (SPMD): the base is loaded as FSDP shards
// (full_shard over the world: each rank reads and holds only its shard, every
// unit frozen, so no gradient or optimizer state exists), units are gathered
// per forward pass, the task's batches are dealt round-robin to the ranks
// and the scores reduced. One JSON line on rank 0's stdout; per-item
// loglikelihoods in --output-items FILE.jsonl.
#include <fstream>
#include <iostream>

#include "cli/command.hpp"
#include "cli/runtime.hpp"
#include "comm/communicator.hpp"
#include "comm/registry.hpp"
#include "comm/watchdog.hpp"
#include "core/error.hpp"
#include "data/lm_requests.hpp"
#include "data/lm_task.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"
#include "parallel/fsdp.hpp"
#include "parallel/fsdp_io.hpp"
#include "train/task_eval.hpp"

namespace llamaft {

namespace {

// The layout FSDP holds for evaluation: the model's, with every unit frozen
// (no gradient or optimizer state; quantized bases are stored quantized).
ParamLayout frozen_layout(const ParamLayout& layout) {
  ParamLayout frozen = layout;
  frozen.freeze_all();
  return frozen;
}

void write_items(const std::string& path, const TaskResult& r) {
  const std::string tmp = path + ".partial";
  {
    std::ofstream out(tmp);
    LLAMAFT_REQUIRE(out.good(), "eval: cannot write '", tmp, "'");
    for (const auto& j : r.per_item) out << j.dump() << "\n";
    out.flush();
    LLAMAFT_REQUIRE(out.good(), "eval: writing '", tmp, "' failed");
  }
  LLAMAFT_REQUIRE(std::rename(tmp.c_str(), path.c_str()) == 0, "eval: cannot rename '", tmp, "' to '", path, "'");
}

}  // namespace

int run_eval_task(const Config& cfg) {
  if (!mpi_active()) init_mpi(nullptr, nullptr);
  auto world = make_mpi_world_comm();
  const bool lead = world->rank() == 0;
  start_collective_watchdog(cfg.get_float("runtime.comm_timeout_s"), world->rank());
  struct WatchdogStop {
    ~WatchdogStop() { stop_collective_watchdog(); }
  } watchdog_stop;
  apply_runtime_settings(cfg);
  const std::string model_dir = cfg.get_string("model.path"), adapter_dir = cfg.get_string("model.adapter");
  const LlamaConfig mc = read_model_config(model_dir);
  const auto tok = load_tokenizer(cfg.get_string("model.tokenizer"), model_dir);
  LLAMAFT_REQUIRE(tok, "eval --task: ", model_dir, " has no tokenizer (tokenizer.json or tokenizer.model); "
                  "give one with --tokenizer");
  const HfEncoding enc = read_hf_encoding(model_dir, *tok);
  const TaskEvalSettings scoring = TaskEvalSettings::from_config(cfg);
  const int max_length = scoring.max_length_for(mc);
  TaskEvaluator ev(load_lm_task(cfg.get_string("eval.task"), scoring.limit), *tok, enc, max_length);
  const bool bf16 = cfg.get_string("eval.dtype") == "bf16";
  const quant::Kind base_quant = eval_quant_from_config(cfg);

  auto be = make_backend(cfg);
  ModelOptions opts;
  if (!adapter_dir.empty()) opts.lora = read_adapter_config(adapter_dir);
  LLAMAFT_REQUIRE(!bf16 || be->has_bf16_storage(), "eval --dtype bf16: the ", be->name(),
                  " backend has no bf16 storage");
  opts.bf16_storage = bf16;
  LlamaModel model(mc, *be, opts);
  const ParamLayout layout = frozen_layout(model.layout());
  auto device_comm = make_device_communicator(*be, *world, cfg.get_float("runtime.comm_timeout_s"));
  Communicator& comm = device_comm ? *device_comm : *world;
  FsdpOptions options;
  options.base_quant = base_quant;
  options.bf16_params = bf16;
  Fsdp fsdp(layout, *be, comm, options);
  load_sharded(model_dir, fsdp, *be);
  if (!adapter_dir.empty()) load_adapter_sharded(adapter_dir, fsdp, *be);
  if (lead) {
    std::cerr << "eval: task " << ev.task().name << " (" << task_output_name(ev.task().output) << ", "
              << ev.task().items.size() << " items, " << ev.num_requests() << " requests, from " << ev.task().source
              << (ev.task().split.empty() ? "" : " split " + ev.task().split) << "), max_length " << max_length
              << ", tokens as HF's encode: " << enc.describe() << "; " << world->size() << " rank(s), "
              << (bf16 ? "bf16" : "fp32") << (base_quant != quant::Kind::kNone
                                                  ? std::string(", base ") + quant::kind_name(base_quant)
                                                  : std::string())
              << (adapter_dir.empty() ? "" : ", adapter " + adapter_dir) << "\n";
    if (!mc.unused_keys.empty()) std::cerr << "eval: " << unused_keys_note(mc) << "\n";
  }
  DeviceBatch dev(*be);
  const TaskResult r = ev.run(model, fsdp, dev, static_cast<int>(cfg.get_int("eval.batch_size")), world.get());
  fsdp.end_backward();
  if (!lead) return 0;
  if (r.truncated)
    std::cerr << "eval: " << r.truncated << " requests were cut from the left at max_length " << max_length
              << " (as lm_eval does)\n";
  const std::string items_path = cfg.get_string("eval.output_items");
  if (!items_path.empty()) write_items(items_path, r);
  nlohmann::ordered_json j = r.summary();
  j["dtype"] = cfg.get_string("eval.dtype");
  j["world_size"] = world->size();
  std::cout << j.dump() << std::endl;
  return 0;
}

}  // namespace llamaft
