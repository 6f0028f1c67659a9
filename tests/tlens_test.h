/* tlens_test.h - a small test harness, stb style.
 *
 *   #define TT_IMPLEMENTATION   (in the one file that holds main)
 *   #include "tlens_test.h"
 *
 *   static void test_add(void) { TT_CHECK_INT(1 + 1, 2); }
 *   int main(int argc, char **argv) {
 *       TT_RUN(test_add);
 *       return tt_finish();      // prints "N passed, N failed[, N skipped]"
 *   }
 *
 * A test passes when none of its checks failed. Every failed check prints
 * one line: file:line, the expression and the values. TT_SKIP("why") ends a
 * test as skipped. Tests are registered explicitly, in the order they run;
 * a command-line argument runs only the tests whose names contain one of
 * its comma-separated parts.
 */
#ifndef TLENS_TEST_H
#define TLENS_TEST_H

#include <math.h>
#include <stdio.h>
#include <string.h>

typedef struct tt_state {
    int passed, failed, skipped;
    int current_failures; /* failed checks in the running test */
    int current_skipped;
    const char *current;
    const char *filter;
} tt_state;

extern tt_state tt;

void tt_run(const char *name, void (*fn)(void));
int tt_finish(void);
void tt_fail_line(const char *file, int line, const char *fmt, ...);
/* Are a and b close: |a-b| <= atol + rtol*|b|; -inf equals -inf, nan never. */
int tt_close(double a, double b, double atol, double rtol);

#define TT_RUN(fn) tt_run(#fn, fn)

#define TT_CHECK(cond)                                                      \
    do {                                                                    \
        if (!(cond)) tt_fail_line(__FILE__, __LINE__, "check failed: %s", #cond); \
    } while (0)

#define TT_CHECK_INT(a, b)                                                  \
    do {                                                                    \
        long long tt_a_ = (long long)(a), tt_b_ = (long long)(b);           \
        if (tt_a_ != tt_b_)                                                 \
            tt_fail_line(__FILE__, __LINE__, "%s == %s: %lld != %lld", #a, #b, tt_a_, tt_b_); \
    } while (0)

#define TT_CHECK_STR(a, b)                                                  \
    do {                                                                    \
        const char *tt_a_ = (a), *tt_b_ = (b);                              \
        if (!tt_a_ || !tt_b_ || strcmp(tt_a_, tt_b_) != 0)                  \
            tt_fail_line(__FILE__, __LINE__, "%s == %s: \"%s\" != \"%s\"", #a, #b, \
                         tt_a_ ? tt_a_ : "(null)", tt_b_ ? tt_b_ : "(null)"); \
    } while (0)

#define TT_CHECK_CLOSE(a, b, atol, rtol)                                    \
    do {                                                                    \
        double tt_a_ = (double)(a), tt_b_ = (double)(b);                    \
        if (!tt_close(tt_a_, tt_b_, atol, rtol))                            \
            tt_fail_line(__FILE__, __LINE__, "%s ~ %s: %.9g vs %.9g", #a, #b, tt_a_, tt_b_); \
    } while (0)

/* Stop the current test when a check failed (for checks later ones need). */
#define TT_REQUIRE(cond)                                                    \
    do {                                                                    \
        if (!(cond)) {                                                      \
            tt_fail_line(__FILE__, __LINE__, "required: %s", #cond);        \
            return;                                                         \
        }                                                                   \
    } while (0)

#define TT_SKIP(why)                                                        \
    do {                                                                    \
        printf("  skip %s: %s\n", tt.current, why);                         \
        tt.current_skipped = 1;                                             \
        return;                                                             \
    } while (0)

#endif /* TLENS_TEST_H */

#ifdef TT_IMPLEMENTATION
#include <stdarg.h>

tt_state tt;

void tt_fail_line(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    tt.current_failures++;
    if (tt.current_failures > 20) return; /* one broken test should not flood */
    printf("  FAIL %s (%s:%d): ", tt.current, file, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
}

int tt_close(double a, double b, double atol, double rtol) {
    if (isnan(a) || isnan(b)) return 0;
    if (isinf(a) || isinf(b)) return a == b;
    return fabs(a - b) <= atol + rtol * fabs(b);
}

/* The filter is a comma-separated list of substrings of test names. */
static int tt_selected(const char *name) {
    const char *f = tt.filter;
    char part[128];
    if (!f || !*f) return 1;
    while (*f) {
        size_t n = strcspn(f, ",");
        if (n < sizeof part) {
            memcpy(part, f, n);
            part[n] = 0;
            if (n && strstr(name, part)) return 1;
        }
        f += n + (f[n] == ',');
    }
    return 0;
}

void tt_run(const char *name, void (*fn)(void)) {
    if (!tt_selected(name)) return;
    tt.current = name;
    tt.current_failures = 0;
    tt.current_skipped = 0;
    fn();
    if (tt.current_failures) {
        if (tt.current_failures > 20)
            printf("  FAIL %s: %d more failed checks not shown\n", name, tt.current_failures - 20);
        tt.failed++;
    } else if (tt.current_skipped) {
        tt.skipped++;
    } else {
        tt.passed++;
    }
    fflush(stdout);
}

int tt_finish(void) {
    if (tt.skipped)
        printf("%d passed, %d failed, %d skipped\n", tt.passed, tt.failed, tt.skipped);
    else
        printf("%d passed, %d failed\n", tt.passed, tt.failed);
    return tt.failed ? 1 : 0;
}
#endif /* TT_IMPLEMENTATION */
