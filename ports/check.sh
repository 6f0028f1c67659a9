#!/bin/sh
# ports/check.sh - the step runner behind the targets of mk/portability.mk.
#
# A check target is a list of steps (a compile, a test run); each step
# prints one line, "  ok    LABEL" or "  FAIL  LABEL" followed by the tail of
# its output, and the target goes on to the next step, so that one run
# shows every failing configuration, not just the first. The last line of a
# target is "NAME: PASS (N steps)" or "NAME: FAIL (K of N steps failed)",
# and only then does the target exit non-zero.
#
#   check.sh start DIR                  begin a target whose files live in DIR
#                                       (a relative path; emptied first)
#   check.sh need DIR NAME "TOOLS" "PACKAGES"
#                                       fail NAME now unless every command in
#                                       TOOLS exists; say what to install
#   check.sh step DIR LABEL CMD [ARG...]
#                                       run CMD (no shell: use sh -c for one)
#   check.sh stepv DIR LABEL CMD [ARG...]
#                                       the same, and show CMD's output (for
#                                       steps that report figures)
#   check.sh suite DIR LABEL ROOT CMD [ARG...]
#                                       run a tlens test program in the run
#                                       root ROOT (see `root`); it passes when
#                                       it exits 0 and prints "N passed, 0
#                                       failed"; the step's line shows the counts
#   check.sh root ROOT                  make a run root: a folder with links to
#                                       every top-level entry of the repository
#                                       but build/, and its own build/ (with
#                                       build/test-tmp) for the test program's
#                                       temporary files and examples
#   check.sh end DIR NAME               print the verdict; exit 1 on failure
#
# Why run roots: the tests read tests/data/... and tokenizer/ relative to
# the working directory, write into build/test-tmp/ and start the examples
# as ./build/<example>. A private root per target keeps parallel targets
# (and someone's `make test`) from sharing temporary files, and lets a
# target put its own examples (built with its own flags) in ROOT/build/.
set -u
cmd=$1
shift
repo=$(cd "$(dirname "$0")/.." && pwd)

log_name() { # a file name for a step's log
    printf '%s' "$1" | tr -c 'A-Za-z0-9._-' '_'
}

record() { # DIR LABEL STATUS(0 ok) LOG [SUMMARY]
    dir=$1 label=$2 rc=$3 log=$4 summary=${5:-}
    echo "$label" >>"$dir/.steps"
    if [ "$rc" -eq 0 ]; then
        if [ -n "$summary" ]; then printf '  ok    %s: %s\n' "$label" "$summary"; else printf '  ok    %s\n' "$label"; fi
    else
        echo "$label" >>"$dir/.failed"
        printf '  FAIL  %s%s\n' "$label" "${summary:+: $summary}"
        echo "        ---- last lines of $log ----"
        tail -n 25 "$log" | sed 's/^/        /'
    fi
}

case $cmd in
start)
    # A fresh DIR: a program left by an earlier run must never stand in
    # for one whose compile step failed now.
    dir=$1
    case $dir in
    "" | /* | *..*) echo "check.sh: refusing to clear '$dir'" >&2; exit 2 ;;
    esac
    rm -rf "$dir"
    mkdir -p "$dir/logs"
    : >"$dir/.steps"
    ;;
need)
    dir=$1 name=$2 tools=$3 packages=$4
    missing=
    for t in $tools; do
        command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
    done
    if [ -n "$missing" ]; then
        echo "$name: FAIL (missing:$missing)"
        echo "  install with: apt-get install $packages   (or: make ports-deps, as root)"
        exit 1
    fi
    ;;
step | stepv)
    dir=$1 label=$2
    shift 2
    log="$dir/logs/$(log_name "$label").log"
    "$@" >"$log" 2>&1
    rc=$?
    record "$dir" "$label" $rc "$log"
    if [ "$cmd" = stepv ] && [ "$rc" -eq 0 ]; then sed 's/^/        /' "$log"; fi
    ;;
suite)
    dir=$1 label=$2 root=$3
    shift 3
    log="$dir/logs/$(log_name "$label").log"
    if [ ! -d "$root" ]; then
        echo "no run root $root" >"$log"
        record "$dir" "$label" 1 "$log"
        exit 0
    fi
    (cd "$root" && "$@") >"$log" 2>&1
    rc=$?
    line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        record "$dir" "$label" 1 "$log" "no summary line (exit status $rc): crashed or not built?"
    elif [ "$rc" -ne 0 ] || ! echo "$line" | grep -qE ' 0 failed'; then
        [ "$rc" -ne 0 ] || rc=1
        record "$dir" "$label" "$rc" "$log" "$line"
    else
        record "$dir" "$label" 0 "$log" "$line"
    fi
    ;;
root)
    root=$1
    mkdir -p "$root/build/test-tmp"
    for f in "$repo"/* "$repo"/.[!.]*; do
        [ -e "$f" ] || continue
        n=${f##*/}
        case $n in build | .git) continue ;; esac
        ln -sfn "$f" "$root/$n"
    done
    ;;
end)
    dir=$1 name=$2
    total=$(wc -l <"$dir/.steps" | tr -d ' ')
    if [ -s "$dir/.failed" ]; then
        bad=$(wc -l <"$dir/.failed" | tr -d ' ')
        echo "$name: FAIL ($bad of $total steps failed: $(paste -sd';' "$dir/.failed" | sed 's/;/; /g'))"
        echo "  logs: $dir/logs/"
        exit 1
    fi
    if [ "$total" -eq 0 ]; then
        echo "$name: FAIL (no step ran)"
        exit 1
    fi
    echo "$name: PASS ($total steps)"
    ;;
*)
    echo "check.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
