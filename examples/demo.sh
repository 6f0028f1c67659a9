#!/bin/sh
# The demo that `make demo` runs: one model end to end, from the command
# line and from the example programs.
#
#   sh examples/demo.sh BUILD_DIR [MODEL]
#
# MODEL defaults to the bundled models/kjv.tlens; `make demo-gpt2` passes
# the real GPT-2 once fetched.
set -e
B=${1:-build}
MODEL=${2:-models/kjv.tlens}
PROMPT="And it came to pass, when the king heard"
# text to draw the induction test's random tokens from (Genesis 1:1-5, KJV)
GENESIS="In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters. And God said, Let there be light: and there was light. And God saw the light, that it was good: and God divided the light from the darkness. And God called the light Day, and the darkness he called Night. And the evening and the morning were the first day."

section() { printf '\n== %s\n' "$1"; }

section "tlens generate: a continuation (temperature 0.8, seed 7)"
"$B/tlens" generate "$MODEL" --prompt "$PROMPT" -n 40 --temperature 0.8 --seed 7
echo

section "tlens run: the top next-token predictions"
"$B/tlens" run "$MODEL" --prompt "$PROMPT" --top 8 --loss

section "first_experiment: run_with_cache, then a few hook points"
"$B/first_experiment" "$MODEL" --prompt "$PROMPT"

section "induction_heads: 30 random tokens, repeated; which heads copy?"
"$B/induction_heads" "$MODEL" --len 30 --draw-from "$GENESIS" | grep -v '^tokens:'

section "attention_picture: every head's pattern on the prompt"
"$B/attention_picture" "$MODEL" --prompt "$PROMPT" -o "$B/attention.svg" --html "$B/attention.html"
echo "open $B/attention.html in a browser (one head alone: $B/attention.svg)"
