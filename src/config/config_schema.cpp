// Every configuration key llamaft accepts, documented where it is defined.
// Sections: [model] [data] [init] [eval] [generate] [tracker] [runtime].
#include "config/config.hpp"

namespace llamaft {

namespace {
KeySpec key(std::string k, KeyType t, std::string def, std::string help) {
  KeySpec s;
  s.key = std::move(k);
  s.type = t;
  s.default_value = std::move(def);
  s.help = std::move(help);
  return s;
}
KeySpec int_key(std::string k, std::string def, std::string help, double min, double max = 1e300) {
  KeySpec s = key(std::move(k), KeyType::kInt, std::move(def), std::move(help));
  s.min = min;
  s.max = max;
  return s;
}
KeySpec float_key(std::string k, std::string def, std::string help, double min, double max = 1e300) {
  KeySpec s = key(std::move(k), KeyType::kFloat, std::move(def), std::move(help));
  s.min = min;
  s.max = max;
  return s;
}
KeySpec choice_key(std::string k, std::string def, std::string help, std::vector<std::string> choices) {
  KeySpec s = key(std::move(k), KeyType::kChoice, std::move(def), std::move(help));
  s.choices = std::move(choices);
  return s;
}

void add_model_keys(ConfigSchema& s) {
  s.add(key("model.path", KeyType::kString, "", "Hugging Face model directory (config.json + safetensors)"));
  s.add(key("model.adapter", KeyType::kString, "", "a PEFT LoRA adapter folder applied on top (eval, generate, merge)"));
  s.add(key("model.tokenizer", KeyType::kString, "",
            "tokenizer file: tokenizer.model (SentencePiece or tiktoken ranks) or tokenizer.json (default: the one "
            "next to the model); its folder's chat template (tokenizer_config.json or chat_template.jinja) is the "
            "model's own"));
}

void add_data_keys(ConfigSchema& s) {
  s.add(key("data.path", KeyType::kString, "", "dataset file (JSONL with input_ids and optional labels)"));
  s.add(choice_key("data.format", "auto", "dataset format: tokens (JSONL), prepared (a `llamaft prepare` split "
                   "folder), auto (prepared when data.path is a folder)", {"auto", "tokens", "prepared"}));
  s.add(key("data.val_path", KeyType::kString, "", "validation split (default: DIR/val next to a prepared DIR/train)"));
  s.add(int_key("data.seq_len", "256", "sequence length; longer rows are truncated (and counted)", 2, 1 << 20));
}

void add_init_keys(ConfigSchema& s) {
  s.add(key("init.preset", KeyType::kString, "", "model shape: tiny, tiny-tied, small, medium, llama3.2-1b, llama3.2-3b, llama3-8b, llama3-70b"));
  s.add(int_key("init.seed", "0", "random seed for the initial weights", 0));
  s.add(key("init.output", KeyType::kString, "", "output directory for the new model"));
  s.add(choice_key("init.dtype", "float32", "dtype of the written safetensors (float32|fp32, bfloat16|bf16)",
                   {"float32", "bfloat16"}));
  s.add(key("init.max_shard_size", KeyType::kString, "0",
            "largest safetensors file init and merge write, as save_pretrained's max_shard_size (5GB = 5e9 bytes, "
            "4GiB = 2^32); larger models become model-0000K-of-0000N.safetensors with model.safetensors.index.json. "
            "0: one model.safetensors"));
  s.add(key("init.force", KeyType::kBool, "false",
            "init and merge: replace an existing, non-empty output folder (never the base model's own folder)"));
}

void add_eval_keys(ConfigSchema& s) {
  s.add(int_key("eval.batch_size", "8", "rows per forward pass", 1, 1 << 20));
  s.add(choice_key("eval.dtype", "fp32",
                   "compute dtype of eval and generate (--dtype): bf16 rounds the loaded weights to bf16 and "
                   "computes as train.param_dtype = bf16 does (bf16 activations, bf16 GEMMs with fp32 "
                   "accumulation); train takes train.param_dtype instead",
                   {"fp32", "bf16"}));
  s.add(key("eval.task", KeyType::kString, "",
            "an lm-evaluation-harness task: its YAML config (dataset_path: json) or JSONL rows {context, choices, "
            "gold} / {text}; eval scores it as lm_eval's hf model does (acc, acc_norm, perplexities) under mpirun "
            "with the model sharded"));
  s.add(key("eval.output_items", KeyType::kString, "", "eval --task: per-item loglikelihoods and scores (JSONL)"));
  s.add(int_key("eval.limit", "0", "eval --task and train.eval_task: the task's first N docs (0: all; lm_eval's --limit)", 0));
  s.add(int_key("eval.max_length", "0",
                "eval --task and train.eval_task: lm_eval's max_length, where requests are cut from the left and "
                "rolling windows end (0: the model's max_position_embeddings, as lm_eval's hf model)", 0));
}

void add_generate_keys(ConfigSchema& s) {
  s.add(key("generate.prompt", KeyType::kString, "", "prompt text (needs a tokenizer)"));
  s.add(key("generate.prompt_ids", KeyType::kString, "", "prompt as comma-separated token ids"));
  s.add(int_key("generate.max_new_tokens", "64", "tokens to generate at most", 1, 1 << 20));
  s.add(float_key("generate.temperature", "0", "sampling temperature; 0 means greedy", 0, 100));
  s.add(float_key("generate.top_p", "1", "nucleus sampling threshold", 1e-6, 1));
  s.add(int_key("generate.seed", "0", "sampling seed", 0));
  s.add(key("generate.json", KeyType::kBool, "false", "print one JSON line instead of text"));
  s.add(choice_key("generate.template", "auto",
                   "chat template for --prompt: auto (the model's own when it has one, else none), model (its own, "
                   "required), chatml, llama2, llama3, llama3.1, alpaca (the prompt `prepare` trains by default), none",
                   {"auto", "model", "chatml", "llama2", "llama3", "llama3.1", "alpaca", "none"}));
  s.add(key("generate.system", KeyType::kString, "", "system message (with a chat template)"));
  s.add(key("generate.stop_ids", KeyType::kString, "", "extra stop token ids, comma-separated"));
  s.add(key("generate.stop_at_eos", KeyType::kBool, "true", "stop at the model's EOS token(s)"));
}

void add_data_order_keys(ConfigSchema& s) {
  s.add(key("data.shuffle", KeyType::kBool, "false",
            "false: step s reads rows s*G..(s+1)*G-1 in file order; true: a seeded permutation per epoch"));
}

void add_train_keys(ConfigSchema& s) {
  s.add(int_key("train.global_batch_size", "8", "rows per optimizer step, over all ranks (Megatron's G)", 1));
  s.add(int_key("train.micro_batch_size", "1", "rows per forward/backward on one rank", 1));
  s.add(int_key("train.steps", "10", "optimizer steps to run", 1));
  s.add(float_key("train.epochs", "0", "passes over the training rows in place of train.steps: steps = "
                  "ceil(epochs x rows / train.global_batch_size) (0: use train.steps)", 0, 1e6));
  s.add(float_key("train.lr", "1e-4", "peak learning rate", 0, 10));
  s.add(float_key("train.min_lr", "0", "learning rate at the end of a linear/cosine decay", 0, 10));
  s.add(choice_key("train.lr_schedule", "constant", "learning-rate schedule after warmup",
                   {"constant", "linear", "cosine"}));
  s.add(int_key("train.warmup_steps", "0", "linear warmup steps (HF convention: step s runs at lr*s/warmup)", 0));
  s.add(float_key("train.weight_decay", "0", "AdamW decoupled weight decay (applied to every parameter)", 0, 10));
  s.add(float_key("train.beta1", "0.9", "AdamW beta1", 0, 0.999999));
  s.add(float_key("train.beta2", "0.999", "AdamW beta2", 0, 0.99999999));
  s.add(float_key("train.eps", "1e-8", "AdamW epsilon (added after the square root; must be positive)", 0, 1));
  s.add(float_key("train.max_grad_norm", "1.0", "clip the global gradient norm to this; 0 disables", 0));
  s.add(int_key("train.seed", "0", "seed for data shuffling", 0));
  s.add(choice_key("train.param_dtype", "fp32",
                   "dtype of the gathered parameters, as torch FSDP's MixedPrecision param_dtype: bf16 rounds each "
                   "unit's master shard to bf16 before its all-gather (half the bytes) and computes in bf16 on both "
                   "backends: bf16 weights and stored activations, bf16 GEMMs with fp32 accumulation, every other "
                   "op in fp32 rounding what it stores. Master weights, gradients and AdamW stay fp32",
                   {"fp32", "bf16"}));
  s.add(int_key("train.max_nonfinite_skips", "3",
                "consecutive steps with a NaN/inf loss or gradient to skip before stopping (exit 3)", 0));
  s.add(int_key("train.exit_after_steps", "0",
                "stop this run once the global step reaches N, after a checkpoint (0: off); resume continues", 0));
  s.add(key("train.profile", KeyType::kBool, "false",
            "time every backend op by family (GEMMs, attention, norms, RoPE, SwiGLU, casts, loss head, AdamW, "
            "copies) with its bytes and FLOPs; the table is printed at the end and written to OUTPUT/profile.json "
            "(cpu backend; on cuda the step counters are in metrics.jsonl)"));
  s.add(int_key("train.eval_every", "0", "validation loss every N steps into metrics.jsonl (0: off)", 0));
  s.add(int_key("train.eval_rows", "0", "validation rows per evaluation (0: the whole split)", 0));
  s.add(key("train.eval_task", KeyType::kString, "",
            "an lm-evaluation-harness task (as eval --task) scored every train.eval_every steps; its metrics go to "
            "metrics.jsonl (task_acc, task_acc_norm, ...) and the tracker"));
  s.add(int_key("train.sample_every", "0", "greedy samples for train.sample_prompts every N steps into metrics.jsonl (0: off)", 0));
  s.add(key("train.sample_prompts", KeyType::kString, "",
            "prompts for the in-training samples: text, rendered as a user turn through train.sample_template "
            "('Reverse: 1 2 3; Say hi': ';' separates prompts, '\\;' is a literal ';'; or a JSON list of strings), or "
            "token ids as given ('1,12,13;1,15,16')"));
  s.add(choice_key("train.sample_template", "auto",
                   "chat template for text sample prompts (as generate --template): auto (the model's own when it "
                   "has one, else the raw text after BOS), model, chatml, llama2, llama3, llama3.1, alpaca, none",
                   {"auto", "model", "chatml", "llama2", "llama3", "llama3.1", "alpaca", "none"}));
  s.add(int_key("train.sample_max_new_tokens", "16", "tokens generated per sample", 1, 4096));
  s.add(int_key("train.log_every", "1", "write a metrics line every N steps", 1));
}

void add_finetune_keys(ConfigSchema& s) {
  s.add(choice_key("finetune.method", "full",
                   "full: every weight trains; lora: low-rank adapters on a frozen base; qlora: lora over an NF4 "
                   "base (bitsandbytes' blocks of 64 with double quantization)",
                   {"full", "lora", "qlora"}));
  s.add(choice_key("quant.base", "none",
                   "storage of the frozen base's linear weights under lora: none (the compute dtype: fp32, or bf16 "
                   "with train.param_dtype = bf16), bf16, int8 (blockwise absmax, blocks of 64) or nf4; qlora always "
                   "uses nf4",
                   {"none", "bf16", "int8", "nf4"}));
  s.add(int_key("lora.r", "8", "LoRA rank", 1, 4096));
  s.add(float_key("lora.alpha", "16", "LoRA alpha (scale alpha/r, or alpha/sqrt(r) with rslora)", 0));
  s.add(key("quant.double_quant", KeyType::kBool, "true",
            "nf4: quantize the block absmax to 8 bits in groups of 256 (QLoRA's double quantization, "
            "bnb_4bit_use_double_quant); false keeps one fp32 absmax per block of 64"));
  s.add(float_key("lora.dropout", "0", "dropout on each adapter's input during training, as PEFT's lora_dropout", 0, 1));
  s.add(key("lora.targets", KeyType::kString, "all",
            "comma-separated modules: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj (or all)"));
  s.add(key("lora.rslora", KeyType::kBool, "false", "rank-stabilised scaling alpha/sqrt(r)"));
  s.add(key("lora.init_from", KeyType::kString, "", "start from this PEFT adapter folder instead of fresh adapters"));
}

void add_fsdp_keys(ConfigSchema& s) {
  s.add(choice_key("fsdp.strategy", "full_shard", "sharding strategy",
                   {"full_shard", "shard_grad_op", "no_shard", "hybrid_shard"}));
  s.add(int_key("fsdp.shard_group_size", "0", "hybrid_shard: ranks per shard group (0: ranks per node)", 0));
  s.add(key("fsdp.activation_checkpointing", KeyType::kBool, "false", "recompute each block in backward"));
  s.add(choice_key("fsdp.reduce_dtype", "fp32",
                   "dtype of the gradient reduce-scatter, as torch FSDP's MixedPrecision reduce_dtype: bf16 rounds "
                   "each unit's fp32 gradient to bf16 before it (half the bytes) and sums in bf16, rounding every "
                   "partial sum; the shards, the replicas' all-reduce and AdamW stay fp32",
                   {"fp32", "bf16"}));
}

void add_output_keys(ConfigSchema& s) {
  s.add(key("output.dir", KeyType::kString, "", "run folder: metrics.jsonl, config, exported model"));
  s.add(key("output.export", KeyType::kBool, "true", "write the trained model to output.dir/model at the end"));
  s.add(choice_key("output.export_dtype", "float32", "dtype of the exported safetensors", {"float32", "bfloat16"}));
  s.add(choice_key("output.gguf", "none",
                   "also write output.dir/model.gguf at the end (f32, f16, bf16, q8_0, q4_0, q4_k_m; as `llamaft export`): "
                   "the exported model, or under LoRA the base with the adapter folded in; the tokenizer comes from "
                   "model.tokenizer or the base model's folder",
                   {"none", "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"}));
  s.add(key("output.tensorboard", KeyType::kBool, "false",
            "also write TensorBoard event files to output.dir/tensorboard (metrics.jsonl stays the source of truth)"));
  s.add(key("output.progress", KeyType::kBool, "true",
            "rank 0's progress (step/total, loss, lr, tokens/s, MFU, elapsed, ETA, peak memory): a line rewritten in "
            "place on a terminal; otherwise (a Slurm .out, a file) one line at the first step, then every "
            "output.log_every_steps steps or 60 s, whichever comes first"));
  s.add(int_key("output.log_every_steps", "10", "steps between progress lines when stderr is not a terminal", 1));
  s.add(float_key("output.peak_tflops", "0",
                  "the device's peak dense TFLOP/s per rank, for MFU (a datasheet figure for the GEMM dtype); 0: a "
                  "GEMM measured on every rank at start-up (SGEMM, or bf16 with train.param_dtype = bf16)", 0));
  s.add(choice_key("output.tracker", "none",
                   "also log the run to Weights & Biases or MLflow: rank 0 starts scripts/llamaft_track.py, which "
                   "tails metrics.jsonl with the official Python client (see [tracker]); never fatal",
                   {"none", "wandb", "mlflow"}));
}

void add_tracker_keys(ConfigSchema& s) {
  s.add(key("tracker.project", KeyType::kString, "llamaft", "W&B project, or MLflow experiment name"));
  s.add(key("tracker.run_name", KeyType::kString, "", "display name of the run (default: the output.dir folder name)"));
  s.add(key("tracker.entity", KeyType::kString, "", "W&B entity (user or team; default: the API key's)"));
  s.add(choice_key("tracker.mode", "offline",
                   "W&B: offline writes output.dir/wandb/offline-run-* for `wandb sync` from a login node; online "
                   "needs the network on the node of rank 0",
                   {"offline", "online"}));
  s.add(key("tracker.uri", KeyType::kString, "",
            "MLflow tracking URI: http(s)://server, sqlite:///path.db, file:/path (default: MLFLOW_TRACKING_URI, "
            "else sqlite:///output.dir/tracker/mlflow.db)"));
  s.add(key("tracker.python", KeyType::kString, "python3",
            "Python that runs the follower and has the wandb or mlflow client (e.g. .venv-tracker/bin/python from "
            "scripts/setup_tracker_env.sh)"));
  s.add(key("tracker.script", KeyType::kString, "", "the follower script (default: scripts/llamaft_track.py of this llamaft)"));
  s.add(key("tracker.log_artifact", KeyType::kBool, "false",
            "at the end, log output.dir/adapter or output.dir/model as an artifact (W&B copies it into its run folder)"));
  s.add(float_key("tracker.finish_timeout_s", "60",
                  "at exit, seconds rank 0 waits for the follower to log the last lines; past that it goes on alone", 0));
}

void add_checkpoint_keys(ConfigSchema& s) {
  s.add(key("checkpoint.dir", KeyType::kString, "", "checkpoint folder (default: output.dir/checkpoints)"));
  s.add(int_key("checkpoint.every_steps", "0", "save every N steps (0: only at the end and on signals)", 0));
  s.add(float_key("checkpoint.every_minutes", "0", "save when this many minutes passed since the last save (0: off)", 0));
  s.add(int_key("checkpoint.keep_last", "2", "committed checkpoints to keep (at least 2)", 2));
  s.add(key("checkpoint.resume", KeyType::kString, "auto",
            "auto (newest valid checkpoint in checkpoint.dir, if any), none, or a step folder"));
  s.add(key("checkpoint.signals", KeyType::kString, "SIGTERM,SIGUSR1,SIGUSR2",
            "signals that mean: checkpoint at the next step boundary and exit 85"));
  s.add(int_key("checkpoint.grace_seconds", "0", "after a signal, exit 87 if the save takes longer (0: no limit)", 0));
  s.add(float_key("checkpoint.walltime_margin_s", "60",
                  "under Slurm, save and exit 85 (requeue) once the job's end (SLURM_JOB_END_TIME, else scontrol's "
                  "EndTime) is nearer than a save + a step + this margin, in seconds; 0: off", 0, 86400));
  s.add(key("checkpoint.at_end", KeyType::kBool, "true", "save a checkpoint when training finishes"));
  s.add(key("checkpoint.async", KeyType::kBool, "true",
            "periodic saves snapshot the state into host memory at the step boundary and write it in the background "
            "(at most one in flight; `plan` counts the staging); false writes them with training stopped"));
  s.add(choice_key("checkpoint.on_error", "fail",
                   "a periodic save that fails (a full disk, an I/O error): fail (exit 4) or warn (report it once, "
                   "keep the previous checkpoint and go on training); saves at the end, on a signal and at "
                   "train.exit_after_steps always fail",
                   {"fail", "warn"}));
  s.add(key("checkpoint.allow_data_change", KeyType::kBool, "false",
            "resume even though data.path or data.seq_len differ from the checkpoint's (the data position, a row "
            "index, then points into the new data); the banner says so"));
  s.add(key("checkpoint.allow_lora_change", KeyType::kBool, "false",
            "resume even though lora.targets (narrowed only), lora.alpha, lora.rslora or quant.base differ from "
            "the checkpoint's; a narrowed target list drops the removed modules' adapters. lora.r and added "
            "targets are always refused (the checkpoint has no adapters for them)"));
}

void add_prepare_keys(ConfigSchema& s) {
  KeySpec inputs = key("prepare.input", KeyType::kString, "", "input files (JSONL, a JSON array, or .txt for text)");
  inputs.list = true;
  s.add(inputs);
  s.add(choice_key("prepare.format", "alpaca",
                   "input format: alpaca, chat (messages with role/content), sharegpt (conversations with "
                   "from/value), text, tokens, csv or tsv (a header row; see prepare.columns)",
                   {"alpaca", "chat", "sharegpt", "text", "tokens", "csv", "tsv"}));
  s.add(key("prepare.columns", KeyType::kString, "",
            "csv/tsv: which column is which field, 'instruction=Q,input=CTX,output=A' (Alpaca rows) or 'text=BODY' "
            "(documents); empty: the header's own instruction/input/output or text columns"));
  s.add(choice_key("prepare.template", "auto",
                   "prompt template: auto (the chat template next to the tokenizer or model when there is one, else "
                   "none), model (that template, required), chatml, llama2, llama3, llama3.1, alpaca, none (the "
                   "Alpaca prompt for Alpaca rows, the raw turns for chats)",
                   {"auto", "model", "chatml", "llama2", "llama3", "llama3.1", "alpaca", "none"}));
  s.add(key("prepare.output", KeyType::kString, "", "output folder (train/ and val/ splits)"));
  s.add(int_key("prepare.seq_len", "2048", "row length; longer documents are truncated (counted)", 2, 1 << 20));
  s.add(key("prepare.pack", KeyType::kBool, "false", "pack documents into seq_len rows (attention stays per document)"));
  s.add(float_key("prepare.val_fraction", "0", "fraction of documents held out in DIR/val", 0, 0.9));
  s.add(key("prepare.train_on_prompt", KeyType::kBool, "false", "also train on prompt/system/user tokens"));
  s.add(float_key("prepare.max_bad_fraction", "0.01", "fail when more than this fraction of rows is bad", 0, 1));
  s.add(key("tokenize.input", KeyType::kString, "", "text file to encode, one document per line"));
  s.add(key("tokenize.json_lines", KeyType::kBool, "false", "each input line is a JSON string"));
  s.add(key("tokenize.bos", KeyType::kBool, "false", "prepend the BOS id"));
  s.add(key("tokenize.decode", KeyType::kBool, "false", "also print the decoded text"));
  s.add(key("tokenize.chat", KeyType::kBool, "false",
            "each input line is a JSON chat ({\"messages\": [...]} or a list of {role, content}); prints the ids "
            "and labels the chat template renders"));
  s.add(choice_key("tokenize.template", "auto",
                   "chat template for --chat (as prepare --template): auto, model, chatml, llama2, llama3, llama3.1, "
                   "alpaca, none",
                   {"auto", "model", "chatml", "llama2", "llama3", "llama3.1", "alpaca", "none"}));
  s.add(key("tokenize.add_generation_prompt", KeyType::kBool, "false",
            "with --chat: end with the open assistant turn (transformers' add_generation_prompt=True)"));
}

void add_convert_keys(ConfigSchema& s) {
  s.add(key("convert.gguf", KeyType::kString, "", "GGUF file that `llamaft convert` turns into a Hugging Face folder "
            "(written to init.output in init.dtype; init.force replaces an existing folder)"));
}

void add_export_keys(ConfigSchema& s) {
  s.add(choice_key("export.format", "gguf", "file format `llamaft export` writes (gguf: llama.cpp, Ollama, LM Studio)",
                   {"gguf"}));
  s.add(choice_key("export.outtype", "f16",
                   "GGUF tensor type: f32, f16, bf16, q8_0 (as convert_hf_to_gguf.py --outtype), q4_0 or q4_k_m "
                   "(as llama-quantize of the f32 file); norms stay f32",
                   {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"}));
  s.add(key("export.output", KeyType::kString, "", "the .gguf file `llamaft export` writes"));
  s.add(key("export.name", KeyType::kString, "", "general.name in the GGUF (default: the model folder's name)"));
  s.add(key("export.force", KeyType::kBool, "false", "replace an existing GGUF file"));
}

void add_plan_keys(ConfigSchema& s) {
  s.add(int_key("plan.np", "1", "ranks to plan for", 1, 1 << 24));
  s.add(key("plan.preset", KeyType::kString, "", "plan a preset shape instead of model.path"));
  s.add(int_key("plan.ranks_per_node", "8",
                "ranks (GPUs) per node of the planned job: hybrid_shard's default shard group, as train takes it "
                "from MPI's shared-memory split", 1, 1 << 20));
  s.add(key("plan.json", KeyType::kBool, "false", "print one JSON line of bytes per strategy"));
  s.add(key("plan.all", KeyType::kBool, "false", "every strategy, even when the config names fsdp.strategy"));
  s.add(float_key("plan.gpu_gib", "80", "runtime.backend = cuda: the GPU's memory, for the CUDA reserve", 1, 1 << 20));
}

void add_runtime_keys(ConfigSchema& s) {
  s.add(choice_key("runtime.backend", "cpu", "compute backend", {"cpu", "cuda"}));
  s.add(key("runtime.share_gpus", KeyType::kBool, "false",
            "cuda: allow more ranks on a host than GPUs visible (ranks then share GPUs); false refuses it"));
  s.add(float_key("runtime.comm_timeout_s", "600",
                  "seconds a collective (NCCL on cuda, MPI on every backend) may make no progress before the job "
                  "ends with exit 5 and a message naming the rank, host and collective (longer than any legitimate "
                  "wait, e.g. the slowest rank's checkpoint write)",
                  1));
  s.add(int_key("runtime.threads", "0", "CPU threads per process (0: OMP_NUM_THREADS or all cores)", 0, 4096));
}

ConfigSchema build() {
  ConfigSchema s;
  add_model_keys(s);
  add_data_keys(s);
  add_init_keys(s);
  add_eval_keys(s);
  add_generate_keys(s);
  add_data_order_keys(s);
  add_train_keys(s);
  add_finetune_keys(s);
  add_fsdp_keys(s);
  add_output_keys(s);
  add_tracker_keys(s);
  add_checkpoint_keys(s);
  add_prepare_keys(s);
  add_plan_keys(s);
  add_convert_keys(s);
  add_export_keys(s);
  add_runtime_keys(s);
  return s;
}
}  // namespace

const ConfigSchema& global_schema() {
  static const ConfigSchema schema = build();
  return schema;
}

}  // namespace llamaft
