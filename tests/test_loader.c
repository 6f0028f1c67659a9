/* Loading checkpoints (tests_loader):
 *   1. every layout variant of the reference checkpoints (name prefix, mask
 *      buffers, lm_head, metadata, tensor order, F16/BF16, config.json
 *      variants) gives the reference folder's logits;
 *   2. every weight-processing mode keeps the log-probabilities;
 *   3. the .tlens round trip, from a file and from memory;
 *   4. bad input returns the right error, never crashes.
 * Variants are written with the test's own safetensors writer and F16/BF16
 * rounding (test_loader_util.h) into build/test-tmp/loader/. */
#include "test_loader_util.h"

/* ASan can poison the bytes after an aligned buffer, so that reads past a
 * truncated in-place .tlens image are caught too. */
#if defined(__SANITIZE_ADDRESS__)
#define LT_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LT_ASAN 1
#endif
#endif
#ifdef LT_ASAN
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#endif

#define LT_MAX_POS 16 /* positions of the reference tokens used */
#define LT_ANY_ERROR ((tlens_result)-1)
#define LT_ALLOC_LIMIT ((size_t)64 << 20) /* no test model needs a 64 MB block */

/* ------------------------------------------------------------------------
 * A reference case: its dimensions, tokens, checkpoint and the logits of
 * its folder loaded as is, in both modes
 * ---------------------------------------------------------------------- */
typedef struct lt_case {
    char name[32], dir[128];
    int n_layer, n_embd, n_head, n_ctx, vocab;
    char s_layer[24], s_embd[24], s_head[24], s_ctx[24], s_vocab[24], s_inner[24];
    int32_t *tokens;
    int rows, cols;
    lt_ckpt ck;          /* bare names, no mask buffers */
    float *ref[2];       /* logits of the reference folder: [raw, processed] */
    size_t n_logits;
} lt_case;

/* The integer after "key": in a JSON text (the reference configs). */
static int lt_json_int(const char *text, const char *key) {
    char pat[64];
    const char *p;
    snprintf(pat, sizeof pat, "\"%s\"", key);
    p = strstr(text, pat);
    if (!p || !(p = strchr(p + strlen(pat), ':'))) return -1;
    return (int)strtol(p + 1, NULL, 10);
}

static tlens_load_options lt_opts(int raw) {
    tlens_load_options o;
    memset(&o, 0, sizeof o);
    o.raw = raw;
    return o;
}

/* Logits of the case's tokens through `m` (malloc'd copy); NULL on failure. */
static float *lt_run(const tlens_model *m, const lt_case *k, const char *label) {
    tlens_ctx *ctx;
    tlens_error err;
    float *out = NULL;
    const tlens_tensor *lg;
    if (tlens_ctx_new(&ctx, m, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s: ctx: %s", label, err.message);
        return NULL;
    }
    if (tlens_run(ctx, k->tokens, k->rows, k->cols, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s: run: %s", label, err.message);
    } else if ((lg = tlens_logits(ctx)) != NULL) {
        size_t n = tlens_tensor_numel(lg);
        out = (float *)malloc(n * sizeof *out);
        memcpy(out, lg->data, n * sizeof *out);
    }
    tlens_ctx_free(ctx);
    return out;
}

static float *lt_load_run(const char *path, const tlens_load_options *opt, const lt_case *k, const char *label) {
    tlens_model *m;
    tlens_error err;
    float *out;
    if (tlens_load(&m, path, opt, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s: loading %s: %s", label, path, err.message);
        return NULL;
    }
    out = lt_run(m, k, label);
    tlens_free(m);
    return out;
}

static int lt_case_config(lt_case *k) {
    char path[256];
    size_t size;
    char *text;
    snprintf(path, sizeof path, "%s/config.json", k->dir);
    text = (char *)tu_read_file(path, &size);
    if (!text) return 0;
    k->n_layer = lt_json_int(text, "n_layer");
    k->n_embd = lt_json_int(text, "n_embd");
    k->n_head = lt_json_int(text, "n_head");
    k->n_ctx = lt_json_int(text, "n_positions");
    k->vocab = lt_json_int(text, "vocab_size");
    free(text);
    snprintf(k->s_layer, sizeof k->s_layer, "%d", k->n_layer);
    snprintf(k->s_embd, sizeof k->s_embd, "%d", k->n_embd);
    snprintf(k->s_head, sizeof k->s_head, "%d", k->n_head);
    snprintf(k->s_ctx, sizeof k->s_ctx, "%d", k->n_ctx);
    snprintf(k->s_vocab, sizeof k->s_vocab, "%d", k->vocab);
    snprintf(k->s_inner, sizeof k->s_inner, "%d", 4 * k->n_embd);
    return k->n_layer > 0 && k->n_embd > 0 && k->n_head > 0 && k->n_ctx > 0 && k->vocab > 0;
}

/* Keep the first `pos` positions of every row (runs of the larger case
 * dominate the file's time; layouts do not depend on the length). */
static void lt_trim_tokens(lt_case *k, int pos) {
    int r, t;
    if (k->cols <= pos) return;
    for (r = 0; r < k->rows; r++)
        for (t = 0; t < pos; t++) k->tokens[r * pos + t] = k->tokens[r * k->cols + t];
    k->cols = pos;
}

static int lt_case_open(lt_case *k, const char *name) {
    char path[256];
    int m;
    memset(k, 0, sizeof *k);
    snprintf(k->name, sizeof k->name, "%s", name);
    snprintf(k->dir, sizeof k->dir, LT_REF "%s/model", name);
    if (!lt_case_config(k)) return 0;
    snprintf(path, sizeof path, LT_REF "%s/tokens.npy", name);
    if (!(k->tokens = tu_read_npy_tokens(path, &k->rows, &k->cols))) return 0;
    lt_trim_tokens(k, LT_MAX_POS);
    snprintf(path, sizeof path, "%s/model.safetensors", k->dir);
    if (!lt_ckpt_read(&k->ck, path)) return 0;
    k->n_logits = (size_t)k->rows * (size_t)k->cols * (size_t)k->vocab;
    for (m = 0; m < 2; m++) {
        tlens_load_options o = lt_opts(m == 0);
        if (!(k->ref[m] = lt_load_run(k->dir, &o, k, name))) return 0;
    }
    return 1;
}

static void lt_case_close(lt_case *k) {
    free(k->tokens);
    free(k->ref[0]);
    free(k->ref[1]);
    lt_ckpt_free(&k->ck);
}

/* The case's own configuration, as its config.json has it. */
static lt_config lt_case_cfg(const lt_case *k) {
    lt_config c;
    memset(&c, 0, sizeof c);
    c.n_layer = k->s_layer;
    c.n_embd = k->s_embd;
    c.n_head = k->s_head;
    c.vocab_size = k->s_vocab;
    c.n_inner = "null";
    c.n_ctx = k->s_ctx;
    c.n_positions = k->s_ctx;
    c.eps = "1e-05";
    c.act = "\"gelu_new\"";
    c.scale_inv = "false";
    return c;
}

/* The reference cases, each opened once for the whole file. */
static lt_case lt_cases[3];
static int lt_cases_state[3]; /* 0 not tried, 1 open, -1 failed */

static const lt_case *lt_get(const char *name) {
    static const char *const names[3] = {"tiny", "tiny-untied", "mid"};
    int i;
    for (i = 0; i < 3; i++)
        if (strcmp(names[i], name) == 0) break;
    if (i == 3) return NULL;
    if (!lt_cases_state[i]) {
        lt_cases_state[i] = lt_case_open(&lt_cases[i], name) ? 1 : -1;
        if (lt_cases_state[i] < 0) lt_case_close(&lt_cases[i]);
    }
    return lt_cases_state[i] > 0 ? &lt_cases[i] : NULL;
}

static void lt_close_cases(void) {
    int i;
    for (i = 0; i < 3; i++)
        if (lt_cases_state[i] > 0) lt_case_close(&lt_cases[i]);
    memset(lt_cases_state, 0, sizeof lt_cases_state);
}

#define LT_OPEN(k, name)                                                               \
    do {                                                                               \
        if (!((k) = lt_get(name))) {                                                   \
            tt_fail_line(__FILE__, __LINE__, "reference case %s does not load", name); \
            return;                                                                    \
        }                                                                              \
    } while (0)

/* ------------------------------------------------------------------------
 * Comparisons
 * ---------------------------------------------------------------------- */
static int lt_same_bits(float a, float b) { return memcmp(&a, &b, sizeof a) == 0; }

/* got == want bit for bit; returns the number of differing elements. */
static size_t lt_same(const float *got, const float *want, size_t n, const char *label) {
    size_t i, bad = 0;
    if (!got || !want) return n;
    for (i = 0; i < n; i++)
        if (!lt_same_bits(got[i], want[i]) && bad++ < 3)
            tt_fail_line(__FILE__, __LINE__, "%s: logit %zu = %.9g, expected %.9g exactly", label, i, got[i], want[i]);
    if (bad > 3) tt_fail_line(__FILE__, __LINE__, "%s: %zu of %zu logits differ", label, bad, n);
    return bad;
}

static double lt_max_diff(const float *a, const float *b, size_t n) {
    double d = 0;
    size_t i;
    for (i = 0; i < n; i++)
        if (fabs((double)a[i] - b[i]) > d || a[i] != a[i]) d = a[i] != a[i] ? INFINITY : fabs((double)a[i] - b[i]);
    return d;
}

static void lt_close(const float *got, const float *want, size_t n, double atol, double rtol, const char *label) {
    size_t i, bad = 0;
    if (!got || !want) return;
    for (i = 0; i < n; i++)
        if (!tt_close(got[i], want[i], atol, rtol) && bad++ < 3)
            tt_fail_line(__FILE__, __LINE__, "%s: logit %zu = %.9g, expected %.9g", label, i, got[i], want[i]);
    if (bad > 3) tt_fail_line(__FILE__, __LINE__, "%s: %zu of %zu logits differ", label, bad, n);
}

/* Load folder `dir` in both modes; the logits must be the reference's. */
static void lt_check_folder(const lt_case *k, const char *dir, const char *label) {
    int m;
    char lab[256];
    for (m = 0; m < 2; m++) {
        tlens_load_options o = lt_opts(m == 0);
        float *got;
        snprintf(lab, sizeof lab, "%s/%s (%s)", k->name, label, m ? "processed" : "raw");
        got = lt_load_run(dir, &o, k, lab);
        if (got) lt_same(got, k->ref[m], k->n_logits, lab);
        free(got);
    }
}

/* Write (cfg, ck) as the case's variant folder (one per case, rewritten
 * for every variant) and check it against the reference. */
static void lt_check_variant(const lt_case *k, const char *name, const lt_config *cfg, const lt_ckpt *ck) {
    char dir[256], sub[128];
    snprintf(sub, sizeof sub, "%s-variant", k->name);
    lt_write_model(dir, sizeof dir, sub, cfg, ck);
    lt_check_folder(k, dir, name);
}

/* ========================================================================
 * 1. Layout variants
 * ====================================================================== */

/* The test's own rounding, on values whose binary16/bfloat16 encodings
 * are known. */
static void test_loader_half_rounding(void) {
    static const struct { float x; unsigned bits; } f16[] = {
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {65504.0f, 0x7bff}, {65519.0f, 0x7bff}, {65520.0f, 0x7c00},
        {5.9604645e-08f, 0x0001}, {2.9802322e-08f, 0x0000}, {4.4703484e-08f, 0x0001}, {6.1035156e-05f, 0x0400},
        {1.00048828125f, 0x3c00}, {1.00146484375f, 0x3c02}, {0.1f, 0x2e66}, {0.33333334f, 0x3555},
        {-6.0975552e-05f, 0x83ff}, {0.0f, 0x0000}};
    static const struct { float x; unsigned bits; } bf16[] = {
        {1.0f, 0x3f80}, {1.00390625f, 0x3f80}, {1.01171875f, 0x3f82}, {0.1f, 0x3dcd}, {3.14159265f, 0x4049},
        {-1.0e-40f, 0x8001}, {3.0e38f, 0x7f62}};
    size_t i;
    for (i = 0; i < sizeof f16 / sizeof f16[0]; i++) TT_CHECK_INT(lt_f16_bits(lt_round_f16(f16[i].x)), f16[i].bits);
    for (i = 0; i < sizeof bf16 / sizeof bf16[0]; i++)
        TT_CHECK_INT(lt_bf16_bits(lt_round_bf16(bf16[i].x)), bf16[i].bits);
}

/* Names with and without "transformer.", for every case. */
static void test_loader_layout_prefix(void) {
    static const char *const cases[3] = {"tiny", "tiny-untied", "mid"};
    int i;
    for (i = 0; i < 3; i++) {
        const lt_case *k;
        lt_config cfg;
        lt_ckpt ck;
        LT_OPEN(k, cases[i]);
        cfg = lt_case_cfg(k);
        lt_check_variant(k, "bare", &cfg, &k->ck);
        lt_ckpt_copy(&ck, &k->ck);
        lt_ckpt_prefix(&ck, "transformer.");
        lt_check_variant(k, "prefixed", &cfg, &ck);
        lt_ckpt_free(&ck);
    }
}

/* h.N.attn.bias as BOOL, U8, F32 or absent; h.N.attn.masked_bias present
 * or absent. */
static void test_loader_layout_mask_buffers(void) {
    static const char *const dtypes[4] = {NULL, "BOOL", "U8", "F32"};
    const lt_case *k;
    lt_config cfg;
    int d, mb;
    LT_OPEN(k, "mid");
    cfg = lt_case_cfg(k);
    for (d = 0; d < 4; d++)
        for (mb = 0; mb < 2; mb++) {
            lt_ckpt ck;
            char name[64];
            lt_ckpt_copy(&ck, &k->ck);
            lt_ckpt_add_masks(&ck, k->n_layer, k->n_ctx, dtypes[d], mb);
            if (d == 1 && mb) lt_ckpt_prefix(&ck, "transformer.");
            snprintf(name, sizeof name, "mask-%s-%s", dtypes[d] ? dtypes[d] : "none", mb ? "masked_bias" : "nomb");
            lt_check_variant(k, name, &cfg, &ck);
            lt_ckpt_free(&ck);
        }
}

static int lt_tied(const char *dir, int raw) {
    tlens_load_options o = lt_opts(raw);
    tlens_model *m;
    tlens_error err;
    int tied;
    if (tlens_load(&m, dir, &o, &err) != TLENS_OK) return -1;
    tied = tlens_model_config(m)->tied;
    tlens_free(m);
    return tied;
}

/* lm_head.weight equal to wte (the untied path) gives the tied model's
 * logits; an untied model without its lm_head is another model. */
static void test_loader_layout_lm_head(void) {
    const lt_case *k, *u;
    lt_config cfg;
    lt_ckpt ck;
    char dir[256];
    long long shape[2];
    lt_tensor *head;
    LT_OPEN(k, "tiny");
    cfg = lt_case_cfg(k);
    lt_ckpt_copy(&ck, &k->ck);
    TT_REQUIRE(lt_ckpt_find(&ck, "wte.weight") != NULL);
    memcpy(shape, lt_ckpt_find(&ck, "wte.weight")->shape, sizeof shape);
    head = lt_ckpt_add(&ck, "lm_head.weight", "F32", 2, shape, lt_ckpt_find(&ck, "wte.weight")->bytes);
    memcpy(head->data, lt_ckpt_find(&ck, "wte.weight")->data, head->bytes);
    lt_check_variant(k, "lm_head-copy", &cfg, &ck);
    TT_CHECK_INT(lt_tied(lt_tmp(dir, sizeof dir, "tiny-variant", 0), 1), 0);
    TT_CHECK_INT(lt_tied(k->dir, 1), 1);
    lt_ckpt_free(&ck);

    LT_OPEN(u, "tiny-untied");
    TT_CHECK_INT(lt_tied(u->dir, 0), 0);
    lt_ckpt_copy(&ck, &u->ck);
    lt_ckpt_remove(&ck, "lm_head.weight");
    cfg = lt_case_cfg(u);
    lt_write_model(dir, sizeof dir, "tiny-untied-no-lm_head", &cfg, &ck);
    {
        tlens_load_options o = lt_opts(0);
        float *got = lt_load_run(dir, &o, u, "tiny-untied without lm_head");
        TT_CHECK(got != NULL && lt_max_diff(got, u->ref[1], u->n_logits) > 1e-3);
        free(got);
    }
    lt_ckpt_free(&ck);
}

/* __metadata__ present or absent; tensors in reverse order. */
static void test_loader_layout_metadata_and_order(void) {
    static const char *const cases[2] = {"tiny", "mid"};
    int i;
    for (i = 0; i < 2; i++) {
        const lt_case *k;
        lt_config cfg;
        lt_ckpt ck;
        LT_OPEN(k, cases[i]);
        cfg = lt_case_cfg(k);
        lt_ckpt_copy(&ck, &k->ck);
        ck.metadata = 0;
        lt_check_variant(k, "no-metadata", &cfg, &ck);
        ck.metadata = 1;
        lt_check_variant(k, "metadata", &cfg, &ck);
        lt_ckpt_reverse(&ck);
        lt_ckpt_add_masks(&ck, k->n_layer, k->n_ctx, "BOOL", 1);
        lt_check_variant(k, "reversed", &cfg, &ck);
        lt_ckpt_free(&ck);
    }
}

/* Unusual but valid headers: names with JSON escapes, an indented header,
 * one not padded to 8 bytes, extra tensors GPT-2 does not use (one with a
 * 300-character name). */
static void test_loader_layout_header_spelling(void) {
    const lt_case *k;
    lt_config cfg;
    lt_ckpt ck;
    long long shape[2];
    char longname[301];
    LT_OPEN(k, "tiny");
    cfg = lt_case_cfg(k);
    lt_ckpt_copy(&ck, &k->ck);
    lt_ckpt_prefix(&ck, "transformer.");
    lt_ckpt_escape_names(&ck);
    lt_check_variant(k, "escaped-names", &cfg, &ck);
    lt_ckpt_free(&ck);
    lt_ckpt_copy(&ck, &k->ck);
    ck.pretty = ck.metadata = 1;
    lt_check_variant(k, "pretty-header", &cfg, &ck);
    ck.pretty = 0;
    ck.no_pad = 1;
    lt_check_variant(k, "unpadded-header", &cfg, &ck);
    memset(longname, 'x', 300);
    longname[300] = 0;
    shape[0] = 2;
    shape[1] = k->n_embd;
    lt_ckpt_add_f32(&ck, "score.weight", 2, shape, NULL);
    lt_ckpt_add_f32(&ck, longname, 1, shape, NULL);
    lt_ckpt_add_f32(&ck, "transformer.h.0.attn.\\u00e9\\n", 1, shape, NULL);
    lt_ckpt_reverse(&ck);
    lt_check_variant(k, "extra-tensors", &cfg, &ck);
    lt_ckpt_free(&ck);
}

/* An F16 (BF16) checkpoint and an F32 one holding the same rounded values
 * give identical logits, close to the original model's. */
static void lt_check_half(const lt_case *k, const char *half, const char *f32_rounded) {
    lt_config cfg = lt_case_cfg(k);
    lt_ckpt a, b;
    char da[256], db[256], name[64];
    int m;
    lt_ckpt_copy(&a, &k->ck);
    lt_ckpt_copy(&b, &k->ck);
    lt_ckpt_convert(&a, half);
    lt_ckpt_convert(&b, f32_rounded);
    lt_ckpt_prefix(&b, "transformer.");
    snprintf(name, sizeof name, "%s-%s", k->name, half);
    lt_write_model(da, sizeof da, name, &cfg, &a);
    snprintf(name, sizeof name, "%s-%s-in-f32", k->name, half);
    lt_write_model(db, sizeof db, name, &cfg, &b);
    for (m = 0; m < 2; m++) {
        tlens_load_options o = lt_opts(m == 0);
        float *la = lt_load_run(da, &o, k, half), *lb = lt_load_run(db, &o, k, f32_rounded);
        snprintf(name, sizeof name, "%s %s vs F32 (%s)", k->name, half, m ? "processed" : "raw");
        lt_same(la, lb, k->n_logits, name);
        lt_close(la, k->ref[m], k->n_logits, 2e-2, 2e-2, name);
        if (la) printf("  %-40s max |logit - f32 logit| %.2e\n", name, lt_max_diff(la, k->ref[m], k->n_logits));
        free(la);
        free(lb);
    }
    lt_ckpt_free(&a);
    lt_ckpt_free(&b);
}

static void test_loader_f16_bf16_checkpoints(void) {
    static const char *const cases[2] = {"tiny-untied", "mid"};
    int i;
    for (i = 0; i < 2; i++) {
        const lt_case *k;
        LT_OPEN(k, cases[i]);
        lt_check_half(k, "F16", "F32:F16");
        lt_check_half(k, "BF16", "F32:BF16");
    }
}

/* Load (cfg, ck) as folder `name` in processed mode; its logits. */
static float *lt_variant_logits(const lt_case *k, const char *name, const lt_config *cfg, const lt_ckpt *ck) {
    char dir[256];
    tlens_load_options o = lt_opts(0);
    lt_write_model(dir, sizeof dir, name, cfg, ck);
    return lt_load_run(dir, &o, k, name);
}

/* config.json spellings that mean the same model. */
static void lt_check_config_spellings(const lt_case *k) {
    lt_config base = lt_case_cfg(k), c;
    c = base; c.n_inner = NULL;          lt_check_variant(k, "n_inner-absent", &c, &k->ck);
    c = base; c.n_inner = k->s_inner;    lt_check_variant(k, "n_inner-explicit", &c, &k->ck);
    c = base; c.n_positions = NULL;      lt_check_variant(k, "n_ctx-only", &c, &k->ck);
    c = base; c.n_ctx = NULL;            lt_check_variant(k, "n_positions-only", &c, &k->ck);
    c = base; c.eps = NULL;              lt_check_variant(k, "eps-absent", &c, &k->ck);
    c = base; c.eps = "0.00001";         lt_check_variant(k, "eps-decimal", &c, &k->ck);
    c = base; c.act = NULL;              lt_check_variant(k, "act-absent", &c, &k->ck);
    c = base; c.scale_inv = NULL;        lt_check_variant(k, "scale_inv-absent", &c, &k->ck);
    c = base; c.real_gpt2_keys = 1;      lt_check_variant(k, "gpt2-keys", &c, &k->ck);
    c = base; c.real_gpt2_keys = 1; c.n_inner = NULL; c.n_positions = NULL; c.eps = NULL;
    lt_check_variant(k, "gpt2-keys-minimal", &c, &k->ck);
}

/* ... and ones that do not: the keys are really read. */
static void lt_check_config_changes(const lt_case *k) {
    lt_config c = lt_case_cfg(k);
    char name[64], dir[256], inner[24];
    float *got;
    c.eps = "1e-2";
    snprintf(name, sizeof name, "%s-eps-1e-2", k->name);
    got = lt_variant_logits(k, name, &c, &k->ck);
    TT_CHECK(got != NULL && lt_max_diff(got, k->ref[1], k->n_logits) > 1e-4);
    free(got);
    c = lt_case_cfg(k);
    c.act = "\"relu\"";
    snprintf(name, sizeof name, "%s-relu", k->name);
    got = lt_variant_logits(k, name, &c, &k->ck);
    TT_CHECK(got != NULL && lt_max_diff(got, k->ref[1], k->n_logits) > 1e-4);
    free(got);
    c = lt_case_cfg(k);
    snprintf(inner, sizeof inner, "%d", 2 * k->n_embd);
    c.n_inner = inner;
    snprintf(name, sizeof name, "%s-n_inner-2d", k->name);
    lt_write_model(dir, sizeof dir, name, &c, &k->ck);
    {
        tlens_load_options o = lt_opts(0);
        tlens_model *m;
        tlens_error err;
        TT_CHECK_INT(tlens_load(&m, dir, &o, &err), TLENS_ERR_SHAPE);
    }
}

static void test_loader_config_variants(void) {
    static const char *const cases[2] = {"tiny", "mid"};
    int i;
    for (i = 0; i < 2; i++) {
        const lt_case *k;
        LT_OPEN(k, cases[i]);
        lt_check_config_spellings(k);
        lt_check_config_changes(k);
    }
}

/* A run of `m` caching blocks.*.attn.hook_attn_scores; the context. */
static tlens_ctx *lt_run_caching(const tlens_model *m, const lt_case *k, const char *glob) {
    tlens_ctx *ctx;
    tlens_error err;
    if (tlens_ctx_new(&ctx, m, &err) != TLENS_OK) return NULL;
    tlens_cache_select(ctx, glob);
    if (tlens_run(ctx, k->tokens, k->rows, k->cols, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "run: %s", err.message);
        tlens_ctx_free(ctx);
        return NULL;
    }
    return ctx;
}

/* scores of layer l of `b` == scores of `a` / div (masked entries -inf). */
static void lt_check_scores(const tlens_ctx *a, const tlens_ctx *b, int l, double div) {
    char name[64];
    const tlens_tensor *ta, *tb;
    size_t i, n, bad = 0;
    snprintf(name, sizeof name, "blocks.%d.attn.hook_attn_scores", l);
    ta = tlens_cache_get(a, name);
    tb = tlens_cache_get(b, name);
    if (!ta || !tb) {
        tt_fail_line(__FILE__, __LINE__, "%s not cached", name);
        return;
    }
    n = tlens_tensor_numel(ta);
    TT_CHECK_INT(tlens_tensor_numel(tb), n);
    for (i = 0; i < n; i++) {
        double want = ta->data[i] / div;
        if (!tt_close(tb->data[i], want, 1e-7, 1e-6) && bad++ < 3)
            tt_fail_line(__FILE__, __LINE__, "%s[%zu] = %.9g, expected %.9g", name, i, tb->data[i], want);
    }
}

/* Subtract from every row of x (rows, V) its mean: what center_unembed
 * does to the logits. */
static void lt_center_rows(double *x, size_t rows, int V) {
    size_t r;
    int v;
    for (r = 0; r < rows; r++) {
        double mean = 0;
        for (v = 0; v < V; v++) mean += x[r * (size_t)V + (size_t)v];
        mean /= V;
        for (v = 0; v < V; v++) x[r * (size_t)V + (size_t)v] -= mean;
    }
}

/* tlens' logits of `dir` against the naive double-precision forward pass
 * (centred over the vocabulary for processed weights). */
static void lt_check_naive(const lt_case *k, const char *dir, int raw, int inverse_scale, const char *label) {
    lt_gpt2 g;
    tlens_load_options o = lt_opts(raw);
    float *got = lt_load_run(dir, &o, k, label);
    int r;
    size_t i, row = (size_t)k->cols * (size_t)k->vocab, bad = 0;
    g.n_layer = k->n_layer; g.D = k->n_embd; g.H = k->n_head; g.V = k->vocab; g.M = 4 * k->n_embd;
    g.eps = 1e-5; g.inverse_layer_scale = inverse_scale; g.ck = &k->ck;
    for (r = 0; got && r < k->rows; r++) {
        double *want = lt_naive_logits(&g, k->tokens + (size_t)r * k->cols, k->cols);
        if (!raw) lt_center_rows(want, (size_t)k->cols, k->vocab);
        for (i = 0; i < row; i++)
            if (!tt_close(got[r * row + i], want[i], 1e-4, 1e-4) && bad++ < 3)
                tt_fail_line(__FILE__, __LINE__, "%s: logit %zu = %.9g, naive %.9g", label, r * row + i, got[r * row + i],
                             want[i]);
        free(want);
    }
    free(got);
}

/* scale_attn_by_inverse_layer_idx: layer l's scores are divided by l + 1
 * more; the logits match a naive forward pass that does the same. */
static void test_loader_scale_attn_by_inverse_layer_idx(void) {
    const lt_case *k;
    lt_config cfg;
    char dir[256];
    tlens_model *a, *b;
    tlens_error err;
    tlens_load_options o = lt_opts(0);
    LT_OPEN(k, "mid");
    cfg = lt_case_cfg(k);
    cfg.scale_inv = "true";
    lt_write_model(dir, sizeof dir, "mid-scale-inv", &cfg, &k->ck);
    lt_check_naive(k, k->dir, 1, 0, "mid default vs naive (raw)");
    lt_check_naive(k, k->dir, 0, 0, "mid default vs naive (processed)");
    lt_check_naive(k, dir, 1, 1, "mid scale_inv vs naive (raw)");
    lt_check_naive(k, dir, 0, 1, "mid scale_inv vs naive (processed)");
    if (tlens_load(&a, k->dir, &o, &err) == TLENS_OK) {
        if (tlens_load(&b, dir, &o, &err) == TLENS_OK) {
            tlens_ctx *ca = lt_run_caching(a, k, "blocks.*.attn.hook_attn_scores");
            tlens_ctx *cb = lt_run_caching(b, k, "blocks.*.attn.hook_attn_scores");
            TT_CHECK_INT(tlens_model_config(b)->scale_attn_by_inverse_layer_idx, 1);
            if (ca && cb) {
                lt_check_scores(ca, cb, 0, 1.0);
                lt_check_scores(ca, cb, 1, 2.0);
            }
            tlens_ctx_free(ca);
            tlens_ctx_free(cb);
            tlens_free(b);
        }
        tlens_free(a);
    }
    TT_CHECK_INT(err.code, TLENS_OK);
}

/* ========================================================================
 * 2. Weight processing modes
 * ====================================================================== */

/* log_softmax over the vocabulary of every row, in double. */
static double *lt_log_softmax(const float *logits, size_t rows, int V) {
    double *out = (double *)malloc(rows * (size_t)V * sizeof *out);
    size_t r;
    int v;
    for (r = 0; r < rows; r++) {
        const float *x = logits + r * (size_t)V;
        double mx = -INFINITY, sum = 0;
        for (v = 0; v < V; v++) mx = x[v] > mx ? x[v] : mx;
        for (v = 0; v < V; v++) sum += exp(x[v] - mx);
        for (v = 0; v < V; v++) out[r * (size_t)V + (size_t)v] = x[v] - mx - log(sum);
    }
    return out;
}

static void lt_check_logprobs(const lt_case *k, const tlens_load_options *o, const double *want, const char *label) {
    float *got = lt_load_run(k->dir, o, k, label);
    double *lp;
    size_t i, n = k->n_logits, bad = 0;
    if (!got) return;
    lp = lt_log_softmax(got, n / (size_t)k->vocab, k->vocab);
    for (i = 0; i < n; i++)
        if (fabs(lp[i] - want[i]) > 1e-4 && bad++ < 3)
            tt_fail_line(__FILE__, __LINE__, "%s: log-prob %zu = %.9g, raw %.9g", label, i, lp[i], want[i]);
    free(lp);
    free(got);
}

/* Every processing step on its own changes no log-probability. */
static void test_loader_weight_modes_logprobs(void) {
    const lt_case *k;
    tlens_load_options o;
    double *raw;
    LT_OPEN(k, "mid");
    raw = lt_log_softmax(k->ref[0], k->n_logits / (size_t)k->vocab, k->vocab);
    o = lt_opts(0);
    lt_check_logprobs(k, &o, raw, "processed");
    o = lt_opts(0); o.no_fold_ln = 1;                lt_check_logprobs(k, &o, raw, "no_fold_ln");
    o = lt_opts(0); o.no_center_writing_weights = 1; lt_check_logprobs(k, &o, raw, "no_center_writing_weights");
    o = lt_opts(0); o.no_center_unembed = 1;         lt_check_logprobs(k, &o, raw, "no_center_unembed");
    o = lt_opts(0); o.no_fold_value_biases = 1;      lt_check_logprobs(k, &o, raw, "no_fold_value_biases");
    o = lt_opts(0); o.no_fold_ln = o.no_center_writing_weights = o.no_center_unembed = o.no_fold_value_biases = 1;
    lt_check_logprobs(k, &o, raw, "every step off");
    free(raw);
}

/* The largest |mean over the last dimension| of any row of a cached tensor. */
static double lt_max_row_mean(const tlens_ctx *ctx, const char *name) {
    const tlens_tensor *t = tlens_cache_get(ctx, name);
    size_t r, rows, D;
    double worst = 0;
    int d;
    if (!t) {
        tt_fail_line(__FILE__, __LINE__, "%s not cached", name);
        return INFINITY;
    }
    D = (size_t)t->shape[t->ndim - 1];
    rows = tlens_tensor_numel(t) / D;
    for (r = 0; r < rows; r++) {
        double mean = 0;
        for (d = 0; d < (int)D; d++) mean += t->data[r * D + (size_t)d];
        mean /= (double)D;
        if (fabs(mean) > worst) worst = fabs(mean);
    }
    return worst;
}

/* The largest |mean| of hook_resid_pre over all layers, model loaded with o. */
static double lt_resid_mean(const lt_case *k, const tlens_load_options *o) {
    tlens_model *m;
    tlens_error err;
    tlens_ctx *ctx;
    double worst = INFINITY;
    char name[64];
    int l;
    if (tlens_load(&m, k->dir, o, &err) != TLENS_OK) return INFINITY;
    if ((ctx = lt_run_caching(m, k, "*hook_resid_pre")) != NULL) {
        worst = 0;
        for (l = 0; l < k->n_layer; l++) {
            double w;
            snprintf(name, sizeof name, "blocks.%d.hook_resid_pre", l);
            w = lt_max_row_mean(ctx, name);
            if (w > worst) worst = w;
        }
    }
    tlens_ctx_free(ctx);
    tlens_free(m);
    return worst;
}

/* Processed weights write a zero-mean residual stream; raw ones do not,
 * nor do processed ones without center_writing_weights. */
static void test_loader_processed_resid_is_centered(void) {
    const lt_case *k;
    tlens_load_options o;
    double mean;
    LT_OPEN(k, "mid");
    o = lt_opts(0);
    mean = lt_resid_mean(k, &o);
    TT_CHECK_CLOSE(mean, 0.0, 1e-5, 0);
    o.no_fold_ln = o.no_center_unembed = o.no_fold_value_biases = 1;
    mean = lt_resid_mean(k, &o);
    TT_CHECK_CLOSE(mean, 0.0, 1e-5, 0);
    o = lt_opts(1);
    TT_CHECK(lt_resid_mean(k, &o) > 1e-4);
    o = lt_opts(0);
    o.no_center_writing_weights = 1;
    TT_CHECK(lt_resid_mean(k, &o) > 1e-4);
}

/* Each step is really applied: fold_ln leaves ln1.hook_normalized a pure
 * normalisation, center_unembed zero-mean logits, fold_value_biases a zero
 * value bias (v moves by one constant vector per head). */
static void test_loader_processing_steps_visible(void) {
    const lt_case *k;
    tlens_model *m[3];
    tlens_ctx *c[3];
    tlens_load_options o[3];
    tlens_error err;
    int i;
    LT_OPEN(k, "mid");
    o[0] = lt_opts(0);
    o[1] = lt_opts(0); o[1].no_fold_ln = 1; o[1].no_center_unembed = 1;
    o[2] = lt_opts(0); o[2].no_fold_value_biases = 1;
    for (i = 0; i < 3; i++) {
        c[i] = NULL;
        if (tlens_load(&m[i], k->dir, &o[i], &err) != TLENS_OK) m[i] = NULL;
        TT_CHECK(m[i] != NULL);
        if (m[i]) c[i] = lt_run_caching(m[i], k, "blocks.0.*");
    }
    if (c[0] && c[1] && c[2]) {
        /* unit rows have mean 0: pure normalisation only */
        TT_CHECK(lt_max_row_mean(c[0], "blocks.0.ln1.hook_normalized") < 1e-5);
        TT_CHECK(lt_max_row_mean(c[1], "blocks.0.ln1.hook_normalized") > 1e-4);
        {
            const tlens_tensor *v0 = tlens_cache_get(c[0], "blocks.0.attn.hook_v");
            const tlens_tensor *v2 = tlens_cache_get(c[2], "blocks.0.attn.hook_v");
            size_t D = (size_t)k->n_embd, t, d, T = (size_t)k->rows * (size_t)k->cols;
            double spread = 0, size = 0;
            TT_REQUIRE(v0 && v2);
            for (t = 0; t < T; t++)
                for (d = 0; d < D; d++) {
                    double diff = v2->data[t * D + d] - v0->data[t * D + d], first = v2->data[d] - v0->data[d];
                    if (fabs(diff - first) > spread) spread = fabs(diff - first);
                    if (fabs(diff) > size) size = fabs(diff);
                }
            TT_CHECK(spread < 1e-5);
            TT_CHECK(size > 1e-4);
        }
    }
    for (i = 0; i < 3; i++) {
        tlens_ctx_free(c[i]);
        tlens_free(m[i]);
    }
    {
        /* centred unembedding: every row of logits sums to 0 */
        const float *lg = k->ref[1];
        size_t r, rows = k->n_logits / (size_t)k->vocab;
        double worst = 0;
        int v;
        float *nc;
        for (r = 0; r < rows; r++) {
            double s = 0;
            for (v = 0; v < k->vocab; v++) s += lg[r * (size_t)k->vocab + (size_t)v];
            if (fabs(s / k->vocab) > worst) worst = fabs(s / k->vocab);
        }
        TT_CHECK(worst < 1e-6);
        nc = lt_load_run(k->dir, &o[1], k, "no_center_unembed");
        worst = 0;
        for (r = 0; nc && r < rows; r++) {
            double s = 0;
            for (v = 0; v < k->vocab; v++) s += nc[r * (size_t)k->vocab + (size_t)v];
            if (fabs(s / k->vocab) > worst) worst = fabs(s / k->vocab);
        }
        TT_CHECK(worst > 1e-3);
        free(nc);
    }
}

/* ========================================================================
 * 3. The .tlens round trip
 * ====================================================================== */

/* A copy of `img` at a 64-byte aligned address + `shift`, whose last byte
 * ends the allocation (or, for aligned copies under ASan, is followed by
 * poisoned bytes), so that any read past the image is caught. */
typedef struct lt_buf {
    unsigned char *block, *data;
    size_t size;
    int shifted;
} lt_buf;

static lt_buf lt_buf_make(const unsigned char *img, size_t size, int shift) {
    lt_buf b;
    size_t pad = 0, room = shift ? 4 : 128;
    b.shifted = shift != 0;
    b.size = size;
    b.block = (unsigned char *)malloc(size + room);
    if (!shift) pad = (64u - ((uintptr_t)b.block & 63u)) & 63u;
    b.data = b.block + (shift ? 4 : pad); /* malloc is 8- or 16-aligned: +4 is never 64-aligned */
    if (size) memcpy(b.data, img, size);
#ifdef LT_ASAN
    if (!shift) __asan_poison_memory_region(b.data + size, room - pad);
#endif
    return b;
}

static void lt_buf_free(lt_buf *b) {
#ifdef LT_ASAN
    if (!b->shifted) __asan_unpoison_memory_region(b->block, b->size + 128);
#endif
    free(b->block);
}

/* Load a .tlens image from memory at the given shift; its logits. */
static float *lt_memory_logits(const unsigned char *img, size_t size, int shift, const tlens_load_options *o,
                               const lt_case *k, const char *label) {
    lt_buf b = lt_buf_make(img, size, shift);
    tlens_model *m;
    tlens_error err;
    float *out = NULL;
    if (tlens_load_memory(&m, b.data, size, o, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s: tlens_load_memory (shift %d): %s", label, shift, err.message);
    } else {
        out = lt_run(m, k, label);
        tlens_free(m);
    }
    lt_buf_free(&b);
    return out;
}

/* Save the model loaded from the case folder with `o`, then load it back
 * from the file and from memory (aligned, misaligned): identical logits.
 * Returns the logits. */
static float *lt_round_trip(const lt_case *k, const tlens_load_options *o, const char *kind) {
    char path[256], label[128];
    tlens_model *m;
    tlens_error err;
    float *want, *got;
    unsigned char *img;
    size_t size;
    int shift;
    tlens_load_options auto_opts = lt_opts(o->raw);
    snprintf(label, sizeof label, "%s %s", k->name, kind);
    snprintf(path, sizeof path, LT_TMP "%s-%s.tlens", k->name, kind);
    lt_mkdirs();
    if (tlens_load(&m, k->dir, o, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s: %s", label, err.message);
        return NULL;
    }
    TT_CHECK_INT(tlens_model_processed(m), !o->raw);
    want = lt_run(m, k, label);
    if (tlens_save(m, path, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s: save: %s", label, err.message);
    tlens_free(m);
    got = lt_load_run(path, &auto_opts, k, label);
    lt_same(got, want, k->n_logits, label);
    free(got);
    img = tu_read_file(path, &size);
    TT_CHECK(img != NULL);
    for (shift = 0; img && shift <= 4; shift += 4) {
        got = lt_memory_logits(img, size, shift, &auto_opts, k, label);
        lt_same(got, want, k->n_logits, label);
        free(got);
    }
    free(img);
    return want;
}

static void test_loader_tlens_round_trip(void) {
    static const char *const cases[2] = {"tiny-untied", "mid"};
    int i;
    for (i = 0; i < 2; i++) {
        const lt_case *k;
        tlens_load_options o;
        float *f32, *raw, *f16, *bf16;
        LT_OPEN(k, cases[i]);
        o = lt_opts(0);
        f32 = lt_round_trip(k, &o, "f32");
        o = lt_opts(1);
        raw = lt_round_trip(k, &o, "raw");
        o = lt_opts(0);
        o.weight_dtype = TLENS_F16;
        f16 = lt_round_trip(k, &o, "f16");
        o.weight_dtype = TLENS_BF16;
        bf16 = lt_round_trip(k, &o, "bf16");
        lt_same(f32, k->ref[1], k->n_logits, "f32 .tlens vs folder");
        lt_same(raw, k->ref[0], k->n_logits, "raw .tlens vs folder");
        lt_close(f16, f32, k->n_logits, 2e-2, 2e-2, "f16 .tlens vs f32");
        lt_close(bf16, f32, k->n_logits, 2e-2, 2e-2, "bf16 .tlens vs f32");
        free(f32); free(raw); free(f16); free(bf16);
    }
}

/* Save the case folder loaded with `o` as LT_TMP/name.tlens; the path. */
static const char *lt_save(const lt_case *k, const tlens_load_options *o, const char *name, char *path, size_t cap) {
    tlens_model *m;
    tlens_error err;
    lt_tmp(path, cap, name, 0);
    if (tlens_load(&m, k->dir, o, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s: %s", name, err.message);
        return path;
    }
    if (tlens_save(m, path, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s: %s", name, err.message);
    tlens_free(m);
    return path;
}

/* `file` loaded with `o` gives the logits of the folder loaded with `o`. */
static void lt_check_file_as_folder(const lt_case *k, const char *file, const tlens_load_options *o, const char *label) {
    float *a = lt_load_run(file, o, k, label), *b = lt_load_run(k->dir, o, k, label);
    lt_same(a, b, k->n_logits, label);
    free(a);
    free(b);
}

/* Raw .tlens files take any processing at load time; processed ones only
 * their own. */
static void test_loader_tlens_processing_at_load(void) {
    static const char *const cases[2] = {"tiny-untied", "mid"};
    int i;
    for (i = 0; i < 2; i++) {
        const lt_case *k;
        char raw[256], proc[256];
        tlens_load_options o, r = lt_opts(1), p = lt_opts(0);
        tlens_model *m;
        tlens_error err;
        LT_OPEN(k, cases[i]);
        lt_save(k, &r, "raw-for-processing.tlens", raw, sizeof raw);
        lt_save(k, &p, "processed-for-processing.tlens", proc, sizeof proc);
        lt_check_file_as_folder(k, raw, &p, "raw .tlens, processed at load");
        o = lt_opts(0); o.no_fold_ln = 1;
        lt_check_file_as_folder(k, raw, &o, "raw .tlens, no_fold_ln at load");
        o = lt_opts(0); o.weight_dtype = TLENS_F16;
        lt_check_file_as_folder(k, raw, &o, "raw .tlens, processed f16 at load");
        lt_check_file_as_folder(k, proc, &o, "processed .tlens, f16 at load");
        o.weight_dtype = TLENS_BF16;
        lt_check_file_as_folder(k, proc, &o, "processed .tlens, bf16 at load");
        TT_CHECK_INT(tlens_load(&m, proc, &r, &err), TLENS_ERR_CONFIG);
        TT_CHECK(m == NULL && err.message[0] != 0);
        o = lt_opts(0); o.no_fold_value_biases = 1;
        TT_CHECK_INT(tlens_load(&m, proc, &o, &err), TLENS_ERR_CONFIG);
    }
}

/* ========================================================================
 * 4. Bad input
 * ====================================================================== */

/* Load `path` with a counting allocator: it must fail with a message,
 * without a huge allocation and without leaking. Returns the result. */
static tlens_result lt_load_fail(const char *path, const tlens_load_options *base, const char *label,
                                 tlens_error *errp) {
    lt_alloc_stats st;
    tlens_load_options o = base ? *base : lt_opts(0);
    tlens_model *m = (tlens_model *)&st;
    tlens_error dummy, *e = errp ? errp : &dummy;
    tlens_result r;
    memset(&st, 0, sizeof st);
    st.limit = LT_ALLOC_LIMIT;
    o.allocator.alloc = lt_alloc;
    o.allocator.free = lt_free;
    o.allocator.user = &st;
    memset(e, 0, sizeof *e);
    r = tlens_load(&m, path, &o, e);
    if (r == TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s: loading %s succeeded", label, path);
        tlens_free(m);
        return r;
    }
    if (m != NULL) tt_fail_line(__FILE__, __LINE__, "%s: failed load left a model", label);
    if (e->code != r || e->message[0] == 0)
        tt_fail_line(__FILE__, __LINE__, "%s: error code %d / message \"%s\" for result %d", label, e->code, e->message, r);
    if (st.refused)
        tt_fail_line(__FILE__, __LINE__, "%s: asked for %zu bytes at once (result %d: %s)", label, st.largest, r,
                     e->message);
    if (st.live) tt_fail_line(__FILE__, __LINE__, "%s: %ld blocks leaked", label, st.live);
    return r;
}

/* ... and with `want` as the result (LT_ANY_ERROR: any), its message
 * naming `mention` when given. */
static void lt_expect(const char *path, const tlens_load_options *o, tlens_result want, const char *mention,
                      const char *label) {
    tlens_error err;
    tlens_result r = lt_load_fail(path, o, label, &err);
    if (r == TLENS_OK) return;
    if (want != LT_ANY_ERROR && r != want)
        tt_fail_line(__FILE__, __LINE__, "%s: result %d (%s: %s), expected %d (%s)", label, r, tlens_result_string(r),
                     err.message, want, tlens_result_string(want));
    if (mention && !strstr(err.message, mention))
        tt_fail_line(__FILE__, __LINE__, "%s: message \"%s\" does not name %s", label, err.message, mention);
}

static void test_loader_bad_paths(void) {
    char dir[256], path[512];
    const lt_case *k;
    lt_config cfg;
    tlens_model *m;
    tlens_error err;
    LT_OPEN(k, "tiny");
    cfg = lt_case_cfg(k);
    lt_expect(LT_TMP "no-such-folder", NULL, TLENS_ERR_IO, "no-such-folder", "missing folder");
    lt_expect(LT_TMP "no-such-folder/", NULL, TLENS_ERR_IO, NULL, "missing folder/");
    lt_expect(lt_tmp(dir, sizeof dir, "empty-folder", 1), NULL, TLENS_ERR_IO, NULL, "empty folder");
    /* model.safetensors but no config.json: neither a folder tlens reads
     * nor a file */
    lt_tmp(dir, sizeof dir, "no-config", 1);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lt_ckpt_write(&k->ck, path);
    lt_expect(dir, NULL, TLENS_ERR_IO, NULL, "folder without config.json");
    /* config.json but no model.safetensors */
    lt_tmp(dir, sizeof dir, "no-weights", 1);
    {
        char *text = lt_config_text(&cfg);
        tlens_result r;
        lt_write_text(dir, "config.json", text);
        free(text);
        r = lt_load_fail(dir, NULL, "folder without model.safetensors", NULL);
        TT_CHECK(r == TLENS_ERR_IO || r == TLENS_ERR_MISSING);
    }
    snprintf(path, sizeof path, "%s/config.json", k->dir);
    lt_expect(path, NULL, TLENS_ERR_FORMAT, NULL, "config.json as a .tlens file");
    lt_tmp(path, sizeof path, "empty.tlens", 0);
    tu_write_file(path, "", 0);
    lt_expect(path, NULL, TLENS_ERR_FORMAT, NULL, "empty .tlens file");
    TT_CHECK_INT(tlens_load(&m, NULL, NULL, &err), TLENS_ERR_ARG);
    TT_CHECK_INT(tlens_load_memory(&m, NULL, 100, NULL, &err), TLENS_ERR_ARG);
}

/* A folder LT_TMP/name: the case's config.json and `size` bytes of `img`
 * as model.safetensors. */
static const char *lt_write_raw_model(char *dir, size_t cap, const char *name, const lt_case *k,
                                      const unsigned char *img, size_t size) {
    lt_config cfg = lt_case_cfg(k);
    char *text = lt_config_text(&cfg);
    char path[512];
    lt_tmp(dir, cap, name, 1);
    lt_write_text(dir, "config.json", text);
    free(text);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    tu_write_file(path, img, size);
    return dir;
}

static void test_loader_truncated_safetensors(void) {
    const lt_case *k;
    unsigned char *img;
    size_t size, hlen, cuts[16];
    char dir[256], label[64];
    int i, n = 0;
    LT_OPEN(k, "tiny");
    img = lt_ckpt_image(&k->ck, &size);
    hlen = lt_get_u32(img);
    cuts[n++] = 0; cuts[n++] = 1; cuts[n++] = 4; cuts[n++] = 7; cuts[n++] = 8; cuts[n++] = 9;
    cuts[n++] = 8 + hlen / 2; cuts[n++] = 8 + hlen - 1; cuts[n++] = 8 + hlen; cuts[n++] = 8 + hlen + 1;
    cuts[n++] = 8 + hlen + 4; cuts[n++] = (8 + hlen + size) / 2; cuts[n++] = size - 4; cuts[n++] = size - 1;
    for (i = 0; i < n; i++) {
        snprintf(label, sizeof label, "safetensors cut at %zu of %zu", cuts[i], size);
        lt_write_raw_model(dir, sizeof dir, "truncated", k, img, cuts[i]);
        lt_expect(dir, NULL, TLENS_ERR_FORMAT, NULL, label);
    }
    free(img);
}

static void test_loader_bad_header_length(void) {
    const lt_case *k;
    unsigned char *img;
    size_t size, hlen;
    uint64_t lens[8];
    char dir[256], label[96];
    int i;
    LT_OPEN(k, "tiny");
    img = lt_ckpt_image(&k->ck, &size);
    hlen = lt_get_u32(img);
    lens[0] = 0; lens[1] = 1; lens[2] = size - 8 + 1; lens[3] = size;
    lens[4] = ((uint64_t)1 << 32) + hlen; /* right in its low 32 bits */
    lens[5] = (uint64_t)1 << 63; lens[6] = ~(uint64_t)0; lens[7] = ~(uint64_t)0 - 6;
    for (i = 0; i < 8; i++) {
        lt_put_u64(img, lens[i]);
        snprintf(label, sizeof label, "safetensors header length %llu (file %zu)", (unsigned long long)lens[i], size);
        lt_write_raw_model(dir, sizeof dir, "header-length", k, img, size);
        lt_expect(dir, NULL, TLENS_ERR_FORMAT, NULL, label);
    }
    free(img);
}

/* Write the case's checkpoint with `name`'s data_offsets replaced. */
static void lt_expect_offsets(const lt_case *k, const char *name, long long fb, long long fe, const char *label) {
    lt_ckpt ck;
    lt_tensor *t;
    lt_config cfg = lt_case_cfg(k);
    char dir[256], lab[160];
    lt_ckpt_copy(&ck, &k->ck);
    t = lt_ckpt_find(&ck, name);
    t->fake_offsets = 1;
    t->fb = fb;
    t->fe = fe;
    lt_write_model(dir, sizeof dir, "bad-offsets", &cfg, &ck);
    snprintf(lab, sizeof lab, "%s: %s [%lld, %lld]", label, name, fb, fe);
    lt_expect(dir, NULL, TLENS_ERR_FORMAT, NULL, lab);
    lt_ckpt_free(&ck);
}

static void test_loader_bad_data_offsets(void) {
    static const char *const names[2] = {"wte.weight", "h.1.ln_1.bias"};
    const lt_case *k;
    int i, j;
    long long total = 0;
    LT_OPEN(k, "tiny");
    for (j = 0; j < k->ck.n; j++) total += (long long)k->ck.t[j].bytes;
    for (i = 0; i < 2; i++) {
        long long b = 0, n;
        for (j = 0; strcmp(k->ck.t[j].name, names[i]) != 0; j++) b += (long long)k->ck.t[j].bytes;
        n = (long long)k->ck.t[j].bytes;
        lt_expect_offsets(k, names[i], total, total + n, "end beyond the file");
        lt_expect_offsets(k, names[i], total - n + 4, total + 4, "end 4 bytes beyond the file");
        lt_expect_offsets(k, names[i], (long long)1 << 62, ((long long)1 << 62) + n, "far beyond the file");
        lt_expect_offsets(k, names[i], b + n, b, "end before begin");
        lt_expect_offsets(k, names[i], b, b + n - 4, "size below shape*dtype");
        lt_expect_offsets(k, names[i], b, b + n + 4, "size above shape*dtype");
        lt_expect_offsets(k, names[i], -4, n - 4, "negative begin");
        lt_expect_offsets(k, names[i], 9223372036854775000LL, 9223372036854775807LL, "near 2^63");
    }
}

/* The case's checkpoint with tensor `name` changed by `edit`, loaded with
 * `want` expected (and `name` in the message). */
static void lt_expect_edit(const lt_case *k, const char *name, void (*edit)(lt_tensor *, const void *),
                           const void *arg, tlens_result want, const char *label) {
    lt_ckpt ck;
    lt_tensor *t;
    lt_config cfg = lt_case_cfg(k);
    char dir[256], lab[160];
    lt_ckpt_copy(&ck, &k->ck);
    lt_ckpt_prefix(&ck, "transformer.");
    t = lt_ckpt_find(&ck, name);
    if (!t) {
        char full[128];
        snprintf(full, sizeof full, "transformer.%s", name);
        t = lt_ckpt_find(&ck, full);
    }
    TT_REQUIRE(t != NULL);
    edit(t, arg);
    lt_write_model(dir, sizeof dir, "bad-tensor", &cfg, &ck);
    snprintf(lab, sizeof lab, "%s: %s", label, name);
    lt_expect(dir, NULL, want, name, lab);
    lt_ckpt_free(&ck);
}

static int lt_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Retype an F32 tensor as `dtype` (F64 holds the values, others zeros). */
static void lt_edit_dtype(lt_tensor *t, const void *arg) {
    const char *dtype = (const char *)arg;
    size_t i, n = lt_numel(t), w = !strcmp(dtype, "F64") || !strcmp(dtype, "I64") ? 8 : !strcmp(dtype, "I32") ? 4 : 1;
    unsigned char *d = (unsigned char *)calloc(n * w + 1, 1);
    if (!strcmp(dtype, "F64"))
        for (i = 0; i < n; i++) lt_put_f64(d + 8 * i, lt_f32_at(t, i));
    free(t->data);
    t->data = d;
    t->bytes = n * w;
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
}

/* New shape (data resized, zero-filled): arg points to {ndim, d0, d1, ...}. */
static void lt_edit_shape(lt_tensor *t, const void *arg) {
    const long long *s = (const long long *)arg;
    int d;
    t->ndim = (int)s[0];
    for (d = 0; d < t->ndim; d++) t->shape[d] = s[1 + d];
    free(t->data);
    t->bytes = lt_numel(t) * 4;
    t->data = (unsigned char *)calloc(t->bytes + 1, 1);
}

static void test_loader_bad_dtype(void) {
    const lt_case *k;
    lt_ckpt ck;
    lt_config cfg;
    char dir[256];
    int i;
    LT_OPEN(k, "tiny");
    lt_expect_edit(k, "wte.weight", lt_edit_dtype, "F64", TLENS_ERR_DTYPE, "F64");
    lt_expect_edit(k, "h.0.attn.c_attn.weight", lt_edit_dtype, "I32", TLENS_ERR_DTYPE, "I32");
    lt_expect_edit(k, "h.1.ln_2.bias", lt_edit_dtype, "F8_E4M3", TLENS_ERR_DTYPE, "F8_E4M3");
    lt_expect_edit(k, "ln_f.weight", lt_edit_dtype, "BOOL", TLENS_ERR_DTYPE, "BOOL");
    lt_expect_edit(k, "wpe.weight", lt_edit_dtype, "I64", TLENS_ERR_DTYPE, "I64");
    /* unsupported types on tensors GPT-2 does not need are fine */
    cfg = lt_case_cfg(k);
    lt_ckpt_copy(&ck, &k->ck);
    lt_ckpt_add_masks(&ck, k->n_layer, k->n_ctx, "U8", 1);
    for (i = 0; i < ck.n; i++)
        if (lt_ends_with(ck.t[i].name, ".attn.masked_bias")) lt_edit_dtype(&ck.t[i], "F64");
        else if (lt_ends_with(ck.t[i].name, ".attn.bias")) lt_edit_dtype(&ck.t[i], "I64");
    lt_write_model(dir, sizeof dir, "unneeded-f64", &cfg, &ck);
    lt_check_folder(k, dir, "F64/I64 buffers");
    lt_ckpt_free(&ck);
}

static void test_loader_bad_shape(void) {
    const lt_case *k, *u;
    long long s[6][5];
    int i;
    LT_OPEN(k, "tiny");
    s[0][0] = 2; s[0][1] = k->vocab; s[0][2] = k->n_embd - 1;
    s[1][0] = 2; s[1][1] = 3 * k->n_embd; s[1][2] = k->n_embd;   /* transposed */
    s[2][0] = 2; s[2][1] = 1; s[2][2] = k->n_embd;              /* a vector as a matrix */
    s[3][0] = 2; s[3][1] = k->n_ctx - 1; s[3][2] = k->n_embd;
    s[4][0] = 1; s[4][1] = 3 * k->n_embd + 1;
    s[5][0] = 3; s[5][1] = k->n_embd; s[5][2] = 4 * k->n_embd; s[5][3] = 1;
    lt_expect_edit(k, "wte.weight", lt_edit_shape, s[0], TLENS_ERR_SHAPE, "narrow wte");
    lt_expect_edit(k, "h.0.attn.c_attn.weight", lt_edit_shape, s[1], TLENS_ERR_SHAPE, "transposed c_attn");
    lt_expect_edit(k, "h.1.ln_1.weight", lt_edit_shape, s[2], TLENS_ERR_SHAPE, "2-D ln_1.weight");
    lt_expect_edit(k, "wpe.weight", lt_edit_shape, s[3], TLENS_ERR_SHAPE, "short wpe");
    lt_expect_edit(k, "h.1.attn.c_attn.bias", lt_edit_shape, s[4], TLENS_ERR_SHAPE, "long c_attn.bias");
    lt_expect_edit(k, "h.0.mlp.c_fc.weight", lt_edit_shape, s[5], TLENS_ERR_SHAPE, "3-D c_fc.weight");
    LT_OPEN(u, "tiny-untied");
    for (i = 0; i < 2; i++) {
        long long l[3];
        l[0] = 2; l[1] = u->vocab + (i ? 0 : 1); l[2] = u->n_embd + (i ? 1 : 0);
        lt_expect_edit(u, "lm_head.weight", lt_edit_shape, l, TLENS_ERR_SHAPE, "lm_head");
    }
}

static void test_loader_missing_tensor(void) {
    static const char *const names[6] = {"wte.weight", "wpe.weight", "h.1.mlp.c_proj.bias", "h.0.ln_2.weight",
                                         "ln_f.bias", "h.1.attn.c_attn.weight"};
    const lt_case *k;
    lt_config cfg;
    int i;
    LT_OPEN(k, "tiny");
    cfg = lt_case_cfg(k);
    for (i = 0; i < 6; i++) {
        lt_ckpt ck;
        char dir[256], label[96];
        lt_ckpt_copy(&ck, &k->ck);
        lt_ckpt_remove(&ck, names[i]);
        if (i % 2) lt_ckpt_prefix(&ck, "transformer.");
        lt_write_model(dir, sizeof dir, "missing-tensor", &cfg, &ck);
        snprintf(label, sizeof label, "without %s", names[i]);
        lt_expect(dir, NULL, TLENS_ERR_MISSING, names[i], label);
        lt_ckpt_free(&ck);
    }
}

/* Malformed JSON texts (NUL-terminated except where `lens` says). */
static const char *const lt_bad_json[] = {
    "", " ", "{", "}", "{\"n_layer\": 2,", "{\"n_layer\": 2} x", "[1, 2]", "{'n_layer': 2}", "{\"n_layer\": 02}",
    "{\"n_layer\" 2}", "{\"a\": \"\\x\"}", "{\"a\": tru}", "{\"a\": \"open}", "{\"a\": \"\\u12\"}", "{\"a\": 1,}",
    "{\"a\": [1, 2}", "{\"a\": -}", "{\"a\": 1.}", "{\"a\": 1e}", "{\"a\": \"tab\there\"}", "{\"a\" : nul}",
    "{\"a\": 1}}", "{\"a\": .5}", "{\"a\": +1}", "{\"a\": NaN}", "{\"a\": 0x10}", NULL};

/* {"a": [[[[...]]]]} nested `depth` deep. */
static char *lt_deep_json(int depth) {
    char *s = (char *)malloc((size_t)depth * 2 + 16);
    int i;
    strcpy(s, "{\"a\": ");
    for (i = 0; i < depth; i++) s[6 + i] = '[';
    for (i = 0; i < depth; i++) s[6 + depth + i] = ']';
    strcpy(s + 6 + 2 * depth, "}");
    return s;
}

static void test_loader_bad_json_config(void) {
    const lt_case *k;
    char dir[256], path[512], label[128];
    int i;
    char *deep = lt_deep_json(100000);
    LT_OPEN(k, "tiny");
    lt_tmp(dir, sizeof dir, "bad-config", 1);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lt_ckpt_write(&k->ck, path);
    for (i = 0; lt_bad_json[i]; i++) {
        snprintf(path, sizeof path, "%s/config.json", dir);
        tu_write_file(path, lt_bad_json[i], strlen(lt_bad_json[i]));
        snprintf(label, sizeof label, "config.json %d: %.40s", i, lt_bad_json[i]);
        lt_expect(dir, NULL, TLENS_ERR_FORMAT, NULL, label);
    }
    tu_write_file(path, deep, strlen(deep));
    lt_expect(dir, NULL, TLENS_ERR_FORMAT, NULL, "config.json nested 100000 deep");
    tu_write_file(path, "{\"n_layer\": 2\0, \"n_embd\": 64}", 29);
    lt_expect(dir, NULL, TLENS_ERR_FORMAT, NULL, "config.json with a NUL byte");
    free(deep);
}

/* A safetensors file whose header is `text` followed by 64 zero bytes. */
static void lt_expect_header(const lt_case *k, const char *text, size_t len, tlens_result want, const char *label) {
    unsigned char *img = (unsigned char *)calloc(8 + len + 64, 1);
    char dir[256];
    lt_put_u64(img, len);
    memcpy(img + 8, text, len);
    lt_write_raw_model(dir, sizeof dir, "bad-header", k, img, 8 + len + 64);
    lt_expect(dir, NULL, want, NULL, label);
    free(img);
}

static void test_loader_bad_json_header(void) {
    static const char *const bad_entries[] = {
        "{\"wte.weight\": 5}",
        "{\"wte.weight\": {\"dtype\": \"F32\"}}",
        "{\"wte.weight\": {\"dtype\": 5, \"shape\": [1], \"data_offsets\": [0, 4]}}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [-1, 4], \"data_offsets\": [0, 4]}}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [1.5], \"data_offsets\": [0, 4]}}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0]}}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": \"0,4\"}}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [1099511627776, 1099511627776, 1099511627776], "
        "\"data_offsets\": [0, 4]}}",
        "{\"wte.weight\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, 4]}}",
        NULL};
    const lt_case *k;
    char label[160];
    int i;
    char *deep = lt_deep_json(100000);
    LT_OPEN(k, "tiny");
    for (i = 0; lt_bad_json[i]; i++) {
        snprintf(label, sizeof label, "header %d: %.40s", i, lt_bad_json[i]);
        lt_expect_header(k, lt_bad_json[i], strlen(lt_bad_json[i]), TLENS_ERR_FORMAT, label);
    }
    for (i = 0; bad_entries[i]; i++) {
        snprintf(label, sizeof label, "header entry %d: %.60s", i, bad_entries[i]);
        lt_expect_header(k, bad_entries[i], strlen(bad_entries[i]), TLENS_ERR_FORMAT, label);
    }
    lt_expect_header(k, deep, strlen(deep), TLENS_ERR_FORMAT, "header nested 100000 deep");
    lt_expect_header(k, "{\"a\": 1\0}", 9, TLENS_ERR_FORMAT, "header with a NUL byte");
    free(deep);
}

/* The case's checkpoint with one config value replaced. */
static void lt_expect_config(const lt_case *k, const lt_config *cfg, tlens_result want, const char *label) {
    char dir[256];
    lt_write_model(dir, sizeof dir, "bad-dims", cfg, &k->ck);
    lt_expect(dir, NULL, want, NULL, label);
}

#define LT_BAD_CONFIG(field, value, want)                              \
    do {                                                               \
        lt_config c_ = lt_case_cfg(k);                                \
        c_.field = value;                                              \
        lt_expect_config(k, &c_, want, #field " = " #value);          \
    } while (0)

static void test_loader_absurd_config(void) {
    const lt_case *k;
    LT_OPEN(k, "tiny");
    LT_BAD_CONFIG(n_embd, "0", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_embd, "-64", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_embd, "1099511627776", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_embd, "2147483648", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_embd, "18446744073709551616", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_embd, "64.5", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_embd, "\"64\"", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_embd, "1e400", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_head, "3", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_head, "0", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_head, "128", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(vocab_size, "2147483647", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(vocab_size, "0", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_layer, "0", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_layer, "1000000000", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_layer, "-2", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_inner, "-1", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(n_inner, "2147483647", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(eps, "-1", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(eps, "0", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(eps, "1e10", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(eps, "\"1e-5\"", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(act, "\"swish\"", TLENS_ERR_CONFIG);
    LT_BAD_CONFIG(scale_inv, "1", TLENS_ERR_CONFIG);
    {
        lt_config c = lt_case_cfg(k);
        c.n_positions = "2147483647";
        c.n_ctx = NULL;
        lt_expect_config(k, &c, TLENS_ERR_CONFIG, "n_positions = 2^31-1");
        c.n_positions = c.n_ctx = NULL;
        lt_expect_config(k, &c, LT_ANY_ERROR, "no n_positions nor n_ctx");
        c = lt_case_cfg(k);
        c.n_layer = NULL;
        lt_expect_config(k, &c, LT_ANY_ERROR, "no n_layer");
        /* every dimension at tlens' own limits: ~10^15 parameters for a
         * file of 700 KB; must fail without asking for petabytes */
        c = lt_case_cfg(k);
        c.n_layer = "4096"; c.n_embd = "65536"; c.n_head = "1"; c.n_inner = "1048576";
        c.vocab_size = "16777216"; c.n_positions = c.n_ctx = "1048576";
        lt_expect_config(k, &c, LT_ANY_ERROR, "every dimension at its limit");
    }
}

/* Run `tokens` (batch, pos) through a fresh context: the result, and err. */
static tlens_result lt_try_run(const tlens_model *m, const int32_t *tokens, int batch, int pos, tlens_error *err) {
    tlens_ctx *ctx;
    tlens_result r;
    if (tlens_ctx_new(&ctx, m, err) != TLENS_OK) return err->code;
    r = tlens_run(ctx, tokens, batch, pos, err);
    tlens_ctx_free(ctx);
    return r;
}

static void lt_expect_run(const tlens_model *m, const int32_t *tokens, int batch, int pos, tlens_result want,
                          const char *label) {
    tlens_error err;
    tlens_result r;
    memset(&err, 0, sizeof err);
    r = lt_try_run(m, tokens, batch, pos, &err);
    if (r != want || (r && (err.code != r || !err.message[0])))
        tt_fail_line(__FILE__, __LINE__, "%s: result %d (\"%s\"), expected %d", label, r, err.message, want);
}

static void test_loader_bad_tokens(void) {
    static const int32_t bad[4] = {-1, 0, INT32_MAX, INT32_MIN};
    const lt_case *k;
    tlens_model *m;
    tlens_error err;
    tlens_ctx *ctx;
    int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int i, at;
    float *want, *got;
    LT_OPEN(k, "tiny");
    TT_REQUIRE(tlens_load(&m, k->dir, NULL, &err) == TLENS_OK);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_run(ctx, tok, 2, 4, &err), TLENS_OK);
    want = (float *)malloc(8 * (size_t)k->vocab * sizeof *want);
    memcpy(want, tlens_logits(ctx)->data, 8 * (size_t)k->vocab * sizeof *want);
    for (i = 0; i < 4; i++)
        for (at = 0; at < 8; at += 7) {
            char label[64];
            int32_t t2[8];
            memcpy(t2, tok, sizeof t2);
            t2[at] = i == 1 ? k->vocab : bad[i];
            snprintf(label, sizeof label, "token %ld at %d", (long)t2[at], at);
            memset(&err, 0, sizeof err);
            if (tlens_run(ctx, t2, 2, 4, &err) != TLENS_ERR_TOKEN || err.code != TLENS_ERR_TOKEN || !err.message[0])
                tt_fail_line(__FILE__, __LINE__, "%s: got %d \"%s\"", label, err.code, err.message);
        }
    /* the context still works after the refusals */
    TT_CHECK_INT(tlens_run(ctx, tok, 2, 4, &err), TLENS_OK);
    got = tlens_logits(ctx) ? tlens_logits(ctx)->data : NULL;
    lt_same(got, want, 8 * (size_t)k->vocab, "after bad tokens");
    tok[0] = k->vocab - 1;
    lt_expect_run(m, tok, 2, 4, TLENS_OK, "token d_vocab-1");
    free(want);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

static void test_loader_bad_lengths(void) {
    const lt_case *k;
    tlens_model *m;
    tlens_error err;
    int32_t *tok;
    int i;
    LT_OPEN(k, "tiny");
    TT_REQUIRE(tlens_load(&m, k->dir, NULL, &err) == TLENS_OK);
    tok = (int32_t *)malloc((size_t)(k->n_ctx + 1) * 2 * sizeof *tok);
    for (i = 0; i < (k->n_ctx + 1) * 2; i++) tok[i] = i % k->vocab;
    lt_expect_run(m, tok, 1, 0, TLENS_ERR_LENGTH, "length 0");
    lt_expect_run(m, tok, 1, -1, TLENS_ERR_LENGTH, "length -1");
    lt_expect_run(m, tok, 1, k->n_ctx + 1, TLENS_ERR_LENGTH, "length n_ctx + 1");
    lt_expect_run(m, tok, 2, k->n_ctx + 1, TLENS_ERR_LENGTH, "batch 2, length n_ctx + 1");
    lt_expect_run(m, tok, 1, INT32_MAX, TLENS_ERR_LENGTH, "length 2^31-1");
    lt_expect_run(m, tok, 1, k->n_ctx, TLENS_OK, "length n_ctx");
    lt_expect_run(m, tok, 2, 1, TLENS_OK, "length 1");
    lt_expect_run(m, tok, 0, 4, TLENS_ERR_ARG, "batch 0");
    lt_expect_run(m, NULL, 1, 4, TLENS_ERR_ARG, "no tokens");
    free(tok);
    tlens_free(m);
}

/* A .tlens image of the case folder loaded with `o`. */
static unsigned char *lt_tlens_image(const lt_case *k, const tlens_load_options *o, const char *name, size_t *size) {
    char path[256];
    lt_save(k, o, name, path, sizeof path);
    return tu_read_file(path, size);
}

/* Load b's image from memory: 1 when it loaded (the model is then run
 * on one token when `run`), 0 when it failed cleanly. */
static int lt_try_buf(const lt_buf *b, const tlens_load_options *o, int run, const char *label) {
    static const int32_t tok[1] = {0};
    tlens_model *m = NULL;
    tlens_error err;
    tlens_result r;
    memset(&err, 0, sizeof err);
    r = tlens_load_memory(&m, b->data, b->size, o, &err);
    if (r == TLENS_OK) {
        if (run) lt_try_run(m, tok, 1, 1, &err);
        tlens_free(m);
        return 1;
    }
    if (m != NULL || err.code != r || !err.message[0])
        tt_fail_line(__FILE__, __LINE__, "%s (shift %d): result %d, code %d, message \"%s\"", label, b->shifted * 4, r,
                     err.code, err.message);
    return 0;
}

/* Load `size` bytes of img from memory, aligned and misaligned; returns
 * how many loads succeeded. */
static int lt_try_memory(const unsigned char *img, size_t size, const tlens_load_options *o, const char *label) {
    int shift, ok = 0;
    for (shift = 0; shift <= 4; shift += 4) {
        lt_buf b = lt_buf_make(img, size, shift);
        ok += lt_try_buf(&b, o, 1, label);
        lt_buf_free(&b);
    }
    return ok;
}

/* Truncated at every offset of the first 1024 bytes and at 50 in the data:
 * never loads (cuts in the last tensor's padding may). */
static void lt_check_truncations(const unsigned char *img, size_t size, const tlens_load_options *o, const char *name) {
    size_t cut, i;
    char label[96];
    for (i = 0; i < 1024 + 50; i++) {
        cut = i < 1024 ? i : 1024 + (i - 1024) * (size - 1024) / 50;
        if (i == 1024 + 49) cut = size - 1;
        if (cut >= size) continue;
        snprintf(label, sizeof label, "%s cut at %zu of %zu", name, cut, size);
        if (lt_try_memory(img, cut, o, label) && cut + 64 < size)
            tt_fail_line(__FILE__, __LINE__, "%s: loaded", label);
    }
}

static void test_loader_tlens_truncated(void) {
    const lt_case *k, *u;
    tlens_load_options p = lt_opts(0), r = lt_opts(1);
    unsigned char *img;
    size_t size;
    char path[256];
    LT_OPEN(k, "tiny");
    img = lt_tlens_image(k, &p, "tiny-trunc.tlens", &size);
    TT_REQUIRE(img != NULL);
    lt_check_truncations(img, size, &p, "tiny processed .tlens");
    {
        unsigned char *longer = (unsigned char *)calloc(size + 1000, 1);
        memcpy(longer, img, size);
        TT_CHECK_INT(lt_try_memory(longer, size + 1000, &p, "1000 bytes after the image"), 2);
        free(longer);
    }
    lt_tmp(path, sizeof path, "tiny-trunc-file.tlens", 0);
    tu_write_file(path, img, size / 2);
    lt_expect(path, NULL, TLENS_ERR_FORMAT, "tiny-trunc-file.tlens", "truncated .tlens file");
    tu_write_file(path, img, 200);
    lt_expect(path, NULL, TLENS_ERR_FORMAT, "tiny-trunc-file.tlens", "truncated .tlens header");
    free(img);
    LT_OPEN(u, "tiny-untied");
    img = lt_tlens_image(u, &r, "tiny-untied-trunc.tlens", &size);
    TT_REQUIRE(img != NULL);
    lt_check_truncations(img, size, &r, "tiny-untied raw .tlens");
    free(img);
}

/* Every byte of the header and tensor table flipped (three ways), in an
 * aligned and a misaligned copy: loads fine or fails cleanly. */
static void lt_check_flips(const unsigned char *img, size_t size, const tlens_load_options *o, const char *name) {
    static const unsigned char masks[3] = {0x01, 0x80, 0xff};
    size_t end = 256 + (size_t)lt_get_u32(img + 68) * 64, i;
    lt_buf b[2];
    int j, s, loaded = 0, tried = 0;
    char label[96];
    if (end > size) end = size;
    b[0] = lt_buf_make(img, size, 0);
    b[1] = lt_buf_make(img, size, 4);
    for (i = 0; i < end; i++)
        for (j = 0; j < 3; j++) {
            snprintf(label, sizeof label, "%s byte %zu ^ 0x%02x", name, i, masks[j]);
            for (s = 0; s < 2; s++) {
                b[s].data[i] ^= masks[j];
                loaded += lt_try_buf(&b[s], o, s == 0, label);
                b[s].data[i] ^= masks[j];
                tried++;
            }
        }
    lt_buf_free(&b[0]);
    lt_buf_free(&b[1]);
    printf("  %-40s %d of %d flipped loads succeeded\n", name, loaded, tried);
}

static void test_loader_tlens_byte_flips(void) {
    const lt_case *k, *u;
    tlens_load_options p = lt_opts(0), r = lt_opts(1);
    unsigned char *img;
    size_t size;
    LT_OPEN(k, "tiny");
    img = lt_tlens_image(k, &p, "tiny-flip.tlens", &size);
    TT_REQUIRE(img != NULL);
    lt_check_flips(img, size, &p, "tiny processed .tlens");
    free(img);
    LT_OPEN(u, "tiny-untied");
    img = lt_tlens_image(u, &r, "tiny-untied-flip.tlens", &size);
    TT_REQUIRE(img != NULL);
    lt_check_flips(img, size, &r, "tiny-untied raw .tlens");
    free(img);
}

void tests_loader(void);
void tests_loader(void) {
    TT_RUN(test_loader_half_rounding);
    TT_RUN(test_loader_layout_prefix);
    TT_RUN(test_loader_layout_mask_buffers);
    TT_RUN(test_loader_layout_lm_head);
    TT_RUN(test_loader_layout_metadata_and_order);
    TT_RUN(test_loader_layout_header_spelling);
    TT_RUN(test_loader_f16_bf16_checkpoints);
    TT_RUN(test_loader_config_variants);
    TT_RUN(test_loader_scale_attn_by_inverse_layer_idx);
    TT_RUN(test_loader_weight_modes_logprobs);
    TT_RUN(test_loader_processed_resid_is_centered);
    TT_RUN(test_loader_processing_steps_visible);
    TT_RUN(test_loader_tlens_round_trip);
    TT_RUN(test_loader_tlens_processing_at_load);
    TT_RUN(test_loader_bad_paths);
    TT_RUN(test_loader_truncated_safetensors);
    TT_RUN(test_loader_bad_header_length);
    TT_RUN(test_loader_bad_data_offsets);
    TT_RUN(test_loader_bad_dtype);
    TT_RUN(test_loader_bad_shape);
    TT_RUN(test_loader_missing_tensor);
    TT_RUN(test_loader_bad_json_config);
    TT_RUN(test_loader_bad_json_header);
    TT_RUN(test_loader_absurd_config);
    TT_RUN(test_loader_bad_tokens);
    TT_RUN(test_loader_bad_lengths);
    TT_RUN(test_loader_tlens_truncated);
    TT_RUN(test_loader_tlens_byte_flips);
    lt_close_cases();
}
