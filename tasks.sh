#!/usr/bin/env bash
# The two set-up commands of the README, on a fresh machine with Python 3.11:
#   bash tasks.sh quickstart   venv + requirements, train configs/quickstart.py, evaluate it
#   bash tasks.sh test         venv + requirements, the whole test suite (what CI runs)
set -euo pipefail
cd "$(dirname "$0")"

VENV=${JAXLM_VENV:-.venv}
PYTHON_BIN=${PYTHON:-$(command -v python3.11 || command -v python3)}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  # Reinstall only when requirements.txt changed since the last install.
  local stamp="$VENV/.requirements.sha256"
  local wanted
  wanted=$(sha256sum requirements.txt | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -r requirements.txt
    echo "$wanted" > "$stamp"
  fi
}

case "${1:-}" in
  quickstart)
    setup
    WORKDIR=${WORKDIR:-runs/quickstart}
    "$VENV/bin/python" launch/train.py --config=configs/quickstart.py --workdir="$WORKDIR"
    "$VENV/bin/python" launch/evaluate.py --workdir="$WORKDIR" --split=valid,test
    ;;
  test)
    setup
    status=0
    # Two workers, each module's tests on one of them (module fixtures are built once);
    # JAXLM_TEST_WORKERS=0 runs in this process alone (e.g. with --pdb).
    "$VENV/bin/python" -m pytest -q -n "${JAXLM_TEST_WORKERS:-2}" --dist loadfile "${@:2}" || status=$?
    # pytest exits 5 when it collected no test: that is a failure here, not a pass.
    exit $status
    ;;
  *)
    echo "usage: bash tasks.sh quickstart | bash tasks.sh test [pytest args]" >&2
    exit 2
    ;;
esac
