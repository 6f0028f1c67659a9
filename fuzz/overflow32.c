/* overflow32: reproducers of unchecked size arithmetic that overflows on
 * hosts with a 32-bit size_t (found by reading tlens.h, see the audit in
 * the fuzzing report). Built with `clang -m32 -fsanitize=address` by
 * `make fuzz-overflow32`, which runs each case in its own process: before
 * a fix each ends in an AddressSanitizer report; after it, in a clean error
 * (out of memory) or a normal run. On a 64-bit host the same inputs fail
 * cleanly, which is why these are not in tests/test_regressions.c as they
 * are (it has their 64-bit analogues: sizes whose products reach 2^64).
 *
 *   overflow32 kv DIR    16 layers, d_model 64, n_ctx 65536 (a 20 MB model),
 *                        run with the key/value cache at batch 64:
 *                        n_layers * batch * n_ctx * d_model = 2^32 wraps to 0
 *                        in tlens__kv_reserve; the cache is 1 byte.
 *   overflow32 att DIR   256 heads of width 1, n_ctx 4096 (8 MB), 4095 tokens
 *                        with the pattern cached: B*H*T*(kv+T) ~ 2^32 floats
 *                        and the other terms push tlens__area_layout's sum past
 *                        2^32; the area is ~90 MB, the scores write 17 GB.
 *   overflow32 wire DIR  a 134 MB .tlens of 255 layers, d_model 1, d_mlp 2^20,
 *                        whose tensors share one data block (only bounds and
 *                        alignment are checked), loaded from a misaligned
 *                        buffer: the sum of the padded tensor sizes, 36 GB,
 *                        wraps in tlens__tlens_wire and the copies overflow.
 * DIR is a folder for the model files (kv, att).
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const char *what, const tlens_error *err) {
    fprintf(stderr, "%s: %s\n", what, err ? err->message : "failed");
    exit(2);
}

/* A random model of this shape, saved and loaded back as a .tlens file (so
 * its sizes come from a file). */
static tlens_model *saved_model(const char *dir, int L, int D, int H, int M, int V, int P) {
    char path[512];
    tlens_config c;
    tlens_model *m;
    tlens_error err;
    memset(&c, 0, sizeof c);
    c.n_layers = L; c.d_model = D; c.n_heads = H; c.d_mlp = M; c.d_vocab = V; c.n_ctx = P; c.tied = 1;
    snprintf(path, sizeof path, "%s/overflow32.tlens", dir);
    if (tlens_init_random(&m, &c, NULL, 1, &err)) die("init", &err);
    if (tlens_save(m, path, &err)) die("save", &err);
    tlens_free(m);
    if (tlens_load(&m, path, NULL, &err)) die("load", &err);
    return m;
}

static tlens_result case_kv(const char *dir, tlens_error *err) {
    static int32_t tokens[64];
    tlens_model *m = saved_model(dir, 16, 64, 1, 64, 16, 65536);
    tlens_run_options o;
    tlens_ctx *ctx;
    tlens_result r;
    memset(&o, 0, sizeof o);
    o.use_kv_cache = 1;
    if (tlens_ctx_new(&ctx, m, err)) die("ctx", err);
    r = tlens_run_ex(ctx, tokens, 64, 1, &o, err);
    tlens_ctx_free(ctx);
    tlens_free(m);
    return r;
}

static tlens_result case_att(const char *dir, tlens_error *err) {
    int32_t *tokens = (int32_t *)calloc(4095, sizeof *tokens);
    tlens_model *m = saved_model(dir, 1, 256, 256, 256, 16, 4096);
    tlens_ctx *ctx;
    tlens_result r;
    if (!tokens) die("memory", NULL);
    if (tlens_ctx_new(&ctx, m, err)) die("ctx", err);
    tlens_cache_select(ctx, "blocks.0.attn.hook_pattern");
    r = tlens_run(ctx, tokens, 1, 4095, err);
    tlens_ctx_free(ctx);
    tlens_free(m);
    free(tokens);
    return r;
}

/* Header and table of the model in the comment above, every tensor at the
 * same offset; the file is as long as the largest tensor needs. */
static tlens_result case_wire(tlens_error *err) {
    enum { L = 255 };
    unsigned char h[TLENS__HEADER_SIZE], *image;
    tlens_model fake, *m;
    tlens__param *t = (tlens__param *)malloc((L * 16 + 8) * sizeof *t);
    size_t largest = 0;
    uint64_t data;
    int n, i;
    tlens_result r;
    memset(&fake, 0, sizeof fake);
    fake.cfg.n_layers = L; fake.cfg.d_model = 1; fake.cfg.n_heads = 1; fake.cfg.d_mlp = 1 << 20;
    fake.cfg.d_vocab = 1; fake.cfg.n_ctx = 1; fake.cfg.tied = 1;
    fake.processing = 15; fake.wdtype = TLENS_F32;
    fake.W_E = &fake; /* non-NULL: the table has embed.W_E */
    fake.blocks = (tlens__block *)calloc(L, sizeof *fake.blocks);
    if (!t || !fake.blocks) die("memory", NULL);
    n = tlens__param_table(&fake, t);
    for (i = 0; i < n; i++)
        if (tlens__param_bytes(&t[i], TLENS_F32) > largest) largest = tlens__param_bytes(&t[i], TLENS_F32);
    data = (TLENS__HEADER_SIZE + (uint64_t)n * TLENS__TABLE_ROW + 63u) & ~(uint64_t)63u;
    memset(h, 0, sizeof h);
    memcpy(h, TLENS__MAGIC, 8);
    tlens__put32(h + 8, TLENS__FORMAT_VERSION);
    tlens__put32(h + 12, TLENS__HEADER_SIZE);
    tlens__put32(h + 16, L); tlens__put32(h + 20, 1); tlens__put32(h + 24, 1); tlens__put32(h + 28, 1u << 20);
    tlens__put32(h + 32, 1); tlens__put32(h + 36, 1); tlens__put32(h + 48, 1);
    tlens__put32(h + 52, tlens__bits_from_f32(1e-5f));
    tlens__put32(h + 56, 15); tlens__put32(h + 60, TLENS_F32); tlens__put32(h + 64, TLENS__MAT_LAYOUT);
    tlens__put32(h + 68, (uint32_t)n);
    tlens__put64(h + 72, TLENS__HEADER_SIZE);
    tlens__put64(h + 112, data);
    /* the image in memory, one byte off alignment so that it is copied */
    image = (unsigned char *)calloc((size_t)(data + largest) + 1, 1);
    if (!image) die("memory for the image", NULL);
    memcpy(image + 1, h, sizeof h);
    for (i = 0; i < n; i++) {
        unsigned char *row = image + 1 + TLENS__HEADER_SIZE + (size_t)i * TLENS__TABLE_ROW;
        memcpy(row, t[i].name, strlen(t[i].name));
        tlens__put32(row + 40, (uint32_t)t[i].kind);
        tlens__put32(row + 44, (uint32_t)t[i].rows);
        tlens__put32(row + 48, (uint32_t)t[i].cols);
        tlens__put64(row + 56, data);
    }
    r = tlens_load_memory(&m, image + 1, (size_t)(data + largest), NULL, err);
    if (!r) tlens_free(m);
    free(image);
    free(fake.blocks);
    free(t);
    return r;
}

int main(int argc, char **argv) {
    tlens_error err;
    tlens_result r;
    memset(&err, 0, sizeof err);
    if (argc != 3) {
        fprintf(stderr, "usage: %s kv|att|wire DIR\n", argv[0]);
        return 2;
    }
    printf("%s (size_t is %u bits)\n", argv[1], (unsigned)(8 * sizeof(size_t)));
    if (!strcmp(argv[1], "kv")) r = case_kv(argv[2], &err);
    else if (!strcmp(argv[1], "att")) r = case_att(argv[2], &err);
    else if (!strcmp(argv[1], "wire")) r = case_wire(&err);
    else return 2;
    printf("%s: result %d%s%s (no memory error)\n", argv[1], (int)r, r ? ": " : "", err.message);
    return 0;
}
