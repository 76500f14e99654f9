# Shared by the scripts that run Python against a Veritrail server: a
# virtualenv under target/python-venv with the pinned packages of
# scripts/python/requirements.txt, (re)installed only when that file changes.
# Source it; it sets VENV_PY. Needs a `fail MESSAGE` function.

VENV="$PWD/target/python-venv"
REQUIREMENTS="$PWD/scripts/python/requirements.txt"
command -v python3 >/dev/null 2>&1 || fail "python3 is required"
if ! cmp -s "$REQUIREMENTS" "$VENV/installed-requirements.txt" 2>/dev/null; then
  printf '\n==> %s\n' "installing the Python test packages into target/python-venv"
  rm -rf "$VENV"
  if ! python3 -m venv "$VENV"; then
    # Debian's python3 keeps venv (ensurepip) in a package of its own.
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    rm -rf "$VENV"
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends python3-venv \
      || { $SUDO apt-get update && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends python3-venv; }
    python3 -m venv "$VENV" || fail "python3 -m venv failed"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  cp "$REQUIREMENTS" "$VENV/installed-requirements.txt"
fi
VENV_PY="$VENV/bin/python"
