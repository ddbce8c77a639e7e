#!/bin/sh
# Builds the libFuzzer target twice (SSE4.2 and scalar) and fuzzes both in parallel for
# SECONDS each (bounded: libFuzzer's -max_total_time), starting from fuzz/corpus.
# New inputs go to fuzz/corpus-run/<build>/ (not committed); crashes to fuzz/crash-<build>-*.
# Needs clang with libFuzzer (Debian: apt-get install clang libclang-rt-14-dev).
set -eu
SECONDS_EACH=${1:?usage: fuzz/run.sh SECONDS [extra libFuzzer flags]}
shift
cd "$(dirname "$0")/.."
CC=${CC:-clang}
FLAGS="-std=c11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Icsrc"
$CC $FLAGS -msse4.2 fuzz/fuzz_http.c csrc/fp_http.c -o fuzz/fuzz_http_sse
$CC $FLAGS -mno-sse4.2 fuzz/fuzz_http.c csrc/fp_http.c -o fuzz/fuzz_http_scalar
status=0
pids=""
for b in sse scalar; do
    mkdir -p "fuzz/corpus-run/$b"
    ./fuzz/fuzz_http_$b "fuzz/corpus-run/$b" fuzz/corpus -max_total_time="$SECONDS_EACH" \
        -max_len=4096 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/crash-$b-" "$@" > "fuzz/corpus-run/$b.log" 2>&1 &
    pids="$pids $!"
done
for p in $pids; do
    wait "$p" || status=1
done
for b in sse scalar; do
    echo "== $b"
    grep -E "stat::number_of_executed_units|stat::new_units_added|ERROR|SUMMARY|fuzz_http:" \
        "fuzz/corpus-run/$b.log" || true
done
exit $status
