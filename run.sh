#!/usr/bin/env bash
# The two commands of the README:
#   bash run.sh demo   set up .venv if needed, run the pipeline on the embedded data, write results/report.html
#   bash run.sh test   set up .venv if needed, run the test suite
# Extra arguments go to snakemake (demo) or pytest (test). Safe to run again: the
# environment is reinstalled only when pyproject.toml changes, and Snakemake reruns only
# what is out of date.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

ensure_env() {
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    local stamp="$VENV/.installed-$(sha256sum pyproject.toml | cut -c1-16)"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        # torch and torchvision come from the registry together (the standard build also runs on a CPU).
        "$VENV/bin/python" -m pip install --quiet -e ".[workflow,test]"
        touch "$stamp"
    fi
}

command=${1:-demo}
shift || true
case "$command" in
    demo)
        ensure_env
        "$VENV/bin/snakemake" --cores "${CORES:-all}" "$@"
        "$VENV/bin/snakemake" --report results/report.html "$@"
        echo "Report: results/report.html"
        ;;
    test)
        ensure_env
        "$VENV/bin/python" -m pytest "$@"
        ;;
    *)
        echo "usage: bash run.sh demo|test [arguments for snakemake|pytest]" >&2
        exit 2
        ;;
esac
