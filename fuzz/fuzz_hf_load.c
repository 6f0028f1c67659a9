/* fuzz_hf_load: tlens_load of a Hugging Face folder whose model.safetensors
 * is the input.
 *
 * At start-up two folders are made in a per-process directory under /tmp:
 *   tiny/   the config.json of tests/data/reference/tiny (2 layers, d_model
 *           64, vocabulary 1000), as the task asks: a real checkpoint for
 *           it is 676 KB, so mostly its header checks are reached;
 *   micro/  1 layer, d_model 8, 2 heads, vocabulary 16, n_ctx 8: a whole
 *           valid checkpoint is ~7 KB, so the fuzzer also reaches reading,
 *           transposing, weight processing and the forward pass.
 * micro/model.safetensors is a symbolic link to tiny/model.safetensors, so
 * each input is written once and loaded against both. When a model loads
 * it runs two tokens and is loaded again raw, in bfloat16.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "fuzz_util.h"

#include <sys/stat.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* tests/data/reference/tiny/model/config.json */
static const char fuzz_tiny_config[] =
    "{\n  \"architectures\": [\n    \"GPT2LMHeadModel\"\n  ],\n  \"model_type\": \"gpt2\",\n"
    "  \"activation_function\": \"gelu_new\",\n  \"layer_norm_epsilon\": 1e-05,\n  \"n_layer\": 2,\n"
    "  \"n_embd\": 64,\n  \"n_head\": 4,\n  \"n_ctx\": 128,\n  \"n_positions\": 128,\n  \"vocab_size\": 1000,\n"
    "  \"n_inner\": null,\n  \"scale_attn_by_inverse_layer_idx\": false,\n  \"scale_attn_weights\": true,\n"
    "  \"reorder_and_upcast_attn\": false,\n  \"tie_word_embeddings\": true\n}\n";

/* The micro model (fuzz/corpus/hf_load/micro-*.safetensors are for it). */
static const char fuzz_micro_config[] =
    "{\"activation_function\": \"gelu_new\", \"layer_norm_epsilon\": 1e-05, \"n_layer\": 1, \"n_embd\": 8,"
    " \"n_head\": 2, \"n_positions\": 8, \"vocab_size\": 16, \"n_inner\": null}\n";

static const char *fuzz_tiny_dir, *fuzz_micro_dir, *fuzz_weights;

static void fuzz_make_dir(const char *path) {
    if (mkdir(path, 0700) != 0) {
        perror(path);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_tiny_dir = fuzz_path("tiny");
    fuzz_micro_dir = fuzz_path("micro");
    fuzz_make_dir(fuzz_tiny_dir);
    fuzz_make_dir(fuzz_micro_dir);
    fuzz_write_file(fuzz_path("tiny/config.json"), fuzz_tiny_config, sizeof fuzz_tiny_config - 1);
    fuzz_write_file(fuzz_path("micro/config.json"), fuzz_micro_config, sizeof fuzz_micro_config - 1);
    fuzz_weights = fuzz_path("tiny/model.safetensors");
    if (symlink("../tiny/model.safetensors", fuzz_path("micro/model.safetensors")) != 0) {
        perror("symlink");
        abort();
    }
    return 0;
}

static void fuzz_run_two_tokens(const tlens_model *m) {
    const tlens_config *c = tlens_model_config(m);
    int32_t tokens[2] = {0, c->d_vocab - 1};
    int pos = c->n_ctx >= 2 ? 2 : 1;
    tlens_ctx *ctx;
    tlens_error err;
    tlens_result r = tlens_ctx_new(&ctx, m, &err);
    FUZZ_CHECK(r == TLENS_OK, "ctx: %s", err.message);
    r = tlens_run(ctx, tokens, 1, pos, &err);
    FUZZ_CHECK(r == TLENS_OK || r == TLENS_ERR_NOMEM, "run: %s", err.message);
    tlens_ctx_free(ctx);
}

/* Load `dir`: 1 when it loaded (and ran), 0 when it failed cleanly. */
static int fuzz_load(const char *dir, int raw, tlens_dtype dt) {
    tlens_load_options o;
    tlens_model *m = (tlens_model *)(uintptr_t)1;
    tlens_error err;
    tlens_result r;
    memset(&o, 0, sizeof o);
    o.raw = raw;
    o.weight_dtype = dt;
    o.no_tokenizer = 1;
    o.allocator = fuzz_allocator();
    r = tlens_load(&m, dir, &o, &err);
    if (r != TLENS_OK) {
        FUZZ_CHECK(m == NULL, "failed load left *out set");
        FUZZ_CHECK_ERROR(r, err);
        return 0;
    }
    fuzz_run_two_tokens(m);
    tlens_free(m);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_write_file(fuzz_weights, data, size);
    if (fuzz_load(fuzz_tiny_dir, 0, TLENS_DTYPE_AUTO)) fuzz_load(fuzz_tiny_dir, 1, TLENS_BF16);
    if (fuzz_load(fuzz_micro_dir, 0, TLENS_DTYPE_AUTO)) fuzz_load(fuzz_micro_dir, 1, TLENS_BF16);
    return 0;
}
