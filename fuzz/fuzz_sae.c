/* fuzz_sae: SAELens SAE folders (cfg.json + sae_weights.safetensors).
 *
 * The input is  CFG_JSON 0xFF SAFETENSORS  (cut at the first 0xFF byte;
 * JSON text never holds one), each part in a heap block of exactly its
 * length, given to tlens_sae_load_memory with an allocator that refuses
 * huge blocks. A failed load must leave *out NULL and a message. An SAE
 * that loads must have a config within the loader's limits; it is then
 * attached to a micro model (1 layer, d_model 8, 2 heads; made once) with
 * and without the error term, which must either refuse with a message or
 * run 2 tokens.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check_sae_config(const tlens_sae_config *c) {
    FUZZ_CHECK(c->d_in >= 1 && c->d_in <= 1 << 20, "d_in %d", c->d_in);
    FUZZ_CHECK(c->d_sae >= 1 && c->d_sae <= 1 << 26, "d_sae %d", c->d_sae);
    FUZZ_CHECK(c->architecture >= TLENS_SAE_STANDARD && c->architecture <= TLENS_SAE_JUMPRELU, "architecture %d",
               c->architecture);
    FUZZ_CHECK(c->architecture != TLENS_SAE_TOPK || (c->k >= 1 && c->k <= c->d_sae), "k %d of %d", c->k, c->d_sae);
    FUZZ_CHECK(c->normalize_activations >= TLENS_SAE_NORM_NONE && c->normalize_activations <= TLENS_SAE_NORM_LAYER_NORM,
               "normalize_activations %d", c->normalize_activations);
    FUZZ_CHECK(c->norm_scaling_factor > 0, "norm_scaling_factor %g", (double)c->norm_scaling_factor);
    FUZZ_CHECK(memchr(c->hook_name, '\0', sizeof c->hook_name) != NULL, "hook_name not terminated");
    FUZZ_CHECK(c->hook_head_index >= -1, "hook_head_index %d", c->hook_head_index);
}

/* The micro model and a context on it, for every input. */
static tlens_ctx *fuzz_ctx(void) {
    static tlens_model *m;
    static tlens_ctx *ctx;
    tlens_config c;
    tlens_error err;
    if (ctx) return ctx;
    memset(&c, 0, sizeof c);
    c.n_layers = 1; c.d_model = 8; c.n_heads = 2; c.d_mlp = 32; c.d_vocab = 16; c.n_ctx = 8;
    if (tlens_init_random(&m, &c, NULL, 7, &err) != TLENS_OK || tlens_ctx_new(&ctx, m, &err) != TLENS_OK) abort();
    tlens_cache_select(ctx, "*hook_sae*");
    return ctx;
}

static void fuzz_run(const tlens_sae *sae, int error_term) {
    tlens_ctx *ctx = fuzz_ctx();
    tlens_sae_attach_options o;
    tlens_error err;
    tlens_result r;
    int32_t tok[2] = {1, 5};
    memset(&o, 0, sizeof o);
    o.use_error_term = error_term;
    memset(&err, 0, sizeof err);
    r = tlens_sae_attach(ctx, sae, &o, &err);
    if (r != TLENS_OK) {
        FUZZ_CHECK_ERROR(r, err);
        return;
    }
    r = tlens_run(ctx, tok, 1, 2, &err);
    FUZZ_CHECK(r == TLENS_OK || r == TLENS_ERR_NOMEM, "run: result %d: %s", (int)r, err.message);
    FUZZ_CHECK(tlens_sae_detach(ctx, NULL) == TLENS_OK, "detach");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = (const uint8_t *)memchr(data, 0xFF, size);
    size_t cfg_len = sep ? (size_t)(sep - data) : size, w_len = sep ? size - cfg_len - 1 : 0;
    char *cfg = (char *)fuzz_copy(data, cfg_len);
    unsigned char *w = fuzz_copy(sep ? sep + 1 : data, w_len);
    tlens_sae_load_options o;
    tlens_sae *sae = (tlens_sae *)cfg; /* must become NULL on failure */
    tlens_error err;
    tlens_result r;
    memset(&o, 0, sizeof o);
    o.allocator = fuzz_allocator();
    memset(&err, 0, sizeof err);
    r = tlens_sae_load_memory(&sae, cfg, cfg_len, w, w_len, &o, &err);
    if (r == TLENS_OK) {
        fuzz_check_sae_config(tlens_sae_get_config(sae));
        fuzz_run(sae, 0);
        fuzz_run(sae, 1);
        tlens_sae_free(sae);
    } else {
        FUZZ_CHECK_ERROR(r, err);
        FUZZ_CHECK(sae == NULL, "a failed load left *out set");
    }
    free(cfg);
    free(w);
    return 0;
}
