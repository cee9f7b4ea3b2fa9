#!/usr/bin/env bash
# Install the project into a virtual environment: `make install` (and so `make run`, `make test`)
# calls this. Usage: scripts/install.sh PYTHON VENV EXTRAS
#
# Why a script: the install is the first thing a new user waits for, and pip's "Installing collected
# packages" phase prints nothing for minutes. Here every phase prints a line with its time, the
# installer is uv (a fast resolver/installer published on PyPI as a wheel, installed into the venv
# with the venv's own pip, so nothing is installed by hand), with plain pip only where uv cannot be
# installed; on a terminal uv draws its live progress bars, and wherever the installer can be quiet
# (a log, CI, pip's install phase) a "still installing" line is printed every 15 s.
# MELANOMA_INSTALLER=pip forces pip (benchmarks/bench_install.py compares the two).
set -euo pipefail

PYTHON=${1:-python3}
VENV=${2:-.venv}
EXTRAS=${3:-dev}
INSTALLER=${MELANOMA_INSTALLER:-uv}
BIN=$VENV/bin
started=$SECONDS

say() { printf 'install [%3d s] %s\n' "$((SECONDS - started))" "$*"; }

# A line every 15 s while a quiet command runs, so that a log never shows a minute of silence.
ticker_pid=
start_ticker() {
    local what=$1 since=$SECONDS
    # 1-s sleeps: a killed ticker leaves no sleep behind holding the output pipe open.
    (next=$((since + 15)); while sleep 1; do
        if [ "$SECONDS" -ge "$next" ]; then
            say "... still $what ($((SECONDS - since)) s)"
            next=$((next + 15))
        fi
    done) &
    ticker_pid=$!
}
stop_ticker() {
    if [ -n "$ticker_pid" ]; then
        kill "$ticker_pid" 2>/dev/null || true
        wait "$ticker_pid" 2>/dev/null || true
        ticker_pid=
    fi
}
trap stop_ticker EXIT

if [ -x "$BIN/python" ]; then
    say "1/3 virtual environment $VENV: reused ($("$BIN/python" --version))"
else
    say "1/3 virtual environment $VENV: creating it with $PYTHON"
    "$PYTHON" -m venv "$VENV"
fi

uv=
if [ "$INSTALLER" = "uv" ]; then
    [ -x "$BIN/uv" ] || say "2/3 installer: installing uv from PyPI into $VENV"
    if [ -x "$BIN/uv" ] || "$BIN/python" -m pip install --quiet --disable-pip-version-check uv; then
        uv=$BIN/uv
        say "2/3 installer: $("$uv" --version) (from PyPI, into $VENV)"
    else
        say "2/3 installer: uv could not be installed from PyPI: using pip (slower: minutes)"
    fi
else
    say "2/3 installer: pip (MELANOMA_INSTALLER=$INSTALLER)"
fi

# The versions the test suite last passed with (scripts/constraints.txt says why and how to move on).
CONSTRAINTS=$(dirname "$0")/constraints.txt
say "3/3 the project and its dependencies (.[${EXTRAS}], the tested versions): resolving, downloading, installing"
if [ -n "$uv" ]; then
    # On a terminal uv shows its own live progress; elsewhere its lines come per phase, so the ticker
    # covers the resolution and the long downloads.
    [ -t 2 ] || start_ticker "resolving and installing with uv"
    "$uv" pip install --python "$BIN/python" -c "$CONSTRAINTS" -e ".[${EXTRAS}]"
else
    "$BIN/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
    start_ticker "installing with pip"
    "$BIN/python" -m pip install --disable-pip-version-check --progress-bar on -c "$CONSTRAINTS" -e ".[${EXTRAS}]"
fi
stop_ticker
say "done: $VENV is ready (installed with $([ -n "$uv" ] && echo uv || echo pip))"
