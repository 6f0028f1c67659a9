/* main.c - tlens on a Cortex-M4, bare metal (no OS, no file system, no
 * malloc): a forward pass of a small GPT-2 compiled into the program.
 *
 * The model is a .tlens file turned into a 64-byte aligned
 * `const unsigned char port_model[]` (model_data.c, made at build time by
 * bin2c from `tlens-convert tests/data/reference/tiny/model`), so
 * tlens_load_memory uses its weights in place, from flash; only the
 * activations come from the arena. The tokens are the reference tokens
 * (tests/data/reference/tiny/tokens.npy, also made into an array).
 *
 * Everything goes out through semihosting, one token per line, for
 * ports/cortex-m/compare.c to check against the host:
 *   config L D H V C             the model as loaded
 *   arena-after-load N           bytes the model itself took from the arena
 *   logits B T V                 then B*T*V lines of float bits in hex,
 *   end-logits                   exact, no decimal rounding on the way
 *   hook-calls N                 a hook ran at every resid_post
 *   cache-sumsq HEX              sum of squares of the cached
 *                                ln_final.hook_normalized (the cache works)
 *   arena-peak N / arena-left N  the arena's high-water mark, and what was
 *                                still allocated after tlens_free (0)
 *   done
 * The exit status is 0 when every call succeeded.
 */
#include <stdint.h>
#include <string.h>

#include "port_arena.h"
#include "semihost.h"
#include "tlens.h"

extern const unsigned char port_model[];
extern const unsigned long port_model_size;
extern const int32_t port_tokens[];
extern const int port_tokens_rows, port_tokens_cols;

/* ---- output: lines buffered into few semihosting calls ---------------- */
static char port_buf[4096];
static size_t port_len;

static void port_flush(void) {
    if (!port_len) return;
    port_buf[port_len] = 0;
    port_write0(port_buf);
    port_len = 0;
}

static void port_puts(const char *s) {
    while (*s) {
        if (port_len + 1 >= sizeof port_buf) port_flush();
        port_buf[port_len++] = *s++;
    }
}

static void port_putu(unsigned long v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v);
    while (n) {
        char c[2] = {tmp[--n], 0};
        port_puts(c);
    }
}

static void port_puthex(uint32_t v) {
    static const char digits[] = "0123456789abcdef";
    char tmp[9];
    int i;
    for (i = 0; i < 8; i++) tmp[i] = digits[(v >> (28 - 4 * i)) & 15u];
    tmp[8] = 0;
    port_puts(tmp);
}

static void port_putf_bits(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    port_puthex(bits);
}

/* TLENS_ASSERT of tlens_impl.c lands here. */
void port_assert_failed(const char *file, int line, const char *expr) {
    port_puts("assert-failed ");
    port_puts(file);
    port_puts(":");
    port_putu((unsigned long)line);
    port_puts(" ");
    port_puts(expr);
    port_puts("\n");
    port_flush();
    port_exit(4);
}

static int port_fail(const char *what, const tlens_error *err) {
    port_puts("error ");
    port_puts(what);
    port_puts(": ");
    port_puts(err->message);
    port_puts("\n");
    port_flush();
    return 1;
}

/* A hook, to show that hooks run here too: counts its calls. */
static int port_count_hook(const char *name, int layer, tlens_tensor *act, void *user) {
    (void)name;
    (void)layer;
    (void)act;
    ++*(int *)user;
    return 0;
}

int main(void) {
    tlens_model *model;
    tlens_ctx *ctx;
    tlens_error err;
    const tlens_config *c;
    const tlens_tensor *logits, *cached;
    port_arena_stats st;
    int hook_calls = 0;
    size_t i, n;
    float sum = 0.0f;

    port_puts("tlens " TLENS_VERSION_STRING " on a Cortex-M, model of ");
    port_putu(port_model_size);
    port_puts(" bytes in flash\n");
    if (tlens_load_memory(&model, port_model, (size_t)port_model_size, NULL, &err) != TLENS_OK)
        return port_fail("tlens_load_memory", &err);
    c = tlens_model_config(model);
    port_puts("config ");
    port_putu((unsigned long)c->n_layers); port_puts(" ");
    port_putu((unsigned long)c->d_model); port_puts(" ");
    port_putu((unsigned long)c->n_heads); port_puts(" ");
    port_putu((unsigned long)c->d_vocab); port_puts(" ");
    port_putu((unsigned long)c->n_ctx); port_puts("\n");
    st = port_arena_get_stats();
    port_puts("arena-after-load ");
    port_putu(st.in_use);
    port_puts("\n");

    if (tlens_ctx_new(&ctx, model, &err) != TLENS_OK) return port_fail("tlens_ctx_new", &err);
    if (!tlens_add_hook(ctx, "blocks.*.hook_resid_post", port_count_hook, &hook_calls) ||
        tlens_cache_select(ctx, "ln_final.hook_normalized") != TLENS_OK) {
        port_puts("error: cannot add the hook or the cache selection\n");
        port_flush();
        return 1;
    }
    if (tlens_run(ctx, port_tokens, port_tokens_rows, port_tokens_cols, &err) != TLENS_OK)
        return port_fail("tlens_run", &err);

    logits = tlens_logits(ctx);
    port_puts("logits ");
    port_putu((unsigned long)logits->shape[0]); port_puts(" ");
    port_putu((unsigned long)logits->shape[1]); port_puts(" ");
    port_putu((unsigned long)logits->shape[2]); port_puts("\n");
    n = tlens_tensor_numel(logits);
    for (i = 0; i < n; i++) {
        port_putf_bits(logits->data[i]);
        port_puts("\n");
    }
    port_puts("end-logits\n");
    port_puts("hook-calls ");
    port_putu((unsigned long)hook_calls);
    port_puts("\n");
    cached = tlens_cache_get(ctx, "ln_final.hook_normalized");
    if (!cached) {
        port_puts("error: ln_final.hook_normalized was not cached\n");
        port_flush();
        return 1;
    }
    for (i = 0, n = tlens_tensor_numel(cached); i < n; i++) sum += cached->data[i] * cached->data[i];
    port_puts("cache-sumsq ");
    port_putf_bits(sum);
    port_puts("\n");

    tlens_ctx_free(ctx);
    tlens_free(model);
    st = port_arena_get_stats();
    port_puts("arena-peak ");
    port_putu(st.peak);
    port_puts("\narena-left ");
    port_putu(st.in_use);
    port_puts("\nalloc-failures ");
    port_putu(st.failed);
    port_puts("\ndone\n");
    port_flush();
    return st.in_use == 0 && st.live == 0 ? 0 : 5;
}
