#!/usr/bin/env bash
# Prints the path of a working Python 3.10 (TFX 1.16 needs exactly 3.10), or fails naming
# every candidate it tried. Called by the Makefile to create .venv.
set -u
tried=()
try() {
  local py=$1
  tried+=("$py")
  if "$py" -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1; then
    command -v "$py" 2>/dev/null || echo "$py"
    exit 0
  fi
}
[ -n "${MOVIEREC_PYTHON:-}" ] && try "$MOVIEREC_PYTHON"
try python3.10
for root in "${PYENV_ROOT:-}" "$HOME/.pyenv"; do
  [ -n "$root" ] || continue
  for py in "$root"/versions/3.10*/bin/python3.10; do
    [ -e "$py" ] && try "$py"
  done
done
for py in /usr/bin/python3.10 /usr/local/bin/python3.10 python3; do
  try "$py"
done
{
  echo "error: no working Python 3.10 found (TFX 1.16 needs Python 3.10)."
  echo "tried: ${tried[*]}"
  echo "install Python 3.10 (e.g. 'pyenv install 3.10') or set MOVIEREC_PYTHON=/path/to/python3.10"
} >&2
exit 1
