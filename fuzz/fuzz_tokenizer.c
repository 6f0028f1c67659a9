/* fuzz_tokenizer: GPT-2's tokenizer on arbitrary bytes.
 *
 * The input is a text (any bytes: invalid UTF-8, NULs, "<|endoftext|>").
 * Encoding then decoding must give back exactly the input bytes (the API
 * promises it for every byte string); the id count must respect the
 * documented bound; a too-small id buffer must report the full count and
 * hold the first ids; a one-token text must round-trip through
 * tlens_to_single_token. Any difference aborts.
 *
 * The tokenizer is GPT-2's own (tokenizer/ in the repository), loaded once.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "fuzz_util.h"

#ifndef FUZZ_TOKENIZER_DIR
#define FUZZ_TOKENIZER_DIR "tokenizer"
#endif

static tlens_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    tlens_error err;
    (void)argc;
    (void)argv;
    if (tlens_tokenizer_load(&tok, FUZZ_TOKENIZER_DIR, NULL, &err) != TLENS_OK) {
        fprintf(stderr, "fuzz_tokenizer: %s\n", err.message);
        abort();
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    unsigned char *text = fuzz_copy(data, size);
    int32_t *ids = (int32_t *)malloc((size + 1) * sizeof *ids);
    int32_t *bos_ids = (int32_t *)malloc((size + 1) * sizeof *bos_ids);
    char *back = (char *)malloc(size ? size : 1);
    size_t n = 0, n_bos = 0, len = 0, i;
    tlens_error err;
    tlens_result r;
    if (!ids || !bos_ids || !back) abort();

    /* 1. encode: never fails with room for size + 1 ids; without BOS each
     * id stands for at least one byte, so at most `size` ids */
    r = tlens_encode(tok, (const char *)text, size, 0, ids, size + 1, &n, &err);
    FUZZ_CHECK(r == TLENS_OK, "tlens_encode failed: %s", err.message);
    FUZZ_CHECK(n <= size, "%zu ids for %zu bytes", n, size);

    /* 2. decode: the length first (out NULL), then into exactly that room
     * (no NUL fits then: the API must not write one) */
    r = tlens_decode(tok, ids, n, NULL, 0, &len, &err);
    FUZZ_CHECK(r == TLENS_OK && len == size, "decode length %zu for %zu bytes: %s", len, size, err.message);
    r = tlens_decode(tok, ids, n, back, size, &len, &err);
    FUZZ_CHECK(r == TLENS_OK && len == size, "decode: %s", err.message);
    FUZZ_CHECK(size == 0 || memcmp(back, text, size) == 0, "decode(encode(text)) != text (%zu bytes, %zu ids)",
               size, n);

    /* 3. with BOS and one id of room too few: the full count, the first ids */
    r = tlens_encode(tok, (const char *)text, size, 1, bos_ids, n, &n_bos, &err);
    FUZZ_CHECK(n_bos == n + 1, "with BOS: %zu ids, expected %zu", n_bos, n + 1);
    FUZZ_CHECK(r == TLENS_ERR_ARG, "with BOS and room for %zu of %zu ids: result %d", n, n_bos, (int)r);
    FUZZ_CHECK_ERROR(r, err);
    if (n) {
        FUZZ_CHECK(bos_ids[0] == TLENS_EOT, "first id %d is not BOS", (int)bos_ids[0]);
        for (i = 1; i < n; i++) FUZZ_CHECK(bos_ids[i] == ids[i - 1], "id %zu differs with BOS", i);
    }

    /* 4. a one-token text is its own single token */
    if (n == 1) {
        int32_t id = -1;
        r = tlens_to_single_token(tok, (const char *)text, size, &id, &err);
        FUZZ_CHECK(r == TLENS_OK && id == ids[0], "to_single_token gave %d (result %d), encode %d", (int)id, (int)r,
                   (int)ids[0]);
    }
    free(text);
    free(ids);
    free(bos_ids);
    free(back);
    return 0;
}
