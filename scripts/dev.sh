#!/usr/bin/env bash
# Set up the project's own virtual environment (first run only) and run one job in it.
#   scripts/dev.sh main   -> the main job: the default α sweep end to end (`powerflow sweep`: a local
#                            Prefect server, `dvc repro report`, the table, the MLflow UI command)
#   scripts/dev.sh test   -> the whole test suite
#   scripts/dev.sh main -S 'sweep.seeds=[0,1,2]'  -> the same sweep with three training seeds per α
#                            (`dvc exp run -S ...`: the override lands in params.yaml, as DVC records it)
# Any further arguments are passed on (to pytest for `test`, to `powerflow sweep` for `main`).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${POWERFLOW_VENV:-.venv}"
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "powerflow needs Python 3.11 (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

# Reinstall when pyproject.toml changes; the stamp names its hash.
stamp="$VENV/.powerflow-installed-$(sha256sum pyproject.toml | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "setting up $VENV (first run: about 3 minutes) ..."
  "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  "$VENV/bin/python" -m pip install --quiet -e ".[dev]"
  rm -f "$VENV"/.powerflow-installed-*
  touch "$stamp"
fi

export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 DVC_NO_ANALYTICS=1 \
  PREFECT_SERVER_ANALYTICS_ENABLED=false GX_ANALYTICS_ENABLED=false TOKENIZERS_PARALLELISM=false \
  MLFLOW_DISABLE_TELEMETRY=true DO_NOT_TRACK=1

job="${1:-}"
shift || true
case "$job" in
  main) PATH="$(cd "$VENV" && pwd)/bin:$PATH" exec "$VENV/bin/powerflow" sweep "$@" ;;
  test) exec "$VENV/bin/python" -m pytest "$@" ;;
  *) echo "usage: scripts/dev.sh main|test [args...]" >&2; exit 2 ;;
esac
