/* Every hook point and the logits against TransformerLens' own values
 * (tests/data/reference, computed by TransformerLens 2.12 on PyTorch), for
 * each case, in both weight modes, loaded from the Hugging Face folder and
 * from a converted .tlens file. Tolerance |a-b| <= 1e-4 + 1e-4 |b|. */

#define REF_DIR "tests/data/reference/"
#define TMP_DIR "build/test-tmp/"

typedef struct ref_worst {
    double diff;
    char name[96];
    int compared, failed;
} ref_worst;

static void ref_compare(const tu_tensor *ref, const tlens_tensor *got, ref_worst *w, const char *label) {
    size_t i;
    int d, bad = 0;
    if (!got) {
        tt_fail_line(__FILE__, __LINE__, "%s: %s was not produced", label, ref->name);
        return;
    }
    if (got->ndim != ref->ndim) {
        tt_fail_line(__FILE__, __LINE__, "%s: %s has %d dims, TransformerLens %d", label, ref->name, got->ndim, ref->ndim);
        return;
    }
    for (d = 0; d < ref->ndim; d++)
        if (got->shape[d] != ref->shape[d]) {
            tt_fail_line(__FILE__, __LINE__, "%s: %s dim %d is %d, TransformerLens %d", label, ref->name, d, got->shape[d],
                         ref->shape[d]);
            return;
        }
    for (i = 0; i < ref->numel; i++) {
        double b = ref->f32 ? (double)ref->f32[i] : (double)ref->i64[i], a = got->data[i];
        if (!tt_close(a, b, 1e-4, 1e-4)) {
            if (bad++ < 3)
                tt_fail_line(__FILE__, __LINE__, "%s: %s[%zu] = %.9g, TransformerLens %.9g", label, ref->name, i, a, b);
        } else if (!isinf(b) && fabs(a - b) > w->diff) {
            w->diff = fabs(a - b);
            snprintf(w->name, sizeof w->name, "%s", ref->name);
        }
    }
    w->compared++;
    w->failed += bad != 0;
}

/* The logits of a plain run (no hook, nothing cached), which takes paths
 * a cached run does not (attention by blocks of query rows, each over the
 * keys it can see), against the reference. */
static void ref_check_plain_logits(const tlens_model *model, const int32_t *tokens, int rows, int cols,
                                   const tu_file *ref, ref_worst *w, const char *label) {
    tlens_ctx *ctx;
    tlens_error err;
    int i;
    TT_REQUIRE(tlens_ctx_new(&ctx, model, &err) == TLENS_OK);
    if (tlens_run(ctx, tokens, rows, cols, &err) != TLENS_OK)
        tt_fail_line(__FILE__, __LINE__, "%s: plain run failed: %s", label, err.message);
    else
        for (i = 0; i < ref->n; i++)
            if (strcmp(ref->t[i].name, "logits") == 0) ref_compare(&ref->t[i], tlens_logits(ctx), w, label);
    tlens_ctx_free(ctx);
}

/* Run `model` on the case's tokens with every hook point cached and compare
 * each against the reference file; then the logits of a plain run. */
static void ref_check_model(const tlens_model *model, const char *case_name, const char *mode, const char *source) {
    char path[256], label[128];
    int rows, cols, i;
    int32_t *tokens;
    tu_file ref;
    tlens_ctx *ctx;
    tlens_error err;
    ref_worst w;
    memset(&w, 0, sizeof w);
    snprintf(label, sizeof label, "%s/%s/%s", case_name, mode, source);
    snprintf(path, sizeof path, REF_DIR "%s/tokens.npy", case_name);
    tokens = tu_read_npy_tokens(path, &rows, &cols);
    TT_REQUIRE(tokens != NULL);
    snprintf(path, sizeof path, REF_DIR "%s/%s/activations.safetensors", case_name, mode);
    TT_REQUIRE(tu_read_safetensors(path, &ref));
    TT_REQUIRE(tlens_ctx_new(&ctx, model, &err) == TLENS_OK);
    tlens_set_optional_hooks(ctx, 1);
    tlens_cache_select(ctx, "*");
    if (tlens_run(ctx, tokens, rows, cols, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s: run failed: %s", label, err.message);
    } else {
        for (i = 0; i < ref.n; i++) {
            const tlens_tensor *got = strcmp(ref.t[i].name, "logits") == 0 ? tlens_logits(ctx)
                                                                             : tlens_cache_get(ctx, ref.t[i].name);
            ref_compare(&ref.t[i], got, &w, label);
        }
        /* and every hook point tlens has must be in the reference, except
         * the per-head copies trimmed from the larger cases */
        for (i = 0; i < tlens_hook_count(ctx); i++) {
            const char *name = tlens_hook_name(ctx, i);
            int j, found = 0;
            for (j = 0; j < ref.n && !found; j++) found = strcmp(ref.t[j].name, name) == 0;
            if (!found && !(strcmp(case_name, "tiny") != 0 &&
                            (strstr(name, "hook_attn_in") || strstr(name, "_input")))) {
                tt_fail_line(__FILE__, __LINE__, "%s: hook point %s is not in the reference", label, name);
            }
        }
        ref_check_plain_logits(model, tokens, rows, cols, &ref, &w, label);
        printf("  %-32s %3d tensors, worst |a-b| %.2e (%s)\n", label, w.compared, w.diff, w.name);
    }
    tlens_ctx_free(ctx);
    tu_free_safetensors(&ref);
    free(tokens);
}

static void ref_check_case(const char *case_name) {
    static const char *const modes[2] = {"raw", "processed"};
    int m;
    for (m = 0; m < 2; m++) {
        tlens_load_options opt;
        tlens_model *model, *converted;
        tlens_error err;
        char dir[256], file[256];
        memset(&opt, 0, sizeof opt);
        opt.raw = m == 0;
        snprintf(dir, sizeof dir, REF_DIR "%s/model", case_name);
        if (tlens_load(&model, dir, &opt, &err) != TLENS_OK) {
            tt_fail_line(__FILE__, __LINE__, "loading %s: %s", dir, err.message);
            continue;
        }
        ref_check_model(model, case_name, modes[m], "hf");
        snprintf(file, sizeof file, TMP_DIR "%s-%s.tlens", case_name, modes[m]);
        if (tlens_save(model, file, &err) != TLENS_OK) {
            tt_fail_line(__FILE__, __LINE__, "saving %s: %s", file, err.message);
        } else if (tlens_load(&converted, file, &opt, &err) != TLENS_OK) {
            tt_fail_line(__FILE__, __LINE__, "loading %s: %s", file, err.message);
        } else {
            ref_check_model(converted, case_name, modes[m], "tlens");
            tlens_free(converted);
        }
        tlens_free(model);
    }
}

static void test_reference_tiny(void) { ref_check_case("tiny"); }
static void test_reference_tiny_untied(void) { ref_check_case("tiny-untied"); }
static void test_reference_mid(void) { ref_check_case("mid"); }

void tests_reference(void) {
    TT_RUN(test_reference_tiny);
    TT_RUN(test_reference_tiny_untied);
    TT_RUN(test_reference_mid);
}
