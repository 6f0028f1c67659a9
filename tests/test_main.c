/* The test program: one translation unit holding the implementation, so
 * that tests may also check private kernels against their references. */
#define TLENS_IMPLEMENTATION
#include "../tlens.h"
#define TT_IMPLEMENTATION
#include "tlens_test.h"
#include "test_util.h"

#include "test_matmul.c"
#include "test_reference.c"
#include "test_run.c"
#include "test_toolkit.c"
#include "test_family.c"
#include "test_loader.c"
#include "test_tokenizer.c"
#include "test_examples.c"
#include "test_regressions.c"
#include "test_threads.c"
#include "test_steer.c"
#include "test_sae.c"
#include "test_collect.c"
#include "test_bundled.c"

int main(int argc, char **argv) {
    if (argc > 1) tt.filter = argv[1];
    tests_matmul();
    tests_reference();
    tests_run();
    tests_toolkit();
    tests_family();
    tests_loader();
    tests_tokenizer();
    tests_examples();
    tests_regressions();
    tests_threads();
    tests_steer();
    tests_sae();
    tests_collect();
    tests_bundled();
    return tt_finish();
}
