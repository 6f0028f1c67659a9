/* fuzz_config: config.json and the JSON reader under it.
 *
 * The input is the text of a config.json, given to the private parser
 * tlens__config_parse (there is no in-memory Hugging Face loader, and a
 * harness that writes a folder per input would be slow). A configuration
 * that parses must pass the library's own limits; a failure must carry
 * its code and a message.
 *
 * The same text also goes through the generic JSON reader: every string
 * node must decode into room of its raw length + 1 (escapes never make a
 * string longer: \uXXXX is 6 bytes for at most 3 of UTF-8, a surrogate
 * pair 12 for 4), and must report (size_t)-1, not overflow, with less room.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check_config(const tlens_config *c) {
    FUZZ_CHECK(c->n_layers >= 1 && c->n_layers <= 4096, "n_layers %d", c->n_layers);
    FUZZ_CHECK(c->d_model >= 1 && c->d_model <= 65536, "d_model %d", c->d_model);
    FUZZ_CHECK(c->n_heads >= 1 && c->d_model % c->n_heads == 0, "n_heads %d, d_model %d", c->n_heads, c->d_model);
    FUZZ_CHECK(c->d_head * c->n_heads == c->d_model, "d_head %d", c->d_head);
    FUZZ_CHECK(c->d_mlp >= 1 && c->d_mlp <= 1 << 20, "d_mlp %d", c->d_mlp);
    FUZZ_CHECK(c->d_vocab >= 1 && c->d_vocab <= 1 << 24, "d_vocab %d", c->d_vocab);
    FUZZ_CHECK(c->n_ctx >= 1 && c->n_ctx <= 1 << 20, "n_ctx %d", c->n_ctx);
    FUZZ_CHECK(c->eps > 0 && c->eps < 1, "eps %g", (double)c->eps);
    FUZZ_CHECK(c->act_fn >= TLENS_ACT_GELU_NEW && c->act_fn <= TLENS_ACT_RELU, "act_fn %d", c->act_fn);
}

/* Decode every string node of the text, with enough room and with too
 * little. */
static void fuzz_json_strings(const char *text, size_t size) {
    tlens__json j;
    tlens_error err;
    int i;
    if (tlens__json_parse(&j, text, size, "x.json", NULL, &err) != TLENS_OK) return;
    for (i = 0; i < j.count; i++) {
        const tlens__json_node *n = &j.nodes[i];
        char *out;
        size_t got, small;
        if (n->type != TLENS__JSON_STRING) continue;
        FUZZ_CHECK(n->text >= text && n->text + n->len <= text + size, "string node outside the text");
        out = (char *)malloc(n->len + 1);
        if (!out) abort();
        got = tlens__json_decode(n, out, n->len + 1);
        FUZZ_CHECK(got != (size_t)-1 && got <= n->len && out[got] == '\0', "string of %zu bytes decoded to %zu",
                   n->len, got);
        /* room for all but the last byte and its NUL: must refuse */
        if (got > 0) {
            small = got;
            FUZZ_CHECK(tlens__json_decode(n, out, small) == (size_t)-1, "decoded %zu bytes into %zu", got, small);
        }
        free(out);
    }
    tlens__json_free(&j);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = (char *)fuzz_copy(data, size);
    tlens_config cfg;
    tlens_error err;
    tlens_result r;
    memset(&err, 0, sizeof err);
    r = tlens__config_parse(&cfg, text, size, "config.json", NULL, &err);
    if (r == TLENS_OK) fuzz_check_config(&cfg);
    else FUZZ_CHECK_ERROR(r, err);
    fuzz_json_strings(text, size);
    free(text);
    return 0;
}
