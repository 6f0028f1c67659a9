// main.cpp - tlens from C++: the header's API included by a C++ program,
// linked against the implementation compiled as C++ (g++ / clang++ -x c++,
// by `make test-cxx`, with and without OpenMP).
//
// Loads the tiny reference model, runs the reference tokens with a hook
// written as a C++ lambda and a cache selection, and checks that every
// logit is finite and within 1e-4 + 1e-4 |ref| of TransformerLens' own
// (tests/data/reference/tiny/processed). Run from the repository root.
#include "tlens.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../../tests/test_util.h"

int main() {
    const char *model_dir = "tests/data/reference/tiny/model";
    tlens_model *model = nullptr;
    tlens_ctx *ctx = nullptr;
    tlens_error err;
    if (tlens_load(&model, model_dir, nullptr, &err) != TLENS_OK) {
        std::printf("FAIL: %s\n", err.message);
        return 1;
    }
    if (tlens_ctx_new(&ctx, model, &err) != TLENS_OK) {
        std::printf("FAIL: %s\n", err.message);
        return 1;
    }
    int rows = 0, cols = 0;
    int32_t *tok = tu_read_npy_tokens("tests/data/reference/tiny/tokens.npy", &rows, &cols);
    if (!tok) {
        std::printf("FAIL: cannot read the tokens\n");
        return 1;
    }
    std::vector<int32_t> tokens(tok, tok + rows * cols);
    free(tok);

    // A capture-less lambda converts to the C function pointer tlens wants;
    // the state goes through `user`, as in C.
    std::vector<std::string> seen;
    tlens_add_hook(
        ctx, "blocks.*.attn.hook_pattern",
        [](const char *name, int, tlens_tensor *, void *user) -> int {
            static_cast<std::vector<std::string> *>(user)->push_back(name);
            return 0;
        },
        &seen);
    tlens_cache_select(ctx, "blocks.*.hook_resid_post");
    if (tlens_run(ctx, tokens.data(), rows, cols, &err) != TLENS_OK) {
        std::printf("FAIL: %s\n", err.message);
        return 1;
    }
    const tlens_tensor *lg = tlens_logits(ctx);
    size_t n = tlens_tensor_numel(lg), bad = 0;
    for (size_t i = 0; i < n; i++)
        if (!std::isfinite(lg->data[i])) bad++;
    int failures = 0;
    if (bad) {
        std::printf("FAIL: %zu of %zu logits are not finite\n", bad, n);
        failures++;
    }
    const tlens_config *c = tlens_model_config(model);
    if (seen.size() != static_cast<size_t>(c->n_layers) || seen[0] != "blocks.0.attn.hook_pattern") {
        std::printf("FAIL: the hook saw %zu points\n", seen.size());
        failures++;
    }
    if (!tlens_cache_act(ctx, "resid_post", c->n_layers - 1, nullptr)) {
        std::printf("FAIL: resid_post was not cached\n");
        failures++;
    }

    // TransformerLens' logits for the same tokens
    tu_file ref;
    double worst = 0;
    bool found = false;
    if (tu_read_safetensors("tests/data/reference/tiny/processed/activations.safetensors", &ref)) {
        for (int k = 0; k < ref.n; k++) {
            if (std::strcmp(ref.t[k].name, "logits") != 0 || !ref.t[k].f32 || ref.t[k].numel != n) continue;
            found = true;
            for (size_t i = 0; i < n; i++) {
                double d = std::fabs(static_cast<double>(lg->data[i]) - ref.t[k].f32[i]);
                if (d > worst) worst = d;
                if (!(d <= 1e-4 + 1e-4 * std::fabs(static_cast<double>(ref.t[k].f32[i])))) bad++;
            }
        }
        tu_free_safetensors(&ref);
    }
    if (!found || bad) {
        std::printf("FAIL: %s\n", found ? "logits differ from TransformerLens'" : "no reference logits");
        failures++;
    }
    std::printf("C++: %zu logits [%d, %d, %d], all finite, max |diff| to TransformerLens %.3g, %zu hook calls\n", n,
                lg->shape[0], lg->shape[1], lg->shape[2], worst, seen.size());
    tlens_ctx_free(ctx);
    tlens_free(model);
    if (failures) return 1;
    std::printf("1 passed, 0 failed\n");
    return 0;
}
