/* Running: key/value cache, left padding, and hooks that read and write. */

static tlens_model *run_load_mid(int raw) {
    tlens_load_options opt;
    tlens_model *m = NULL;
    tlens_error err;
    memset(&opt, 0, sizeof opt);
    opt.raw = raw;
    if (tlens_load(&m, REF_DIR "mid/model", &opt, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    return m;
}

static int32_t *run_tokens(int *n) {
    int rows, cols;
    int32_t *t = tu_read_npy_tokens(REF_DIR "mid/tokens.npy", &rows, &cols);
    *n = rows * cols;
    return t;
}

/* Running a sequence piece by piece with the key/value cache gives the
 * logits of running it whole. */
static void test_kv_cache_matches_full_run(void) {
    tlens_model *m = run_load_mid(0);
    tlens_ctx *full, *inc;
    tlens_error err;
    tlens_run_options ro;
    int n, V, t, i;
    int32_t *tok = run_tokens(&n);
    float *ref;
    TT_REQUIRE(m && tok);
    n = 24;
    tlens_ctx_new(&full, m, &err);
    tlens_ctx_new(&inc, m, &err);
    TT_REQUIRE(tlens_run(full, tok, 1, n, &err) == TLENS_OK);
    V = tlens_logits(full)->shape[2];
    ref = tlens_logits(full)->data;
    memset(&ro, 0, sizeof ro);
    ro.use_kv_cache = 1;
    TT_REQUIRE(tlens_run_ex(inc, tok, 1, 5, &ro, &err) == TLENS_OK);
    for (i = 0; i < 5 * V; i++) TT_CHECK_CLOSE(tlens_logits(inc)->data[i], ref[i], 1e-4, 1e-4);
    for (t = 5; t < n; t++) {
        TT_REQUIRE(tlens_run_ex(inc, tok + t, 1, 1, &ro, &err) == TLENS_OK);
        TT_CHECK_INT(tlens_kv_length(inc), t + 1);
        for (i = 0; i < V; i++) TT_CHECK_CLOSE(tlens_logits(inc)->data[i], ref[(size_t)t * (size_t)V + (size_t)i], 1e-4, 1e-4);
    }
    tlens_ctx_free(full);
    tlens_ctx_free(inc);
    tlens_free(m);
    free(tok);
}

/* The cache keeps its keys packed for attention and packs only new ones:
 * after a reset a new sequence must not see the old one's keys, and runs
 * of any length, across the 32-key panels, must give the logits of one
 * run of the whole sequence. Random models with a context of 96: a
 * narrow one, whose short runs stay on one thread, and a wider one (8
 * heads of 32) whose one-token runs split the heads, each packing its
 * own new keys, over the threads. */
static void kv_chunks_check(int d_model, int n_heads) {
    static const int chunks_a[3] = {7, 1, 40}, chunks_b[6] = {33, 1, 30, 1, 1, 9};
    tlens_config cfg;
    tlens_model *m = NULL;
    tlens_ctx *full, *inc;
    tlens_error err;
    tlens_run_options ro;
    int32_t a[48], b[75];
    int V = 61, i, k, at = 0;
    float *ref;
    memset(&cfg, 0, sizeof cfg);
    cfg.n_layers = 2;
    cfg.d_model = d_model;
    cfg.n_heads = n_heads;
    cfg.d_mlp = 2 * d_model;
    cfg.d_vocab = V;
    cfg.n_ctx = 96;
    TT_REQUIRE(tlens_init_random(&m, &cfg, NULL, 5, &err) == TLENS_OK);
    for (i = 0; i < 48; i++) a[i] = (i * 7 + 3) % V;
    for (i = 0; i < 75; i++) b[i] = (i * 13 + 5) % V;
    tlens_ctx_new(&full, m, &err);
    tlens_ctx_new(&inc, m, &err);
    TT_REQUIRE(tlens_run(full, b, 1, 75, &err) == TLENS_OK);
    ref = tlens_logits(full)->data;
    memset(&ro, 0, sizeof ro);
    ro.use_kv_cache = 1;
    for (k = 0; k < 3; k++) {
        TT_REQUIRE(tlens_run_ex(inc, a + at, 1, chunks_a[k], &ro, &err) == TLENS_OK);
        at += chunks_a[k];
    }
    tlens_kv_reset(inc);
    for (k = 0, at = 0; k < 6; k++) {
        const float *got;
        TT_REQUIRE(tlens_run_ex(inc, b + at, 1, chunks_b[k], &ro, &err) == TLENS_OK);
        got = tlens_logits(inc)->data;
        for (i = 0; i < chunks_b[k] * V; i++) TT_CHECK_CLOSE(got[i], ref[(size_t)at * (size_t)V + (size_t)i], 1e-4, 1e-4);
        at += chunks_b[k];
    }
    TT_CHECK_INT(tlens_kv_length(inc), 75);
    tlens_ctx_free(full);
    tlens_ctx_free(inc);
    tlens_free(m);
}

static void test_kv_cache_reset_and_chunks(void) {
    kv_chunks_check(32, 4);
    kv_chunks_check(256, 8);
}

/* A left-padded batch gives each prompt the logits of running it alone. */
static void test_left_padding_matches_single_runs(void) {
    tlens_model *m = run_load_mid(0);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_run_options ro;
    int n, V, lens[3] = {9, 4, 1}, T = 9, b, t, i;
    int32_t *tok = run_tokens(&n), batch[27], mask[27];
    float *padded;
    TT_REQUIRE(m && tok);
    tlens_ctx_new(&ctx, m, &err);
    for (b = 0; b < 3; b++)
        for (t = 0; t < T; t++) {
            int pad = T - lens[b];
            batch[b * T + t] = t < pad ? 0 : tok[b * 11 + t - pad];
            mask[b * T + t] = t >= pad;
        }
    memset(&ro, 0, sizeof ro);
    ro.attention_mask = mask;
    TT_REQUIRE(tlens_run_ex(ctx, batch, 3, T, &ro, &err) == TLENS_OK);
    V = tlens_logits(ctx)->shape[2];
    padded = (float *)malloc((size_t)3 * (size_t)T * (size_t)V * sizeof(float));
    memcpy(padded, tlens_logits(ctx)->data, (size_t)3 * (size_t)T * (size_t)V * sizeof(float));
    for (b = 0; b < 3; b++) {
        int pad = T - lens[b];
        TT_REQUIRE(tlens_run(ctx, batch + b * T + pad, 1, lens[b], &err) == TLENS_OK);
        for (t = 0; t < lens[b]; t++)
            for (i = 0; i < V; i += 7)
                TT_CHECK_CLOSE(padded[((size_t)b * (size_t)T + (size_t)(pad + t)) * (size_t)V + (size_t)i],
                               tlens_logits(ctx)->data[(size_t)t * (size_t)V + (size_t)i], 1e-4, 1e-4);
    }
    free(padded);
    tlens_ctx_free(ctx);
    tlens_free(m);
    free(tok);
}

/* last_logits_only gives each sequence's last row of the full logits. */
static void test_last_logits_only(void) {
    tlens_model *m = run_load_mid(0);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_run_options ro;
    int32_t tok[2 * 7] = {1, 2, 3, 4, 5, 6, 7, 9, 8, 7, 6, 5, 4, 3};
    float *full;
    size_t V, b, i;
    TT_REQUIRE(m != NULL);
    V = (size_t)m->cfg.d_vocab;
    tlens_ctx_new(&ctx, m, &err);
    TT_REQUIRE(tlens_run(ctx, tok, 2, 7, &err) == TLENS_OK);
    full = (float *)malloc(2 * 7 * V * sizeof(float));
    memcpy(full, tlens_logits(ctx)->data, 2 * 7 * V * sizeof(float));
    memset(&ro, 0, sizeof ro);
    ro.last_logits_only = 1;
    TT_REQUIRE(tlens_run_ex(ctx, tok, 2, 7, &ro, &err) == TLENS_OK);
    TT_CHECK_INT(tlens_logits(ctx)->shape[1], 1);
    for (b = 0; b < 2; b++)
        for (i = 0; i < V; i++) TT_CHECK_CLOSE(tlens_logits(ctx)->data[b * V + i], full[(b * 7 + 6) * V + i], 0, 0);
    free(full);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* Where streamed logits go: each block copied to its rows of `all`. */
typedef struct run_stream { float *all; size_t V; int next_row, calls, out_of_order; } run_stream;

static void run_stream_rows(void *user, int row0, int n, const float *logits) {
    run_stream *s = (run_stream *)user;
    if (row0 != s->next_row || n < 1 || n > TLENS_LOGITS_BLOCK) s->out_of_order = 1;
    memcpy(s->all + (size_t)row0 * s->V, logits, (size_t)n * s->V * sizeof(float));
    s->next_row = row0 + n;
    s->calls++;
}

/* Streamed logits (tlens_run_options.logits_rows) arrive block by block,
 * in order, and equal the logits a plain run keeps; none are kept. */
static void test_streamed_logits(void) {
    tlens_model *m = run_load_mid(0);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_run_options ro;
    int32_t tok[2 * 150];
    float *full;
    run_stream st;
    size_t V, i, n = 2 * 150;
    TT_REQUIRE(m != NULL);
    V = (size_t)m->cfg.d_vocab;
    for (i = 0; i < n; i++) tok[i] = (int32_t)((i * 37 + 11) % V);
    tlens_ctx_new(&ctx, m, &err);
    TT_REQUIRE(tlens_run(ctx, tok, 2, 150, &err) == TLENS_OK);
    full = (float *)malloc(n * V * sizeof(float));
    memcpy(full, tlens_logits(ctx)->data, n * V * sizeof(float));
    memset(&st, 0, sizeof st);
    st.V = V;
    st.all = (float *)calloc(n * V, sizeof(float));
    memset(&ro, 0, sizeof ro);
    ro.logits_rows = run_stream_rows;
    ro.logits_user = &st;
    TT_REQUIRE(tlens_run_ex(ctx, tok, 2, 150, &ro, &err) == TLENS_OK);
    TT_CHECK(tlens_logits(ctx) == NULL);
    TT_CHECK_INT(st.calls, (int)((n + TLENS_LOGITS_BLOCK - 1) / TLENS_LOGITS_BLOCK));
    TT_CHECK_INT(st.next_row, (int)n);
    TT_CHECK(!st.out_of_order);
    TT_CHECK(memcmp(st.all, full, n * V * sizeof(float)) == 0);
    /* a plain run afterwards keeps its logits again */
    TT_REQUIRE(tlens_run(ctx, tok, 2, 150, &err) == TLENS_OK);
    TT_REQUIRE(tlens_logits(ctx) != NULL);
    TT_CHECK(memcmp(tlens_logits(ctx)->data, full, n * V * sizeof(float)) == 0);
    free(st.all);
    free(full);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

typedef struct run_order { char log[64]; int n; } run_order;

static int run_hook_mark(const char *name, int layer, tlens_tensor *t, void *user) {
    run_order *o = (run_order *)user;
    (void)name; (void)layer; (void)t;
    if (o->n < 63) o->log[o->n++] = 'a';
    return 0;
}

static int run_hook_mark_b(const char *name, int layer, tlens_tensor *t, void *user) {
    run_order *o = (run_order *)user;
    (void)name; (void)layer; (void)t;
    if (o->n < 63) o->log[o->n++] = 'b';
    return 0;
}

static int run_hook_stop(const char *name, int layer, tlens_tensor *t, void *user) {
    (void)name; (void)layer; (void)t; (void)user;
    return 1;
}

static int run_hook_zero_head0(const char *name, int layer, tlens_tensor *t, void *user) {
    int r, rows = t->shape[0] * t->shape[1], H = t->shape[2], dh = t->shape[3], d;
    (void)name; (void)layer; (void)user;
    for (r = 0; r < rows; r++)
        for (d = 0; d < dh; d++) t->data[(size_t)r * (size_t)H * (size_t)dh + (size_t)d] = 0;
    return 0;
}

static int run_filter_attn_out(const char *name, void *user) {
    (void)user;
    return strstr(name, "hook_attn_out") != NULL;
}

/* Hooks run in the order added, by name, glob or filter; removing and
 * resetting them works; a hook can stop the run. */
static void test_hooks_order_remove_stop(void) {
    tlens_model *m = run_load_mid(0);
    tlens_ctx *ctx;
    tlens_error err;
    run_order o;
    int32_t tok[3] = {1, 2, 3};
    int ha, hb;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    memset(&o, 0, sizeof o);
    ha = tlens_add_hook(ctx, "blocks.1.hook_resid_pre", run_hook_mark, &o);
    hb = tlens_add_hook(ctx, "blocks.1.hook_resid_*", run_hook_mark_b, &o);
    TT_REQUIRE(ha > 0 && hb > 0);
    TT_REQUIRE(tlens_run(ctx, tok, 1, 3, &err) == TLENS_OK);
    TT_CHECK_STR(o.log, "abbb"); /* resid_pre: a then b; resid_mid, resid_post: b */
    memset(&o, 0, sizeof o);
    tlens_remove_hook(ctx, ha);
    tlens_run(ctx, tok, 1, 3, &err);
    TT_CHECK_STR(o.log, "bbb");
    memset(&o, 0, sizeof o);
    tlens_reset_hooks(ctx);
    tlens_add_hook_filter(ctx, run_filter_attn_out, NULL, run_hook_mark, &o);
    tlens_run(ctx, tok, 1, 3, &err);
    TT_CHECK_STR(o.log, "aaaa"); /* one per layer */
    tlens_add_hook(ctx, "blocks.2.attn.hook_pattern", run_hook_stop, NULL);
    TT_CHECK_INT(tlens_run(ctx, tok, 1, 3, &err), TLENS_ERR_HOOK);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* run_with_hooks adds its hooks for one run only; run_with_cache replaces
 * the selection. */
static void test_run_with_hooks_and_cache(void) {
    tlens_model *m = run_load_mid(0);
    tlens_ctx *ctx;
    tlens_error err;
    run_order o;
    tlens_hook_spec spec[2];
    int32_t tok[3] = {1, 2, 3};
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    memset(&o, 0, sizeof o);
    tlens_add_hook(ctx, "blocks.0.hook_resid_post", run_hook_mark, &o);
    spec[0].pattern = "blocks.0.hook_resid_post";
    spec[0].fn = run_hook_mark_b;
    spec[0].user = &o;
    spec[1].pattern = "hook_embed";
    spec[1].fn = run_hook_mark_b;
    spec[1].user = &o;
    TT_REQUIRE(tlens_run_with_hooks(ctx, tok, 1, 3, spec, 2, &err) == TLENS_OK);
    TT_CHECK_STR(o.log, "bab"); /* embed, then resid_post: the context's hook first */
    memset(&o, 0, sizeof o);
    TT_REQUIRE(tlens_run(ctx, tok, 1, 3, &err) == TLENS_OK);
    TT_CHECK_STR(o.log, "a");
    tlens_cache_select(ctx, "hook_embed");
    TT_REQUIRE(tlens_run_with_cache(ctx, tok, 1, 3, "blocks.1.*", &err) == TLENS_OK);
    TT_CHECK(tlens_cache_get(ctx, "hook_embed") == NULL);
    TT_CHECK(tlens_cache_act(ctx, "pattern", 1, NULL) != NULL);
    TT_CHECK(tlens_cache_act(ctx, "pattern", 2, NULL) == NULL);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* Zeroing head 0's z removes exactly z_0 @ W_O[head 0 rows] from attn_out,
 * computed here by hand from the cached z and the weights. */
static void test_zero_head_z_removes_its_output(void) {
    tlens_model *m = run_load_mid(1);
    tlens_ctx *ctx;
    tlens_error err;
    int n, T = 8, D, dh, t, i, k;
    int32_t *tok = run_tokens(&n);
    float *z, *before;
    const tlens__mat *W_O;
    TT_REQUIRE(m && tok);
    D = m->cfg.d_model;
    dh = m->cfg.d_head;
    W_O = &m->blocks[2].W_O;
    tlens_ctx_new(&ctx, m, &err);
    tlens_cache_select(ctx, "blocks.2.attn.hook_z");
    tlens_cache_select(ctx, "blocks.2.hook_attn_out");
    TT_REQUIRE(tlens_run(ctx, tok, 1, T, &err) == TLENS_OK);
    z = (float *)malloc((size_t)T * (size_t)D * sizeof(float));
    before = (float *)malloc((size_t)T * (size_t)D * sizeof(float));
    memcpy(z, tlens_cache_get(ctx, "blocks.2.attn.hook_z")->data, (size_t)T * (size_t)D * sizeof(float));
    memcpy(before, tlens_cache_act(ctx, "attn_out", 2, NULL)->data, (size_t)T * (size_t)D * sizeof(float));
    tlens_add_hook(ctx, "blocks.2.attn.hook_z", run_hook_zero_head0, NULL);
    TT_REQUIRE(tlens_run(ctx, tok, 1, T, &err) == TLENS_OK);
    for (t = 0; t < T; t++)
        for (i = 0; i < D; i++) {
            double head0 = 0;
            for (k = 0; k < dh; k++) head0 += (double)z[t * D + k] * tlens__mat_get(W_O, k, i);
            TT_CHECK_CLOSE(tlens_cache_get(ctx, "blocks.2.hook_attn_out")->data[t * D + i], before[t * D + i] - head0,
                           1e-5, 1e-4);
        }
    free(z);
    free(before);
    tlens_ctx_free(ctx);
    tlens_free(m);
    free(tok);
}

static int run_hook_zero_head2_input(const char *name, int layer, tlens_tensor *t, void *user) {
    int r, rows = t->shape[0] * t->shape[1], H = t->shape[2], D = t->shape[3];
    (void)name; (void)layer; (void)user;
    for (r = 0; r < rows; r++) memset(t->data + ((size_t)r * H + 2) * D, 0, (size_t)D * sizeof(float));
    return 0;
}

/* An edit of one head's hook_q_input reaches only that head's queries:
 * with its input zeroed, the processed model's LayerNorm gives zeros, so
 * the head's q is its bias b_Q; the other heads and k, v do not change. */
static void test_q_input_edit_flows_per_head(void) {
    tlens_model *m = run_load_mid(0);
    tlens_ctx *ctx;
    tlens_error err;
    int32_t tok[4] = {11, 12, 13, 14};
    int D, dh, r, i;
    float *q0, *k0;
    const tlens_tensor *q, *k;
    TT_REQUIRE(m != NULL);
    D = m->cfg.d_model;
    dh = m->cfg.d_head;
    tlens_ctx_new(&ctx, m, &err);
    tlens_set_optional_hooks(ctx, 1);
    tlens_cache_select(ctx, "blocks.1.attn.hook_q");
    tlens_cache_select(ctx, "blocks.1.attn.hook_k");
    TT_REQUIRE(tlens_run(ctx, tok, 1, 4, &err) == TLENS_OK);
    q0 = (float *)malloc(4 * (size_t)D * sizeof(float));
    k0 = (float *)malloc(4 * (size_t)D * sizeof(float));
    memcpy(q0, tlens_cache_act(ctx, "q", 1, NULL)->data, 4 * (size_t)D * sizeof(float));
    memcpy(k0, tlens_cache_act(ctx, "k", 1, NULL)->data, 4 * (size_t)D * sizeof(float));
    tlens_add_hook(ctx, "blocks.1.hook_q_input", run_hook_zero_head2_input, NULL);
    TT_REQUIRE(tlens_run(ctx, tok, 1, 4, &err) == TLENS_OK);
    q = tlens_cache_act(ctx, "q", 1, NULL);
    k = tlens_cache_act(ctx, "k", 1, NULL);
    for (r = 0; r < 4; r++)
        for (i = 0; i < D; i++) {
            double want = i / dh == 2 ? m->blocks[1].b_QKV[i] : q0[r * D + i];
            TT_CHECK_CLOSE(q->data[r * D + i], want, 1e-5, 1e-4);
            TT_CHECK_CLOSE(k->data[r * D + i], k0[r * D + i], 1e-5, 1e-4);
        }
    free(q0);
    free(k0);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* TransformerLens' get_act_name examples. */
static void test_act_names(void) {
    char buf[128];
    TT_CHECK_STR(tlens_act_name(buf, sizeof buf, "resid_post", 3, NULL), "blocks.3.hook_resid_post");
    TT_CHECK_STR(tlens_act_name(buf, sizeof buf, "pattern", 0, NULL), "blocks.0.attn.hook_pattern");
    TT_CHECK_STR(tlens_act_name(buf, sizeof buf, "scale", 1, "ln1"), "blocks.1.ln1.hook_scale");
    TT_CHECK_STR(tlens_act_name(buf, sizeof buf, "scale", -1, NULL), "ln_final.hook_scale");
    TT_CHECK_STR(tlens_act_name(buf, sizeof buf, "embed", -1, NULL), "hook_embed");
    TT_CHECK_STR(tlens_act_name(buf, sizeof buf, "attn_logits", 2, NULL), "blocks.2.attn.hook_attn_scores");
    TT_CHECK_STR(tlens_act_name(buf, sizeof buf, "post", 5, NULL), "blocks.5.mlp.hook_post");
    TT_CHECK_STR(tlens_act_name(buf, sizeof buf, "blocks.0.hook_resid_pre", -1, NULL), "blocks.0.hook_resid_pre");
    TT_CHECK(tlens_act_name(buf, 8, "resid_post", 3, NULL) == NULL);
}

static void test_glob(void) {
    TT_CHECK(tlens__glob("*", "blocks.0.hook_resid_pre"));
    TT_CHECK(tlens__glob("blocks.*.hook_resid_post", "blocks.11.hook_resid_post"));
    TT_CHECK(!tlens__glob("blocks.*.hook_resid_post", "blocks.11.hook_resid_pre"));
    TT_CHECK(tlens__glob("blocks.?.attn.*", "blocks.3.attn.hook_q"));
    TT_CHECK(!tlens__glob("blocks.?.attn.*", "blocks.13.attn.hook_q"));
    TT_CHECK(tlens__glob("*hook_scale", "ln_final.hook_scale"));
}

void tests_run(void) {
    TT_RUN(test_kv_cache_matches_full_run);
    TT_RUN(test_kv_cache_reset_and_chunks);
    TT_RUN(test_left_padding_matches_single_runs);
    TT_RUN(test_last_logits_only);
    TT_RUN(test_streamed_logits);
    TT_RUN(test_hooks_order_remove_stop);
    TT_RUN(test_zero_head_z_removes_its_output);
    TT_RUN(test_run_with_hooks_and_cache);
    TT_RUN(test_q_input_edit_flows_per_head);
    TT_RUN(test_act_names);
    TT_RUN(test_glob);
}
