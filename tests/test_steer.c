/* Steering and intervention files against independent computations:
 * steering adds exactly coef * vec where it should (cached activations with
 * and without); steering during cached generation gives the logits of
 * runs of the whole sequence; steering vectors equal mean differences and
 * principal components computed here (Jacobi's eigenvalue method) from
 * cached activations; every intervention operation equals the same edit
 * written out by hand in a hook; the parser's errors name the file, the
 * entry and the key; the command-line tool's steer-vector, --add and
 * --interventions give what the library gives.
 *
 * Included from test_main.c after test_examples.c (its popen helpers).
 * Files go to build/test-tmp/, named steer-*. Everything is prefixed ts_.
 */
#define TS_TMP "build/test-tmp/"

/* Deterministic values in [-1, 1). */
static float ts_rand(uint64_t *state) {
    *state = *state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*state >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

static void ts_fill(float *x, int n, uint64_t seed) {
    int i;
    for (i = 0; i < n; i++) x[i] = ts_rand(&seed);
}

/* A random GPT-2 of a small shape: 3 layers, 4 heads, n_ctx 40. */
static tlens_model *ts_model(int d_vocab, int d_model, uint64_t seed) {
    tlens_config cfg;
    tlens_model *m = NULL;
    tlens_error err;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_layers = 3;
    cfg.d_model = d_model;
    cfg.n_heads = 4;
    cfg.d_mlp = 2 * d_model;
    cfg.d_vocab = d_vocab;
    cfg.n_ctx = 40;
    if (tlens_init_random(&m, &cfg, NULL, seed, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    return m;
}

static float *ts_copy(const tlens_tensor *t) {
    size_t n = tlens_tensor_numel(t);
    float *c = (float *)malloc(n * sizeof(float));
    if (c) memcpy(c, t->data, n * sizeof(float));
    return c;
}

static int ts_in(const int *list, int n, int v) {
    int i;
    for (i = 0; i < n; i++)
        if (list[i] == v) return 1;
    return 0;
}

/* ---- steering ---- */

/* The cached hook point after steering is the one before plus coef * vec
 * at the chosen positions, and only there; the edit flows downstream; a
 * removed steering hook leaves the run as it was. */
static void test_steer_adds_coef_vec(void) {
    tlens_model *m = ts_model(97, 32, 11);
    tlens_ctx *ctx;
    tlens_error err;
    int32_t tok[2 * 7];
    int pos[2] = {1, 4}, b, p, d, h, i, T = 7, D = 32, changed = 0;
    float vec[32], coef = 2.5f, *before, *post_before;
    const tlens_tensor *after, *post;
    TT_REQUIRE(m != NULL);
    for (i = 0; i < 14; i++) tok[i] = (int32_t)((i * 37 + 5) % 97);
    ts_fill(vec, 32, 3);
    tlens_ctx_new(&ctx, m, &err);
    tlens_cache_select(ctx, "blocks.1.hook_resid_pre");
    tlens_cache_select(ctx, "blocks.1.hook_resid_post");
    TT_REQUIRE(tlens_run(ctx, tok, 2, T, &err) == TLENS_OK);
    before = ts_copy(tlens_cache_act(ctx, "resid_pre", 1, NULL));
    post_before = ts_copy(tlens_cache_act(ctx, "resid_post", 1, NULL));
    h = tlens_add_steering(ctx, "blocks.1.hook_resid_pre", vec, 32, coef, pos, 2, &err);
    TT_REQUIRE(h > 0);
    TT_REQUIRE(tlens_run(ctx, tok, 2, T, &err) == TLENS_OK);
    after = tlens_cache_act(ctx, "resid_pre", 1, NULL);
    post = tlens_cache_act(ctx, "resid_post", 1, NULL);
    for (b = 0; b < 2; b++)
        for (p = 0; p < T; p++)
            for (d = 0; d < D; d++) {
                size_t at = ((size_t)b * T + p) * D + d;
                float want = before[at] + (ts_in(pos, 2, p) ? coef * vec[d] : 0.0f);
                TT_CHECK_CLOSE(after->data[at], want, 1e-6, 1e-6);
                if (p == 0) TT_CHECK_CLOSE(post->data[at], post_before[at], 0, 0); /* before the first edit */
                changed += p == 4 && fabsf(post->data[at] - post_before[at]) > 1e-3f;
            }
    TT_CHECK(changed > 0);
    tlens_remove_hook(ctx, h);
    TT_REQUIRE(tlens_run(ctx, tok, 2, T, &err) == TLENS_OK);
    for (i = 0; i < 2 * T * D; i++) TT_CHECK_CLOSE(tlens_cache_act(ctx, "resid_pre", 1, NULL)->data[i], before[i], 0, 0);
    /* every position, through a glob (layer 0's own point is the first edit) */
    tlens_cache_select(ctx, "blocks.0.hook_resid_pre");
    TT_REQUIRE(tlens_run(ctx, tok, 2, T, &err) == TLENS_OK);
    free(before);
    before = ts_copy(tlens_cache_act(ctx, "resid_pre", 0, NULL));
    TT_REQUIRE(tlens_add_steering(ctx, "blocks.*.hook_resid_pre", vec, 32, -1.5f, NULL, 0, &err) > 0);
    TT_REQUIRE(tlens_run(ctx, tok, 2, T, &err) == TLENS_OK);
    after = tlens_cache_act(ctx, "resid_pre", 0, NULL);
    for (i = 0; i < 2 * T * D; i++) TT_CHECK_CLOSE(after->data[i], before[i] + -1.5f * vec[i % D], 1e-6, 1e-6);
    free(before);
    free(post_before);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* Wrong lengths, names and positions are refused with a message. */
static void test_steer_errors(void) {
    tlens_model *m = ts_model(97, 32, 12);
    tlens_ctx *ctx;
    tlens_error err;
    float vec[32] = {0};
    int neg = -1;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    TT_CHECK_INT(tlens_add_steering(ctx, "blocks.1.hook_resid_pre", vec, 31, 1.0f, NULL, 0, &err), 0);
    TT_CHECK_INT(err.code, TLENS_ERR_SHAPE);
    TT_CHECK(strstr(err.message, "blocks.1.hook_resid_pre") && strstr(err.message, "31") && strstr(err.message, "32"));
    TT_CHECK_INT(tlens_add_steering(ctx, "blocks.1.attn.hook_z", vec, 32, 1.0f, NULL, 0, &err), 0);
    TT_CHECK_INT(err.code, TLENS_ERR_SHAPE);
    TT_CHECK_INT(tlens_add_steering(ctx, "blocks.9.hook_resid_pre", vec, 32, 1.0f, NULL, 0, &err), 0);
    TT_CHECK_INT(err.code, TLENS_ERR_NOT_FOUND);
    TT_CHECK_INT(tlens_add_steering(ctx, "blocks.0.attn.hook_pattern", vec, 32, 1.0f, NULL, 0, &err), 0);
    TT_CHECK_INT(err.code, TLENS_ERR_ARG);
    TT_CHECK_INT(tlens_add_steering(ctx, "blocks.0.hook_resid_pre", vec, 32, 1.0f, &neg, 1, &err), 0);
    TT_CHECK_INT(err.code, TLENS_ERR_ARG);
    TT_CHECK_INT(ctx->n_hooks, 0);
    TT_CHECK_INT(tlens_add_steering(ctx, "blocks.1.attn.hook_z", vec, 8, 1.0f, NULL, 0, &err) > 0, 1);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "blocks.0.hook_resid_pre"), 32);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "blocks.2.attn.hook_q"), 8);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "blocks.0.mlp.hook_post"), 64);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "blocks.0.ln2.hook_scale"), 1);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "ln_final.hook_normalized"), 32);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "hook_embed"), 32);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "blocks.1.hook_attn_in"), 32);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "blocks.0.attn.hook_pattern"), 0);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "hook_tokens"), 0);
    TT_CHECK_INT(tlens_hook_last_dim(ctx, "blocks.5.hook_resid_pre"), 0);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* Greedy argmax of the last row of [1, T, V] logits. */
static int32_t ts_argmax_last(const tlens_tensor *lg) {
    int V = lg->shape[2], i, best = 0;
    const float *row = lg->data + (size_t)(lg->shape[1] - 1) * (size_t)V;
    for (i = 1; i < V; i++)
        if (row[i] > row[best]) best = i;
    return best;
}

/* Greedy steps with the key/value cache in `kv` against runs of the whole
 * sequence in `full` (both with the same interventions) and in `plain`
 * (none): the logits agree at every step, and differ from plain ones at
 * some position >= first_edit. seq holds the prompt and gets the tokens. */
static void ts_kv_steps(tlens_ctx *kv, tlens_ctx *full, tlens_ctx *plain, int32_t *seq, int n_prompt, int steps,
                        int first_edit) {
    tlens_run_options ro;
    tlens_error err;
    int s, i, T, V = tlens_model_config(kv->m)->d_vocab, differ = 0;
    memset(&ro, 0, sizeof ro);
    ro.use_kv_cache = 1;
    tlens_kv_reset(kv);
    if (tlens_run_ex(kv, seq, 1, n_prompt, &ro, &err)) {
        tt_fail_line(__FILE__, __LINE__, "%s", err.message);
        return;
    }
    for (s = 0, T = n_prompt; s < steps; s++, T++) {
        const tlens_tensor *a = tlens_logits(kv), *b, *c;
        if (tlens_run(full, seq, 1, T, &err) || tlens_run(plain, seq, 1, T, &err)) {
            tt_fail_line(__FILE__, __LINE__, "%s", err.message);
            return;
        }
        b = tlens_logits(full);
        c = tlens_logits(plain);
        for (i = 0; i < V; i++) {
            float lb = b->data[(size_t)(T - 1) * V + i];
            TT_CHECK_CLOSE(a->data[(size_t)(a->shape[1] - 1) * V + i], lb, 1e-4, 1e-4);
            differ += T - 1 >= first_edit && fabsf(lb - c->data[(size_t)(T - 1) * V + i]) > 1e-3f;
        }
        seq[T] = ts_argmax_last(b);
        if (s + 1 < steps && tlens_run_ex(kv, seq + T, 1, 1, &ro, &err)) {
            tt_fail_line(__FILE__, __LINE__, "%s", err.message);
            return;
        }
    }
    TT_CHECK(differ > 0);
}

/* Steering at resid_pre of layer 1, at positions of the prompt and of
 * generated tokens: each step with the key/value cache gives the logits of
 * a run of the whole sequence with the same steering, and tlens_generate
 * gives the same tokens with and without the cache. */
static void test_steer_generate_kv_equals_full(void) {
    tlens_model *m = ts_model(97, 32, 13);
    tlens_ctx *kv, *full, *plain;
    tlens_error err;
    tlens_generate_options go;
    int32_t seq[16] = {3, 14, 15, 92, 65}, gen_kv[10], gen_full[10];
    int pos[3] = {2, 6, 9}, steps = 10, i, n1, n2;
    float vec[32];
    TT_REQUIRE(m != NULL);
    ts_fill(vec, 32, 5);
    tlens_ctx_new(&kv, m, &err);
    tlens_ctx_new(&full, m, &err);
    tlens_ctx_new(&plain, m, &err);
    TT_REQUIRE(tlens_add_steering(kv, "blocks.1.hook_resid_pre", vec, 32, 6.0f, pos, 3, &err) > 0);
    TT_REQUIRE(tlens_add_steering(full, "blocks.1.hook_resid_pre", vec, 32, 6.0f, pos, 3, &err) > 0);
    ts_kv_steps(kv, full, plain, seq, 5, steps, 6); /* the edits at 6 and 9 are made to generated tokens */
    memset(&go, 0, sizeof go);
    go.max_new_tokens = steps;
    go.no_stop_at_eos = 1;
    TT_REQUIRE(tlens_generate(kv, seq, 5, &go, gen_kv, steps, &n1, &err) == TLENS_OK);
    go.no_kv_cache = 1;
    TT_REQUIRE(tlens_generate(full, seq, 5, &go, gen_full, steps, &n2, &err) == TLENS_OK);
    TT_CHECK_INT(n1, steps);
    TT_CHECK_INT(n2, steps);
    for (i = 0; i < steps; i++) {
        TT_CHECK_INT(gen_kv[i], seq[5 + i]);
        TT_CHECK_INT(gen_full[i], seq[5 + i]);
    }
    tlens_ctx_free(kv);
    tlens_ctx_free(full);
    tlens_ctx_free(plain);
    tlens_free(m);
}

/* ---- steering vectors ---- */

/* Prompts for the steering-vector tests: BOS first except the last
 * negative one, lengths 3 to 8. */
typedef struct ts_prompts {
    int32_t pos[64], neg[64];
    int pos_len[8], neg_len[8], n_pos, n_neg;
} ts_prompts;

static void ts_make_prompts(ts_prompts *pr, int n_pos, int n_neg, uint64_t seed) {
    int side, k, i, at;
    memset(pr, 0, sizeof *pr);
    pr->n_pos = n_pos;
    pr->n_neg = n_neg;
    for (side = 0; side < 2; side++)
        for (k = 0, at = 0; k < (side ? n_neg : n_pos); k++) {
            int len = 3 + (int)((ts_rand(&seed) + 1.0f) * 2.9f);
            int32_t *t = (side ? pr->neg : pr->pos) + at;
            for (i = 0; i < len; i++) t[i] = (int32_t)((ts_rand(&seed) + 1.0f) * 400.0f) + 10 * side;
            if (!(side && k == n_neg - 1)) t[0] = TLENS_EOT;
            (side ? pr->neg_len : pr->pos_len)[k] = len;
            at += len;
        }
}

/* One prompt's vector the naive way: run with the cache and average the
 * rows (from 1 when the prompt starts with BOS), or take the last. */
static void ts_naive_prompt(tlens_ctx *ctx, const char *name, const int32_t *tok, int len, int last, int include_bos,
                            int D, double *out) {
    tlens_error err;
    const tlens_tensor *a;
    int p, d, first = last ? len - 1 : (!include_bos && len > 1 && tok[0] == TLENS_EOT);
    for (d = 0; d < D; d++) out[d] = 0;
    if (tlens_run_with_cache(ctx, tok, 1, len, name, &err) != TLENS_OK || !(a = tlens_cache_get(ctx, name))) {
        tt_fail_line(__FILE__, __LINE__, "naive run of %s failed", name);
        return;
    }
    for (p = first; p < len; p++)
        for (d = 0; d < D; d++) out[d] += a->data[(size_t)p * D + d];
    for (d = 0; d < D; d++) out[d] /= len - first;
}

/* Every prompt's naive vector: acts (n_pos + n_neg, D). */
static void ts_naive_acts(tlens_ctx *ctx, const char *name, const ts_prompts *pr, int last, int include_bos, int D,
                          double *acts) {
    int k, at;
    for (k = 0, at = 0; k < pr->n_pos; at += pr->pos_len[k++])
        ts_naive_prompt(ctx, name, pr->pos + at, pr->pos_len[k], last, include_bos, D, acts + (size_t)k * D);
    for (k = 0, at = 0; k < pr->n_neg; at += pr->neg_len[k++])
        ts_naive_prompt(ctx, name, pr->neg + at, pr->neg_len[k], last, include_bos, D, acts + (size_t)(pr->n_pos + k) * D);
}

/* The mean difference equals one computed here from cached activations,
 * for every way of taking a prompt's vector and points before, inside and
 * after the blocks. */
static void test_steer_vector_mean_difference(void) {
    static const char *const names[] = {"blocks.1.hook_resid_pre", "hook_embed", "blocks.0.mlp.hook_post",
                                        "ln_final.hook_normalized", "blocks.2.hook_resid_post"};
    tlens_model *m = ts_model(50257, 16, 21); /* BOS (50256) is a token */
    tlens_ctx *ctx, *naive;
    tlens_error err;
    tlens_steer_options o;
    ts_prompts pr;
    double acts[7 * 32];
    float out[32];
    int which, mode, d, k;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    tlens_ctx_new(&naive, m, &err);
    ts_make_prompts(&pr, 4, 3, 77);
    for (which = 0; which < 5; which++)
        for (mode = 0; mode < 3; mode++) {
            int D = tlens_hook_last_dim(ctx, names[which]);
            TT_REQUIRE(D == 16 || D == 32);
            memset(&o, 0, sizeof o);
            o.last_token = mode == 1;
            o.include_bos = mode == 2;
            TT_REQUIRE(tlens_steering_vector(ctx, names[which], pr.pos, pr.pos_len, pr.n_pos, pr.neg, pr.neg_len,
                                             pr.n_neg, &o, out, D, &err) == TLENS_OK);
            ts_naive_acts(naive, names[which], &pr, o.last_token, o.include_bos, D, acts);
            for (d = 0; d < D; d++) {
                double mp = 0, mn = 0;
                for (k = 0; k < 4; k++) mp += acts[k * D + d] / 4;
                for (k = 0; k < 3; k++) mn += acts[(4 + k) * D + d] / 3;
                TT_CHECK_CLOSE(out[d], mp - mn, 1e-5, 1e-5);
            }
        }
    /* refused: a head-indexed point, the wrong length, pca without pairs, an optional point that is off */
    TT_CHECK_INT(tlens_steering_vector(ctx, "blocks.0.attn.hook_z", pr.pos, pr.pos_len, 4, pr.neg, pr.neg_len, 3, NULL,
                                       out, 4, &err), TLENS_ERR_ARG);
    TT_CHECK_INT(tlens_steering_vector(ctx, "blocks.0.hook_resid_pre", pr.pos, pr.pos_len, 4, pr.neg, pr.neg_len, 3, NULL,
                                       out, 15, &err), TLENS_ERR_SHAPE);
    o.pca = 1;
    TT_CHECK_INT(tlens_steering_vector(ctx, "blocks.0.hook_resid_pre", pr.pos, pr.pos_len, 4, pr.neg, pr.neg_len, 3, &o,
                                       out, 16, &err), TLENS_ERR_ARG);
    TT_CHECK_INT(tlens_steering_vector(ctx, "blocks.0.hook_mlp_in", pr.pos, pr.pos_len, 4, pr.neg, pr.neg_len, 3, NULL,
                                       out, 16, &err), TLENS_ERR_NOT_FOUND);
    TT_CHECK_INT(ctx->n_hooks, 0);
    tlens_ctx_free(ctx);
    tlens_ctx_free(naive);
    tlens_free(m);
}

/* Eigenvector of the largest eigenvalue of the symmetric (n, n) matrix a
 * (destroyed) by cyclic Jacobi rotations. */
static void ts_jacobi_top(double *a, int n, double *vec) {
    static double v[32 * 32];
    int i, j, k, sweep, best = 0;
    for (i = 0; i < n; i++)
        for (j = 0; j < n; j++) v[i * n + j] = i == j;
    for (sweep = 0; sweep < 100; sweep++) {
        double off = 0;
        for (i = 0; i < n; i++)
            for (j = i + 1; j < n; j++) off += a[i * n + j] * a[i * n + j];
        if (off < 1e-30) break;
        for (i = 0; i < n; i++)
            for (j = i + 1; j < n; j++) {
                double theta, t, c, s;
                if (fabs(a[i * n + j]) < 1e-300) continue;
                theta = (a[j * n + j] - a[i * n + i]) / (2 * a[i * n + j]);
                t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
                c = 1 / sqrt(t * t + 1);
                s = t * c;
                for (k = 0; k < n; k++) { /* columns i, j */
                    double ki = a[k * n + i], kj = a[k * n + j];
                    a[k * n + i] = c * ki - s * kj;
                    a[k * n + j] = s * ki + c * kj;
                }
                for (k = 0; k < n; k++) { /* rows i, j */
                    double ik = a[i * n + k], jk = a[j * n + k];
                    a[i * n + k] = c * ik - s * jk;
                    a[j * n + k] = s * ik + c * jk;
                }
                for (k = 0; k < n; k++) {
                    double ki = v[k * n + i], kj = v[k * n + j];
                    v[k * n + i] = c * ki - s * kj;
                    v[k * n + j] = s * ki + c * kj;
                }
            }
    }
    for (i = 1; i < n; i++)
        if (a[i * n + i] > a[best * n + best]) best = i;
    for (k = 0; k < n; k++) vec[k] = v[k * n + best];
}

/* The principal component is a unit vector equal (up to the sign, which
 * follows the mean difference) to the top eigenvector of the covariance
 * of the centred pair differences, computed here by Jacobi. */
static void test_steer_vector_pca(void) {
    tlens_model *m = ts_model(50257, 16, 22);
    tlens_ctx *ctx, *naive;
    tlens_error err;
    tlens_steer_options o;
    ts_prompts pr;
    double acts[12 * 16], diff[6 * 16], mean[16], cov[16 * 16], top[16], norm = 0, dot = 0, along = 0;
    float out[16];
    int mode, i, d, e, D = 16, n = 6;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    tlens_ctx_new(&naive, m, &err);
    ts_make_prompts(&pr, n, n, 99);
    for (mode = 0; mode < 2; mode++) {
        memset(&o, 0, sizeof o);
        o.pca = 1;
        o.last_token = mode;
        TT_REQUIRE(tlens_steering_vector(ctx, "blocks.1.hook_resid_post", pr.pos, pr.pos_len, n, pr.neg, pr.neg_len, n,
                                         &o, out, D, &err) == TLENS_OK);
        ts_naive_acts(naive, "blocks.1.hook_resid_post", &pr, mode, 0, D, acts);
        for (d = 0; d < D; d++) {
            mean[d] = 0;
            for (i = 0; i < n; i++) mean[d] += (diff[i * D + d] = acts[i * D + d] - acts[(n + i) * D + d]) / n;
        }
        for (d = 0; d < D; d++)
            for (e = 0; e < D; e++) {
                cov[d * D + e] = 0;
                for (i = 0; i < n; i++) cov[d * D + e] += (diff[i * D + d] - mean[d]) * (diff[i * D + e] - mean[e]) / n;
            }
        ts_jacobi_top(cov, D, top);
        for (d = 0, dot = 0, norm = 0, along = 0; d < D; d++) {
            dot += top[d] * mean[d];
            norm += (double)out[d] * out[d];
            along += out[d] * mean[d];
        }
        TT_CHECK_CLOSE(norm, 1.0, 1e-5, 0);
        TT_CHECK(along >= 0);
        for (d = 0; d < D; d++) TT_CHECK_CLOSE(out[d], dot < 0 ? -top[d] : top[d], 2e-4, 0);
    }
    ts_make_prompts(&pr, 1, 1, 5); /* one pair: nothing to take a component of */
    TT_CHECK_INT(tlens_steering_vector(ctx, "blocks.1.hook_resid_post", pr.pos, pr.pos_len, 1, pr.neg, pr.neg_len, 1, &o,
                                       out, D, &err), TLENS_ERR_ARG);
    tlens_ctx_free(ctx);
    tlens_ctx_free(naive);
    tlens_free(m);
}

/* ---- intervention files ---- */

/* The same edits written out by hand, index by index. kind 0: [b, p, D];
 * 1: [b, p, h, d]; 2: [b, h, q, k] (positions are queries). */
typedef struct ts_naive {
    int op;                 /* 0 zero, 1 mean, 2 scale, 3 add, 4 project_out, 5 replace */
    int kind, head;
    const int *positions;
    int n_positions;
    float factor;           /* scale; add: coef */
    const float *vec;       /* add: the vector; project_out: the direction as given */
    const float *src;       /* replace: [B, src_T, ...], keys src_T long */
    int src_T;
} ts_naive;

static size_t ts_index(const ts_naive *nv, int T, int H, int W, int b, int p, int h, int d) {
    if (nv->kind == 0) return ((size_t)b * T + p) * W + d;
    if (nv->kind == 1) return (((size_t)b * T + p) * H + h) * W + d;
    return (((size_t)b * H + h) * T + p) * W + d;
}

static int ts_naive_selects(const ts_naive *nv, int p, int h) {
    return (nv->head < 0 || h == nv->head) && (!nv->n_positions || ts_in(nv->positions, nv->n_positions, p));
}

static int ts_naive_hook(const char *name, int layer, tlens_tensor *t, void *user) {
    const ts_naive *nv = (const ts_naive *)user;
    int B = t->shape[0], T, H, W, b, p, h, d;
    (void)name;
    (void)layer;
    T = nv->kind == 2 ? t->shape[2] : t->shape[1];
    H = nv->kind == 0 ? 1 : nv->kind == 1 ? t->shape[2] : t->shape[1];
    W = t->shape[t->ndim - 1];
    if (nv->op == 1) { /* mean over batch and positions, per (head, d) */
        static double mean[4096];
        for (h = 0; h < H; h++)
            for (d = 0; d < W; d++) {
                double s = 0;
                for (b = 0; b < B; b++)
                    for (p = 0; p < T; p++) s += t->data[ts_index(nv, T, H, W, b, p, h, d)];
                mean[h * W + d] = s / (B * T);
            }
        for (b = 0; b < B; b++)
            for (p = 0; p < T; p++)
                for (h = 0; h < H; h++)
                    for (d = 0; d < W && ts_naive_selects(nv, p, h); d++)
                        t->data[ts_index(nv, T, H, W, b, p, h, d)] = (float)mean[h * W + d];
        return 0;
    }
    for (b = 0; b < B; b++)
        for (p = 0; p < T; p++)
            for (h = 0; h < H; h++) {
                double dot = 0, norm = 0;
                if (!ts_naive_selects(nv, p, h)) continue;
                for (d = 0; d < W && nv->op == 4; d++) {
                    dot += t->data[ts_index(nv, T, H, W, b, p, h, d)] * (double)nv->vec[d];
                    norm += (double)nv->vec[d] * nv->vec[d];
                }
                for (d = 0; d < W; d++) {
                    float *x = &t->data[ts_index(nv, T, H, W, b, p, h, d)];
                    if (nv->op == 0) *x = 0;
                    else if (nv->op == 2) *x *= nv->factor;
                    else if (nv->op == 3) *x += nv->factor * nv->vec[d];
                    else if (nv->op == 4) *x = (float)(*x - dot / norm * nv->vec[d]);
                    else if (nv->kind == 2) *x = nv->src[(((size_t)b * H + h) * nv->src_T + p) * nv->src_T + d];
                    else *x = nv->src[ts_index(nv, nv->src_T, H, W, b, p, h, d)];
                }
            }
    return 0;
}

/* Run tok [B, T] with the interventions of `json` and, in another
 * context, with the naive hook on `point`: the cached point and the
 * logits must agree, and the edit must have changed the point. */
static void ts_compare(tlens_model *m, const int32_t *tok, int B, int T, const char *json, const char *point,
                       const ts_naive *nv) {
    tlens_ctx *a, *b, *c;
    tlens_error err;
    tlens_interventions *iv = NULL;
    const tlens_tensor *pa, *pb, *pc, *la, *lb;
    size_t i, n;
    int changed = 0;
    tlens_ctx_new(&a, m, &err);
    tlens_ctx_new(&b, m, &err);
    tlens_ctx_new(&c, m, &err);
    if (tlens_interventions_parse(&iv, json, strlen(json), "case.json", NULL, NULL, &err) != TLENS_OK ||
        tlens_add_interventions(a, iv, NULL, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s: %s", json, err.message);
    } else {
        tlens_add_hook(b, point, ts_naive_hook, (void *)nv);
        tlens_cache_select(a, point);
        tlens_cache_select(b, point);
        tlens_cache_select(c, point);
        if (tlens_run(a, tok, B, T, &err) || tlens_run(b, tok, B, T, &err) || tlens_run(c, tok, B, T, &err)) {
            tt_fail_line(__FILE__, __LINE__, "%s: %s", json, err.message);
        } else {
            pa = tlens_cache_get(a, point);
            pb = tlens_cache_get(b, point);
            pc = tlens_cache_get(c, point);
            la = tlens_logits(a);
            lb = tlens_logits(b);
            n = tlens_tensor_numel(pa);
            for (i = 0; i < n; i++) {
                TT_CHECK_CLOSE(pa->data[i], pb->data[i], 1e-6, 1e-5);
                changed += !tt_close(pa->data[i], pc->data[i], 1e-6, 0);
            }
            for (i = 0; i < tlens_tensor_numel(la); i++) TT_CHECK_CLOSE(la->data[i], lb->data[i], 1e-5, 1e-5);
            if (!changed) tt_fail_line(__FILE__, __LINE__, "%s changed nothing", json);
        }
    }
    tlens_interventions_free(iv);
    tlens_ctx_free(a);
    tlens_ctx_free(b);
    tlens_ctx_free(c);
}

/* "v": [..] text of n values that JSON holds exactly (quarters). */
static void ts_quarters(float *v, int n, int seed, char *text, size_t cap) {
    size_t len = 0;
    int i;
    for (i = 0; i < n; i++) {
        v[i] = (float)(((i * 7 + seed) % 11) - 5) * 0.25f;
        len += (size_t)snprintf(text + len, cap - len, "%s%g", i ? ", " : "", v[i]);
    }
}

/* Every operation, with heads and positions, against the naive hook. */
static void test_interventions_ops(void) {
    static const int p13[2] = {1, 3}, p05[2] = {0, 5}, p2[1] = {2}, p04[2] = {0, 4}, p3[1] = {3}, p24[2] = {2, 4};
    tlens_model *m = ts_model(97, 32, 31);
    int32_t tok[2 * 6] = {5, 9, 17, 33, 2, 71, 8, 8, 40, 41, 90, 3};
    float v8[8], v32[32], src[2 * 6 * 32], pat[2 * 4 * 6 * 6];
    char json[2048], vt8[256], vt32[512];
    ts_naive nv;
    tlens_tensor st;
    tlens_error err;
    TT_REQUIRE(m != NULL);
    ts_quarters(v8, 8, 1, vt8, sizeof vt8);
    ts_quarters(v32, 32, 4, vt32, sizeof vt32);
    ts_fill(src, 2 * 6 * 32, 41);
    ts_fill(pat, 2 * 4 * 6 * 6, 42);
    st = tlens__tensor(src, 3, 2, 6, 32, 0);
    TT_REQUIRE(tlens_npy_save(TS_TMP "steer-src.npy", &st, &err) == TLENS_OK);
    st = tlens__tensor(pat, 4, 2, 4, 6, 6);
    TT_REQUIRE(tlens_npy_save(TS_TMP "steer-pat.npy", &st, &err) == TLENS_OK);
    st = tlens__tensor(v32, 1, 32, 0, 0, 0);
    TT_REQUIRE(tlens_npy_save(TS_TMP "steer-v32.npy", &st, &err) == TLENS_OK);
#define TS_NV(op_, kind_, head_, pos_, npos_, factor_, vec_, src_, srcT_) \
    do { nv.op = op_; nv.kind = kind_; nv.head = head_; nv.positions = pos_; nv.n_positions = npos_; \
         nv.factor = factor_; nv.vec = vec_; nv.src = src_; nv.src_T = srcT_; } while (0)
    TS_NV(0, 1, 2, p13, 2, 0, NULL, NULL, 0);
    ts_compare(m, tok, 2, 6, "[{\"hook\": \"blocks.1.attn.hook_z\", \"head\": 2, \"positions\": [1, 3], \"op\": \"zero\"}]",
               "blocks.1.attn.hook_z", &nv);
    TS_NV(1, 1, 1, NULL, 0, 0, NULL, NULL, 0);
    ts_compare(m, tok, 2, 6, "[{\"hook\": \"blocks.0.attn.hook_v\", \"head\": 1, \"op\": \"mean\"}]",
               "blocks.0.attn.hook_v", &nv);
    TS_NV(1, 0, -1, p05, 2, 0, NULL, NULL, 0);
    ts_compare(m, tok, 2, 6, "[{\"op\": \"mean\", \"positions\": [0, 5], \"hook\": \"blocks.1.hook_resid_mid\"}]",
               "blocks.1.hook_resid_mid", &nv);
    TS_NV(2, 0, -1, p2, 1, -0.5f, NULL, NULL, 0);
    ts_compare(m, tok, 2, 6, "[{\"hook\": \"blocks.1.hook_resid_mid\", \"positions\": [2], \"op\": \"scale\", \"factor\": -0.5}]",
               "blocks.1.hook_resid_mid", &nv);
    TS_NV(2, 2, 1, p24, 2, 0.5f, NULL, NULL, 0);
    ts_compare(m, tok, 2, 6,
               "[{\"hook\": \"blocks.0.attn.hook_attn_scores\", \"head\": 1, \"positions\": [2, 4], \"op\": \"scale\", "
               "\"factor\": 0.5}]", "blocks.0.attn.hook_attn_scores", &nv);
    TS_NV(3, 1, 3, NULL, 0, 2.0f, v8, NULL, 0);
    snprintf(json, sizeof json, "[{\"hook\": \"blocks.0.attn.hook_z\", \"head\": 3, \"op\": \"add\", \"vector\": [%s], \"coef\": 2}]", vt8);
    ts_compare(m, tok, 2, 6, json, "blocks.0.attn.hook_z", &nv);
    TS_NV(3, 0, -1, p13, 2, 1.0f, v32, NULL, 0);
    snprintf(json, sizeof json, "[{\"hook\": \"blocks.2.hook_mlp_out\", \"positions\": [1, 3], \"op\": \"add\", \"vector\": [%s]}]", vt32);
    ts_compare(m, tok, 2, 6, json, "blocks.2.hook_mlp_out", &nv);
    TS_NV(4, 0, -1, NULL, 0, 0, v32, NULL, 0);
    snprintf(json, sizeof json, "[{\"hook\": \"blocks.1.hook_resid_post\", \"op\": \"project_out\", \"direction\": [%s]}]", vt32);
    ts_compare(m, tok, 2, 6, json, "blocks.1.hook_resid_post", &nv);
    TS_NV(4, 0, -1, p3, 1, 0, v32, NULL, 0);
    ts_compare(m, tok, 2, 6, "[{\"hook\": \"blocks.0.hook_attn_out\", \"op\": \"project_out\", \"positions\": [3], \"file\": \""
               TS_TMP "steer-v32.npy\"}]", "blocks.0.hook_attn_out", &nv);
    TS_NV(5, 0, -1, p04, 2, 0, NULL, src, 6);
    ts_compare(m, tok, 2, 6, "[{\"hook\": \"blocks.0.hook_mlp_out\", \"positions\": [0, 4], \"op\": \"replace\", \"file\": \""
               TS_TMP "steer-src.npy\"}]", "blocks.0.hook_mlp_out", &nv);
    TS_NV(5, 2, 0, p3, 1, 0, NULL, pat, 6);
    ts_compare(m, tok, 2, 6, "[{\"hook\": \"blocks.1.attn.hook_pattern\", \"head\": 0, \"positions\": [3], \"op\": \"replace\", "
               "\"file\": \"" TS_TMP "steer-pat.npy\"}]", "blocks.1.attn.hook_pattern", &nv);
    /* a shorter run takes the first positions of the source */
    TS_NV(5, 0, -1, NULL, 0, 0, NULL, src, 6);
    ts_compare(m, tok, 2, 4, "[{\"hook\": \"blocks.2.hook_resid_pre\", \"op\": \"replace\", \"file\": \""
               TS_TMP "steer-src.npy\"}]", "blocks.2.hook_resid_pre", &nv);
#undef TS_NV
    tlens_free(m);
}

/* Two entries on one point compose in the file's order; a glob edits
 * every point it matches; the same file gives the same logits, bit for
 * bit, in a fresh context. */
static void test_interventions_order_and_determinism(void) {
    tlens_model *m = ts_model(97, 32, 32);
    tlens_ctx *ctx[3];
    tlens_error err;
    tlens_interventions *iv[3];
    int32_t tok[5] = {1, 2, 3, 4, 5};
    float v[32], *base, *l0;
    char vt[512], json[3][1400];
    const tlens_tensor *a;
    int k, i, D = 32;
    TT_REQUIRE(m != NULL);
    ts_quarters(v, 32, 3, vt, sizeof vt);
    snprintf(json[0], sizeof json[0], "[{\"hook\": \"blocks.0.hook_resid_mid\", \"op\": \"scale\", \"factor\": 2},"
             " {\"hook\": \"blocks.0.hook_resid_mid\", \"op\": \"add\", \"vector\": [%s]}]", vt);
    snprintf(json[1], sizeof json[1], "[{\"hook\": \"blocks.0.hook_resid_mid\", \"op\": \"add\", \"vector\": [%s]},"
             " {\"hook\": \"blocks.0.hook_resid_mid\", \"op\": \"scale\", \"factor\": 2}]", vt);
    memcpy(json[2], json[0], sizeof json[0]);
    tlens_ctx_new(&ctx[0], m, &err);
    tlens_cache_select(ctx[0], "blocks.0.hook_resid_mid");
    TT_REQUIRE(tlens_run(ctx[0], tok, 1, 5, &err) == TLENS_OK);
    base = ts_copy(tlens_cache_act(ctx[0], "resid_mid", 0, NULL));
    tlens_ctx_free(ctx[0]);
    for (k = 0; k < 3; k++) {
        tlens_ctx_new(&ctx[k], m, &err);
        tlens_cache_select(ctx[k], "blocks.0.hook_resid_mid");
        TT_REQUIRE(tlens_interventions_parse(&iv[k], json[k], strlen(json[k]), "order.json", NULL, NULL, &err) == TLENS_OK);
        TT_CHECK_INT(tlens_interventions_count(iv[k]), 2);
        TT_REQUIRE(tlens_add_interventions(ctx[k], iv[k], NULL, &err) == TLENS_OK);
        tlens_interventions_free(iv[k]);
        TT_REQUIRE(tlens_run(ctx[k], tok, 1, 5, &err) == TLENS_OK);
        a = tlens_cache_act(ctx[k], "resid_mid", 0, NULL);
        for (i = 0; i < 5 * D; i++) /* scale then add: 2x + v; add then scale: 2(x + v) */
            TT_CHECK_CLOSE(a->data[i], k == 1 ? 2 * (base[i] + v[i % D]) : 2 * base[i] + v[i % D], 1e-6, 1e-6);
    }
    l0 = tlens_logits(ctx[0])->data;
    TT_CHECK(memcmp(l0, tlens_logits(ctx[2])->data, 5 * 97 * sizeof(float)) == 0);
    TT_CHECK(memcmp(l0, tlens_logits(ctx[1])->data, 5 * 97 * sizeof(float)) != 0);
    for (k = 0; k < 3; k++) tlens_ctx_free(ctx[k]);
    free(base);
    tlens_free(m);
}

/* One parse or add error: the code, and a message naming the file (and,
 * when given, the entry and the key). */
typedef struct ts_bad {
    const char *json;
    tlens_result code;
    const char *entry, *key;    /* substrings of the message, or NULL */
    int at_add;                 /* the error comes when the entries are added */
} ts_bad;

static void test_interventions_errors(void) {
    static const ts_bad cases[] = {
        {"{\"hook\": \"hook_embed\", \"op\": \"zero\"}", TLENS_ERR_FORMAT, NULL, "array", 0},
        {"[{\"hook\": }]", TLENS_ERR_FORMAT, NULL, "bad JSON", 0},
        {"[1]", TLENS_ERR_FORMAT, "entry 0", "object", 0},
        {"[{\"hook\": \"hook_embed\", \"op\": \"zero\", \"colour\": 1}]", TLENS_ERR_FORMAT, "entry 0", "\"colour\"", 0},
        {"[{\"hook\": \"hook_embed\", \"op\": \"zero\"}, {\"hook\": \"hook_embed\", \"op\": \"explode\"}]", TLENS_ERR_FORMAT,
         "entry 1", "\"explode\"", 0},
        {"[{\"hook\": \"hook_embed\"}]", TLENS_ERR_MISSING, "entry 0", "\"op\"", 0},
        {"[{\"op\": \"zero\"}]", TLENS_ERR_MISSING, "entry 0", "\"hook\"", 0},
        {"[{\"op\": \"zero\", \"hook\": 3}]", TLENS_ERR_FORMAT, "entry 0", "\"hook\"", 0},
        {"[{\"op\": 7, \"hook\": \"hook_embed\"}]", TLENS_ERR_FORMAT, "entry 0", "\"op\"", 0},
        {"[{\"op\": \"zero\", \"op\": \"zero\", \"hook\": \"hook_embed\"}]", TLENS_ERR_FORMAT, "entry 0", "\"op\" appears twice", 0},
        {"[{\"op\": \"scale\", \"hook\": \"hook_embed\", \"factor\": \"2\"}]", TLENS_ERR_FORMAT, "entry 0", "\"factor\"", 0},
        {"[{\"op\": \"scale\", \"hook\": \"hook_embed\"}]", TLENS_ERR_MISSING, "entry 0", "\"factor\"", 0},
        {"[{\"op\": \"zero\", \"hook\": \"hook_embed\", \"factor\": 2}]", TLENS_ERR_FORMAT, "entry 0", "\"factor\"", 0},
        {"[{\"op\": \"add\", \"hook\": \"hook_embed\", \"coef\": true, \"vector\": [1]}]", TLENS_ERR_FORMAT, "entry 0", "\"coef\"", 0},
        {"[{\"op\": \"zero\", \"hook\": \"blocks.0.attn.hook_z\", \"head\": -1}]", TLENS_ERR_FORMAT, "entry 0", "\"head\"", 0},
        {"[{\"op\": \"zero\", \"hook\": \"blocks.0.attn.hook_z\", \"head\": 1.5}]", TLENS_ERR_FORMAT, "entry 0", "\"head\"", 0},
        {"[{\"op\": \"zero\", \"hook\": \"hook_embed\", \"positions\": [1, \"2\"]}]", TLENS_ERR_FORMAT, "entry 0", "\"positions\"", 0},
        {"[{\"op\": \"zero\", \"hook\": \"hook_embed\", \"positions\": []}]", TLENS_ERR_FORMAT, "entry 0", "\"positions\"", 0},
        {"[{\"op\": \"zero\", \"hook\": \"hook_embed\", \"positions\": 3}]", TLENS_ERR_FORMAT, "entry 0", "\"positions\"", 0},
        {"[{\"op\": \"add\", \"hook\": \"hook_embed\", \"vector\": [1, \"a\"]}]", TLENS_ERR_FORMAT, "entry 0", "\"vector\"", 0},
        {"[{\"op\": \"add\", \"hook\": \"hook_embed\", \"vector\": [1e999]}]", TLENS_ERR_FORMAT, "entry 0", "\"vector\"", 0},
        {"[{\"op\": \"add\", \"hook\": \"hook_embed\"}]", TLENS_ERR_MISSING, "entry 0", "\"vector\"", 0},
        {"[{\"op\": \"add\", \"hook\": \"hook_embed\", \"vector\": [1], \"file\": \"x.npy\"}]", TLENS_ERR_FORMAT, "entry 0",
         "\"vector\" or \"file\"", 0},
        {"[{\"op\": \"project_out\", \"hook\": \"hook_embed\", \"direction\": [0, 0]}]", TLENS_ERR_ARG, "entry 0", "\"direction\"", 0},
        {"[{\"op\": \"project_out\", \"hook\": \"hook_embed\", \"vector\": [1]}]", TLENS_ERR_FORMAT, "entry 0", "\"vector\"", 0},
        {"[{\"op\": \"replace\", \"hook\": \"hook_embed\"}]", TLENS_ERR_MISSING, "entry 0", "\"file\"", 0},
        {"[{\"op\": \"replace\", \"hook\": \"hook_embed\", \"file\": \"" TS_TMP "steer-nope.npy\"}]", TLENS_ERR_IO, "entry 0",
         "\"file\": cannot open " TS_TMP "steer-nope.npy", 0},
        {"[{\"op\": \"add\", \"hook\": \"hook_embed\", \"file\": \"" TS_TMP "steer-src.npy\"}]", TLENS_ERR_SHAPE, "entry 0",
         "\"file\"", 0},
        {"[{\"op\": \"zero\", \"hook\": \"hook_embed\"}, {\"op\": \"zero\", \"hook\": \"blocks.7.hook_resid_pre\"}]",
         TLENS_ERR_NOT_FOUND, "entry 1", "\"hook\"", 1},
        {"[{\"op\": \"zero\", \"hook\": \"hook_embed\"}, {\"op\": \"add\", \"hook\": \"blocks.0.hook_resid_pre\", \"vector\": [1, 2]}]",
         TLENS_ERR_SHAPE, "entry 1", "\"vector\": 2 values", 1},
        {"[{\"op\": \"zero\", \"hook\": \"blocks.0.attn.hook_z\", \"head\": 9}]", TLENS_ERR_ARG, "entry 0", "\"head\"", 1},
        {"[{\"op\": \"zero\", \"hook\": \"blocks.0.hook_resid_pre\", \"head\": 1}]", TLENS_ERR_ARG, "entry 0", "\"head\"", 1},
        {"[{\"op\": \"zero\", \"hook\": \"blocks.0.hook_resid_pre\", \"positions\": [100]}]", TLENS_ERR_ARG, "entry 0",
         "\"positions\"", 1},
        {"[{\"op\": \"add\", \"hook\": \"blocks.0.attn.hook_pattern\", \"vector\": [1]}]", TLENS_ERR_ARG, "entry 0", "\"hook\"", 1},
        {"[{\"op\": \"replace\", \"hook\": \"blocks.0.attn.hook_z\", \"file\": \"" TS_TMP "steer-src.npy\"}]", TLENS_ERR_SHAPE,
         "entry 0", "\"file\": shape [2, 6, 32]", 1},
        {"[{\"op\": \"replace\", \"hook\": \"blocks.0.hook_resid_pre\", \"positions\": [6], \"file\": \"" TS_TMP "steer-src.npy\"}]",
         TLENS_ERR_SHAPE, "entry 0", "\"positions\"", 1},
    };
    static const char batch2[] = "[{\"op\": \"replace\", \"hook\": \"blocks.0.hook_resid_pre\", \"file\": \""
                                 TS_TMP "steer-src.npy\"}]";
    tlens_model *m = ts_model(97, 32, 33);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_interventions *iv;
    size_t i;
    float src[2 * 6 * 32];
    int32_t tok[3] = {1, 2, 3};
    tlens_tensor st;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    ts_fill(src, 2 * 6 * 32, 41);
    st = tlens__tensor(src, 3, 2, 6, 32, 0);
    TT_REQUIRE(tlens_npy_save(TS_TMP "steer-src.npy", &st, &err) == TLENS_OK);
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const ts_bad *c = &cases[i];
        tlens_result r = tlens_interventions_parse(&iv, c->json, strlen(c->json), "exp.json", NULL, NULL, &err);
        if (c->at_add) {
            if (r != TLENS_OK) {
                tt_fail_line(__FILE__, __LINE__, "case %d parse: %s", (int)i, err.message);
                continue;
            }
            r = tlens_add_interventions(ctx, iv, NULL, &err);
            tlens_interventions_free(iv);
            TT_CHECK_INT(ctx->n_hooks, 0); /* nothing stays added */
        } else {
            TT_CHECK(iv == NULL);
        }
        if (r != c->code || !strstr(err.message, "exp.json") || (c->entry && !strstr(err.message, c->entry)) ||
            (c->key && !strstr(err.message, c->key)))
            tt_fail_line(__FILE__, __LINE__, "case %d: code %d, want %d: %s", (int)i, (int)r, (int)c->code, err.message);
    }
    /* the source's batch must be the run's */
    TT_REQUIRE(tlens_interventions_parse(&iv, batch2, strlen(batch2), "exp.json", NULL, NULL, &err) == TLENS_OK);
    TT_REQUIRE(tlens_add_interventions(ctx, iv, NULL, &err) == TLENS_OK);
    tlens_interventions_free(iv);
    TT_CHECK_INT(tlens_run(ctx, tok, 1, 3, &err), TLENS_ERR_SHAPE);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* An intervention file (relative "file" paths from its own folder) with
 * replace, add and scale at prompt and generated positions: cached
 * generation gives what runs of the whole sequence give, and
 * tlens_generate the same tokens with and without the cache. */
static void test_interventions_generate(void) {
    static const char json[] =
        "[{\"hook\": \"blocks.1.hook_resid_mid\", \"op\": \"replace\", \"positions\": [3, 7], \"file\": \"steer-mid.npy\"},\n"
        " {\"hook\": \"blocks.0.hook_resid_post\", \"op\": \"add\", \"file\": \"steer-gv.npy\", \"coef\": 3,"
        " \"positions\": [6, 8, 10]},\n"
        " {\"hook\": \"blocks.2.attn.hook_z\", \"head\": 1, \"op\": \"scale\", \"factor\": -2, \"positions\": [9]}]\n";
    tlens_model *m = ts_model(97, 32, 34);
    tlens_ctx *kv, *full, *plain;
    tlens_error err;
    tlens_interventions *iv;
    tlens_generate_options go;
    tlens_tensor t;
    int32_t other[13] = {7, 7, 1, 80, 3, 5, 60, 2, 9, 11, 13, 40, 6}, seq[16] = {3, 14, 15, 92, 65}, a[8], b[8];
    float v[32];
    int n1, n2, i;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&kv, m, &err);
    tlens_ctx_new(&full, m, &err);
    tlens_ctx_new(&plain, m, &err);
    tlens_cache_select(plain, "blocks.1.hook_resid_mid");
    TT_REQUIRE(tlens_run(plain, other, 1, 13, &err) == TLENS_OK);
    TT_REQUIRE(tlens_npy_save(TS_TMP "steer-mid.npy", tlens_cache_act(plain, "resid_mid", 1, NULL), &err) == TLENS_OK);
    tlens_cache_clear(plain);
    ts_fill(v, 32, 8);
    t = tlens__tensor(v, 1, 32, 0, 0, 0);
    TT_REQUIRE(tlens_npy_save(TS_TMP "steer-gv.npy", &t, &err) == TLENS_OK);
    TT_REQUIRE(tu_write_file(TS_TMP "steer-gen.json", json, strlen(json)));
    TT_REQUIRE(tlens_interventions_load(&iv, TS_TMP "steer-gen.json", NULL, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_interventions_count(iv), 3);
    TT_REQUIRE(tlens_add_interventions(kv, iv, NULL, &err) == TLENS_OK);
    TT_REQUIRE(tlens_add_interventions(full, iv, NULL, &err) == TLENS_OK);
    tlens_interventions_free(iv);
    ts_kv_steps(kv, full, plain, seq, 5, 8, 6);
    memset(&go, 0, sizeof go);
    go.max_new_tokens = 8;
    go.no_stop_at_eos = 1;
    TT_REQUIRE(tlens_generate(kv, seq, 5, &go, a, 8, &n1, &err) == TLENS_OK);
    go.no_kv_cache = 1;
    TT_REQUIRE(tlens_generate(full, seq, 5, &go, b, 8, &n2, &err) == TLENS_OK);
    TT_CHECK_INT(n1, 8);
    TT_CHECK_INT(n2, 8);
    for (i = 0; i < 8; i++) {
        TT_CHECK_INT(a[i], seq[5 + i]);
        TT_CHECK_INT(b[i], seq[5 + i]);
    }
    tlens_ctx_free(kv);
    tlens_ctx_free(full);
    tlens_ctx_free(plain);
    tlens_free(m);
}

/* ---- the command-line tool ---- */

/* Run ./build/tlens with printf'd arguments; *out gets stdout and stderr.
 * Returns the exit status (non-zero: failed). */
static int ts_cli(char **out, const char *fmt, ...) {
    char cmd[4096];
    size_t len, cap = 1 << 16;
    FILE *p;
    va_list ap;
    *out = (char *)calloc(cap, 1);
    len = (size_t)snprintf(cmd, sizeof cmd, "./build/tlens ");
    va_start(ap, fmt);
    vsnprintf(cmd + len, sizeof cmd - len, fmt, ap);
    va_end(ap);
    strncat(cmd, " 2>&1", sizeof cmd - strlen(cmd) - 1);
    if (!*out || !(p = tx_popen(cmd, "r"))) return -1;
    len = fread(*out, 1, cap - 1, p);
    (*out)[len] = 0;
    return tx_pclose(p);
}

/* The prompts of a text (one a line, blank lines skipped) encoded with
 * BOS, as tlens steer-vector reads a file. */
static int ts_encode_lines(const tlens_tokenizer *tok, const char *text, int32_t *ids, int *lens) {
    int n = 0, at = 0;
    while (*text) {
        size_t line = strcspn(text, "\n"), count = 0, len = line;
        if (len && text[len - 1] == '\r') len--;
        if (len && tlens_encode(tok, text, len, 1, ids + at, 256, &count, NULL) == TLENS_OK) {
            lens[n++] = (int)count;
            at += (int)count;
        }
        text += line + (text[line] == '\n');
    }
    return n;
}

/* A [1, n] float .npy written by the tool, compared with the library's. */
static void ts_check_npy(const char *path, const float *want, size_t n, double tol) {
    tlens_tensor t;
    tlens_error err;
    size_t i;
    if (tlens_npy_load(path, &t, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s", err.message);
        return;
    }
    if (tlens_tensor_numel(&t) != n) tt_fail_line(__FILE__, __LINE__, "%s: %d values, want %d", path, (int)tlens_tensor_numel(&t), (int)n);
    else
        for (i = 0; i < n; i++) TT_CHECK_CLOSE(t.data[i], want[i], tol, tol);
    tlens_tensor_free(&t);
}

#define TS_MODEL TS_TMP "steer-model.tlens"
#define TS_MODEL_ADD TS_TMP "steer-model-add.tlens"

/* steer-vector from text files (CRLF and blank lines too), plain and with
 * --pca --last-token, against tlens_steering_vector on the same ids. */
static void test_cli_steer_vector(void) {
    static const char pos_text[] = "I love this\nWhat a wonderful day\r\n\nGreat work, thanks\nSo happy\n";
    static const char neg_text[] = "I hate this\nWhat an awful day\nTerrible work, sadly\nSo angry";
    tlens_model *m;
    tlens_ctx *ctx;
    tlens_tokenizer *tok;
    tlens_error err;
    tlens_steer_options o;
    int32_t pos[1024], neg[1024];
    int pos_len[8], neg_len[8], n_pos, n_neg, mode;
    float want[16];
    char *out = NULL;
    if (!tx_have("tlens")) TT_SKIP("build/tlens is not built");
    m = ts_model(50257, 16, 51);
    TT_REQUIRE(m != NULL);
    TT_REQUIRE(tlens_save(m, TS_MODEL, &err) == TLENS_OK);
    TT_REQUIRE(tlens_tokenizer_load(&tok, "tokenizer", NULL, &err) == TLENS_OK);
    TT_REQUIRE(tu_write_file(TS_TMP "steer-pos.txt", pos_text, strlen(pos_text)));
    TT_REQUIRE(tu_write_file(TS_TMP "steer-neg.txt", neg_text, strlen(neg_text)));
    n_pos = ts_encode_lines(tok, pos_text, pos, pos_len);
    n_neg = ts_encode_lines(tok, neg_text, neg, neg_len);
    TT_CHECK_INT(n_pos, 4);
    TT_CHECK_INT(n_neg, 4);
    tlens_ctx_new(&ctx, m, &err);
    for (mode = 0; mode < 2; mode++) {
        memset(&o, 0, sizeof o);
        o.pca = o.last_token = mode;
        TT_REQUIRE(tlens_steering_vector(ctx, "blocks.1.hook_resid_pre", pos, pos_len, n_pos, neg, neg_len, n_neg, &o,
                                         want, 16, &err) == TLENS_OK);
        if (ts_cli(&out, "steer-vector " TS_MODEL " --positive " TS_TMP "steer-pos.txt --negative " TS_TMP
                   "steer-neg.txt --hook blocks.1.hook_resid_pre -o " TS_TMP "steer-cli-v.npy%s",
                   mode ? " --pca --last-token" : "")) {
            tt_fail_line(__FILE__, __LINE__, "steer-vector failed: %s", out);
        } else {
            TT_CHECK(strstr(out, "steering vector [16] at blocks.1.hook_resid_pre") != NULL);
            ts_check_npy(TS_TMP "steer-cli-v.npy", want, 16, 1e-6);
        }
        free(out);
    }
    TT_CHECK(ts_cli(&out, "steer-vector " TS_MODEL " --positive " TS_TMP "steer-pos.txt --negative " TS_TMP
                    "steer-neg.txt --hook blocks.1.attn.hook_z -o " TS_TMP "steer-cli-bad.npy") != 0);
    TT_CHECK(strstr(out, "blocks.1.attn.hook_z") != NULL);
    free(out);
    tlens_tokenizer_free(tok);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* run and generate with --add and --interventions against the library;
 * a bad file names the entry and the key. */
static void test_cli_add_and_interventions(void) {
    static const char json[] =
        "[{\"hook\": \"blocks.0.attn.hook_z\", \"head\": 1, \"op\": \"zero\"},\n"
        " {\"hook\": \"blocks.2.hook_resid_pre\", \"op\": \"add\", \"file\": \"steer-cli-add.npy\", \"coef\": -2,"
        " \"positions\": [2]}]\n";
    static const char bad[] = "[{\"hook\": \"hook_embed\", \"op\": \"zero\"}, {\"hook\": \"hook_embed\", \"op\": \"zero\", \"gain\": 2}]";
    tlens_model *m = NULL;
    tlens_ctx *ctx;
    tlens_error err;
    tlens_tensor v;
    tlens_interventions *iv;
    tlens_generate_options go;
    int32_t tok[5] = {50256, 40, 1842, 428, 3}, gen[6];
    int pos[2] = {1, 2}, n, i, got[16], n_got = 0;
    char *out = NULL, *p;
    float vec[16];
    if (!tx_have("tlens")) TT_SKIP("build/tlens is not built");
    m = ts_model(50257, 16, 52);
    TT_REQUIRE(m != NULL);
    TT_REQUIRE(tlens_save(m, TS_MODEL_ADD, &err) == TLENS_OK);
    ts_fill(vec, 16, 9);
    v = tlens__tensor(vec, 1, 16, 0, 0, 0);
    TT_REQUIRE(tlens_npy_save(TS_TMP "steer-cli-add.npy", &v, &err) == TLENS_OK);
    TT_REQUIRE(tu_write_file(TS_TMP "steer-cli.json", json, strlen(json)));
    TT_REQUIRE(tu_write_file(TS_TMP "steer-bad.json", bad, strlen(bad)));
    /* run --add, at positions 1 and 2, 3 times */
    tlens_ctx_new(&ctx, m, &err);
    tlens_cache_select(ctx, "blocks.1.hook_resid_pre");
    TT_REQUIRE(tlens_add_steering(ctx, "blocks.1.hook_resid_pre", v.data, 16, 3.0f, pos, 2, &err) > 0);
    TT_REQUIRE(tlens_run(ctx, tok, 1, 5, &err) == TLENS_OK);
    if (ts_cli(&out, "run " TS_MODEL_ADD " --tokens \"50256 40 1842 428 3\" --add 'blocks.1.hook_resid_pre=" TS_TMP
               "steer-cli-add.npy*3@1,2' --cache blocks.1.hook_resid_pre --npy " TS_TMP "steer-npy"))
        tt_fail_line(__FILE__, __LINE__, "run --add failed: %s", out);
    ts_check_npy(TS_TMP "steer-npy/blocks.1.hook_resid_pre.npy", tlens_cache_act(ctx, "resid_pre", 1, NULL)->data, 5 * 16, 1e-6);
    ts_check_npy(TS_TMP "steer-npy/logits.npy", tlens_logits(ctx)->data, 5 * 50257, 1e-5);
    free(out);
    /* generate --add: the same steering at positions of generated tokens */
    tlens_reset_hooks(ctx);
    pos[0] = 3;
    pos[1] = 5;
    TT_REQUIRE(tlens_add_steering(ctx, "blocks.1.hook_resid_pre", v.data, 16, 4.0f, pos, 2, &err) > 0);
    memset(&go, 0, sizeof go);
    go.max_new_tokens = 6;
    TT_REQUIRE(tlens_generate(ctx, tok, 3, &go, gen, 6, &n, &err) == TLENS_OK);
    if (ts_cli(&out, "generate " TS_MODEL_ADD " --tokens \"50256 40 1842\" -n 6 --print-ids --add 'blocks.1.hook_resid_pre="
               TS_TMP "steer-cli-add.npy*4@3,5'"))
        tt_fail_line(__FILE__, __LINE__, "generate --add failed: %s", out);
    for (p = out; n_got < 16;) {
        char *end;
        long id = strtol(p, &end, 10);
        if (end == p) break;
        got[n_got++] = (int)id;
        p = end;
    }
    TT_CHECK_INT(n_got, 3 + n);
    for (i = 0; i < n && i + 3 < n_got; i++) TT_CHECK_INT(got[3 + i], gen[i]);
    free(out);
    /* run --interventions, its "file" next to it */
    tlens_reset_hooks(ctx);
    TT_REQUIRE(tlens_interventions_load(&iv, TS_TMP "steer-cli.json", NULL, &err) == TLENS_OK);
    TT_REQUIRE(tlens_add_interventions(ctx, iv, NULL, &err) == TLENS_OK);
    tlens_interventions_free(iv);
    TT_REQUIRE(tlens_run(ctx, tok, 1, 5, &err) == TLENS_OK);
    if (ts_cli(&out, "run " TS_MODEL_ADD " --tokens \"50256 40 1842 428 3\" --interventions " TS_TMP "steer-cli.json --npy "
               TS_TMP "steer-npy"))
        tt_fail_line(__FILE__, __LINE__, "run --interventions failed: %s", out);
    ts_check_npy(TS_TMP "steer-npy/logits.npy", tlens_logits(ctx)->data, 5 * 50257, 1e-5);
    free(out);
    /* errors */
    TT_CHECK(ts_cli(&out, "run " TS_MODEL_ADD " --tokens \"1 2\" --interventions " TS_TMP "steer-bad.json") != 0);
    TT_CHECK(strstr(out, "steer-bad.json: entry 1: unknown key \"gain\"") != NULL);
    free(out);
    TT_CHECK(ts_cli(&out, "run " TS_MODEL_ADD " --tokens \"1 2\" --add blocks.0.attn.hook_z=" TS_TMP "steer-cli-add.npy") != 0);
    TT_CHECK(strstr(out, "blocks.0.attn.hook_z") != NULL);
    free(out);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

void tests_steer(void) {
    TT_RUN(test_steer_adds_coef_vec);
    TT_RUN(test_steer_errors);
    TT_RUN(test_steer_generate_kv_equals_full);
    TT_RUN(test_steer_vector_mean_difference);
    TT_RUN(test_steer_vector_pca);
    TT_RUN(test_interventions_ops);
    TT_RUN(test_interventions_order_and_determinism);
    TT_RUN(test_interventions_errors);
    TT_RUN(test_interventions_generate);
    TT_RUN(test_cli_steer_vector);
    TT_RUN(test_cli_add_and_interventions);
}
