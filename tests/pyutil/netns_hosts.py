#!/usr/bin/env python3
"""Two hosts on one machine, for multi-node tests and benchmarks.

Each host is a network namespace with a UTS namespace of its own (so
`hostname` differs and Open MPI, Slurm and llamaft see two nodes). The two
are joined by a veth pair on a private /24; `ip netns exec` bind-mounts
/etc/netns/HOST/hosts over /etc/hosts, so the names resolve to those
addresses. The file system stays shared, as on a cluster.

Open MPI reaches the second host through a plm_rsh_agent (the file `agent`
in the work folder) that enters the host's namespaces, as ssh would enter the
node: `agent [options] HOST COMMAND...`. TCP is pinned to the veth subnet.
Host names must not contain `_` (Open MPI's node regex refuses it).

    with TwoHosts(work) as hosts:           # or TwoHosts.skip_reason()
        subprocess.run(hosts.mpirun(2, [bin, "train", ...]))
        hosts.tx_bytes()                     # {"A": bytes sent A->B, "B": ...}
        hosts.set_link(False)                # cut the link

As a command (scripts and interactive use):
    netns_hosts.py up WORK [--prefix lf] | down [--prefix lf]
"""
import os
import shlex
import subprocess
import sys

ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")


def _ip(*args, check=True):
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r


class TwoHosts:
    """Hosts PREFIX+'A' and PREFIX+'B' at SUBNET.1 and SUBNET.2."""

    def __init__(self, work, prefix="lf", subnet="10.77.0"):
        self.work = work
        self.names = [prefix + "A", prefix + "B"]
        self.devs = [prefix + "vA", prefix + "vB"]
        self.addrs = [f"{subnet}.1", f"{subnet}.2"]
        self.subnet = f"{subnet}.0/24"
        self.agent = os.path.join(work, "agent")

    @staticmethod
    def skip_reason():
        """None when namespaces can be made here, else why not."""
        if os.geteuid() != 0:
            return "network namespaces need root"
        if subprocess.run(["sh", "-c", "command -v ip && command -v unshare"], capture_output=True).returncode:
            return "iproute2 (ip) or util-linux (unshare) is missing"
        probe = "llamaftprobe"
        r = _ip("netns", "add", probe, check=False)
        if r.returncode != 0:
            return f"cannot create a network namespace: {r.stderr.strip()}"
        try:
            r = _ip("link", "add", "lfprobe0", "netns", probe, "type", "veth", "peer", "name", "lfprobe1",
                    "netns", probe, check=False)
            if r.returncode != 0:
                return f"cannot create a veth pair: {r.stderr.strip()}"
            r = subprocess.run(["ip", "netns", "exec", probe, "unshare", "--uts", "hostname", "x"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                return f"cannot make a UTS namespace: {r.stderr.strip()}"
        finally:
            _ip("netns", "del", probe, check=False)
        return None

    def up(self):
        self.down()
        os.makedirs(self.work, exist_ok=True)
        a, b = self.names
        for h in self.names:
            _ip("netns", "add", h)
        _ip("link", "add", self.devs[0], "netns", a, "type", "veth", "peer", "name", self.devs[1], "netns", b)
        for h, dev, addr in zip(self.names, self.devs, self.addrs):
            _ip("-n", h, "addr", "add", addr + "/24", "dev", dev)
            _ip("-n", h, "link", "set", "lo", "up")
            _ip("-n", h, "link", "set", dev, "up")
            os.makedirs(f"/etc/netns/{h}", exist_ok=True)
            with open(f"/etc/netns/{h}/hosts", "w") as f:
                f.write("127.0.0.1 localhost\n" + "".join(f"{ad} {n}\n" for ad, n in zip(self.addrs, self.names)))
        with open(self.agent, "w") as f:
            f.write("#!/bin/sh\n"
                    "# plm_rsh_agent: agent [options] HOST COMMAND... runs COMMAND in HOST's namespaces.\n"
                    'while [ "${1#-}" != "$1" ]; do shift; done\n'
                    "host=$1; shift\n"
                    'exec ip netns exec "$host" unshare --uts sh -c "hostname $host; exec $*"\n')
        os.chmod(self.agent, 0o755)
        return self

    def down(self):
        for h in self.names:
            _ip("netns", "del", h, check=False)
            try:
                os.remove(f"/etc/netns/{h}/hosts")
                os.rmdir(f"/etc/netns/{h}")
            except OSError:
                pass

    def __enter__(self):
        return self.up()

    def __exit__(self, *exc):
        self.down()

    def on(self, host, argv):
        """argv run inside host (0 or 1): its network and a UTS namespace named after it."""
        h = self.names[host]
        return ["ip", "netns", "exec", h, "unshare", "--uts", "sh", "-c",
                f"hostname {h}; exec " + " ".join(shlex.quote(x) for x in argv)]

    def mca(self):
        """Open MPI settings for these hosts: the agent, TCP on the veth subnet only."""
        return ["--mca", "plm_rsh_agent", self.agent, "--mca", "btl", "tcp,self,vader",
                "--mca", "btl_tcp_if_include", self.subnet, "--mca", "oob_tcp_if_include", self.subnet]

    def mpirun(self, per_host, argv, hosts=2, extra=()):
        """mpirun from host A with per_host ranks on each of the first `hosts` hosts (by slot, so ranks
        0..per_host-1 are on A)."""
        hl = ",".join(f"{n}:{per_host}" for n in self.names[:hosts])
        return self.on(0, ["mpirun", "-q", "--oversubscribe", "--bind-to", "none", "--host", hl,
                           "-np", str(per_host * hosts), *self.mca(), *extra, *argv])

    def tx_bytes(self):
        """Bytes each host has sent over the link (its veth's tx_bytes, Ethernet frames)."""
        out = {}
        for h, dev in zip(self.names, self.devs):
            r = subprocess.run(["ip", "netns", "exec", h, "cat", f"/sys/class/net/{dev}/statistics/tx_bytes"],
                               capture_output=True, text=True, check=True)
            out[h] = int(r.stdout)
        return out

    def set_link(self, up):
        _ip("-n", self.names[0], "link", "set", self.devs[0], "up" if up else "down")

    def limit_rate(self, rate="1gbit"):
        """A token-bucket rate limit on both directions (tc tbf)."""
        for h, dev in zip(self.names, self.devs):
            subprocess.run(["ip", "netns", "exec", h, "tc", "qdisc", "replace", "dev", dev, "root", "tbf", "rate",
                            rate, "burst", "256kb", "latency", "100ms"], check=True, capture_output=True)


def main():
    import argparse
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=["up", "down", "check"])
    p.add_argument("work", nargs="?", default="/tmp/llamaft-hosts")
    p.add_argument("--prefix", default="lf")
    p.add_argument("--subnet", default="10.77.0")
    a = p.parse_args()
    hosts = TwoHosts(a.work, a.prefix, a.subnet)
    if a.action == "check":
        why = TwoHosts.skip_reason()
        print(why or "ok")
        return 77 if why else 0
    if a.action == "up":
        hosts.up()
        print(f"hosts {hosts.names} at {hosts.addrs}; agent {hosts.agent}")
    else:
        hosts.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
