/* A private test program for tests/test_threads.c alone (built by
 * `make test-threads` / `make test-tsan` from mk/portability.mk), laid out
 * like tests/test_main.c: one translation unit holding the implementation.
 * Until test_main.c includes test_threads.c, this is what runs it.
 * Link with -pthread. Runs from the repository root. */
#define TLENS_IMPLEMENTATION
#include "../../tlens.h"
#define TT_IMPLEMENTATION
#include "../../tests/tlens_test.h"
#include "../../tests/test_util.h"

#include "../../tests/test_threads.c"

int main(int argc, char **argv) {
    if (argc > 1) tt.filter = argv[1];
    tests_threads();
    return tt_finish();
}
