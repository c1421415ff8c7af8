"""What the Slurm tests share: a shell helper and munged."""
import os
import subprocess


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
