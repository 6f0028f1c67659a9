/* Tests of the matrix multiplication kernels (tlens.h, "Kernels: matrix
 * multiplication").
 *
 * Included into the test program's one translation unit after tlens.h (with
 * TLENS_IMPLEMENTATION) and tests/tlens_test.h, since the kernels are
 * static. Entry point: tests_matmul(). Each build tests one kernel path,
 * so build the tests several times: -march=native (AVX-512 here),
 * -mavx2 -mfma, -DTLENS_NO_SIMD, for AArch64 under qemu (NEON), and with
 * -fopenmp for the thread-count test (wip/mm_check.sh does all of them). */
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static unsigned tmm__seed = 12345u;

/* Uniform in [-1, 1), from a fixed sequence. */
static float tmm__rand(void) {
    tmm__seed = tmm__seed * 1664525u + 1013904223u;
    return (float)(tmm__seed >> 8) * (2.0f / 16777216.0f) - 1.0f;
}

static size_t tmm__n(int a, int b) { return (size_t)a * (size_t)b; }

static float *tmm__random(size_t n) {
    float *p = (float *)malloc(n * sizeof(float) + 1);
    size_t i;
    for (i = 0; i < n; i++) p[i] = tmm__rand();
    return p;
}

static float *tmm__filled(size_t n, float v) {
    float *p = (float *)malloc(n * sizeof(float) + 1);
    size_t i;
    for (i = 0; i < n; i++) p[i] = v;
    return p;
}

/* A packed random matrix; free m->data. */
static tlens__mat tmm__random_mat(int K, int N, tlens_dtype dt) {
    float *w = tmm__random((size_t)K * (size_t)N);
    void *data = malloc(tlens__mat_bytes(K, N, dt) + 1);
    tlens__mat m;
    tlens__mat_pack(data, w, K, N, dt);
    free(w);
    m.data = data;
    m.K = K;
    m.N = N;
    m.dtype = dt;
    return m;
}

/* The two results may differ only by rounding: the kernels use fused
 * multiply-adds, the reference does not. Bound: 1e-5 of the sum of the
 * magnitudes of the terms, |bias| + sum |a[k] w[k]|. */
static int tmm__close(float got, float want, float magnitude) {
    double d = (double)got - (double)want;
    if (d < 0) d = -d;
    return d <= 1e-5 * (double)magnitude + 1e-30;
}

/* a (M, K; row stride lda) in MR-row strips, as the forward pass gives
 * them to the kernel; free the result. */
static float *tmm__strips(const float *a, size_t lda, int M, int K) {
    size_t n = (size_t)((M + TLENS__MR - 1) / TLENS__MR) * TLENS__MR * (size_t)K;
    float *strips = tmm__filled(n, 12345.0f); /* the last strip's missing rows: never read */
    tlens__interleave_rows(strips, a, lda, M, K);
    return strips;
}

/* Compare tlens__matmul with tlens__matmul_ref on one shape, reading the
 * activations in place and from strips; the two give the same bits. */
static void tmm__check_matmul(int M, int K, int N, tlens_dtype dt, int with_bias) {
    tlens__mat w = tmm__random_mat(K, N, dt);
    float *a = tmm__random((size_t)M * (size_t)K);
    float *bias = with_bias ? tmm__random((size_t)N) : NULL;
    float *got = tmm__filled((size_t)M * (size_t)N, -999.0f);
    float *want = tmm__filled((size_t)M * (size_t)N, 999.0f);
    float *from_strips = tmm__filled((size_t)M * (size_t)N, -99.0f), *strips = tmm__strips(a, (size_t)K, M, K);
    int i, k, n, bad = 0;
    tlens__matmul(got, a, &w, bias, M);
    tlens__matmul_ref(want, a, &w, bias, M);
    tlens__matmul_rows(from_strips, a, K, strips, &w, 0, K, bias, M);
    if (memcmp(from_strips, got, (size_t)M * (size_t)N * sizeof(float)) != 0)
        tt_fail_line(__FILE__, __LINE__, "matmul M=%d K=%d N=%d dtype=%d bias=%d: strips differ from rows in place",
                     M, K, N, (int)dt, with_bias);
    for (i = 0; i < M && bad < 3; i++)
        for (n = 0; n < N && bad < 3; n++) {
            size_t o = (size_t)i * (size_t)N + (size_t)n;
            float mag = bias ? (float)fabs(bias[n]) : 0.0f;
            for (k = 0; k < K; k++)
                mag += (float)fabs(a[(size_t)i * (size_t)K + (size_t)k] * tlens__mat_get(&w, k, n));
            if (!tmm__close(got[o], want[o], mag)) {
                tt_fail_line(__FILE__, __LINE__,
                             "matmul M=%d K=%d N=%d dtype=%d bias=%d: out[%d][%d] = %.9g, ref %.9g",
                             M, K, N, (int)dt, with_bias, i, n, (double)got[o], (double)want[o]);
                bad++;
            }
        }
    free((void *)w.data);
    free(a);
    free(bias);
    free(got);
    free(want);
    free(from_strips);
    free(strips);
}

/* Awkward shapes: 1, primes, around the vector width, the panel width (32),
 * the K block (128), the row block, and GPT-2's 768. */
static const int tmm__shapes[][3] = { /* M, K, N */
    {1, 1, 1},     {1, 3, 17},     {1, 768, 769},  {1, 769, 33},  {1, 130, 2304},
    {2, 17, 31},   {3, 64, 32},    {3, 1, 1},      {5, 767, 64},  {7, 129, 48},
    {13, 769, 100}, {17, 3, 767},  {17, 768, 768}, {24, 256, 96}, {64, 17, 33},
    {64, 769, 129}, {100, 1, 200}, {389, 300, 161}, {250, 128, 40},
    {29, 1024, 65}, {13, 3072, 40}, /* rows 4 KB apart: the packed-tile path, */
    {390, 1024, 1050},               /* with items widened to 8-16 panels */
};

static void test_matmul_f32_matches_reference(void) {
    size_t s;
    for (s = 0; s < sizeof tmm__shapes / sizeof tmm__shapes[0]; s++) {
        tmm__check_matmul(tmm__shapes[s][0], tmm__shapes[s][1], tmm__shapes[s][2], TLENS_F32, 0);
        tmm__check_matmul(tmm__shapes[s][0], tmm__shapes[s][1], tmm__shapes[s][2], TLENS_F32, 1);
    }
}

static void test_matmul_f16_bf16_match_reference(void) {
    size_t s;
    for (s = 0; s < sizeof tmm__shapes / sizeof tmm__shapes[0]; s += 2) {
        tmm__check_matmul(tmm__shapes[s][0], tmm__shapes[s][1], tmm__shapes[s][2], TLENS_F16, 1);
        tmm__check_matmul(tmm__shapes[s][0], tmm__shapes[s][1], tmm__shapes[s][2], TLENS_BF16, 1);
    }
    for (s = 1; s < sizeof tmm__shapes / sizeof tmm__shapes[0]; s += 2) {
        tmm__check_matmul(tmm__shapes[s][0], tmm__shapes[s][1], tmm__shapes[s][2], TLENS_F16, 0);
        tmm__check_matmul(tmm__shapes[s][0], tmm__shapes[s][1], tmm__shapes[s][2], TLENS_BF16, 0);
    }
}

/* The documented layout, element by element, and the padding zeros. */
static void test_matmul_packed_layout(void) {
    const int K = 5, N = 37;
    float *w = tmm__random(tmm__n(K, N));
    size_t bytes = tlens__mat_bytes(K, N, TLENS_F32), i;
    float *packed = (float *)malloc(bytes);
    int k, n, bad = 0;
    TT_CHECK_INT(bytes, (size_t)K * 64 * 4);
    TT_CHECK_INT(tlens__mat_bytes(K, N, TLENS_F16), (size_t)K * 64 * 2);
    TT_CHECK_INT(tlens__mat_bytes(768, 50257, TLENS_BF16), (size_t)768 * 50272 * 2);
    TT_CHECK_INT(tlens__mat_bytes(768, 768, TLENS_F32), (size_t)768 * 768 * 4);
    memset(packed, 0xff, bytes);
    tlens__mat_pack(packed, w, K, N, TLENS_F32);
    for (k = 0; k < K; k++)
        for (n = 0; n < 64; n++) {
            float want = n < N ? w[k * N + n] : 0.0f;
            if (packed[((n / 32) * K + k) * 32 + n % 32] != want) bad++;
        }
    TT_CHECK_INT(bad, 0);
    for (i = 0; i < bytes / 4; i++) bad += packed[i] != packed[i]; /* no NaN (0xff) left */
    TT_CHECK_INT(bad, 0);
    free(w);
    free(packed);
}

/* tlens__mat_get and tlens__mat_column give back what was packed, rounded
 * to the element type. */
static void test_matmul_pack_get_column_round_trip(void) {
    const int K = 7, N = 70;
    tlens_dtype types[3] = {TLENS_F32, TLENS_F16, TLENS_BF16};
    float *w = tmm__random(tmm__n(K, N)), column[7];
    int t, k, n;
    w[3] = 1e-6f;      /* an F16 subnormal */
    w[4] = -70000.0f;  /* beyond F16's range */
    for (t = 0; t < 3; t++) {
        void *data = malloc(tlens__mat_bytes(K, N, types[t]));
        tlens__mat m;
        int bad_get = 0, bad_column = 0;
        tlens__mat_pack(data, w, K, N, types[t]);
        m.data = data;
        m.K = K;
        m.N = N;
        m.dtype = types[t];
        for (k = 0; k < K; k++)
            for (n = 0; n < N; n++) {
                float v = w[k * N + n], want = v;
                if (types[t] == TLENS_F16) want = tlens__f16_to_f32(tlens__f32_to_f16(v));
                if (types[t] == TLENS_BF16) want = tlens__bf16_to_f32(tlens__f32_to_bf16(v));
                if (tlens__mat_get(&m, k, n) != want) bad_get++;
            }
        for (n = 0; n < N; n++) {
            tlens__mat_column(&m, n, column);
            for (k = 0; k < K; k++)
                if (column[k] != tlens__mat_get(&m, k, n)) bad_column++;
        }
        TT_CHECK_INT(bad_get, 0);
        TT_CHECK_INT(bad_column, 0);
        free(data);
    }
    free(w);
}

/* A row's result does not depend on the other rows computed with it (the
 * summation order is fixed), so M rows at once equal M single rows; with
 * K = 1024 the M rows go through packed tiles, the single rows do not. */
static void test_matmul_rows_independent_of_m(void) {
    static const int Ks[] = {300, 1024};
    const int M = 29, N = 70;
    size_t c;
    for (c = 0; c < sizeof Ks / sizeof Ks[0]; c++) {
        int K = Ks[c], i, bad = 0;
        tlens__mat w = tmm__random_mat(K, N, TLENS_F32);
        float *a = tmm__random(tmm__n(M, K)), *bias = tmm__random((size_t)N);
        float *all = tmm__filled(tmm__n(M, N), 0.0f), *one = tmm__filled((size_t)N, 0.0f);
        tlens__matmul(all, a, &w, bias, M);
        for (i = 0; i < M; i++) {
            tlens__matmul(one, a + tmm__n(i, K), &w, bias, 1);
            bad += memcmp(one, all + tmm__n(i, N), (size_t)N * sizeof(float)) != 0;
        }
        TT_CHECK_INT(bad, 0);
        free((void *)w.data);
        free(a);
        free(bias);
        free(all);
        free(one);
    }
}

/* A product with a range of W's rows (one head's part of W_O), with a row
 * stride larger than the row: against a reference from tlens__mat_get. */
static void test_matmul_rows_of_w(void) {
    static const int cases[][4] = { /* M, K_begin, K_count, lda */
        {1, 64, 64, 768}, {5, 3, 130, 140}, {30, 0, 300, 300}, {13, 299, 1, 5}, {2, 7, 0, 1},
        {30, 0, 300, 1024}, {40, 5, 290, 2048}}; /* the last two: packed tiles */
    const int K = 300, N = 70;
    tlens__mat w = tmm__random_mat(K, N, TLENS_BF16);
    float *bias = tmm__random((size_t)N);
    size_t c;
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int M = cases[c][0], k0 = cases[c][1], kn = cases[c][2], lda = cases[c][3], i, k, n, bad = 0;
        float *a = tmm__random(tmm__n(M, lda)), *out = tmm__filled(tmm__n(M, N), 5.0f);
        float *strips = tmm__strips(a, (size_t)lda, M, kn), *out2 = tmm__filled(tmm__n(M, N), 6.0f);
        tlens__matmul_rows(out, a, lda, NULL, &w, k0, kn, bias, M);
        tlens__matmul_rows(out2, a, lda, strips, &w, k0, kn, bias, M);
        TT_CHECK(memcmp(out, out2, tmm__n(M, N) * sizeof(float)) == 0);
        for (i = 0; i < M; i++)
            for (n = 0; n < N; n++) {
                float want = bias[n], mag = (float)fabs(bias[n]);
                for (k = 0; k < kn; k++) {
                    float term = a[tmm__n(i, lda) + (size_t)k] * tlens__mat_get(&w, k0 + k, n);
                    want += term;
                    mag += (float)fabs(term);
                }
                bad += !tmm__close(out[tmm__n(i, N) + (size_t)n], want, mag);
            }
        TT_CHECK_INT(bad, 0);
        free(a);
        free(out);
        free(out2);
        free(strips);
    }
    free((void *)w.data);
    free(bias);
}

/* gemm_nn against its reference, with row strides larger than the rows
 * (as for heads inside a (pos, n_heads * d_head) buffer). */
static void tmm__check_gemm(int M, int N, int K) {
    int lda = K + 3, ldb = N + 5, ldc = N + 2;
    float *a = tmm__random(tmm__n(M, lda)), *b = tmm__random(tmm__n(K, ldb));
    float *got = tmm__filled(tmm__n(M, ldc), 777.0f), *want = tmm__filled(tmm__n(M, ldc), 777.0f);
    int i, j, k, bad = 0;
    tlens__gemm_nn(got, ldc, a, lda, b, ldb, M, N, K);
    tlens__gemm_nn_ref(want, ldc, a, lda, b, ldb, M, N, K);
    for (i = 0; i < M && bad < 3; i++)
        for (j = 0; j < ldc && bad < 3; j++) {
            size_t o = tmm__n(i, ldc) + (size_t)j;
            float mag = 0.0f;
            if (j >= N) { /* the gap between rows is left alone */
                if (got[o] != 777.0f) {
                    tt_fail_line(__FILE__, __LINE__, "gemm wrote past column N");
                    bad++;
                }
                continue;
            }
            for (k = 0; k < K; k++) mag += (float)fabs(a[tmm__n(i, lda) + (size_t)k] * b[tmm__n(k, ldb) + (size_t)j]);
            if (!tmm__close(got[o], want[o], mag)) {
                tt_fail_line(__FILE__, __LINE__, "gemm_nn M=%d N=%d K=%d: c[%d][%d] = %.9g, ref %.9g", M, N, K, i,
                             j, (double)got[o], (double)want[o]);
                bad++;
            }
        }
    free(a);
    free(b);
    free(got);
    free(want);
}

static const int tmm__gemm_shapes[][3] = { /* M, N, K */
    {1, 1, 1},   {1, 17, 64},   {2, 70, 64},    {3, 5, 7},      {4, 33, 64},  {5, 1, 129},
    {17, 17, 64}, {64, 64, 64}, {100, 130, 3}, {129, 65, 200}, {200, 300, 129}, {13, 767, 17},
};

static void test_gemm_nn_matches_reference(void) {
    size_t s;
    for (s = 0; s < sizeof tmm__gemm_shapes / sizeof tmm__gemm_shapes[0]; s++)
        tmm__check_gemm(tmm__gemm_shapes[s][0], tmm__gemm_shapes[s][1], tmm__gemm_shapes[s][2]);
}

#ifdef _OPENMP
/* Results with 1 and 2 threads, bit for bit. */
static int tmm__same_with_1_and_2_threads(int M, int K, int N, tlens_dtype dt) {
    tlens__mat w = tmm__random_mat(K, N, dt);
    float *a = tmm__random(tmm__n(M, K)), *bias = tmm__random((size_t)N);
    float *b = tmm__random(tmm__n(N, K));
    float *c1 = tmm__filled(tmm__n(M, N), 0.0f), *c2 = tmm__filled(tmm__n(M, N), 1.0f);
    float *h1 = tmm__filled(tmm__n(M, M), 0.0f), *h2 = tmm__filled(tmm__n(M, M), 1.0f);
    int threads = omp_get_max_threads(), same;
    omp_set_num_threads(1);
    tlens__matmul(c1, a, &w, bias, M);
    tlens__gemm_nn(h1, M, a, K, b, M, M, M, K < N ? K : N);
    omp_set_num_threads(2);
    tlens__matmul(c2, a, &w, bias, M);
    tlens__gemm_nn(h2, M, a, K, b, M, M, M, K < N ? K : N);
    omp_set_num_threads(threads);
    same = memcmp(c1, c2, tmm__n(M, N) * sizeof(float)) == 0 &&
           memcmp(h1, h2, tmm__n(M, M) * sizeof(float)) == 0;
    free((void *)w.data);
    free(a);
    free(bias);
    free(b);
    free(c1);
    free(c2);
    free(h1);
    free(h2);
    return same;
}
#endif

static void test_matmul_same_result_with_1_and_2_threads(void) {
#ifdef _OPENMP
    TT_CHECK(tmm__same_with_1_and_2_threads(1, 1536, 769, TLENS_F32)); /* M = 1: threads too */
    TT_CHECK(tmm__same_with_1_and_2_threads(300, 300, 600, TLENS_F32));
    TT_CHECK(tmm__same_with_1_and_2_threads(200, 129, 300, TLENS_F16));
#else
    TT_SKIP("built without OpenMP");
#endif
}

void tests_matmul(void);
void tests_matmul(void) {
    TT_RUN(test_matmul_packed_layout);
    TT_RUN(test_matmul_pack_get_column_round_trip);
    TT_RUN(test_matmul_f32_matches_reference);
    TT_RUN(test_matmul_f16_bf16_match_reference);
    TT_RUN(test_matmul_rows_independent_of_m);
    TT_RUN(test_matmul_rows_of_w);
    TT_RUN(test_gemm_nn_matches_reference);
    TT_RUN(test_matmul_same_result_with_1_and_2_threads);
}
