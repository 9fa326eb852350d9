#!/bin/bash
# Instructions per forwarded packet of rtcd's worker, counted by callgrind
# (repeatable on a busy machine, unlike CPU time).
#
#   bench/scripts/callgrind-rtcd.sh OUT_DIR [LISTENERS] [WINDOW_S]
#
# Runs `bench run --scenario large-call-screen` against the release rtcd
# under valgrind, with instrumentation off while everyone joins; once every
# session is up and media flows it counts WINDOW_S seconds of the steady
# state and prints the worker thread's instructions per forwarded packet.
# valgrind slows rtcd ~50x: keep LISTENERS small (20 by default) and check
# the printed bench summary for loss and delay: under valgrind a delay p50
# of ~20 ms is normal, but a run whose delay grew to seconds had rtcd fall
# behind, and a backlogged rtcd batches more and reads cheaper than it is.
#
# Binaries: $BENCH (default: target/release/bench) and $RTCD (default: the
# rtcd next to it). $BENCH_ARGS: extra words for `bench run`, e.g.
# BENCH_ARGS=--web-listeners.
set -eu
out=${1:?usage: $0 OUT_DIR [LISTENERS] [WINDOW_S]}
n=${2:-20}
win=${3:-12}
target=${CARGO_TARGET_DIR:-target}
bench=${BENCH:-$target/release/bench}
rtcd=${RTCD:-$(dirname "$bench")/rtcd}
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/callgrind.*

wrapper="$out/rtcd-under-callgrind.sh"
cat > "$wrapper" <<WRAP
#!/bin/sh
exec valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \\
  --callgrind-out-file=$out/callgrind.%p "$rtcd" "\$@"
WRAP
chmod +x "$wrapper"

RTCD_BIN="$wrapper" "$bench" run --scenario large-call-screen --participants "$n" \
  --duration $((win + 16)) --wait-quiet 0 --out "$out" ${BENCH_ARGS:-} > "$out/bench.txt" 2>&1 &
bench_pid=$!
vg=""
for _ in $(seq 1 200); do
  vg=$(pgrep -P "$bench_pid" | head -1 || true)
  [ -n "$vg" ] && break
  sleep 0.2
done
[ -n "$vg" ] || { echo "rtcd did not start"; exit 1; }
api=""
for _ in $(seq 1 120); do
  api=$(ss -ltnpH | grep "pid=$vg," | awk '{print $4}' | head -1 || true)
  [ -n "$api" ] && break
  sleep 1
done
metric() { curl -s "http://$api/metrics" | awk -v k="$1" '$1 ~ k {s += $2} END {printf "%d", s}'; }
for _ in $(seq 1 600); do
  [ "$(metric '^rtcd_sessions$')" -ge $((n + 2)) ] && [ "$(metric '^rtcd_forwarded_packets_total')" -gt 0 ] && break
  sleep 1
done
sleep 8
f0=$(metric '^rtcd_forwarded_packets_total')
callgrind_control -i on "$vg" > /dev/null
sleep "$win"
callgrind_control -d "$vg" > /dev/null
callgrind_control -i off "$vg" > /dev/null
f1=$(metric '^rtcd_forwarded_packets_total')
wait "$bench_pid" || true
# The worker is the thread with the most instructions in the window's dump.
best=""; best_ir=0
for f in "$out"/callgrind.*.1-*; do
  ir=$(awk '/^summary:/ {print $2}' "$f")
  if [ "${ir:-0}" -gt "$best_ir" ]; then best=$f; best_ir=$ir; fi
done
# Forwarded copies counted exactly: one str0m write_rtp call each.
writes=$(callgrind_annotate --tree=caller "$best" 2> /dev/null |
  awk '/^$/ {n = 0; next}
       /< / {c[n++] = $0; next}
       /\*  .*StreamTx::write_rtp \[/ {for (i = 0; i < n; i++) print c[i]; exit}
       {n = 0}' |
  sed -E 's/.*\(([0-9,]+)x\).*/\1/' | tr -d , | awk '{s += $1} END {print s + 0}' || true)
echo "worker profile: $best"
echo "window ${win} s: ${best_ir} instructions in the worker; ${writes} packets written to subscribers (rtcd's /metrics: $((f1 - f0)))"
echo "instructions per forwarded packet: $((best_ir / (writes > 0 ? writes : 1)))"
grep -E "forwarded|loss|one-way delay|joins|valid" "$out/bench.txt" || true
