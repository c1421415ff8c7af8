#!/usr/bin/env python3
"""Writes two lm-evaluation-harness tasks over TinyStories text (CDLA-Sharing-1.0;
generated at test time from shared/assets, never copied into the repo):

  tinystories_cloze (multiple_choice): context = a sentence without its last word,
      choices = that word and 3 distractors (other sentences' last words, drawn with a
      seeded RNG, lengths deliberately varied so acc and acc_norm differ), gold = its index.
  tinystories_ppl (loglikelihood_rolling): whole stories.

Each task is a JSONL file plus an lm_eval YAML config (dataset_path: json, data_files with
an absolute path, so lm_eval and llamaft read the same file from any working directory).
Usage: make_tinystories_tasks.py TEXT OUT_DIR [--items N] [--stories N] [--seed S]
Prints OUT_DIR's two YAML paths."""
import argparse
import json
import os
import random
import re

p = argparse.ArgumentParser()
p.add_argument("text")
p.add_argument("out")
p.add_argument("--items", type=int, default=250)
p.add_argument("--stories", type=int, default=40)
p.add_argument("--seed", type=int, default=1234)
a = p.parse_args()

stories = [s.strip() for s in open(a.text, encoding="utf-8").read().split("\n") if len(s.strip()) > 40]
sentences = []
for s in stories:
    for sent in re.split(r"(?<=[.!?])\s+", s):
        m = re.fullmatch(r"([A-Z][^\"“”]{20,200}?) ([a-z]{2,14})\.", sent)
        if m:
            sentences.append((m.group(1), m.group(2)))
rng = random.Random(a.seed)
pool = sorted({w for _, w in sentences})
picked = rng.sample(sentences, a.items)
os.makedirs(a.out, exist_ok=True)

cloze = os.path.abspath(os.path.join(a.out, "tinystories_cloze.jsonl"))
with open(cloze, "w", encoding="utf-8") as f:
    for context, word in picked:
        distractors = []
        while len(distractors) < 3:
            w = rng.choice(pool)
            if w != word and w not in distractors:
                distractors.append(w)
        choices = distractors + [word]
        rng.shuffle(choices)
        f.write(json.dumps({"context": context, "choices": choices, "gold": choices.index(word)}) + "\n")

ppl = os.path.abspath(os.path.join(a.out, "tinystories_ppl.jsonl"))
with open(ppl, "w", encoding="utf-8") as f:
    for s in rng.sample(stories, a.stories):
        f.write(json.dumps({"text": s}) + "\n")

configs = {
    "tinystories_cloze": (cloze, "output_type: multiple_choice\n"
                                 "doc_to_text: \"{{context}}\"\n"
                                 "doc_to_choice: choices\n"
                                 "doc_to_target: gold\n"
                                 "metric_list:\n  - metric: acc\n  - metric: acc_norm\n"),
    "tinystories_ppl": (ppl, "output_type: loglikelihood_rolling\n"
                             "doc_to_text: \"\"\n"
                             "doc_to_target: text\n"
                             "metric_list:\n  - metric: word_perplexity\n  - metric: byte_perplexity\n"
                             "  - metric: bits_per_byte\n"),
}
for name, (data, body) in configs.items():
    path = os.path.join(a.out, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"task: {name}\ndataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {json.dumps(data)}\n"
                f"test_split: test\n{body}metadata:\n  version: 1.0\n")
    print(path)
