/* fuzz_vocab: the vocab.json and merges.txt readers.
 *
 * The input is  VOCAB 0xFF MERGES  (cut at the first 0xFF byte; without
 * one, all of it is vocab.json and merges.txt is empty). 0xFF never occurs
 * in UTF-8, so real files never contain the separator, while NULs and every
 * other byte can still appear in both texts. Each text gets a heap block of
 * exactly its length, so a read past its end is an ASan error.
 *
 * A failed load must leave *out NULL and a message. A tokenizer that loads
 * must encode the whole input and decode it back to the same bytes (BPE
 * only ever concatenates tokens, so this holds for every valid vocabulary,
 * not only GPT-2's), and every id must have bytes.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* encode(text) then decode must be text. */
static void fuzz_round_trip(const tlens_tokenizer *tok, const unsigned char *text, size_t size) {
    int32_t *ids = (int32_t *)malloc((size + 1) * sizeof *ids);
    char *back = (char *)malloc(size + 1);
    size_t n = 0, len = 0;
    tlens_error err;
    tlens_result r;
    if (!ids || !back) abort();
    r = tlens_encode(tok, (const char *)text, size, 0, ids, size + 1, &n, &err);
    FUZZ_CHECK(r == TLENS_OK && n <= size, "encode: result %d, %zu ids for %zu bytes: %s", (int)r, n, size,
               err.message);
    r = tlens_decode(tok, ids, n, back, size + 1, &len, &err);
    FUZZ_CHECK(r == TLENS_OK && len == size, "decode: result %d, %zu bytes for %zu: %s", (int)r, len, size,
               err.message);
    FUZZ_CHECK(memcmp(back, text, size) == 0 && back[size] == '\0', "decode(encode(text)) != text");
    free(ids);
    free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *sep = (const uint8_t *)memchr(data, 0xFF, size);
    size_t vocab_len = sep ? (size_t)(sep - data) : size;
    size_t merges_len = sep ? size - vocab_len - 1 : 0;
    unsigned char *vocab = fuzz_copy(data, vocab_len);
    unsigned char *merges = fuzz_copy(sep ? sep + 1 : data, merges_len);
    tlens_tokenizer *tok = (tlens_tokenizer *)(uintptr_t)1; /* must become NULL on failure */
    tlens_error err;
    tlens_result r;
    int i, n;

    r = tlens_tokenizer_load_memory(&tok, (const char *)vocab, vocab_len, (const char *)merges, merges_len, NULL,
                                    &err);
    if (r != TLENS_OK) {
        FUZZ_CHECK(tok == NULL, "failed load left *out set");
        FUZZ_CHECK_ERROR(r, err);
    } else {
        FUZZ_CHECK(tok != NULL && err.code == TLENS_OK, "loaded without a tokenizer");
        n = tlens_tokenizer_vocab_size(tok);
        FUZZ_CHECK(n >= 256, "%d tokens, but every byte needs one", n);
        for (i = 0; i < n; i++) {
            size_t len = 0;
            const char *b = tlens_token_bytes(tok, i, &len);
            FUZZ_CHECK(b && len > 0 && b[len] == '\0', "token %d has no bytes", i);
        }
        fuzz_round_trip(tok, data, size);
        tlens_tokenizer_free(tok);
    }
    free(vocab);
    free(merges);
    return 0;
}
