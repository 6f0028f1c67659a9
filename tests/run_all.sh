#!/bin/sh
# Run the test program in every configuration `make test` builds and add up
# the counts into one closing line. The full suite runs once (SIMD, OpenMP
# with 2 threads); the kernels and the reference forward passes run again
# with 1 thread, with the scalar kernels and, on x86-64, with AVX2 only.
# Usage: tests/run_all.sh BUILD_DIR
B=${1:-build}
total_pass=0 total_fail=0 total_skip=0 status=0
run() {
    label=$1; shift
    echo "== $label"
    out=$("$@" 2>&1); rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^[0-9]+ passed, [0-9]+ failed' | tail -n 1)
    if [ -z "$line" ]; then
        echo "   (no summary line: the test program crashed?)"
        total_fail=$((total_fail + 1)); status=1; return
    fi
    p=$(echo "$line" | sed -E 's/^([0-9]+) passed.*/\1/')
    f=$(echo "$line" | sed -E 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/')
    s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
    total_pass=$((total_pass + p)); total_fail=$((total_fail + f)); total_skip=$((total_skip + ${s:-0}))
    [ "$rc" -eq 0 ] || status=1
}
KERNELS=matmul,reference
run "full suite, 2 threads" env OMP_NUM_THREADS=2 "$B/test_all"
run "kernels and reference, 1 thread" env OMP_NUM_THREADS=1 "$B/test_all" $KERNELS
[ -x "$B/test_scalar" ] && run "kernels and reference, scalar kernels" env OMP_NUM_THREADS=2 "$B/test_scalar" $KERNELS
[ -x "$B/test_avx2" ] && run "kernels and reference, AVX2 kernels" env OMP_NUM_THREADS=2 "$B/test_avx2" $KERNELS
if [ "$total_skip" -gt 0 ]; then
    echo "$total_pass passed, $total_fail failed, $total_skip skipped"
else
    echo "$total_pass passed, $total_fail failed"
fi
[ "$total_fail" -eq 0 ] || status=1
exit $status
