// ref_dump: runs llamaft's forward and backward over a JSONL batch and writes
// logits, loss and every parameter gradient to a safetensors file, for
// check_model.py to compare against the PyTorch oracle.
// Usage: ref_dump --model DIR --data FILE --seq-len T --output OUT.safetensors [--adapter DIR]
#include <cstring>
#include <iostream>
#include <string>

#include "backend/backend.hpp"
#include "core/error.hpp"
#include "data/token_dataset.hpp"
#include "io/safetensors.hpp"
#include "model/device_batch.hpp"
#include "model/hf_model.hpp"
#include "model/lora.hpp"

using namespace llamaft;

int main(int argc, char** argv) {
  std::string model_dir, data, output, adapter;
  int seq_len = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--model") model_dir = v;
    else if (k == "--data") data = v;
    else if (k == "--output") output = v;
    else if (k == "--seq-len") seq_len = std::stoi(v);
    else if (k == "--adapter") adapter = v;
  }
  if (model_dir.empty() || data.empty() || output.empty() || seq_len <= 0) {
    std::cerr << "usage: ref_dump --model DIR --data FILE --seq-len T --output OUT.safetensors\n";
    return 2;
  }
  try {
    auto be = make_cpu_backend();
    const LlamaConfig cfg = read_model_config(model_dir);
    ModelOptions opts;
    if (!adapter.empty()) opts.lora = read_adapter_config(adapter);
    LlamaModel model(cfg, *be, opts);
    ResidentParams params(*be, model.layout());
    load_hf_weights(model_dir, model.layout(), *be, params);
    if (!adapter.empty()) load_adapter(adapter, model.layout(), *be, params);
    const TokenDataset ds = load_token_jsonl(data, seq_len, cfg.vocab_size);
    std::vector<const TokenRow*> rows;
    for (const auto& r : ds.rows) rows.push_back(&r);
    const HostBatch hb = make_batch(rows, seq_len);
    DeviceBatch dev(*be);
    const Batch b = dev.upload(hb);

    std::vector<float> logits(static_cast<size_t>(hb.batch) * seq_len * cfg.vocab_size);
    model.forward_logits(b, params, logits.data());
    const float scale = 1.f / static_cast<float>(hb.target_tokens);
    const LossSum loss = model.forward_backward(b, params, scale);
    const float mean_loss = static_cast<float>(loss.loss_sum / static_cast<double>(loss.tokens));

    io::SafetensorsWriter w;
    w.add("logits", io::DType::F32, {hb.batch, seq_len, cfg.vocab_size});
    w.add("loss", io::DType::F32, {1});
    const std::vector<float> inv_freq = cfg.rope_inv_freq();
    w.add("rope_inv_freq", io::DType::F32, {static_cast<int64_t>(inv_freq.size())});
    const auto& layout = model.layout();
    // Gradients of the trainable parameters (every weight, or the adapters).
    for (const auto& u : layout.units())
      if (u.trainable)
        for (const auto& t : u.tensors) w.add("grad." + t.hf_name, io::DType::F32, t.shape);
    w.create(output);
    io::SafetensorsOutput out(output);
    w.write_f32(out, "logits", 0, static_cast<int64_t>(logits.size()), logits.data());
    w.write_f32(out, "loss", 0, 1, &mean_loss);
    w.write_f32(out, "rope_inv_freq", 0, static_cast<int64_t>(inv_freq.size()), inv_freq.data());
    for (int u = 0; u < layout.num_units(); ++u)
      if (layout.units()[u].trainable)
        for (const auto& t : layout.units()[u].tensors)
        w.write_f32(out, "grad." + t.hf_name, 0, t.numel(), params.grad_data(u) + t.offset);
    out.sync();
    std::cout << "ref_dump: loss " << mean_loss << " over " << loss.tokens << " tokens\n";
  } catch (const Error& e) {
    std::cerr << "ref_dump: error: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
