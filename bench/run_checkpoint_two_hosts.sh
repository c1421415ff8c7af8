#!/usr/bin/env bash
# Checkpoint save and load time with 4 ranks on two hosts against the same 4
# ranks on one host. The two hosts are network namespaces joined by a veth
# pair, each with its own UTS namespace (so `hostname` differs and Open MPI
# sees 2 nodes x 2 ranks); mpirun reaches the second through a plm_rsh_agent
# that enters its namespaces. Traffic stays on 10.77.0.0/24 between them; the
# file system is shared, as on a cluster. Needs root and iproute2; the
# namespaces are removed on exit. Not the two-host test harness (the
# multi-node issue's); only what the checkpoint bench needs.
# Usage: bench/run_checkpoint_two_hosts.sh   (TWO_HOST_TRIES=3, BENCH_DIR=/tmp/llamaft-ckpt-2h)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${LLAMAFT_BUILD_DIR:-$root/build}/llamaft
work=${BENCH_DIR:-/tmp/llamaft-ckpt-2h}
tries=${TWO_HOST_TRIES:-3}
# 4 ranks on this machine's cores either way: Open MPI yields the core when
# idle on one host, where it sees more ranks than cores, but not on the two
# "hosts" of 2 slots each; TWO_HOST_YIELD=1 (default) makes them alike.
yield=${TWO_HOST_YIELD:-1}
[ "$(id -u)" = 0 ] || { echo "skip: needs root for network namespaces"; exit 0; }
rm -rf "$work"; mkdir -p "$work"
cleanup() { ip netns del ckA 2>/dev/null || true; ip netns del ckB 2>/dev/null || true; rm -rf /etc/netns/ckA /etc/netns/ckB; }
trap cleanup EXIT
cleanup
ip netns add ckA; ip netns add ckB
ip link add ckvA type veth peer name ckvB
ip link set ckvA netns ckA; ip link set ckvB netns ckB
ip -n ckA addr add 10.77.0.1/24 dev ckvA; ip -n ckB addr add 10.77.0.2/24 dev ckvB
for h in ckA ckB; do ip -n $h link set lo up; done
ip -n ckA link set ckvA up; ip -n ckB link set ckvB up
for h in ckA ckB; do
  mkdir -p /etc/netns/$h   # `ip netns exec` bind-mounts this over /etc/hosts
  printf "127.0.0.1 localhost\n10.77.0.1 ckA\n10.77.0.2 ckB\n" > /etc/netns/$h/hosts
done
cat > "$work/agent" <<'EOF'
#!/bin/sh
# plm_rsh_agent: agent [options] HOST COMMAND... runs COMMAND in HOST's namespaces.
while [ "${1#-}" != "$1" ]; do shift; done
host=$1; shift
exec ip netns exec "$host" unshare --uts sh -c "hostname $host; exec $*"
EOF
chmod +x "$work/agent"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
"$bin" init --preset tiny --output "$work/tiny" >/dev/null
"$bin" init --preset small --output "$work/small" >/dev/null
/usr/bin/python3 -c "
import json, random
r = random.Random(0)
for name, vocab in (('tiny', 1024), ('small', 32000)):
    with open('$work/' + name + '.jsonl', 'w') as f:
        for _ in range(64): f.write(json.dumps({'input_ids': [r.randrange(3, vocab) for _ in range(32)]}) + '\n')"
train_args() { # model strategy out steps
  echo "$bin train --model.path $work/$1 --data.path $work/$1.jsonl --data.seq_len 32 --train.global_batch_size 4" \
       "--output.export false --output.progress false --train.steps $4 --checkpoint.async false" \
       "--fsdp.strategy $2 --fsdp.shard_group_size 2 --output.dir $3"
}
two_hosts() {
  ip netns exec ckA unshare --uts sh -c "hostname ckA; mpirun --oversubscribe --bind-to none --host ckA:2,ckB:2 -np 4 --mca mpi_yield_when_idle $yield \
    --mca plm_rsh_agent $work/agent --mca btl tcp,self,vader --mca btl_tcp_if_include 10.77.0.0/24 \
    --mca oob_tcp_if_include 10.77.0.0/24 $*"
}
one_host() { mpirun --oversubscribe --bind-to none -np 4 "$@"; }
: > "$work/times.txt"
for model in tiny small; do
  for strategy in hybrid_shard full_shard; do
    for t in $(seq "$tries"); do
      for where in one two; do
        out="$work/$where-$model-$strategy-$t"
        if [ $where = two ]; then run=two_hosts; else run=one_host; fi
        # shellcheck disable=SC2046
        $run $(train_args $model $strategy "$out" 2) 2> "$out.save.log"
        $run $(train_args $model $strategy "$out" 3) 2> "$out.load.log"
        hosts=$(/usr/bin/python3 -c "import json; print(len(set(json.load(open('$out/run_info.json'))['hostnames'])))")
        save=$(grep "checkpoint .*MB in" "$out.save.log" | tail -1 | sed -E 's/.*\(([0-9.e+]+) MB in ([0-9.e+-]+) s.*/\1 \2/')
        load=$(grep "resumed from" "$out.load.log" | sed -E 's/.* in ([0-9.e+-]+) s.*/\1/')
        echo "$model $strategy $where $hosts $save $load" >> "$work/times.txt"
      done
    done
  done
done
/usr/bin/python3 - "$work/times.txt" <<'PY'
import collections, statistics, sys
rows = collections.defaultdict(list)
for l in open(sys.argv[1]):
    model, strategy, where, hosts, mb, save, load = l.split()
    rows[(model, strategy, where)].append((int(hosts), float(mb), float(save), float(load)))
print("checkpoint of 4 ranks, two hosts (network namespaces over veth) against one host; medians of tries")
for model in ("tiny", "small"):
    for strategy in ("hybrid_shard", "full_shard"):
        one, two = rows[(model, strategy, "one")], rows[(model, strategy, "two")]
        s1, s2 = statistics.median(r[2] for r in one), statistics.median(r[2] for r in two)
        l1, l2 = statistics.median(r[3] for r in one), statistics.median(r[3] for r in two)
        print(f"  {model:5} {strategy:12} {one[0][1]:7.1f} MB  save {s1:.3f} s on 1 host ({one[0][0]} seen), "
              f"{s2:.3f} s on 2 hosts ({two[0][0]} seen): {s2 / s1:.2f}x   load {l1:.3f} / {l2:.3f} s: {l2 / l1:.2f}x")
PY
