"""The MPI launcher the tests use: the one named by LLAMAFT_MPIEXEC (CMake
sets it to the build's MPIEXEC_EXECUTABLE for every test, e.g.
/usr/bin/mpiexec.mpich in an MPICH build), else Open MPI's `mpirun`.

The two launcher families take different flags:
  Open MPI (mpirun/orterun/prterun): --oversubscribe to run more ranks than
    cores, -q to drop its banners, --bind-to none, -x VAR to pass a variable.
  MPICH's Hydra (mpiexec.hydra, mpiexec.mpich; Intel MPI's too): oversubscribes
    and binds to nothing by default, prints no banners, -genvlist VAR.
Which family a launcher is comes from its name, else from `--version`."""
import functools
import os
import subprocess


def launcher():
    return os.environ.get("LLAMAFT_MPIEXEC") or "mpirun"


@functools.lru_cache(maxsize=None)
def _kind(cmd):
    name = os.path.basename(cmd)
    if "mpich" in name or "hydra" in name:
        return "hydra"
    if "openmpi" in name or "orterun" in name or "prterun" in name:
        return "openmpi"
    try:
        v = subprocess.run([cmd, "--version"], capture_output=True, text=True, timeout=30)
        text = v.stdout + v.stderr
    except (OSError, subprocess.SubprocessError):
        return "openmpi"
    return "hydra" if "HYDRA" in text or "Intel(R) MPI" in text else "openmpi"


def is_open_mpi(cmd=None):
    return _kind(cmd or launcher()) == "openmpi"


def is_hydra(cmd=None):
    return _kind(cmd or launcher()) == "hydra"


def name():
    """'Open MPI' or 'MPICH (Hydra)', for messages."""
    return "Open MPI" if is_open_mpi() else "MPICH (Hydra)"


def signalled_exit_ok(returncode, want):
    """Whether a launcher that was sent a signal reported its ranks' exit code
    (want). MPICH 4.0's Hydra sometimes loses the ranks' status after
    forwarding a signal and exits 0 (3 of 10 trials with a plain C program
    whose ranks all exit 85), so 0 is accepted from Hydra alone; the callers
    also require LLAMAFT_EXIT_STATUS_FILE to say want, as the job scripts
    trust it then."""
    return returncode == want or (is_hydra() and returncode == 0)


def mpirun(np_, argv, env_vars=(), quiet=False, hosts=None):
    """The command line running argv on np_ ranks; env_vars: names to pass to
    the ranks (both launchers pass the whole environment to local ranks);
    quiet: no launcher banners (Open MPI's -q; Hydra prints none);
    hosts: a host list ("a:2,b:2"), Open MPI's --host / Hydra's -hosts."""
    cmd = launcher()
    if is_open_mpi(cmd):
        out = [cmd] + (["-q"] if quiet else []) + ["--oversubscribe", "--bind-to", "none"]
        if hosts:
            out += ["--host", hosts]
        out += ["-np", str(np_)]
        for v in env_vars:
            out += ["-x", v]
    else:
        out = [cmd]
        if hosts:
            out += ["-hosts", hosts]
        out += ["-n", str(np_)]
        if env_vars:
            out += ["-genvlist", ",".join(env_vars)]
    return out + list(argv)


def ranks(launcher_pid):
    """{rank: pid} of the ranks the launcher started on this host, now:
    Open MPI's ranks are mpirun's children, Hydra's the children of its
    hydra_pmi_proxy (itself mpiexec's child); the rank is from
    OMPI_COMM_WORLD_RANK or PMI_RANK in the process's environment."""
    parent = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                parent[int(pid)] = int(open(f"/proc/{pid}/stat").read().rsplit(") ", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    found = {}
    for pid in parent:
        up, depth = parent.get(pid), 0
        while up not in (None, 0, 1, launcher_pid) and depth < 3:
            up, depth = parent.get(up), depth + 1
        if up != launcher_pid:
            continue
        try:
            env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
        except OSError:
            continue
        for kv in env:
            if kv.startswith(b"OMPI_COMM_WORLD_RANK=") or kv.startswith(b"PMI_RANK="):
                found[int(kv.split(b"=", 1)[1])] = pid
                break
    return found
