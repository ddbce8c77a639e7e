#!/bin/sh
# Builds csrc/fp_server.c with its driver under ASan + LSan + UBSan and runs it: any memory
# error, leak or undefined behaviour fails the run. Usage: sh tests/c/run_asan.sh
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$(dirname "$here")")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
${CC:-gcc} -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer -Wall -Wextra -Werror \
    -fsanitize=address,undefined -fno-sanitize-recover=undefined \
    -I"$root/csrc" -o "$out/fp_server_asan" \
    "$here/fp_server_asan.c" "$root/csrc/fp_server.c" -lssl -lcrypto -lpthread
ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 "$out/fp_server_asan"
