"""What the Slurm tests share: a shell helper, munged, the cluster policy of
their slurm.conf, and how long to wait before releasing a requeued job."""
import os
import subprocess

# slurm.conf lines both test clusters use: no cgroups or accounting, requeue allowed, nodes back in service.
POLICY = """ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
JobRequeue=1
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
"""

# slurmd revokes a requeued job's old credential at one-second resolution: a launch whose credential is made
# in the same second counts as revoked ("Job credential revoked") and the job FAILs. Slurm's own requeue delay
# avoids it; a test that releases the job at once (StartTime=now) must wait past that second too.
REVOKE_WAIT_S = 2.5


def sh(cmd, env=None, check_rc=True, timeout=120):
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, shell=isinstance(cmd, str))
    if check_rc and r.returncode != 0:
        raise RuntimeError(f"{cmd} failed ({r.returncode}): {r.stdout} {r.stderr}")
    return r


def start_munge():
    """munged as the munge user, with a key made if there is none; left running afterwards (its socket in
    /run/munge serves every network namespace). Returns None, or why it cannot run."""
    if not os.path.exists("/etc/munge/munge.key"):
        sh("mungekey --create 2>/dev/null || /usr/sbin/create-munge-key -f", check_rc=False)
    sh("mkdir -p /run/munge && chown munge:munge /run/munge /etc/munge/munge.key 2>/dev/null; "
       "chmod 0400 /etc/munge/munge.key", check_rc=False)
    if sh("pgrep -x munged", check_rc=False).returncode != 0:
        r = sh("runuser -u munge -- /usr/sbin/munged --force", check_rc=False)
        if r.returncode != 0:
            return f"munged would not start: {r.stderr.strip()}"
    if sh("munge -n | unmunge", check_rc=False).returncode != 0:
        return "munge credentials do not round-trip (munge -n | unmunge failed)"
    return None
