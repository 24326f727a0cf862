#!/usr/bin/env bash
# Install everything, then run the whole test suite. The Kafka tests start and stop their own
# Apache Kafka broker; they must run (TXMON_REQUIRE_KAFKA=1 fails the run if any was skipped).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export TXMON_REQUIRE_KAFKA=1
# One thread per library: two cores are shared by the broker, the worker and the tests.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=${MKL_NUM_THREADS:-1}
set +e
.venv/bin/ruff check .
ruff_rc=$?
.venv/bin/pytest -p no:cacheprovider --durations=15 "$@"
rc=$?
set -e
# pytest exit 5 means no test ran: that is a failure here, not a pass.
[ "$rc" -eq 5 ] && { echo "pytest ran no tests" >&2; exit 1; }
[ "$rc" -ne 0 ] && exit "$rc"
[ "$ruff_rc" -ne 0 ] && { echo "ruff found problems" >&2; exit 1; }
exit 0
