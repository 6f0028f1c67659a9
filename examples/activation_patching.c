/* activation_patching - where does the model keep the information that
 * decides its answer?
 *
 *   activation_patching MODEL --clean "1 2 3 4" --corrupt "1 2 9 4"
 *                       [--answer ID] [--wrong ID] [--act resid_pre]
 *
 * Two prompts of the same length that differ in a token or two: the clean
 * one makes the model prefer `answer`, the corrupted one `wrong`. The metric
 * is the logit difference logit[answer] - logit[wrong] at the last position.
 * For every layer L and position p, run the corrupted prompt again with
 * blocks.L.hook_resid_pre at position p taken from the clean run, and print
 * how much of the clean logit difference comes back:
 *
 *     recovery = (patched - corrupt) / (clean - corrupt)
 *
 * 1: this one activation carries everything the corruption changed; 0: it
 * carries none of it. The TransformerLens version is
 *
 *     def patch(resid, hook): resid[:, p] = clean_cache[hook.name][:, p]
 *     model.run_with_hooks(corrupt, fwd_hooks=[(get_act_name("resid_pre", L), patch)])
 *
 * or patching.get_act_patch_resid_pre, which computes this whole table.
 * What to expect: at layer 0 only the positions where the prompts differ
 * matter (patching one of them alone gives 1 when it is the only one);
 * positions before the first difference never matter (attention only looks
 * back); in later layers the information moves towards the last position.
 *
 * --answer defaults to the clean run's top prediction, --wrong to the
 * corrupted run's top prediction other than the answer. --act patches
 * another hook point, named by TransformerLens' shorthand: resid_mid,
 * attn_out, mlp_out, z (all heads), pattern (the query position's row) ...
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "example_common.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define USAGE "[MODEL] --clean \"IDS\" --corrupt \"IDS\" [--answer ID] [--wrong ID] [--act resid_pre]"

/* The last position's logits of the last run. */
static const float *last_logits(const tlens_ctx *ctx) {
    const tlens_tensor *lg = tlens_logits(ctx);
    return lg->data + (size_t)(lg->shape[1] - 1) * (size_t)lg->shape[2];
}

/* The most likely next token other than `except` (-1: none excluded). */
static int top_token(const tlens_ctx *ctx, int d_vocab, int except) {
    const float *last = last_logits(ctx);
    int i, best = -1;
    for (i = 0; i < d_vocab; i++)
        if (i != except && (best < 0 || last[i] > last[best])) best = i;
    return best;
}

static double logit_diff(const float *logits, int answer, int wrong) {
    return (double)logits[answer] - (double)logits[wrong];
}

/* Our own copy of a cached activation: the next run overwrites the cache. */
static tlens_tensor copy_tensor(const tlens_tensor *t, const char *name) {
    tlens_tensor c;
    if (!t) ex_die("%s is not a hook point of this model", name);
    c = *t;
    c.data = (float *)ex_malloc(tlens_tensor_numel(t) * sizeof(float));
    memcpy(c.data, t->data, tlens_tensor_numel(t) * sizeof(float));
    return c;
}

int main(int argc, char **argv) {
    ex_common c;
    tlens_model *model;
    tlens_ctx *ctx;
    tlens_error err;
    const tlens_config *cfg;
    const char *v, *clean_text = NULL, *corrupt_text = NULL, *act = "resid_pre";
    char name[128];
    int32_t *clean, *corrupt;
    int n, n2, i, l, p, answer = -1, wrong = -1;
    tlens_tensor *clean_act;
    float *clean_last;
    double clean_ld, corrupt_ld, recovery;

    ex_args_begin(&c, "activation_patching", USAGE);
    for (i = 1; i < argc; i++) {
        if ((v = ex_value(argc, argv, &i, "--clean"))) clean_text = v;
        else if ((v = ex_value(argc, argv, &i, "--corrupt"))) corrupt_text = v;
        else if ((v = ex_value(argc, argv, &i, "--answer"))) answer = ex_int(v, "--answer");
        else if ((v = ex_value(argc, argv, &i, "--wrong"))) wrong = ex_int(v, "--wrong");
        else if ((v = ex_value(argc, argv, &i, "--act"))) act = v;
        else ex_args_common(&c, argc, argv, &i);
    }
    ex_args_end(&c);
    if (!clean_text || !corrupt_text || c.tokens || c.prompt)
        ex_die("give the two prompts as --clean \"IDS\" --corrupt \"IDS\"");

    model = ex_load(c.model_path);
    cfg = tlens_model_config(model);
    clean = ex_parse_ids(clean_text, "--clean", &n);
    corrupt = ex_parse_ids(corrupt_text, "--corrupt", &n2);
    ex_check_ids(model, clean, n, "--clean");
    ex_check_ids(model, corrupt, n2, "--corrupt");
    if (n != n2) ex_die("--clean has %d tokens, --corrupt %d: they must line up position by position", n, n2);
    if (answer >= cfg->d_vocab || wrong >= cfg->d_vocab)
        ex_die("--answer / --wrong must be below d_vocab %d", cfg->d_vocab);
    ctx = ex_context(model);

    if (strlen(act) > 64) ex_die("--act %s: no hook point has so long a name", act);

    /* 1. the clean run, keeping the activation of every layer */
    for (l = 0; l < cfg->n_layers; l++) tlens_cache_select(ctx, tlens_act_name(name, sizeof name, act, l, NULL));
    ex_check(tlens_run(ctx, clean, 1, n, &err), &err);
    clean_act = (tlens_tensor *)ex_malloc((size_t)cfg->n_layers * sizeof *clean_act);
    for (l = 0; l < cfg->n_layers; l++)
        clean_act[l] = copy_tensor(tlens_cache_get(ctx, tlens_act_name(name, sizeof name, act, l, NULL)), name);
    if (answer < 0) answer = top_token(ctx, cfg->d_vocab, -1);
    clean_last = (float *)ex_malloc((size_t)cfg->d_vocab * sizeof(float));
    memcpy(clean_last, last_logits(ctx), (size_t)cfg->d_vocab * sizeof(float));
    tlens_cache_clear(ctx); /* the patched runs need no cache */

    /* 2. the corrupted run: the baseline */
    ex_check(tlens_run(ctx, corrupt, 1, n, &err), &err);
    if (wrong < 0) wrong = top_token(ctx, cfg->d_vocab, answer); /* the corrupted answer */
    clean_ld = logit_diff(clean_last, answer, wrong);
    corrupt_ld = logit_diff(last_logits(ctx), answer, wrong);
    ex_print_tokens(model, "clean", clean, n);
    ex_print_tokens(model, "corrupt", corrupt, n);
    printf("answer %d wrong %d\n", answer, wrong);
    printf("clean logit diff %.6f\ncorrupt logit diff %.6f\n", clean_ld, corrupt_ld);
    if (fabs(clean_ld - corrupt_ld) < 1e-6)
        ex_die("both runs give the same logit difference: choose an --answer and --wrong they disagree on");

    /* 3. one patched run per (layer, position) */
    printf("recovery = (patched - corrupt) / (clean - corrupt), patching %s of layer L at one position\n"
           "(* marks the positions where the prompts differ)\n", act);
    printf("%-8s", "pos");
    for (p = 0; p < n; p++) printf(" %6d%c", p, clean[p] != corrupt[p] ? '*' : ' ');
    printf("\n");
    for (l = 0; l < cfg->n_layers; l++) {
        printf("layer %-2d", l);
        for (p = 0; p < n; p++) {
            int handle = tlens_add_patch(ctx, tlens_act_name(name, sizeof name, act, l, NULL), &clean_act[l], -1, p);
            if (!handle) ex_die("cannot patch %s", name);
            ex_check(tlens_run(ctx, corrupt, 1, n, &err), &err);
            recovery = (logit_diff(last_logits(ctx), answer, wrong) - corrupt_ld) / (clean_ld - corrupt_ld);
            printf(" %7.4f", recovery == 0 ? 0.0 : recovery); /* 0, not -0 */
            tlens_remove_hook(ctx, handle);
        }
        printf("\n");
    }

    for (l = 0; l < cfg->n_layers; l++) free(clean_act[l].data);
    free(clean_act);
    free(clean_last);
    free(clean);
    free(corrupt);
    tlens_ctx_free(ctx);
    tlens_free(model);
    return 0;
}
