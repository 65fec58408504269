#!/usr/bin/env bash
# Set up everything sisock needs on a fresh Debian/Ubuntu machine (idempotent):
# system packages for mysqlclient, a virtualenv in .venv, and the project with all
# plugins' extras and the test tools. Safe to run again; quick when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
pkg-config --exists libmariadb 2>/dev/null || pkg-config --exists mysqlclient 2>/dev/null || need_apt+=(libmariadb-dev)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  echo "setup: installing system packages: ${need_apt[*]}"
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  "$PY" -m venv .venv
fi
stamp=.venv/.sisock-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing sisock with all extras into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[all,test]'
  # autobahn imports bjdata, whose wheel is built against numpy 1.x and prints a
  # traceback under numpy 2 at every start: rebuild it from source against ours.
  if .venv/bin/python -c "import bjdata" 2>&1 | grep -q "_ARRAY_API"; then
    echo "setup: rebuilding bjdata against numpy 2"
    .venv/bin/python -m pip install -q --disable-pip-version-check setuptools wheel
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-cache-dir --force-reinstall \
      --no-deps --no-build-isolation --no-binary bjdata "bjdata==$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("bjdata"))')"
  fi
  touch "$stamp"
fi
echo "setup: ready (.venv/bin/sisock)"
