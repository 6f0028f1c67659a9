/* fuzz_tlens: the .tlens loader, tlens_load_memory.
 *
 * The input is a .tlens image. It is loaded three ways:
 *   1. from a 64-byte aligned copy, default options: a processed float
 *      image is then used in place, without a copy;
 *   2. from a copy one byte off alignment, default options: the tensors are
 *      copied into a parameter buffer (and a raw image is processed);
 *   3. from the aligned copy with raw = 1 and float16 weights: a raw image
 *      is converted, a processed one refused.
 * Each copy is a heap block that ends exactly where the image ends, so a
 * read past the image is an ASan error. When a load succeeds the model
 * runs two tokens, its tokenizer (if the file has one) round-trips a short
 * text, and everything is freed. Allocations above 256 MB are refused
 * (the file may claim a huge model; that must fail as TLENS_ERR_NOMEM).
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_use_model(const tlens_model *m) {
    static const char text[] = "Hello, world! <|endoftext|> \xff\xfe";
    const tlens_config *c = tlens_model_config(m);
    const tlens_tokenizer *tok = tlens_model_tokenizer(m);
    int32_t tokens[2] = {0, c->d_vocab - 1};
    int pos = c->n_ctx >= 2 ? 2 : 1;
    tlens_ctx *ctx;
    tlens_error err;
    tlens_result r = tlens_ctx_new(&ctx, m, &err);
    FUZZ_CHECK(r == TLENS_OK, "ctx: %s", err.message);
    r = tlens_run(ctx, tokens, 1, pos, &err);
    FUZZ_CHECK(r == TLENS_OK || r == TLENS_ERR_NOMEM, "run: %s", err.message);
    tlens_ctx_free(ctx);
    if (tok) {
        int32_t ids[sizeof text];
        char back[sizeof text];
        size_t n = 0, len = 0;
        r = tlens_encode(tok, text, sizeof text - 1, 0, ids, sizeof text, &n, &err);
        FUZZ_CHECK(r == TLENS_OK, "encode: %s", err.message);
        r = tlens_decode(tok, ids, n, back, sizeof back, &len, &err);
        FUZZ_CHECK(r == TLENS_OK && len == sizeof text - 1 && memcmp(back, text, len) == 0, "round trip: %s",
                   err.message);
    }
}

static void fuzz_load(const unsigned char *img, size_t size, int raw, tlens_dtype dt) {
    tlens_load_options o;
    tlens_model *m = (tlens_model *)(uintptr_t)1;
    tlens_error err;
    tlens_result r;
    memset(&o, 0, sizeof o);
    o.raw = raw;
    o.weight_dtype = dt;
    o.allocator = fuzz_allocator();
    r = tlens_load_memory(&m, img, size, &o, &err);
    if (r != TLENS_OK) {
        FUZZ_CHECK(m == NULL, "failed load left *out set");
        FUZZ_CHECK_ERROR(r, err);
        return;
    }
    fuzz_use_model(m);
    tlens_free(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *aligned = NULL, *block;
    /* aligned_alloc needs a multiple of the alignment; posix_memalign does
     * not, so the block ends exactly at the image's end */
    if (posix_memalign((void **)&aligned, 64, size ? size : 1) != 0) abort();
    if (size) memcpy(aligned, data, size);
    block = (unsigned char *)malloc(size + 1);
    if (!block) abort();
    if (size) memcpy(block + 1, data, size);

    fuzz_load(aligned, size, 0, TLENS_DTYPE_AUTO);
    fuzz_load(block + 1, size, 0, TLENS_DTYPE_AUTO);
    fuzz_load(aligned, size, 1, TLENS_F16);
    free(aligned);
    free(block);
    return 0;
}
