/* Timing helpers shared by the benchmark translation units (each one has
 * its own static copy of tlens). */
#ifndef BENCH_TIMER_H
#define BENCH_TIMER_H
#include <stdlib.h>
#include <time.h>

static inline double bench_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline int bench_cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static inline double bench_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Deterministic token ids. */
static inline int32_t *bench_tokens(int n, int vocab) {
    int32_t *t = (int32_t *)malloc((size_t)n * sizeof *t);
    uint32_t x = 12345u;
    int i;
    for (i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        t[i] = (int32_t)((x >> 8) % (uint32_t)vocab);
    }
    return t;
}

/* Median time of a full forward pass of T tokens (after one warm-up run). */
static inline double bench_median_ms_ex(tlens_ctx *ctx, const int32_t *tok, int T, int reps,
                                        const tlens_run_options *ro) {
    double times[32];
    int i;
    tlens_run_ex(ctx, tok, 1, T, ro, NULL);
    for (i = 0; i < reps && i < 32; i++) {
        double t0 = bench_now_ms();
        tlens_run_ex(ctx, tok, 1, T, ro, NULL);
        times[i] = bench_now_ms() - t0;
    }
    return bench_median(times, i);
}

static inline double bench_median_ms(tlens_ctx *ctx, const int32_t *tok, int T, int reps) {
    return bench_median_ms_ex(ctx, tok, T, reps, NULL);
}
#endif
