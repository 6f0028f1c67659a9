#!/bin/sh
# ports/vg_summary.sh LOGDIR - add up the valgrind logs of test-valgrind
# (one file per process: the test program, the examples it starts and the
# shells in between) into one summary; exit 1 when any process had an
# error or a definite / indirect leak, and show those reports.
dir=$1
set -- "$dir"/vg.*.log
if [ ! -f "$1" ]; then
    echo "no valgrind logs in $dir"
    exit 1
fi
procs=$#
errors=$(grep -h 'ERROR SUMMARY:' "$@" | awk '{s += $4} END {print s + 0}')
definite=$(grep -h 'definitely lost:' "$@" | awk '{gsub(",", "", $4); s += $4} END {print s + 0}')
indirect=$(grep -h 'indirectly lost:' "$@" | awk '{gsub(",", "", $4); s += $4} END {print s + 0}')
possible=$(grep -h 'possibly lost:' "$@" | awk '{gsub(",", "", $4); s += $4} END {print s + 0}')
echo "valgrind: $procs processes, $errors errors, definitely lost $definite bytes, indirectly lost $indirect bytes (possibly lost $possible)"
if [ "$errors" -ne 0 ] || [ "$definite" -ne 0 ] || [ "$indirect" -ne 0 ]; then
    for f in "$@"; do
        grep -q 'ERROR SUMMARY: [1-9]' "$f" && { echo "---- $f"; head -n 60 "$f"; }
    done
    exit 1
fi
exit 0
