# Sourced by demo.sh and test.sh: create (or reuse) $VENV with $PYTHON and install loopprof with the extras named
# in $EXTRAS, plus the OTLP exporter distribution from exporters/.
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -qq --upgrade pip >/dev/null
"$VENV/bin/python" -m pip install -qq -e ./exporters/loopprof-exporter-otlp -e ".[$EXTRAS]"
