#!/usr/bin/env python3
"""Times lm-evaluation-harness's hf backend on a task, the model already loaded:
simple_evaluate (task loading, requests, scoring) over the task's items.
Usage (in the lm_eval venv): time_lm_eval.py MODEL_DIR TASK_DIR TASK THREADS BATCH [LIMIT]
Prints one JSON line {"items", "seconds", "items_per_s", "batch_size", "threads", metrics...}."""
import json
import sys
import time

import torch
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager

model, task_dir, task, threads, batch = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
limit = int(sys.argv[6]) if len(sys.argv) > 6 else None
torch.set_num_threads(threads)
lm = HFLM(pretrained=model, dtype="float32", device="cpu", batch_size=batch)
tm = TaskManager(include_path=task_dir)
t0 = time.perf_counter()
out = simple_evaluate(model=lm, tasks=[task], task_manager=tm, log_samples=False, limit=limit)
dt = time.perf_counter() - t0
res = out["results"][task]
items = out["n-samples"][task]["effective"]
print(json.dumps({"task": task, "items": items, "seconds": dt, "items_per_s": items / dt, "batch_size": batch,
                  "threads": threads, **{k.split(",")[0]: v for k, v in res.items() if "," in k}}))
