/* Crash regressions (tests_regressions): inputs the fuzzers in fuzz/ found
 * to crash or misbehave, minimised, as ordinary tests. Each test names the
 * harness that found it and the bug; the input bytes are embedded.
 *
 * Some of these bugs are reads past a heap block or signed overflow, which
 * a plain build does not notice: those tests check the result the fixed
 * code must give, and crash under AddressSanitizer / UBSan before the fix
 * (`make fuzz-regress` runs this file in such a build).
 *
 * Needs the implementation in the same program (it calls the private JSON
 * and config.json readers) and tlens_test.h; writes its files into
 * build/test-tmp/. Everything is prefixed rg_. */
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define RG_TMP "build/test-tmp/"

/* Write bytes to build/test-tmp/NAME; the path goes to out. */
static int rg_write(char *out, size_t cap, const char *name, const void *data, size_t size) {
    FILE *f;
    snprintf(out, cap, RG_TMP "%s", name);
    f = fopen(out, "wb");
    if (!f) return 0;
    if (size && fwrite(data, 1, size, f) != size) {
        fclose(f);
        return 0;
    }
    return fclose(f) == 0;
}

#define RG_ANY_ERROR ((tlens_result)-1)

/* tlens_npy_load of these bytes must fail with `want` (RG_ANY_ERROR: any
 * code) and a message, leaving no data. */
static void rg_npy_expect(const char *name, const unsigned char *data, size_t size, tlens_result want) {
    char path[256];
    tlens_tensor t;
    tlens_error err;
    tlens_result r;
    memset(&err, 0, sizeof err);
    if (!rg_write(path, sizeof path, name, data, size)) {
        tt_fail_line(__FILE__, __LINE__, "cannot write %s", path);
        return;
    }
    r = tlens_npy_load(path, &t, &err);
    if ((want == RG_ANY_ERROR ? r == TLENS_OK : r != want) || err.code != r || !err.message[0] || t.data != NULL)
        tt_fail_line(__FILE__, __LINE__, "%s: result %d (\"%s\"), expected %s %d", name, (int)r, err.message,
                     want == RG_ANY_ERROR ? "any error, not" : "", want == RG_ANY_ERROR ? 0 : (int)want);
    if (r == TLENS_OK) tlens_tensor_free(&t);
}

/* fuzz_npy, heap-buffer-overflow: a version-2 header is 12 bytes (magic,
 * version, a 4-byte length) but only 10 were required; for a 10-byte file
 * the length's last byte is read past the buffer (read_file's block is
 * size + 1), and for 10 or 11 bytes the header text starts past it, where
 * strstr scans on. */
static void test_regression_npy_v2_short_header(void) {
    static const unsigned char v2_10[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 0x02, 0x00, 0x00, 0x00};
    static const unsigned char v2_11[11] = {0x93, 'N', 'U', 'M', 'P', 'Y', 0x02, 0x00, 0x00, 0x00, 0x00};
    /* the fuzzer's own find: version byte ' ' (0x20 >= 2 reads as 2) */
    static const unsigned char found[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 0x20, 0x3f, 0x00, 0x00};
    rg_npy_expect("regression-npy-v2-10.npy", v2_10, sizeof v2_10, TLENS_ERR_FORMAT);
    rg_npy_expect("regression-npy-v2-11.npy", v2_11, sizeof v2_11, TLENS_ERR_FORMAT);
    rg_npy_expect("regression-npy-fuzz.npy", found, sizeof found, TLENS_ERR_FORMAT);
}

/* fuzz_npy, heap-buffer-overflow: the type is read as descr[10..12] after
 * "'descr': '" without checking that three bytes follow; a file that ends
 * right after it reads two bytes past the buffer (a plain build then sees
 * whatever follows the block and mostly reports TLENS_ERR_DTYPE: a cut
 * header is TLENS_ERR_FORMAT). */
static void test_regression_npy_descr_at_end(void) {
    static const char text[] = "\x93NUMPY\x01\x00\x00\x00'shape': (1,), 'descr': '";
    rg_npy_expect("regression-npy-descr-end.npy", (const unsigned char *)text, sizeof text - 1, TLENS_ERR_FORMAT);
}

/* fuzz_config and fuzz_safetensors, UBSan "negation of
 * -9223372036854775808 cannot be represented in type 'long long'": the JSON
 * number reader negates the magnitude as a long long, and 2^63 is not one.
 * The value is a valid JSON integer that fits a long long, so the fixed
 * reader gives LLONG_MIN as an integer; one below it and 2^63 are not
 * integers. */
static void test_regression_json_llong_min(void) {
    static const char text[] =
        "{\"a\": -9223372036854775808, \"b\": -9223372036854775809, \"c\": 9223372036854775808,"
        " \"d\": 9223372036854775807, \"e\": -0}";
    /* the fuzzer's input, minimised: the same number in a config.json */
    static const char config[] = "{\"n_layer\": 1, \"n_embd\": 8, \"n_head\": 2, \"vocab_size\": 16,"
                                 " \"n_positions\": -9223372036854775808}";
    tlens__json j;
    tlens_error err;
    tlens_config c;
    int a, b, cc, d, e;
    TT_REQUIRE(tlens__json_parse(&j, text, sizeof text - 1, "regression.json", NULL, &err) == TLENS_OK);
    a = tlens__json_get(&j, 0, "a");
    b = tlens__json_get(&j, 0, "b");
    cc = tlens__json_get(&j, 0, "c");
    d = tlens__json_get(&j, 0, "d");
    e = tlens__json_get(&j, 0, "e");
    TT_CHECK(a >= 0 && j.nodes[a].is_integer && j.nodes[a].integer == LLONG_MIN);
    TT_CHECK(b >= 0 && !j.nodes[b].is_integer);
    TT_CHECK(cc >= 0 && !j.nodes[cc].is_integer);
    TT_CHECK(d >= 0 && j.nodes[d].is_integer && j.nodes[d].integer == LLONG_MAX);
    TT_CHECK(e >= 0 && j.nodes[e].is_integer && j.nodes[e].integer == 0);
    tlens__json_free(&j);
    memset(&err, 0, sizeof err);
    TT_CHECK_INT(tlens__config_parse(&c, config, sizeof config - 1, "config.json", NULL, &err), TLENS_ERR_CONFIG);
    TT_CHECK(strstr(err.message, "n_positions") != NULL);
}

/* fuzz_config, UBSan "signed integer overflow: 4 * 1073741825": without
 * n_inner, d_mlp = 4 * n_embd is computed in int before n_embd is checked
 * against its limit (65536). The error must name n_embd. */
static void test_regression_config_4x_n_embd(void) {
    static const char *const texts[] = {
        "{\"n_layer\": 1, \"n_embd\": 1073741825, \"n_head\": 1, \"vocab_size\": 1, \"n_positions\": 1}",
        "{\"n_layer\": 1, \"n_embd\": 2147483647, \"n_head\": 1, \"vocab_size\": 1, \"n_positions\": 1,"
        " \"n_inner\": null}",
        NULL};
    int i;
    for (i = 0; texts[i]; i++) {
        tlens_config c;
        tlens_error err;
        memset(&err, 0, sizeof err);
        TT_CHECK_INT(tlens__config_parse(&c, texts[i], strlen(texts[i]), "config.json", NULL, &err), TLENS_ERR_CONFIG);
        TT_CHECK(strstr(err.message, "n_embd") != NULL);
    }
}

/* ---- malformed input that is accepted (no crash; found while auditing the
 * parsers the fuzzers cover) ---- */

/* A dimension with more digits than fit an int is not refused: the digit
 * loop stops at 214748365 and the rest of the number is read as another
 * dimension, so (2147483650,) loads as a (214748365, 0) array with no data. */
static void test_regression_npy_huge_dimension(void) {
    static const char text[] = "\x93NUMPY\x01\x00\x4e\x00{'descr': '<f4', 'fortran_order': False,"
                               " 'shape': (2147483650,), }           \n";
    rg_npy_expect("regression-npy-huge-dim.npy", (const unsigned char *)text, sizeof text - 1, RG_ANY_ERROR);
}

/* A backslash followed by a NUL byte passes the JSON reader's escape check
 * (strchr finds the terminating NUL of its list of escape letters), so a
 * config.json holding "\<NUL>" is accepted; a NUL is never valid there. */
static void test_regression_json_backslash_nul(void) {
    static const char text[] = "{\"n_layer\": 1, \"n_embd\": 8, \"n_head\": 2, \"vocab_size\": 16,"
                               " \"n_positions\": 8, \"x\": \"a\\\0b\"}";
    tlens_config c;
    tlens_error err;
    memset(&err, 0, sizeof err);
    TT_CHECK_INT(tlens__config_parse(&c, text, sizeof text - 1, "config.json", NULL, &err), TLENS_ERR_FORMAT);
}

/* ---- sizes from files, overflow-checked on 32-bit hosts too ---- */

/* A tiny model with random weights (freed by the caller). */
static tlens_model *rg_tiny_model(int d_model, int d_mlp) {
    tlens_config c;
    tlens_model *m = NULL;
    tlens_error err;
    memset(&c, 0, sizeof c);
    c.n_layers = 1; c.d_model = d_model; c.n_heads = 2; c.d_mlp = d_mlp; c.d_vocab = 16; c.n_ctx = 8;
    if (tlens_init_random(&m, &c, NULL, 3, &err)) tt_fail_line(__FILE__, __LINE__, "init_random: %s", err.message);
    return m;
}

/* Offset of tensor i in a .tlens image, as the table stores it. */
static unsigned char *rg_tensor_row(unsigned char *image, int i) {
    return image + (size_t)tlens__le64(image + 72) + (size_t)i * 64u;
}

/* Load the image (64-byte aligned) and expect `want`; on an error the
 * message must name tensor `name` (NULL: no name to check) and `word`. */
static void rg_tlens_expect(const unsigned char *image, size_t size, tlens_result want, const char *name,
                            const char *word, int line) {
    static int sentinel;
    tlens_model *m = (tlens_model *)(void *)&sentinel; /* a failed load must set it to NULL */
    tlens_error err;
    tlens_result r;
    memset(&err, 0, sizeof err);
    r = tlens_load_memory(&m, image, size, NULL, &err);
    if (r != want || (r && (m != NULL || err.code != r || (name && !strstr(err.message, name)) ||
                            (word && !strstr(err.message, word)))))
        tt_fail_line(__FILE__, line, "result %d (\"%s\"), expected %d naming %s, %s", (int)r, err.message, (int)want,
                     name ? name : "-", word ? word : "-");
    if (!r) tlens_free(m);
}

/* tlens__tlens_table checked each tensor's bounds and alignment only, so
 * tensors could share bytes: a misaligned file whose tensors all sit on one
 * block claims (and copies) far more data than it holds (fuzz/overflow32.c
 * "wire"). Tensors must follow the header in table order without overlap. */
static void test_regression_tlens_overlapping_offsets(void) {
    char path[256];
    unsigned char *block, *image, *saved;
    size_t size = 0;
    uint64_t off0, off1, off2;
    FILE *f;
    tlens_error err;
    tlens_model *m = rg_tiny_model(8, 32);
    TT_REQUIRE(m != NULL);
    snprintf(path, sizeof path, RG_TMP "regression-overlap.tlens");
    TT_REQUIRE(tlens_save(m, path, &err) == TLENS_OK);
    tlens_free(m);
    f = fopen(path, "rb");
    TT_REQUIRE(f != NULL);
    block = (unsigned char *)malloc(2u << 20);
    saved = (unsigned char *)malloc(1u << 20);
    if (block && saved) size = fread(saved, 1, 1u << 20, f);
    fclose(f);
    TT_REQUIRE(block && saved && size > 256 && size < (1u << 20));
    image = block + ((64u - ((uintptr_t)block & 63u)) & 63u);
    memcpy(image, saved, size);
    rg_tlens_expect(image, size, TLENS_OK, NULL, NULL, __LINE__); /* as written, it loads */
    off0 = tlens__le64(rg_tensor_row(image, 0) + 56);
    off1 = tlens__le64(rg_tensor_row(image, 1) + 56);
    off2 = tlens__le64(rg_tensor_row(image, 2) + 56);
    TT_CHECK(off0 >= 256 && off0 < off1 && off1 < off2);
    /* tensor 1 on tensor 0's bytes */
    tlens__put64(rg_tensor_row(image, 1) + 56, off0);
    rg_tlens_expect(image, size, TLENS_ERR_FORMAT, (const char *)rg_tensor_row(image, 1), "overlaps", __LINE__);
    /* tensors 1 and 2 swapped: offsets decrease */
    memcpy(image, saved, size);
    tlens__put64(rg_tensor_row(image, 1) + 56, off2);
    tlens__put64(rg_tensor_row(image, 2) + 56, off1);
    rg_tlens_expect(image, size, TLENS_ERR_FORMAT, (const char *)rg_tensor_row(image, 2), "overlaps", __LINE__);
    /* tensor 0 inside the header */
    memcpy(image, saved, size);
    tlens__put64(rg_tensor_row(image, 0) + 56, 64);
    rg_tlens_expect(image, size, TLENS_ERR_FORMAT, (const char *)rg_tensor_row(image, 0), "overlaps", __LINE__);
    /* every tensor on one block, as the overflow32 file has them */
    memcpy(image, saved, size);
    {
        int i, n = (int)tlens__le32(image + 68);
        for (i = 0; i < n; i++) tlens__put64(rg_tensor_row(image, i) + 56, off0);
    }
    rg_tlens_expect(image, size, TLENS_ERR_FORMAT, (const char *)rg_tensor_row(saved, 1), "overlaps", __LINE__);
    free(block);
    free(saved);
}

/* The parameter buffer's bytes for table row p, computed here from the
 * format's description (3.6, 3.8): float32, matrices stored in panels of
 * 32 columns, every tensor padded to 64 bytes. */
static uint64_t rg_param_bytes(const tlens__param *p) {
    uint64_t cols = p->kind == TLENS__PACKED ? ((uint64_t)p->cols + 31u) / 32u * 32u : (uint64_t)p->cols;
    return ((uint64_t)p->rows * cols * 4u + 63u) / 64u * 64u;
}

/* The size check of a configuration left out the padding of the parameter
 * buffer (whole panels, 64-byte tensors): with d_model 1, W_out takes 32
 * times its floats, and a 32-bit host accepted 255 layers of d_mlp 2^20
 * (36 GB once padded), whose buffer size then wrapped. The bound must cover
 * the padded buffer of every table; the buffer size must be exact. */
static void test_regression_config_counts_padding(void) {
    static const int shapes[][5] = {/* n_layers, d_model, n_heads, d_mlp, d_vocab */
                                    {3, 1, 1, 4096, 1}, {2, 8, 2, 32, 16}, {1, 33, 3, 65, 50}, {2, 1, 1, 1, 1000}};
    tlens_config c;
    tlens_error err;
    tlens__param huge[3];
    size_t floats;
    int k, processing;
    for (k = 0; k < (int)(sizeof shapes / sizeof shapes[0]); k++)
        for (processing = 0; processing <= 15; processing += 15) {
            tlens_model fake;
            tlens__param *t = (tlens__param *)malloc((size_t)(shapes[k][0] * 16 + 8) * sizeof *t);
            uint64_t sum = 0;
            int n, i;
            memset(&fake, 0, sizeof fake);
            fake.cfg.n_layers = shapes[k][0]; fake.cfg.d_model = shapes[k][1]; fake.cfg.n_heads = shapes[k][2];
            fake.cfg.d_mlp = shapes[k][3]; fake.cfg.d_vocab = shapes[k][4]; fake.cfg.n_ctx = 7; fake.cfg.eps = 1e-5f;
            fake.processing = processing; fake.wdtype = TLENS_F32;
            fake.W_E = &fake; /* non-NULL: the table has embed.W_E */
            fake.blocks = (tlens__block *)calloc((size_t)shapes[k][0], sizeof *fake.blocks);
            TT_REQUIRE(t && fake.blocks);
            n = tlens__param_table(&fake, t);
            for (i = 0; i < n; i++) sum += rg_param_bytes(&t[i]);
            TT_CHECK(tlens__params_size(t, n, TLENS_F32) == 64u + sum);
            TT_CHECK(tlens__param_floats(&fake.cfg, &floats) && (uint64_t)floats * 4u >= sum);
            TT_CHECK_INT(tlens__config_check(&fake.cfg, "regression", &err), TLENS_OK);
            free(t);
            free(fake.blocks);
        }
    /* the overflow32 "wire" configuration */
    memset(&c, 0, sizeof c);
    c.n_layers = 255; c.d_model = 1; c.n_heads = 1; c.d_mlp = 1 << 20; c.d_vocab = 1; c.n_ctx = 1; c.eps = 1e-5f;
    memset(&err, 0, sizeof err);
    if (sizeof(size_t) < 8) {
        TT_CHECK_INT(tlens__config_check(&c, ".tlens", &err), TLENS_ERR_CONFIG);
        TT_CHECK(strstr(err.message, "address space") != NULL);
    } else {
        TT_CHECK_INT(tlens__config_check(&c, ".tlens", &err), TLENS_OK); /* 36 GB: fits 64 bits */
    }
    /* tensors whose sizes add up past size_t (or overflow alone, on 32-bit
     * hosts) make the buffer's size 0: refused */
    tlens__param_set(&huge[0], "a", 0, TLENS__VEC, 1, 1);
    tlens__param_set(&huge[1], "b", 0, TLENS__ROWS, INT_MAX, INT_MAX);
    tlens__param_set(&huge[2], "c", 0, TLENS__ROWS, INT_MAX, INT_MAX);
    TT_CHECK(tlens__params_size(huge, 1, TLENS_F32) == 128u);
    TT_CHECK(tlens__params_size(huge, 3, TLENS_F32) == 0);
}

/* Sizes that make a product of dimensions exactly 2^(bits of size_t), so
 * that it wraps to 0 (64-bit hosts with 2^16-scale sizes, 32-bit hosts
 * with 2^8-scale ones). */
static int rg_wide(void) { return sizeof(size_t) >= 8; }

/* The key/value cache's n_layers * batch * n_ctx * d_model was not checked
 * (only the final * 4): at 2^bits it wrapped to a 1-byte cache that the
 * run then wrote over (fuzz/overflow32.c "kv"). The attention mask's
 * batch * n_ctx bytes (with the cache) could wrap on a 32-bit host; a
 * 64-bit size_t holds any product of two ints, so that part runs there
 * only. */
static void test_regression_kv_cache_product(void) {
    tlens_model *m = rg_tiny_model(8, 32);
    tlens_config saved;
    tlens_ctx *ctx;
    tlens_error err;
    int batch = rg_wide() ? 1 << 16 : 1 << 6;
    TT_REQUIRE(m != NULL);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    saved = m->cfg;
    m->cfg.n_layers = rg_wide() ? 1 << 12 : 1 << 4;
    m->cfg.n_ctx = rg_wide() ? 1 << 20 : 1 << 16;
    m->cfg.d_model = rg_wide() ? 1 << 16 : 1 << 6;
    memset(&err, 0, sizeof err);
    TT_CHECK_INT(tlens__kv_reserve(ctx, batch, &err), TLENS_ERR_NOMEM);
    TT_CHECK(strstr(err.message, "key/value cache") != NULL);
    TT_CHECK(ctx->kv_k == NULL && ctx->kv_v == NULL);
    m->cfg = saved;
    if (!rg_wide()) {
        int32_t *mask = (int32_t *)calloc((size_t)1 << 16, sizeof *mask);
        TT_REQUIRE(mask != NULL);
        ctx->kv_on = 1;
        ctx->kv_cap = 1 << 16;
        ctx->kv_len = 0;
        memset(&err, 0, sizeof err);
        TT_CHECK_INT(tlens__mask_update(ctx, mask, 1 << 16, 1, &err), TLENS_ERR_NOMEM);
        TT_CHECK(strstr(err.message, "attention mask") != NULL && ctx->key_mask == NULL);
        free(mask);
    }
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* tlens__area_layout multiplied and added its terms unchecked: the scores
 * B * H * T * (cached + T) could wrap, and so could the sum of terms that
 * each fit (fuzz/overflow32.c "att"). Both must give 0 (refused); only then
 * is tlens__area_reserve asked, which must fail without allocating. */
static void test_regression_area_layout_overflow(void) {
    tlens_model *m = rg_tiny_model(8, 32);
    tlens_config saved;
    tlens_ctx *ctx;
    tlens_error err;
    int s = rg_wide() ? 1 << 16 : 1 << 8, big = rg_wide() ? 1 << 28 : 1 << 12;
    TT_REQUIRE(m != NULL);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    saved = m->cfg;
    TT_CHECK(tlens__area_layout(ctx, 2, 8, NULL) > 0); /* a real run's area */
    /* one product: B = H = T = cached + T = s */
    m->cfg.n_heads = s;
    ctx->any_attn_materialized = 1;
    ctx->optional_hooks = 0;
    ctx->kv_len = 0;
    TT_CHECK(tlens__area_layout(ctx, s, s, NULL) == 0);
    /* a sum: B*T*d_model floats (2^(bits-4)) and 3 times that (qkv) fit,
     * the 16 such terms of a layer's activations do not */
    m->cfg = saved;
    ctx->any_attn_materialized = 0;
    m->cfg.d_model = m->cfg.d_mlp = big;
    TT_REQUIRE(tlens__area_layout(ctx, s, s, NULL) == 0);
    memset(&err, 0, sizeof err);
    TT_CHECK_INT(tlens__area_reserve(ctx, s, s, &err), TLENS_ERR_NOMEM);
    TT_CHECK(strstr(err.message, "batch") != NULL);
    m->cfg = saved;
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* Residual stacks: n * B * T * d_model floats were not checked in
 * tlens__stack_init, nor a caller's stack in tlens_logit_attrs (whose
 * d_model was not even compared with the model's): a wrapped size gave a
 * 1-byte block and success. */
static void test_regression_stack_products(void) {
    tlens_model *m = rg_tiny_model(8, 32);
    tlens_ctx *ctx;
    tlens_stack st;
    tlens_error err;
    float out[4], data[9] = {0};
    int s = rg_wide() ? 1 << 16 : 1 << 8;
    TT_REQUIRE(m != NULL);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    memset(&err, 0, sizeof err);
    TT_CHECK_INT(tlens__stack_init(ctx, &st, s, s, s, s, &err), TLENS_ERR_NOMEM);
    TT_CHECK(strstr(err.message, "residual stack") != NULL && st.data == NULL);
    if (st.data) tlens_stack_free(&st);
    /* a caller's stack: n * batch * pos * 8 floats * 4 bytes = 2^bits */
    memset(&st, 0, sizeof st);
    st.n = rg_wide() ? 1 << 27 : 1 << 11;
    st.batch = st.pos = s;
    st.d_model = 8;
    st.data = data;
    memset(&err, 0, sizeof err);
    TT_CHECK_INT(tlens_logit_attrs(ctx, &st, 1, -1, out, &err), TLENS_ERR_SHAPE);
    TT_CHECK(strstr(err.message, "stack") != NULL);
    /* one component of 9 floats for a model of width 8 */
    st.n = st.batch = st.pos = 1;
    st.d_model = 9;
    memset(&err, 0, sizeof err);
    TT_CHECK_INT(tlens_logit_attrs(ctx, &st, 1, -1, out, &err), TLENS_ERR_SHAPE);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

void tests_regressions(void);
void tests_regressions(void) {
    TT_RUN(test_regression_npy_v2_short_header);
    TT_RUN(test_regression_npy_descr_at_end);
    TT_RUN(test_regression_json_llong_min);
    TT_RUN(test_regression_config_4x_n_embd);
    TT_RUN(test_regression_npy_huge_dimension);
    TT_RUN(test_regression_json_backslash_nul);
    TT_RUN(test_regression_tlens_overlapping_offsets);
    TT_RUN(test_regression_config_counts_padding);
    TT_RUN(test_regression_kv_cache_product);
    TT_RUN(test_regression_area_layout_overflow);
    TT_RUN(test_regression_stack_products);
}
