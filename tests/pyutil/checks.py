"""The test scripts' checks: check() prints each result as it comes ("ok   "
or "FAIL " and what was checked), remembers the failures in FAILURES, which
a script's main() turns into its exit code, and returns cond."""

FAILURES = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        FAILURES.append(what)
    return cond
