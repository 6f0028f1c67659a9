# tlens - needs nothing but a C compiler (and make).
CC      ?= cc
CFLAGS  ?= -O2 -march=native
WARN    := -std=c99 -Wall -Wextra -Wpedantic
LDLIBS  := -lm
BUILD   := build

.PHONY: all test clean bench bench-tokenizer examples

all: $(BUILD)/tlens $(BUILD)/tlens-convert examples

$(BUILD):
	mkdir -p $(BUILD) $(BUILD)/test-tmp

$(BUILD)/tlens: examples/tlens.c tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -I. -DTLENS_TOKENIZER_DIR='"$(CURDIR)/tokenizer"' -o $@ examples/tlens.c $(LDLIBS)

$(BUILD)/tlens-convert: convert/tlens-convert.c tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ convert/tlens-convert.c $(LDLIBS)

EXAMPLES := first_experiment ablate_head activation_patching logit_lens induction_heads attention_picture
examples: $(addprefix $(BUILD)/,$(EXAMPLES))

$(BUILD)/%: examples/%.c examples/example_common.h tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ $< $(LDLIBS)

TEST_SRC := $(wildcard tests/*.c tests/*.h)

$(BUILD)/test_all: $(TEST_SRC) tlens.h examples/example_common.h | $(BUILD)
	$(CC) $(WARN) -Wno-unused-function $(CFLAGS) -g -I. -o $@ tests/test_main.c $(LDLIBS)

# The test suite (what CI runs): ends with "N passed, N failed".
test: $(BUILD)/test_all all
	./$(BUILD)/test_all

# Benchmarks (print figures; never part of the tests). See the README.
$(BUILD)/bench: bench/bench.c bench/bench_nohooks.c bench/bench_timer.h tlens.h | $(BUILD)
	$(CC) $(WARN) -D_POSIX_C_SOURCE=200809L $(CFLAGS) -I. -Ibench -o $@ bench/bench.c bench/bench_nohooks.c $(LDLIBS)

bench: $(BUILD)/bench
	./$(BUILD)/bench

$(BUILD)/bench_tokenizer: bench/bench_tokenizer.c tlens.h | $(BUILD)
	$(CC) $(WARN) -D_POSIX_C_SOURCE=200809L $(CFLAGS) -I. -o $@ bench/bench_tokenizer.c $(LDLIBS)

# tiktoken (npm) is the baseline when node and npm are there.
bench-tokenizer: $(BUILD)/bench_tokenizer
	-@[ -d bench/tiktoken/node_modules ] || (command -v npm >/dev/null && cd bench/tiktoken && npm ci --silent)
	./$(BUILD)/bench_tokenizer

clean:
	rm -rf $(BUILD)
