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

/* ---- the collector ------------------------------------------------------ */

#define TC_MODEL "tests/data/reference/tiny/model"
#define TC_MAXSEQ 8
#define TC_MAXLEN 32

/* Token sequences and the index each one's rows should carry. */
typedef struct tc_set {
    int n;
    int len[TC_MAXSEQ];
    int32_t index[TC_MAXSEQ];
    int32_t ids[TC_MAXSEQ][TC_MAXLEN];
} tc_set;

/* Seven sequences of lengths that force padding in batches of 3 ({5, 9,
 * 1}, {7, 3, 12}, then {2} when closing): 39 tokens, with ids spread over
 * the tiny model's vocabulary of 1000. */
static const tc_set *tc_seqs(void) {
    static const int lens[7] = {5, 9, 1, 7, 3, 12, 2};
    static tc_set set;
    int s, t;
    set.n = 7;
    for (s = 0; s < 7; s++) {
        set.len[s] = lens[s];
        set.index[s] = 100 + 3 * s;
        for (t = 0; t < lens[s]; t++) set.ids[s][t] = (int32_t)((s * 131 + t * 37 + 11) % 1000);
    }
    return &set;
}

static tlens_model *tc_load_tiny(void) {
    tlens_model *m = NULL;
    tlens_error err;
    if (tlens_load(&m, TC_MODEL, NULL, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    return m;
}

/* Collect every sequence into dir with a new context; the row count. */
static size_t tc_collect(tlens_model *m, const char *dir, const char *const *patterns, int n, const tlens_collect_options *o) {
    tlens_ctx *ctx;
    tlens_collector *c;
    tlens_error err;
    size_t rows = 0;
    int s;
    TC_MKDIR(dir);
    if (tlens_ctx_new(&ctx, m, &err) != TLENS_OK) return 0;
    if (tlens_collect_open(&c, ctx, dir, patterns, n, o, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s", err.message);
        tlens_ctx_free(ctx);
        return 0;
    }
    for (s = 0; s < tc_seqs()->n; s++)
        if (tlens_collect_add(c, tc_seqs()->ids[s], tc_seqs()->len[s], tc_seqs()->index[s], &err) != TLENS_OK)
            tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    rows = tlens_collect_rows(c);
    if (tlens_collect_close(c, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    tlens_ctx_free(ctx);
    return rows;
}

/* dir/name.npy */
static int tc_load_npy(const char *dir, const char *name, tlens_tensor *t) {
    char path[256];
    tlens_error err;
    snprintf(path, sizeof path, "%s/%s.npy", dir, name);
    if (tlens_npy_load(path, t, &err) == TLENS_OK) return 1;
    tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    return 0;
}

/* Check dir/name.npy row by row against each sequence of the set run
 * alone with tlens_run_with_cache (rows from position `skip` on); rtol
 * 1e-4 leaves room for the different sums of a padded batch only. */
static void tc_check_point(tlens_ctx *ctx, const char *dir, const char *name, int skip, const tc_set *set,
                           double rtol) {
    tlens_tensor t;
    tlens_error err;
    size_t row = 0, per, i;
    int s, pos, d;
    if (!tc_load_npy(dir, name, &t)) return;
    for (s = 0; s < set->n; s++) {
        const tlens_tensor *a;
        if (tlens_run_with_cache(ctx, set->ids[s], 1, set->len[s], name, &err) != TLENS_OK ||
            !(a = tlens_cache_get(ctx, name))) {
            tt_fail_line(__FILE__, __LINE__, "%s: %s", name, err.message);
            break;
        }
        TT_CHECK_INT(t.ndim, a->ndim - 1);
        for (d = 2; d < a->ndim; d++) TT_CHECK_INT(t.shape[d - 1], a->shape[d]);
        per = tlens_tensor_numel(a) / (size_t)set->len[s];
        for (pos = skip; pos < set->len[s] && row < (size_t)t.shape[0]; pos++, row++)
            for (i = 0; i < per; i++)
                TT_CHECK_CLOSE(t.data[row * per + i], a->data[(size_t)pos * per + i], 1e-5, rtol);
    }
    TT_CHECK_INT(t.shape[0], row);
    tlens_tensor_free(&t);
}

/* tokens.npy and prompt_index.npy: each row's id and sequence index. */
static void tc_check_ids(const char *dir, int skip, const tc_set *set) {
    tlens_tensor tok, idx;
    size_t row = 0;
    int s, pos;
    if (!tc_load_npy(dir, "tokens", &tok)) return;
    if (tc_load_npy(dir, "prompt_index", &idx)) {
        TT_CHECK_INT(tok.ndim, 1);
        TT_CHECK_INT(idx.ndim, 1);
        TT_CHECK_INT(idx.shape[0], tok.shape[0]);
        for (s = 0; s < set->n; s++)
            for (pos = skip; pos < set->len[s] && row < (size_t)tok.shape[0]; pos++, row++) {
                TT_CHECK_INT(tok.data[row], set->ids[s][pos]);
                TT_CHECK_INT(idx.data[row], set->index[s]);
            }
        TT_CHECK_INT(tok.shape[0], row);
        tlens_tensor_free(&idx);
    }
    tlens_tensor_free(&tok);
}

/* Batches with left padding give every row of every kind of point
 * ([b,p,D], [b,p,1], [b,p,M], [b,p,h,dh]) as running its sequence alone;
 * the files come in firing order, each point once. */
static void test_collect_matches_single_runs(void) {
    static const char *const pats[6] = {"blocks.1.hook_resid_post", "blocks.0.mlp.hook_post", "blocks.1.attn.hook_z",
                                        "blocks.0.ln1.hook_scale", "hook_embed", "blocks.1.hook_resid_post"};
    static const char *const order[5] = {"hook_embed", "blocks.0.ln1.hook_scale", "blocks.0.mlp.hook_post",
                                         "blocks.1.attn.hook_z", "blocks.1.hook_resid_post"};
    const char *dir = TC_TMP "tc_collect";
    tlens_model *m = tc_load_tiny();
    tlens_collect_options o;
    tlens_ctx *ctx, *probe;
    tlens_collector *c;
    tlens_error err;
    int i;
    TT_REQUIRE(m != NULL);
    tc_tmp_dirs();
    memset(&o, 0, sizeof o);
    o.batch = 3;
    TT_CHECK_INT(tc_collect(m, dir, pats, 6, &o), 5 + 9 + 7 + 3 + 12 + 1 + 2 - 2); /* the last 2 are queued */
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    for (i = 0; i < 5; i++) tc_check_point(ctx, dir, order[i], 0, tc_seqs(), 1e-4);
    tc_check_ids(dir, 0, tc_seqs());
    /* the names, in firing order */
    TT_REQUIRE(tlens_ctx_new(&probe, m, &err) == TLENS_OK);
    TC_MKDIR(TC_TMP "tc_collect_names");
    TT_REQUIRE(tlens_collect_open(&c, probe, TC_TMP "tc_collect_names", pats, 6, &o, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_collect_count(c), 5);
    for (i = 0; i < 5; i++) TT_CHECK_STR(tlens_collect_name(c, i), order[i]);
    TT_CHECK(tlens_collect_name(c, 5) == NULL);
    TT_CHECK_INT(tlens_collect_close(c, &err), TLENS_OK);
    tlens_ctx_free(probe);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* float16 files hold the float32 files' values rounded to half, bit for
 * bit, after a header saying '<f2'. */
static void test_collect_f16_is_rounded_f32(void) {
    static const char *const pats[2] = {"blocks.0.attn.hook_q", "blocks.1.hook_mlp_out"};
    tlens_model *m = tc_load_tiny();
    tlens_collect_options o;
    int i;
    TT_REQUIRE(m != NULL);
    tc_tmp_dirs();
    memset(&o, 0, sizeof o);
    o.batch = 4;
    tc_collect(m, TC_TMP "tc_collect32", pats, 2, &o);
    o.f16 = 1;
    tc_collect(m, TC_TMP "tc_collect16", pats, 2, &o);
    for (i = 0; i < 2; i++) {
        char path[256];
        unsigned char *d;
        size_t size, off, k, n;
        tlens_tensor f32;
        if (!tc_load_npy(TC_TMP "tc_collect32", pats[i], &f32)) continue;
        snprintf(path, sizeof path, TC_TMP "tc_collect16/%s.npy", pats[i]);
        d = tu_read_file(path, &size);
        off = tc_check_header(d, size, "<f2", i == 0 ? "(39, 4, 16)" : "(39, 64)");
        n = tlens_tensor_numel(&f32);
        TT_CHECK_INT(size, off + 2 * n);
        for (k = 0; off && k < n && off + 2 * k + 1 < size; k++)
            TT_CHECK_INT(d[off + 2 * k] | (d[off + 2 * k + 1] << 8), tlens__f32_to_f16(f32.data[k]));
        free(d);
        tlens_tensor_free(&f32);
    }
    tc_check_ids(TC_TMP "tc_collect16", 0, tc_seqs());
    tlens_free(m);
}

/* skip_first: no row for each sequence's first token (a sequence of one
 * token gives none), the others as before. */
static void test_collect_skip_first(void) {
    static const char *const pats[1] = {"blocks.0.hook_resid_mid"};
    tlens_model *m = tc_load_tiny();
    tlens_collect_options o;
    tlens_ctx *ctx;
    tlens_error err;
    TT_REQUIRE(m != NULL);
    tc_tmp_dirs();
    memset(&o, 0, sizeof o);
    o.batch = 2;
    o.skip_first = 1;
    /* the one-token sequence is never queued, so batches of 2 leave none */
    TT_CHECK_INT(tc_collect(m, TC_TMP "tc_collect_skip", pats, 1, &o), 39 - 7);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    tc_check_point(ctx, TC_TMP "tc_collect_skip", pats[0], 1, tc_seqs(), 1e-4);
    tc_check_ids(TC_TMP "tc_collect_skip", 1, tc_seqs());
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* A window of 3 batches of 2 runs the first six sequences shortest first
 * ({1, 3}, {5, 7}, {9, 12}), the seventh when closing: rows come in that
 * order, each as its sequence run alone. */
static void test_collect_window_sorts_by_length(void) {
    static const char *const pats[2] = {"blocks.0.attn.hook_k", "blocks.1.hook_resid_pre"};
    static const int order[7] = {2, 4, 0, 3, 1, 5, 6};
    tlens_model *m = tc_load_tiny();
    tlens_collect_options o;
    tlens_ctx *ctx;
    tlens_error err;
    tc_set sorted;
    int i;
    TT_REQUIRE(m != NULL);
    tc_tmp_dirs();
    sorted = *tc_seqs();
    for (i = 0; i < 7; i++) {
        sorted.len[i] = tc_seqs()->len[order[i]];
        sorted.index[i] = tc_seqs()->index[order[i]];
        memcpy(sorted.ids[i], tc_seqs()->ids[order[i]], sizeof sorted.ids[i]);
    }
    memset(&o, 0, sizeof o);
    o.batch = 2;
    o.window = 3;
    TT_CHECK_INT(tc_collect(m, TC_TMP "tc_collect_window", pats, 2, &o), 39 - 2);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    for (i = 0; i < 2; i++) tc_check_point(ctx, TC_TMP "tc_collect_window", pats[i], 0, &sorted, 1e-4);
    tc_check_ids(TC_TMP "tc_collect_window", 0, &sorted);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* Globs pass over the key-axis points and, while they are off, the
 * optional ones; an optional point named exactly switches them on. */
static void test_collect_globs_and_optional(void) {
    static const char *const attn[1] = {"blocks.0.attn.*"};
    static const char *const result[1] = {"blocks.1.attn.hook_result"};
    static const char *const expect[4] = {"blocks.0.attn.hook_q", "blocks.0.attn.hook_k", "blocks.0.attn.hook_v",
                                          "blocks.0.attn.hook_z"};
    tlens_model *m = tc_load_tiny();
    tlens_ctx *ctx;
    tlens_collector *c;
    tlens_collect_options o;
    tlens_error err;
    int i;
    TT_REQUIRE(m != NULL);
    tc_tmp_dirs();
    TC_MKDIR(TC_TMP "tc_collect_opt");
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    TT_REQUIRE(tlens_collect_open(&c, ctx, TC_TMP "tc_collect_opt", attn, 1, NULL, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_collect_count(c), 4);
    for (i = 0; i < 4; i++) TT_CHECK_STR(tlens_collect_name(c, i), expect[i]);
    TT_CHECK_INT(tlens_collect_close(c, &err), TLENS_OK);
    tlens_ctx_free(ctx);
    memset(&o, 0, sizeof o);
    o.batch = 3;
    tc_collect(m, TC_TMP "tc_collect_opt", result, 1, &o);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    tlens_set_optional_hooks(ctx, 1);
    tc_check_point(ctx, TC_TMP "tc_collect_opt", result[0], 0, tc_seqs(), 1e-4);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* The pass ends after the last block a point needs: no logits then, and
 * only the last position's when the last block is needed; the rows are
 * those of full runs. */
static void test_collect_stops_early(void) {
    static const char *const pos[1] = {"hook_pos_embed"};
    static const char *const mlp[1] = {"blocks.0.hook_mlp_out"};
    static const char *const last[1] = {"blocks.1.ln2.hook_normalized"};
    static const char *const *const sets[3] = {pos, mlp, last};
    tlens_model *m = tc_load_tiny();
    tlens_ctx *ctx, *ref;
    tlens_collector *c;
    tlens_collect_options o;
    tlens_error err;
    int k, s;
    TT_REQUIRE(m != NULL);
    tc_tmp_dirs();
    TC_MKDIR(TC_TMP "tc_collect_stop");
    memset(&o, 0, sizeof o);
    o.batch = 3;
    TT_REQUIRE(tlens_ctx_new(&ref, m, &err) == TLENS_OK);
    for (k = 0; k < 3; k++) {
        TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
        TT_REQUIRE(tlens_collect_open(&c, ctx, TC_TMP "tc_collect_stop", sets[k], 1, &o, &err) == TLENS_OK);
        for (s = 0; s < tc_seqs()->n; s++)
            TT_CHECK_INT(tlens_collect_add(c, tc_seqs()->ids[s], tc_seqs()->len[s], tc_seqs()->index[s], &err), TLENS_OK);
        TT_CHECK_INT(tlens_collect_close(c, &err), TLENS_OK);
        if (k < 2) TT_CHECK(tlens_logits(ctx) == NULL);
        else TT_CHECK(tlens_logits(ctx) != NULL && tlens_logits(ctx)->shape[1] == 1);
        tc_check_point(ref, TC_TMP "tc_collect_stop", sets[k][0], 0, tc_seqs(), 1e-4);
        tlens_ctx_free(ctx);
    }
    tlens_ctx_free(ref);
    tlens_free(m);
}

/* Errors name what is wrong. */
static void test_collect_errors(void) {
    static const char *const pattern[1] = {"blocks.0.attn.hook_pattern"};
    static const char *const nothing[1] = {"blocks.9.*"};
    static const char *const resid[1] = {"blocks.0.hook_resid_pre"};
    tlens_model *m = tc_load_tiny();
    tlens_ctx *ctx;
    tlens_collector *c;
    tlens_error err;
    int32_t ids[129];
    TT_REQUIRE(m != NULL);
    tc_tmp_dirs();
    TC_MKDIR(TC_TMP "tc_collect_err");
    memset(ids, 0, sizeof ids);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_collect_open(&c, ctx, TC_TMP "tc_collect_err", pattern, 1, NULL, &err), TLENS_ERR_SHAPE);
    TT_CHECK(c == NULL && strstr(err.message, "hook_pattern") != NULL);
    TT_CHECK_INT(tlens_collect_open(&c, ctx, TC_TMP "tc_collect_err", nothing, 1, NULL, &err), TLENS_ERR_NOT_FOUND);
    TT_CHECK(strstr(err.message, "blocks.9.*") != NULL);
    TT_CHECK_INT(tlens_collect_open(&c, ctx, TC_TMP "no/such/dir", resid, 1, NULL, &err), TLENS_ERR_IO);
    TT_CHECK(strstr(err.message, "no/such/dir/blocks.0.hook_resid_pre.npy") != NULL);
    TT_REQUIRE(tlens_collect_open(&c, ctx, TC_TMP "tc_collect_err", resid, 1, NULL, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_collect_add(c, ids, 129, 0, &err), TLENS_ERR_LENGTH);
    TT_CHECK_INT(tlens_collect_add(c, ids, 0, 0, &err), TLENS_ERR_LENGTH);
    ids[3] = 1000;
    TT_CHECK_INT(tlens_collect_add(c, ids, 5, 7, &err), TLENS_ERR_TOKEN);
    TT_CHECK(strstr(err.message, "1000") != NULL);
    ids[3] = 999;
    TT_CHECK_INT(tlens_collect_add(c, ids, 128, 7, &err), TLENS_OK);
    TT_CHECK_INT(tlens_collect_close(c, &err), TLENS_OK);
    TT_CHECK_INT(tlens_collect_close(NULL, &err), TLENS_OK);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* ---- tlens collect, run as a user runs it (tx_run of test_examples.c) ---- */

#define TC_CLI TC_TMP "tc_cli"

/* A random model with GPT-2's vocabulary, so that GPT-2's tokenizer fits
 * it, and small otherwise: 2 layers, d_model 32, 4 heads, n_ctx 24. */
static tlens_model *tc_cli_model(const char *path) {
    tlens_config c;
    tlens_model *m = NULL;
    tlens_error err;
    memset(&c, 0, sizeof c);
    c.n_layers = 2;
    c.d_model = 32;
    c.n_heads = 4;
    c.d_mlp = 128;
    c.d_vocab = 50257;
    c.n_ctx = 24;
    c.tied = 1;
    if (tlens_init_random(&m, &c, NULL, 5, &err) || tlens_save(m, path, &err)) {
        tt_fail_line(__FILE__, __LINE__, "%s", err.message);
        tlens_free(m);
        return NULL;
    }
    return m;
}

/* The lines joined by '\n' into a file. */
static int tc_write_lines(const char *path, const char *const *lines, int n) {
    FILE *f = fopen(path, "wb");
    int i, ok = f != NULL;
    for (i = 0; ok && i < n; i++) ok = fputs(lines[i], f) >= 0 && fputc('\n', f) != EOF;
    return f && fclose(f) == 0 && ok;
}

/* What the tool should make of prompts: each text tokenized (BOS first
 * when bos), cut to ctx_len tokens, then to what max_rows leaves (rows
 * from position skip on); index = line number. texts[i] NULL: an empty
 * line, passed over. */
static void tc_expect(tc_set *set, const tlens_tokenizer *tok, const char *const *texts, int n, int bos, int ctx_len,
                      int skip, int max_rows) {
    int i, rows = 0;
    set->n = 0;
    for (i = 0; i < n && rows < max_rows; i++) {
        int32_t ids[256];
        size_t len = 0;
        tlens_error err;
        if (!texts[i]) continue;
        if (tlens_encode(tok, texts[i], strlen(texts[i]), bos, ids, 256, &len, &err) != TLENS_OK)
            tt_fail_line(__FILE__, __LINE__, "%s", err.message);
        if ((int)len > ctx_len) len = (size_t)ctx_len;
        if ((int)len - skip > max_rows - rows) len = (size_t)(max_rows - rows + skip);
        rows += (int)len - skip;
        set->len[set->n] = (int)len;
        set->index[set->n] = i;
        memcpy(set->ids[set->n++], ids, len * sizeof(int32_t));
    }
}

static void tc_swap(tc_set *set, int a, int b) {
    int32_t ids[TC_MAXLEN], index = set->index[a];
    int len = set->len[a];
    memcpy(ids, set->ids[a], sizeof ids);
    set->len[a] = set->len[b];
    set->index[a] = set->index[b];
    memcpy(set->ids[a], set->ids[b], sizeof ids);
    set->len[b] = len;
    set->index[b] = index;
    memcpy(set->ids[b], ids, sizeof ids);
}

/* Order a set as the collector's window does: by length, stably. */
static void tc_sort_by_length(tc_set *set) {
    int i, j;
    for (i = 1; i < set->n; i++)
        for (j = i; j > 0 && set->len[j - 1] > set->len[j]; j--) tc_swap(set, j - 1, j);
}

#define TC_LONG_LINE                                                                \
    "One line that is longer than the twenty-four positions of this small model " \
    "runs on and on, so that the tool has to cut it."

/* Plain text: BOS rows written, an empty line passed over but counted, a
 * "\r\n" line end, one prompt longer than n_ctx cut; globs; batches of 3
 * read 8 ahead (the default window), so the rows come shortest first. */
static void test_collect_cli_text(void) {
    static const char *const lines[5] = {"Hello world, this is a test.", "", TC_LONG_LINE, "x\r",
                                         "A fourth prompt, with a comma."};
    static const char *const texts[5] = {"Hello world, this is a test.", NULL, TC_LONG_LINE, "x",
                                         "A fourth prompt, with a comma."};
    static const char *const names[3] = {"blocks.0.attn.hook_v", "blocks.0.hook_resid_post", "blocks.1.hook_resid_post"};
    tlens_model *m;
    tlens_tokenizer *tok = NULL;
    tlens_ctx *ctx = NULL;
    tlens_error err;
    tc_set set;
    char *out, expect[128];
    int i, rows = 0;
    if (!tx_have("tlens")) TT_SKIP("build/tlens is missing (make builds it)");
    tc_tmp_dirs();
    TC_MKDIR(TC_CLI);
    TT_REQUIRE((m = tc_cli_model(TC_CLI "/model.tlens")) != NULL);
    TT_REQUIRE(tc_write_lines(TC_CLI "/prompts.txt", lines, 5));
    out = tx_run("tlens", "collect " TC_CLI "/model.tlens --prompts " TC_CLI "/prompts.txt --hook 'blocks.*.hook_resid_post' "
                 "--hook blocks.0.attn.hook_v -o " TC_CLI "/out --batch 3");
    if (out && tlens_tokenizer_load(&tok, "tokenizer", NULL, &err) == TLENS_OK && tlens_ctx_new(&ctx, m, &err) == TLENS_OK) {
        tc_expect(&set, tok, texts, 5, 1, 24, 0, 1 << 30);
        TT_CHECK_INT(set.n, 4);
        tc_sort_by_length(&set);
        for (i = 0; i < set.n; i++) rows += set.len[i];
        snprintf(expect, sizeof expect, "collected %d tokens of 4 prompts, 3 hook points as float32", rows);
        TT_CHECK(strstr(out, expect) != NULL);
        TT_CHECK(strstr(out, "; 1 prompt cut to 24 tokens") != NULL);
        for (i = 0; i < 3; i++) tc_check_point(ctx, TC_CLI "/out", names[i], 0, &set, 1e-4);
        tc_check_ids(TC_CLI "/out", 0, &set);
    }
    free(out);
    tlens_ctx_free(ctx);
    tlens_tokenizer_free(tok);
    tlens_free(m);
}

/* JSONL (escapes, a blank line, other keys) with --f16, --skip-bos-rows,
 * --ctx 6, --max-tokens 9 and --window 1 (rows in the file's order): the
 * second prompt is cut to fit, the third never read. */
static void test_collect_cli_jsonl(void) {
    static const char *const lines[4] = {"{\"text\": \"First \\\"quoted\\\" line\"}", "",
                                         "{\"id\": 3, \"text\": \"caf\\u00e9 au lait, s'il vous pla\\u00eet\"}",
                                         "{\"text\": \"last one\"}"};
    static const char *const texts[4] = {"First \"quoted\" line", NULL, "caf\xc3\xa9 au lait, s'il vous pla\xc3\xaet",
                                         "last one"};
    tlens_model *m;
    tlens_tokenizer *tok = NULL;
    tlens_ctx *ctx = NULL;
    tlens_error err;
    tc_set set;
    unsigned char *d;
    size_t size;
    char *out;
    if (!tx_have("tlens")) TT_SKIP("build/tlens is missing (make builds it)");
    tc_tmp_dirs();
    TC_MKDIR(TC_CLI);
    TT_REQUIRE((m = tc_cli_model(TC_CLI "/model.tlens")) != NULL);
    TT_REQUIRE(tc_write_lines(TC_CLI "/prompts.jsonl", lines, 4));
    out = tx_run("tlens", "collect " TC_CLI "/model.tlens --prompts " TC_CLI "/prompts.jsonl --hook blocks.1.hook_mlp_out "
                 "-o " TC_CLI "/out16 --f16 --skip-bos-rows --ctx 6 --max-tokens 9 --window 1");
    if (out && tlens_tokenizer_load(&tok, "tokenizer", NULL, &err) == TLENS_OK && tlens_ctx_new(&ctx, m, &err) == TLENS_OK) {
        tc_expect(&set, tok, texts, 4, 1, 6, 1, 9);
        TT_CHECK_INT(set.n, 2);
        TT_CHECK(strstr(out, "collected 9 tokens of 2 prompts, 1 hook point as float16") != NULL);
        d = tu_read_file(TC_CLI "/out16/blocks.1.hook_mlp_out.npy", &size);
        TT_CHECK(tc_check_header(d, size, "<f2", "(9, 32)") != 0);
        free(d);
        tc_check_point(ctx, TC_CLI "/out16", "blocks.1.hook_mlp_out", 1, &set, 1e-3); /* half: 2^-11 */
        tc_check_ids(TC_CLI "/out16", 1, &set);
    }
    free(out);
    tlens_ctx_free(ctx);
    tlens_tokenizer_free(tok);
    tlens_free(m);
}

void tests_collect(void) {
    TT_RUN(test_npy_writer_f32_rows);
    TT_RUN(test_npy_writer_i32_many_rows);
    TT_RUN(test_npy_writer_f16_rounding);
    TT_RUN(test_npy_writer_errors);
    TT_RUN(test_collect_matches_single_runs);
    TT_RUN(test_collect_f16_is_rounded_f32);
    TT_RUN(test_collect_skip_first);
    TT_RUN(test_collect_window_sorts_by_length);
    TT_RUN(test_collect_globs_and_optional);
    TT_RUN(test_collect_stops_early);
    TT_RUN(test_collect_errors);
    TT_RUN(test_collect_cli_text);
    TT_RUN(test_collect_cli_jsonl);
}
