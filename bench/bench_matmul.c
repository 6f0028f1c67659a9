/* bench_matmul.c - speed of tlens' matmul kernels on GPT-2 small's shapes.
 *
 *   cc -std=c99 -O2 -march=native -fopenmp bench/bench_matmul.c -o build/bench_matmul -lm
 *   build/bench_matmul [f32|f16|bf16] [decode] [best]
 *
 * prints, for each (K, N) of GPT-2 small and M = 1, 16, 128, 1024,
 *   matmul_gflops M=<M> K=<K> N=<N> <GFLOP/s>      (median of several runs;
 *                                                    "best": the fastest run)
 * timing what the forward pass does: the activations put into strips
 * (tlens__interleave_rows), then the product.
 * and, for M = 1, the weight bytes read per second (matvec_gbps; these
 * matrices but the last fit in the L3 cache, so this is faster than
 * memory). Then attention's products (scores_gflops, gemm_nn_gflops; best
 * of several runs). "decode" instead times one token of GPT-2 small: all
 * 49 weight matrices with M = 1, 500 MB in f32, more than the caches hold,
 * so bound by memory bandwidth; it prints ms per token.
 *
 * With -DTLENS_BENCH_OPENBLAS (and -lopenblas) the same products also run
 * through cblas_sgemm (f32, row-major weights; after each tlens run, with
 * a pause between them) and print
 *   openblas_gflops M=<M> K=<K> N=<N> <GFLOP/s>
 *   ratio M=<M> K=<K> N=<N> <tlens / openblas>
 * OpenBLAS is only the yardstick here; tlens never depends on it.
 * `make bench-matmul` runs it; `make bench-matmul-openblas` with OpenBLAS
 * (Debian's libopenblas-dev). */
#define _POSIX_C_SOURCE 199309L
#define TLENS_IMPLEMENTATION
#include "../tlens.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef TLENS_BENCH_OPENBLAS
#include <cblas.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

static double bench_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *bench_random(size_t n) {
    float *p = (float *)malloc(n * sizeof(float));
    unsigned s = 1u;
    size_t i;
    for (i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = (float)(s >> 8) * (2.0f / 16777216.0f) - 1.0f;
    }
    return p;
}

static int bench_cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* What one timed call runs. */
typedef struct bench_case {
    int M, K, N;
    const float *a, *w_rowmajor, *bias;
    tlens__mat w;
    float *out, *strips;
} bench_case;

/* As the forward pass does it: the activations are put into strips, then
 * multiplied (a single row is read in place). */
static void bench_run_tlens(const bench_case *c) {
    if (c->M > 1) tlens__interleave_rows(c->strips, c->a, (size_t)c->K, c->M, c->K);
    tlens__matmul_rows(c->out, c->a, c->K, c->M > 1 ? c->strips : NULL, &c->w, 0, c->K, c->bias, c->M);
}

#ifdef TLENS_BENCH_OPENBLAS
static void bench_run_openblas(const bench_case *c) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->M, c->N, c->K, 1.0f, c->a, c->K,
                c->w_rowmajor, c->N, 0.0f, c->out, c->N);
}
#endif

/* Median (or, with the argument "best", shortest) seconds per call:
 * samples of enough calls to last >= 10 ms, at least 3 samples and about
 * 0.25 s in all. */
static int bench_use_best;
static double bench_time(void (*run)(const bench_case *), const bench_case *c) {
    double samples[15], t0, per_call;
    int calls = 1, n = 0, i;
    run(c); /* warm up */
    t0 = bench_now();
    run(c);
    per_call = bench_now() - t0;
    if (per_call < 0.01) calls = (int)(0.01 / (per_call + 1e-9)) + 1;
    while (n < 15 && (n < 3 || n * calls * per_call < 0.25)) {
        t0 = bench_now();
        for (i = 0; i < calls; i++) run(c);
        samples[n++] = (bench_now() - t0) / calls;
    }
    qsort(samples, (size_t)n, sizeof samples[0], bench_cmp);
    return bench_use_best ? samples[0] : samples[n / 2];
}

/* Attention for one head of GPT-2 small at 1024 positions: scores = q k^T
 * (M x N, K = d_head = 64) as the forward pass computes them, a product
 * with the keys / 8 packed into the weight layout; z = pattern v (M x 64,
 * K = positions); and the same for one new token (M = 1). As whole
 * squares: the causal blocks that tlens passes are smaller. */
static void bench_attention(void) {
    static const int shapes[2][3] = {{1024, 1024, 64}, {1, 1024, 64}}; /* M, N (positions), d_head */
    int s, rep, i, j;
    for (s = 0; s < 2; s++) {
        int M = shapes[s][0], T = shapes[s][1], D = shapes[s][2];
        float *q = bench_random((size_t)M * (size_t)D), *kv = bench_random((size_t)T * (size_t)D);
        float *p = bench_random((size_t)M * (size_t)T);
        float *c = (float *)malloc((size_t)M * (size_t)T * sizeof(float));
        float *kt = (float *)malloc((size_t)D * (size_t)T * sizeof(float)); /* (D, T) */
        double best_scores = 1e9, best_nn = 1e9, t0, flops = 2.0 * M * T * D;
        int reps = M == 1 ? 2000 : 10;
        tlens__mat keys;
        for (i = 0; i < T; i++)
            for (j = 0; j < D; j++) kt[(size_t)j * (size_t)T + (size_t)i] = 0.125f * kv[(size_t)i * (size_t)D + (size_t)j];
        keys.data = malloc(tlens__mat_bytes(D, T, TLENS_F32));
        keys.K = D;
        keys.N = T;
        keys.dtype = TLENS_F32;
        tlens__mat_pack((void *)keys.data, kt, D, T, TLENS_F32);
        for (rep = 0; rep < reps; rep++) {
            t0 = bench_now();
            tlens__matmul(c, q, &keys, NULL, M);
            t0 = bench_now() - t0;
            if (t0 < best_scores) best_scores = t0;
            t0 = bench_now();
            tlens__gemm_nn(c, D, p, T, kv, D, M, D, T);
            t0 = bench_now() - t0;
            if (t0 < best_nn) best_nn = t0;
        }
        printf("scores_gflops M=%d N=%d K=%d %.1f\n", M, T, D, flops / best_scores / 1e9);
        printf("gemm_nn_gflops M=%d N=%d K=%d %.1f\n", M, D, T, flops / best_nn / 1e9);
        free((void *)keys.data);
        free(kt);
        free(q);
        free(kv);
        free(p);
        free(c);
    }
}

static const int bench_shapes[5][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}, {768, 50257}};
static const int bench_ms[4] = {1, 16, 128, 1024};

/* One token of GPT-2 small decoded with a key/value cache: every weight
 * matrix once with M = 1, each its own memory. */
static void bench_decode(tlens_dtype dt) {
    enum { LAYERS = 12, MATS = LAYERS * 4 + 1 };
    tlens__mat mats[MATS];
    float *x = bench_random(3072), *y = (float *)malloc(50257 * sizeof(float));
    double bytes = 0, best = 1e9, t0;
    int i, rep;
    for (i = 0; i < MATS; i++) {
        int s = i == MATS - 1 ? 4 : i % 4;
        int K = bench_shapes[s][0], N = bench_shapes[s][1];
        float *w = bench_random((size_t)K * (size_t)N);
        size_t size = tlens__mat_bytes(K, N, dt);
        void *data = malloc(size);
        tlens__mat_pack(data, w, K, N, dt);
        free(w);
        mats[i].data = data;
        mats[i].K = K;
        mats[i].N = N;
        mats[i].dtype = dt;
        bytes += (double)size;
    }
    for (rep = 0; rep < 12; rep++) {
        t0 = bench_now();
        for (i = 0; i < MATS; i++) tlens__matmul(y, x, &mats[i], NULL, 1);
        t0 = bench_now() - t0;
        if (rep > 1 && t0 < best) best = t0;
    }
    printf("decode_ms_per_token %.2f (weights %.0f MB, %.1f GB/s, %.0f tokens/s)\n", best * 1e3,
           bytes / 1e6, bytes / best / 1e9, 1.0 / best);
    for (i = 0; i < MATS; i++) free((void *)mats[i].data);
    free(x);
    free(y);
}

static int bench_threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Let the other library's idle threads, which spin for a while after a
 * call, go to sleep before timing. */
static void bench_pause(void) {
#ifdef TLENS_BENCH_OPENBLAS
    struct timespec ts;
    ts.tv_sec = 0;
    ts.tv_nsec = 300000000L;
    nanosleep(&ts, NULL);
#endif
}

int main(int argc, char **argv) {
    tlens_dtype dt = TLENS_F32;
    int s, m, i, decode = 0;
    for (i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "f16")) dt = TLENS_F16;
        else if (!strcmp(argv[i], "bf16")) dt = TLENS_BF16;
        else if (!strcmp(argv[i], "decode")) decode = 1;
        else if (!strcmp(argv[i], "best")) bench_use_best = 1;
    }
    printf("# matmul kernels: %s, weights %s, threads %d, %s of runs\n", TLENS__ISA_NAME,
           dt == TLENS_F32 ? "f32" : dt == TLENS_F16 ? "f16" : "bf16", bench_threads(),
           bench_use_best ? "best" : "median");
#ifdef TLENS_BENCH_OPENBLAS
    printf("# openblas: %s, threads %d\n", openblas_get_config(), openblas_get_num_threads());
#endif
    if (decode) {
        bench_decode(dt);
        return 0;
    }
    /* Each shape with tlens, then with OpenBLAS, so that both see the same
     * load from whatever else runs on the machine. */
    for (s = 0; s < 5; s++) {
        bench_case c;
        float *w;
        void *packed;
        c.K = bench_shapes[s][0];
        c.N = bench_shapes[s][1];
        w = bench_random((size_t)c.K * (size_t)c.N);
        packed = malloc(tlens__mat_bytes(c.K, c.N, dt));
        tlens__mat_pack(packed, w, c.K, c.N, dt);
        c.w.data = packed;
        c.w.K = c.K;
        c.w.N = c.N;
        c.w.dtype = dt;
        c.w_rowmajor = w;
        c.bias = NULL;
        for (m = 0; m < 4; m++) {
            double secs, flops, ours;
            float *a;
            c.M = bench_ms[m];
            a = bench_random((size_t)c.M * (size_t)c.K);
            c.a = a;
            c.out = (float *)malloc((size_t)c.M * (size_t)c.N * sizeof(float));
            c.strips = (float *)malloc(((size_t)c.M + TLENS__MR) * (size_t)c.K * sizeof(float));
            flops = 2.0 * c.M * c.K * c.N;
            bench_pause();
            secs = bench_time(bench_run_tlens, &c);
            ours = flops / secs / 1e9;
            printf("matmul_gflops M=%d K=%d N=%d %.1f\n", c.M, c.K, c.N, ours);
            if (c.M == 1)
                printf("matvec_gbps K=%d N=%d %.1f\n", c.K, c.N,
                       (double)tlens__mat_bytes(c.K, c.N, dt) / secs / 1e9);
#ifdef TLENS_BENCH_OPENBLAS
            {
                double theirs;
                bench_pause();
                theirs = flops / bench_time(bench_run_openblas, &c) / 1e9;
                printf("openblas_gflops M=%d K=%d N=%d %.1f\n", c.M, c.K, c.N, theirs);
                printf("ratio M=%d K=%d N=%d %.2f\n", c.M, c.K, c.N, ours / theirs);
            }
#endif
            fflush(stdout);
            free(a);
            free(c.out);
            free(c.strips);
        }
        free(packed);
        free(w);
    }
    bench_pause();
    bench_attention();
    return 0;
}
