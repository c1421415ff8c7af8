#!/usr/bin/env python3
"""Issue 31 item 4: every command written in a config's header or a job
script's comment runs as written.
  - `llamaft ...` lines run with the built binary (in a scratch folder where
    configs/, jobs/ and build/llamaft are the repo's): exit 0; `plan` lines
    whose file says "`plan` counts X GiB per rank" print X (the first
    strategy's total, to 2 decimals);
  - `mpirun -np N llamaft train ...` lines run for real when their model and
    data exist in the scratch folder (configs/tiny_full.cfg, after its own
    init line), else their config and overrides must parse (--print-config);
  - the `llamaft ...` lines of a container definition's %test section run
    as `llamaft ...` lines do;
  - `sbatch OPTIONS SCRIPT CONFIG ...` lines: the script and the config
    exist, the script parses (bash -n), --ntasks-per-node equals
    --gpus-per-node where both are given (llamaft refuses ranks sharing a
    GPU), and the config with the overrides parses.
(`sbatch --test-only` of every script is in the Slurm test.)
Usage: check_commands.py --llamaft BIN --repo DIR --workdir DIR"""
import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "pyutil"))
import launcher  # noqa: E402
from checks import FAILURES, check  # noqa: E402

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1")
CMD = re.compile(r"^#\s{2,}((?:mpirun|llamaft|build/llamaft|sbatch)\s.*)$")


def def_test_commands(path):
    """The `llamaft ...` lines of an Apptainer definition's %test section (what
    `apptainer build` runs in the image), without their redirections."""
    out, inside = [], False
    for line in open(path).read().splitlines():
        if line.startswith("%"):
            inside = line.strip() == "%test"
            continue
        body = line.strip()
        if inside and body.startswith("llamaft"):
            out.append(re.sub(r"\s*[12]?>\s*/dev/null", "", body))
    return out


def commands(path):
    """The command lines ("#   cmd", continuations with a trailing backslash joined) of a config's leading
    comment block, or of a job script's comments."""
    out, pending = [], None
    for line in open(path).read().splitlines():
        if not line.startswith("#"):
            if path.endswith(".cfg"):
                break
            continue
        body = line[1:].strip()
        if pending is not None:
            pending += " " + body.rstrip("\\").strip()
            if not body.endswith("\\"):
                out.append(pending)
                pending = None
            continue
        m = CMD.match(line)
        if m:
            cmd = m.group(1).strip()
            if cmd.endswith("\\"):
                pending = cmd.rstrip("\\").strip()
            else:
                out.append(cmd)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llamaft", required=True)
    ap.add_argument("--repo", required=True)
    ap.add_argument("--workdir", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.workdir, ignore_errors=True)
    os.makedirs(f"{a.workdir}/build")
    w = a.workdir
    for d in ("configs", "jobs"):
        os.symlink(os.path.join(a.repo, d), f"{w}/{d}")
    os.symlink(a.llamaft, f"{w}/build/llamaft")
    with open(f"{w}/my.jsonl", "w") as f:  # the data tiny_full.cfg's header trains on
        for i in range(16):
            f.write(json.dumps({"input_ids": [1] + [(i * 11 + j) % 500 + 3 for j in range(31)]}) + "\n")

    def run(argv):
        return subprocess.run(argv, cwd=w, env=ENV, capture_output=True, text=True, timeout=300)

    def parses(config, extra):
        r = run([a.llamaft, "train", "--config", config, *extra, "--print-config"])
        return r.returncode == 0, r.stderr.strip()[-200:]

    files = sorted(glob.glob(os.path.join(a.repo, "configs", "*.cfg"))) + \
        sorted(glob.glob(os.path.join(a.repo, "jobs", "slurm", "*.sbatch"))) + \
        sorted(glob.glob(os.path.join(a.repo, "containers", "*.def")))
    total = 0
    for path in files:
        text = open(path).read()
        claim = re.search(r"`plan` counts ([\d.]+) GiB per rank", text)
        name = os.path.relpath(path, a.repo)
        for cmd in (def_test_commands(path) if path.endswith(".def") else commands(path)):
            total += 1
            argv = shlex.split(cmd)
            if argv[0] in ("llamaft", "build/llamaft"):
                r = run([a.llamaft] + argv[1:])
                ok = r.returncode == 0
                what = f"{name}: `{cmd}` exits {r.returncode}" + ("" if ok else f" ({r.stderr.strip()[-200:]})")
                if ok and argv[1] == "plan" and claim:
                    rows = [l for l in r.stdout.splitlines() if re.match(r"^(full_shard|shard_grad_op|no_shard|hybrid)", l)]
                    got = float(rows[0].split()[-1]) if rows else None
                    ok = got is not None and f"{got:.2f}" == claim.group(1)
                    what += f"; the header's {claim.group(1)} GiB per rank is plan's {got}"
                check(ok, what)
            elif argv[0] == "mpirun":
                np_ = argv[argv.index("-np") + 1]
                rest = argv[argv.index("-np") + 2:]
                rest = rest[1:] if rest[0] in ("llamaft", "build/llamaft") else rest
                cfg = rest[rest.index("--config") + 1]
                model = re.search(r"^\[model\]\s*\npath\s*=\s*(\S+)", open(os.path.join(w, cfg)).read(), re.M)
                if model and os.path.exists(os.path.join(w, model.group(1))):
                    r = run([*launcher.mpirun(np_, []), a.llamaft] + rest +
                            ["--output.dir", f"{w}/run_{total}", "--train.steps", "10"])
                    check(r.returncode == 0, f"{name}: `{cmd}` runs (10 steps; exit {r.returncode})"
                          + ("" if r.returncode == 0 else f" {r.stderr.strip()[-300:]}"))
                else:
                    ok, err = parses(cfg, [x for x in rest[1:] if x not in ("--config", cfg)])
                    check(ok, f"{name}: `{cmd}`: its model is not here; config and overrides parse {err}")
            else:  # sbatch
                script = next(x for x in argv if x.endswith(".sbatch"))
                after = argv[argv.index(script) + 1:]
                opts = dict(x.lstrip("-").split("=", 1) for x in argv[1:argv.index(script)] if "=" in x)
                r = run(["bash", "-n", script])
                same = ("ntasks-per-node" not in opts or "gpus-per-node" not in opts or
                        opts["ntasks-per-node"] == opts["gpus-per-node"])
                ok, err = parses(after[0], after[1:])
                check(os.path.exists(os.path.join(w, script)) and r.returncode == 0 and same and ok,
                      f"{name}: `{cmd}`: script parses, one rank per GPU ({opts.get('ntasks-per-node')} per node, "
                      f"{opts.get('gpus-per-node')} GPUs), the config parses {err}")
    check(total >= 15, f"{total} commands found in configs/ and jobs/slurm/")
    print("commands:", "PASSED" if not FAILURES else f"FAILED ({len(FAILURES)})")
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
