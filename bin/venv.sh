# Sourced by bin/test and bin/run-demo (from the project's directory): the project's virtualenv, .venv/ (or
# $MTDISPATCH_VENV), created with `python3 -m venv` on first use and reused after; requirements.txt is installed
# into it when it changed since the last install. Nothing is installed into the machine's interpreter.
VENV="${MTDISPATCH_VENV:-$PWD/.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating the project's virtualenv in $VENV" >&2
  python3 -m venv "$VENV" || {
    echo "python3 -m venv failed: on Debian or Ubuntu, apt-get install python3-venv" >&2
    rm -rf "$VENV"
    exit 1
  }
fi
_stamp="$VENV/.requirements.sha256"
_want="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$_stamp" 2>/dev/null)" != "$_want" ]; then
  echo "Installing requirements.txt into $VENV" >&2
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements.txt
  echo "$_want" > "$_stamp"
fi
export VIRTUAL_ENV="$VENV"
export PATH="$VENV/bin:$PATH"
unset PYTHONHOME _stamp _want
