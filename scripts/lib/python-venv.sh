# Shared by the scripts that run Python tools against a Veritrail server.
# `make_venv DIR` creates a virtualenv, installing Debian's python3-venv
# first where python3 lacks it. Sourcing this file also provides the test
# virtualenv target/python-venv with the pinned packages of
# scripts/python/requirements.txt, (re)installed only when that file changes,
# and sets VENV_PY to its python. Needs a `fail MESSAGE` function.

make_venv() {
  command -v python3 >/dev/null 2>&1 || fail "python3 is required"
  rm -rf "$1"
  if ! python3 -m venv "$1"; then
    # Debian's python3 keeps venv (ensurepip) in a package of its own.
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
    rm -rf "$1"
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends python3-venv \
      || { $sudo apt-get update && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends python3-venv; }
    python3 -m venv "$1" || fail "python3 -m venv failed"
  fi
}

if [ -z "${PYTHON_VENV_ONLY:-}" ]; then
  TEST_VENV="$PWD/target/python-venv"
  REQUIREMENTS="$PWD/scripts/python/requirements.txt"
  if ! cmp -s "$REQUIREMENTS" "$TEST_VENV/installed-requirements.txt" 2>/dev/null; then
    printf '\n==> %s\n' "installing the Python test packages into target/python-venv"
    make_venv "$TEST_VENV"
    "$TEST_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    cp "$REQUIREMENTS" "$TEST_VENV/installed-requirements.txt"
  fi
  VENV_PY="$TEST_VENV/bin/python"
fi
