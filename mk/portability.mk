# mk/portability.mk - portability, cross-target and sanitizer checks.
# Included by the Makefile (-include mk/*.mk); none of this is part of
# `make test`, which needs nothing but a C compiler.
#
#   make check-all       every target below, one after the other (and `fuzz`
#                        when mk/fuzz.mk defines it), then a PASS/FAIL table
#   make test-strict     gcc and clang, -std=c99 -Wall -Wextra -Wpedantic -Werror
#   make test-cxx        the header compiled as C++, in a C++ program
#   make test-m32        the test suite as a 32-bit x86 program
#   make test-aarch64    the suite on AArch64 (NEON) under qemu-aarch64
#   make test-s390x      the suite on big-endian s390x under qemu-s390x
#   make build-cortex-m  bare-metal Cortex-M4 firmware with a model in flash
#   make test-cortex-m   ... run under qemu-system-arm, logits vs the host
#   make test-asan       the suite under AddressSanitizer + UBSan
#   make test-valgrind   the suite under valgrind's memcheck
#   make test-threads    tests/test_threads.c (one model, several threads)
#   make test-tsan       tests/test_threads.c under ThreadSanitizer
#   make ports-deps      install the Debian packages all of these need (root)
#
# Each target works in its own folder, build/<name>/, and never touches
# build/test_all & co. It is a list of steps run by ports/check.sh: every
# step prints "ok" or "FAIL" (with the tail of its log, kept in
# build/<name>/logs/), all steps run even after a failure, and the last line
# is "<target>: PASS (N steps)" or "<target>: FAIL (...)", with a non-zero
# exit status. Test programs run in a private "run root" (build/<name>/run:
# links to the repository's files and its own build/ folder), because the
# tests read tests/data and tokenizer/ relative to the working directory,
# write to build/test-tmp/ and start the examples as ./build/<example>.
#
# The Debian 12 packages, per target (`make ports-deps` installs them all):
#   test-strict, test-cxx, test-tsan: gcc g++ clang libomp-dev
#   test-asan:      clang (its sanitizer runtimes: libclang-rt-14-dev)
#   test-m32:       gcc-12-multilib (not gcc-multilib: that one conflicts with
#                   the gcc cross compilers below; gcc-12-multilib does not)
#   test-aarch64:   gcc-aarch64-linux-gnu clang qemu-user
#   test-s390x:     gcc-s390x-linux-gnu qemu-user
#   *-cortex-m:     gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm
#   test-valgrind:  valgrind

PORT_CHECK  := sh ports/check.sh
# The folder whose tlens.h the programs of ports/ include (the header-alone
# builds, the C++ and Cortex-M programs): point it at a patched copy to see
# past a known bug. The test program always includes ../tlens.h.
PORT_TLENS  ?= .
PORT_INC    := $(if $(filter .,$(PORT_TLENS)),-I.,-I$(PORT_TLENS) -I.)
PORT_DIR    := $(BUILD)
PORT_ROOTABS = $(CURDIR)/$(BUILD)
# What the test programs are compiled with; -Wno-unused-function as in the
# Makefile (tests include helpers some programs do not use). -pthread for
# tests/test_threads.c.
PORT_STRICT := -std=c99 -Wall -Wextra -Wpedantic -Werror
PORT_TESTW  := $(PORT_STRICT) -Wno-unused-function
PORT_TEST_LIBS := -pthread -lm
# The examples, as the Makefile lists them (fallback: all but the CLI).
PORT_EXAMPLES := $(or $(EXAMPLES),$(filter-out tlens,$(basename $(notdir $(wildcard examples/*.c)))))
# Test runs use two OpenMP threads, as tests/run_all.sh does.
PORT_ENV := env OMP_NUM_THREADS=2
# The slow runs (emulated, valgrind) end after an hour at most, so that a
# hang is a failure, not a stuck check-all.
PORT_SLOW := timeout 3600
# The kernels and the reference forward passes: the subset run for extra
# configurations (as tests/run_all.sh does for the scalar and AVX2 builds).
PORT_KERNELS := matmul,reference
PORT_X86 := $(shell [ "$$(uname -m)" = x86_64 ] && echo 1)
PORT_AVX2 := $(shell grep -qw avx2 /proc/cpuinfo 2>/dev/null && grep -qw fma /proc/cpuinfo && echo 1)

.PHONY: check-all test-strict test-cxx test-m32 test-aarch64 test-s390x build-cortex-m test-cortex-m \
        test-asan test-valgrind test-threads test-tsan ports-deps

# Build every example with the given compiler and flags into a run root's
# build/ folder, as one step: $(call port_examples,DIR,ROOT,LABEL,CC FLAGS...)
port_examples = $(PORT_CHECK) step $(1) "$(3)" sh -c 'set -e; for e in $(PORT_EXAMPLES); do \
    $(4) $(PORT_INC) -o $(2)/build/$$e examples/$$e.c -lm; done'

# ---------------------------------------------------------------------------
# test-strict: the header as its own translation unit (ports/strict/impl.c)
# with -Wconversion too, and the test program, with gcc and clang, at -O0
# and -O3, with and without OpenMP, all with -Werror; the configurations
# TLENS_NO_SIMD, TLENS_NO_STDIO, TLENS_NO_HOOKS and TLENS_STATIC (each
# linked into a program that runs a forward pass: ports/strict/user.c, and
# for TLENS_STATIC two private copies in one program); on x86-64 also the
# AVX2 kernels (with and without F16C) and plain SSE2. The test program runs
# at -O0 and -O3 with both compilers (one of each pair with OpenMP), plus
# the scalar kernels; the strictly built examples run inside those tests.
# -march=native throughout: the SIMD kernels this machine has are the ones
# compiled (AVX-512 here), besides the explicit ISA variants.
PORT_ST := $(PORT_DIR)/strict
PORT_ST_CCS := gcc clang
test-strict:
	@$(PORT_CHECK) start $(PORT_ST)
	@$(PORT_CHECK) need $(PORT_ST) $@ "gcc clang" "gcc clang libomp-dev"
	@$(PORT_CHECK) root $(PORT_ST)/run
	@for cc in $(PORT_ST_CCS); do for o in -O0 -O3; do for omp in "" -fopenmp; do \
	    $(PORT_CHECK) step $(PORT_ST) "$$cc $$o $${omp:-(no OpenMP)}: tlens.h alone, -Wconversion" \
	        $$cc $(PORT_STRICT) -Wconversion -march=native $$o $$omp $(PORT_INC) -c ports/strict/impl.c \
	        -o $(PORT_ST)/impl-$$cc$$o$$omp.o; \
	done; done; done
	@for cc in $(PORT_ST_CCS); do for d in TLENS_NO_SIMD TLENS_NO_STDIO TLENS_NO_HOOKS; do \
	    hooks=2; [ $$d = TLENS_NO_HOOKS ] && hooks=0; \
	    $(PORT_CHECK) step $(PORT_ST) "$$cc -D$$d: tlens.h alone, -Wconversion, linked with user.c and run" sh -c \
	        "$$cc $(PORT_STRICT) -Wconversion -O2 -march=native -D$$d $(PORT_INC) -c ports/strict/impl.c -o $(PORT_ST)/impl-$$cc-$$d.o && \
	         $$cc $(PORT_STRICT) -O2 -DPORT_EXPECT_HOOK_CALLS=$$hooks $(PORT_INC) -o $(PORT_ST)/user-$$cc-$$d ports/strict/user.c $(PORT_ST)/impl-$$cc-$$d.o -lm && \
	         $(PORT_ST)/user-$$cc-$$d"; \
	done; \
	$(PORT_CHECK) step $(PORT_ST) "$$cc -DTLENS_STATIC: two private copies in one program, run" sh -c \
	    "$$cc $(PORT_STRICT) -Wconversion -O2 -march=native $(PORT_INC) -DPORT_TU=port_tu_a -c ports/strict/static_tu.c -o $(PORT_ST)/static-a-$$cc.o && \
	     $$cc $(PORT_STRICT) -Wconversion -O2 -march=native $(PORT_INC) -DPORT_TU=port_tu_b -c ports/strict/static_tu.c -o $(PORT_ST)/static-b-$$cc.o && \
	     $$cc $(PORT_STRICT) -o $(PORT_ST)/static-$$cc ports/strict/static_main.c $(PORT_ST)/static-a-$$cc.o $(PORT_ST)/static-b-$$cc.o -lm && \
	     $(PORT_ST)/static-$$cc"; \
	done
ifeq ($(PORT_X86),1)
	@for cc in $(PORT_ST_CCS); do \
	    for isa in "-mavx2 -mfma -mf16c" "-mavx2 -mfma" "-march=x86-64"; do \
	    $(PORT_CHECK) step $(PORT_ST) "$$cc $$isa: tlens.h alone, -Wconversion" \
	        $$cc $(PORT_STRICT) -Wconversion -O2 $$isa $(PORT_INC) -c ports/strict/impl.c -o $(PORT_ST)/impl-isa.o; \
	done; done
endif
	@$(call port_examples,$(PORT_ST),$(PORT_ST)/run,gcc -O2 -fopenmp: the examples (the tests run them),gcc $(PORT_STRICT) -O2 -march=native -fopenmp)
	@$(PORT_CHECK) step $(PORT_ST) "gcc -O2: examples/tlens.c and convert/tlens-convert.c" sh -c \
	    "gcc $(PORT_STRICT) -O2 -march=native $(PORT_INC) -DTLENS_TOKENIZER_DIR='\"$(CURDIR)/tokenizer\"' -o $(PORT_ST)/tlens examples/tlens.c -lm && \
	     gcc $(PORT_STRICT) -O2 -march=native $(PORT_INC) -o $(PORT_ST)/tlens-convert convert/tlens-convert.c -lm"
	@for cc in $(PORT_ST_CCS); do for o in -O0 -O3; do for omp in "" -fopenmp; do \
	    $(PORT_CHECK) step $(PORT_ST) "$$cc $$o $${omp:-(no OpenMP)}: the test program" \
	        $$cc $(PORT_TESTW) -march=native $$o $$omp -g $(PORT_INC) -o $(PORT_ST)/test-$$cc$$o$$omp tests/test_main.c $(PORT_TEST_LIBS); \
	done; done; done
	@$(PORT_CHECK) step $(PORT_ST) "gcc -O2 -DTLENS_NO_SIMD: the test program" \
	    gcc $(PORT_TESTW) -O2 -march=native -fopenmp -DTLENS_NO_SIMD -g $(PORT_INC) -o $(PORT_ST)/test-nosimd tests/test_main.c $(PORT_TEST_LIBS)
	@$(PORT_CHECK) suite $(PORT_ST) "run gcc -O0" $(PORT_ST)/run $(PORT_ENV) $(PORT_ROOTABS)/strict/test-gcc-O0
	@$(PORT_CHECK) suite $(PORT_ST) "run gcc -O3 -fopenmp" $(PORT_ST)/run $(PORT_ENV) $(PORT_ROOTABS)/strict/test-gcc-O3-fopenmp
	@$(PORT_CHECK) suite $(PORT_ST) "run clang -O0 -fopenmp" $(PORT_ST)/run $(PORT_ENV) $(PORT_ROOTABS)/strict/test-clang-O0-fopenmp
	@$(PORT_CHECK) suite $(PORT_ST) "run clang -O3" $(PORT_ST)/run $(PORT_ENV) $(PORT_ROOTABS)/strict/test-clang-O3
	@$(PORT_CHECK) suite $(PORT_ST) "run -DTLENS_NO_SIMD (kernels, reference)" $(PORT_ST)/run $(PORT_ENV) $(PORT_ROOTABS)/strict/test-nosimd $(PORT_KERNELS)
	@$(PORT_CHECK) end $(PORT_ST) $@

# ---------------------------------------------------------------------------
# test-cxx: the implementation compiled as C++ (-x c++ -Wall -Wextra
# -Werror) by g++ and clang++, with and without OpenMP, linked into
# ports/cxx/main.cpp, which loads tests/data/reference/tiny/model, runs the
# reference tokens with a hook written as a lambda, and checks the logits
# are finite and match TransformerLens'. Also -std=c++11 -Wpedantic for the
# header alone (C++98 has no long long: not supported).
PORT_CX := $(PORT_DIR)/cxx
test-cxx:
	@$(PORT_CHECK) start $(PORT_CX)
	@$(PORT_CHECK) need $(PORT_CX) $@ "g++ clang++" "g++ clang libomp-dev"
	@$(PORT_CHECK) root $(PORT_CX)/run
	@for cxx in g++ clang++; do for omp in "" -fopenmp; do \
	    $(PORT_CHECK) step $(PORT_CX) "$$cxx $${omp:-(no OpenMP)}: tlens.h as C++, in a C++ program" sh -c \
	        "$$cxx -x c++ -Wall -Wextra -Werror -O2 $$omp $(PORT_INC) -c ports/strict/impl.c -o $(PORT_CX)/impl-$$cxx$$omp.o && \
	         $$cxx -Wall -Wextra -Werror -Wno-unused-function -O2 $$omp $(PORT_INC) -c ports/cxx/main.cpp -o $(PORT_CX)/main-$$cxx$$omp.o && \
	         $$cxx $$omp -o $(PORT_CX)/cxx-$$cxx$$omp $(PORT_CX)/main-$$cxx$$omp.o $(PORT_CX)/impl-$$cxx$$omp.o -lm"; \
	    $(PORT_CHECK) suite $(PORT_CX) "run $$cxx $${omp:-(no OpenMP)}" $(PORT_CX)/run $(PORT_ENV) $(PORT_ROOTABS)/cxx/cxx-$$cxx$$omp; \
	done; \
	$(PORT_CHECK) step $(PORT_CX) "$$cxx -std=c++11 -Wpedantic: tlens.h as C++" \
	    $$cxx -x c++ -std=c++11 -Wall -Wextra -Wpedantic -Werror -O2 $(PORT_INC) -c ports/strict/impl.c -o $(PORT_CX)/impl-11.o; \
	done
	@$(PORT_CHECK) end $(PORT_CX) $@

# ---------------------------------------------------------------------------
# test-m32: the whole suite as a 32-bit x86 program (gcc -m32, OpenMP),
# examples built the same way: once for plain i686 (x87 floating point, the
# scalar kernels) and once with -march=native (the AVX-512 / AVX2 kernels
# with 32-bit x86's 8 vector registers); clang -m32 runs the kernels.
PORT_M32 := $(PORT_DIR)/m32
test-m32:
	@$(PORT_CHECK) start $(PORT_M32)
	@$(PORT_CHECK) need $(PORT_M32) $@ "gcc clang" "gcc-12-multilib clang"
	@$(PORT_CHECK) root $(PORT_M32)/run
	@$(PORT_CHECK) step $(PORT_M32) "gcc -m32 -O2 -fopenmp: the test program" \
	    gcc -m32 $(PORT_TESTW) -O2 -fopenmp -g $(PORT_INC) -o $(PORT_M32)/test-i686 tests/test_main.c $(PORT_TEST_LIBS)
	@$(PORT_CHECK) step $(PORT_M32) "gcc -m32 -O2 -march=native -fopenmp: the test program" \
	    gcc -m32 $(PORT_TESTW) -O2 -march=native -fopenmp -g $(PORT_INC) -o $(PORT_M32)/test-native tests/test_main.c $(PORT_TEST_LIBS)
	@$(PORT_CHECK) step $(PORT_M32) "clang -m32 -O2 -march=native: the test program" \
	    clang -m32 $(PORT_TESTW) -O2 -march=native -g $(PORT_INC) -o $(PORT_M32)/test-clang tests/test_main.c $(PORT_TEST_LIBS)
	@$(call port_examples,$(PORT_M32),$(PORT_M32)/run,gcc -m32 -O2 -fopenmp: the examples,gcc -m32 $(PORT_STRICT) -O2 -fopenmp)
	@$(PORT_CHECK) suite $(PORT_M32) "run -m32 (i686)" $(PORT_M32)/run $(PORT_ENV) $(PORT_ROOTABS)/m32/test-i686
	@$(PORT_CHECK) suite $(PORT_M32) "run -m32 -march=native" $(PORT_M32)/run $(PORT_ENV) $(PORT_ROOTABS)/m32/test-native
	@$(PORT_CHECK) suite $(PORT_M32) "run clang -m32 (kernels, reference)" $(PORT_M32)/run $(PORT_ENV) $(PORT_ROOTABS)/m32/test-clang $(PORT_KERNELS)
	@$(PORT_CHECK) end $(PORT_M32) $@

# ---------------------------------------------------------------------------
# test-aarch64: cross-compiled for AArch64 (static, so qemu-aarch64 needs no
# sysroot) and run under qemu-user: the header alone with -Wconversion
# (gcc and clang), the whole suite with the NEON kernels
# and OpenMP (gcc), the kernels with clang's NEON code, and the kernels
# with -DTLENS_NO_NEON (the scalar ones). The examples are not built: their
# tests skip.
PORT_A64 := $(PORT_DIR)/aarch64
PORT_A64_GCC := aarch64-linux-gnu-gcc
PORT_A64_CLANG := clang --target=aarch64-linux-gnu
test-aarch64:
	@$(PORT_CHECK) start $(PORT_A64)
	@$(PORT_CHECK) need $(PORT_A64) $@ "$(PORT_A64_GCC) clang qemu-aarch64" "gcc-aarch64-linux-gnu clang qemu-user"
	@$(PORT_CHECK) root $(PORT_A64)/run
	@$(PORT_CHECK) step $(PORT_A64) "gcc and clang -Wconversion: tlens.h alone" sh -c \
	    "$(PORT_A64_GCC) $(PORT_STRICT) -Wconversion -O2 -fopenmp $(PORT_INC) -c ports/strict/impl.c -o $(PORT_A64)/impl-gcc.o && \
	     $(PORT_A64_CLANG) $(PORT_STRICT) -Wconversion -O2 $(PORT_INC) -c ports/strict/impl.c -o $(PORT_A64)/impl-clang.o"
	@$(PORT_CHECK) step $(PORT_A64) "gcc -O2 -fopenmp (NEON): the test program" \
	    $(PORT_A64_GCC) $(PORT_TESTW) -O2 -fopenmp -g -static $(PORT_INC) -o $(PORT_A64)/test-neon tests/test_main.c $(PORT_TEST_LIBS)
	@$(PORT_CHECK) step $(PORT_A64) "clang -O2 (NEON): the test program" \
	    $(PORT_A64_CLANG) $(PORT_TESTW) -O2 -g -static $(PORT_INC) -o $(PORT_A64)/test-clang tests/test_main.c $(PORT_TEST_LIBS)
	@$(PORT_CHECK) step $(PORT_A64) "gcc -O2 -fopenmp -DTLENS_NO_NEON: the test program" \
	    $(PORT_A64_GCC) $(PORT_TESTW) -O2 -fopenmp -DTLENS_NO_NEON -g -static $(PORT_INC) -o $(PORT_A64)/test-noneon tests/test_main.c $(PORT_TEST_LIBS)
	@$(PORT_CHECK) suite $(PORT_A64) "qemu-aarch64: the suite (NEON, 2 threads)" $(PORT_A64)/run $(PORT_SLOW) $(PORT_ENV) qemu-aarch64 $(PORT_ROOTABS)/aarch64/test-neon
	@$(PORT_CHECK) suite $(PORT_A64) "qemu-aarch64: clang NEON (kernels, reference)" $(PORT_A64)/run $(PORT_SLOW) $(PORT_ENV) qemu-aarch64 $(PORT_ROOTABS)/aarch64/test-clang $(PORT_KERNELS)
	@$(PORT_CHECK) suite $(PORT_A64) "qemu-aarch64: -DTLENS_NO_NEON (kernels, reference)" $(PORT_A64)/run $(PORT_SLOW) $(PORT_ENV) qemu-aarch64 $(PORT_ROOTABS)/aarch64/test-noneon $(PORT_KERNELS)
	@$(PORT_CHECK) end $(PORT_A64) $@

# ---------------------------------------------------------------------------
# test-s390x: big-endian. The header alone with -Wconversion, and the
# whole suite cross-compiled for s390x (static, OpenMP) and run under
# qemu-s390x: the little-endian safetensors, .tlens and .npy files load on
# a big-endian host and give the reference values, and files tlens writes
# there are read back. Examples skip. The slowest target (some 12 minutes).
PORT_S390 := $(PORT_DIR)/s390x
test-s390x:
	@$(PORT_CHECK) start $(PORT_S390)
	@$(PORT_CHECK) need $(PORT_S390) $@ "s390x-linux-gnu-gcc qemu-s390x" "gcc-s390x-linux-gnu qemu-user"
	@$(PORT_CHECK) root $(PORT_S390)/run
	@$(PORT_CHECK) step $(PORT_S390) "gcc -Wconversion: tlens.h alone" \
	    s390x-linux-gnu-gcc $(PORT_STRICT) -Wconversion -O2 -fopenmp $(PORT_INC) -c ports/strict/impl.c -o $(PORT_S390)/impl.o
	@$(PORT_CHECK) step $(PORT_S390) "s390x-linux-gnu-gcc -O2 -fopenmp: the test program" \
	    s390x-linux-gnu-gcc $(PORT_TESTW) -O2 -fopenmp -g -static $(PORT_INC) -o $(PORT_S390)/test tests/test_main.c $(PORT_TEST_LIBS)
	@$(PORT_CHECK) step $(PORT_S390) "the program is big-endian" sh -c \
	    "LC_ALL=C od -An -tx1 -j5 -N1 $(PORT_S390)/test | grep -q 02"
	@$(PORT_CHECK) suite $(PORT_S390) "qemu-s390x: the suite (2 threads)" $(PORT_S390)/run $(PORT_SLOW) $(PORT_ENV) qemu-s390x $(PORT_ROOTABS)/s390x/test
	@$(PORT_CHECK) end $(PORT_S390) $@

# ---------------------------------------------------------------------------
# build-cortex-m: tlens as bare-metal firmware for a Cortex-M4 with FPU
# (Arm's MPS2 AN386 board, as QEMU models it): TLENS_NO_STDIO, every
# allocation from a static arena (ports/cortex-m/port_arena.c, through
# TLENS_MALLOC / TLENS_FREE: no malloc is linked), no newlib stdio. The
# model is tests/data/reference/tiny/model converted by build/tlens-convert
# to a .tlens file, made into a 64-byte aligned const array in flash by
# ports/cortex-m/bin2c.c, and loaded in place by tlens_load_memory; two
# firmwares: float32 weights (tlens-cortex-m4.elf) and float16 weights
# (tlens-cortex-m4-f16.elf, converted with --f16). Prints the code size
# (arm-none-eabi-size) of the library alone and of the whole firmware, and
# the library's size at -Os, for a Cortex-M7 and (soft float) a Cortex-M0+.
# See ports/cortex-m/README.md.
PORT_CM := $(PORT_DIR)/cortex-m
PORT_CM_CC := arm-none-eabi-gcc
PORT_CM_CPU := -mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16
PORT_CM_CFLAGS := $(PORT_STRICT) -Wconversion -O2 -g -ffunction-sections -fdata-sections $(PORT_INC) -Iports/cortex-m
PORT_CM_OBJS := startup main port_arena tlens_impl
PORT_CM_LINK = $(PORT_CM_CC) $(PORT_CM_CPU) -nostartfiles --specs=nano.specs -T ports/cortex-m/mps2-an386.ld -Wl,--gc-sections \
    $(addprefix $(PORT_CM)/,$(addsuffix .o,$(PORT_CM_OBJS))) $(PORT_CM)/tokens_data.o -lm -lc -lgcc
PORT_CM_QEMU := qemu-system-arm -M mps2-an386 -cpu cortex-m4 -display none -monitor none -serial null -nodefaults -nic none
build-cortex-m: $(BUILD)/tlens-convert
	@$(PORT_CHECK) start $(PORT_CM)
	@$(PORT_CHECK) need $(PORT_CM) $@ "$(PORT_CM_CC) arm-none-eabi-size" "gcc-arm-none-eabi libnewlib-arm-none-eabi"
	@$(PORT_CHECK) step $(PORT_CM) "tlens-convert the tiny model (f32, f16), bin2c it and the tokens into C arrays" sh -c \
	    "$(BUILD)/tlens-convert tests/data/reference/tiny/model $(PORT_CM)/tiny.tlens && \
	     $(BUILD)/tlens-convert tests/data/reference/tiny/model $(PORT_CM)/tiny-f16.tlens --f16 && \
	     $(CC) -std=c99 -O2 -Wall -Wno-unused-function -o $(PORT_CM)/bin2c ports/cortex-m/bin2c.c && \
	     $(PORT_CM)/bin2c bytes port_model $(PORT_CM)/tiny.tlens $(PORT_CM)/model_data.c && \
	     $(PORT_CM)/bin2c bytes port_model $(PORT_CM)/tiny-f16.tlens $(PORT_CM)/model_data_f16.c && \
	     $(PORT_CM)/bin2c tokens port_tokens tests/data/reference/tiny/tokens.npy $(PORT_CM)/tokens_data.c"
	@for f in $(PORT_CM_OBJS); do \
	    $(PORT_CHECK) step $(PORT_CM) "$(PORT_CM_CC) -mcpu=cortex-m4: $$f.c" \
	        $(PORT_CM_CC) $(PORT_CM_CPU) $(PORT_CM_CFLAGS) -c ports/cortex-m/$$f.c -o $(PORT_CM)/$$f.o; \
	done
	@$(PORT_CHECK) step $(PORT_CM) "link tlens-cortex-m4.elf and tlens-cortex-m4-f16.elf" sh -c \
	    "for d in model_data model_data_f16 tokens_data; do \
	         $(PORT_CM_CC) $(PORT_CM_CPU) -std=c99 -O2 -c $(PORT_CM)/\$$d.c -o $(PORT_CM)/\$$d.o || exit 1; done && \
	     $(PORT_CM_LINK) $(PORT_CM)/model_data.o -Wl,-Map=$(PORT_CM)/tlens-cortex-m4.map -o $(PORT_CM)/tlens-cortex-m4.elf && \
	     $(PORT_CM_LINK) $(PORT_CM)/model_data_f16.o -o $(PORT_CM)/tlens-cortex-m4-f16.elf"
	@$(PORT_CHECK) step $(PORT_CM) "no malloc and no stdio linked" sh -c \
	    "! arm-none-eabi-nm $(PORT_CM)/tlens-cortex-m4.elf | grep -wE '_?(malloc|_malloc_r|printf|fprintf|_vfprintf_r|fopen|__assert_func)'"
	@$(PORT_CHECK) step $(PORT_CM) "-mcpu=cortex-m7 -mfpu=fpv5-d16: tlens_impl.c" \
	    $(PORT_CM_CC) -mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16 $(PORT_CM_CFLAGS) -c ports/cortex-m/tlens_impl.c -o $(PORT_CM)/tlens_impl-m7.o
	@$(PORT_CHECK) step $(PORT_CM) "-mcpu=cortex-m0plus (soft float): tlens_impl.c" \
	    $(PORT_CM_CC) -mcpu=cortex-m0plus -mthumb -mfloat-abi=soft $(PORT_CM_CFLAGS) -c ports/cortex-m/tlens_impl.c -o $(PORT_CM)/tlens_impl-m0plus.o
	@$(PORT_CHECK) step $(PORT_CM) "-Os -mcpu=cortex-m4: tlens_impl.c" \
	    $(PORT_CM_CC) $(PORT_CM_CPU) $(subst -O2,-Os,$(PORT_CM_CFLAGS)) -c ports/cortex-m/tlens_impl.c -o $(PORT_CM)/tlens_impl-Os.o
	@if [ -f $(PORT_CM)/tlens-cortex-m4.elf ]; then \
	    echo "  code size (arm-none-eabi-size; text = code + read-only data, in flash):"; \
	    arm-none-eabi-size $(PORT_CM)/tlens_impl.o $(PORT_CM)/tlens_impl-Os.o $(PORT_CM)/tlens_impl-m7.o $(PORT_CM)/tlens_impl-m0plus.o \
	        $(PORT_CM)/tlens-cortex-m4.elf $(PORT_CM)/tlens-cortex-m4-f16.elf | sed 's/^/    /'; \
	    for v in "" -f16; do \
	        model=$$(wc -c <$(PORT_CM)/tiny$$v.tlens); \
	        text=$$(arm-none-eabi-size $(PORT_CM)/tlens-cortex-m4$$v.elf | awk 'NR==2{print $$1}'); \
	        echo "  tlens-cortex-m4$$v.elf: text $$text bytes = model $$model + code $$((text - model))"; \
	    done; \
	fi
	@$(PORT_CHECK) end $(PORT_CM) $@

# test-cortex-m: the two firmwares of build-cortex-m run under
# qemu-system-arm (mps2-an386; semihosting for the output and the exit
# status; 2 minutes at most each): one forward pass of the reference tokens
# [2, 16] with a hook and a cache selection; ports/cortex-m/compare.c then
# checks every logit against the same model file run on the host (built
# with the Makefile's CFLAGS: the SIMD kernels) within 1e-4, the float32
# one also against TransformerLens' reference logits, and that the arena is
# empty after tlens_free.
test-cortex-m: build-cortex-m
	@$(PORT_CHECK) start $(PORT_CM)/qemu
	@$(PORT_CHECK) need $(PORT_CM)/qemu $@ "qemu-system-arm" "qemu-system-arm"
	@rm -f $(PORT_CM)/qemu/semihosting*.txt
	@$(PORT_CHECK) step $(PORT_CM)/qemu "compare.c: build" \
	    $(CC) $(PORT_TESTW) $(CFLAGS) $(PORT_INC) -o $(PORT_CM)/compare ports/cortex-m/compare.c -lm
	@for v in "" -f16; do \
	    $(PORT_CHECK) step $(PORT_CM)/qemu "qemu-system-arm -M mps2-an386: tlens-cortex-m4$$v.elf" \
	        timeout 120 $(PORT_CM_QEMU) -chardev file,id=sh,path=$(PORT_CM)/qemu/semihosting$$v.txt \
	        -semihosting-config enable=on,target=native,chardev=sh -kernel $(PORT_CM)/tlens-cortex-m4$$v.elf; \
	    ref=; [ -z "$$v" ] && ref=tests/data/reference/tiny/processed/activations.safetensors; \
	    $(PORT_CHECK) stepv $(PORT_CM)/qemu "tlens-cortex-m4$$v.elf: logits vs the host$${ref:+ and TransformerLens}" \
	        $(PORT_CM)/compare $(PORT_CM)/tiny$$v.tlens tests/data/reference/tiny/tokens.npy $(PORT_CM)/qemu/semihosting$$v.txt $$ref; \
	done
	@$(PORT_CHECK) end $(PORT_CM)/qemu $@

# ---------------------------------------------------------------------------
# test-asan: the whole suite, and the examples it starts, built with clang
# -fsanitize=address,undefined -fno-sanitize-recover=all (any report ends
# the program with an error), leak detection on, with OpenMP (2 threads) so
# that the parallel loops are checked too.
PORT_AS := $(PORT_DIR)/asan
PORT_AS_FLAGS := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all -fopenmp
PORT_AS_ENV := env ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:strict_string_checks=1:detect_stack_use_after_return=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
test-asan:
	@$(PORT_CHECK) start $(PORT_AS)
	@$(PORT_CHECK) need $(PORT_AS) $@ "clang" "clang libomp-dev"
	@$(PORT_CHECK) root $(PORT_AS)/run
	@$(PORT_CHECK) step $(PORT_AS) "clang ASan+UBSan: the test program" \
	    clang $(PORT_TESTW) $(PORT_AS_FLAGS) -march=native $(PORT_INC) -o $(PORT_AS)/test tests/test_main.c $(PORT_TEST_LIBS)
	@$(call port_examples,$(PORT_AS),$(PORT_AS)/run,clang ASan+UBSan: the examples,clang $(PORT_STRICT) $(PORT_AS_FLAGS) -march=native)
	@$(PORT_CHECK) suite $(PORT_AS) "the suite under ASan+UBSan (examples too)" $(PORT_AS)/run $(PORT_AS_ENV) OMP_NUM_THREADS=2 $(PORT_ROOTABS)/asan/test
	@$(PORT_CHECK) step $(PORT_AS) "no sanitizer report in the output" sh -c \
	    "! grep -lE 'ERROR: (Address|Leak)Sanitizer|runtime error:' $(PORT_AS)/logs/*.log"
	@$(PORT_CHECK) end $(PORT_AS) $@

# ---------------------------------------------------------------------------
# test-valgrind: the whole suite, -O1 -g without OpenMP, under valgrind's
# memcheck, the examples it starts too (--trace-children): no invalid
# access, no use of uninitialised values, no definite or indirect leak.
# valgrind 3.19 cannot run AVX-512 code, so the build is for AVX2 + FMA when
# the machine has them (the SIMD kernels are checked), plain x86-64 if not.
# Takes a few minutes.
PORT_VG := $(PORT_DIR)/valgrind
PORT_VG_ISA := $(if $(and $(PORT_X86),$(PORT_AVX2)),-mavx2 -mfma -mf16c,)
# Each process logs to its own file (the examples' output, which the tests
# parse, stays clean); ports/vg_summary.sh adds them up.
PORT_VG_RUN = valgrind --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect \
    --show-leak-kinds=definite,indirect --trace-children=yes --log-file=$(CURDIR)/$(PORT_VG)/vglogs/vg.%p.log
test-valgrind:
	@$(PORT_CHECK) start $(PORT_VG)
	@$(PORT_CHECK) need $(PORT_VG) $@ "valgrind gcc" "valgrind gcc"
	@$(PORT_CHECK) root $(PORT_VG)/run
	@rm -rf $(PORT_VG)/vglogs && mkdir -p $(PORT_VG)/vglogs
	@$(PORT_CHECK) step $(PORT_VG) "gcc -O1 -g $(PORT_VG_ISA): the test program" \
	    gcc $(PORT_TESTW) -O1 -g $(PORT_VG_ISA) $(PORT_INC) -o $(PORT_VG)/test tests/test_main.c $(PORT_TEST_LIBS)
	@$(call port_examples,$(PORT_VG),$(PORT_VG)/run,gcc -O1 -g: the examples,gcc $(PORT_STRICT) -O1 -g $(PORT_VG_ISA))
	@$(PORT_CHECK) suite $(PORT_VG) "the suite under valgrind (examples too)" $(PORT_VG)/run $(PORT_SLOW) $(PORT_VG_RUN) $(PORT_ROOTABS)/valgrind/test
	@$(PORT_CHECK) stepv $(PORT_VG) "no valgrind error or leak in any process" sh ports/vg_summary.sh $(PORT_VG)/vglogs
	@$(PORT_CHECK) end $(PORT_VG) $@

# ---------------------------------------------------------------------------
# test-threads: tests/test_threads.c alone (ports/threads/main.c), with and
# without OpenMP: one model, two and four threads each with its own context
# (hooks and cache on), results bit for bit equal to sequential runs.
# test-tsan: the same under ThreadSanitizer (clang, without OpenMP, whose
# runtime TSan cannot see into): no data race between the contexts.
PORT_TH := $(PORT_DIR)/threads
test-threads:
	@$(PORT_CHECK) start $(PORT_TH)
	@$(PORT_CHECK) root $(PORT_TH)/run
	@for omp in "" -fopenmp; do \
	    $(PORT_CHECK) step $(PORT_TH) "$(CC) -O2 $${omp:-(no OpenMP)}: tests/test_threads.c" \
	        $(CC) $(PORT_TESTW) -O2 -march=native $$omp -g $(PORT_INC) -o $(PORT_TH)/threads$$omp ports/threads/main.c $(PORT_TEST_LIBS); \
	    $(PORT_CHECK) suite $(PORT_TH) "run $${omp:-(no OpenMP)}" $(PORT_TH)/run $(PORT_ENV) $(PORT_ROOTABS)/threads/threads$$omp; \
	done
	@$(PORT_CHECK) end $(PORT_TH) $@

PORT_TS := $(PORT_DIR)/tsan
test-tsan:
	@$(PORT_CHECK) start $(PORT_TS)
	@$(PORT_CHECK) need $(PORT_TS) $@ "clang" "clang"
	@$(PORT_CHECK) root $(PORT_TS)/run
	@$(PORT_CHECK) step $(PORT_TS) "clang -fsanitize=thread: tests/test_threads.c" \
	    clang $(PORT_TESTW) -O1 -g -fsanitize=thread -march=native $(PORT_INC) -o $(PORT_TS)/threads ports/threads/main.c $(PORT_TEST_LIBS)
	@$(PORT_CHECK) suite $(PORT_TS) "run under ThreadSanitizer" $(PORT_TS)/run env TSAN_OPTIONS=halt_on_error=1 $(PORT_ROOTABS)/tsan/threads
	@$(PORT_CHECK) step $(PORT_TS) "no ThreadSanitizer report" sh -c "! grep -l 'WARNING: ThreadSanitizer' $(PORT_TS)/logs/*.log"
	@$(PORT_CHECK) end $(PORT_TS) $@

# ---------------------------------------------------------------------------
# check-all: every target above, in turn (one heavy build at a time), then
# `fuzz` if some mk/*.mk defines it; a table of PASS/FAIL; exit 1 if any
# failed. Each target's own output is shown as it runs.
PORT_ALL := test-strict test-cxx test-threads test-tsan test-m32 test-asan test-valgrind \
    test-aarch64 test-s390x test-cortex-m
check-all:
	@status=0; summary=""; \
	fuzz=$$(grep -qsE '^fuzz[[:space:]]*:' Makefile mk/*.mk && echo fuzz); \
	for t in $(PORT_ALL) $$fuzz; do \
	    echo "=== $$t"; \
	    if $(MAKE) --no-print-directory $$t; then r=PASS; else r=FAIL; status=1; fi; \
	    summary="$$summary$$(printf '  %-16s %s' $$t $$r)\n"; \
	done; \
	echo "=== check-all"; printf "$$summary"; \
	if [ $$status -eq 0 ]; then echo "check-all: PASS"; else echo "check-all: FAIL"; fi; \
	exit $$status

# ---------------------------------------------------------------------------
# ports-deps: install (as root, Debian 12) every package the targets above
# need. The default `make` and `make test` need none of them. The cross C
# libraries are named because --no-install-recommends leaves them out, and
# the cross compilers then read the host's headers.
PORT_PACKAGES := gcc g++ clang libomp-dev gcc-12-multilib gcc-aarch64-linux-gnu gcc-s390x-linux-gnu \
    libc6-dev-arm64-cross libc6-dev-s390x-cross \
    qemu-user gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm valgrind
ports-deps:
	apt-get update
	DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $(PORT_PACKAGES)
