#!/bin/sh
# Builds bench/c_parse_bench.c against csrc/fp_http.c twice (SSE4.2, scalar) and prints one
# table: ns/op (min of 7 runs) and, when valgrind is installed, instructions/op from callgrind
# (counting only the measured call: --toggle-collect=fp_bench_op), which is stable on a noisy VM.
set -eu
cd "$(dirname "$0")/.."
CC=${CC:-gcc}
mkdir -p build
CASES="ticker-137 ticker-300 book-2k chunked-64k write-request"
for b in sse42 scalar; do
    flag=-msse4.2; [ $b = scalar ] && flag=-mno-sse4.2
    $CC -std=c11 -O3 -Wall -Wextra -Werror $flag -Icsrc bench/c_parse_bench.c csrc/fp_http.c \
        -o build/c_parse_bench_$b
done
printf '%-14s %7s %11s %11s %11s %11s\n' case bytes ns_sse42 ns_scalar ir_sse42 ir_scalar
for c in $CASES; do
    line=$(./build/c_parse_bench_sse42 --case $c | tail -1)
    bytes=$(echo "$line" | awk '{print $2}')
    ns_sse=$(echo "$line" | awk '{print $4}')
    ns_sc=$(./build/c_parse_bench_scalar --case $c | tail -1 | awk '{print $4}')
    ir_sse=-; ir_sc=-
    if command -v valgrind >/dev/null 2>&1; then
        it=20000; [ $c = chunked-64k ] && it=200
        for b in sse42 scalar; do
            valgrind --tool=callgrind --toggle-collect=fp_bench_op \
                --callgrind-out-file=build/callgrind.$b.$c ./build/c_parse_bench_$b \
                --case $c --iters $it --runs 1 >/dev/null 2>&1
            ir=$(awk '/^totals:/ {print $2}' build/callgrind.$b.$c)
            [ $b = sse42 ] && ir_sse=$((ir / it)) || ir_sc=$((ir / it))
        done
    fi
    printf '%-14s %7s %11s %11s %11s %11s\n' "$c" "$bytes" "$ns_sse" "$ns_sc" "$ir_sse" "$ir_sc"
done
echo "(chunked-64k ns include restoring the 64 KB input with memcpy before each in-place decode;"
echo " its instruction count does not: see c_parse_bench.c)"
