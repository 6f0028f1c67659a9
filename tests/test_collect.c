/* Activation datasets on disk: the streaming .npy writer
 * (tlens_npy_writer_*) and the collector built on it (tlens_collect_*).
 * The files are checked byte by byte against numpy's format as written
 * here (magic, version, header dict, 64-byte padding), and float16 values
 * against bit patterns worked out by hand. Files go to build/test-tmp/.
 * Everything is prefixed tc_. Call tests_collect(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/stat.h>
#define TC_MKDIR(dir) mkdir(dir, 0777)
#else
#define TC_MKDIR(dir) ((void)(dir))
#endif

#define TC_TMP "build/test-tmp/"

static void tc_tmp_dirs(void) {
    TC_MKDIR("build");
    TC_MKDIR("build/test-tmp");
}

static uint32_t tc_le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static float tc_f32(const unsigned char *p) {
    uint32_t u = tc_le32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* Check the .npy header of d (size bytes) as numpy writes version 1.0:
 * "\x93NUMPY", 1, 0, a little-endian uint16 length, then exactly
 * {'descr': DESCR, 'fortran_order': False, 'shape': SHAPE, } padded with
 * spaces and ended by '\n' so that the data starts at a multiple of 64.
 * Returns the data's offset, 0 after a failed check. */
static size_t tc_check_header(const unsigned char *d, size_t size, const char *descr, const char *shape) {
    char dict[200];
    size_t hlen, total, i, n;
    if (!d || size < 10) {
        tt_fail_line(__FILE__, __LINE__, "no .npy file (%zu bytes)", size);
        return 0;
    }
    TT_CHECK(memcmp(d, "\x93NUMPY\x01\x00", 8) == 0);
    hlen = (size_t)d[8] | ((size_t)d[9] << 8);
    total = 10 + hlen;
    TT_CHECK_INT(total % 64, 0);
    if (total > size) {
        tt_fail_line(__FILE__, __LINE__, "header of %zu bytes in a file of %zu", total, size);
        return 0;
    }
    TT_CHECK_INT(d[total - 1], '\n');
    n = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    if (n + 11 > total || memcmp(d + 10, dict, n) != 0) {
        tt_fail_line(__FILE__, __LINE__, "header is \"%.*s\", expected \"%s\"", (int)(total - 10), d + 10, dict);
        return 0;
    }
    for (i = 10 + n; i < total - 1; i++)
        if (d[i] != ' ') {
            tt_fail_line(__FILE__, __LINE__, "header byte %zu is 0x%02x, not a space", i, d[i]);
            return 0;
        }
    return total;
}

/* Rows appended in pieces land after a valid header with the final count. */
static void test_npy_writer_f32_rows(void) {
    tlens_npy_writer *w;
    tlens_error err;
    int shape[1] = {3};
    float v[15];
    unsigned char *d;
    size_t size, off, i;
    tc_tmp_dirs();
    for (i = 0; i < 15; i++) v[i] = (float)i * 0.25f - 1.0f;
    TT_REQUIRE(tlens_npy_writer_open(&w, TC_TMP "tc_f32.npy", TLENS_NPY_F32, 1, shape, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_npy_writer_append(w, v, 2, &err), TLENS_OK);
    TT_CHECK_INT(tlens_npy_writer_append(w, v + 6, 0, &err), TLENS_OK);
    TT_CHECK_INT(tlens_npy_writer_append(w, v + 6, 3, &err), TLENS_OK);
    TT_CHECK_INT(tlens_npy_writer_rows(w), 5);
    TT_REQUIRE(tlens_npy_writer_close(w, &err) == TLENS_OK);
    d = tu_read_file(TC_TMP "tc_f32.npy", &size);
    off = tc_check_header(d, size, "<f4", "(5, 3)");
    TT_CHECK_INT(size, off + 15 * 4);
    for (i = 0; off && i < 15; i++) TT_CHECK(tc_f32(d + off + 4 * i) == v[i]);
    free(d);
}

/* A one-dimensional file's shape is Python's one-element tuple, and a row
 * count with more digits than the first header's 0 fits in its place. */
static void test_npy_writer_i32_many_rows(void) {
    tlens_npy_writer *w;
    tlens_error err;
    tlens_tensor t;
    int32_t *v = (int32_t *)malloc(123457 * sizeof *v);
    unsigned char *d;
    size_t size, off, i;
    TT_REQUIRE(v != NULL);
    tc_tmp_dirs();
    for (i = 0; i < 123457; i++) v[i] = (int32_t)i - 1000;
    TT_REQUIRE(tlens_npy_writer_open(&w, TC_TMP "tc_i32.npy", TLENS_NPY_I32, 0, NULL, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_npy_writer_append_i32(w, v, 123457, &err), TLENS_OK);
    TT_CHECK_INT(tlens_npy_writer_append(w, (const float *)NULL, 0, &err), TLENS_ERR_DTYPE);
    TT_REQUIRE(tlens_npy_writer_close(w, &err) == TLENS_OK);
    d = tu_read_file(TC_TMP "tc_i32.npy", &size);
    off = tc_check_header(d, size, "<i4", "(123457,)");
    TT_CHECK_INT(size, off + 123457 * 4);
    for (i = 0; off && i < 123457; i += 1111) TT_CHECK_INT((int32_t)tc_le32(d + off + 4 * i), v[i]);
    free(d);
    TT_REQUIRE(tlens_npy_load(TC_TMP "tc_i32.npy", &t, &err) == TLENS_OK);
    TT_CHECK_INT(t.ndim, 1);
    TT_CHECK_INT(t.shape[0], 123457);
    for (i = 0; i < 123457; i += 777) TT_CHECK(t.data[i] == (float)v[i]);
    tlens_tensor_free(&t);
    free(v);
}

/* float16: round to nearest even, overflow to infinity, subnormals; the
 * bits are IEEE binary16's, worked out by hand. tlens_npy_load reads them
 * back as the floats they stand for. */
static void test_npy_writer_f16_rounding(void) {
    static const float in[9] = {1.0f, -2.0f, 0.33333334f, 65504.0f, 70000.0f, 5.9604645e-08f,
                                1.00048828125f /* 1 + 2^-11: a tie, to even 1 */,
                                1.00146484375f /* 1 + 3 * 2^-11: a tie, to even 1 + 2^-9 */, 0.0f};
    static const uint16_t bits[9] = {0x3c00, 0xc000, 0x3555, 0x7bff, 0x7c00, 0x0001, 0x3c00, 0x3c02, 0x0000};
    static const float back[9] = {1.0f, -2.0f, 0.333251953125f, 65504.0f, INFINITY, 5.9604645e-08f, 1.0f,
                                  1.001953125f, 0.0f};
    tlens_npy_writer *w;
    tlens_error err;
    tlens_tensor t;
    int shape[2] = {3, 3};
    unsigned char *d;
    size_t size, off, i;
    tc_tmp_dirs();
    TT_REQUIRE(tlens_npy_writer_open(&w, TC_TMP "tc_f16.npy", TLENS_NPY_F16, 2, shape, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_npy_writer_append(w, in, 1, &err), TLENS_OK);
    TT_CHECK_INT(tlens_npy_writer_append_i32(w, (const int32_t *)NULL, 0, &err), TLENS_ERR_DTYPE);
    TT_REQUIRE(tlens_npy_writer_close(w, &err) == TLENS_OK);
    d = tu_read_file(TC_TMP "tc_f16.npy", &size);
    off = tc_check_header(d, size, "<f2", "(1, 3, 3)");
    TT_CHECK_INT(size, off + 9 * 2);
    for (i = 0; off && i < 9; i++) TT_CHECK_INT(d[off + 2 * i] | (d[off + 2 * i + 1] << 8), bits[i]);
    free(d);
    TT_REQUIRE(tlens_npy_load(TC_TMP "tc_f16.npy", &t, &err) == TLENS_OK);
    TT_CHECK_INT(t.ndim, 3);
    TT_CHECK_INT(t.shape[0], 1);
    TT_CHECK_INT(t.shape[2], 3);
    for (i = 0; i < 9; i++) TT_CHECK(t.data[i] == back[i]);
    tlens_tensor_free(&t);
}

/* An empty file is valid too; errors name the file. */
static void test_npy_writer_errors(void) {
    tlens_npy_writer *w;
    tlens_error err;
    int shape[4] = {2, 2, 2, 2}, bad = -1;
    unsigned char *d;
    size_t size;
    tc_tmp_dirs();
    TT_REQUIRE(tlens_npy_writer_open(&w, TC_TMP "tc_empty.npy", TLENS_NPY_F32, 2, shape, &err) == TLENS_OK);
    TT_REQUIRE(tlens_npy_writer_close(w, &err) == TLENS_OK);
    d = tu_read_file(TC_TMP "tc_empty.npy", &size);
    TT_CHECK_INT(size, tc_check_header(d, size, "<f4", "(0, 2, 2)"));
    free(d);
    TT_CHECK_INT(tlens_npy_writer_open(&w, TC_TMP "no/such/dir/x.npy", TLENS_NPY_F32, 1, shape, &err), TLENS_ERR_IO);
    TT_CHECK(w == NULL);
    TT_CHECK(strstr(err.message, "no/such/dir/x.npy") != NULL);
    TT_CHECK_INT(tlens_npy_writer_open(&w, TC_TMP "tc_x.npy", TLENS_NPY_F32, 4, shape, &err), TLENS_ERR_ARG);
    TT_CHECK_INT(tlens_npy_writer_open(&w, TC_TMP "tc_x.npy", TLENS_NPY_F32, 1, &bad, &err), TLENS_ERR_SHAPE);
    TT_CHECK_INT(tlens_npy_writer_close(NULL, &err), TLENS_OK);
}

void tests_collect(void) {
    TT_RUN(test_npy_writer_f32_rows);
    TT_RUN(test_npy_writer_i32_many_rows);
    TT_RUN(test_npy_writer_f16_rounding);
    TT_RUN(test_npy_writer_errors);
}
