# tlens - needs nothing but a C compiler (and make).
CC      ?= cc
# OpenMP when the compiler has it (results never depend on the thread count)
OPENMP  ?= $(shell echo 'int main(void){return 0;}' | $(CC) -fopenmp -x c - -o /dev/null 2>/dev/null && echo -fopenmp)
CFLAGS  ?= -O2 -march=native $(OPENMP)
WARN    := -std=c99 -Wall -Wextra -Wpedantic
LDLIBS  := -lm
TEST_LIBS := -pthread
BUILD   := build
# What the command-line tool and the examples use when no model is named
PATHS   := -DTLENS_TOKENIZER_DIR='"$(CURDIR)/tokenizer"' -DTLENS_DEFAULT_MODEL='"$(CURDIR)/models/kjv.tlens"'

.PHONY: all test clean bench bench-tokenizer bench-matmul bench-matmul-openblas examples demo demo-gpt2 fetch-gpt2 model

all: $(BUILD)/tlens $(BUILD)/tlens-convert examples

$(BUILD):
	mkdir -p $(BUILD) $(BUILD)/test-tmp

$(BUILD)/tlens: examples/tlens.c examples/example_common.h tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -I. $(PATHS) -o $@ examples/tlens.c $(LDLIBS)

$(BUILD)/tlens-convert: convert/tlens-convert.c tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ convert/tlens-convert.c $(LDLIBS)

EXAMPLES := first_experiment ablate_head activation_patching logit_lens induction_heads attention_picture
examples: $(addprefix $(BUILD)/,$(EXAMPLES))

$(BUILD)/%: examples/%.c examples/example_common.h tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -I. $(PATHS) -o $@ $< $(LDLIBS)

TEST_SRC := $(wildcard tests/*.c tests/*.h)

$(BUILD)/test_all: $(TEST_SRC) tlens.h examples/example_common.h | $(BUILD)
	$(CC) $(WARN) -Wno-unused-function $(CFLAGS) -g -I. -o $@ tests/test_main.c $(TEST_LIBS) $(LDLIBS)

# The same tests with the scalar kernels and, on x86-64, with AVX2 only.
$(BUILD)/test_scalar: $(TEST_SRC) tlens.h examples/example_common.h | $(BUILD)
	$(CC) $(WARN) -Wno-unused-function $(CFLAGS) -DTLENS_NO_SIMD -g -I. -o $@ tests/test_main.c $(TEST_LIBS) $(LDLIBS)

AVX2 := $(shell [ "$$(uname -m)" = x86_64 ] && grep -q avx2 /proc/cpuinfo 2>/dev/null && echo $(BUILD)/test_avx2)
$(BUILD)/test_avx2: $(TEST_SRC) tlens.h examples/example_common.h | $(BUILD)
	$(CC) $(WARN) -Wno-unused-function -O2 -mavx2 -mfma -mf16c $(OPENMP) -g -I. -o $@ tests/test_main.c $(TEST_LIBS) $(LDLIBS)

# The test suite (what CI runs): ends with "N passed, N failed".
test: $(BUILD)/test_all $(BUILD)/test_scalar $(AVX2) all
	sh tests/run_all.sh $(BUILD)

# The demo on the bundled model (or DEMO_MODEL=any HF folder or .tlens file)
DEMO_MODEL ?= models/kjv.tlens
demo: all
	sh examples/demo.sh $(BUILD) $(DEMO_MODEL)

# With a network: the real GPT-2 (GPT2=gpt2-medium, -large, -xl, distilgpt2)
GPT2 ?= gpt2
fetch-gpt2: $(BUILD)/tlens-convert
	CONVERT=$(BUILD)/tlens-convert sh convert/fetch_gpt2.sh $(GPT2) models/$(GPT2)

demo-gpt2: fetch-gpt2 all
	sh examples/demo.sh $(BUILD) models/$(GPT2).tlens

# Train the bundled model again (PyTorch and Debian's bible-kjv; about 50 min
# on two cores): running text with copies of random spans, then copies of
# commonly drawn tokens, under which the induction heads form. See the README.
KJV_RUN = --ctx 128 --batch 4 --copy-frac 0.5 --lr 2e-3 --warmup 200 --hold 0.85 --bf16
model: $(BUILD)/tlens $(BUILD)/tlens-convert
	python3 convert/train_bundled.py $(KJV_RUN) --steps 44000 --stop-after 20000 --init-std 0.08 \
		--out $(BUILD)/kjv-phase1
	python3 convert/train_bundled.py $(KJV_RUN) --steps 20000 --copy-power 0.5 \
		--init $(BUILD)/kjv-phase1 --out $(BUILD)/kjv-hf
	$(BUILD)/tlens-convert $(BUILD)/kjv-hf models/kjv.tlens --raw --f16

# Benchmarks (print figures; never part of the tests). See the README.
$(BUILD)/bench: bench/bench.c bench/bench_nohooks.c bench/bench_timer.h tlens.h | $(BUILD)
	$(CC) $(WARN) -D_POSIX_C_SOURCE=200809L $(CFLAGS) -I. -Ibench -o $@ bench/bench.c bench/bench_nohooks.c $(LDLIBS)

bench: $(BUILD)/bench
	./$(BUILD)/bench

$(BUILD)/bench_matmul: bench/bench_matmul.c tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ bench/bench_matmul.c $(LDLIBS)

# GFLOP/s of the kernels on GPT-2 small's shapes; decode: one token's matrices
bench-matmul: $(BUILD)/bench_matmul
	./$(BUILD)/bench_matmul
	./$(BUILD)/bench_matmul decode

# the same against OpenBLAS sgemm (needs Debian's libopenblas-dev; only a yardstick)
bench-matmul-openblas: bench/bench_matmul.c tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -DTLENS_BENCH_OPENBLAS -I. -o $(BUILD)/bench_matmul_openblas bench/bench_matmul.c -lopenblas $(LDLIBS)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ./$(BUILD)/bench_matmul_openblas

$(BUILD)/bench_tokenizer: bench/bench_tokenizer.c tlens.h | $(BUILD)
	$(CC) $(WARN) -D_POSIX_C_SOURCE=200809L $(CFLAGS) -I. -o $@ bench/bench_tokenizer.c $(LDLIBS)

# tiktoken (npm) is the baseline when node and npm are there.
bench-tokenizer: $(BUILD)/bench_tokenizer
	-@[ -d bench/tiktoken/node_modules ] || (command -v npm >/dev/null && cd bench/tiktoken && npm ci --silent)
	./$(BUILD)/bench_tokenizer

clean:
	rm -rf $(BUILD)

# More targets (portability, sanitizers, fuzzing) live in mk/*.mk.
-include $(wildcard mk/*.mk)
