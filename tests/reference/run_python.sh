#!/bin/sh
# Runs a reference-test script with the Python given as $1 (LLAMAFT_PYTHON),
# or with /usr/bin/python3 when that path is not an executable -- the venv of
# scripts/setup_python_env.sh may be made after CMake ran. The scripts then
# compare against the own torch oracle only, and say so.
py=$1
shift
if [ ! -x "$py" ]; then
  echo "note: $py is missing (scripts/setup_python_env.sh makes it); using /usr/bin/python3" >&2
  py=/usr/bin/python3
fi
exec "$py" "$@"
