/* The toolkit against independent computations: loss from TransformerLens'
 * own logits, generation with and without the cache, ablation and patching
 * identities, residual-stream decompositions that must add up, and head
 * detection scores recomputed here from the cached patterns. */

static tlens_model *tk_load(const char *case_name, int raw) {
    char dir[256];
    tlens_load_options opt;
    tlens_model *m = NULL;
    tlens_error err;
    memset(&opt, 0, sizeof opt);
    opt.raw = raw;
    snprintf(dir, sizeof dir, REF_DIR "%s/model", case_name);
    if (tlens_load(&m, dir, &opt, &err) != TLENS_OK) tt_fail_line(__FILE__, __LINE__, "%s", err.message);
    return m;
}

/* The loss from TransformerLens' logits, computed here in double. */
static void test_loss_matches_reference_logits(void) {
    tlens_model *m = tk_load("tiny", 1);
    tlens_ctx *ctx;
    tlens_error err;
    tu_file ref;
    int rows, cols, b, t, i, V;
    int32_t *tok = tu_read_npy_tokens(REF_DIR "tiny/tokens.npy", &rows, &cols);
    double mean, expect = 0;
    float per[2 * 15];
    const tu_tensor *lg = NULL;
    TT_REQUIRE(m && tok);
    TT_REQUIRE(tu_read_safetensors(REF_DIR "tiny/raw/activations.safetensors", &ref));
    for (i = 0; i < ref.n; i++) if (!strcmp(ref.t[i].name, "logits")) lg = &ref.t[i];
    TT_REQUIRE(lg != NULL && rows == 2 && cols == 16);
    V = lg->shape[2];
    tlens_ctx_new(&ctx, m, &err);
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    TT_REQUIRE(tlens_loss(ctx, tok, NULL, per, &mean, &err) == TLENS_OK);
    for (b = 0; b < rows; b++)
        for (t = 0; t + 1 < cols; t++) {
            const float *row = lg->f32 + ((size_t)b * cols + t) * V;
            double mx = row[0], sum = 0, nll;
            for (i = 0; i < V; i++) if (row[i] > mx) mx = row[i];
            for (i = 0; i < V; i++) sum += exp(row[i] - mx);
            nll = -(row[tok[b * cols + t + 1]] - mx - log(sum));
            TT_CHECK_CLOSE(per[b * (cols - 1) + t], nll, 1e-4, 1e-4);
            expect += nll;
        }
    TT_CHECK_CLOSE(mean, expect / (rows * (cols - 1)), 1e-5, 1e-5);
    tu_free_safetensors(&ref);
    tlens_ctx_free(ctx);
    tlens_free(m);
    free(tok);
}

/* Greedy generation with the cache equals recomputing the sequence and
 * taking the argmax at every step. */
static void test_generate_greedy_cache_equals_recompute(void) {
    tlens_model *m = tk_load("mid", 0);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_generate_options go;
    int32_t prompt[5] = {5, 17, 300, 12, 1999}, a[20], b[20], seq[32];
    int na, nb, i, t, V;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    memset(&go, 0, sizeof go);
    go.max_new_tokens = 20;
    TT_REQUIRE(tlens_generate(ctx, prompt, 5, &go, a, 20, &na, &err) == TLENS_OK);
    go.no_kv_cache = 1;
    TT_REQUIRE(tlens_generate(ctx, prompt, 5, &go, b, 20, &nb, &err) == TLENS_OK);
    TT_CHECK_INT(na, 20);
    TT_CHECK_INT(nb, 20);
    for (i = 0; i < 20; i++) TT_CHECK_INT(a[i], b[i]);
    /* by hand: full runs and argmax */
    memcpy(seq, prompt, sizeof prompt);
    V = m->cfg.d_vocab;
    for (t = 0; t < 20; t++) {
        const float *last;
        int best = 0;
        TT_REQUIRE(tlens_run(ctx, seq, 1, 5 + t, &err) == TLENS_OK);
        last = tlens_logits(ctx)->data + (size_t)(4 + t) * (size_t)V;
        for (i = 1; i < V; i++) if (last[i] > last[best]) best = i;
        seq[5 + t] = best;
        TT_CHECK_INT(a[t], best);
    }
    tlens_ctx_free(ctx);
    tlens_free(m);
}

typedef struct tk_positions { const tlens_model *m; int step, bad, seen; } tk_positions;

/* During cached generation hook_pos_embed must hold W_pos at the true
 * position: the prompt's positions first, then one more per step. */
static int tk_check_pos(const char *name, int layer, tlens_tensor *t, void *user) {
    tk_positions *p = (tk_positions *)user;
    int D = t->shape[2], T = t->shape[1], i, d;
    (void)name; (void)layer;
    for (i = 0; i < T; i++) {
        int pos = p->step == 0 ? i : 4 + p->step;
        for (d = 0; d < D; d++) p->bad += t->data[i * D + d] != p->m->W_pos[pos * D + d];
    }
    p->seen += T;
    p->step++;
    return 0;
}

static void test_generate_hooks_see_true_positions(void) {
    tlens_model *m = tk_load("mid", 1);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_generate_options go;
    tk_positions p;
    int32_t prompt[5] = {5, 6, 7, 8, 9}, out[6];
    int n;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    memset(&p, 0, sizeof p);
    p.m = m;
    tlens_add_hook(ctx, "hook_pos_embed", tk_check_pos, &p);
    memset(&go, 0, sizeof go);
    go.max_new_tokens = 6;
    TT_REQUIRE(tlens_generate(ctx, prompt, 5, &go, out, 6, &n, &err) == TLENS_OK);
    TT_CHECK_INT(p.bad, 0);
    TT_CHECK_INT(p.seen, 5 + 5); /* the prompt, then one position per new token but the last */
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* Sampling: the same seed gives the same tokens; top_k 1 is greedy. */
static void test_generate_sampling(void) {
    tlens_model *m = tk_load("mid", 0);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_generate_options go;
    int32_t prompt[3] = {7, 8, 9}, a[16], b[16], c[16], g[16];
    int n, i, differ = 0;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    memset(&go, 0, sizeof go);
    go.max_new_tokens = 16;
    go.temperature = 1.0f;
    go.seed = 42;
    tlens_generate(ctx, prompt, 3, &go, a, 16, &n, &err);
    tlens_generate(ctx, prompt, 3, &go, b, 16, &n, &err);
    go.seed = 43;
    tlens_generate(ctx, prompt, 3, &go, c, 16, &n, &err);
    for (i = 0; i < 16; i++) {
        TT_CHECK_INT(a[i], b[i]);
        differ += a[i] != c[i];
    }
    TT_CHECK(differ > 0); /* a random model: near-uniform choices */
    go.top_k = 1;
    tlens_generate(ctx, prompt, 3, &go, c, 16, &n, &err);
    memset(&go, 0, sizeof go);
    go.max_new_tokens = 16;
    tlens_generate(ctx, prompt, 3, &go, g, 16, &n, &err);
    for (i = 0; i < 16; i++) TT_CHECK_INT(c[i], g[i]);
    go.temperature = 1.0f;
    go.top_p = 1e-6f; /* only the most likely token survives */
    tlens_generate(ctx, prompt, 3, &go, c, 16, &n, &err);
    for (i = 0; i < 16; i++) TT_CHECK_INT(c[i], g[i]);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* Mean ablation sets every value to its mean over batch and positions,
 * computed here from a copy taken by an earlier run. */
static void test_mean_ablation(void) {
    tlens_model *m = tk_load("tiny", 0);
    tlens_ctx *ctx;
    tlens_error err;
    int rows, cols, H = 4, dh = 16, b, p, h, d;
    int32_t *tok = tu_read_npy_tokens(REF_DIR "tiny/tokens.npy", &rows, &cols);
    float *v;
    const tlens_tensor *after;
    TT_REQUIRE(m && tok);
    tlens_ctx_new(&ctx, m, &err);
    tlens_cache_select(ctx, "blocks.1.attn.hook_v");
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    v = (float *)malloc(tlens_tensor_numel(tlens_cache_act(ctx, "v", 1, NULL)) * sizeof(float));
    memcpy(v, tlens_cache_act(ctx, "v", 1, NULL)->data, tlens_tensor_numel(tlens_cache_act(ctx, "v", 1, NULL)) * sizeof(float));
    TT_REQUIRE(tlens_add_ablation(ctx, "blocks.1.attn.hook_v", 2, TLENS_ABLATE_MEAN) > 0);
    TT_REQUIRE(tlens_run(ctx, tok, rows, cols, &err) == TLENS_OK);
    after = tlens_cache_act(ctx, "v", 1, NULL);
    for (h = 0; h < H; h++)
        for (d = 0; d < dh; d++) {
            double mean = 0;
            for (b = 0; b < rows; b++)
                for (p = 0; p < cols; p++) mean += v[((b * cols + p) * H + h) * dh + d];
            mean /= rows * cols;
            for (b = 0; b < rows; b++)
                for (p = 0; p < cols; p++) {
                    size_t i = (size_t)((b * cols + p) * H + h) * dh + d;
                    TT_CHECK_CLOSE(after->data[i], h == 2 ? mean : v[i], 1e-6, 1e-5);
                }
        }
    free(v);
    tlens_ctx_free(ctx);
    tlens_free(m);
    free(tok);
}

/* Patching resid_post of a layer from a clean run makes the rest of the
 * corrupted run clean: the logits become the clean run's. Patching one
 * position leaves the positions before it as they were. */
static void test_patching(void) {
    tlens_model *m = tk_load("mid", 0);
    tlens_ctx *ctx;
    tlens_error err;
    int32_t clean[8] = {10, 20, 30, 40, 50, 60, 70, 80}, corrupt[8] = {10, 20, 30, 41, 50, 60, 70, 80};
    tlens_tensor src;
    float *clean_logits, *corrupt_logits;
    size_t n, i, V;
    TT_REQUIRE(m != NULL);
    V = (size_t)m->cfg.d_vocab;
    tlens_ctx_new(&ctx, m, &err);
    tlens_cache_select(ctx, "blocks.1.hook_resid_post");
    TT_REQUIRE(tlens_run(ctx, clean, 1, 8, &err) == TLENS_OK);
    src = *tlens_cache_act(ctx, "resid_post", 1, NULL); /* the cache is rewritten by the next run: copy */
    src.data = (float *)malloc(tlens_tensor_numel(&src) * sizeof(float));
    memcpy(src.data, tlens_cache_act(ctx, "resid_post", 1, NULL)->data, tlens_tensor_numel(&src) * sizeof(float));
    n = 8 * V;
    clean_logits = (float *)malloc(n * sizeof(float));
    corrupt_logits = (float *)malloc(n * sizeof(float));
    memcpy(clean_logits, tlens_logits(ctx)->data, n * sizeof(float));
    TT_REQUIRE(tlens_run(ctx, corrupt, 1, 8, &err) == TLENS_OK);
    memcpy(corrupt_logits, tlens_logits(ctx)->data, n * sizeof(float));
    TT_REQUIRE(tlens_add_patch(ctx, "blocks.1.hook_resid_post", &src, -1, -1) > 0);
    TT_REQUIRE(tlens_run(ctx, corrupt, 1, 8, &err) == TLENS_OK);
    for (i = 0; i < n; i += 3) TT_CHECK_CLOSE(tlens_logits(ctx)->data[i], clean_logits[i], 1e-5, 1e-5);
    tlens_reset_hooks(ctx);
    TT_REQUIRE(tlens_add_patch(ctx, "blocks.1.hook_resid_post", &src, -1, 5) > 0);
    TT_REQUIRE(tlens_run(ctx, corrupt, 1, 8, &err) == TLENS_OK);
    for (i = 0; i < 5 * V; i += 3) TT_CHECK_CLOSE(tlens_logits(ctx)->data[i], corrupt_logits[i], 1e-6, 1e-6);
    free(src.data);
    free(clean_logits);
    free(corrupt_logits);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* The residual stream adds up: the decomposition sums to the final
 * resid_post; the accumulated final component after the LayerNorm scale is
 * ln_final's normalized output; head results plus b_O are attn_out; the
 * logit attributions of the decomposition sum to the logit minus b_U. */
static void test_residual_stream_identities(void) {
    tlens_model *m = tk_load("mid", 0);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_stack dec, acc, heads;
    int32_t tok[6] = {3, 1, 4, 1, 5, 9};
    int L, D, V, c, r, i, token = 77;
    float *attrs;
    const tlens_tensor *final, *normed, *attn_out, *logits;
    TT_REQUIRE(m != NULL);
    L = m->cfg.n_layers;
    D = m->cfg.d_model;
    V = m->cfg.d_vocab;
    tlens_ctx_new(&ctx, m, &err);
    tlens_cache_select(ctx, "*");
    TT_REQUIRE(tlens_run(ctx, tok, 1, 6, &err) == TLENS_OK);
    final = tlens_cache_act(ctx, "resid_post", L - 1, NULL);
    normed = tlens_cache_act(ctx, "normalized", -1, NULL);
    logits = tlens_logits(ctx);
    TT_REQUIRE(tlens_decompose_resid(ctx, -1, 0, &dec, &err) == TLENS_OK);
    TT_CHECK_INT(dec.n, 2 + 2 * L);
    TT_CHECK_STR(dec.labels[2], "0_attn_out");
    for (i = 0; i < 6 * D; i++) {
        double sum = 0;
        for (c = 0; c < dec.n; c++) sum += dec.data[(size_t)c * 6 * D + i];
        TT_CHECK_CLOSE(sum, final->data[i], 1e-5, 1e-5);
    }
    TT_REQUIRE(tlens_accumulated_resid(ctx, -1, 1, 1, &acc, &err) == TLENS_OK);
    TT_CHECK_INT(acc.n, 2 * L + 1);
    TT_CHECK_STR(acc.labels[acc.n - 1], "final_post");
    for (i = 0; i < 6 * D; i++) TT_CHECK_CLOSE(acc.data[(size_t)(acc.n - 1) * 6 * D + i], normed->data[i], 1e-5, 1e-4);
    TT_REQUIRE(tlens_stack_head_results(ctx, 2, 0, &heads, &err) == TLENS_OK);
    attn_out = tlens_cache_act(ctx, "attn_out", 1, NULL);
    TT_CHECK_STR(heads.labels[m->cfg.n_heads + 3], "L1H3");
    for (r = 0; r < 6; r++)
        for (i = 0; i < D; i++) {
            double sum = m->blocks[1].b_O[i];
            for (c = 0; c < m->cfg.n_heads; c++) sum += heads.data[((size_t)(m->cfg.n_heads + c) * 6 + r) * D + i];
            TT_CHECK_CLOSE(sum, attn_out->data[r * D + i], 1e-5, 1e-4);
        }
    attrs = (float *)malloc((size_t)dec.n * 6 * sizeof(float));
    TT_REQUIRE(tlens_logit_attrs(ctx, &dec, token, -1, attrs, &err) == TLENS_OK);
    for (r = 0; r < 6; r++) {
        double sum = 0;
        for (c = 0; c < dec.n; c++) sum += attrs[c * 6 + r];
        TT_CHECK_CLOSE(sum, logits->data[(size_t)r * V + token] - m->b_U[token], 1e-4, 1e-4);
    }
    free(attrs);
    tlens_stack_free(&dec);
    tlens_stack_free(&acc);
    tlens_stack_free(&heads);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* Head detection scores recomputed from the cached patterns. */
static void test_detect_heads(void) {
    tlens_model *m = tk_load("mid", 0);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_detect_options o;
    int32_t tok[12] = {50, 51, 52, 53, 54, 50, 51, 52, 53, 54, 50, 51};
    float scores[4 * 8];
    int kind, l, h, i, j, n = 12;
    TT_REQUIRE(m != NULL);
    tlens_ctx_new(&ctx, m, &err);
    memset(&o, 0, sizeof o);
    for (kind = 0; kind < 3; kind++) {
        TT_REQUIRE(tlens_detect_heads(ctx, tok, n, kind, &o, scores, &err) == TLENS_OK);
        tlens_cache_select(ctx, "*pattern");
        tlens_run(ctx, tok, 1, n, &err);
        for (l = 0; l < 4; l++)
            for (h = 0; h < 8; h++) {
                const float *P = tlens_cache_act(ctx, "pattern", l, NULL)->data + (size_t)h * n * n;
                double num = 0, den = 0;
                for (i = 0; i < n; i++)
                    for (j = 0; j <= i; j++) {
                        int want = kind == 0 ? j == i - 1
                                 : kind == 1 ? (j < i && tok[j] == tok[i])
                                             : (j >= 1 && tok[j - 1] == tok[i]);
                        num += want * P[i * n + j];
                        den += P[i * n + j];
                    }
                TT_CHECK_CLOSE(scores[l * 8 + h], num / den, 1e-5, 1e-5);
            }
        tlens_cache_clear(ctx);
    }
    tlens_ctx_free(ctx);
    tlens_free(m);
}

/* stop_at_layer returns resid_pre of that block; start_at_layer from a
 * cached residual gives the full run's logits. */
static void test_start_stop_layer(void) {
    tlens_model *m = tk_load("mid", 0);
    tlens_ctx *ctx;
    tlens_error err;
    tlens_run_options ro;
    int32_t tok[5] = {9, 8, 7, 6, 5};
    float *resid2, *logits;
    size_t nr, nl, i;
    TT_REQUIRE(m != NULL);
    nr = 5 * (size_t)m->cfg.d_model;
    nl = 5 * (size_t)m->cfg.d_vocab;
    tlens_ctx_new(&ctx, m, &err);
    tlens_cache_select(ctx, "blocks.2.hook_resid_pre");
    TT_REQUIRE(tlens_run(ctx, tok, 1, 5, &err) == TLENS_OK);
    resid2 = (float *)malloc(nr * sizeof(float));
    logits = (float *)malloc(nl * sizeof(float));
    memcpy(resid2, tlens_cache_act(ctx, "resid_pre", 2, NULL)->data, nr * sizeof(float));
    memcpy(logits, tlens_logits(ctx)->data, nl * sizeof(float));
    memset(&ro, 0, sizeof ro);
    ro.stop_at_layer = 2;
    TT_REQUIRE(tlens_run_ex(ctx, tok, 1, 5, &ro, &err) == TLENS_OK);
    TT_CHECK(tlens_logits(ctx) == NULL);
    for (i = 0; i < nr; i++) TT_CHECK_CLOSE(tlens_resid(ctx)->data[i], resid2[i], 0, 0);
    memset(&ro, 0, sizeof ro);
    ro.start_resid = resid2;
    ro.start_at_layer = 2;
    TT_REQUIRE(tlens_run_ex(ctx, NULL, 1, 5, &ro, &err) == TLENS_OK);
    for (i = 0; i < nl; i++) TT_CHECK_CLOSE(tlens_logits(ctx)->data[i], logits[i], 1e-6, 1e-6);
    ro.start_at_layer = 9;
    TT_CHECK_INT(tlens_run_ex(ctx, NULL, 1, 5, &ro, &err), TLENS_ERR_ARG);
    free(resid2);
    free(logits);
    tlens_ctx_free(ctx);
    tlens_free(m);
}

void tests_toolkit(void) {
    TT_RUN(test_loss_matches_reference_logits);
    TT_RUN(test_generate_greedy_cache_equals_recompute);
    TT_RUN(test_generate_sampling);
    TT_RUN(test_generate_hooks_see_true_positions);
    TT_RUN(test_mean_ablation);
    TT_RUN(test_patching);
    TT_RUN(test_residual_stream_identities);
    TT_RUN(test_detect_heads);
    TT_RUN(test_start_stop_layer);
}
