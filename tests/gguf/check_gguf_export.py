#!/usr/bin/env python3
"""`llamaft export --format gguf` on small models made here, against
independent readers and writers of the format:

1. `llamaft init --preset tiny` (Llama 3 shape: GQA, llama3 RoPE scaling,
   untied) with stories260K's SentencePiece tok512.model: every outtype
   (f32 f16 bf16 q8_0 q4_0 q4_k_m) is read by gguf-py; every tensor has
   llama.cpp's name, the loader's order, the type convert_hf_to_gguf.py /
   llama-quantize choose, and the bytes gguf-py's quantizers (or the numpy
   port of ggml's K-quant references, ggml_kquants_ref.py) write from the
   same fp32; rope_freqs.weight equals the converter's torch formula; the
   llama.* metadata and the SentencePiece vocabulary (pieces, scores, types,
   [PADi] beyond the tokenizer) are the converter's; transformers'
   load_gguf_checkpoint gives the source folder's logits (f32: 1e-6 of the
   largest logit; f16, bf16, q8_0: within the bound derived from each
   format's rounding, gguf_oracle.rounding_bound);
2. K-quant shapes (rows of 256): a model with hidden 256 and 8 layers,
   tied and untied, with edge-case rows (zeros, constants, a spike, values
   below GROUP_MAX_EPS, fp16-subnormal scales, ties): Q4_K, Q6_K, Q5_0,
   Q8_0, Q4_0 blocks bit-equal to the references, use_more_bits' layer
   pattern; an 80-layer GQA model gets LLM_TYPE_70B's Q5_K attn_v;
3. tokenizers: the Llama 2 tokenizer as Hugging Face ships it (tokenizer.json
   and tokenizer_config.json made by transformers from tokenizer.model)
   gives the tokenizer metadata of llama.cpp's ggml-vocab-llama-spm.gguf;
   Llama 3's tiktoken ranks, as a tokenizer.json (transformers'
   TikTokenConverter plus Meta's BOS template) whose pre-tokenizer hash is
   the converter's `llama-bpe`, and as the bare tokenizer.model, give the
   same tokens, merges and types;
4. refusals (exit 2, nothing left behind) and atomicity; `output.gguf` at
   the end of full and LoRA training equals `llamaft export` of the run's
   outputs byte for byte (and, under LoRA, export of `llamaft merge`'s
   folder).
Exit 77 without gguf-py, transformers or torch.
"""
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import numpy as np

# transformers builds the Llama 2 tokenizer.json through Debian's
# sentencepiece_model_pb2, generated for an older protobuf than the venv's:
# the pure-Python protobuf reads it (a one-off, small file).
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))

import gguf_oracle as O  # noqa: E402
import st_numpy  # noqa: E402

CHKTXT = ('\n \n\n \n\n\n \t \t\t \t\n  \n   \n    \n     \n\U0001f680 (normal) \U0001f636\u200d\U0001f32b\ufe0f '
          '(multiple emojis concatenated) \u2705 \U0001f999\U0001f999 3 33 333 3333 33333 333333 3333333 33333333 '
          '3.3 3..3 3...3 \u1780\u17b6\u1793\u17cb\u178f\u17c2\u1796\u17b7\u179f\u17c1\u179f\u17a2\u17b6\u1785'
          '\U0001f601 ?\u6211\u60f3\u5728apple\u5de5\u4f5c1314151\u5929\uff5e ------======= '
          '\u043d\u0435\u0449\u043e \u043d\u0430 \u0411\u044a\u043b\u0433\u0430\u0440\u0441\u043a\u0438 '
          '\'\'\'\'\'\'```````""""......!!!!!!?????? I\'ve been \'told he\'s there, \'RE you sure? \'M not sure '
          'I\'ll make it, \'D you like some tea? We\'Ve a\'lL')
# convert_hf_to_gguf.py's get_vocab_base_pre: sha256(str(tokenizer.encode(chktxt))) -> name
LLAMA_BPE_HASH = "0ef9807a4087ebef797fc749390439009c3b9eda9ad1a097abbe738f486c01e5"


def skip(msg):
    print(f"SKIP: {msg}")
    sys.exit(77)


def run(args, **kw):
    return subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def must(args, **kw):
    r = run(args, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, args))}: exit {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def export(a, model, out, outtype, *extra):
    t0 = time.time()
    must([a.llamaft, "export", "--format", "gguf", "--outtype", outtype, "--model", model, "--output", out, "--force",
          *extra])
    return time.time() - t0


def expect_refusal(args, needle, what, code=2):
    r = run(args)
    assert r.returncode == code, f"{what}: exit {r.returncode}, expected {code}\n{r.stdout}\n{r.stderr}"
    assert needle.lower() in r.stderr.lower(), f"{what}: message lacks {needle!r}: {r.stderr.strip()}"
    print(f"  {what}: exit {code}, {r.stderr.strip().split('error: ', 1)[-1][:140]}")


def write_model(path, cfg, tensors):
    os.makedirs(path, exist_ok=True)
    json.dump(cfg, open(os.path.join(path, "config.json"), "w"), indent=2)
    st_numpy.save(os.path.join(path, "model.safetensors"), tensors)


def random_model(cfg, seed, edge_rows=False):
    rng = np.random.default_rng(seed)
    d, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    hd = cfg.get("head_dim") or d // cfg["num_attention_heads"]
    qd, kvd = cfg["num_attention_heads"] * hd, cfg["num_key_value_heads"] * hd
    t = {"model.embed_tokens.weight": rng.normal(0, 0.05, (v, d)), "model.norm.weight": 1 + rng.normal(0, 0.1, d)}
    if not cfg["tie_word_embeddings"]:
        t["lm_head.weight"] = rng.normal(0, 0.05, (v, d))
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        t[p + "input_layernorm.weight"] = 1 + rng.normal(0, 0.1, d)
        t[p + "post_attention_layernorm.weight"] = 1 + rng.normal(0, 0.1, d)
        for name, shape in [("self_attn.q_proj", (qd, d)), ("self_attn.k_proj", (kvd, d)), ("self_attn.v_proj", (kvd, d)),
                            ("self_attn.o_proj", (d, qd)), ("mlp.gate_proj", (f, d)), ("mlp.up_proj", (f, d)),
                            ("mlp.down_proj", (d, f))]:
            t[p + name + ".weight"] = rng.normal(0, 1 / np.sqrt(shape[1]), shape)
    t = {k: w.astype(np.float32) for k, w in t.items()}
    if edge_rows:
        # Rows that reach the quantizers' special cases, in a tensor of every kind.
        for name in ["model.embed_tokens.weight", "model.layers.0.mlp.down_proj.weight", "model.layers.0.self_attn.v_proj.weight",
                     "model.layers.1.mlp.up_proj.weight", "model.layers.0.self_attn.q_proj.weight"] + \
                    ([] if cfg["tie_word_embeddings"] else ["lm_head.weight"]):
            w = t[name]
            n = w.shape[1]
            w[0] = 0                                            # all zero: flat K blocks, zero Q6_K blocks
            w[1] = 0.25                                         # constant positive
            w[2] = -0.125                                       # constant negative
            w[3] = 0
            w[3, 5] = 3.0                                       # one spike
            w[4] = rng.normal(0, 1e-17, n)                      # below GROUP_MAX_EPS
            w[5] = rng.normal(0, 2e-7, n)                       # scales that are fp16 subnormals or 0
            w[6] = (np.arange(n) % 32 - 16) + 0.5               # Q8_0 / Q4_0 rounding ties
            w[7] = rng.normal(0, 1, n) * (rng.random(n) < 0.1)  # sparse
            w[8] = -np.abs(rng.normal(0, 1, n))                 # all negative
            w[9] = rng.normal(50, 1e-3, n)                      # large offset, tiny spread
            w[10] = 1e4 * rng.normal(0, 1, n)                   # large
    return t


def check_metadata(gf, cfg, outtype, name):
    kv = gf.kv
    hd = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
    want = {
        "general.architecture": "llama", "general.type": "model", "general.name": name,
        "llama.block_count": cfg["num_hidden_layers"], "llama.context_length": cfg["max_position_embeddings"],
        "llama.embedding_length": cfg["hidden_size"], "llama.feed_forward_length": cfg["intermediate_size"],
        "llama.attention.head_count": cfg["num_attention_heads"],
        "llama.attention.head_count_kv": cfg["num_key_value_heads"],
        "llama.rope.freq_base": np.float32(cfg["rope_theta"]),
        "llama.attention.layer_norm_rms_epsilon": np.float32(cfg["rms_norm_eps"]),
        "llama.attention.key_length": hd, "llama.attention.value_length": hd,
        "general.file_type": O.FILE_TYPE[outtype], "llama.vocab_size": cfg["vocab_size"],
        "llama.rope.dimension_count": hd, "general.quantization_version": 2,
    }
    for k, v in want.items():
        assert k in kv, f"{outtype}: metadata {k} missing"
        got = kv[k]
        ok = np.float32(got) == v if isinstance(v, np.float32) else got == v
        assert ok, f"{outtype}: {k} = {got!r}, expected {v!r}"
    for k in ("llama.rope.freq_base", "llama.attention.layer_norm_rms_epsilon"):
        assert gf.types[k] == "FLOAT32", f"{k} is {gf.types[k]}"
    for k in ("llama.block_count", "general.file_type", "llama.vocab_size"):
        assert gf.types[k] == "UINT32", f"{k} is {gf.types[k]}"
    unknown = [k for k in kv if k.startswith("llama.") and k not in want]
    assert not unknown, f"unexpected llama.* keys {unknown}"


def check_logits(label, hf_tensors, cfg, gf, bounds, ids):
    """transformers' GGUF loader (load_gguf_checkpoint: names, q/k unpermute,
    gguf-py dequantization) -> logits vs the source folder's."""
    state = O.transformers_gguf_state(gf.path, cfg)
    ours = O.hf_state_from_gguf(gf, cfg)
    for k, w in ours.items():  # transformers' reading and ours (gguf-py + unpermute) agree
        assert k in state and np.array_equal(state[k], w), f"{label}: transformers reads {k} differently"
    src = O.logits_of(cfg, hf_tensors, ids)
    got = O.logits_of(cfg, state, ids)
    err = float(np.abs(got - src).max())
    scale = float(np.abs(src).max())
    if bounds == "exact":
        assert err <= 1e-6 * scale, f"{label}: f32 logits differ by {err:.3g} (max |logit| {scale:.3g})"
        print(f"  {label}: logits via transformers' load_gguf_checkpoint, max |diff| {err:.3g} (bound 1e-6 x {scale:.3g})")
        return err, None
    bound, eps = O.rounding_bound(hf_tensors, state, src)
    assert err <= bound, f"{label}: logits differ by {err:.4g}, above the derived bound {bound:.4g} (eps {eps:.3g})"
    print(f"  {label}: logits max |diff| {err:.4g} <= bound {bound:.4g} (rounding eps {eps:.3g}; ratio {err / bound:.2f})")
    return err, bound


def section_tiny(a, wd):
    """1. llamaft init --preset tiny + tok512.model, every outtype."""
    import sentencepiece as spm
    print("1. init --preset tiny (llama3 RoPE, GQA, untied) + tok512.model (SentencePiece)")
    model = os.path.join(wd, "tiny")
    must([a.llamaft, "init", "--preset", "tiny", "--seed", "7", "--output", model, "--force"])
    tok = os.path.join(a.assets, "stories260K", "tok512.model")
    shutil.copy(tok, os.path.join(model, "tokenizer.model"))
    hf, cfg = O.load_hf(model)
    rope = O.rope_factors_converter(cfg)
    sp = spm.SentencePieceProcessor(model_file=tok)
    ids = [1] + sp.encode("Once upon a time there was a little fox who liked to play in the snow.")[:40]
    for outtype in O.OUTTYPES:
        out = os.path.join(wd, f"tiny-{outtype}.gguf")
        secs = export(a, model, out, outtype)
        gf = O.GgufFile(out)
        check_metadata(gf, cfg, outtype, "tiny")
        counts = O.check_tensors(gf, hf, cfg, outtype)
        got_rope = gf.values("rope_freqs.weight")
        ulps = np.abs(got_rope.view(np.int32) - rope.view(np.int32)).max()
        assert ulps <= 2, f"rope_freqs.weight differs from the converter's torch formula by {ulps} ulp"
        print(f"  {outtype}: {os.path.getsize(out)} bytes, {counts}, bytes equal to the reference quantizers; "
              f"rope_freqs within {ulps} ulp of the converter's ({secs:.2f} s)")
        if outtype == "f32":
            # The SentencePiece vocabulary as _create_vocab_sentencepiece makes it.
            kv = gf.kv
            n = sp.get_piece_size()
            assert kv["tokenizer.ggml.model"] == "llama" and kv["tokenizer.ggml.pre"] == "default"
            toks, scores, types = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.scores"], kv["tokenizer.ggml.token_type"]
            assert len(toks) == cfg["vocab_size"] == len(scores) == len(types)
            for i in range(n):
                t = 2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i) else 6 if sp.is_byte(i) else 1
                assert toks[i] == sp.id_to_piece(i) and np.float32(scores[i]) == np.float32(sp.get_score(i)) and types[i] == t, i
            for i in range(n, cfg["vocab_size"]):
                assert toks[i] == f"[PAD{i}]" and scores[i] == -10000.0 and types[i] == 5, i
            assert kv["tokenizer.ggml.bos_token_id"] == 1 and kv["tokenizer.ggml.eos_token_id"] == 2
            print(f"  vocabulary: {n} SentencePiece pieces with scores and types, then {cfg['vocab_size'] - n} [PADi]")
        if outtype in ("f32", "f16", "bf16", "q8_0"):
            check_logits(f"  {outtype}", hf, cfg, gf, "exact" if outtype == "f32" else "bound", ids)


def kquant_config(template, layers, tied, kv_heads=2, vocab=512, ffn=512):
    cfg = dict(template)
    cfg.update(hidden_size=256, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=4,
               num_key_value_heads=kv_heads, head_dim=64, vocab_size=vocab, tie_word_embeddings=tied)
    return cfg


def section_kquants(a, wd):
    """2. rows of 256: K-quants and the q4_k_m mix."""
    print("2. K-quant shapes (hidden 256, 8 layers), edge-case rows, tied and untied")
    template = json.load(open(os.path.join(wd, "tiny", "config.json")))
    tok = os.path.join(a.assets, "stories260K", "tok512.model")
    for tied in (True, False):
        cfg = kquant_config(template, 8, tied)
        model = os.path.join(wd, f"k256-{'tied' if tied else 'untied'}")
        tensors = random_model(cfg, 11 if tied else 12, edge_rows=True)
        write_model(model, cfg, tensors)
        shutil.copy(tok, os.path.join(model, "tokenizer.model"))
        for outtype in ("q8_0", "q4_0", "q4_k_m"):
            out = os.path.join(wd, f"k256-{tied}-{outtype}.gguf")
            export(a, model, out, outtype)
            counts = O.check_tensors(O.GgufFile(out), tensors, cfg, outtype)
            print(f"  {'tied' if tied else 'untied'} {outtype}: {counts}: every block bit-equal to the references")
        more = [l for l in range(8) if O.use_more_bits(l, 8)]
        print(f"  use_more_bits layers (attn_v, ffn_down -> Q6_K): {more}")
    print("   80 layers with GQA: llama.cpp's LLM_TYPE_70B rule (attn_v Q5_K)")
    cfg = kquant_config(template, 80, False, kv_heads=1, vocab=512, ffn=256)
    model = os.path.join(wd, "k256-80layers")
    tensors = random_model(cfg, 13)
    write_model(model, cfg, tensors)
    shutil.copy(tok, os.path.join(model, "tokenizer.model"))
    out = os.path.join(wd, "k256-80layers-q4_k_m.gguf")
    export(a, model, out, "q4_k_m")
    gf = O.GgufFile(out)
    only = {f"blk.{l}.attn_v.weight" for l in range(80)}
    counts = O.check_tensors(gf, tensors, cfg, "q4_k_m", only=only)
    v_types = [gf.tensors[f"blk.{l}.attn_v.weight"][0] for l in range(80)]
    assert v_types.count("Q5_K") > 0 and v_types.count("Q6_K") > 0, v_types
    print(f"  {counts}; attn_v: {v_types.count('Q6_K')} Q6_K, {v_types.count('Q5_K')} Q5_K (bytes bit-equal)")
    shutil.rmtree(model)


def small_config(template, vocab, tied=True):
    cfg = dict(template)
    cfg.update(hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=2,
               num_key_value_heads=1, head_dim=32, vocab_size=vocab, tie_word_embeddings=tied)
    return cfg


def section_tokenizers(a, wd):
    """3. Llama 2 (SentencePiece) and Llama 3 (BPE) tokenizer metadata."""
    from transformers import LlamaTokenizerFast, PreTrainedTokenizerFast
    template = json.load(open(os.path.join(wd, "tiny", "config.json")))
    print("3. tokenizers")
    # Llama 2 as Hugging Face ships it: tokenizer.model + tokenizer.json + tokenizer_config.json.
    l2 = os.path.join(a.assets, "llama2_tokenizer")
    model = os.path.join(wd, "llama2-tok")
    cfg = small_config(template, 32000)
    write_model(model, cfg, random_model(cfg, 21))
    shutil.copy(os.path.join(l2, "tokenizer.model"), model)
    LlamaTokenizerFast(vocab_file=os.path.join(model, "tokenizer.model"), legacy=True).save_pretrained(model)
    # ggml-vocab-llama-spm.gguf predates the converter's reading of
    # tokenizer_config.json's added_tokens_decoder: compare without it first.
    tc_path = os.path.join(model, "tokenizer_config.json")
    tc = json.load(open(tc_path))
    decoder = tc.pop("added_tokens_decoder")
    json.dump(tc, open(tc_path, "w"))
    out = os.path.join(wd, "llama2-tok.gguf")
    export(a, model, out, "q8_0")
    ours, ref = O.GgufFile(out).kv, O.GgufFile(os.path.join(l2, "ggml-vocab-llama-spm.gguf")).kv
    keys = [k for k in ref if k.startswith("tokenizer.")]
    for k in keys:
        assert ours.get(k) == ref[k], f"Llama 2 tokenizer: {k} differs from llama.cpp's ggml-vocab-llama-spm.gguf"
    extra = sorted(k for k in ours if k.startswith("tokenizer.") and k not in ref)
    print(f"  Llama 2 (tokenizer.model + HF tokenizer.json/tokenizer_config.json): {len(keys)} tokenizer keys equal "
          f"llama.cpp's ggml-vocab-llama-spm.gguf (32000 tokens, scores, types, ids, add_bos/eos); also written: "
          f"{', '.join(f'{k}={ours[k]}' for k in extra) or 'none'}")
    # With added_tokens_decoder (as transformers writes it today) the current
    # converter marks those tokens control, score -1000.
    tc["added_tokens_decoder"] = decoder
    json.dump(tc, open(tc_path, "w"))
    export(a, model, out, "q8_0")
    now = O.GgufFile(out).kv
    ids = sorted(int(i) for i in decoder)
    for k in keys:
        if k in ("tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            continue
        assert now.get(k) == ref[k], k
    want_scores = [(-1000.0 if i in ids else s) for i, s in enumerate(ref["tokenizer.ggml.scores"])]
    want_types = [(3 if i in ids else t) for i, t in enumerate(ref["tokenizer.ggml.token_type"])]
    assert now["tokenizer.ggml.scores"] == want_scores and now["tokenizer.ggml.token_type"] == want_types
    print(f"  ... with added_tokens_decoder: ids {ids} become control tokens with score -1000, as the current "
          f"converter's _create_vocab_sentencepiece writes them; everything else unchanged")

    # Llama 3: tiktoken ranks -> tokenizer.json as transformers converts it, with Meta's BOS template.
    import tiktoken.load
    from transformers.convert_slow_tokenizer import TikTokenConverter
    from tokenizers import processors
    os.environ["TIKTOKEN_CACHE_DIR"] = ""  # no cache copy of the ranks file
    tiktoken.load.read_file = lambda path: open(path, "rb").read()  # tiktoken 0.7 wants blobfile even for local files
    l3 = os.path.join(a.assets, "llama3_tokenizer", "tokenizer.model")
    names = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|reserved_special_token_1|>",
             "<|finetune_right_pad_id|>", "<|step_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>",
             "<|eot_id|>", "<|python_tag|>", "<|image|>"]
    names += [f"<|reserved_special_token_{i}|>" for i in range(2, 2 + 256 - len(names))]
    tk = TikTokenConverter(vocab_file=l3, additional_special_tokens=names).converted()
    tk.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=False),
        processors.TemplateProcessing(single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
                                      special_tokens=[("<|begin_of_text|>", 128000)])])
    json_dir = os.path.join(wd, "llama3-json")
    cfg3 = small_config(template, 128256)
    cfg3.update(bos_token_id=128000, eos_token_id=128001)
    write_model(json_dir, cfg3, random_model(cfg3, 31))
    tk.save(os.path.join(json_dir, "tokenizer.json"))
    json.dump({"bos_token": "<|begin_of_text|>", "eos_token": "<|end_of_text|>", "model_max_length": 131072,
               "tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": True},
              open(os.path.join(json_dir, "tokenizer_config.json"), "w"))
    fast = PreTrainedTokenizerFast(tokenizer_file=os.path.join(json_dir, "tokenizer.json"))
    chkhsh = hashlib.sha256(str(fast.encode(CHKTXT)).encode()).hexdigest()
    assert chkhsh == LLAMA_BPE_HASH, f"the test tokenizer's pre-tokenizer hash {chkhsh} is not llama-bpe's"
    out = os.path.join(wd, "llama3-json.gguf")
    export(a, json_dir, out, "q8_0")
    kv = O.GgufFile(out).kv
    hf_json = json.load(open(os.path.join(json_dir, "tokenizer.json")))
    vocab = {**hf_json["model"]["vocab"], **{t["content"]: t["id"] for t in hf_json["added_tokens"]}}
    inv = {i: t for t, i in vocab.items()}
    merges = [m if isinstance(m, str) else " ".join(p.replace(" ", "\u0120") for p in m) for m in hf_json["model"]["merges"]]
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "llama-bpe"
    assert kv["tokenizer.ggml.tokens"] == [inv[i] for i in range(128256)]
    assert kv["tokenizer.ggml.merges"] == merges
    types = kv["tokenizer.ggml.token_type"]
    assert all(t == 1 for t in types[:128000]) and all(t == 3 for t in types[128000:])
    assert kv["tokenizer.ggml.bos_token_id"] == 128000 and kv["tokenizer.ggml.eos_token_id"] == 128001
    assert kv["tokenizer.ggml.add_bos_token"] is True and kv["tokenizer.ggml.add_eos_token"] is False
    print(f"  Llama 3 tokenizer.json (pre-tokenizer hash = the converter's llama-bpe): 128256 tokens, "
          f"{len(merges)} merges, 256 control tokens, bos 128000, add_bos")
    # The bare tiktoken file: the same vocabulary and merges.
    tt_dir = os.path.join(wd, "llama3-tiktoken")
    write_model(tt_dir, cfg3, random_model(cfg3, 31))
    shutil.copy(l3, os.path.join(tt_dir, "tokenizer.model"))
    out2 = os.path.join(wd, "llama3-tiktoken.gguf")
    export(a, tt_dir, out2, "q8_0")
    kv2 = O.GgufFile(out2).kv
    for k in ("tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.merges",
              "tokenizer.ggml.token_type", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
              "tokenizer.ggml.add_bos_token"):
        assert kv2[k] == kv[k], f"Llama 3 from tokenizer.model: {k} differs from the tokenizer.json export"
    print("  Llama 3 tiktoken tokenizer.model: tokens, merges, types and ids equal the tokenizer.json export")
    for d in (json_dir, tt_dir, model):
        shutil.rmtree(d)


def section_refusals(a, wd):
    print("4. refusals and atomicity")
    model = os.path.join(wd, "tiny")
    out = os.path.join(wd, "refused.gguf")
    base = [a.llamaft, "export", "--format", "gguf", "--model", model, "--output"]
    open(out, "w").write("not a gguf")
    expect_refusal(base + [out, "--outtype", "q8_0"], "already exists", "an existing file without --force")
    expect_refusal(base + [out, "--outtype", "q8_0", "--force"], "not a GGUF", "--force over a file that is not a GGUF")
    assert open(out).read() == "not a gguf"
    os.remove(out)
    expect_refusal(base + [out, "--outtype", "q5_k_m"], "q5_k_m", "an outtype export does not write")
    expect_refusal(base + [out, "--outtype", "f16", "--format", "ggml"], "ggml", "another format")
    notok = os.path.join(wd, "no-tokenizer")
    shutil.copytree(model, notok)
    os.remove(os.path.join(notok, "tokenizer.model"))
    expect_refusal([a.llamaft, "export", "--model", notok, "--output", out], "--tokenizer", "a folder without a tokenizer")
    must([a.llamaft, "export", "--model", notok, "--tokenizer", model, "--output", out])
    os.remove(out)
    big = os.path.join(wd, "big-tokenizer")
    shutil.copytree(notok, big)
    shutil.copy(os.path.join(a.assets, "llama2_tokenizer", "tokenizer.model"), big)
    expect_refusal([a.llamaft, "export", "--model", big, "--output", out], "vocab_size", "a tokenizer larger than the model")
    bpe = os.path.join(wd, "odd-bpe")
    shutil.copytree(notok, bpe)
    json.dump({"version": "1.0", "added_tokens": [], "normalizer": None,
               "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": {"type": "ByteLevel"},
               "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}},
              open(os.path.join(bpe, "tokenizer.json"), "w"))
    expect_refusal([a.llamaft, "export", "--model", bpe, "--output", out], "pre-tokenizer", "an unknown BPE pre-tokenizer")
    # A non-finite weight: exit 3; an earlier file of that name stays as it was.
    nan = os.path.join(wd, "nan-model")
    shutil.copytree(model, nan)
    t = st_numpy.load(os.path.join(nan, "model.safetensors"))
    t["model.layers.2.mlp.up_proj.weight"][3, 4] = np.nan
    st_numpy.save(os.path.join(nan, "model.safetensors"), t)
    export(a, model, out, "q8_0")
    before = open(out, "rb").read()
    expect_refusal([a.llamaft, "export", "--model", nan, "--output", out, "--force"], "non-finite",
                   "a NaN weight (exit 3)", code=3)
    assert open(out, "rb").read() == before and not os.path.exists(out + ".partial"), "the old file was touched"
    print("  the earlier GGUF is unchanged and no .partial is left")
    for d in (notok, big, bpe, nan):
        shutil.rmtree(d)
    os.remove(out)


def section_training(a, wd):
    print("5. output.gguf at the end of training")
    model = os.path.join(wd, "tiny")
    rng = np.random.default_rng(5)
    data = os.path.join(wd, "train.jsonl")
    with open(data, "w") as f:
        for _ in range(8):
            f.write(json.dumps({"input_ids": [1] + rng.integers(3, 512, 31).tolist()}) + "\n")
    common = ["--model.path", model, "--data.path", data, "--train.steps", "2", "--train.global_batch_size", "2",
              "--data.seq_len", "32", "--train.lr", "1e-3", "--output.progress", "false", "--checkpoint.at_end", "false"]
    full = os.path.join(wd, "run-full")
    shutil.rmtree(full, ignore_errors=True)
    must([a.llamaft, "train", *common, "--output.dir", full, "--output.gguf", "q8_0"])
    ref = os.path.join(wd, "run-full-export.gguf")
    export(a, os.path.join(full, "model"), ref, "q8_0", "--tokenizer", model, "--name", "run-full")
    assert open(os.path.join(full, "model.gguf"), "rb").read() == open(ref, "rb").read()
    print("  full fine-tuning: output.dir/model.gguf == llamaft export of output.dir/model (q8_0), byte for byte")
    lora = os.path.join(wd, "run-lora")
    shutil.rmtree(lora, ignore_errors=True)
    must([a.llamaft, "train", *common, "--output.dir", lora, "--finetune.method", "lora", "--lora.r", "4",
          "--output.gguf", "f32"])
    ref2 = os.path.join(wd, "run-lora-export.gguf")
    export(a, model, ref2, "f32", "--adapter", os.path.join(lora, "adapter"), "--name", "run-lora")
    assert open(os.path.join(lora, "model.gguf"), "rb").read() == open(ref2, "rb").read()
    merged = os.path.join(wd, "run-lora-merged")
    must([a.llamaft, "merge", "--model", model, "--adapter", os.path.join(lora, "adapter"), "--output", merged, "--force"])
    ref3 = os.path.join(wd, "run-lora-merged.gguf")
    export(a, merged, ref3, "f32", "--tokenizer", model, "--name", "run-lora")
    assert open(ref3, "rb").read() == open(ref2, "rb").read()
    print("  LoRA: output.dir/model.gguf == export --adapter == export of `llamaft merge`'s folder, byte for byte")
    bad = os.path.join(wd, "run-bad")
    notok = os.path.join(wd, "no-tok-base")
    shutil.copytree(model, notok)
    os.remove(os.path.join(notok, "tokenizer.model"))
    t0 = time.time()
    expect_refusal([a.llamaft, "train", *common, "--model.path", notok, "--output.dir", bad, "--output.gguf", "q4_k_m"],
                   "tokenizer", "output.gguf with a base that has no tokenizer (before training)")
    assert not os.path.exists(os.path.join(bad, "metrics.jsonl")), "training started"
    shutil.rmtree(notok)
    for d in (full, lora, merged):
        shutil.rmtree(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--assets", required=True)
    a = ap.parse_args()
    try:
        import gguf  # noqa: F401
        import sentencepiece  # noqa: F401
        import torch  # noqa: F401
        import transformers  # noqa: F401
        from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint  # noqa: F401
    except ImportError as e:
        skip(f"needs gguf-py, transformers, torch and sentencepiece (scripts/setup_python_env.sh): {e}")
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(a.workdir)
    t0 = time.time()
    section_tiny(a, a.workdir)
    section_kquants(a, a.workdir)
    section_tokenizers(a, a.workdir)
    section_refusals(a, a.workdir)
    section_training(a, a.workdir)
    print(f"gguf export checks passed ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
