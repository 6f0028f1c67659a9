# tlens - needs nothing but a C compiler (and make).
CC      ?= cc
CFLAGS  ?= -O2 -march=native
WARN    := -std=c99 -Wall -Wextra -Wpedantic
LDLIBS  := -lm
BUILD   := build

.PHONY: all test clean

all: $(BUILD)/tlens $(BUILD)/tlens-convert

$(BUILD):
	mkdir -p $(BUILD) $(BUILD)/test-tmp

$(BUILD)/tlens: examples/tlens.c tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -I. -DTLENS_TOKENIZER_DIR='"$(CURDIR)/tokenizer"' -o $@ examples/tlens.c $(LDLIBS)

$(BUILD)/tlens-convert: convert/tlens-convert.c tlens.h | $(BUILD)
	$(CC) $(WARN) $(CFLAGS) -I. -o $@ convert/tlens-convert.c $(LDLIBS)

TEST_SRC := $(wildcard tests/*.c tests/*.h)

$(BUILD)/test_all: $(TEST_SRC) tlens.h | $(BUILD)
	$(CC) $(WARN) -Wno-unused-function $(CFLAGS) -g -I. -o $@ tests/test_main.c $(LDLIBS)

# The test suite (what CI runs): ends with "N passed, N failed".
test: $(BUILD)/test_all all
	./$(BUILD)/test_all

clean:
	rm -rf $(BUILD)
