#!/bin/sh
# Run one libFuzzer harness and summarise it, or print the summaries.
#
#   fuzz/fuzz.sh run DIR NAME SECONDS [EXTRA LIBFUZZER FLAGS...]
#       runs DIR/fuzz_NAME for SECONDS on DIR/corpus/NAME (new inputs go
#       there) and fuzz/corpus/NAME (the seeds, read only); the log is
#       DIR/logs/NAME.log, reproducers go to DIR/artifacts/NAME/. Prints one
#       line: executions, exec/s, cov and ft (libFuzzer's final figures),
#       corpus size, time and the outcome. Exit status 1 on a crash.
#   fuzz/fuzz.sh report DIR NAME...
#       prints the saved lines of those harnesses as one table.
set -u
cmd=$1 dir=$2
shift 2

header() {
    printf '%-12s %12s %8s %7s %8s %7s %6s  %s\n' harness execs exec/s cov ft corpus secs result
}

if [ "$cmd" = report ]; then
    echo "== fuzzing summary (libFuzzer's final stats)"
    header
    for name in "$@"; do
        if [ -f "$dir/logs/$name.summary" ]; then cat "$dir/logs/$name.summary"
        else printf '%-12s (not run)\n' "$name"; fi
    done
    exit 0
fi

name=$1 secs=$2
shift 2
bin=$dir/fuzz_$name
log=$dir/logs/$name.log
art=$dir/artifacts/$name
mkdir -p "$dir/corpus/$name" "$art" "$dir/logs"

# Inputs longer than the seeds need are rarely useful; the dictionaries
# hold the keys and type names the JSON parsers compare against.
case $name in
    tokenizer) opts="-max_len=4096" ;;
    vocab) opts="-max_len=16384 -dict=fuzz/dict/vocab.dict" ;;
    config) opts="-max_len=4096 -dict=fuzz/dict/json.dict" ;;
    safetensors) opts="-max_len=8192 -dict=fuzz/dict/json.dict" ;;
    hf_load) opts="-max_len=16384 -dict=fuzz/dict/json.dict" ;;
    tlens) opts="-max_len=32768" ;;
    npy) opts="-max_len=4096 -dict=fuzz/dict/npy.dict" ;;
    sae) opts="-max_len=8192 -dict=fuzz/dict/json.dict" ;;
    *) opts="" ;;
esac

before=$(ls "$art" | wc -l)
echo "== fuzz_$name for ${secs}s (log: $log)"
# shellcheck disable=SC2086
"$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=30 -artifact_prefix="$art/" $opts "$@" \
    "$dir/corpus/$name" "fuzz/corpus/$name" >"$log" 2>&1
rc=$?
after=$(ls "$art" | wc -l)

stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -n 1; }
execs=$(stat number_of_executed_units)
rate=$(stat average_exec_per_sec)
# the last status line: "#N  DONE  cov: C ft: F corp: U/S ..."
last=$(grep -E '^#[0-9]+.*cov: ' "$log" | tail -n 1)
cov=$(echo "$last" | sed -nE 's/.*cov: ([0-9]+).*/\1/p')
ft=$(echo "$last" | sed -nE 's/.*ft: ([0-9]+).*/\1/p')
corp=$(echo "$last" | sed -nE 's/.*corp: ([0-9]+)\/.*/\1/p')
took=$(sed -nE 's/^Done [0-9]+ runs in ([0-9]+) second.*/\1/p' "$log" | tail -n 1)
if [ "$rc" -eq 0 ] && [ "$after" -eq "$before" ]; then
    result=ok
else
    result="CRASH (exit $rc): $(grep -m1 -E 'ERROR: |runtime error|invariant failed|SUMMARY' "$log" | cut -c1-90)"
fi
line=$(printf '%-12s %12s %8s %7s %8s %7s %6s  %s' "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
    "${corp:-?}" "${took:-?}" "$result")
echo "$line" >"$dir/logs/$name.summary"
header
echo "$line"
[ "$result" = ok ]
