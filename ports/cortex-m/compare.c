/* compare - check what the Cortex-M program printed (through semihosting,
 * under qemu-system-arm) against the same model and tokens run here, on
 * the host.
 *
 *   compare MODEL.tlens TOKENS.npy TARGET_OUTPUT [REFERENCE.safetensors]
 *
 * The host loads the same .tlens bytes with tlens_load_memory (from a
 * 64-byte aligned copy, in place, as the target does), runs the same
 * tokens with the same cache selection, and requires:
 *   - the target's config and logits shape equal the host's;
 *   - every logit within 1e-4 of the host's (the target printed the exact
 *     float bits; the kernels differ: scalar C with the Cortex-M4's FPU
 *     there, SIMD here, so the last bits may differ);
 *   - the hook ran once per layer, the cached activation's sum of squares
 *     agrees (relative 1e-4), the arena was empty again after tlens_free
 *     and no allocation failed;
 *   - with REFERENCE (TransformerLens' activations.safetensors), the
 *     target's logits also within 1e-4 + 1e-4 |ref| of TransformerLens'.
 * Prints the figures and "PASS" or "FAIL: why"; exits 0 only on PASS.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tests/test_util.h"

static int failures;

static void fail(const char *what) {
    printf("  FAIL: %s\n", what);
    failures++;
}

/* The next line of the target's output (without the newline), or NULL. */
static char *next_line(char **p) {
    char *s = *p, *e;
    if (!s || !*s) return NULL;
    e = strchr(s, '\n');
    if (e) {
        *e = 0;
        *p = e + 1;
    } else {
        *p = s + strlen(s);
    }
    return s;
}

static float bits_to_float(const char *hex, int *ok) {
    char *end;
    unsigned long v = strtoul(hex, &end, 16);
    uint32_t b = (uint32_t)v;
    float f;
    *ok = end != hex && *end == 0 && end - hex == 8;
    memcpy(&f, &b, sizeof f);
    return f;
}

int main(int argc, char **argv) {
    tlens_model *model = NULL;
    tlens_ctx *ctx = NULL;
    tlens_error err;
    size_t msize, osize, i, n = 0, got = 0;
    unsigned char *raw, *aligned_buf, *aligned;
    char *out, *p, *line, msg[256];
    int32_t *tokens;
    int rows, cols, hook_calls = -1, done = 0, seen_config = 0, ok;
    long arena_left = -1, alloc_failures = -1, arena_peak = -1;
    float target_sumsq = NAN, host_sumsq = 0.0f;
    double max_host = 0, max_ref = 0;
    const tlens_tensor *lg, *cached;
    const tlens_config *c;
    float *target = NULL;
    tu_file ref;
    if (argc != 4 && argc != 5) {
        fprintf(stderr, "usage: compare MODEL.tlens TOKENS.npy TARGET_OUTPUT [REFERENCE.safetensors]\n");
        return 2;
    }
    raw = tu_read_file(argv[1], &msize);
    tokens = tu_read_npy_tokens(argv[2], &rows, &cols);
    out = (char *)tu_read_file(argv[3], &osize);
    if (!raw || !tokens || !out) {
        printf("FAIL: cannot read %s\n", !raw ? argv[1] : !tokens ? argv[2] : argv[3]);
        return 1;
    }
    /* a 64-byte aligned copy, so the host too uses the weights in place */
    aligned_buf = (unsigned char *)malloc(msize + 64);
    aligned = aligned_buf + (64 - (uintptr_t)aligned_buf % 64) % 64;
    memcpy(aligned, raw, msize);
    if (tlens_load_memory(&model, aligned, msize, NULL, &err) != TLENS_OK ||
        tlens_ctx_new(&ctx, model, &err) != TLENS_OK ||
        tlens_cache_select(ctx, "ln_final.hook_normalized") != TLENS_OK ||
        tlens_run(ctx, tokens, rows, cols, &err) != TLENS_OK) {
        printf("FAIL: the host run: %s\n", err.message);
        return 1;
    }
    c = tlens_model_config(model);
    lg = tlens_logits(ctx);
    cached = tlens_cache_get(ctx, "ln_final.hook_normalized");
    for (i = 0; i < tlens_tensor_numel(cached); i++) host_sumsq += cached->data[i] * cached->data[i];

    for (p = out; (line = next_line(&p)) != NULL;) {
        int a, b, d, e, f;
        if (sscanf(line, "config %d %d %d %d %d", &a, &b, &d, &e, &f) == 5) {
            seen_config = 1;
            if (a != c->n_layers || b != c->d_model || d != c->n_heads || e != c->d_vocab || f != c->n_ctx)
                fail("the target's config differs from the host's");
        } else if (sscanf(line, "logits %d %d %d", &a, &b, &d) == 3) {
            if (a != lg->shape[0] || b != lg->shape[1] || d != lg->shape[2]) {
                fail("the target's logits have another shape");
                break;
            }
            n = tlens_tensor_numel(lg);
            target = (float *)calloc(n, sizeof(float));
            for (got = 0; got < n && (line = next_line(&p)) != NULL && strcmp(line, "end-logits") != 0; got++) {
                target[got] = bits_to_float(line, &ok);
                if (!ok) {
                    snprintf(msg, sizeof msg, "logit %lu: not 8 hex digits: \"%.20s\"", (unsigned long)got, line);
                    fail(msg);
                    break;
                }
            }
        } else if (sscanf(line, "hook-calls %d", &a) == 1) {
            hook_calls = a;
        } else if (!strncmp(line, "cache-sumsq ", 12)) {
            target_sumsq = bits_to_float(line + 12, &ok);
        } else if (sscanf(line, "arena-peak %ld", &arena_peak) == 1) {
        } else if (sscanf(line, "arena-left %ld", &arena_left) == 1) {
        } else if (sscanf(line, "alloc-failures %ld", &alloc_failures) == 1) {
        } else if (!strcmp(line, "done")) {
            done = 1;
        } else if (!strncmp(line, "error", 5) || !strncmp(line, "FAULT", 5) || !strncmp(line, "assert", 6)) {
            snprintf(msg, sizeof msg, "the target says: %.200s", line);
            fail(msg);
        }
    }
    if (!seen_config) fail("no config line from the target");
    if (!target || got != n) {
        snprintf(msg, sizeof msg, "the target printed %lu of %lu logits", (unsigned long)got, (unsigned long)n);
        fail(msg);
    } else {
        size_t worst = 0;
        for (i = 0; i < n; i++) {
            double dlt = fabs((double)target[i] - (double)lg->data[i]);
            if (!(dlt <= max_host)) { /* NaN lands here too */
                max_host = dlt;
                worst = i;
            }
        }
        printf("  target vs host: %lu logits [%d, %d, %d], max |diff| %.3g (at %lu), tolerance 1e-4\n",
               (unsigned long)n, lg->shape[0], lg->shape[1], lg->shape[2], max_host, (unsigned long)worst);
        if (!(max_host <= 1e-4)) fail("a logit differs from the host's by more than 1e-4");
        if (argc == 5) {
            int k, found = 0;
            if (!tu_read_safetensors(argv[4], &ref)) {
                fail("cannot read the reference activations");
            } else {
                for (k = 0; k < ref.n; k++) {
                    const tu_tensor *t = &ref.t[k];
                    if (strcmp(t->name, "logits") != 0 || !t->f32) continue;
                    found = 1;
                    if (t->numel != n) {
                        fail("the reference logits have another size");
                        break;
                    }
                    for (i = 0; i < n; i++) {
                        double dlt = fabs((double)target[i] - (double)t->f32[i]);
                        if (dlt > max_ref) max_ref = dlt;
                        if (!(dlt <= 1e-4 + 1e-4 * fabs((double)t->f32[i]))) {
                            fail("a logit differs from TransformerLens' beyond 1e-4 + 1e-4 |ref|");
                            break;
                        }
                    }
                    printf("  target vs TransformerLens: max |diff| %.3g, tolerance 1e-4 + 1e-4 |ref|\n", max_ref);
                }
                if (!found) fail("no float logits in the reference file");
                tu_free_safetensors(&ref);
            }
        }
    }
    if (hook_calls != c->n_layers) fail("the hook did not run once per layer");
    if (!(fabsf(target_sumsq - host_sumsq) <= 1e-4f * fabsf(host_sumsq)))
        fail("the cached ln_final.hook_normalized differs");
    printf("  hook calls %d, cached sum of squares %.7g (host %.7g)\n", hook_calls, (double)target_sumsq,
           (double)host_sumsq);
    printf("  arena: peak %ld bytes, %ld left after tlens_free, %ld failed allocations\n", arena_peak, arena_left,
           alloc_failures);
    if (arena_left != 0 || alloc_failures != 0) fail("the arena was not empty after tlens_free");
    if (!done) fail("the target did not finish (no \"done\" line)");
    tlens_ctx_free(ctx);
    tlens_free(model);
    free(aligned_buf);
    free(raw);
    free(tokens);
    free(out);
    free(target);
    if (failures) {
        printf("FAIL (%d problems)\n", failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
