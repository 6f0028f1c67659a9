/* Sparse autoencoders (tests_sae): SAE folders in SAELens' layout, written
 * here (cfg.json text + sae_weights.safetensors through test_loader_util.h's
 * writer, random weights), spliced into the tiny reference model. Every
 * SAE hook point is checked against a naive double-precision computation
 * of SAELens' equations from the cached hooked activation, for each
 * architecture, normalisation, weight type and shape mode; then the
 * splicing identities (error term, patch, feature ablation), raw-model
 * centring, hook-point bookkeeping, the command-line tool, and malformed
 * input.
 *
 * Included from test_main.c after test_loader.c (test_loader_util.h) and
 * test_examples.c (tx_run, to start the tool). */
#include "test_loader_util.h"

#define TSAE_TMP "build/test-tmp/sae/"
#define TSAE_MODEL REF_DIR "tiny/model"

/* ------------------------------------------------------------------------
 * An SAE: what cfg.json says and the weights, kept as doubles
 * ---------------------------------------------------------------------- */
typedef struct tsae_spec {
    const char *arch;          /* "standard", "topk", "jumprelu"; NULL: key absent */
    const char *act_fn;        /* activation_fn_str, or NULL */
    int k;                     /* topk: written as "k" (or kwargs when act_fn) */
    int d_in, d_sae;
    const char *hook;          /* hook_name */
    int head;                  /* hook_head_index, -1: null */
    int apply_b_dec;           /* -1: key absent (true) */
    const char *norm;          /* normalize_activations, NULL: absent */
    double scaling;            /* norm_scaling_factor in cfg.json, 0: none */
    const char *dtype;         /* "F32", "F16", "BF16" */
    int ft_scale;              /* write a scaling_factor tensor and the flag */
    int meta;                  /* SAELens 6: hook_name under "metadata" */
    unsigned seed;
} tsae_spec;

typedef struct tsae_sae {
    tsae_spec spec;
    int arch;                  /* TLENS_SAE_* */
    int norm;                  /* TLENS_SAE_NORM_* */
    double s;
    double *W_enc, *b_enc, *W_dec, *b_dec, *thr, *scale;
} tsae_sae;

static tsae_spec tsae_default(void) {
    tsae_spec s;
    memset(&s, 0, sizeof s);
    s.arch = "standard";
    s.act_fn = "relu";
    s.d_in = 64;
    s.d_sae = 96;
    s.hook = "blocks.1.hook_resid_pre";
    s.head = -1;
    s.apply_b_dec = 1;
    s.norm = "none";
    s.dtype = "F32";
    s.seed = 1;
    return s;
}

/* A uniform number in [-1, 1) (xorshift32). */
static double tsae_rand(unsigned *state) {
    unsigned x = *state ? *state : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return (double)x / 2147483648.0 - 1.0;
}

/* n values of scale * uniform, rounded to the file's element type. */
static double *tsae_values(unsigned *state, size_t n, double scale, double offset, const char *dtype) {
    double *v = (double *)malloc(n * sizeof *v);
    size_t i;
    for (i = 0; i < n; i++) {
        float f = (float)(offset + scale * tsae_rand(state));
        if (!strcmp(dtype, "F16")) f = lt_round_f16(f);
        if (!strcmp(dtype, "BF16")) f = lt_round_bf16(f);
        v[i] = f;
    }
    return v;
}

static void tsae_add(lt_ckpt *c, const char *name, int ndim, long long r, long long col, const double *v) {
    long long shape[2];
    size_t i, n = (size_t)(ndim == 2 ? r * col : r);
    float *f = (float *)malloc(n * sizeof *f);
    shape[0] = r;
    shape[1] = col;
    for (i = 0; i < n; i++) f[i] = (float)v[i];
    lt_ckpt_add_f32(c, name, ndim, shape, f);
    free(f);
}

/* Random weights: the encoder scaled so that about half the features fire
 * on the tiny model's activations, thresholds inside that range. */
static void tsae_make(tsae_sae *a, const tsae_spec *sp) {
    unsigned st = sp->seed * 2654435761u + 7u;
    size_t D = (size_t)sp->d_in, S = (size_t)sp->d_sae;
    memset(a, 0, sizeof *a);
    a->spec = *sp;
    a->arch = sp->arch && !strcmp(sp->arch, "topk") ? TLENS_SAE_TOPK
              : sp->arch && !strcmp(sp->arch, "jumprelu") ? TLENS_SAE_JUMPRELU
              : sp->act_fn && !strcmp(sp->act_fn, "topk") ? TLENS_SAE_TOPK : TLENS_SAE_STANDARD;
    a->norm = !sp->norm || !strcmp(sp->norm, "none") ? TLENS_SAE_NORM_NONE
              : !strcmp(sp->norm, "expected_average_only_in") ? TLENS_SAE_NORM_EXPECTED_AVERAGE_ONLY_IN
              : !strcmp(sp->norm, "constant_norm_rescale") ? TLENS_SAE_NORM_CONSTANT_NORM_RESCALE
              : TLENS_SAE_NORM_LAYER_NORM;
    a->s = sp->scaling > 0 ? sp->scaling : 1.0;
    a->W_enc = tsae_values(&st, D * S, 2.0 / sqrt((double)D), 0, sp->dtype);
    a->b_enc = tsae_values(&st, S, 0.1, 0, sp->dtype);
    a->W_dec = tsae_values(&st, S * D, 1.0 / sqrt((double)S), 0, sp->dtype);
    a->b_dec = tsae_values(&st, D, 0.05, 0, sp->dtype);
    a->thr = tsae_values(&st, S, 0.1, 0.15, sp->dtype);
    a->scale = tsae_values(&st, S, 0.5, 1.0, sp->dtype);
}

static void tsae_free(tsae_sae *a) {
    free(a->W_enc); free(a->b_enc); free(a->W_dec); free(a->b_dec); free(a->thr); free(a->scale);
}

static char *tsae_cfg_text(const tsae_spec *sp) {
    lt_str s = {NULL, 0, 0};
    lt_str_add(&s, "{\"d_in\": %d, \"d_sae\": %d, \"dtype\": \"float32\", \"device\": \"cpu\"", sp->d_in, sp->d_sae);
    if (sp->arch) lt_str_add(&s, ", \"architecture\": \"%s\"", sp->arch);
    if (sp->act_fn) lt_str_add(&s, ", \"activation_fn_str\": \"%s\"", sp->act_fn);
    if (sp->k && sp->act_fn && !strcmp(sp->act_fn, "topk")) lt_str_add(&s, ", \"activation_fn_kwargs\": {\"k\": %d}", sp->k);
    else if (sp->k) lt_str_add(&s, ", \"k\": %d", sp->k);
    if (sp->meta) lt_str_add(&s, ", \"metadata\": {\"sae_lens_version\": \"6.5.0\", \"model_name\": \"tiny\", "
                                 "\"hook_name\": \"%s\", \"hook_head_index\": ", sp->hook);
    else lt_str_add(&s, ", \"model_name\": \"tiny\", \"hook_name\": \"%s\", \"hook_head_index\": ", sp->hook);
    if (sp->head >= 0) lt_str_add(&s, "%d", sp->head);
    else lt_str_add(&s, "null");
    if (sp->meta) lt_str_add(&s, "}");
    if (sp->apply_b_dec >= 0) lt_str_add(&s, ", \"apply_b_dec_to_input\": %s", sp->apply_b_dec ? "true" : "false");
    if (sp->norm) lt_str_add(&s, ", \"normalize_activations\": \"%s\"", sp->norm);
    if (sp->scaling > 0) lt_str_add(&s, ", \"norm_scaling_factor\": %.17g", sp->scaling);
    if (sp->ft_scale) lt_str_add(&s, ", \"finetuning_scaling_factor\": true");
    lt_str_add(&s, ", \"context_size\": 128, \"prepend_bos\": true}\n");
    return s.p;
}

static void tsae_ckpt(lt_ckpt *c, const tsae_sae *a) {
    const tsae_spec *sp = &a->spec;
    memset(c, 0, sizeof *c);
    tsae_add(c, "W_enc", 2, sp->d_in, sp->d_sae, a->W_enc);
    tsae_add(c, "b_enc", 1, sp->d_sae, 0, a->b_enc);
    tsae_add(c, "W_dec", 2, sp->d_sae, sp->d_in, a->W_dec);
    tsae_add(c, "b_dec", 1, sp->d_in, 0, a->b_dec);
    if (a->arch == TLENS_SAE_JUMPRELU) tsae_add(c, "threshold", 1, sp->d_sae, 0, a->thr);
    if (sp->ft_scale) tsae_add(c, "scaling_factor", 1, sp->d_sae, 0, a->scale);
    if (strcmp(sp->dtype, "F32") != 0) lt_ckpt_convert(c, sp->dtype);
}

static const char *tsae_dir(char *buf, size_t cap, const char *name) {
    lt_mkdir("build");
    lt_mkdir("build/test-tmp");
    lt_mkdir(TSAE_TMP);
    snprintf(buf, cap, TSAE_TMP "%s", name);
    lt_mkdir(buf);
    return buf;
}

/* The folder TSAE_TMP/name in SAELens' layout. */
static const char *tsae_write(char *dir, size_t cap, const char *name, const tsae_sae *a) {
    char path[512];
    char *text = tsae_cfg_text(&a->spec);
    lt_ckpt c;
    tsae_dir(dir, cap, name);
    lt_write_text(dir, "cfg.json", text);
    free(text);
    tsae_ckpt(&c, a);
    snprintf(path, sizeof path, "%s/sae_weights.safetensors", dir);
    lt_ckpt_write(&c, path);
    lt_ckpt_free(&c);
    return dir;
}

/* ------------------------------------------------------------------------
 * The naive computation, SAELens' equations in double
 * ---------------------------------------------------------------------- */

/* x (d) -> normalised in place; *a, *b: what undoing needs. */
static void tsae_norm_in(const tsae_sae *a, double *x, double *ca, double *cb) {
    int d = a->spec.d_in, i;
    double sum = 0, sq = 0;
    *ca = 1;
    *cb = 0;
    if (a->norm == TLENS_SAE_NORM_NONE) return;
    if (a->norm == TLENS_SAE_NORM_EXPECTED_AVERAGE_ONLY_IN) {
        *ca = a->s;
        for (i = 0; i < d; i++) x[i] *= a->s;
    } else if (a->norm == TLENS_SAE_NORM_CONSTANT_NORM_RESCALE) {
        for (i = 0; i < d; i++) sq += x[i] * x[i];
        *ca = sqrt((double)d) / sqrt(sq);
        for (i = 0; i < d; i++) x[i] *= *ca;
    } else {
        for (i = 0; i < d; i++) sum += x[i];
        *cb = sum / d;
        for (i = 0; i < d; i++) sq += (x[i] - *cb) * (x[i] - *cb);
        *ca = sqrt(sq / (d - 1));
        for (i = 0; i < d; i++) x[i] = (x[i] - *cb) / (*ca + 1e-5);
    }
}

static double tsae_norm_out(const tsae_sae *a, double y, double ca, double cb) {
    if (a->norm == TLENS_SAE_NORM_LAYER_NORM) return y * ca + cb;
    return y / ca;
}

/* acts_pre (d_sae) of one input row. */
static void tsae_encode(const tsae_sae *a, const double *x, double *pre, double *ca, double *cb) {
    int D = a->spec.d_in, S = a->spec.d_sae, i, f;
    double *in = (double *)malloc((size_t)D * sizeof *in);
    memcpy(in, x, (size_t)D * sizeof *in);
    tsae_norm_in(a, in, ca, cb);
    for (i = 0; i < D; i++) in[i] -= a->spec.apply_b_dec ? a->b_dec[i] : 0.0;
    for (f = 0; f < S; f++) {
        double acc = a->b_enc[f];
        for (i = 0; i < D; i++) acc += in[i] * a->W_enc[(size_t)i * S + f];
        pre[f] = acc;
    }
    free(in);
}

/* acts_post of one row of acts_pre: ReLU, JumpReLU, or TopK by sorting. */
static void tsae_activate(const tsae_sae *a, const float *pre, double *post) {
    int S = a->spec.d_sae, f, g;
    for (f = 0; f < S; f++) {
        double v = pre[f];
        post[f] = v > 0 ? v : 0;
        if (a->arch == TLENS_SAE_JUMPRELU && !(v > a->thr[f])) post[f] = 0;
        if (a->arch == TLENS_SAE_TOPK) {
            int better = 0; /* features ranked above f */
            for (g = 0; g < S; g++) better += pre[g] > pre[f] || (pre[g] == pre[f] && g < f);
            if (better >= a->spec.k) post[f] = 0;
        }
    }
}

/* recons (d_in) of one row of acts_post. */
static void tsae_decode(const tsae_sae *a, const float *post, double *out) {
    int D = a->spec.d_in, S = a->spec.d_sae, i, f;
    for (i = 0; i < D; i++) {
        double acc = 0;
        for (f = 0; f < S; f++) acc += post[f] * (a->spec.ft_scale ? a->scale[f] : 1.0) * a->W_dec[(size_t)f * D + i];
        out[i] = acc + a->b_dec[i];
    }
}

/* ------------------------------------------------------------------------
 * Running the tiny model with an SAE
 * ---------------------------------------------------------------------- */
static tlens_model *tsae_model(int raw) {
    tlens_load_options o;
    tlens_model *m = NULL;
    tlens_error err;
    memset(&o, 0, sizeof o);
    o.raw = raw;
    if (tlens_load(&m, TSAE_MODEL, &o, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    return m;
}

static int32_t *tsae_tokens(int *rows, int *cols) {
    return tu_read_npy_tokens(REF_DIR "tiny/tokens.npy", rows, cols);
}

static const tlens_tensor *tsae_get(const tlens_ctx *ctx, const char *hook, const char *suffix) {
    char name[256];
    const tlens_tensor *t;
    snprintf(name, sizeof name, "%s%s%s", hook, *suffix ? "." : "", suffix);
    t = tlens_cache_get(ctx, name);
    if (!t) tt_fail_line(__FILE__, __LINE__, "%s is not cached", name);
    return t;
}

static float *tsae_copy(const tlens_tensor *t) {
    size_t n = tlens_tensor_numel(t);
    float *c = (float *)malloc(n * sizeof *c);
    memcpy(c, t->data, n * sizeof *c);
    return c;
}

/* Row r of the SAE's view of the host activation (head slice or all). */
static void tsae_row(const tsae_sae *a, const tlens_tensor *host, int r, int center, double *x) {
    int D = a->spec.d_in, i;
    const float *src = a->spec.head >= 0 ? host->data + ((size_t)r * host->shape[2] + (size_t)a->spec.head) * D
                                         : host->data + (size_t)r * D;
    double mean = 0;
    for (i = 0; i < D; i++) mean += src[i];
    mean = center ? mean / D : 0;
    for (i = 0; i < D; i++) x[i] = src[i] - mean;
}

/* Check every SAE point of the last run against the naive computation
 * from the cached host activation. Returns the number of rows. */
static int tsae_check_points(const tlens_ctx *ctx, const tsae_sae *a, int center, int error_term, const char *label) {
    const char *hook = a->spec.hook;
    const tlens_tensor *host = tsae_get(ctx, hook, ""), *in = tsae_get(ctx, hook, "hook_sae_input");
    const tlens_tensor *pre = tsae_get(ctx, hook, "hook_sae_acts_pre"), *post = tsae_get(ctx, hook, "hook_sae_acts_post");
    const tlens_tensor *rec = tsae_get(ctx, hook, "hook_sae_recons"), *out = tsae_get(ctx, hook, "hook_sae_output");
    int D = a->spec.d_in, S = a->spec.d_sae, R, r, i, bad = 0, active = 0;
    double *x = (double *)malloc((size_t)D * sizeof *x), *v = (double *)malloc((size_t)(S > D ? S : D) * sizeof *v), ca, cb;
    if (!host || !in || !pre || !post || !rec || !out) { free(x); free(v); return 0; }
    R = (int)(tlens_tensor_numel(in) / (size_t)D);
    if (pre->shape[pre->ndim - 1] != S || in->shape[in->ndim - 1] != D || (int)(tlens_tensor_numel(post) / (size_t)S) != R)
        tt_fail_line(__FILE__, __LINE__, "%s: SAE point shapes", label);
    for (r = 0; r < R && bad < 5; r++) {
        const float *prow = pre->data + (size_t)r * S, *qrow = post->data + (size_t)r * S;
        tsae_row(a, host, r, center, x);
        for (i = 0; i < D; i++) bad += !tt_close(in->data[(size_t)r * D + i], x[i], 1e-6, 1e-6);
        tsae_encode(a, x, v, &ca, &cb);
        for (i = 0; i < S; i++) bad += !tt_close(prow[i], v[i], 2e-4, 2e-4);
        tsae_activate(a, prow, v);
        for (i = 0; i < S; i++) {
            bad += !tt_close(qrow[i], v[i], 1e-7, 0);
            active += qrow[i] > 0;
        }
        tsae_decode(a, qrow, v);
        for (i = 0; i < D; i++) bad += !tt_close(rec->data[(size_t)r * D + i], v[i], 2e-4, 2e-4);
        for (i = 0; i < D; i++) {
            double o = tsae_norm_out(a, rec->data[(size_t)r * D + i], ca, cb);
            if (error_term) o = x[i]; /* nothing edited: recons + (x - recons) */
            bad += !tt_close(out->data[(size_t)r * D + i], o, 2e-4, 2e-4);
        }
        if (bad) tt_fail_line(__FILE__, __LINE__, "%s: row %d of the SAE points differs from the naive computation", label, r);
    }
    if (active == 0 || active == R * S) tt_fail_line(__FILE__, __LINE__, "%s: %d of %d features active", label, active, R * S);
    if (a->arch == TLENS_SAE_TOPK && active > R * a->spec.k) tt_fail_line(__FILE__, __LINE__, "%s: more than k active", label);
    free(x);
    free(v);
    return R;
}

static tlens_sae *tsae_load(const char *dir) {
    tlens_sae *s = NULL;
    tlens_error err;
    if (tlens_sae_load(&s, dir, NULL, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    return s;
}

static tlens_sae_attach_options tsae_opts(int error_term, int center) {
    tlens_sae_attach_options o;
    memset(&o, 0, sizeof o);
    o.use_error_term = error_term;
    o.center = center;
    return o;
}

/* Logits of a run without any SAE. */
static float *tsae_plain_logits(tlens_ctx *ctx, const int32_t *tok, int rows, int cols) {
    tlens_error err;
    if (tlens_run(ctx, tok, rows, cols, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s", err.message);
        return NULL;
    }
    return tsae_copy(tlens_logits(ctx));
}

static int tsae_same(const float *a, const float *b, size_t n, double tol) {
    size_t i;
    for (i = 0; i < n; i++)
        if (!tt_close(a[i], b[i], tol, tol)) return 0;
    return 1;
}

/* One SAE, both ways: with the error term (the points match the naive
 * computation and the logits are the model's own), and without (the
 * logits are those of a plain run whose host point is patched with the
 * SAE's output). */
static void tsae_check_spec(const tsae_spec *sp, const char *name) {
    char dir[256];
    tsae_sae a;
    tlens_model *m = tsae_model(0);
    tlens_sae *sae;
    tlens_ctx *ctx;
    tlens_error err;
    tlens_sae_attach_options o;
    int rows, cols;
    int32_t *tok = tsae_tokens(&rows, &cols);
    float *plain, *spliced, *output;
    size_t n;
    TT_REQUIRE(m && tok);
    tsae_make(&a, sp);
    sae = tsae_load(tsae_write(dir, sizeof dir, name, &a));
    TT_REQUIRE(sae != NULL);
    TT_REQUIRE(tlens_ctx_new(&ctx, m, &err) == TLENS_OK);
    plain = tsae_plain_logits(ctx, tok, rows, cols);
    n = tlens_tensor_numel(tlens_logits(ctx));
    o = tsae_opts(1, TLENS_SAE_CENTER_AUTO);
    TT_REQUIRE(tlens_sae_attach(ctx, sae, &o, &err) == TLENS_OK);
    tlens_cache_select(ctx, sp->hook);
    {
        char glob[256];
        snprintf(glob, sizeof glob, "%s.hook_sae_*", sp->hook);
        tlens_cache_select(ctx, glob);
    }
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    tsae_check_points(ctx, &a, 0, 1, name);
    TT_CHECK(tsae_same(tlens_logits(ctx)->data, plain, n, 1e-4)); /* the error term restores x */
    o.use_error_term = 0;
    TT_REQUIRE(tlens_sae_attach(ctx, sae, &o, &err) == TLENS_OK); /* replaces the first */
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    tsae_check_points(ctx, &a, 0, 0, name);
    {
        char err_name[256];
        snprintf(err_name, sizeof err_name, "%s.hook_sae_error", sp->hook);
        TT_CHECK(tlens_cache_get(ctx, err_name) == NULL); /* it fires only with the term */
    }
    spliced = tsae_copy(tlens_logits(ctx));
    TT_CHECK(!tsae_same(spliced, plain, n, 1e-4));
    {
        /* the output patched into a plain run: the same logits */
        tlens_tensor t = *tsae_get(ctx, sp->hook, "hook_sae_output");
        if (sp->head >= 0) { /* a head's slice: rebuild the whole point */
            const tlens_tensor *host = tsae_get(ctx, sp->hook, "");
            size_t r, R = tlens_tensor_numel(&t) / (size_t)sp->d_in;
            output = tsae_copy(host);
            for (r = 0; r < R; r++)
                memcpy(output + (r * (size_t)host->shape[2] + (size_t)sp->head) * (size_t)sp->d_in,
                       t.data + r * (size_t)sp->d_in, (size_t)sp->d_in * sizeof(float));
            t = *host;
        } else {
            output = tsae_copy(&t);
        }
        t.data = output;
        TT_REQUIRE(tlens_sae_detach(ctx, sp->hook) == TLENS_OK);
        TT_REQUIRE(tlens_add_patch(ctx, sp->hook, &t, -1, -1) > 0);
        TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
        TT_CHECK(tsae_same(tlens_logits(ctx)->data, spliced, n, 1e-5));
        free(output);
    }
    free(plain);
    free(spliced);
    tlens_ctx_free(ctx);
    tlens_sae_free(sae);
    tsae_free(&a);
    tlens_free(m);
    free(tok);
}

/* ------------------------------------------------------------------------
 * Architectures, normalisations, weight types, shapes
 * ---------------------------------------------------------------------- */
static void test_sae_standard(void) {
    tsae_spec s = tsae_default();
    tsae_check_spec(&s, "standard");
    s.apply_b_dec = 0;
    s.seed = 2;
    tsae_check_spec(&s, "standard-no-b-dec-in");
    s.apply_b_dec = -1; /* absent: true, as SAELens defaults it */
    s.arch = NULL;      /* absent: standard (the older layout) */
    s.act_fn = NULL;
    s.norm = NULL;
    tsae_check_spec(&s, "standard-old-layout");
}

static void test_sae_topk(void) {
    tsae_spec s = tsae_default();
    s.arch = "topk";
    s.act_fn = NULL;
    s.k = 5;
    tsae_check_spec(&s, "topk");
    /* before SAELens 6: a standard SAE with a topk activation */
    s.arch = "standard";
    s.act_fn = "topk";
    s.k = 7;
    s.seed = 3;
    tsae_check_spec(&s, "topk-old-layout");
}

static void test_sae_jumprelu(void) {
    tsae_spec s = tsae_default();
    s.arch = "jumprelu";
    s.meta = 1; /* SAELens 6 keeps hook_name in "metadata" */
    tsae_check_spec(&s, "jumprelu");
}

static void test_sae_normalisations(void) {
    tsae_spec s = tsae_default();
    s.norm = "expected_average_only_in";
    s.scaling = 2.5;
    tsae_check_spec(&s, "norm-expected-average");
    s.norm = "constant_norm_rescale";
    s.scaling = 0;
    s.arch = "jumprelu";
    tsae_check_spec(&s, "norm-constant-norm-rescale");
    s.norm = "layer_norm";
    s.arch = "topk";
    s.act_fn = NULL;
    s.k = 9;
    tsae_check_spec(&s, "norm-layer-norm");
}

/* Weights stored as F16 / BF16 (the naive side uses the rounded values),
 * and a finetuning scaling factor. */
static void test_sae_weight_types(void) {
    tsae_spec s = tsae_default();
    s.dtype = "F16";
    tsae_check_spec(&s, "f16");
    s.dtype = "BF16";
    s.arch = "jumprelu";
    tsae_check_spec(&s, "bf16");
    s.dtype = "F32";
    s.arch = "standard";
    s.ft_scale = 1;
    tsae_check_spec(&s, "finetuning-scale");
}

/* SAEs at other points: the MLP, attn.hook_z (heads flattened), one head
 * of hook_q (hook_head_index), ln2.hook_normalized. */
static void test_sae_shapes(void) {
    tsae_spec s = tsae_default();
    s.hook = "blocks.0.mlp.hook_post";
    s.d_in = 256;
    tsae_check_spec(&s, "mlp-post");
    s.hook = "blocks.1.attn.hook_z";
    s.d_in = 64;
    tsae_check_spec(&s, "hook-z");
    s.hook = "blocks.0.attn.hook_q";
    s.d_in = 16;
    s.head = 2;
    tsae_check_spec(&s, "q-head-2");
    s.hook = "blocks.1.ln2.hook_normalized";
    s.d_in = 64;
    s.head = -1;
    s.arch = "jumprelu";
    tsae_check_spec(&s, "ln2-normalized");
}

/* cfg.json's dtype does not matter; tlens_sae_get_config reports what the
 * files say. */
static void test_sae_config_read(void) {
    char dir[256];
    tsae_sae a;
    tsae_spec s = tsae_default();
    tlens_sae *sae;
    const tlens_sae_config *c;
    s.arch = "topk";
    s.act_fn = NULL;
    s.k = 3;
    s.norm = "expected_average_only_in";
    s.scaling = 0.75;
    s.dtype = "BF16";
    s.hook = "blocks.0.attn.hook_z";
    tsae_make(&a, &s);
    sae = tsae_load(tsae_write(dir, sizeof dir, "config-read", &a));
    TT_REQUIRE(sae != NULL);
    c = tlens_sae_get_config(sae);
    TT_CHECK_INT(c->architecture, TLENS_SAE_TOPK);
    TT_CHECK_INT(c->k, 3);
    TT_CHECK_INT(c->d_in, 64);
    TT_CHECK_INT(c->d_sae, 96);
    TT_CHECK_STR(c->hook_name, "blocks.0.attn.hook_z");
    TT_CHECK_INT(c->hook_head_index, -1);
    TT_CHECK_INT(c->apply_b_dec_to_input, 1);
    TT_CHECK_INT(c->normalize_activations, TLENS_SAE_NORM_EXPECTED_AVERAGE_ONLY_IN);
    TT_CHECK_CLOSE(c->norm_scaling_factor, 0.75, 0, 0);
    TT_CHECK_INT(c->reshape_hook_z, 1);
    TT_CHECK_INT(c->dtype, TLENS_BF16);
    tlens_sae_free(sae);
    {
        /* the load option overrides cfg.json's factor */
        tlens_sae_load_options lo;
        tlens_error err;
        memset(&lo, 0, sizeof lo);
        lo.norm_scaling_factor = 4.0f;
        TT_REQUIRE(tlens_sae_load(&sae, dir, &lo, &err) == TLENS_OK);
        TT_CHECK_CLOSE(tlens_sae_get_config(sae)->norm_scaling_factor, 4.0, 0, 0);
        tlens_sae_free(sae);
    }
    tsae_free(&a);
}

/* The memory loader gives the same SAE: the same activations. */
static void test_sae_load_memory(void) {
    char dir[256], path[512];
    tsae_sae a;
    tsae_spec s = tsae_default();
    tlens_sae *f, *mem;
    tlens_model *m = tsae_model(0);
    tlens_ctx *ctx;
    tlens_error err;
    unsigned char *cfg, *w;
    size_t cfg_len, w_len;
    int rows, cols;
    int32_t *tok = tsae_tokens(&rows, &cols);
    float *acts;
    TT_REQUIRE(m && tok);
    s.arch = "jumprelu";
    tsae_make(&a, &s);
    f = tsae_load(tsae_write(dir, sizeof dir, "memory", &a));
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    cfg = tu_read_file(path, &cfg_len);
    snprintf(path, sizeof path, "%s/sae_weights.safetensors", dir);
    w = tu_read_file(path, &w_len);
    TT_REQUIRE(f && cfg && w);
    TT_REQUIRE(tlens_sae_load_memory(&mem, (const char *)cfg, cfg_len, w, w_len, NULL, &err) == TLENS_OK);
    free(cfg);
    free(w); /* nothing points into the images */
    tlens_ctx_new(&ctx, m, &err);
    tlens_cache_select(ctx, "*.hook_sae_acts_post");
    TT_REQUIRE(tlens_sae_attach(ctx, f, NULL, &err) == TLENS_OK);
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    acts = tsae_copy(tsae_get(ctx, s.hook, "hook_sae_acts_post"));
    TT_REQUIRE(tlens_sae_attach(ctx, mem, NULL, &err) == TLENS_OK);
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    TT_CHECK(tsae_same(tsae_get(ctx, s.hook, "hook_sae_acts_post")->data, acts, (size_t)rows * cols * 96, 0));
    free(acts);
    tlens_ctx_free(ctx);
    tlens_sae_free(f);
    tlens_sae_free(mem);
    tsae_free(&a);
    tlens_free(m);
    free(tok);
}

/* ------------------------------------------------------------------------
 * Editing features
 * ---------------------------------------------------------------------- */

/* Zero-ablating one feature: with the error term the output becomes
 * x - acts_post[f] * W_dec[f] (the edit takes effect exactly, the rest of
 * the reconstruction error stays), the feature is 0 in the cache, the
 * others are unchanged, and the logits move. */
static void test_sae_feature_ablation(void) {
    char dir[256];
    tsae_sae a;
    tsae_spec s = tsae_default();
    tlens_sae *sae;
    tlens_model *m = tsae_model(0);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_sae_attach_options o = tsae_opts(1, TLENS_SAE_CENTER_AUTO);
    int rows, cols, R, r, i, f, D = 64, S = 96, best = 0, h;
    int32_t *tok = tsae_tokens(&rows, &cols);
    float *before, *logits;
    const tlens_tensor *post, *out, *host;
    double most = 0;
    TT_REQUIRE(m && tok);
    tsae_make(&a, &s);
    sae = tsae_load(tsae_write(dir, sizeof dir, "ablation", &a));
    TT_REQUIRE(sae != NULL);
    tlens_ctx_new(&ctx, m, &err);
    TT_REQUIRE(tlens_sae_attach(ctx, sae, &o, &err) == TLENS_OK);
    tlens_cache_select(ctx, "blocks.1.hook_resid_pre*");
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    logits = tsae_copy(tlens_logits(ctx));
    before = tsae_copy(tsae_get(ctx, s.hook, "hook_sae_acts_post"));
    R = rows * cols;
    for (f = 0; f < S; f++) { /* the feature with the most total activation */
        double sum = 0;
        for (r = 0; r < R; r++) sum += before[(size_t)r * S + f];
        if (sum > most) most = sum, best = f;
    }
    TT_REQUIRE(most > 0);
    h = tlens_add_ablation(ctx, "blocks.1.hook_resid_pre.hook_sae_acts_post", best, TLENS_ABLATE_ZERO);
    TT_REQUIRE(h > 0);
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    post = tsae_get(ctx, s.hook, "hook_sae_acts_post");
    out = tsae_get(ctx, s.hook, "hook_sae_output");
    host = tsae_get(ctx, s.hook, "");
    for (r = 0; r < R; r++) {
        for (f = 0; f < S; f++)
            TT_CHECK_CLOSE(post->data[(size_t)r * S + f], f == best ? 0.0 : before[(size_t)r * S + f], 0, 0);
        for (i = 0; i < D; i++)
            TT_CHECK_CLOSE(out->data[(size_t)r * D + i],
                           host->data[(size_t)r * D + i] - before[(size_t)r * S + best] * a.W_dec[(size_t)best * D + i],
                           2e-5, 2e-5);
    }
    TT_CHECK(!tsae_same(tlens_logits(ctx)->data, logits, tlens_tensor_numel(tlens_logits(ctx)), 1e-4));
    tlens_remove_hook(ctx, h);
    /* a patch of acts_post with the unedited values restores the logits */
    {
        tlens_tensor t = *post;
        t.data = before;
        TT_REQUIRE(tlens_add_patch(ctx, "blocks.1.hook_resid_pre.hook_sae_acts_post", &t, -1, -1) > 0);
        TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
        TT_CHECK(tsae_same(tlens_logits(ctx)->data, logits, tlens_tensor_numel(tlens_logits(ctx)), 1e-5));
    }
    free(before);
    free(logits);
    tlens_ctx_free(ctx);
    tlens_sae_free(sae);
    tsae_free(&a);
    tlens_free(m);
    free(tok);
}

/* A hook on an SAE point sees the point's name and layer; a hook that
 * stops the run is reported at that point. */
typedef struct tsae_seen { int calls, layer, shape2; char name[128]; } tsae_seen;

static int tsae_record(const char *name, int layer, tlens_tensor *t, void *user) {
    tsae_seen *s = (tsae_seen *)user;
    s->calls++;
    s->layer = layer;
    s->shape2 = t->shape[2];
    snprintf(s->name, sizeof s->name, "%s", name);
    return 0;
}

static int tsae_stop(const char *name, int layer, tlens_tensor *t, void *user) {
    (void)name; (void)layer; (void)t; (void)user;
    return 1;
}

static void test_sae_hooks_and_names(void) {
    char dir[256];
    tsae_sae a;
    tsae_spec s = tsae_default();
    tlens_sae *sae;
    tlens_model *m = tsae_model(0);
    tlens_ctx *ctx;
    tlens_error err;
    tsae_seen seen;
    int rows, cols, n0, i, host = -1;
    int32_t *tok = tsae_tokens(&rows, &cols);
    static const char *const order[6] = {"hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post",
                                         "hook_sae_recons", "hook_sae_error", "hook_sae_output"};
    TT_REQUIRE(m && tok);
    tsae_make(&a, &s);
    sae = tsae_load(tsae_write(dir, sizeof dir, "names", &a));
    TT_REQUIRE(sae != NULL);
    tlens_ctx_new(&ctx, m, &err);
    n0 = tlens_hook_count(ctx);
    TT_REQUIRE(tlens_sae_attach(ctx, sae, NULL, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_hook_count(ctx), n0 + 6);
    for (i = 0; i < tlens_hook_count(ctx); i++)
        if (!strcmp(tlens_hook_name(ctx, i), s.hook)) host = i;
    TT_REQUIRE(host >= 0);
    for (i = 0; i < 6; i++) { /* right after the host, in firing order */
        char want[128];
        snprintf(want, sizeof want, "%s.%s", s.hook, order[i]);
        TT_CHECK_STR(tlens_hook_name(ctx, host + 1 + i), want);
    }
    TT_CHECK_STR(tlens_hook_name(ctx, host + 7), "blocks.1.ln1.hook_scale");
    memset(&seen, 0, sizeof seen);
    tlens_add_hook(ctx, "*.hook_sae_acts_*", tsae_record, &seen);
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    TT_CHECK_INT(seen.calls, 2);
    TT_CHECK_INT(seen.layer, 1);
    TT_CHECK_INT(seen.shape2, 96);
    TT_CHECK_STR(seen.name, "blocks.1.hook_resid_pre.hook_sae_acts_post");
    tlens_add_hook(ctx, "blocks.1.hook_resid_pre.hook_sae_recons", tsae_stop, NULL);
    TT_CHECK_INT(tlens_run(ctx, tok, rows, cols, &err), TLENS_ERR_HOOK);
    TT_CHECK(strstr(err.message, "hook_sae_recons") != NULL);
    tlens_reset_hooks(ctx);
    /* detaching removes the points; the model runs as before */
    TT_CHECK_INT(tlens_sae_detach(ctx, "blocks.0.hook_resid_pre"), TLENS_ERR_NOT_FOUND);
    TT_CHECK_INT(tlens_sae_detach(ctx, s.hook), TLENS_OK);
    TT_CHECK_INT(tlens_hook_count(ctx), n0);
    TT_CHECK(tlens_cache_get(ctx, "blocks.1.hook_resid_pre.hook_sae_acts_post") == NULL);
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    /* two SAEs at once, then detach all */
    {
        tsae_sae b;
        tlens_sae *sae2;
        char dir2[256];
        tsae_spec s2 = tsae_default();
        s2.hook = "blocks.0.hook_mlp_out";
        tsae_make(&b, &s2);
        sae2 = tsae_load(tsae_write(dir2, sizeof dir2, "names-2", &b));
        TT_REQUIRE(sae2 != NULL);
        TT_REQUIRE(tlens_sae_attach(ctx, sae, NULL, &err) == TLENS_OK);
        TT_REQUIRE(tlens_sae_attach(ctx, sae2, NULL, &err) == TLENS_OK);
        TT_CHECK_INT(tlens_hook_count(ctx), n0 + 12);
        tlens_cache_select(ctx, "*hook_sae_output");
        TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
        TT_CHECK(tlens_cache_get(ctx, "blocks.0.hook_mlp_out.hook_sae_output") != NULL);
        TT_CHECK(tlens_cache_get(ctx, "blocks.1.hook_resid_pre.hook_sae_output") != NULL);
        TT_CHECK_INT(tlens_sae_detach(ctx, "blocks.0.hook_mlp_out"), TLENS_OK);
        TT_CHECK(tlens_cache_get(ctx, "blocks.1.hook_resid_pre.hook_sae_output") != NULL);
        TT_CHECK_INT(tlens_sae_detach(ctx, NULL), TLENS_OK);
        TT_CHECK_INT(tlens_hook_count(ctx), n0);
        tlens_sae_free(sae2);
        tsae_free(&b);
    }
    tlens_ctx_free(ctx);
    tlens_sae_free(sae);
    tsae_free(&a);
    tlens_free(m);
    free(tok);
}

/* ------------------------------------------------------------------------
 * Raw models: centring gives the SAE the processed model's input
 * ---------------------------------------------------------------------- */

/* log-softmax of every row, in place */
static void tsae_log_softmax(float *x, size_t rows, int V) {
    size_t r;
    int i;
    for (r = 0; r < rows; r++) {
        float *row = x + r * (size_t)V;
        double mx = row[0], sum = 0;
        for (i = 1; i < V; i++) if (row[i] > mx) mx = row[i];
        for (i = 0; i < V; i++) sum += exp(row[i] - mx);
        for (i = 0; i < V; i++) row[i] = (float)(row[i] - mx - log(sum));
    }
}

static void test_sae_raw_model_centring(void) {
    char dir[256];
    tsae_sae a;
    tsae_spec s = tsae_default();
    tlens_sae *sae;
    tlens_model *proc = tsae_model(0), *raw = tsae_model(1);
    tlens_ctx *cp, *cr;
    tlens_error err;
    tlens_sae_attach_options o = tsae_opts(0, TLENS_SAE_CENTER_AUTO);
    int rows, cols, V;
    int32_t *tok = tsae_tokens(&rows, &cols);
    float *lp, *lr, *acts;
    size_t n, na;
    TT_REQUIRE(proc && raw && tok);
    tsae_make(&a, &s);
    sae = tsae_load(tsae_write(dir, sizeof dir, "centring", &a));
    TT_REQUIRE(sae != NULL);
    tlens_ctx_new(&cp, proc, &err);
    tlens_ctx_new(&cr, raw, &err);
    TT_REQUIRE(tlens_sae_attach(cp, sae, &o, &err) == TLENS_OK);
    TT_REQUIRE(tlens_sae_attach(cr, sae, &o, &err) == TLENS_OK);
    tlens_cache_select(cp, "blocks.1.hook_resid_pre*");
    tlens_cache_select(cr, "blocks.1.hook_resid_pre*");
    TT_REQUIRE(tlens_run(cp, tok, rows, cols, &err) == TLENS_OK);
    TT_REQUIRE(tlens_run(cr, tok, rows, cols, &err) == TLENS_OK);
    /* the raw model's own point is not centred, the SAE's input is */
    tsae_check_points(cr, &a, 1, 0, "raw, centred");
    acts = tsae_copy(tsae_get(cp, s.hook, "hook_sae_acts_post"));
    na = tlens_tensor_numel(tsae_get(cp, s.hook, "hook_sae_acts_post"));
    TT_CHECK(tsae_same(tsae_get(cr, s.hook, "hook_sae_input")->data, tsae_get(cp, s.hook, "hook_sae_input")->data,
                     tlens_tensor_numel(tsae_get(cp, s.hook, "hook_sae_input")), 1e-4));
    TT_CHECK(tsae_same(tsae_get(cr, s.hook, "hook_sae_acts_post")->data, acts, na, 1e-4));
    V = tlens_logits(cp)->shape[2];
    n = tlens_tensor_numel(tlens_logits(cp));
    lp = tsae_copy(tlens_logits(cp));
    lr = tsae_copy(tlens_logits(cr));
    tsae_log_softmax(lp, n / (size_t)V, V);
    tsae_log_softmax(lr, n / (size_t)V, V);
    TT_CHECK(tsae_same(lp, lr, n, 2e-4));
    /* without centring the raw model's SAE sees other inputs */
    o.center = TLENS_SAE_CENTER_OFF;
    TT_REQUIRE(tlens_sae_attach(cr, sae, &o, &err) == TLENS_OK);
    TT_REQUIRE(tlens_run(cr, tok, rows, cols, &err) == TLENS_OK);
    TT_CHECK(!tsae_same(tsae_get(cr, s.hook, "hook_sae_acts_post")->data, acts, na, 1e-3));
    free(acts);
    free(lp);
    free(lr);
    tlens_ctx_free(cp);
    tlens_ctx_free(cr);
    tlens_sae_free(sae);
    tsae_free(&a);
    tlens_free(proc);
    tlens_free(raw);
    free(tok);
}

/* ------------------------------------------------------------------------
 * The command-line tool
 * ---------------------------------------------------------------------- */

/* tlens run --sae DIR --sae-top K prints, per position, the K most active
 * features, those of the API's run. */
static void test_sae_cli(void) {
    char dir[256], name[64];
    tsae_sae a;
    tsae_spec s = tsae_default();
    tlens_sae *sae;
    tlens_model *m;
    tlens_ctx *ctx;
    tlens_error err;
    tlens_sae_attach_options o = tsae_opts(1, TLENS_SAE_CENTER_AUTO);
    int32_t tok[5] = {3, 14, 15, 92, 65};
    const tlens_tensor *post;
    char *out, *line;
    int p, lines = 0;
    if (!tx_have("tlens")) TT_SKIP("build/tlens is missing (make builds it)");
    tsae_make(&a, &s);
    tsae_write(dir, sizeof dir, "cli", &a);
    out = tx_run("tlens", "run " TSAE_MODEL " --tokens \"3 14 15 92 65\" --sae %s --sae-top 3", dir);
    TT_REQUIRE(out != NULL);
    m = tsae_model(0);
    sae = tsae_load(dir);
    TT_REQUIRE(m && sae);
    tlens_ctx_new(&ctx, m, &err);
    TT_REQUIRE(tlens_sae_attach(ctx, sae, &o, &err) == TLENS_OK);
    tlens_cache_select(ctx, "*.hook_sae_acts_post");
    TT_REQUIRE(tlens_run(ctx, tok, 1, 5, &err) == TLENS_OK);
    post = tsae_get(ctx, s.hook, "hook_sae_acts_post");
    TT_CHECK(strstr(out, "blocks.1.hook_resid_pre.hook_sae_acts_post") != NULL);
    for (line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        int b, pos, f[3], k;
        float v[3];
        if (sscanf(line, "%d %d %d %f %d %f %d %f", &b, &pos, &f[0], &v[0], &f[1], &v[1], &f[2], &v[2]) != 8) continue;
        TT_REQUIRE(b == 0 && pos >= 0 && pos < 5);
        for (k = 0; k < 3; k++) {
            int g, above = 0;
            const float *row = post->data + (size_t)pos * 96;
            TT_CHECK_CLOSE(v[k], row[f[k]], 1e-4, 1e-4);
            for (g = 0; g < 96; g++) above += row[g] > row[f[k]];
            TT_CHECK_INT(above, k);
        }
        lines++;
    }
    TT_CHECK_INT(lines, 5);
    free(out);
    /* its points work with --cache / --zero like any other */
    snprintf(name, sizeof name, "sae-cli-npy");
    out = tx_run("tlens", "run " TSAE_MODEL " --tokens \"3 14 15\" --sae %s --sae-no-error --zero "
                 "blocks.1.hook_resid_pre.hook_sae_acts_post:7 --cache 'blocks.1.hook_resid_pre.*' --npy " TSAE_TMP "%s",
                 dir, name);
    TT_REQUIRE(out != NULL);
    free(out);
    {
        tlens_tensor t;
        TT_REQUIRE(tlens_npy_load(TSAE_TMP "sae-cli-npy/blocks.1.hook_resid_pre.hook_sae_acts_post.npy", &t, &err) == TLENS_OK);
        TT_CHECK_INT(t.ndim, 3);
        TT_CHECK_INT(t.shape[2], 96);
        for (p = 0; p < 3; p++) TT_CHECK_CLOSE(t.data[p * 96 + 7], 0.0, 0, 0);
        tlens_tensor_free(&t);
    }
    tlens_ctx_free(ctx);
    tlens_sae_free(sae);
    tsae_free(&a);
    tlens_free(m);
}

/* ------------------------------------------------------------------------
 * Malformed input
 * ---------------------------------------------------------------------- */

/* Load TSAE_TMP/name with this cfg.json text and checkpoint; check the
 * result code and that the message names `mention`; no allocation may
 * survive a failure. */
static void tsae_expect(const char *name, const char *cfg, const lt_ckpt *ck, tlens_result want, const char *mention) {
    char dir[256], path[512];
    tlens_sae_load_options o;
    lt_alloc_stats st;
    tlens_sae *sae = NULL;
    tlens_error err;
    tlens_result r;
    tsae_dir(dir, sizeof dir, name);
    if (cfg) lt_write_text(dir, "cfg.json", cfg);
    snprintf(path, sizeof path, "%s/sae_weights.safetensors", dir);
    if (ck) lt_ckpt_write(ck, path);
    memset(&st, 0, sizeof st);
    st.limit = (size_t)64 << 20;
    memset(&o, 0, sizeof o);
    o.allocator.alloc = lt_alloc;
    o.allocator.free = lt_free;
    o.allocator.user = &st;
    r = tlens_sae_load(&sae, dir, &o, &err);
    if (r != want)
        tt_fail_line(__FILE__, __LINE__, "%s: result %d (%s: %s), expected %d (%s)", name, r, tlens_result_string(r),
                     r ? err.message : "", want, tlens_result_string(want));
    if (r && mention && !strstr(err.message, mention))
        tt_fail_line(__FILE__, __LINE__, "%s: message \"%s\" does not name %s", name, err.message, mention);
    if (r && sae) tt_fail_line(__FILE__, __LINE__, "%s: a failed load returned an SAE", name);
    tlens_sae_free(sae);
    if (st.live != 0) tt_fail_line(__FILE__, __LINE__, "%s: %ld allocations left", name, st.live);
}

static void test_sae_bad_config(void) {
    tsae_sae a;
    tsae_spec s = tsae_default();
    lt_ckpt ck;
    char *good;
    s.arch = "jumprelu";
    tsae_make(&a, &s);
    tsae_ckpt(&ck, &a);
    good = tsae_cfg_text(&s);
    tsae_expect("bad-ok", good, &ck, TLENS_OK, NULL);
    tsae_expect("bad-no-files", NULL, NULL, TLENS_ERR_IO, "cfg.json");
    tsae_expect("bad-json", "{\"d_in\": 64,", &ck, TLENS_ERR_FORMAT, "cfg.json");
    tsae_expect("bad-no-d-in", "{\"d_sae\": 96, \"hook_name\": \"blocks.1.hook_resid_pre\"}", &ck, TLENS_ERR_CONFIG, "d_in");
    tsae_expect("bad-d-sae", "{\"d_in\": 64, \"d_sae\": -3, \"hook_name\": \"x\"}", &ck, TLENS_ERR_CONFIG, "d_sae");
    tsae_expect("bad-d-sae-text", "{\"d_in\": 64, \"d_sae\": \"96\", \"hook_name\": \"x\"}", &ck, TLENS_ERR_CONFIG, "d_sae");
    tsae_expect("bad-no-hook", "{\"d_in\": 64, \"d_sae\": 96, \"architecture\": \"jumprelu\"}", &ck, TLENS_ERR_CONFIG, "hook_name");
    tsae_expect("bad-arch", "{\"d_in\": 64, \"d_sae\": 96, \"architecture\": \"gated\", \"hook_name\": \"x\"}", &ck,
              TLENS_ERR_CONFIG, "gated");
    tsae_expect("bad-act", "{\"d_in\": 64, \"d_sae\": 96, \"activation_fn_str\": \"tanh-relu\", \"hook_name\": \"x\"}", &ck,
              TLENS_ERR_CONFIG, "tanh-relu");
    tsae_expect("bad-topk-no-k", "{\"d_in\": 64, \"d_sae\": 96, \"architecture\": \"topk\", \"hook_name\": \"x\"}", &ck,
              TLENS_ERR_CONFIG, "k");
    tsae_expect("bad-topk-k", "{\"d_in\": 64, \"d_sae\": 96, \"architecture\": \"topk\", \"k\": 97, \"hook_name\": \"x\"}",
              &ck, TLENS_ERR_CONFIG, "\"k\"");
    tsae_expect("bad-norm", "{\"d_in\": 64, \"d_sae\": 96, \"normalize_activations\": \"sometimes\", \"hook_name\": \"x\"}",
              &ck, TLENS_ERR_CONFIG, "sometimes");
    tsae_expect("bad-scaling", "{\"d_in\": 64, \"d_sae\": 96, \"norm_scaling_factor\": -1, \"hook_name\": \"x\"}", &ck,
              TLENS_ERR_CONFIG, "norm_scaling_factor");
    tsae_expect("bad-bool", "{\"d_in\": 64, \"d_sae\": 96, \"apply_b_dec_to_input\": 1, \"hook_name\": \"x\"}", &ck,
              TLENS_ERR_CONFIG, "apply_b_dec_to_input");
    tsae_expect("bad-head", "{\"d_in\": 64, \"d_sae\": 96, \"hook_head_index\": -1, \"hook_name\": \"x\"}", &ck,
              TLENS_ERR_CONFIG, "hook_head_index");
    tsae_expect("bad-reshape", "{\"d_in\": 64, \"d_sae\": 96, \"reshape_activations\": \"hook_q\", \"hook_name\": \"x\"}",
              &ck, TLENS_ERR_CONFIG, "reshape_activations");
    /* d_in x d_sae beyond the address space of 32-bit hosts, or just beyond
     * the allocator's limit: never a crash */
    {
        tlens_sae *sae;
        tlens_error err;
        const char *huge = "{\"d_in\": 1048576, \"d_sae\": 67108864, \"hook_name\": \"x\"}";
        size_t img_len;
        unsigned char *img = lt_ckpt_image(&ck, &img_len);
        tlens_result r = tlens_sae_load_memory(&sae, huge, strlen(huge), img, img_len, NULL, &err);
        TT_CHECK(r == TLENS_ERR_SHAPE || r == TLENS_ERR_CONFIG);
        free(img);
    }
    free(good);
    lt_ckpt_free(&ck);
    tsae_free(&a);
}

static void test_sae_bad_weights(void) {
    tsae_sae a;
    tsae_spec s = tsae_default();
    lt_ckpt ck, bad;
    char *cfg;
    lt_tensor *t;
    s.arch = "jumprelu";
    tsae_make(&a, &s);
    tsae_ckpt(&ck, &a);
    cfg = tsae_cfg_text(&s);
    tsae_expect("w-no-file", cfg, NULL, TLENS_ERR_IO, "sae_weights.safetensors");
    /* a tensor of the wrong shape, a missing one, an integer type */
    lt_ckpt_copy(&bad, &ck);
    t = lt_ckpt_find(&bad, "W_enc");
    t->shape[0] = 96;
    t->shape[1] = 64;
    tsae_expect("w-shape", cfg, &bad, TLENS_ERR_SHAPE, "W_enc");
    lt_ckpt_free(&bad);
    lt_ckpt_copy(&bad, &ck);
    lt_ckpt_remove(&bad, "b_dec");
    tsae_expect("w-missing", cfg, &bad, TLENS_ERR_MISSING, "b_dec");
    lt_ckpt_free(&bad);
    lt_ckpt_copy(&bad, &ck);
    lt_ckpt_remove(&bad, "threshold");
    tsae_expect("w-no-threshold", cfg, &bad, TLENS_ERR_MISSING, "threshold");
    lt_ckpt_free(&bad);
    lt_ckpt_copy(&bad, &ck);
    t = lt_ckpt_find(&bad, "b_enc");
    snprintf(t->dtype, sizeof t->dtype, "I32");
    tsae_expect("w-dtype", cfg, &bad, TLENS_ERR_DTYPE, "b_enc");
    lt_ckpt_free(&bad);
    /* data past the end of the file, and offsets that disagree with the shape */
    lt_ckpt_copy(&bad, &ck);
    t = lt_ckpt_find(&bad, "b_dec");
    t->fake_offsets = 1;
    t->fb = 0;
    t->fe = 1 << 30;
    tsae_expect("w-offsets", cfg, &bad, TLENS_ERR_FORMAT, "b_dec");
    lt_ckpt_free(&bad);
    /* a scaling factor other than ones without finetuning_scaling_factor */
    lt_ckpt_copy(&bad, &ck);
    tsae_add(&bad, "scaling_factor", 1, 96, 0, a.scale);
    tsae_expect("w-scale", cfg, &bad, TLENS_ERR_CONFIG, "scaling_factor");
    lt_ckpt_free(&bad);
    /* ... but all ones is dropped, as SAELens does */
    lt_ckpt_copy(&bad, &ck);
    {
        double ones[96];
        int i;
        for (i = 0; i < 96; i++) ones[i] = 1.0;
        tsae_add(&bad, "scaling_factor", 1, 96, 0, ones);
    }
    tsae_expect("w-scale-ones", cfg, &bad, TLENS_OK, NULL);
    lt_ckpt_free(&bad);
    /* a header length past the end, and a file shorter than 8 bytes */
    {
        char dir[256], path[512];
        unsigned char img[16];
        tsae_dir(dir, sizeof dir, "w-header");
        lt_write_text(dir, "cfg.json", cfg);
        snprintf(path, sizeof path, "%s/sae_weights.safetensors", dir);
        memset(img, ' ', sizeof img);
        lt_put_u64(img, 1000);
        tu_write_file(path, img, sizeof img);
        tsae_expect("w-header", NULL, NULL, TLENS_ERR_FORMAT, "header length");
        tu_write_file(path, img, 5);
        tsae_expect("w-header", NULL, NULL, TLENS_ERR_FORMAT, "too short");
    }
    free(cfg);
    lt_ckpt_free(&ck);
    tsae_free(&a);
}

/* Every byte of a small SAE's files flipped: any result but a crash, and
 * never a leak. */
static void test_sae_byte_flips(void) {
    tsae_sae a;
    tsae_spec s = tsae_default();
    lt_ckpt ck;
    char *cfg;
    unsigned char *img;
    size_t img_len, i, cfg_len, hlen;
    int loaded = 0;
    s.d_in = 4;
    s.d_sae = 6;
    s.arch = "topk";
    s.act_fn = NULL;
    s.k = 2;
    tsae_make(&a, &s);
    tsae_ckpt(&ck, &a);
    cfg = tsae_cfg_text(&s);
    cfg_len = strlen(cfg);
    img = lt_ckpt_image(&ck, &img_len);
    hlen = 8 + (size_t)lt_get_u32(img);
    for (i = 0; i < cfg_len + hlen; i++) {
        unsigned char *p = i < cfg_len ? (unsigned char *)cfg + i : img + (i - cfg_len);
        unsigned char saved = *p;
        lt_alloc_stats st;
        tlens_sae_load_options o;
        tlens_sae *sae = NULL;
        tlens_error err;
        memset(&st, 0, sizeof st);
        st.limit = (size_t)64 << 20;
        memset(&o, 0, sizeof o);
        o.allocator.alloc = lt_alloc;
        o.allocator.free = lt_free;
        o.allocator.user = &st;
        *p ^= 0x5a;
        if (tlens_sae_load_memory(&sae, cfg, cfg_len, img, img_len, &o, &err) == TLENS_OK) loaded++;
        tlens_sae_free(sae);
        *p = saved;
        if (st.live) tt_fail_line(__FILE__, __LINE__, "byte %zu flipped: %ld allocations left", i, st.live);
    }
    printf("  %-40s %d of %zu flipped loads succeeded\n", "SAE cfg.json + header", loaded, cfg_len + hlen);
    free(img);
    free(cfg);
    lt_ckpt_free(&ck);
    tsae_free(&a);
}

/* Attaching where the SAE does not fit. */
static void test_sae_bad_attach(void) {
    static const struct { const char *hook; int d_in, head; tlens_result want; const char *mention; } cases[] = {
        {"blocks.9.hook_resid_pre", 64, -1, TLENS_ERR_NOT_FOUND, "blocks.9.hook_resid_pre"},
        {"blocks.0.hook_resid_pre", 32, -1, TLENS_ERR_SHAPE, "d_in"},
        {"blocks.0.attn.hook_pattern", 64, -1, TLENS_ERR_SHAPE, "hook_pattern"},
        {"blocks.0.attn.hook_q", 16, 4, TLENS_ERR_SHAPE, "head 4"},
        {"blocks.0.hook_resid_pre", 64, 0, TLENS_ERR_SHAPE, "head 0"},
        {"blocks.0.mlp.hook_pre", 64, -1, TLENS_ERR_SHAPE, "256"},
    };
    tlens_model *m = tsae_model(0);
    tlens_ctx *ctx;
    tlens_error err;
    size_t c;
    int n0;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    n0 = tlens_hook_count(ctx);
    for (c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        char dir[256], name[32];
        tsae_sae a;
        tsae_spec s = tsae_default();
        tlens_sae *sae;
        tlens_result r;
        s.hook = cases[c].hook;
        s.d_in = cases[c].d_in;
        s.head = cases[c].head;
        tsae_make(&a, &s);
        snprintf(name, sizeof name, "attach-%d", (int)c);
        sae = tsae_load(tsae_write(dir, sizeof dir, name, &a));
        TT_REQUIRE(sae != NULL);
        r = tlens_sae_attach(ctx, sae, NULL, &err);
        TT_CHECK_INT(r, cases[c].want);
        if (r && !strstr(err.message, cases[c].mention))
            tt_fail_line(__FILE__, __LINE__, "case %d: \"%s\" does not name %s", (int)c, err.message, cases[c].mention);
        tlens_sae_free(sae);
        tsae_free(&a);
    }
    TT_CHECK_INT(tlens_hook_count(ctx), n0); /* nothing attached */
    tlens_ctx_free(ctx);
    tlens_free(m);
}

void tests_sae(void);
void tests_sae(void) {
    TT_RUN(test_sae_standard);
    TT_RUN(test_sae_topk);
    TT_RUN(test_sae_jumprelu);
    TT_RUN(test_sae_normalisations);
    TT_RUN(test_sae_weight_types);
    TT_RUN(test_sae_shapes);
    TT_RUN(test_sae_config_read);
    TT_RUN(test_sae_load_memory);
    TT_RUN(test_sae_feature_ablation);
    TT_RUN(test_sae_hooks_and_names);
    TT_RUN(test_sae_raw_model_centring);
    TT_RUN(test_sae_cli);
    TT_RUN(test_sae_bad_config);
    TT_RUN(test_sae_bad_weights);
    TT_RUN(test_sae_byte_flips);
    TT_RUN(test_sae_bad_attach);
}
