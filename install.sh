#!/usr/bin/env bash
# Install libresh from this checkout for the current user.
#
#   ./install.sh          libresh in its own virtual environment, linked as ~/.local/bin/libresh
#                         (uv or pipx are used instead when present: LIBRESH_INSTALLER=venv|uv|pipx)
#   ./install.sh --dev    an editable install with test tools in ./.venv (for working on libresh)
#
# Safe to run again: it updates what is there.
set -euo pipefail

usage() {
    sed -n '2,8s/^# \{0,1\}//p' "$0"
}

fail() {
    printf 'install.sh: %s\n' "$1" >&2
    [ $# -gt 1 ] && printf '  %s\n' "${@:2}" >&2
    exit "${EXIT_CODE:-1}"
}

DEV=0
for arg in "$@"; do
    case "$arg" in
        --dev) DEV=1 ;;
        -h|--help) usage; exit 0 ;;
        *) EXIT_CODE=2 fail "unknown option '$arg'" "Usage: ./install.sh [--dev]" ;;
    esac
done

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PYTHON="${PYTHON:-python3}"
MIN_PYTHON="3.11"

command -v "$PYTHON" >/dev/null 2>&1 || fail "Python 3 was not found (looked for '$PYTHON')." \
    "On Debian/Ubuntu: sudo apt install python3 python3-venv" \
    "Or point PYTHON at a Python ${MIN_PYTHON}+ interpreter: PYTHON=/usr/bin/python3.12 ./install.sh"

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || fail \
    "libresh needs Python ${MIN_PYTHON} or newer; $("$PYTHON" -V 2>&1) was found at $(command -v "$PYTHON")." \
    "Debian 12 and Ubuntu 24.04 ship a recent enough python3; on older systems install python3.11 and run:" \
    "PYTHON=python3.11 ./install.sh"

"$PYTHON" -c 'import venv, ensurepip' 2>/dev/null || fail \
    "Python's venv module (with ensurepip) is missing." \
    "On Debian/Ubuntu: sudo apt install python3-venv"

make_venv() {  # make_venv DIR: create or refresh a virtual environment with a recent pip
    "$PYTHON" -m venv "$1"
    "$1/bin/python" -m pip install --quiet --upgrade pip
}

if [ "$DEV" = 1 ]; then
    make_venv "$HERE/.venv"
    "$HERE/.venv/bin/python" -m pip install --quiet --editable "$HERE[dev]"
    echo "libresh (editable, with test tools) is installed in $HERE/.venv"
    echo "Run the tests with: .venv/bin/pytest"
    exit 0
fi

DATA_HOME="${XDG_DATA_HOME:-$HOME/.local/share}"
BIN_DIR="$HOME/.local/bin"
INSTALLER="${LIBRESH_INSTALLER:-}"
if [ -z "$INSTALLER" ]; then
    if command -v uv >/dev/null 2>&1; then INSTALLER=uv
    elif command -v pipx >/dev/null 2>&1; then INSTALLER=pipx
    else INSTALLER=venv
    fi
fi

case "$INSTALLER" in
    uv)
        uv tool install --reinstall --python "$PYTHON" "$HERE"
        ;;
    pipx)
        pipx install --force --python "$PYTHON" "$HERE"
        ;;
    venv)
        VENV="$DATA_HOME/libresh/venv"
        make_venv "$VENV"
        "$VENV/bin/python" -m pip install --quiet --upgrade "$HERE"
        mkdir -p "$BIN_DIR"
        ln -sfn "$VENV/bin/libresh" "$BIN_DIR/libresh"
        ;;
    *)
        EXIT_CODE=2 fail "LIBRESH_INSTALLER='$INSTALLER' is not one of venv, uv, pipx."
        ;;
esac

echo "libresh $("$BIN_DIR/libresh" --version | cut -d' ' -f2) is installed as $BIN_DIR/libresh (via $INSTALLER)"
case ":$PATH:" in
    *":$BIN_DIR:"*) ;;
    *) echo "Note: $BIN_DIR is not on your PATH; add it, e.g. echo 'export PATH=\"\$HOME/.local/bin:\$PATH\"' >> ~/.bashrc" ;;
esac
