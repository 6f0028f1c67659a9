/* Threads (tests_threads): a model loaded once can be used from several
 * threads at the same time, each thread with its own run state (its own
 * tlens_ctx), and each gets exactly the results it gets alone.
 *
 * Two prompts of different shapes run on the mid reference model, first
 * one after the other (the reference), then at the same time in two (and
 * four) POSIX threads, several rounds. Every context has hooks (one that
 * reads every attention pattern, and in one job an ablation that writes)
 * and a cache selection, so the hook and cache machinery runs concurrently
 * too. The logits, the cached activations and what the hooks saw must be
 * the same bit for bit: a model is shared read-only, so nothing one thread
 * does may reach another thread's numbers. The tokenizer, also documented
 * as shareable, is checked the same way.
 *
 * POSIX only: link with -pthread. Included from test_main.c, after tlens.h
 * (with the implementation), tlens_test.h and test_util.h. Runs from the
 * repository root. The worker threads never call the TT_ macros (the
 * harness is not thread-safe): they record what they found, and the main
 * thread checks it after pthread_join.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef REF_DIR
#define REF_DIR "tests/data/reference/"
#endif
#define TH_MODEL REF_DIR "mid/model"
#define TH_ROUNDS 3       /* thread start-ups per test                     */
#define TH_RUNS 8         /* forward passes per thread and round           */
#define TH_MAX_THREADS 4

/* The cached points every job compares (besides the logits). */
static const char *const th_cached[] = {
    "hook_embed",
    "blocks.1.attn.hook_pattern",
    "blocks.2.hook_resid_mid",
    "blocks.3.hook_resid_post",
    "ln_final.hook_normalized",
};
#define TH_N_CACHED ((int)(sizeof th_cached / sizeof th_cached[0]))

/* One kind of work: a prompt and how its context is set up. */
typedef struct th_job {
    const char *label;
    int batch, pos;
    int32_t *tokens;         /* [batch, pos]                                 */
    int optional_hooks;      /* TransformerLens' optional points on           */
    const char *ablate;      /* a zero ablation of one head, or NULL          */
    int ablate_head;
} th_job;

/* What one run of a job produced: the numbers compared bit for bit. */
typedef struct th_result {
    float *logits;
    size_t n_logits;
    float *cached[TH_N_CACHED];
    size_t n_cached[TH_N_CACHED];
    double pattern_sum;      /* what the reading hook added up              */
    long pattern_calls;      /* how often it fired                           */
} th_result;

/* A hook that only reads: the sum of every attention pattern it sees
 * (in a fixed order, so the sum is reproducible bit for bit). */
static int th_hook_pattern_sum(const char *name, int layer, tlens_tensor *t, void *user) {
    th_result *r = (th_result *)user;
    size_t i, n = tlens_tensor_numel(t);
    (void)name;
    (void)layer;
    for (i = 0; i < n; i++) r->pattern_sum += (double)t->data[i];
    r->pattern_calls++;
    return 0;
}

static void th_result_free(th_result *r) {
    int i;
    free(r->logits);
    for (i = 0; i < TH_N_CACHED; i++) free(r->cached[i]);
    memset(r, 0, sizeof *r);
}

static float *th_copy(const float *src, size_t n) {
    float *dst = (float *)malloc(n * sizeof(float) + 1);
    if (dst && n) memcpy(dst, src, n * sizeof(float));
    return dst;
}

/* A new context set up for `job`; its hook writes into *seen. */
static tlens_result th_ctx_for(const tlens_model *m, const th_job *job, th_result *seen, tlens_ctx **out,
                               tlens_error *err) {
    tlens_ctx *ctx;
    tlens_result r;
    int i;
    if ((r = tlens_ctx_new(&ctx, m, err)) != TLENS_OK) return r;
    tlens_set_optional_hooks(ctx, job->optional_hooks);
    if (!tlens_add_hook(ctx, "blocks.*.attn.hook_pattern", th_hook_pattern_sum, seen) ||
        (job->ablate && !tlens_add_ablation(ctx, job->ablate, job->ablate_head, TLENS_ABLATE_ZERO))) {
        tlens_ctx_free(ctx);
        return TLENS_ERR_ARG;
    }
    for (i = 0; i < TH_N_CACHED; i++)
        if ((r = tlens_cache_select(ctx, th_cached[i])) != TLENS_OK) {
            tlens_ctx_free(ctx);
            return r;
        }
    if (job->optional_hooks && (r = tlens_cache_select(ctx, "blocks.*.attn.hook_result")) != TLENS_OK) {
        tlens_ctx_free(ctx);
        return r;
    }
    *out = ctx;
    return TLENS_OK;
}

/* Run the job once on ctx; the hook has already been pointed at *res.
 * 0 on success. */
static int th_run_once(tlens_ctx *ctx, const th_job *job, th_result *res) {
    tlens_error err;
    const tlens_tensor *lg;
    int i;
    res->pattern_sum = 0;
    res->pattern_calls = 0;
    if (tlens_run(ctx, job->tokens, job->batch, job->pos, &err) != TLENS_OK) return 1;
    if (!(lg = tlens_logits(ctx))) return 1;
    res->n_logits = tlens_tensor_numel(lg);
    if (!(res->logits = th_copy(lg->data, res->n_logits))) return 1;
    for (i = 0; i < TH_N_CACHED; i++) {
        const tlens_tensor *c = tlens_cache_get(ctx, th_cached[i]);
        if (!c) return 1;
        res->n_cached[i] = tlens_tensor_numel(c);
        if (!(res->cached[i] = th_copy(c->data, res->n_cached[i]))) return 1;
    }
    return 0;
}

/* Bit for bit: memcmp, not a tolerance (-0.0 vs 0.0 or a different NaN
 * would count as a difference, which is what we want). */
static int th_same(const th_result *a, const th_result *b) {
    int i;
    if (a->n_logits != b->n_logits || memcmp(a->logits, b->logits, a->n_logits * sizeof(float)) != 0) return 0;
    for (i = 0; i < TH_N_CACHED; i++)
        if (a->n_cached[i] != b->n_cached[i] ||
            memcmp(a->cached[i], b->cached[i], a->n_cached[i] * sizeof(float)) != 0)
            return 0;
    return memcmp(&a->pattern_sum, &b->pattern_sum, sizeof(double)) == 0 && a->pattern_calls == b->pattern_calls;
}

/* A gate that lets every worker start at once, so that the runs overlap
 * instead of the first thread finishing before the second is created. */
typedef struct th_gate {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int waiting, total;
} th_gate;

static void th_gate_wait(th_gate *g) {
    pthread_mutex_lock(&g->mu);
    if (++g->waiting == g->total)
        pthread_cond_broadcast(&g->cv);
    else
        while (g->waiting < g->total) pthread_cond_wait(&g->cv, &g->mu);
    pthread_mutex_unlock(&g->mu);
}

typedef struct th_worker {
    const tlens_model *m;
    const th_job *job;
    const th_result *expect;  /* the sequential result of the job           */
    th_gate *gate;
    int runs, failed_runs, mismatches;
    char first_error[160];
} th_worker;

static void *th_worker_main(void *arg) {
    th_worker *w = (th_worker *)arg;
    th_result seen;
    tlens_ctx *ctx = NULL;
    tlens_error err;
    int k;
    memset(&seen, 0, sizeof seen);
    /* the context is made in the thread: tlens_ctx_new runs concurrently too */
    if (th_ctx_for(w->m, w->job, &seen, &ctx, &err) != TLENS_OK) {
        snprintf(w->first_error, sizeof w->first_error, "%s: cannot make a context", w->job->label);
        th_gate_wait(w->gate);
        return NULL;
    }
    th_gate_wait(w->gate);
    for (k = 0; k < TH_RUNS; k++) {
        w->runs++;
        if (th_run_once(ctx, w->job, &seen) != 0) {
            if (!w->failed_runs++)
                snprintf(w->first_error, sizeof w->first_error, "%s: run %d failed", w->job->label, k);
        } else if (!th_same(&seen, w->expect)) {
            if (!w->mismatches++ && !w->first_error[0])
                snprintf(w->first_error, sizeof w->first_error, "%s: run %d differs from the sequential run",
                         w->job->label, k);
        }
        th_result_free(&seen);
    }
    tlens_ctx_free(ctx);
    return NULL;
}

/* Deterministic pseudo-random token ids below `vocab`. */
static int32_t *th_tokens(int n, int vocab, uint32_t seed) {
    int32_t *t = (int32_t *)malloc((size_t)n * sizeof *t);
    int i;
    if (!t) return NULL;
    for (i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        t[i] = (int32_t)((seed >> 8) % (uint32_t)vocab);
    }
    return t;
}

/* The sequential reference for `job`: its own context, one run. */
static int th_reference(const tlens_model *m, const th_job *job, th_result *out) {
    tlens_ctx *ctx;
    tlens_error err;
    int bad;
    memset(out, 0, sizeof *out);
    if (th_ctx_for(m, job, out, &ctx, &err) != TLENS_OK) return 1;
    bad = th_run_once(ctx, job, out);
    tlens_ctx_free(ctx);
    return bad;
}

/* n_threads workers (jobs alternate between the two prompts), TH_ROUNDS
 * times, each compared with the sequential runs. */
static void th_run_concurrently(int n_threads) {
    tlens_model *m = NULL;
    tlens_error err;
    th_job jobs[2];
    th_result expect[2];
    int i, round, vocab;
    memset(expect, 0, sizeof expect);
    if (tlens_load(&m, TH_MODEL, NULL, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s", err.message);
        return;
    }
    vocab = tlens_model_config(m)->d_vocab;
    /* two prompts of different shapes, so the activation areas differ too */
    memset(jobs, 0, sizeof jobs);
    jobs[0].label = "prompt A [2, 48], optional hooks";
    jobs[0].batch = 2;
    jobs[0].pos = 48;
    jobs[0].optional_hooks = 1;
    jobs[0].tokens = th_tokens(2 * 48, vocab, 1u);
    jobs[1].label = "prompt B [1, 97], head ablation";
    jobs[1].batch = 1;
    jobs[1].pos = 97;
    jobs[1].ablate = "blocks.2.attn.hook_z";
    jobs[1].ablate_head = 1;
    jobs[1].tokens = th_tokens(97, vocab, 2u);
    if (!jobs[0].tokens || !jobs[1].tokens) {
        tt_fail_line(__FILE__, __LINE__, "out of memory");
        goto done;
    }
    for (i = 0; i < 2; i++)
        if (th_reference(m, &jobs[i], &expect[i]) != 0) {
            tt_fail_line(__FILE__, __LINE__, "the sequential run of %s failed", jobs[i].label);
            goto done;
        }
    /* the two references must differ, or the test could not tell them apart */
    TT_CHECK(!th_same(&expect[0], &expect[1]));
    TT_CHECK(expect[0].pattern_calls == 4 && expect[1].pattern_calls == 4);
    for (round = 0; round < TH_ROUNDS; round++) {
        pthread_t tid[TH_MAX_THREADS];
        th_worker w[TH_MAX_THREADS];
        int started[TH_MAX_THREADS];
        th_gate gate;
        pthread_mutex_init(&gate.mu, NULL);
        pthread_cond_init(&gate.cv, NULL);
        gate.waiting = 0;
        gate.total = n_threads;
        memset(w, 0, sizeof w);
        for (i = 0; i < n_threads; i++) {
            w[i].m = m;
            w[i].job = &jobs[i % 2];
            w[i].expect = &expect[i % 2];
            w[i].gate = &gate;
            started[i] = pthread_create(&tid[i], NULL, th_worker_main, &w[i]) == 0;
            if (!started[i]) {
                /* let the others through the gate: count this one as there */
                pthread_mutex_lock(&gate.mu);
                gate.total--;
                pthread_cond_broadcast(&gate.cv);
                pthread_mutex_unlock(&gate.mu);
            }
            TT_CHECK(started[i]);
        }
        for (i = 0; i < n_threads; i++) {
            if (!started[i]) continue;
            pthread_join(tid[i], NULL);
            if (w[i].first_error[0])
                tt_fail_line(__FILE__, __LINE__, "round %d, thread %d: %s (%d of %d runs failed, %d differed)", round,
                             i, w[i].first_error, w[i].failed_runs, w[i].runs, w[i].mismatches);
            TT_CHECK_INT(w[i].runs, TH_RUNS);
        }
        pthread_cond_destroy(&gate.cv);
        pthread_mutex_destroy(&gate.mu);
    }
done:
    for (i = 0; i < 2; i++) {
        th_result_free(&expect[i]);
        free(jobs[i].tokens);
    }
    tlens_free(m);
}

/* Two threads, two different prompts, at the same time: each gets, bit
 * for bit, the logits, cache and hook sums of running it alone. */
static void test_threads_two_prompts_match_sequential(void) { th_run_concurrently(2); }

/* Four threads on two cores (two per prompt): more contexts than cores. */
static void test_threads_four_contexts_match_sequential(void) { th_run_concurrently(4); }

/* ------------------------------------------------------------------------
 * The tokenizer, shared by two threads encoding different texts
 * ---------------------------------------------------------------------- */
typedef struct th_tok_worker {
    const tlens_tokenizer *tok;
    const char *text;
    const int32_t *expect;
    size_t n_expect;
    th_gate *gate;
    int bad;
} th_tok_worker;

static void *th_tok_main(void *arg) {
    th_tok_worker *w = (th_tok_worker *)arg;
    size_t len = strlen(w->text), n = 0;
    int32_t *ids = (int32_t *)malloc((len + 1) * sizeof *ids);
    char *back = (char *)malloc(len + 1);
    int k;
    th_gate_wait(w->gate);
    for (k = 0; k < 20 && ids && back; k++) {
        size_t blen = 0;
        if (tlens_encode(w->tok, w->text, len, 1, ids, len + 1, &n, NULL) != TLENS_OK || n != w->n_expect ||
            memcmp(ids, w->expect, n * sizeof *ids) != 0)
            w->bad++;
        /* and back: decoding without the BOS gives the text */
        if (tlens_decode(w->tok, ids + 1, n - 1, back, len + 1, &blen, NULL) != TLENS_OK || blen != len ||
            memcmp(back, w->text, len) != 0)
            w->bad++;
    }
    if (!ids || !back) w->bad++;
    free(ids);
    free(back);
    return NULL;
}

static void test_threads_share_a_tokenizer(void) {
    static const char *const texts[2] = {
        "A model loaded once can be used from several threads at the same time, each with its own run state.",
        "Mixed scripts: \xce\xb1\xce\xb2\xce\xb3 \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e, code `int x = 42;`, "
        "numbers 3.14159 and 2718, and    spaces<|endoftext|>after.",
    };
    tlens_tokenizer *tok = NULL;
    tlens_error err;
    int32_t *expect[2] = {NULL, NULL};
    size_t n_expect[2] = {0, 0};
    pthread_t tid[2];
    th_tok_worker w[2];
    th_gate gate;
    int i, started[2];
    if (tlens_tokenizer_load(&tok, "tokenizer", NULL, &err) != TLENS_OK) {
        tt_fail_line(__FILE__, __LINE__, "%s", err.message);
        return;
    }
    for (i = 0; i < 2; i++) {
        size_t len = strlen(texts[i]);
        expect[i] = (int32_t *)malloc((len + 1) * sizeof(int32_t));
        if (!expect[i] || tlens_encode(tok, texts[i], len, 1, expect[i], len + 1, &n_expect[i], &err) != TLENS_OK) {
            tt_fail_line(__FILE__, __LINE__, "the sequential encoding of text %d failed", i);
            free(expect[0]);
            free(expect[1]);
            tlens_tokenizer_free(tok);
            return;
        }
    }
    pthread_mutex_init(&gate.mu, NULL);
    pthread_cond_init(&gate.cv, NULL);
    gate.waiting = 0;
    gate.total = 2;
    memset(w, 0, sizeof w);
    for (i = 0; i < 2; i++) {
        w[i].tok = tok;
        w[i].text = texts[i];
        w[i].expect = expect[i];
        w[i].n_expect = n_expect[i];
        w[i].gate = &gate;
        started[i] = pthread_create(&tid[i], NULL, th_tok_main, &w[i]) == 0;
        if (!started[i]) {
            pthread_mutex_lock(&gate.mu);
            gate.total--;
            pthread_cond_broadcast(&gate.cv);
            pthread_mutex_unlock(&gate.mu);
        }
        TT_CHECK(started[i]);
    }
    for (i = 0; i < 2; i++) {
        if (!started[i]) continue;
        pthread_join(tid[i], NULL);
        TT_CHECK_INT(w[i].bad, 0);
    }
    pthread_cond_destroy(&gate.cv);
    pthread_mutex_destroy(&gate.mu);
    for (i = 0; i < 2; i++) free(expect[i]);
    tlens_tokenizer_free(tok);
}

void tests_threads(void) {
    TT_RUN(test_threads_two_prompts_match_sequential);
    TT_RUN(test_threads_four_contexts_match_sequential);
    TT_RUN(test_threads_share_a_tokenizer);
}
