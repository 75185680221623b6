#!/usr/bin/env bash
# Checks the prerequisites of `make demo` / `make test`; prints one line per missing tool and exits 2.
set -u
python="${1:-python3.11}"
missing=0
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
  echo "streamrec: Python 3.11 is required (tried '$python'; set PYTHON=/path/to/python3.11)" >&2
  missing=1
fi
if ! command -v java >/dev/null 2>&1; then
  echo "streamrec: Java 17+ is required for the local Kafka broker (java not on PATH)" >&2
  missing=1
else
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  if [ -z "$major" ] || [ "$major" -lt 17 ]; then
    echo "streamrec: Java 17+ is required for the local Kafka broker (found ${major:-unknown})" >&2
    missing=1
  fi
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "streamrec: Maven (mvn) is required to resolve the Kafka jars" >&2
  missing=1
fi
exit $((missing * 2))
