/* regress_main: tests/test_regressions.c on its own, built with
 * AddressSanitizer and UBSan by `make fuzz-regress`, because several of
 * its bugs (reads past a block, signed overflow) only show there. Run from
 * the repository's top folder; an optional argument filters test names. */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#define TT_IMPLEMENTATION
#include "../tests/tlens_test.h"
#include "../tests/test_regressions.c"

int main(int argc, char **argv) {
    if (argc > 1) tt.filter = argv[1];
    tests_regressions();
    return tt_finish();
}
