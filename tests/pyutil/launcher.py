"""The MPI launcher the tests use: Open MPI's `mpirun` by default, or the one
named by LLAMAFT_MPIEXEC (e.g. `mpiexec.mpich`, for the MPICH build in CI).
Open MPI needs --oversubscribe to run more ranks than cores; MPICH's Hydra
oversubscribes by itself and takes -genv instead of -x."""
import os


def launcher():
    return os.environ.get("LLAMAFT_MPIEXEC", "mpirun")


def is_open_mpi(cmd=None):
    name = os.path.basename(cmd or launcher())
    return "mpich" not in name and "hydra" not in name


def mpirun(np_, argv, env_vars=()):
    """The command line running argv on np_ ranks; env_vars: names to pass to the ranks."""
    cmd = launcher()
    if is_open_mpi(cmd):
        out = [cmd, "--oversubscribe", "-np", str(np_)]
        for v in env_vars:
            out += ["-x", v]
    else:
        out = [cmd, "-n", str(np_)]
        for v in env_vars:
            out += ["-genvlist", v]
    return out + list(argv)
