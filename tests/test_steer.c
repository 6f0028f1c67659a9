/* Steering against independent computations: it adds exactly coef * vec
 * where it should (cached activations with and without), and steering
 * during cached generation gives the logits of runs of the whole
 * sequence.
 *
 * Included from test_main.c. Everything is prefixed ts_.
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

void tests_steer(void) {
    TT_RUN(test_steer_adds_coef_vec);
    TT_RUN(test_steer_errors);
    TT_RUN(test_steer_generate_kv_equals_full);
}
