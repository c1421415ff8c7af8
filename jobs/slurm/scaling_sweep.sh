#!/bin/bash
# Submits a matrix of fine-tuning jobs for a scaling study: node counts x FSDP
# strategies x global batch sizes, each an sbatch of multinode.sbatch with its
# own output.dir under SWEEP_DIR. Then collect with
#   scripts/scaling_study.py collect SWEEP_DIR
#
#   NODES="1 2 4 8" STRATEGIES="full_shard hybrid_shard" BATCHES="256 512" \
#   RANKS_PER_NODE=8 SWEEP_DIR=runs/sweep1 jobs/slurm/scaling_sweep.sh configs/llama3_8b_full.cfg
#
# Environment: NODES, STRATEGIES, BATCHES, RANKS_PER_NODE (default 1), STEPS (default 20),
# SWEEP_DIR (default runs/sweep-<date>), SBATCH_ARGS (extra sbatch options, e.g. --gpus-per-node=8),
# DRY_RUN=1 prints the sbatch commands instead of submitting.
set -euo pipefail
config=${1:?usage: scaling_sweep.sh CONFIG}
here=$(cd "$(dirname "$0")" && pwd)
sweep=${SWEEP_DIR:-runs/sweep-$(date +%Y%m%d-%H%M%S)}
per_node=${RANKS_PER_NODE:-1}
steps=${STEPS:-20}
mkdir -p "$sweep"
for nodes in ${NODES:-1 2}; do
  for strategy in ${STRATEGIES:-full_shard hybrid_shard}; do
    for batch in ${BATCHES:-8}; do
      name="n${nodes}_${strategy}_g${batch}"
      cmd=(sbatch ${SBATCH_ARGS:-} --nodes="$nodes" --ntasks-per-node="$per_node" --job-name="sweep-$name"
           --output="$sweep/$name.log" "$here/multinode.sbatch" "$config"
           --fsdp.strategy "$strategy" --train.global_batch_size "$batch" --train.steps "$steps"
           --output.dir "$sweep/$name" --output.export false --checkpoint.at_end false)
      if [ -n "${DRY_RUN:-}" ]; then echo "${cmd[*]}"; else "${cmd[@]}"; fi
    done
  done
done
echo "sweep submitted into $sweep"
