#!/usr/bin/env python3
"""The demo's fine-tuning task, generated deterministically: rewrite a date
written in words ("the 5th of March, 2021", "Mar 5 2021", ...) as ISO 8601
(2021-03-05), and answer with the date alone.

SmolLM2-135M-Instruct, asked in plain words, answers with extra text, a time
suffix, the wrong field order or an echo of the input; the exact answer is a
fixed format plus a deterministic mapping (month name -> its number, the day
zero-padded), which LoRA teaches a 135M model in a few dozen steps on 2
cores (measured 2026-12-07: base 0% exact match on 30 held-out prompts, 87%
after 24 LoRA steps of 16 rows, in fp32 and in bf16).

Writes OUT_DIR/train.jsonl (chat rows: {"messages": [user, assistant]}) and
OUT_DIR/test.jsonl ({"prompt", "answer"}); test dates never occur in training.
Usage: make_date_data.py OUT_DIR [--train N] [--test N] [--seed S]
"""
import argparse
import datetime
import json
import os
import random

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
ABBR = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
INSTRUCTIONS = [
    "Convert this date to ISO 8601 format (YYYY-MM-DD): {}",
    "Write the date {} in YYYY-MM-DD format.",
    "What is {} in ISO 8601 (YYYY-MM-DD)? Answer with the date only.",
]


def ordinal(d):
    suffix = "th" if 11 <= d % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


def spell(date, style):
    d, m, y = date.day, date.month - 1, date.year
    return [
        f"{MONTHS[m]} {d}, {y}",
        f"{d} {MONTHS[m]} {y}",
        f"{ABBR[m]} {d}, {y}",
        f"the {ordinal(d)} of {MONTHS[m]}, {y}",
        f"{MONTHS[m]} {ordinal(d)}, {y}",
        f"{d} {ABBR[m]} {y}",
    ][style]


def example(rng):
    first = datetime.date(1900, 1, 1).toordinal()
    date = datetime.date.fromordinal(first + rng.randrange(200 * 365))
    prompt = rng.choice(INSTRUCTIONS).format(spell(date, rng.randrange(6)))
    return date, prompt, date.isoformat()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("out")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--test", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.makedirs(a.out, exist_ok=True)
    rng = random.Random(a.seed)
    test, held = [], set()
    while len(test) < a.test:
        date, prompt, answer = example(rng)
        if date not in held:
            held.add(date)
            test.append({"prompt": prompt, "answer": answer})
    train = []
    while len(train) < a.train:
        date, prompt, answer = example(rng)
        if date not in held:  # no held-out date is ever trained, in any spelling
            train.append({"messages": [{"role": "user", "content": prompt},
                                       {"role": "assistant", "content": answer}]})
    with open(os.path.join(a.out, "train.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in train)
    with open(os.path.join(a.out, "test.jsonl"), "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in test)


if __name__ == "__main__":
    main()
