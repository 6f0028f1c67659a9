/* bench - tlens' speed and memory on GPT-2 small, against PyTorch.
 *
 * Builds a GPT-2 small with random weights in memory (12 layers, d_model
 * 768, vocabulary 50257; processed as from_pretrained does) and prints one
 * figure per line, the median of several runs:
 *
 *   prefill_ms T=<T> <ms>          logits for all T positions
 *   prefill_streamed_ms T=1024     the same, the logits handed over a block at
 *                                  a time (tlens_run_options.logits_rows)
 *   decode_tok_s <tok/s>           one token at a time with the key/value
 *                                  cache, after a 16-token prompt
 *   decode_tok_s_f16 <tok/s>       the same with float16 weights
 *   hooks_compiled_out_ms T=128, hooks_idle_overhead_pct: the pass with
 *                                  no hook registered against the same pass
 *                                  built with TLENS_NO_HOOKS
 *   cache_all_overhead_pct T=1024  caching every default hook point
 *   weights_mb                     the model as a .tlens file
 *   peak_rss_mb                    peak resident memory of loading that file
 *                                  and a T=1024 prefill (a fresh process);
 *   peak_rss_mb_last_logits        the same keeping only the last position's
 *                                  logits (tlens_run_options.last_logits_only)
 *   peak_rss_mb_streamed_logits    the same computing every position's logits
 *                                  a block at a time (logits_rows)
 *
 * When python3 with torch is installed, bench/bench_torch.py runs the same
 * model in PyTorch (2 threads, OMP_WAIT_POLICY=PASSIVE) in the same run and
 * the ratios are printed (vs_torch_*: tlens time / torch time for prefill,
 * tlens tok/s / torch tok/s for decoding). Matmul figures: bench_matmul.
 */
#define TLENS_STATIC
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "bench_timer.h"

#include <stdio.h>
#include <string.h>

void *bench_nohooks_new(const tlens_config *cfg);
double bench_nohooks_run_ms(void *state, const int32_t *tok, int T);
void bench_nohooks_free(void *state);

static tlens_config gpt2_small(void) {
    tlens_config c;
    memset(&c, 0, sizeof c);
    c.n_layers = 12;
    c.d_model = 768;
    c.n_heads = 12;
    c.d_mlp = 3072;
    c.d_vocab = 50257;
    c.n_ctx = 1024;
    c.tied = 1;
    return c;
}

static tlens_model *make_model(tlens_dtype dt) {
    tlens_config c = gpt2_small();
    tlens_load_options o;
    tlens_model *m = NULL;
    tlens_error err;
    memset(&o, 0, sizeof o);
    o.weight_dtype = dt;
    if (tlens_init_random(&m, &c, &o, 1, &err) != TLENS_OK) fprintf(stderr, "bench: %s\n", err.message);
    return m;
}

/* Tokens per second decoding `steps` tokens after a 16-token prompt. */
static double decode_tok_s(tlens_model *m, int steps) {
    tlens_ctx *ctx;
    tlens_generate_options g;
    int32_t *prompt = bench_tokens(16, m->cfg.d_vocab), *out = (int32_t *)malloc((size_t)steps * sizeof *out);
    double times[3], t0;
    int i, n;
    tlens_run_options ro;
    memset(&g, 0, sizeof g);
    memset(&ro, 0, sizeof ro);
    g.max_new_tokens = steps;
    g.no_stop_at_eos = 1;
    tlens_ctx_new(&ctx, m, NULL);
    for (i = 0; i < 3; i++) {
        /* time only the steps after the prompt: run the prompt first */
        ro.use_kv_cache = 1;
        tlens_kv_reset(ctx);
        tlens_run_ex(ctx, prompt, 1, 16, &ro, NULL);
        t0 = bench_now_ms();
        for (n = 0; n < steps; n++) {
            int32_t tok = prompt[n % 16];
            tlens_run_ex(ctx, &tok, 1, 1, &ro, NULL);
        }
        times[i] = steps / ((bench_now_ms() - t0) / 1e3);
    }
    tlens_ctx_free(ctx);
    free(prompt);
    free(out);
    return bench_median(times, 3);
}

static double vm_hwm_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    double kb = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    fclose(f);
    return kb / 1024.0;
}

/* What a streamed run does with its logits here: keep each row's first
 * (so that the figures are the pass's cost, not the caller's). */
static void bench_row_first(void *user, int row0, int n, const float *logits) {
    float *first = (float *)user;
    int r;
    for (r = 0; r < n; r++) first[row0 + r] = logits[(size_t)r * 50257];
}

/* Peak resident memory of loading a .tlens file and running a T=1024
 * prefill, in a fresh process (this program run with --peak-rss FILE), so
 * that nothing else this run did counts. mode 0 keeps every position's
 * logits; 1 the last position's only (the prefill before generating); 2
 * computes every position's logits and streams them (logits_rows). */
static int peak_rss_child(const char *path, int mode) {
    static const char *names[3] = {"peak_rss_mb", "peak_rss_mb_last_logits", "peak_rss_mb_streamed_logits"};
    static float first[1024];
    tlens_model *m;
    tlens_ctx *ctx;
    tlens_error err;
    tlens_run_options ro;
    int32_t *tok = bench_tokens(1024, 50257);
    memset(&ro, 0, sizeof ro);
    ro.last_logits_only = mode == 1;
    if (mode == 2) {
        ro.logits_rows = bench_row_first;
        ro.logits_user = first;
    }
    if (tlens_load(&m, path, NULL, &err) != TLENS_OK) {
        fprintf(stderr, "bench: %s\n", err.message);
        return 1;
    }
    tlens_ctx_new(&ctx, m, NULL);
    tlens_run_ex(ctx, tok, 1, 1024, &ro, NULL);
    printf("%s %.1f\n", names[mode], vm_hwm_mb());
    return 0;
}

static void peak_rss(tlens_model *m) {
    const char *path = "build/bench-gpt2-small.tlens";
    FILE *f;
    char cmd[256], line[256];
    int mode;
    if (tlens_save(m, path, NULL) != TLENS_OK) return;
    f = fopen(path, "rb");
    if (f) {
        fseek(f, 0, SEEK_END);
        printf("weights_mb %.1f\n", (double)ftell(f) / (1024.0 * 1024.0));
        fclose(f);
    }
    for (mode = 0; mode < 3; mode++) {
        FILE *p;
        snprintf(cmd, sizeof cmd, "./build/bench --peak-rss %s %d", path, mode);
        fflush(stdout);
        p = popen(cmd, "r");
        while (p && fgets(line, sizeof line, p)) fputs(line, stdout);
        if (p) pclose(p);
    }
    remove(path);
}

typedef struct torch_figures { double prefill[3], decode; int ok; } torch_figures;

static torch_figures run_torch(void) {
    torch_figures t;
    FILE *p;
    char line[256];
    static const char *const pythons[] = {"python3", "/usr/bin/python3"};
    const char *py = NULL;
    char cmd[256];
    size_t k;
    memset(&t, 0, sizeof t);
    for (k = 0; k < 2 && !py; k++) {
        snprintf(cmd, sizeof cmd, "%s -c 'import torch' >/dev/null 2>&1", pythons[k]);
        if (system(cmd) == 0) py = pythons[k];
    }
    if (!py) {
        printf("# python3 with torch not found: no PyTorch baseline\n");
        return t;
    }
    snprintf(cmd, sizeof cmd, "OMP_WAIT_POLICY=PASSIVE %s bench/bench_torch.py", py);
    p = popen(cmd, "r");
    while (p && fgets(line, sizeof line, p)) {
        int T;
        double v;
        fputs(line, stdout);
        if (sscanf(line, "torch_prefill_ms T=%d %lf", &T, &v) == 2) t.prefill[T == 16 ? 0 : T == 128 ? 1 : 2] = v;
        if (sscanf(line, "torch_decode_tok_s %lf", &v) == 1) t.decode = v;
    }
    if (p) t.ok = pclose(p) == 0;
    return t;
}

/* The idle hook system's cost: the same T-token pass with hooks compiled
 * in (none registered) and compiled out, alternating run by run so that
 * both see the same machine; medians. */
static void hook_overhead(tlens_ctx *ctx, const tlens_config *cfg, const int32_t *tok, int T) {
    double with[15], without[15], a, b;
    void *nh = bench_nohooks_new(cfg);
    int i;
    tlens_run(ctx, tok, 1, T, NULL);
    bench_nohooks_run_ms(nh, tok, T);
    for (i = 0; i < 15; i++) {
        double t0 = bench_now_ms();
        tlens_run(ctx, tok, 1, T, NULL);
        with[i] = bench_now_ms() - t0;
        without[i] = bench_nohooks_run_ms(nh, tok, T);
    }
    bench_nohooks_free(nh);
    a = bench_median(with, 15);
    b = bench_median(without, 15);
    printf("hooks_compiled_out_ms T=%d %.2f\n", T, b);
    printf("hooks_idle_ms T=%d %.2f\n", T, a);
    printf("hooks_idle_overhead_pct %.2f\n", 100.0 * (a / b - 1.0));
}

int main(int argc, char **argv) {
    static const int Ts[3] = {16, 128, 1024}, reps[3] = {7, 5, 3};
    tlens_config cfg = gpt2_small();
    tlens_model *m, *m16;
    tlens_ctx *ctx;
    double prefill[3], decode, decode16, plain1024, cached1024;
    int i, quick = argc > 1 && !strcmp(argv[1], "--quick");
    torch_figures torch;
    int32_t *tok;
    if (argc > 3 && !strcmp(argv[1], "--peak-rss")) return peak_rss_child(argv[2], atoi(argv[3]));
    tok = bench_tokens(1024, cfg.d_vocab);
    m = make_model(TLENS_F32);
    if (!m) return 1;
    tlens_ctx_new(&ctx, m, NULL);
    for (i = 0; i < (quick ? 2 : 3); i++) {
        prefill[i] = bench_median_ms(ctx, tok, Ts[i], reps[i]);
        printf("prefill_ms T=%d %.2f\n", Ts[i], prefill[i]);
        fflush(stdout);
    }
    decode = decode_tok_s(m, 32);
    printf("decode_tok_s %.2f\n", decode);
    m16 = make_model(TLENS_F16);
    decode16 = decode_tok_s(m16, 32);
    printf("decode_tok_s_f16 %.2f\n", decode16);
    tlens_free(m16);
    hook_overhead(ctx, &cfg, tok, 128);
    if (!quick) {
        static float row_first[1024];
        tlens_run_options ro;
        memset(&ro, 0, sizeof ro);
        ro.logits_rows = bench_row_first;
        ro.logits_user = row_first;
        printf("prefill_streamed_ms T=1024 %.2f\n", bench_median_ms_ex(ctx, tok, 1024, 3, &ro));
        plain1024 = prefill[2];
        tlens_cache_select(ctx, "*");
        cached1024 = bench_median_ms(ctx, tok, 1024, 3);
        tlens_cache_clear(ctx);
        printf("cache_all_ms T=1024 %.2f\n", cached1024);
        printf("cache_all_overhead_pct %.2f\n", 100.0 * (cached1024 / plain1024 - 1.0));
    }
    tlens_ctx_free(ctx);
    peak_rss(m);
    tlens_free(m);
    if (!quick) {
        torch = run_torch();
        if (torch.ok) {
            for (i = 0; i < 3; i++)
                if (torch.prefill[i] > 0) printf("vs_torch_prefill T=%d %.3f\n", Ts[i], prefill[i] / torch.prefill[i]);
            if (torch.decode > 0) printf("vs_torch_decode %.3f\n", decode / torch.decode);
        }
    }
    free(tok);
    return 0;
}
