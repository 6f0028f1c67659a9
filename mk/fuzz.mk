# Fuzzing with libFuzzer (clang): harnesses in fuzz/, seeds in fuzz/corpus/.
#
#   make fuzz-build                  build every harness into build/fuzz/
#   make fuzz [FUZZ_SECONDS=60]      run each harness that long, one after the
#             [FUZZ_TARGETS="npy"]   other; print executions, exec/s and
#                                    coverage per harness (non-zero exit when
#                                    one crashed; reproducers in
#                                    build/fuzz/artifacts/<harness>/)
#   make fuzz-regress                tests/test_regressions.c under ASan + UBSan
#                                    (the crash regressions that a plain
#                                    build cannot see)
#   make fuzz-overflow32             32-bit (clang -m32, ASan) reproducers of
#                                    unchecked size arithmetic (fuzz/overflow32.c)
#   make fuzz-corpus                 regenerate the seed corpus in fuzz/corpus/
#
# New inputs go to build/fuzz/corpus/<harness>/ (the seeds stay untouched).
# FUZZ_TLENS is the folder whose tlens.h is fuzzed: point it at a patched
# copy to keep fuzzing past a known bug.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TLENS   ?= .
FUZZ_DIR     := $(BUILD)/fuzz
FUZZ_TARGETS ?= tokenizer vocab config safetensors hf_load tlens npy sae
FUZZ_CFLAGS  := -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -g -O1 -fno-omit-frame-pointer \
                -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
                -I$(FUZZ_TLENS) -Ifuzz -DFUZZ_TOKENIZER_DIR='"$(CURDIR)/tokenizer"'
FUZZ_BINS    := $(addprefix $(FUZZ_DIR)/fuzz_,$(FUZZ_TARGETS))

.PHONY: fuzz fuzz-build fuzz-corpus fuzz-regress fuzz-overflow32 fuzz-force

fuzz-build: $(FUZZ_BINS)

# Which tlens.h the binaries were built from: rewritten (and so newer than
# them) only when FUZZ_TLENS changes, which then rebuilds them.
$(FUZZ_DIR)/tlens-dir: fuzz-force
	@mkdir -p $(FUZZ_DIR); echo '$(FUZZ_TLENS)' | cmp -s - $@ || echo '$(FUZZ_TLENS)' > $@

$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c fuzz/fuzz_util.h $(FUZZ_TLENS)/tlens.h $(FUZZ_DIR)/tlens-dir
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -o $@ $< -lm

fuzz: $(FUZZ_BINS)
	@status=0; for t in $(FUZZ_TARGETS); do \
	    sh fuzz/fuzz.sh run $(FUZZ_DIR) $$t $(FUZZ_SECONDS) || status=1; \
	done; \
	sh fuzz/fuzz.sh report $(FUZZ_DIR) $(FUZZ_TARGETS); exit $$status

# The seed generator is an ordinary C program (no sanitizers needed).
$(FUZZ_DIR)/make_corpus: fuzz/make_corpus.c tlens.h
	@mkdir -p $(FUZZ_DIR)
	$(CC) -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -O1 -I. -o $@ fuzz/make_corpus.c -lm

fuzz-corpus: $(FUZZ_DIR)/make_corpus
	./$(FUZZ_DIR)/make_corpus fuzz/corpus

$(FUZZ_DIR)/regress: fuzz/regress_main.c tests/test_regressions.c tests/tlens_test.h $(FUZZ_TLENS)/tlens.h \
                     $(FUZZ_DIR)/tlens-dir
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -g -O1 -fno-omit-frame-pointer \
	    -fsanitize=address,undefined -fno-sanitize-recover=all -I$(FUZZ_TLENS) -o $@ fuzz/regress_main.c -lm

fuzz-regress: $(FUZZ_DIR)/regress
	@mkdir -p $(BUILD)/test-tmp
	./$(FUZZ_DIR)/regress

# Each case in its own process: an ASan report ends the process.
$(FUZZ_DIR)/overflow32: fuzz/overflow32.c $(FUZZ_TLENS)/tlens.h $(FUZZ_DIR)/tlens-dir
	@mkdir -p $(FUZZ_DIR)
	$(FUZZ_CC) -m32 -std=c99 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -g -O1 -fsanitize=address \
	    -I$(FUZZ_TLENS) -o $@ fuzz/overflow32.c -lm

fuzz-overflow32: $(FUZZ_DIR)/overflow32
	@status=0; for c in kv att wire; do \
	    if ./$(FUZZ_DIR)/overflow32 $$c $(FUZZ_DIR) >$(FUZZ_DIR)/overflow32-$$c.log 2>&1; then \
	        tail -n 1 $(FUZZ_DIR)/overflow32-$$c.log; \
	    else status=1; echo "$$c: $$(grep -m1 -E 'ERROR|rror:' $(FUZZ_DIR)/overflow32-$$c.log)"; fi; \
	done; exit $$status
