#!/usr/bin/env python3
"""A roofline model of one llamaft training step on a GPU: MODELLED, never measured.

Input: the CUDA backend's StepCounters for one step -- calls, launches,
argument-derived bytes and FLOPs of every op family, host syncs by site, and
the FSDP collectives' bytes. They come from either
  * a dry run of the real CUDA backend and training code in the CPU emulator
    at full model size (the default: --preset/--seq/--micro-batch/--world;
    the emulator runs no kernels, see tests/cuda/emu/cuda_emu.hpp), or
  * --counters FILE: such a dump, or a metrics.jsonl line's "device" field
    from `train` on a real GPU (then the comm bytes come from the same line).

Each family's time is max(FLOPs / (peak * efficiency), bytes / (HBM bandwidth
* memory efficiency)), at least a minimum kernel time per launch; each host
sync adds a pipeline drain; the collectives run beside the compute (FSDP
prefetches one unit ahead), so only their excess over compute and one unit's
worth at each end is exposed. MFU = the step's GEMM and (causal) attention
FLOPs / (modelled step time * peak).

The efficiencies are assumptions, printed with every result:
  gemm 0.70       cuBLAS bf16 GEMMs at these shapes (K >= 2048) on Hopper
  attention       'wmma': today's WMMA/SIMT kernels, 0.04 (the issue #19
                  review's estimate: about 25 ms of a 135 ms llama3.2-1b step
                  per 2048 tokens); 'fa2': the FlashAttention-2 structure,
                  0.30 (FA2's Hopper figures in the FlashAttention-3 paper)
  memory 0.80     of the HBM bandwidth, for streaming kernels
Usage:
  bench/roofline.py [--preset llama3.2-1b] [--seq 2048] [--micro-batch 4] [--world 1] [--gpu h200]
  bench/roofline.py --counters metrics_line.json --gpu h100
"""
import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Dense bf16 tensor-core peak (TFLOP/s), HBM bandwidth (TB/s), NVLink bandwidth
# per direction (GB/s): NVIDIA's data sheets (H200 SXM, H100 SXM, A100 SXM 80GB).
GPUS = {
    "h200": {"name": "H200 SXM", "tflops": 989.4, "hbm_tbs": 4.8, "nvlink_gbs": 450},
    "h100": {"name": "H100 SXM", "tflops": 989.4, "hbm_tbs": 3.35, "nvlink_gbs": 450},
    "a100": {"name": "A100 SXM 80GB", "tflops": 312.0, "hbm_tbs": 2.039, "nvlink_gbs": 300},
}
ATTENTION = {"wmma": 0.04, "fa2": 0.30}
MIN_KERNEL_S = 3e-6      # launch and tail of a kernel that has almost nothing to do
SYNC_S = 20e-6           # a host sync drains the queue; the next launch restarts it
NCCL_BUS_FRACTION = 0.8  # of the per-direction NVLink bandwidth, for large all-gathers and reduce-scatters


def dry_run(preset, seq, micro_batch, world):
    binary = ROOT / "build" / "emu" / "cuda_tests_emu"
    if not binary.exists():
        subprocess.run(["bash", str(ROOT / "tests/cuda/emu/run_emu.sh"), str(ROOT / "build/emu")], check=True,
                       env={**os.environ, "LLAMAFT_EMU_BUILD_ONLY": "1"})
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "counts.json"
        env = {**os.environ, "LLAMAFT_EMU_DRY": "1", "LLAMAFT_STEP_COUNTS_OUT": str(out),
               "LLAMAFT_STEP_COUNTS_PRESET": preset, "LLAMAFT_STEP_COUNTS_SEQ": str(seq),
               "LLAMAFT_STEP_COUNTS_BATCH": str(micro_batch), "LLAMAFT_STEP_COUNTS_WORLD": str(world)}
        r = subprocess.run([str(binary), "--gtest_filter=StepCountsAtSize.Dump"], env=env, capture_output=True,
                           text=True)
        if r.returncode != 0 or not out.exists():
            sys.exit(f"roofline: the dry run failed:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
        return json.loads(out.read_text())


def load_counters(path):
    text = pathlib.Path(path).read_text().strip().splitlines()[-1]
    j = json.loads(text)
    if "device" in j:  # a metrics.jsonl line
        d = j["device"]
        d["comm"] = {"all_gather_bytes": j.get("all_gather_bytes", 0),
                     "reduce_scatter_bytes": j.get("reduce_scatter_bytes", 0)}
        d["world"] = j.get("world_size", 1)
        return d
    return j


def model(c, gpu, gemm_eff, attn_eff, mem_eff):
    peak = gpu["tflops"] * 1e12
    bw = gpu["hbm_tbs"] * 1e12 * mem_eff
    rows = []
    for name, f in sorted(c["ops"].items()):
        if name.startswith("gemm"):
            eff = gemm_eff
        elif name.startswith("attention"):
            eff = attn_eff
        else:
            eff = None
        t_flops = f["flops"] / (peak * eff) if eff and f["flops"] else 0.0
        t_bytes = f["bytes"] / bw
        t = max(t_flops, t_bytes, f["launches"] * MIN_KERNEL_S)
        rows.append((name, f["calls"], f["launches"], f["bytes"], f["flops"], t,
                     "flops" if t == t_flops and t_flops > 0 else ("bytes" if t == t_bytes else "launch")))
    compute = sum(r[5] for r in rows)
    syncs = sum(c["syncs"].values())
    t_sync = syncs * SYNC_S
    world = int(c.get("world", 1))
    comm = c.get("comm", {})
    t_comm = 0.0
    if world > 1:
        busbw = gpu["nvlink_gbs"] * 1e9 * NCCL_BUS_FRACTION
        # A ring moves (world - 1) / world of the gathered (or reduced) buffer through each rank's link.
        gathered = comm.get("all_gather_bytes", 0) * world
        reduced = comm.get("reduce_scatter_bytes", 0)
        t_comm = (gathered + reduced) * (world - 1) / world / busbw
    units = 2 + int(c.get("layers", 1))
    exposed = max(0.0, t_comm - compute) + 2 * t_comm / units  # the first gather and the last reduce
    step = compute + t_sync + exposed
    useful = sum(f["flops"] for n, f in c["ops"].items())
    return rows, compute, t_sync, t_comm, exposed, step, useful / (step * peak), useful


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="llama3.2-1b")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--world", type=int, default=1, help="ranks under full_shard (one GPU each)")
    ap.add_argument("--gpu", choices=sorted(GPUS), default="h200")
    ap.add_argument("--counters", help="a dry-run dump or a metrics.jsonl line instead of a dry run")
    ap.add_argument("--gemm-efficiency", type=float, default=0.70)
    ap.add_argument("--attention", choices=sorted(ATTENTION), default=None,
                    help="one attention assumption (default: print both)")
    ap.add_argument("--memory-efficiency", type=float, default=0.80)
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args()
    c = load_counters(a.counters) if a.counters else dry_run(a.preset, a.seq, a.micro_batch, a.world)
    gpu = GPUS[a.gpu]
    what = (f"{c.get('preset', '?')} seq {c.get('seq', '?')} micro-batch {c.get('micro_batch', '?')} "
            f"on {c.get('world', 1)} x {gpu['name']}")
    print(f"MODELLED (roofline, not measured): one full fine-tuning step (bf16, no activation checkpointing) of "
          f"{what}")
    print(f"  peak {gpu['tflops']} TFLOP/s bf16 dense, HBM {gpu['hbm_tbs']} TB/s, NVLink {gpu['nvlink_gbs']} GB/s "
          f"a direction; efficiencies: gemm {a.gemm_efficiency}, memory {a.memory_efficiency}")
    print(f"  counted: {sum(c['syncs'].values())} host syncs {c['syncs']}, "
          f"{sum(f['launches'] for f in c['ops'].values())} launches, "
          f"{sum(f['bytes'] for f in c['ops'].values()) / 1e9:.1f} GB moved, "
          f"{sum(f['flops'] for f in c['ops'].values()) / 1e12:.2f} TFLOP"
          + (f", peak device memory {c['peak_device_bytes'] / 2**30:.1f} GiB" if "peak_device_bytes" in c else ""))
    results = {}
    for kind in ([a.attention] if a.attention else ["wmma", "fa2"]):
        rows, compute, t_sync, t_comm, exposed, step, mfu, useful = model(
            c, gpu, a.gemm_efficiency, ATTENTION[kind], a.memory_efficiency)
        print(f"\n  attention '{kind}' (efficiency {ATTENTION[kind]}):")
        print(f"    {'family':<18}{'calls':>7}{'launches':>9}{'GB':>9}{'TFLOP':>9}{'ms':>9}  bound")
        for name, calls, launches, b, fl, t, bound in sorted(rows, key=lambda r: -r[5]):
            print(f"    {name:<18}{calls:>7}{launches:>9}{b / 1e9:>9.2f}{fl / 1e12:>9.2f}{t * 1e3:>9.2f}  {bound}")
        print(f"    compute {compute * 1e3:.1f} ms + host syncs {t_sync * 1e3:.2f} ms + exposed communication "
              f"{exposed * 1e3:.1f} ms (of {t_comm * 1e3:.1f} ms) = step {step * 1e3:.1f} ms")
        tokens = c.get("rows", 0)
        print(f"    MODELLED MFU {100 * mfu:.1f}%  ({useful / 1e12:.2f} TFLOP a rank; "
              f"{tokens / step:,.0f} tokens/s a GPU)")
        results[kind] = {"step_ms": step * 1e3, "mfu": mfu, "compute_ms": compute * 1e3, "comm_ms": t_comm * 1e3,
                         "exposed_comm_ms": exposed * 1e3, "sync_ms": t_sync * 1e3}
    if a.json:
        pathlib.Path(a.json).write_text(json.dumps({"modelled": True, "case": what, "gpu": gpu,
                                                    "gemm_efficiency": a.gemm_efficiency,
                                                    "memory_efficiency": a.memory_efficiency,
                                                    "results": results}, indent=2))


if __name__ == "__main__":
    main()
