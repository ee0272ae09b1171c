#!/usr/bin/env bash
# Issue #17 item 1: how the feature build scales with DuckDB threads (16, 2, 8, 4) against its floor, on a
# quiet many-core machine (the lent device machine: 16 cores), in one time-boxed call.
#
#   device:  INSTALL_WHEELS=1 BUDGET_S=400 bash benchmarks/device_scaling.sh      (carry .whl; OUT is set there)
#   here:    PY=.venv/bin/python CUSTOMERS=20000 BUDGET_S=120 OUT=/tmp/ds bash benchmarks/device_scaling.sh
#
# Steps, each only while the budget lasts (runs per thread count drop from 3 to 2 or 1 when the estimate
# says they would not fit; every bench call runs under `timeout` with what is left):
#   1. simulate CUSTOMERS customers once with the benchmark's own generator (bench_features.py, seed 0);
#   2. bench_features.py --threads 16: sql_rfm, sql_floor, rfm, features, features_duckdefault;
#   3. bench_features.py --profile at 16 threads: EXPLAIN ANALYZE of features, sql_floor, rfm, sql_rfm;
#   4. the same jobs at 2 threads, then 8 and 4 (features_duckdefault there only if time allows);
#   5. extras: the Parquet rewritten with DuckDB's 122,880-row groups (the generator's pyarrow writes 1M-row
#      groups: 10 per big file, so a scan has at most 10 parallel units), features + sql_floor at 16 threads;
#      and the features profile at 2 threads.
# Writes $OUT/device_scaling.log and $OUT/profiles.tar.gz (the EXPLAIN ANALYZE texts, JSONs and summaries).
set -u
T0=$SECONDS
OUT=${OUT:-$PWD/outputs/device_scaling}
mkdir -p "$OUT"
LOG=$OUT/device_scaling.log
BUDGET_S=${BUDGET_S:-400}
CUSTOMERS=${CUSTOMERS:-1000000}
PY=${PY:-python3}
DATA=${DATA:-/tmp/bench-features-sim-$CUSTOMERS}
PROF=$(mktemp -d /tmp/device_scaling_prof.XXXXXX)
export PYTHONUNBUFFERED=1
exec > >(tee -a "$LOG") 2>&1

if [ "${INSTALL_WHEELS:-0}" = 1 ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}

left() { echo $((BUDGET_S - (SECONDS - T0))); }
stamp() { echo "$(date -u +%H:%M:%S) UTC, $(left) s of the budget left, load $(cut -d' ' -f1-3 /proc/loadavg)"; }

echo "### device_scaling.sh: CUSTOMERS=$CUSTOMERS BUDGET_S=$BUDGET_S PY=$PY; $(stamp)"
echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo); $(free -g | awk '/Mem:/ {print "RAM " $2 " GiB, free " $4 " GiB"}')"
$PY - <<'EOF' || exit 4
import sys, duckdb, ibis, sqlglot, pydantic, pandas, pyarrow, numpy
import tiering.features, tiering.io
print(f"python {sys.version.split()[0]}; duckdb {duckdb.__version__}, ibis {ibis.__version__}, sqlglot {sqlglot.__version__}, "
      f"pydantic {pydantic.__version__}, pandas {pandas.__version__}, pyarrow {pyarrow.__version__}, numpy {numpy.__version__}")
EOF

# 1. data
s=$SECONDS
timeout $(($(left) - 10)) $PY benchmarks/bench_features.py --customers "$CUSTOMERS" --cache "$DATA" --jobs "" --runs 1 \
  --no-lifetimes || exit 5
echo "### data ready in $((SECONDS - s)) s; $(stamp)"

LAST=0
bench() {  # threads runs jobs [more bench_features.py args]
  local t=$1 r=$2 j=$3
  shift 3
  local lim=$(($(left) - 5))
  if [ "$lim" -lt 15 ]; then echo "### SKIPPED threads=$t jobs=$j: $lim s left"; LAST=0; return 1; fi
  echo "### threads=$t runs=$r jobs=$j $*; $(stamp)"
  local s=$SECONDS
  timeout "$lim" $PY benchmarks/bench_features.py --customers "$CUSTOMERS" --cache "$DATA" --runs "$r" --jobs "$j" \
    --no-lifetimes --threads "$t" "$@"
  local rc=$?
  LAST=$((SECONDS - s))
  echo "### threads=$t took $LAST s (rc $rc)"
}
runs_for() {  # estimated seconds per run, seconds this step may take -> runs (1..3)
  local est=$1 share=$2 r=3
  while [ "$r" -gt 1 ] && [ $((r * est)) -gt "$share" ]; do r=$((r - 1)); done
  echo "$r"
}

J4=sql_rfm,sql_floor,rfm,features
J5=$J4,features_duckdefault

# 2. 16 threads, 3 runs
bench 16 3 "$J5"
P16=$(((LAST + 2) / 3))  # seconds per run of the five jobs
[ "$P16" -gt 0 ] || P16=30

# 3. EXPLAIN ANALYZE at 16 threads
mkdir -p "$PROF/t16"
bench 16 1 features,sql_floor,rfm,sql_rfm --profile "$PROF/t16"

# 4. 2, 8, 4 threads; estimates per run from the 16-thread run (2 threads: 4x, 8: 1.4x, 4: 2.2x; the
#    five-job set), the remaining steps sharing what is left in those proportions (+ 10% reserve)
E2=$((P16 * 4)); E8=$((P16 * 14 / 10)); E4=$((P16 * 22 / 10))
avail=$(($(left) * 9 / 10))
r2=$(runs_for "$E2" $((avail * 40 / 76)))
bench 2 "$r2" "$J5"
[ "$LAST" -gt 0 ] && E2=$(((LAST + r2 - 1) / r2)) && E8=$((E2 * 35 / 100)) && E4=$((E2 * 55 / 100))
for t in 8 4; do
  if [ "$t" = 8 ]; then e=$E8; else e=$E4; fi
  avail=$(($(left) * 9 / 10))
  if [ "$t" = 8 ]; then share=$((avail * 14 / 36)); else share=$avail; fi
  jobs=$J5
  r=$(runs_for "$e" "$share")
  if [ "$r" -lt 3 ]; then jobs=$J4; e=$((e * 7 / 10)); r=$(runs_for "$e" "$share"); fi  # drop features_duckdefault first
  bench "$t" "$r" "$jobs"
done

# 5. extras while time is left
if [ "$(left)" -gt $((P16 * 2 + 20)) ]; then
  echo "### extra: Parquet with 122,880-row groups; $(stamp)"
  SMALL=$DATA-rg122880
  mkdir -p "$SMALL"
  $PY - "$DATA" "$SMALL" <<'EOF'
import sys, duckdb
src, dst = sys.argv[1:]
con = duckdb.connect()
for n in ("transactions", "interactions", "customers"):
    con.sql(f"COPY (SELECT * FROM read_parquet('{src}/{n}.parquet')) TO '{dst}/{n}.parquet' (FORMAT parquet, ROW_GROUP_SIZE 122880)")
print("rewritten", dst)
EOF
  DATA_SAVED=$DATA; DATA=$SMALL
  bench 16 "$(runs_for $((P16 / 2 + 1)) $(($(left) / 2)))" sql_floor,features
  DATA=$DATA_SAVED
fi
if [ "$(left)" -gt $((P16 + 20)) ]; then
  mkdir -p "$PROF/t2"
  bench 2 1 features --profile "$PROF/t2"
fi

tar -czf "$OUT/profiles.tar.gz" -C "$PROF" . && rm -rf "$PROF"
echo
echo "### SUMMARY ($(stamp))"
grep -E '^(### threads=|data:|job |sql_rfm |sql_floor |rfm |features |features_duckdefault |rfm vs|load average|[a-z_]+: latency|features: Ibis)' "$LOG" \
  | grep -v 'took' || true
echo "### done in $((SECONDS - T0)) s"
sleep 1  # let tee flush
