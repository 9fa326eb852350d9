#!/bin/bash
# Where rtcd's memory goes, by allocation site: runs one `bench run` against
# the release rtcd under heaptrack and prints the largest live allocation
# sites at the peak and at the end, and the heap over time.
#
#   bench/scripts/heap-rtcd.sh OUT_DIR BENCH_RUN_ARGS...
#   e.g. bench/scripts/heap-rtcd.sh /tmp/heap-meeting --scenario meeting --participants 8 --duration 30
#
# heaptrack (Debian package `heaptrack`, installed here if absent) records
# every malloc/free with its stack; it slows rtcd by ~2-4x, so keep the load
# modest and read the bench's own figures (RSS, delay) from that run as
# disturbed. Sizes are the heap's own bookkeeping (what is allocated), not
# RSS: the difference is what the allocator holds free.
#
# Binaries: $BENCH (default: $CARGO_TARGET_DIR/release/bench) and $RTCD
# (default: the rtcd next to it). $RTCD_ENV: extra `NAME=value` words for
# rtcd's environment (`bench run` passes no RTCD_* variable of its own
# caller through), e.g. RTCD_ENV="RTCD_RTC__RESEND_WINDOW_MS=3000".
set -eu
out=${1:?usage: $0 OUT_DIR BENCH_RUN_ARGS...}
shift
target=${CARGO_TARGET_DIR:-target}
bench=${BENCH:-$target/release/bench}
rtcd=${RTCD:-$(dirname "$bench")/rtcd}
command -v heaptrack > /dev/null || apt-get install -y -q heaptrack > /dev/null
mkdir -p "$out"
out=$(cd "$out" && pwd)
rm -f "$out"/heaptrack.rtcd.*

wrapper="$out/rtcd-under-heaptrack.sh"
cat > "$wrapper" <<WRAP
#!/bin/sh
exec env HEAP_RTCD_RUN="$out" ${RTCD_ENV:-} heaptrack -o "$out/heaptrack.rtcd" "$rtcd" "\$@"
WRAP
chmod +x "$wrapper"

RTCD_BIN="$wrapper" "$bench" run "$@" --wait-quiet 0 --out "$out" > "$out/bench.txt" 2>&1 || true
# The bench's SIGTERM reaches the heaptrack shell, not rtcd under it: stop
# this run's rtcd (its binary, marked with this run's directory), then let
# heaptrack finish writing.
ours() {
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [ "$(readlink "/proc/$p/exe" 2> /dev/null)" = "$(readlink -f "$rtcd")" ] || continue
    tr '\0' '\n' < "$e" 2> /dev/null | grep -qx "HEAP_RTCD_RUN=$out" && echo "$p"
  done
}
for p in $(ours); do kill -TERM "$p"; done
for _ in $(seq 1 120); do
  [ -z "$(ours)" ] && ! pgrep -f "heaptrack_interpret" > /dev/null && break
  sleep 1
done
data=$(ls "$out"/heaptrack.rtcd.* | head -1)
heaptrack_print -f "$data" --print-peaks 1 --print-leaks 1 --print-allocators 0 \
  --print-temporary 0 -n 12 -s 3 > "$out/heap.txt" 2> /dev/null || true
heaptrack_print -f "$data" -M "$out/massif.out" --massif-threshold 2 \
  --print-peaks 0 --print-allocators 0 --print-temporary 0 > /dev/null 2>&1 || true
echo "heaptrack data: $data"
echo "report: $out/heap.txt (peaks, then live at exit); timeline: ms_print $out/massif.out"
grep -E "^(peak heap memory consumption|peak RSS|total memory leaked)" "$out/heap.txt" || true
grep -E "forwarded|loss|joins|memory" "$out/bench.txt" || true
