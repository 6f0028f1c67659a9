/* tlens-convert - turn a Hugging Face GPT-2 folder into one .tlens file.
 *
 *   tlens-convert HF_DIR OUT.tlens [--raw] [--f16|--bf16] [--no-fold-ln]
 *                 [--no-center-writing-weights] [--no-center-unembed]
 *                 [--no-fold-value-biases]
 *
 * By default the weights are processed as TransformerLens' from_pretrained
 * does (and as `tlens run` does), stored as float32 in the layout the
 * matmul reads, so that loading the file copies nothing. --raw keeps the
 * weights as they are (the processing can then be chosen at load time).
 * The folder's vocab.json and merges.txt, when present, go into the file.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"

#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    tlens_load_options opt;
    tlens_model *model;
    tlens_error err;
    const char *in = NULL, *out = NULL;
    int i;
    memset(&opt, 0, sizeof opt);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--raw")) opt.raw = 1;
        else if (!strcmp(a, "--f16")) opt.weight_dtype = TLENS_F16;
        else if (!strcmp(a, "--bf16")) opt.weight_dtype = TLENS_BF16;
        else if (!strcmp(a, "--no-fold-ln")) opt.no_fold_ln = 1;
        else if (!strcmp(a, "--no-center-writing-weights")) opt.no_center_writing_weights = 1;
        else if (!strcmp(a, "--no-center-unembed")) opt.no_center_unembed = 1;
        else if (!strcmp(a, "--no-fold-value-biases")) opt.no_fold_value_biases = 1;
        else if (a[0] == '-') { fprintf(stderr, "tlens-convert: unknown option %s\n", a); return 1; }
        else if (!in) in = a;
        else if (!out) out = a;
        else { fprintf(stderr, "tlens-convert: unexpected argument %s\n", a); return 1; }
    }
    if (!in || !out) {
        fprintf(stderr, "usage: tlens-convert HF_DIR OUT.tlens [--raw] [--f16|--bf16] [--no-fold-ln] ...\n");
        return 1;
    }
    if (tlens_load(&model, in, &opt, &err) != TLENS_OK) {
        fprintf(stderr, "tlens-convert: %s\n", err.message);
        return 1;
    }
    if (tlens_save(model, out, &err) != TLENS_OK) {
        fprintf(stderr, "tlens-convert: %s\n", err.message);
        tlens_free(model);
        return 1;
    }
    tlens_free(model);
    return 0;
}
