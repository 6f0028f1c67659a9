/* tlens.h - GPT-2 with TransformerLens hooks, in one C header.       v0.1.0
 *
 * tlens runs OpenAI's GPT-2 family (gpt2, -medium, -large, -xl, distilgpt2,
 * the stanford-crfm models) on a CPU and exposes every intermediate
 * activation through hook points named, shaped and computed exactly as in
 * TransformerLens: run_with_cache and run_with_hooks without Python.
 *
 * Do this:
 *     #define TLENS_IMPLEMENTATION
 * before you include this file in *one* C or C++ file to create the
 * implementation. Every other file includes it without the define.
 *
 * QUICK START
 *
 *     #define TLENS_IMPLEMENTATION
 *     #include "tlens.h"
 *     #include <stdio.h>
 *
 *     int main(void) {
 *         tlens_error err;
 *         tlens_model *model;
 *         tlens_ctx *ctx;
 *         int32_t tokens[4] = {50256, 464, 3290, 318};
 *         if (tlens_load(&model, "gpt2", NULL, &err) != TLENS_OK) {
 *             fprintf(stderr, "%s\n", err.message);
 *             return 1;
 *         }
 *         tlens_ctx_new(&ctx, model, &err);
 *         tlens_cache_select(ctx, "blocks.*.hook_resid_post");   // what to keep
 *         tlens_run(ctx, tokens, 1, 4, &err);                    // (batch, pos)
 *         const tlens_tensor *r = tlens_cache_get(ctx, "blocks.0.hook_resid_post");
 *         printf("%d x %d x %d, first value %f\n", r->shape[0], r->shape[1],
 *                r->shape[2], r->data[0]);
 *         tlens_ctx_free(ctx);
 *         tlens_free(model);
 *         return 0;
 *     }
 *
 * TABLE OF CONTENTS
 *   1. Compile-time options
 *   2. Public API: results and errors, configuration, loading, running,
 *      hooks and the activation cache
 *   3. Implementation
 *      3.1 Errors, allocation, files
 *      3.2 Half-precision conversion, little-endian reads
 *      3.3 A small JSON reader (config.json, safetensors headers)
 *      3.4 safetensors
 *      3.5 Loading a Hugging Face GPT-2 folder
 *      3.6 Weight processing (fold_ln, centring, value-bias folding)
 *      3.7 The .tlens file format
 *      3.8 Kernels: matmul, LayerNorm, GELU, softmax
 *      3.9 The forward pass
 *      3.10 Hook points and the activation cache
 *   4. License
 *
 * COMPILE-TIME OPTIONS (define before including with TLENS_IMPLEMENTATION)
 *   TLENS_MALLOC(size, user) / TLENS_FREE(ptr, user)
 *       The default allocator, used when no tlens_allocator is given at run
 *       time. Define both or neither. `user` is the allocator's user pointer.
 *   TLENS_ASSERT(x)      Internal consistency checks (default: assert()).
 *   TLENS_NO_STDIO       No file access: load from memory only
 *                        (tlens_load_memory); for bare-metal targets.
 *   TLENS_NO_SIMD        Use the portable scalar kernels only.
 *   TLENS_NO_AVX512, TLENS_NO_AVX2, TLENS_NO_NEON
 *                        Turn off one instruction set (the next one down is
 *                        used).
 *   TLENS_NO_HOOKS       Compile the hook system out (the forward pass then
 *                        only returns logits).
 *   TLENS_STATIC         Make every public function static.
 *   OpenMP               If the compiler enables it (-fopenmp), the matmul and
 *                        attention loops run in parallel; results do not depend
 *                        on the thread count.
 */
#ifndef TLENS_H
#define TLENS_H

#include <stddef.h>
#include <stdint.h>

#define TLENS_VERSION_MAJOR 0
#define TLENS_VERSION_MINOR 1
#define TLENS_VERSION_PATCH 0
#define TLENS_VERSION_STRING "0.1.0"

#ifdef TLENS_STATIC
#define TLENS_API static
#else
#define TLENS_API extern
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------
 * 2.1 Results and errors
 *
 * Every function that can fail returns a tlens_result and, when given a
 * tlens_error, fills it with the code and a one-line message that names the
 * problem (the file, the tensor, the key, the offending value). The error
 * pointer may be NULL.
 * ---------------------------------------------------------------------- */
typedef enum tlens_result {
    TLENS_OK = 0,
    TLENS_ERR_IO,          /* a file could not be opened, read or written   */
    TLENS_ERR_NOMEM,       /* an allocation failed                          */
    TLENS_ERR_FORMAT,      /* a malformed file: JSON, safetensors, .tlens   */
    TLENS_ERR_CONFIG,      /* a config value that is absurd or unsupported  */
    TLENS_ERR_MISSING,     /* a required tensor, key or file is missing     */
    TLENS_ERR_SHAPE,       /* a tensor or argument has the wrong shape      */
    TLENS_ERR_DTYPE,       /* a tensor has an unsupported element type      */
    TLENS_ERR_TOKEN,       /* a token id outside the vocabulary             */
    TLENS_ERR_LENGTH,      /* a sequence that is empty or longer than n_ctx */
    TLENS_ERR_ARG,         /* an invalid argument                           */
    TLENS_ERR_TOKENIZER,   /* malformed vocab.json / merges.txt             */
    TLENS_ERR_NOT_FOUND,   /* no such hook point or cache entry             */
    TLENS_ERR_HOOK,        /* a hook function asked to stop the run         */
    TLENS_RESULT_COUNT
} tlens_result;

typedef struct tlens_error {
    tlens_result code;
    char message[320];
} tlens_error;

/* A short fixed description of a result code ("out of memory", ...). */
TLENS_API const char *tlens_result_string(tlens_result r);

/* ------------------------------------------------------------------------
 * 2.2 Allocation
 *
 * Everything tlens allocates goes through one allocator: the one given in
 * the options, else TLENS_MALLOC / TLENS_FREE (malloc and free by default).
 * ---------------------------------------------------------------------- */
typedef struct tlens_allocator {
    void *(*alloc)(size_t size, void *user); /* NULL: use TLENS_MALLOC      */
    void (*free)(void *ptr, void *user);
    void *user;
} tlens_allocator;

/* ------------------------------------------------------------------------
 * 2.3 Model configuration, as TransformerLens names it
 * ---------------------------------------------------------------------- */
typedef struct tlens_config {
    int n_layers;   /* HF n_layer                                          */
    int d_model;    /* HF n_embd                                           */
    int n_heads;    /* HF n_head                                           */
    int d_head;     /* d_model / n_heads                                   */
    int d_mlp;      /* HF n_inner, or 4 * d_model when null               */
    int d_vocab;    /* HF vocab_size                                       */
    int n_ctx;      /* HF n_positions (or n_ctx)                           */
    float eps;      /* HF layer_norm_epsilon                               */
    int act_fn;     /* TLENS_ACT_GELU_NEW, TLENS_ACT_GELU, TLENS_ACT_RELU  */
    int scale_attn_by_inverse_layer_idx; /* divide scores by (layer + 1) too */
    int tied;       /* the unembedding was tied to the embedding           */
} tlens_config;

enum { TLENS_ACT_GELU_NEW = 0, TLENS_ACT_GELU = 1, TLENS_ACT_RELU = 2 };

/* Element types of stored weights. */
typedef enum tlens_dtype {
    TLENS_DTYPE_AUTO = 0, /* options only: F32 for Hugging Face folders, the
                             file's own type for .tlens files             */
    TLENS_F32 = 1,
    TLENS_F16 = 2,
    TLENS_BF16 = 3
} tlens_dtype;

/* ------------------------------------------------------------------------
 * 2.4 Loading
 *
 * tlens_load_options is valid when zero-initialised, and a NULL pointer
 * means all defaults: TransformerLens' from_pretrained processing (fold_ln,
 * center_writing_weights, center_unembed, fold_value_biases), float32.
 * ---------------------------------------------------------------------- */
typedef struct tlens_load_options {
    int raw;                        /* 1: from_pretrained_no_processing    */
    int no_fold_ln;                 /* switch off single processing steps  */
    int no_center_writing_weights;
    int no_center_unembed;
    int no_fold_value_biases;
    tlens_dtype weight_dtype;       /* storage of the big matrices (AUTO)  */
    int no_tokenizer;               /* do not look for vocab.json/merges   */
    tlens_allocator allocator;
} tlens_load_options;

typedef struct tlens_model tlens_model;

/* Load a model from a Hugging Face GPT-2 folder (config.json,
 * model.safetensors and, optionally, vocab.json + merges.txt) or from a
 * .tlens file. Not with TLENS_NO_STDIO. */
TLENS_API tlens_result tlens_load(tlens_model **out, const char *path,
                                  const tlens_load_options *opt,
                                  tlens_error *err);

/* A model of the shape in cfg (d_head and eps may be 0) with random
 * weights drawn as GPT-2 initialises them (N(0, 0.02), LayerNorm weights
 * near 1), processed as `opt` says: for tests and benchmarks of real
 * shapes without the real files. The same seed gives the same model. */
TLENS_API tlens_result tlens_init_random(tlens_model **out,
                                         const tlens_config *cfg,
                                         const tlens_load_options *opt,
                                         uint64_t seed, tlens_error *err);

/* Load a .tlens file from memory (a memory map, or an array compiled into
 * the program). The memory must stay valid and unchanged while the model
 * lives; a processed float file is used in place, without a copy, when it
 * is 64-byte aligned. */
TLENS_API tlens_result tlens_load_memory(tlens_model **out, const void *data,
                                         size_t size,
                                         const tlens_load_options *opt,
                                         tlens_error *err);

TLENS_API void tlens_free(tlens_model *model);

/* Write the model, as loaded (processing and weight type included), to a
 * self-contained .tlens file. Not with TLENS_NO_STDIO. */
TLENS_API tlens_result tlens_save(const tlens_model *model, const char *path,
                                  tlens_error *err);
TLENS_API const tlens_config *tlens_model_config(const tlens_model *model);
/* 1 when the weights were processed as in from_pretrained (fold_ln ...). */
TLENS_API int tlens_model_processed(const tlens_model *model);

/* ------------------------------------------------------------------------
 * 2.5 Tensors, hooks and the run context
 *
 * A tlens_ctx holds everything one forward pass writes: the activation
 * area, the hooks and the cache. A model may be shared by several threads,
 * each with its own context.
 * ---------------------------------------------------------------------- */
#define TLENS_MAX_DIMS 4

typedef struct tlens_tensor {
    float *data;                 /* row-major, batch first                */
    int ndim;
    int shape[TLENS_MAX_DIMS];
} tlens_tensor;

TLENS_API size_t tlens_tensor_numel(const tlens_tensor *t);

typedef struct tlens_ctx tlens_ctx;

/* A hook sees the hook point's full name ("blocks.3.attn.hook_pattern"),
 * its layer (-1 outside the blocks) and the activation in TransformerLens'
 * shape. It may change the data in place; the change flows downstream.
 * Return 0 to go on, non-zero to stop the run (tlens_run then returns
 * TLENS_ERR_HOOK). */
typedef int (*tlens_hook_fn)(const char *name, int layer, tlens_tensor *act,
                             void *user);
/* A names filter: non-zero for the hook points it selects. */
typedef int (*tlens_filter_fn)(const char *name, void *user);

TLENS_API tlens_result tlens_ctx_new(tlens_ctx **out, const tlens_model *m,
                                     tlens_error *err);
TLENS_API void tlens_ctx_free(tlens_ctx *ctx);

/* Turn on TransformerLens' optional hook points (use_attn_result,
 * use_split_qkv_input, use_attn_in, use_hook_mlp_in, use_hook_tokens). */
TLENS_API void tlens_set_optional_hooks(tlens_ctx *ctx, int on);

/* Run tokens [batch, pos] (every id < d_vocab, 1 <= pos <= n_ctx). */
TLENS_API tlens_result tlens_run(tlens_ctx *ctx, const int32_t *tokens,
                                 int batch, int pos, tlens_error *err);
/* More ways to run (a zero-initialised struct is tlens_run):
 * attention_mask [batch, pos]: 1 for real tokens, 0 for padding; left-pad
 *   prompts of different lengths, as TransformerLens does: padding is never
 *   attended to and positions count from each prompt's first real token.
 * use_kv_cache: keep every layer's keys and values, and continue the
 *   sequences of the previous cached runs (positions go on from there);
 *   tlens_kv_reset starts afresh. Hooks see only this run's positions;
 *   hook_attn_scores / hook_pattern are [batch, head, pos, cached + pos]. */
typedef struct tlens_run_options {
    const int32_t *attention_mask;
    int use_kv_cache;
    /* stop_at_layer N (not 0): return the residual stream before block N
     * (negative N counts from the end, -n_layers: only the embeddings);
     * read it with tlens_resid, the logits are not computed. */
    int stop_at_layer;
    /* start_resid [batch, pos, d_model] (not NULL): start from this
     * residual stream at block start_at_layer; the tokens then only give
     * the batch shape and may be NULL. */
    const float *start_resid;
    int start_at_layer;
} tlens_run_options;

TLENS_API tlens_result tlens_run_ex(tlens_ctx *ctx, const int32_t *tokens,
                                    int batch, int pos,
                                    const tlens_run_options *opt,
                                    tlens_error *err);
TLENS_API void tlens_kv_reset(tlens_ctx *ctx);
TLENS_API int tlens_kv_length(const tlens_ctx *ctx);

/* The residual stream where the last run ended: [batch, pos, d_model]. */
TLENS_API const tlens_tensor *tlens_resid(const tlens_ctx *ctx);

/* The logits of the last run: [batch, pos, d_vocab]; NULL after a run
 * that stopped early. */
TLENS_API const tlens_tensor *tlens_logits(const tlens_ctx *ctx);

/* Every hook point name of this model, in firing order (with the optional
 * points when they are on). */
TLENS_API int tlens_hook_count(const tlens_ctx *ctx);
TLENS_API const char *tlens_hook_name(const tlens_ctx *ctx, int i);

/* Hooks. `pattern` is an exact name or a glob ('*' matches anything,
 * dots too; '?' one character). Returns a handle > 0, or 0 on failure. */
TLENS_API int tlens_add_hook(tlens_ctx *ctx, const char *pattern,
                             tlens_hook_fn fn, void *user);
TLENS_API int tlens_add_hook_filter(tlens_ctx *ctx, tlens_filter_fn filter,
                                    void *filter_user, tlens_hook_fn fn,
                                    void *user);
TLENS_API void tlens_remove_hook(tlens_ctx *ctx, int handle);
TLENS_API void tlens_reset_hooks(tlens_ctx *ctx);

/* The activation cache. Select the points to keep before a run (a glob or
 * a filter; selections add up); tlens_cache_clear drops the selection. */
TLENS_API tlens_result tlens_cache_select(tlens_ctx *ctx, const char *glob);
TLENS_API tlens_result tlens_cache_select_filter(tlens_ctx *ctx,
                                                 tlens_filter_fn filter,
                                                 void *user);
TLENS_API void tlens_cache_clear(tlens_ctx *ctx);
/* Look up a cached activation by full name; NULL when not cached. */
TLENS_API const tlens_tensor *tlens_cache_get(const tlens_ctx *ctx,
                                              const char *name);

/* TransformerLens' shorthand for hook names (utils.get_act_name):
 * ("resid_post", 3, NULL) -> "blocks.3.hook_resid_post",
 * ("pattern", 0, NULL) -> "blocks.0.attn.hook_pattern",
 * ("scale", 1, "ln1") -> "blocks.1.ln1.hook_scale"; layer -1 for none.
 * Writes into out (cap bytes); returns out, or NULL when it does not fit. */
TLENS_API const char *tlens_act_name(char *out, size_t cap, const char *name,
                                     int layer, const char *layer_type);
TLENS_API const tlens_tensor *tlens_cache_act(const tlens_ctx *ctx,
                                              const char *name, int layer,
                                              const char *layer_type);

/* ------------------------------------------------------------------------
 * 2.6 .npy files (not with TLENS_NO_STDIO)
 * ---------------------------------------------------------------------- */
/* Write a tensor as float32 .npy in its shape. */
TLENS_API tlens_result tlens_npy_save(const char *path, const tlens_tensor *t,
                                      tlens_error *err);
/* Read a C-order float32/float64/int32/int64 .npy as floats; free the data
 * with tlens_tensor_free. */
TLENS_API tlens_result tlens_npy_load(const char *path, tlens_tensor *out,
                                      tlens_error *err);
TLENS_API void tlens_tensor_free(tlens_tensor *t);

/* ------------------------------------------------------------------------
 * 2.7 The interpretability toolkit
 * ---------------------------------------------------------------------- */

/* Next-token cross-entropy of the last run on `tokens` [batch, pos]
 * (TransformerLens' return_type="loss"): the mean into *mean and, when
 * per_token is not NULL, the [batch, pos - 1] losses (loss_per_token).
 * With an attention mask only pairs of real tokens count. */
TLENS_API tlens_result tlens_loss(const tlens_ctx *ctx, const int32_t *tokens,
                                  const int32_t *attention_mask,
                                  float *per_token, double *mean,
                                  tlens_error *err);

/* Generation with the key/value cache. Zero-initialised: greedy, 10 new
 * tokens, stopping at <|endoftext|> (50256) when the vocabulary has it.
 * Sampling follows TransformerLens: logits / temperature, then top_k if
 * set, else top_p if set. Hooks fire at every step with the true
 * positions. */
typedef struct tlens_generate_options {
    int max_new_tokens;          /* 0: 10                               */
    float temperature;           /* 0: greedy (argmax)                  */
    int top_k;                   /* 0: off                              */
    float top_p;                 /* 0: off                              */
    uint64_t seed;               /* the sampler's seed                  */
    int no_stop_at_eos;
    int eos_token;               /* 0: 50256 when d_vocab > 50256       */
    int no_kv_cache;             /* recompute the sequence at each step */
    int (*on_token)(int32_t token, void *user); /* non-zero: stop       */
    void *user;
} tlens_generate_options;

/* Continue `prompt`; writes up to `cap` new tokens to out, *n_out of them. */
TLENS_API tlens_result tlens_generate(tlens_ctx *ctx, const int32_t *prompt,
                                      int n_prompt,
                                      const tlens_generate_options *opt,
                                      int32_t *out, int cap, int *n_out,
                                      tlens_error *err);

/* Ablation and patching, as hooks the context owns (remove them with
 * tlens_remove_hook / tlens_reset_hooks). head -1: every head; for
 * head-indexed points (q, k, v, z, result, *_input: axis 2; attn_scores and
 * pattern: axis 1) a head number edits only that head.
 * Mean ablation replaces each value by its mean over batch and positions. */
enum { TLENS_ABLATE_ZERO = 0, TLENS_ABLATE_MEAN = 1 };
TLENS_API int tlens_add_ablation(tlens_ctx *ctx, const char *pattern, int head,
                                 int mode);
/* Replace the activation with `source` (same shape; copied now), at every
 * position (pos -1) or one (the query position for scores / pattern). */
TLENS_API int tlens_add_patch(tlens_ctx *ctx, const char *name,
                              const tlens_tensor *source, int head, int pos);

/* A stack of residual-stream components [n, batch, pos, d_model], with
 * TransformerLens' labels ("0_pre", "final_post", "embed", "3_attn_out",
 * "L2H5"). Built from the cache of the last run. */
typedef struct tlens_stack {
    int n, batch, pos, d_model;
    float *data;
    char (*labels)[32];
    tlens_allocator alloc;
} tlens_stack;

/* resid_pre of layers 0..layer-1 (and resid_mid with incl_mid) and, for
 * layer = n_layers (or -1), the final resid_post: the logit lens. */
TLENS_API tlens_result tlens_accumulated_resid(const tlens_ctx *ctx, int layer,
                                               int incl_mid, int apply_ln,
                                               tlens_stack *out,
                                               tlens_error *err);
/* embed, pos_embed, then attn_out and mlp_out of each layer below `layer`. */
TLENS_API tlens_result tlens_decompose_resid(const tlens_ctx *ctx, int layer,
                                             int apply_ln, tlens_stack *out,
                                             tlens_error *err);
/* Every head's output (z @ W_O of its rows, without b_O), "L{l}H{h}". */
TLENS_API tlens_result tlens_stack_head_results(const tlens_ctx *ctx,
                                                int layer, int apply_ln,
                                                tlens_stack *out,
                                                tlens_error *err);
/* Centre each component and divide by the cached LayerNorm scale of
 * `layer` (-1: ln_final; mlp_input: ln2 instead of ln1). */
TLENS_API tlens_result tlens_apply_ln_to_stack(const tlens_ctx *ctx,
                                               tlens_stack *stack, int layer,
                                               int mlp_input,
                                               tlens_error *err);
/* Each component's contribution to the logit of `token`, or to the logit
 * difference token - incorrect_token (incorrect_token >= 0), after the final
 * LayerNorm scale: out [n, batch, pos]. */
TLENS_API tlens_result tlens_logit_attrs(const tlens_ctx *ctx,
                                         const tlens_stack *stack, int token,
                                         int incorrect_token, float *out,
                                         tlens_error *err);
TLENS_API void tlens_stack_free(tlens_stack *stack);

/* Head detection (TransformerLens' detect_head): score every head's
 * attention pattern on `tokens` against a previous-token, duplicate-token
 * or induction pattern. scores: [n_layers, n_heads]. */
enum { TLENS_HEAD_PREVIOUS_TOKEN = 0, TLENS_HEAD_DUPLICATE_TOKEN = 1,
       TLENS_HEAD_INDUCTION = 2 };
typedef struct tlens_detect_options {
    int exclude_bos;
    int exclude_current_token;
    int error_measure_abs;       /* 0: "mul" (the default), 1: "abs" */
} tlens_detect_options;
TLENS_API tlens_result tlens_detect_heads(tlens_ctx *ctx,
                                          const int32_t *tokens, int n,
                                          int kind,
                                          const tlens_detect_options *opt,
                                          float *scores, tlens_error *err);

#ifdef __cplusplus
}
#endif

#endif /* TLENS_H */

/* ======================================================================== *
 *                          3. IMPLEMENTATION                               *
 * ======================================================================== */
#ifdef TLENS_IMPLEMENTATION
#ifndef TLENS_IMPLEMENTATION_DONE
#define TLENS_IMPLEMENTATION_DONE

#include <string.h>
#include <math.h>
#include <stdarg.h>
#ifndef TLENS_NO_STDIO
#include <stdio.h>
#endif

#if defined(TLENS_MALLOC) != defined(TLENS_FREE)
#error "define both TLENS_MALLOC and TLENS_FREE, or neither"
#endif
#ifndef TLENS_MALLOC
#include <stdlib.h>
#define TLENS_MALLOC(size, user) ((void)(user), malloc(size))
#define TLENS_FREE(ptr, user) ((void)(user), free(ptr))
#endif
#ifndef TLENS_ASSERT
#include <assert.h>
#define TLENS_ASSERT(x) assert(x)
#endif

#ifdef TLENS_STATIC
#define TLENS_DEF static
#else
#define TLENS_DEF
#endif

/* ------------------------------------------------------------------------
 * 3.1 Errors, allocation, files
 * ---------------------------------------------------------------------- */
TLENS_DEF const char *tlens_result_string(tlens_result r) {
    static const char *const names[TLENS_RESULT_COUNT] = {
        "ok",
        "input/output error",
        "out of memory",
        "malformed file",
        "unsupported or invalid configuration",
        "missing tensor, key or file",
        "wrong shape",
        "unsupported data type",
        "token id outside the vocabulary",
        "bad sequence length",
        "invalid argument",
        "malformed tokenizer files",
        "not found",
        "stopped by a hook",
    };
    if ((int)r < 0 || r >= TLENS_RESULT_COUNT) return "unknown result code";
    return names[r];
}

/* A tiny formatter for error messages, so that errors need no stdio:
 * %s %d %u %ld %lld %zu %llu %c %% and %g (plain, 6 significant digits). */
typedef struct tlens__buf {
    char *p;
    size_t cap, len;
} tlens__buf;

static void tlens__putc(tlens__buf *b, char c) {
    if (b->len + 1 < b->cap) b->p[b->len] = c;
    b->len++;
}

static void tlens__puts(tlens__buf *b, const char *s) {
    if (!s) s = "(null)";
    while (*s) tlens__putc(b, *s++);
}

static void tlens__putu(tlens__buf *b, unsigned long long v) {
    char tmp[24];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    while (n) tlens__putc(b, tmp[--n]);
}

static void tlens__puti(tlens__buf *b, long long v) {
    if (v < 0) {
        tlens__putc(b, '-');
        tlens__putu(b, (unsigned long long)(-(v + 1)) + 1u);
    } else {
        tlens__putu(b, (unsigned long long)v);
    }
}

static void tlens__putg(tlens__buf *b, double v) {
    int e = 0, i;
    unsigned long long m;
    if (v != v) { tlens__puts(b, "nan"); return; }
    if (v < 0) { tlens__putc(b, '-'); v = -v; }
    if (v > 1e300) { tlens__puts(b, "inf"); return; }
    if (v == 0) { tlens__putc(b, '0'); return; }
    while (v >= 10) { v /= 10; e++; }
    while (v < 1) { v *= 10; e--; }
    m = (unsigned long long)(v * 100000.0 + 0.5); /* 6 digits d.ddddd */
    if (m >= 1000000ull) { m /= 10; e++; }
    if (e >= -4 && e < 6) {
        char digits[8];
        int nd = 0, point = e + 1; /* digits before the point */
        for (i = 5; i >= 0; i--) { digits[i] = (char)('0' + (int)(m % 10)); m /= 10; }
        nd = 6;
        while (nd > 1 && nd > point && digits[nd - 1] == '0') nd--;
        if (point <= 0) {
            tlens__puts(b, "0.");
            for (i = 0; i < -point; i++) tlens__putc(b, '0');
            for (i = 0; i < nd; i++) tlens__putc(b, digits[i]);
        } else {
            for (i = 0; i < nd || i < point; i++) {
                if (i == point) tlens__putc(b, '.');
                tlens__putc(b, i < nd ? digits[i] : '0');
            }
        }
    } else {
        tlens__putu(b, m / 100000ull);
        tlens__putc(b, '.');
        m %= 100000ull;
        for (i = 10000; i >= 1; i /= 10) tlens__putc(b, (char)('0' + (int)((m / (unsigned)i) % 10)));
        tlens__putc(b, 'e');
        tlens__puti(b, e);
    }
}

static size_t tlens__vformat(char *out, size_t cap, const char *fmt, va_list ap) {
    tlens__buf b;
    b.p = out; b.cap = cap; b.len = 0;
    for (; *fmt; fmt++) {
        int longs = 0, size_t_arg = 0;
        if (*fmt != '%') { tlens__putc(&b, *fmt); continue; }
        fmt++;
        while (*fmt == 'l') { longs++; fmt++; }
        if (*fmt == 'z') { size_t_arg = 1; fmt++; }
        switch (*fmt) {
        case 's': tlens__puts(&b, va_arg(ap, const char *)); break;
        case 'c': tlens__putc(&b, (char)va_arg(ap, int)); break;
        case 'g': tlens__putg(&b, va_arg(ap, double)); break;
        case 'd':
            if (longs >= 2) tlens__puti(&b, va_arg(ap, long long));
            else if (longs == 1) tlens__puti(&b, va_arg(ap, long));
            else tlens__puti(&b, va_arg(ap, int));
            break;
        case 'u':
            if (size_t_arg) tlens__putu(&b, va_arg(ap, size_t));
            else if (longs >= 2) tlens__putu(&b, va_arg(ap, unsigned long long));
            else if (longs == 1) tlens__putu(&b, va_arg(ap, unsigned long));
            else tlens__putu(&b, va_arg(ap, unsigned));
            break;
        case '%': tlens__putc(&b, '%'); break;
        case '\0': fmt--; break;
        default: tlens__putc(&b, '%'); tlens__putc(&b, *fmt); break;
        }
    }
    if (cap) out[b.len < cap ? b.len : cap - 1] = '\0';
    return b.len;
}

/* Record an error and return its code, so that failures read
 * `return tlens__fail(err, TLENS_ERR_FORMAT, "%s: ...", path);`. */
static tlens_result tlens__fail(tlens_error *err, tlens_result code,
                                const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        tlens__vformat(err->message, sizeof err->message, fmt, ap);
        va_end(ap);
    }
    return code;
}

static void tlens__ok(tlens_error *err) {
    if (err) {
        err->code = TLENS_OK;
        err->message[0] = '\0';
    }
}

static void *tlens__alloc(const tlens_allocator *a, size_t n) {
    if (n == 0) n = 1;
    if (a && a->alloc) return a->alloc(n, a->user);
    return TLENS_MALLOC(n, a ? a->user : NULL);
}

static void tlens__free(const tlens_allocator *a, void *p) {
    if (!p) return;
    if (a && a->alloc) {
        if (a->free) a->free(p, a->user);
        return;
    }
    TLENS_FREE(p, a ? a->user : NULL);
}

static void *tlens__calloc(const tlens_allocator *a, size_t n) {
    void *p = tlens__alloc(a, n);
    if (p) memset(p, 0, n);
    return p;
}

/* Sizes read from files are untrusted: every product of dimensions goes
 * through these, which report overflow instead of wrapping. */
static int tlens__mul_ok(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > (size_t)-1 / a) return 0;
    *out = a * b;
    return 1;
}

static int tlens__add_ok(size_t a, size_t b, size_t *out) {
    if (b > (size_t)-1 - a) return 0;
    *out = a + b;
    return 1;
}

#ifndef TLENS_NO_STDIO
/* Read a whole file into memory (with a terminating NUL not counted in
 * *size, so that text files can be parsed as strings). */
static tlens_result tlens__read_file(const tlens_allocator *a, const char *path,
                                     char **data, size_t *size,
                                     tlens_error *err) {
    FILE *f = fopen(path, "rb");
    char *buf;
    long n;
    if (!f) return tlens__fail(err, TLENS_ERR_IO, "cannot open %s", path);
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return tlens__fail(err, TLENS_ERR_IO, "cannot determine the size of %s", path);
    }
    buf = (char *)tlens__alloc(a, (size_t)n + 1);
    if (!buf) {
        fclose(f);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, (size_t)n);
    }
    if (n && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        tlens__free(a, buf);
        return tlens__fail(err, TLENS_ERR_IO, "cannot read %s", path);
    }
    fclose(f);
    buf[n] = '\0';
    *data = buf;
    *size = (size_t)n;
    return TLENS_OK;
}

static int tlens__file_exists(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    fclose(f);
    return 1;
}

/* dir + "/" + name into out (cap bytes); 0 when it does not fit. */
static int tlens__join(char *out, size_t cap, const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    if (a + b + 2 > cap) return 0;
    memcpy(out, dir, a);
    if (a && dir[a - 1] != '/') out[a++] = '/';
    memcpy(out + a, name, b + 1);
    return 1;
}
#endif /* TLENS_NO_STDIO */

/* ------------------------------------------------------------------------
 * 3.2 Half-precision conversion, little-endian reads
 * ---------------------------------------------------------------------- */
static float tlens__f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static uint32_t tlens__bits_from_f32(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

/* IEEE binary16 -> float, exact for every value including subnormals. */
static float tlens__f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
    if (exp == 0) { /* zero or subnormal: man * 2^-24 */
        float v = (float)man * (1.0f / 16777216.0f);
        return tlens__f32_from_bits(tlens__bits_from_f32(v) | sign);
    }
    if (exp == 31) return tlens__f32_from_bits(sign | 0x7f800000u | (man << 13));
    return tlens__f32_from_bits(sign | ((exp + 112u) << 23) | (man << 13));
}

/* float -> binary16, round to nearest even, overflow to infinity. */
static uint16_t tlens__f32_to_f16(float f) {
    uint32_t u = tlens__bits_from_f32(f);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t exp = (u >> 23) & 0xffu, man = u & 0x7fffffu;
    int e;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0u));
    e = (int)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00u);
    if (e <= 0) { /* subnormal half (or zero) */
        uint32_t m, shift, half_bits, rem, halfway;
        if (e < -10) return (uint16_t)sign;
        m = man | 0x800000u;
        shift = (uint32_t)(14 - e);
        half_bits = m >> shift;
        rem = m & ((1u << shift) - 1u);
        halfway = 1u << (shift - 1u);
        if (rem > halfway || (rem == halfway && (half_bits & 1u))) half_bits++;
        return (uint16_t)(sign | half_bits);
    }
    {
        uint32_t h = sign | ((uint32_t)e << 10) | (man >> 13);
        uint32_t rem = man & 0x1fffu;
        if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) h++; /* may carry into exp: correct */
        return (uint16_t)h;
    }
}

static float tlens__bf16_to_f32(uint16_t h) {
    return tlens__f32_from_bits((uint32_t)h << 16);
}

static uint16_t tlens__f32_to_bf16(float f) {
    uint32_t u = tlens__bits_from_f32(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static uint16_t tlens__le16(const unsigned char *p) {
    return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t tlens__le32(const unsigned char *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

static uint64_t tlens__le64(const unsigned char *p) {
    return (uint64_t)tlens__le32(p) | ((uint64_t)tlens__le32(p + 4) << 32);
}

static int tlens__host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char b;
    memcpy(&b, &one, 1);
    return b == 1;
}

/* Convert n little-endian elements of type `dt` at src into floats. */
static void tlens__decode_floats(float *dst, const unsigned char *src, size_t n, tlens_dtype dt) {
    size_t i;
    switch (dt) {
    case TLENS_F32:
        if (tlens__host_is_little_endian()) memcpy(dst, src, n * 4);
        else for (i = 0; i < n; i++) dst[i] = tlens__f32_from_bits(tlens__le32(src + 4 * i));
        break;
    case TLENS_F16:
        for (i = 0; i < n; i++) dst[i] = tlens__f16_to_f32(tlens__le16(src + 2 * i));
        break;
    case TLENS_BF16:
        for (i = 0; i < n; i++) dst[i] = tlens__bf16_to_f32(tlens__le16(src + 2 * i));
        break;
    default:
        TLENS_ASSERT(0);
        break;
    }
}

/* ------------------------------------------------------------------------
 * 3.3 A small JSON reader
 *
 * Enough JSON for config.json and safetensors headers: the text is parsed
 * once into an array of nodes that point back into the text (strings keep
 * their escapes and are decoded only when compared or copied). Depth and
 * node counts are bounded so that hostile input cannot exhaust the stack.
 * ---------------------------------------------------------------------- */
enum {
    TLENS__JSON_NULL, TLENS__JSON_FALSE, TLENS__JSON_TRUE, TLENS__JSON_NUMBER,
    TLENS__JSON_STRING, TLENS__JSON_ARRAY, TLENS__JSON_OBJECT
};

typedef struct tlens__json_node {
    int type;
    const char *text;   /* strings: the raw text between the quotes */
    size_t len;
    double number;
    int is_integer;     /* a number written without fraction or exponent */
    long long integer;  /* its value when is_integer (and in range)       */
    int first, next;    /* first child; next sibling (-1: none)           */
    int key;            /* object members: the node of the member's name  */
} tlens__json_node;

typedef struct tlens__json {
    tlens__json_node *nodes;
    int count, cap;
    const char *p, *end, *start;
    const tlens_allocator *alloc;
    const char *what;   /* the file's name, for messages */
    tlens_error *err;
    int failed;
} tlens__json;

#define TLENS__JSON_MAX_DEPTH 64

static int tlens__json_error(tlens__json *j, const char *why) {
    if (!j->failed)
        tlens__fail(j->err, TLENS_ERR_FORMAT, "%s: bad JSON at byte %zu: %s", j->what,
                    (size_t)(j->p - j->start), why);
    j->failed = 1;
    return -1;
}

static void tlens__json_skip_ws(tlens__json *j) {
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int tlens__json_new_node(tlens__json *j, int type) {
    tlens__json_node *n;
    if (j->count == j->cap) {
        int cap = j->cap ? j->cap * 2 : 64;
        tlens__json_node *nodes;
        if (cap > (1 << 24)) return tlens__json_error(j, "too many values");
        nodes = (tlens__json_node *)tlens__alloc(j->alloc, (size_t)cap * sizeof *nodes);
        if (!nodes) {
            j->failed = 1;
            tlens__fail(j->err, TLENS_ERR_NOMEM, "%s: out of memory parsing JSON", j->what);
            return -1;
        }
        if (j->count) memcpy(nodes, j->nodes, (size_t)j->count * sizeof *nodes);
        tlens__free(j->alloc, j->nodes);
        j->nodes = nodes;
        j->cap = cap;
    }
    n = &j->nodes[j->count];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->first = n->next = n->key = -1;
    return j->count++;
}

static int tlens__hex_digit(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int tlens__json_string(tlens__json *j) {
    const char *s;
    int id;
    j->p++; /* the opening quote */
    s = j->p;
    while (j->p < j->end && *j->p != '"') {
        unsigned char c = (unsigned char)*j->p;
        if (c < 0x20) return tlens__json_error(j, "control character in a string");
        if (c == '\\') {
            j->p++;
            if (j->p >= j->end) break;
            if (*j->p == 'u') {
                int i;
                for (i = 1; i <= 4; i++)
                    if (j->p + i >= j->end || tlens__hex_digit(j->p[i]) < 0)
                        return tlens__json_error(j, "bad \\u escape");
                j->p += 4;
            } else if (!strchr("\"\\/bfnrt", *j->p)) {
                return tlens__json_error(j, "bad escape");
            }
        }
        j->p++;
    }
    if (j->p >= j->end) return tlens__json_error(j, "unterminated string");
    id = tlens__json_new_node(j, TLENS__JSON_STRING);
    if (id < 0) return -1;
    j->nodes[id].text = s;
    j->nodes[id].len = (size_t)(j->p - s);
    j->p++;
    return id;
}

/* Numbers are parsed by hand: strtod depends on the C locale. */
static int tlens__json_number(tlens__json *j) {
    const char *s = j->p;
    int neg = 0, digits = 0, frac_digits = 0, exp = 0, exp_neg = 0, is_int = 1, id;
    double mant = 0;
    unsigned long long ival = 0;
    int ival_ok = 1;
    if (*j->p == '-') { neg = 1; j->p++; }
    if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9')) return tlens__json_error(j, "bad number");
    if (*j->p == '0' && j->p + 1 < j->end && j->p[1] >= '0' && j->p[1] <= '9')
        return tlens__json_error(j, "leading zero in a number");
    while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
        int d = *j->p - '0';
        mant = mant * 10 + d;
        if (ival > (~0ull - (unsigned)d) / 10) ival_ok = 0;
        else ival = ival * 10 + (unsigned)d;
        digits++;
        j->p++;
    }
    if (j->p < j->end && *j->p == '.') {
        is_int = 0;
        j->p++;
        if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9')) return tlens__json_error(j, "bad fraction");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            if (frac_digits < 40) { mant = mant * 10 + (*j->p - '0'); frac_digits++; }
            j->p++;
        }
    }
    if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
        is_int = 0;
        j->p++;
        if (j->p < j->end && (*j->p == '+' || *j->p == '-')) exp_neg = *j->p++ == '-';
        if (j->p >= j->end || !(*j->p >= '0' && *j->p <= '9')) return tlens__json_error(j, "bad exponent");
        while (j->p < j->end && *j->p >= '0' && *j->p <= '9') {
            if (exp < 10000) exp = exp * 10 + (*j->p - '0');
            j->p++;
        }
    }
    (void)digits;
    id = tlens__json_new_node(j, TLENS__JSON_NUMBER);
    if (id < 0) return -1;
    exp = (exp_neg ? -exp : exp) - frac_digits;
    j->nodes[id].number = (neg ? -mant : mant) * pow(10.0, (double)exp);
    j->nodes[id].is_integer = is_int && ival_ok && ival <= 9223372036854775807ull;
    j->nodes[id].integer = neg ? -(long long)ival : (long long)ival;
    j->nodes[id].text = s;
    j->nodes[id].len = (size_t)(j->p - s);
    return id;
}

static int tlens__json_value(tlens__json *j, int depth);

/* Arrays and objects: children are chained through `next`. */
static int tlens__json_container(tlens__json *j, int depth, int is_object) {
    int id = tlens__json_new_node(j, is_object ? TLENS__JSON_OBJECT : TLENS__JSON_ARRAY);
    int last = -1;
    char close = is_object ? '}' : ']';
    if (id < 0) return -1;
    if (depth > TLENS__JSON_MAX_DEPTH) return tlens__json_error(j, "nested too deeply");
    j->p++;
    tlens__json_skip_ws(j);
    if (j->p < j->end && *j->p == close) { j->p++; return id; }
    for (;;) {
        int key = -1, child;
        tlens__json_skip_ws(j);
        if (is_object) {
            if (j->p >= j->end || *j->p != '"') return tlens__json_error(j, "expected a member name");
            key = tlens__json_string(j);
            if (key < 0) return -1;
            tlens__json_skip_ws(j);
            if (j->p >= j->end || *j->p != ':') return tlens__json_error(j, "expected ':'");
            j->p++;
        }
        child = tlens__json_value(j, depth + 1);
        if (child < 0) return -1;
        j->nodes[child].key = key;
        if (last < 0) j->nodes[id].first = child;
        else j->nodes[last].next = child;
        last = child;
        tlens__json_skip_ws(j);
        if (j->p < j->end && *j->p == ',') { j->p++; continue; }
        if (j->p < j->end && *j->p == close) { j->p++; return id; }
        return tlens__json_error(j, is_object ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int tlens__json_literal(tlens__json *j, const char *word, int type) {
    size_t n = strlen(word);
    if ((size_t)(j->end - j->p) < n || memcmp(j->p, word, n) != 0) return tlens__json_error(j, "unexpected character");
    j->p += n;
    return tlens__json_new_node(j, type);
}

static int tlens__json_value(tlens__json *j, int depth) {
    tlens__json_skip_ws(j);
    if (j->p >= j->end) return tlens__json_error(j, "unexpected end");
    switch (*j->p) {
    case '{': return tlens__json_container(j, depth, 1);
    case '[': return tlens__json_container(j, depth, 0);
    case '"': return tlens__json_string(j);
    case 't': return tlens__json_literal(j, "true", TLENS__JSON_TRUE);
    case 'f': return tlens__json_literal(j, "false", TLENS__JSON_FALSE);
    case 'n': return tlens__json_literal(j, "null", TLENS__JSON_NULL);
    default:
        if (*j->p == '-' || (*j->p >= '0' && *j->p <= '9')) return tlens__json_number(j);
        return tlens__json_error(j, "unexpected character");
    }
}

/* Parse text[0..len) whose top level must be an object. */
static tlens_result tlens__json_parse(tlens__json *j, const char *text, size_t len, const char *what,
                                      const tlens_allocator *a, tlens_error *err) {
    memset(j, 0, sizeof *j);
    j->p = j->start = text;
    j->end = text + len;
    j->alloc = a;
    j->what = what;
    j->err = err;
    tlens__json_skip_ws(j);
    if (j->p >= j->end || *j->p != '{') {
        tlens__json_error(j, "expected an object");
    } else if (tlens__json_value(j, 0) >= 0) {
        tlens__json_skip_ws(j);
        if (j->p != j->end) tlens__json_error(j, "text after the end");
    }
    if (j->failed) {
        tlens__free(a, j->nodes);
        j->nodes = NULL;
        return err ? err->code : TLENS_ERR_FORMAT;
    }
    return TLENS_OK;
}

static void tlens__json_free(tlens__json *j) {
    tlens__free(j->alloc, j->nodes);
    j->nodes = NULL;
}

/* Decode a string node's escapes into out (cap bytes, NUL-terminated).
 * Returns the decoded length, or (size_t)-1 when it does not fit. */
static size_t tlens__json_decode(const tlens__json_node *n, char *out, size_t cap) {
    size_t i = 0, o = 0;
    while (i < n->len) {
        unsigned long c = (unsigned char)n->text[i++];
        if (c == '\\') {
            char e = n->text[i++];
            switch (e) {
            case 'b': c = '\b'; break;
            case 'f': c = '\f'; break;
            case 'n': c = '\n'; break;
            case 'r': c = '\r'; break;
            case 't': c = '\t'; break;
            case 'u': {
                int k;
                c = 0;
                for (k = 0; k < 4; k++) c = c * 16 + (unsigned long)tlens__hex_digit(n->text[i++]);
                if (c >= 0xd800 && c < 0xdc00 && i + 6 <= n->len && n->text[i] == '\\' && n->text[i + 1] == 'u') {
                    unsigned long lo = 0;
                    for (k = 0; k < 4; k++) lo = lo * 16 + (unsigned long)(tlens__hex_digit(n->text[i + 2 + (size_t)k]) & 0xf);
                    if (lo >= 0xdc00 && lo < 0xe000) {
                        c = 0x10000 + ((c - 0xd800) << 10) + (lo - 0xdc00);
                        i += 6;
                    }
                }
                break;
            }
            default: c = (unsigned char)e; break;
            }
            /* encode c as UTF-8 */
            if (c >= 0x80) {
                unsigned char tmp[4];
                int len = c < 0x800 ? 2 : c < 0x10000 ? 3 : 4, k;
                for (k = len - 1; k > 0; k--) { tmp[k] = (unsigned char)(0x80 | (c & 0x3f)); c >>= 6; }
                tmp[0] = (unsigned char)((len == 2 ? 0xc0 : len == 3 ? 0xe0 : 0xf0) | c);
                for (k = 0; k < len; k++) { if (o + 1 >= cap) return (size_t)-1; out[o++] = (char)tmp[k]; }
                continue;
            }
        }
        if (o + 1 >= cap) return (size_t)-1;
        out[o++] = (char)c;
    }
    if (cap) out[o] = '\0';
    return o;
}

static int tlens__json_str_eq(const tlens__json_node *n, const char *s) {
    char buf[256];
    if (n->type != TLENS__JSON_STRING) return 0;
    if (n->len < sizeof buf && !memchr(n->text, '\\', n->len))
        return strlen(s) == n->len && memcmp(n->text, s, n->len) == 0;
    if (tlens__json_decode(n, buf, sizeof buf) == (size_t)-1) return 0;
    return strcmp(buf, s) == 0;
}

/* The member `key` of object node `obj`, or -1. */
static int tlens__json_get(const tlens__json *j, int obj, const char *key) {
    int c;
    if (obj < 0 || j->nodes[obj].type != TLENS__JSON_OBJECT) return -1;
    for (c = j->nodes[obj].first; c >= 0; c = j->nodes[c].next)
        if (tlens__json_str_eq(&j->nodes[j->nodes[c].key], key)) return c;
    return -1;
}

/* ------------------------------------------------------------------------
 * 3.4 Kernels (placeholder: plain row-major layout; replaced by the packed
 *     SIMD kernels)
 * ---------------------------------------------------------------------- */
#define TLENS__MAT_LAYOUT 0u

typedef struct tlens__mat {
    const void *data;
    int K, N;
    tlens_dtype dtype;
} tlens__mat;

static size_t tlens__dtype_size(tlens_dtype dt) { return dt == TLENS_F32 ? 4u : 2u; }

static size_t tlens__mat_bytes(int K, int N, tlens_dtype dt) {
    return (size_t)K * (size_t)N * tlens__dtype_size(dt);
}

static float tlens__load_elem(const void *p, size_t i, tlens_dtype dt) {
    if (dt == TLENS_F32) return ((const float *)p)[i];
    if (dt == TLENS_F16) return tlens__f16_to_f32(((const uint16_t *)p)[i]);
    return tlens__bf16_to_f32(((const uint16_t *)p)[i]);
}

/* dst[i] = src[offset + i] as float, for i < n, src of type dt. */
static void tlens__decode_rows(float *dst, const void *src, size_t offset, size_t n, tlens_dtype dt) {
    size_t i;
    if (dt == TLENS_F32) { memcpy(dst, (const float *)src + offset, n * sizeof(float)); return; }
    for (i = 0; i < n; i++) dst[i] = tlens__load_elem(src, offset + i, dt);
}

static void tlens__mat_pack(void *dst, const float *w, int K, int N, tlens_dtype dt) {
    size_t i, n = (size_t)K * (size_t)N;
    if (dt == TLENS_F32) { memcpy(dst, w, n * 4); return; }
    for (i = 0; i < n; i++)
        ((uint16_t *)dst)[i] = dt == TLENS_F16 ? tlens__f32_to_f16(w[i]) : tlens__f32_to_bf16(w[i]);
}

static float tlens__mat_get(const tlens__mat *w, int k, int n) {
    return tlens__load_elem(w->data, (size_t)k * (size_t)w->N + (size_t)n, w->dtype);
}

static void tlens__mat_column(const tlens__mat *w, int n, float *out) {
    int k;
    for (k = 0; k < w->K; k++) out[k] = tlens__mat_get(w, k, n);
}

static void tlens__matmul_ref(float *out, const float *a, const tlens__mat *w, const float *bias, int M) {
    int i, k, n, K = w->K, N = w->N;
    float *row = (float *)0;
    (void)row;
    for (i = 0; i < M; i++) {
        float *o = out + (size_t)i * (size_t)N;
        for (n = 0; n < N; n++) o[n] = bias ? bias[n] : 0.0f;
        for (k = 0; k < K; k++) {
            float x = a[(size_t)i * (size_t)K + (size_t)k];
            if (w->dtype == TLENS_F32) {
                const float *wr = (const float *)w->data + (size_t)k * (size_t)N;
                for (n = 0; n < N; n++) o[n] += x * wr[n];
            } else {
                for (n = 0; n < N; n++) o[n] += x * tlens__mat_get(w, k, n);
            }
        }
    }
}

static void tlens__matmul(float *out, const float *a, const tlens__mat *w, const float *bias, int M) {
    tlens__matmul_ref(out, a, w, bias, M);
}

/* c (M,N) = alpha * a (M,K) @ b (N,K)^T */
static void tlens__gemm_nt(float *c, int ldc, const float *a, int lda, const float *b, int ldb,
                           int M, int N, int K, float alpha) {
    int i, j, k;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            float s = 0;
            for (k = 0; k < K; k++) s += a[(size_t)i * (size_t)lda + (size_t)k] * b[(size_t)j * (size_t)ldb + (size_t)k];
            c[(size_t)i * (size_t)ldc + (size_t)j] = alpha * s;
        }
}

/* c (M,N) = a (M,K) @ b (K,N) */
static void tlens__gemm_nn(float *c, int ldc, const float *a, int lda, const float *b, int ldb,
                           int M, int N, int K) {
    int i, j, k;
    for (i = 0; i < M; i++) {
        float *ci = c + (size_t)i * (size_t)ldc;
        for (j = 0; j < N; j++) ci[j] = 0;
        for (k = 0; k < K; k++) {
            float x = a[(size_t)i * (size_t)lda + (size_t)k];
            const float *bk = b + (size_t)k * (size_t)ldb;
            for (j = 0; j < N; j++) ci[j] += x * bk[j];
        }
    }
}

/* ------------------------------------------------------------------------
 * 3.5 The model: parameters, configuration, safetensors, Hugging Face
 *
 * Parameters keep TransformerLens' names but Hugging Face's Conv1D layout,
 * [inputs, outputs], which is also what the matmul reads:
 *
 *   embed.W_E          (V, D)     token embedding (absent when it is read
 *                                 from the columns of a tied W_U)
 *   pos_embed.W_pos    (n_ctx, D) position embedding
 *   blocks.L.ln1.w/.b  (D)        absent once folded (fold_ln)
 *   blocks.L.attn.W_QKV (D, 3D)   columns [Q | K | V]; head h owns columns
 *                                 h*dh .. h*dh+dh-1 of each third
 *   blocks.L.attn.b_QKV (3D)
 *   blocks.L.attn.W_O  (D, D)     row h*dh+i reads z[h][i]
 *   blocks.L.attn.b_O  (D)
 *   blocks.L.ln2.w/.b  (D)
 *   blocks.L.mlp.W_in  (D, M),  b_in (M)
 *   blocks.L.mlp.W_out (M, D),  b_out (D)
 *   ln_final.w/.b      (D)
 *   unembed.W_U        (D, V),  unembed.b_U (V) (present once fold_ln put
 *                                 ln_final's bias into it)
 * ---------------------------------------------------------------------- */
enum {
    TLENS__FOLD_LN = 1,
    TLENS__CENTER_WRITING = 2,
    TLENS__CENTER_UNEMBED = 4,
    TLENS__FOLD_VALUE_BIASES = 8
};

typedef struct tlens__block {
    const float *ln1_w, *ln1_b;
    tlens__mat W_QKV;
    const float *b_QKV;
    tlens__mat W_O;
    const float *b_O;
    const float *ln2_w, *ln2_b;
    tlens__mat W_in;
    const float *b_in;
    tlens__mat W_out;
    const float *b_out;
} tlens__block;

struct tlens_model {
    tlens_config cfg;
    tlens_allocator alloc;
    int processing;          /* TLENS__FOLD_LN | ... as applied */
    tlens_dtype wdtype;      /* storage of W_E and the matrices */
    const void *W_E;         /* (V, D) in wdtype, or NULL: columns of W_U */
    const float *W_pos;      /* (n_ctx, D) */
    tlens__block *blocks;    /* n_layers */
    const float *lnf_w, *lnf_b;
    tlens__mat W_U;          /* (D, V) */
    const float *b_U;        /* (V) or NULL */
    void *params;            /* the one parameter buffer, NULL when in place */
    char *vocab_json;        /* tokenizer sources, kept for tlens_save */
    char *merges_txt;
    size_t vocab_len, merges_len;
    void *file;              /* a .tlens file read by tlens_load          */
};

/* The parameter table: one row per tensor, in file order. It drives the
 * parameter buffer's layout, the .tlens writer and the .tlens reader. */
enum { TLENS__VEC = 0, TLENS__ROWS = 1, TLENS__PACKED = 2 };

typedef struct tlens__param {
    char name[40];
    int kind;           /* VEC: float32 vector; ROWS: plain (rows, cols) in
                           wdtype; PACKED: a tlens__mat in wdtype          */
    int rows, cols;
    const void **slot;  /* VEC/ROWS: where the pointer goes              */
    tlens__mat *mat;    /* PACKED                                        */
} tlens__param;

static void tlens__param_set(tlens__param *p, const char *name, int layer, int kind, int rows, int cols) {
    char num[16];
    size_t i = 0, n = 0;
    int k;
    /* name with "%d" replaced by the layer */
    while (*name && i + 12 < sizeof p->name) {
        if (name[0] == '%' && name[1] == 'd') {
            tlens__buf b;
            b.p = num; b.cap = sizeof num; b.len = 0;
            tlens__puti(&b, layer);
            for (k = 0; k < (int)b.len; k++) p->name[i++] = num[k];
            name += 2;
        } else {
            p->name[i++] = *name++;
        }
    }
    p->name[i] = '\0';
    (void)n;
    p->kind = kind;
    p->rows = rows;
    p->cols = cols;
    p->slot = NULL;
    p->mat = NULL;
}

/* Fill table (room for 16 * n_layers + 8 rows) for model m's current
 * processing; returns the row count. */
static int tlens__param_table(tlens_model *m, tlens__param *t) {
    const tlens_config *c = &m->cfg;
    int n = 0, l, D = c->d_model, M = c->d_mlp, V = c->d_vocab;
    int folded = (m->processing & TLENS__FOLD_LN) != 0;
    if (m->W_E || !c->tied || m->processing) {
        tlens__param_set(&t[n], "embed.W_E", 0, TLENS__ROWS, V, D);
        t[n++].slot = (const void **)&m->W_E;
    }
    tlens__param_set(&t[n], "pos_embed.W_pos", 0, TLENS__VEC, c->n_ctx, D);
    t[n++].slot = (const void **)&m->W_pos;
    for (l = 0; l < c->n_layers; l++) {
        tlens__block *b = &m->blocks[l];
#define TLENS__VEC_ROW(nm, len, field) \
        tlens__param_set(&t[n], nm, l, TLENS__VEC, 1, len); t[n++].slot = (const void **)&b->field
#define TLENS__MAT_ROW(nm, k, nn, field) \
        tlens__param_set(&t[n], nm, l, TLENS__PACKED, k, nn); t[n++].mat = &b->field
        if (!folded) { TLENS__VEC_ROW("blocks.%d.ln1.w", D, ln1_w); TLENS__VEC_ROW("blocks.%d.ln1.b", D, ln1_b); }
        TLENS__MAT_ROW("blocks.%d.attn.W_QKV", D, 3 * D, W_QKV);
        TLENS__VEC_ROW("blocks.%d.attn.b_QKV", 3 * D, b_QKV);
        TLENS__MAT_ROW("blocks.%d.attn.W_O", D, D, W_O);
        TLENS__VEC_ROW("blocks.%d.attn.b_O", D, b_O);
        if (!folded) { TLENS__VEC_ROW("blocks.%d.ln2.w", D, ln2_w); TLENS__VEC_ROW("blocks.%d.ln2.b", D, ln2_b); }
        TLENS__MAT_ROW("blocks.%d.mlp.W_in", D, M, W_in);
        TLENS__VEC_ROW("blocks.%d.mlp.b_in", M, b_in);
        TLENS__MAT_ROW("blocks.%d.mlp.W_out", M, D, W_out);
        TLENS__VEC_ROW("blocks.%d.mlp.b_out", D, b_out);
#undef TLENS__VEC_ROW
#undef TLENS__MAT_ROW
    }
    if (!folded) {
        tlens__param_set(&t[n], "ln_final.w", 0, TLENS__VEC, 1, D);
        t[n++].slot = (const void **)&m->lnf_w;
        tlens__param_set(&t[n], "ln_final.b", 0, TLENS__VEC, 1, D);
        t[n++].slot = (const void **)&m->lnf_b;
    }
    tlens__param_set(&t[n], "unembed.W_U", 0, TLENS__PACKED, D, V);
    t[n++].mat = &m->W_U;
    if (folded) {
        tlens__param_set(&t[n], "unembed.b_U", 0, TLENS__VEC, 1, V);
        t[n++].slot = (const void **)&m->b_U;
    }
    return n;
}

/* Bytes a table row takes in the parameter buffer, rounded up to 64 so
 * every tensor starts on a cache line (and on any SIMD alignment). */
static size_t tlens__param_bytes(const tlens__param *p, tlens_dtype dt) {
    size_t n = (size_t)p->rows * (size_t)p->cols;
    if (p->kind == TLENS__PACKED) n = tlens__mat_bytes(p->rows, p->cols, dt);
    else n *= p->kind == TLENS__VEC ? 4u : tlens__dtype_size(dt);
    return (n + 63u) & ~(size_t)63u;
}

/* Validate a configuration: every size positive, d_model divisible by
 * n_heads, and the whole parameter count representable. Bounds are far
 * above gpt2-xl (48 layers, 1600 wide) but stop absurd headers early. */
static tlens_result tlens__config_check(const tlens_config *c, const char *what, tlens_error *err) {
    size_t per_layer, total, t;
    if (c->n_layers < 1 || c->n_layers > 4096)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: n_layer %d is out of range (1..4096)", what, c->n_layers);
    if (c->d_model < 1 || c->d_model > 65536)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: n_embd %d is out of range (1..65536)", what, c->d_model);
    if (c->n_heads < 1 || c->n_heads > c->d_model || c->d_model % c->n_heads != 0)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: n_head %d does not divide n_embd %d", what, c->n_heads, c->d_model);
    if (c->d_mlp < 1 || c->d_mlp > 1 << 20)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: n_inner %d is out of range", what, c->d_mlp);
    if (c->d_vocab < 1 || c->d_vocab > 1 << 24)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: vocab_size %d is out of range (1..16777216)", what, c->d_vocab);
    if (c->n_ctx < 1 || c->n_ctx > 1 << 20)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: n_positions %d is out of range", what, c->n_ctx);
    if (!(c->eps > 0 && c->eps < 1))
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: layer_norm_epsilon %g is out of range", what, (double)c->eps);
    /* all in floats: 4*D*D + 2*D*M + ... per layer, plus V*D twice */
    if (!tlens__mul_ok((size_t)c->d_model, (size_t)(4 * c->d_model + 2 * c->d_mlp + 16), &per_layer) ||
        !tlens__mul_ok(per_layer, (size_t)c->n_layers, &total) ||
        !tlens__mul_ok((size_t)c->d_vocab + (size_t)c->n_ctx, (size_t)c->d_model * 2u + 2u, &t) ||
        !tlens__add_ok(total, t, &total) || !tlens__mul_ok(total, 8, &t))
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: the model's size overflows this machine's address space", what);
    return TLENS_OK;
}

/* An integer member of a config object; `fallback` when absent (or null
 * and `null_ok`). */
static tlens_result tlens__config_int(const tlens__json *j, const char *key, int *out, int required,
                                      const char *what, tlens_error *err) {
    int n = tlens__json_get(j, 0, key);
    if (n < 0 || j->nodes[n].type == TLENS__JSON_NULL) {
        if (required) return tlens__fail(err, TLENS_ERR_CONFIG, "%s: missing \"%s\"", what, key);
        return TLENS_OK;
    }
    if (j->nodes[n].type != TLENS__JSON_NUMBER || !j->nodes[n].is_integer ||
        j->nodes[n].integer < 0 || j->nodes[n].integer > 0x7fffffff)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: \"%s\" must be a non-negative integer", what, key);
    *out = (int)j->nodes[n].integer;
    return TLENS_OK;
}

static tlens_result tlens__config_bool(const tlens__json *j, const char *key, int *out, const char *what,
                                       tlens_error *err) {
    int n = tlens__json_get(j, 0, key);
    if (n < 0 || j->nodes[n].type == TLENS__JSON_NULL) return TLENS_OK;
    if (j->nodes[n].type != TLENS__JSON_TRUE && j->nodes[n].type != TLENS__JSON_FALSE)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: \"%s\" must be true or false", what, key);
    *out = j->nodes[n].type == TLENS__JSON_TRUE;
    return TLENS_OK;
}

/* Read a Hugging Face GPT2Config (config.json). Keys that do not change the
 * forward pass (dropout, task parameters, labels ...) are ignored. */
static tlens_result tlens__config_parse(tlens_config *c, const char *text, size_t len, const char *what,
                                        const tlens_allocator *a, tlens_error *err) {
    tlens__json j;
    tlens_result r;
    int n, d_mlp = 0, scale_weights = 1, n_ctx = 0, tied = 1;
    memset(c, 0, sizeof *c);
    c->eps = 1e-5f;
    r = tlens__json_parse(&j, text, len, what, a, err);
    if (r) return r;
    if ((r = tlens__config_int(&j, "n_layer", &c->n_layers, 1, what, err)) ||
        (r = tlens__config_int(&j, "n_embd", &c->d_model, 1, what, err)) ||
        (r = tlens__config_int(&j, "n_head", &c->n_heads, 1, what, err)) ||
        (r = tlens__config_int(&j, "vocab_size", &c->d_vocab, 1, what, err)) ||
        (r = tlens__config_int(&j, "n_inner", &d_mlp, 0, what, err)) ||
        (r = tlens__config_int(&j, "n_ctx", &n_ctx, 0, what, err)) ||
        (r = tlens__config_int(&j, "n_positions", &c->n_ctx, 0, what, err)) ||
        (r = tlens__config_bool(&j, "scale_attn_by_inverse_layer_idx", &c->scale_attn_by_inverse_layer_idx, what, err)) ||
        (r = tlens__config_bool(&j, "scale_attn_weights", &scale_weights, what, err)) ||
        (r = tlens__config_bool(&j, "tie_word_embeddings", &tied, what, err)))
        goto done;
    if (!c->n_ctx) c->n_ctx = n_ctx;
    if (!c->n_ctx) { r = tlens__fail(err, TLENS_ERR_CONFIG, "%s: missing \"n_positions\"", what); goto done; }
    c->d_mlp = d_mlp ? d_mlp : 4 * c->d_model;
    if (c->n_heads > 0) c->d_head = c->d_model / c->n_heads;
    if ((n = tlens__json_get(&j, 0, "layer_norm_epsilon")) >= 0) {
        if (j.nodes[n].type != TLENS__JSON_NUMBER) {
            r = tlens__fail(err, TLENS_ERR_CONFIG, "%s: \"layer_norm_epsilon\" must be a number", what);
            goto done;
        }
        c->eps = (float)j.nodes[n].number;
    }
    if ((n = tlens__json_get(&j, 0, "activation_function")) >= 0) {
        if (tlens__json_str_eq(&j.nodes[n], "gelu_new")) c->act_fn = TLENS_ACT_GELU_NEW;
        else if (tlens__json_str_eq(&j.nodes[n], "gelu")) c->act_fn = TLENS_ACT_GELU;
        else if (tlens__json_str_eq(&j.nodes[n], "relu")) c->act_fn = TLENS_ACT_RELU;
        else {
            r = tlens__fail(err, TLENS_ERR_CONFIG, "%s: activation_function must be gelu_new, gelu or relu", what);
            goto done;
        }
    }
    if (!scale_weights) {
        r = tlens__fail(err, TLENS_ERR_CONFIG, "%s: scale_attn_weights false is not supported (TransformerLens always scales by sqrt(d_head))", what);
        goto done;
    }
    (void)tied; /* tying is decided by the presence of lm_head.weight */
    r = tlens__config_check(c, what, err);
done:
    tlens__json_free(&j);
    return r;
}

/* ------------------------------------------------------------------------
 * safetensors: an 8-byte little-endian header length, a JSON header
 * {"name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]}},
 * then the data. Every offset and size is checked against the file.
 * ---------------------------------------------------------------------- */
typedef struct tlens__st_entry {
    char name[96];        /* without a "transformer." prefix */
    int dtype;            /* TLENS_F32/F16/BF16, or 0 for any other type */
    char dtype_name[12];
    int ndim;
    long long shape[8];
    uint64_t begin, end;  /* absolute file offsets */
} tlens__st_entry;

typedef struct tlens__st {
    tlens__st_entry *entries;
    int count;
    uint64_t file_size;
} tlens__st;

static int tlens__st_dtype(const tlens__json_node *n, char *name, size_t cap) {
    if (tlens__json_decode(n, name, cap) == (size_t)-1) { name[0] = '?'; name[1] = 0; }
    if (strcmp(name, "F32") == 0) return TLENS_F32;
    if (strcmp(name, "F16") == 0) return TLENS_F16;
    if (strcmp(name, "BF16") == 0) return TLENS_BF16;
    return 0;
}

static size_t tlens__st_dtype_size(const char *name) {
    if (!strcmp(name, "F64") || !strcmp(name, "I64") || !strcmp(name, "U64")) return 8;
    if (!strcmp(name, "F32") || !strcmp(name, "I32") || !strcmp(name, "U32")) return 4;
    if (!strcmp(name, "F16") || !strcmp(name, "BF16") || !strcmp(name, "I16") || !strcmp(name, "U16")) return 2;
    if (!strcmp(name, "I8") || !strcmp(name, "U8") || !strcmp(name, "BOOL") || !strncmp(name, "F8", 2)) return 1;
    return 0;
}

static tlens_result tlens__st_entry_parse(const tlens__json *j, int node, tlens__st_entry *e, uint64_t data_start,
                                          uint64_t file_size, const char *what, tlens_error *err) {
    int dt = tlens__json_get(j, node, "dtype"), sh = tlens__json_get(j, node, "shape");
    int off = tlens__json_get(j, node, "data_offsets"), c, k = 0;
    size_t numel = 1, bytes = 0, esize;
    long long b[2];
    if (j->nodes[node].type != TLENS__JSON_OBJECT || dt < 0 || sh < 0 || off < 0 ||
        j->nodes[dt].type != TLENS__JSON_STRING || j->nodes[sh].type != TLENS__JSON_ARRAY ||
        j->nodes[off].type != TLENS__JSON_ARRAY)
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: tensor %s needs dtype, shape and data_offsets", what, e->name);
    e->dtype = tlens__st_dtype(&j->nodes[dt], e->dtype_name, sizeof e->dtype_name);
    esize = tlens__st_dtype_size(e->dtype_name);
    if (!esize) return tlens__fail(err, TLENS_ERR_DTYPE, "%s: tensor %s has unknown dtype %s", what, e->name, e->dtype_name);
    for (c = j->nodes[sh].first; c >= 0; c = j->nodes[c].next) {
        const tlens__json_node *d = &j->nodes[c];
        if (k == 8 || d->type != TLENS__JSON_NUMBER || !d->is_integer || d->integer < 0)
            return tlens__fail(err, TLENS_ERR_FORMAT, "%s: tensor %s has a bad shape", what, e->name);
        e->shape[k++] = d->integer;
        if (!tlens__mul_ok(numel, (size_t)d->integer, &numel) || (unsigned long long)d->integer != (size_t)d->integer)
            return tlens__fail(err, TLENS_ERR_FORMAT, "%s: tensor %s: shape overflows", what, e->name);
    }
    e->ndim = k;
    k = 0;
    for (c = j->nodes[off].first; c >= 0; c = j->nodes[c].next) {
        const tlens__json_node *d = &j->nodes[c];
        if (k == 2 || d->type != TLENS__JSON_NUMBER || !d->is_integer || d->integer < 0)
            return tlens__fail(err, TLENS_ERR_FORMAT, "%s: tensor %s has bad data_offsets", what, e->name);
        b[k++] = d->integer;
    }
    if (k != 2 || b[1] < b[0])
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: tensor %s has bad data_offsets", what, e->name);
    if (!tlens__mul_ok(numel, esize, &bytes) || (uint64_t)(b[1] - b[0]) != (uint64_t)bytes)
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: tensor %s: data_offsets span %lld bytes but its shape needs %zu",
                           what, e->name, b[1] - b[0], bytes);
    e->begin = data_start + (uint64_t)b[0];
    e->end = data_start + (uint64_t)b[1];
    if (e->end > file_size || e->begin < data_start)
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: tensor %s lies past the end of the file", what, e->name);
    return TLENS_OK;
}

/* Parse a safetensors header (the 8-byte length already read from the
 * file's first bytes, `header` holding the JSON). */
static tlens_result tlens__st_parse(tlens__st *st, const char *header, size_t header_len, uint64_t file_size,
                                    const char *what, const tlens_allocator *a, tlens_error *err) {
    tlens__json j;
    tlens_result r;
    int c, n = 0;
    memset(st, 0, sizeof *st);
    st->file_size = file_size;
    if ((r = tlens__json_parse(&j, header, header_len, what, a, err))) return r;
    for (c = j.nodes[0].first; c >= 0; c = j.nodes[c].next) n++;
    st->entries = (tlens__st_entry *)tlens__calloc(a, (size_t)(n ? n : 1) * sizeof *st->entries);
    if (!st->entries) {
        tlens__json_free(&j);
        return tlens__fail(err, TLENS_ERR_NOMEM, "%s: out of memory for %d tensor entries", what, n);
    }
    for (c = j.nodes[0].first; c >= 0; c = j.nodes[c].next) {
        tlens__st_entry *e = &st->entries[st->count];
        char name[128];
        const char *nm = name;
        if (tlens__json_decode(&j.nodes[j.nodes[c].key], name, sizeof name) == (size_t)-1) {
            continue; /* a name this long is no GPT-2 tensor; ignore it */
        }
        if (strcmp(name, "__metadata__") == 0) continue;
        if (strncmp(nm, "transformer.", 12) == 0) nm += 12;
        if (strlen(nm) >= sizeof e->name) continue;
        strcpy(e->name, nm);
        if ((r = tlens__st_entry_parse(&j, c, e, 8u + (uint64_t)header_len, file_size, what, err))) break;
        st->count++;
    }
    tlens__json_free(&j);
    if (r) {
        tlens__free(a, st->entries);
        st->entries = NULL;
    }
    return r;
}

static const tlens__st_entry *tlens__st_find(const tlens__st *st, const char *name) {
    int i;
    for (i = 0; i < st->count; i++)
        if (strcmp(st->entries[i].name, name) == 0) return &st->entries[i];
    return NULL;
}

/* ------------------------------------------------------------------------
 * 3.6 Weight processing, as TransformerLens' from_pretrained does it
 *
 * It runs on a float32 "state": every parameter in Hugging Face layout,
 * W_U already transposed to (D, V) and separate from W_E even when tied
 * (TransformerLens processes the two copies differently).
 * ---------------------------------------------------------------------- */
typedef struct tlens__state_block {
    float *ln1_w, *ln1_b, *W_QKV, *b_QKV, *W_O, *b_O;
    float *ln2_w, *ln2_b, *W_in, *b_in, *W_out, *b_out;
} tlens__state_block;

typedef struct tlens__state {
    float *W_E, *W_pos, *lnf_w, *lnf_b, *W_U, *b_U;
    tlens__state_block *blocks;
    float *buf;
} tlens__state;

static void tlens__state_free(tlens__state *s, const tlens_allocator *a) {
    tlens__free(a, s->buf);
    tlens__free(a, s->blocks);
    memset(s, 0, sizeof *s);
}

static tlens_result tlens__state_alloc(tlens__state *s, const tlens_config *c, const tlens_allocator *a,
                                       tlens_error *err) {
    size_t D = (size_t)c->d_model, M = (size_t)c->d_mlp, V = (size_t)c->d_vocab, P = (size_t)c->n_ctx;
    size_t per_layer = 4 * D * D + 2 * D * M + 4 * D + 3 * D + D + M + D;
    size_t total = per_layer * (size_t)c->n_layers + 2 * V * D + P * D + 2 * D + V, l;
    float *p;
    memset(s, 0, sizeof *s);
    s->blocks = (tlens__state_block *)tlens__calloc(a, (size_t)c->n_layers * sizeof *s->blocks);
    s->buf = (float *)tlens__alloc(a, total * sizeof(float));
    if (!s->blocks || !s->buf) {
        tlens__state_free(s, a);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory: loading needs %zu MB of float32 weights",
                           total * 4 / 1000000);
    }
    p = s->buf;
#define TLENS__TAKE(dst, n) (dst = p, p += (n))
    TLENS__TAKE(s->W_E, V * D);
    TLENS__TAKE(s->W_pos, P * D);
    TLENS__TAKE(s->lnf_w, D);
    TLENS__TAKE(s->lnf_b, D);
    TLENS__TAKE(s->W_U, D * V);
    TLENS__TAKE(s->b_U, V);
    for (l = 0; l < (size_t)c->n_layers; l++) {
        tlens__state_block *b = &s->blocks[l];
        TLENS__TAKE(b->ln1_w, D); TLENS__TAKE(b->ln1_b, D);
        TLENS__TAKE(b->W_QKV, D * 3 * D); TLENS__TAKE(b->b_QKV, 3 * D);
        TLENS__TAKE(b->W_O, D * D); TLENS__TAKE(b->b_O, D);
        TLENS__TAKE(b->ln2_w, D); TLENS__TAKE(b->ln2_b, D);
        TLENS__TAKE(b->W_in, D * M); TLENS__TAKE(b->b_in, M);
        TLENS__TAKE(b->W_out, M * D); TLENS__TAKE(b->b_out, D);
    }
#undef TLENS__TAKE
    memset(s->b_U, 0, V * sizeof(float));
    return TLENS_OK;
}

/* W (K,N), b (N) read the output of a LayerNorm with weight w and bias lb:
 * b += lb @ W, W *= w (per input row), then centre every column over the
 * K inputs (the LayerNorm output has zero mean, so this changes nothing). */
static void tlens__fold_ln_into(float *W, float *b, const float *w, const float *lb, int K, int N) {
    int k, n;
    double *sum = NULL;
    for (k = 0; k < K; k++) {
        const float *row = W + (size_t)k * (size_t)N;
        for (n = 0; n < N; n++) b[n] += lb[k] * row[n];
    }
    for (k = 0; k < K; k++) {
        float *row = W + (size_t)k * (size_t)N;
        for (n = 0; n < N; n++) row[n] *= w[k];
    }
    (void)sum;
    for (n = 0; n < N; n++) {
        double mean = 0;
        for (k = 0; k < K; k++) mean += W[(size_t)k * (size_t)N + (size_t)n];
        mean /= K;
        for (k = 0; k < K; k++) W[(size_t)k * (size_t)N + (size_t)n] -= (float)mean;
    }
}

/* Subtract from every row of W (R, C) its mean over the C columns. */
static void tlens__center_rows(float *W, size_t R, size_t C) {
    size_t r, c;
    for (r = 0; r < R; r++) {
        float *row = W + r * C;
        double mean = 0;
        for (c = 0; c < C; c++) mean += row[c];
        mean /= (double)C;
        for (c = 0; c < C; c++) row[c] -= (float)mean;
    }
}

static void tlens__process(tlens__state *s, const tlens_config *c, int flags) {
    int l, D = c->d_model, M = c->d_mlp, V = c->d_vocab;
    if (flags & TLENS__FOLD_LN) {
        for (l = 0; l < c->n_layers; l++) {
            tlens__state_block *b = &s->blocks[l];
            tlens__fold_ln_into(b->W_QKV, b->b_QKV, b->ln1_w, b->ln1_b, D, 3 * D);
            tlens__fold_ln_into(b->W_in, b->b_in, b->ln2_w, b->ln2_b, D, M);
        }
        tlens__fold_ln_into(s->W_U, s->b_U, s->lnf_w, s->lnf_b, D, V);
    }
    if (flags & TLENS__CENTER_WRITING) {
        tlens__center_rows(s->W_E, (size_t)V, (size_t)D);
        tlens__center_rows(s->W_pos, (size_t)c->n_ctx, (size_t)D);
        for (l = 0; l < c->n_layers; l++) {
            tlens__state_block *b = &s->blocks[l];
            tlens__center_rows(b->W_O, (size_t)D, (size_t)D);
            tlens__center_rows(b->b_O, 1, (size_t)D);
            tlens__center_rows(b->W_out, (size_t)M, (size_t)D);
            tlens__center_rows(b->b_out, 1, (size_t)D);
        }
    }
    if (flags & TLENS__CENTER_UNEMBED) {
        tlens__center_rows(s->W_U, (size_t)D, (size_t)V);
        tlens__center_rows(s->b_U, 1, (size_t)V);
    }
    if (flags & TLENS__FOLD_VALUE_BIASES) {
        /* b_O += b_V @ W_O: the value bias passes through the softmax
         * unchanged (the pattern sums to 1), so it can live in b_O. */
        for (l = 0; l < c->n_layers; l++) {
            tlens__state_block *b = &s->blocks[l];
            float *b_V = b->b_QKV + 2 * D;
            int i, n;
            for (i = 0; i < D; i++)
                for (n = 0; n < D; n++) b->b_O[n] += b_V[i] * b->W_O[(size_t)i * (size_t)D + (size_t)n];
            memset(b_V, 0, (size_t)D * sizeof(float));
        }
    }
}

static int tlens__flags_from_options(const tlens_load_options *o) {
    int f = 0;
    if (o->raw) return 0;
    if (!o->no_fold_ln) f |= TLENS__FOLD_LN;
    if (!o->no_center_writing_weights) f |= TLENS__CENTER_WRITING;
    if (!o->no_center_unembed) f |= TLENS__CENTER_UNEMBED;
    if (!o->no_fold_value_biases) f |= TLENS__FOLD_VALUE_BIASES;
    return f;
}

/* ------------------------------------------------------------------------
 * Building a model from a state: lay out the one parameter buffer from the
 * parameter table and pack every matrix into it.
 * ---------------------------------------------------------------------- */
static tlens_result tlens__model_new(tlens_model **out, const tlens_config *c, const tlens_allocator *a,
                                     tlens_error *err) {
    tlens_model *m = (tlens_model *)tlens__calloc(a, sizeof *m);
    if (m) m->blocks = (tlens__block *)tlens__calloc(a, (size_t)c->n_layers * sizeof *m->blocks);
    if (!m || !m->blocks) {
        if (m) tlens__free(a, m);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the model");
    }
    m->cfg = *c;
    if (a) m->alloc = *a;
    *out = m;
    return TLENS_OK;
}

/* The source of table row p in the state, as (rows, cols) float32. */
static const float *tlens__state_source(const tlens__state *s, const tlens_model *m, const tlens__param *p) {
    int l = 0;
    const char *dot;
    if (!strcmp(p->name, "embed.W_E")) return s->W_E;
    if (!strcmp(p->name, "pos_embed.W_pos")) return s->W_pos;
    if (!strcmp(p->name, "ln_final.w")) return s->lnf_w;
    if (!strcmp(p->name, "ln_final.b")) return s->lnf_b;
    if (!strcmp(p->name, "unembed.W_U")) return s->W_U;
    if (!strcmp(p->name, "unembed.b_U")) return s->b_U;
    dot = p->name + 7; /* "blocks." */
    while (*dot >= '0' && *dot <= '9') l = l * 10 + (*dot++ - '0');
    (void)m;
    {
        const tlens__state_block *b = &s->blocks[l];
        dot++;
        if (!strcmp(dot, "ln1.w")) return b->ln1_w;
        if (!strcmp(dot, "ln1.b")) return b->ln1_b;
        if (!strcmp(dot, "attn.W_QKV")) return b->W_QKV;
        if (!strcmp(dot, "attn.b_QKV")) return b->b_QKV;
        if (!strcmp(dot, "attn.W_O")) return b->W_O;
        if (!strcmp(dot, "attn.b_O")) return b->b_O;
        if (!strcmp(dot, "ln2.w")) return b->ln2_w;
        if (!strcmp(dot, "ln2.b")) return b->ln2_b;
        if (!strcmp(dot, "mlp.W_in")) return b->W_in;
        if (!strcmp(dot, "mlp.b_in")) return b->b_in;
        if (!strcmp(dot, "mlp.W_out")) return b->W_out;
        if (!strcmp(dot, "mlp.b_out")) return b->b_out;
    }
    return NULL;
}

static void tlens__store_rows(void *dst, const float *src, size_t n, tlens_dtype dt) {
    size_t i;
    if (dt == TLENS_F32) { memcpy(dst, src, n * 4); return; }
    for (i = 0; i < n; i++)
        ((uint16_t *)dst)[i] = dt == TLENS_F16 ? tlens__f32_to_f16(src[i]) : tlens__f32_to_bf16(src[i]);
}

static tlens__param *tlens__table_alloc(const tlens_model *m, tlens_error *err) {
    tlens__param *t = (tlens__param *)tlens__alloc(&m->alloc, ((size_t)m->cfg.n_layers * 16u + 8u) * sizeof *t);
    if (!t) tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the parameter table");
    return t;
}

/* Point every table row into the parameter buffer `base` (in table order,
 * 64-byte aligned pieces). */
static void tlens__wire_params(tlens_model *m, tlens__param *t, int n, unsigned char *base) {
    int i;
    size_t off = 0;
    for (i = 0; i < n; i++) {
        if (t[i].kind == TLENS__PACKED) {
            t[i].mat->data = base + off;
            t[i].mat->K = t[i].rows;
            t[i].mat->N = t[i].cols;
            t[i].mat->dtype = m->wdtype;
        } else {
            *t[i].slot = base + off;
        }
        off += tlens__param_bytes(&t[i], m->wdtype);
    }
}

static tlens_result tlens__model_from_state(tlens_model *m, const tlens__state *s, tlens_error *err) {
    tlens__param *t = tlens__table_alloc(m, err);
    int n, i;
    size_t total = 0;
    unsigned char *base;
    if (!t) return TLENS_ERR_NOMEM;
    if (!m->processing && m->cfg.tied) m->W_E = NULL; /* read from W_U's columns */
    else m->W_E = s->W_E; /* anything non-NULL: the table includes it */
    n = tlens__param_table(m, t);
    for (i = 0; i < n; i++) total += tlens__param_bytes(&t[i], m->wdtype);
    base = (unsigned char *)tlens__alloc(&m->alloc, total + 64);
    if (!base) {
        tlens__free(&m->alloc, t);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for %zu MB of parameters", total / 1000000);
    }
    m->params = base;
    base += (64u - ((uintptr_t)base & 63u)) & 63u;
    tlens__wire_params(m, t, n, base);
    for (i = 0; i < n; i++) {
        const float *src = tlens__state_source(s, m, &t[i]);
        size_t count = (size_t)t[i].rows * (size_t)t[i].cols;
        TLENS_ASSERT(src);
        if (t[i].kind == TLENS__PACKED) tlens__mat_pack((void *)t[i].mat->data, src, t[i].rows, t[i].cols, m->wdtype);
        else if (t[i].kind == TLENS__ROWS) tlens__store_rows((void *)*t[i].slot, src, count, m->wdtype);
        else memcpy((void *)*t[i].slot, src, count * 4);
    }
    tlens__free(&m->alloc, t);
    return TLENS_OK;
}

#ifndef TLENS_NO_STDIO
/* ------------------------------------------------------------------------
 * Loading a Hugging Face folder
 * ---------------------------------------------------------------------- */

/* Seek to an absolute 64-bit offset with C99's long-only fseek. */
static int tlens__seek(FILE *f, uint64_t off) {
    const uint64_t step = 1u << 30;
    if (fseek(f, 0, SEEK_SET) != 0) return 0;
    while (off > 0) {
        uint64_t s = off < step ? off : step;
        if (fseek(f, (long)s, SEEK_CUR) != 0) return 0;
        off -= s;
    }
    return 1;
}

/* Read tensor `name` (expected shape rows x cols, or a vector when rows is
 * 0) from the safetensors file into dst as float32; `transpose` stores the
 * (rows, cols) tensor as (cols, rows). */
static tlens_result tlens__st_read(FILE *f, const tlens__st *st, const char *name, int rows, int cols, int transpose,
                                   float *dst, const char *path, const tlens_allocator *a, tlens_error *err) {
    const tlens__st_entry *e = tlens__st_find(st, name);
    unsigned char *chunk;
    size_t esize, numel = (size_t)(rows ? rows : 1) * (size_t)cols, done = 0, per_chunk;
    if (!e) return tlens__fail(err, TLENS_ERR_MISSING, "%s: missing tensor %s", path, name);
    if (!e->dtype)
        return tlens__fail(err, TLENS_ERR_DTYPE, "%s: tensor %s has dtype %s; only F32, F16 and BF16 are supported", path,
                           name, e->dtype_name);
    if (rows ? (e->ndim != 2 || e->shape[0] != rows || e->shape[1] != cols) : (e->ndim != 1 || e->shape[0] != cols)) {
        if (rows)
            return tlens__fail(err, TLENS_ERR_SHAPE, "%s: tensor %s should be [%d, %d] for this config.json", path, name,
                               rows, cols);
        return tlens__fail(err, TLENS_ERR_SHAPE, "%s: tensor %s should be [%d] for this config.json", path, name, cols);
    }
    if (!dst) return TLENS_OK; /* checking only */
    esize = tlens__dtype_size((tlens_dtype)e->dtype);
    per_chunk = (1u << 20) / esize;
    chunk = (unsigned char *)tlens__alloc(a, per_chunk * esize);
    if (!chunk) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory reading %s", name);
    if (!tlens__seek(f, e->begin)) {
        tlens__free(a, chunk);
        return tlens__fail(err, TLENS_ERR_IO, "%s: cannot seek to tensor %s", path, name);
    }
    while (done < numel) {
        size_t n = numel - done < per_chunk ? numel - done : per_chunk, i;
        if (fread(chunk, esize, n, f) != n) {
            tlens__free(a, chunk);
            return tlens__fail(err, TLENS_ERR_IO, "%s: file ends inside tensor %s", path, name);
        }
        if (!transpose) {
            tlens__decode_floats(dst + done, chunk, n, (tlens_dtype)e->dtype);
        } else {
            float tmp[256];
            size_t k = 0;
            while (k < n) {
                size_t m = n - k < 256 ? n - k : 256;
                tlens__decode_floats(tmp, chunk + k * esize, m, (tlens_dtype)e->dtype);
                for (i = 0; i < m; i++) {
                    size_t idx = done + k + i, r = idx / (size_t)cols, c = idx % (size_t)cols;
                    dst[c * (size_t)rows + r] = tmp[i];
                }
                k += m;
            }
        }
        done += n;
    }
    tlens__free(a, chunk);
    return TLENS_OK;
}

static tlens_result tlens__st_open(FILE **fp, tlens__st *st, const char *path, const tlens_allocator *a,
                                   tlens_error *err) {
    unsigned char len8[8];
    uint64_t hlen, fsize;
    char *header;
    long sz;
    tlens_result r;
    FILE *f = fopen(path, "rb");
    if (!f) return tlens__fail(err, TLENS_ERR_IO, "cannot open %s", path);
    fsize = 0;
    if (fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) >= 0) fsize = (uint64_t)sz;
    if (fsize < 8 || fseek(f, 0, SEEK_SET) != 0 || fread(len8, 1, 8, f) != 8) {
        fclose(f);
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: too short for a safetensors file", path);
    }
    hlen = tlens__le64(len8);
    if (hlen < 2 || hlen > fsize - 8 || hlen > (100u << 20)) {
        fclose(f);
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: safetensors header length %llu does not fit the file (%llu bytes)",
                           path, (unsigned long long)hlen, (unsigned long long)fsize);
    }
    header = (char *)tlens__alloc(a, (size_t)hlen + 1);
    if (!header) {
        fclose(f);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the header of %s", path);
    }
    if (fread(header, 1, (size_t)hlen, f) != (size_t)hlen) {
        tlens__free(a, header);
        fclose(f);
        return tlens__fail(err, TLENS_ERR_IO, "%s: cannot read the header", path);
    }
    header[hlen] = 0;
    r = tlens__st_parse(st, header, (size_t)hlen, fsize, path, a, err);
    tlens__free(a, header);
    if (r) {
        fclose(f);
        return r;
    }
    *fp = f;
    return TLENS_OK;
}

/* The tensors of one block, by their Hugging Face names: the shape in
 * units of D and M (rows 0: a vector) and where each goes in the state. */
enum { TLENS__DIM_D = 1, TLENS__DIM_3D = 3, TLENS__DIM_M = -1 };
static const struct {
    const char *suffix;
    int rows, cols;
    size_t offset;
} tlens__hf_block_tensors[12] = {
    {"ln_1.weight", 0, TLENS__DIM_D, offsetof(tlens__state_block, ln1_w)},
    {"ln_1.bias", 0, TLENS__DIM_D, offsetof(tlens__state_block, ln1_b)},
    {"attn.c_attn.weight", TLENS__DIM_D, TLENS__DIM_3D, offsetof(tlens__state_block, W_QKV)},
    {"attn.c_attn.bias", 0, TLENS__DIM_3D, offsetof(tlens__state_block, b_QKV)},
    {"attn.c_proj.weight", TLENS__DIM_D, TLENS__DIM_D, offsetof(tlens__state_block, W_O)},
    {"attn.c_proj.bias", 0, TLENS__DIM_D, offsetof(tlens__state_block, b_O)},
    {"ln_2.weight", 0, TLENS__DIM_D, offsetof(tlens__state_block, ln2_w)},
    {"ln_2.bias", 0, TLENS__DIM_D, offsetof(tlens__state_block, ln2_b)},
    {"mlp.c_fc.weight", TLENS__DIM_D, TLENS__DIM_M, offsetof(tlens__state_block, W_in)},
    {"mlp.c_fc.bias", 0, TLENS__DIM_M, offsetof(tlens__state_block, b_in)},
    {"mlp.c_proj.weight", TLENS__DIM_M, TLENS__DIM_D, offsetof(tlens__state_block, W_out)},
    {"mlp.c_proj.bias", 0, TLENS__DIM_D, offsetof(tlens__state_block, b_out)},
};

static int tlens__hf_dim(int code, const tlens_config *c) {
    return code == TLENS__DIM_M ? c->d_mlp : code * c->d_model;
}

/* Read every GPT-2 tensor of the checkpoint into the state (HF layout);
 * with s NULL only check that each is there with its shape and type, so
 * that a config.json with absurd sizes fails before anything is allocated. */
static tlens_result tlens__read_checkpoint(tlens__state *s, tlens_config *c, FILE *f, const tlens__st *st,
                                           const char *path, const tlens_allocator *a, tlens_error *err) {
    tlens_result r;
    int l, i, D = c->d_model, V = c->d_vocab;
    char name[96];
    const char *lm_head = "lm_head.weight";
    if ((r = tlens__st_read(f, st, "wte.weight", V, D, 0, s ? s->W_E : NULL, path, a, err)) ||
        (r = tlens__st_read(f, st, "wpe.weight", c->n_ctx, D, 0, s ? s->W_pos : NULL, path, a, err)) ||
        (r = tlens__st_read(f, st, "ln_f.weight", 0, D, 0, s ? s->lnf_w : NULL, path, a, err)) ||
        (r = tlens__st_read(f, st, "ln_f.bias", 0, D, 0, s ? s->lnf_b : NULL, path, a, err)))
        return r;
    for (l = 0; l < c->n_layers; l++)
        for (i = 0; i < 12; i++) {
            float *dst = s ? *(float **)(void *)((char *)&s->blocks[l] + tlens__hf_block_tensors[i].offset) : NULL;
            int rows = tlens__hf_block_tensors[i].rows ? tlens__hf_dim(tlens__hf_block_tensors[i].rows, c) : 0;
            tlens__buf nb;
            nb.p = name; nb.cap = sizeof name; nb.len = 0;
            tlens__puts(&nb, "h.");
            tlens__puti(&nb, l);
            tlens__putc(&nb, '.');
            tlens__puts(&nb, tlens__hf_block_tensors[i].suffix);
            tlens__putc(&nb, '\0');
            if ((r = tlens__st_read(f, st, name, rows, tlens__hf_dim(tlens__hf_block_tensors[i].cols, c), 0, dst, path,
                                    a, err)))
                return r;
        }
    /* lm_head.weight (V, D) present: untied; else W_U = wte^T */
    c->tied = tlens__st_find(st, lm_head) == NULL;
    if (!c->tied) return tlens__st_read(f, st, lm_head, V, D, 1, s ? s->W_U : NULL, path, a, err);
    if (s) {
        size_t v, d;
        for (v = 0; v < (size_t)V; v++)
            for (d = 0; d < (size_t)D; d++) s->W_U[d * (size_t)V + v] = s->W_E[v * (size_t)D + d];
    }
    return TLENS_OK;
}

static tlens_result tlens__load_hf(tlens_model **out, const char *dir, const tlens_load_options *o,
                                   tlens_error *err) {
    char path[4096];
    char *text = NULL;
    size_t len;
    tlens_config cfg;
    tlens__state s;
    tlens__st st;
    FILE *f = NULL;
    tlens_model *m = NULL;
    tlens_result r;
    const tlens_allocator *a = &o->allocator;
    if (!tlens__join(path, sizeof path, dir, "config.json"))
        return tlens__fail(err, TLENS_ERR_ARG, "path too long: %s", dir);
    if ((r = tlens__read_file(a, path, &text, &len, err))) return r;
    r = tlens__config_parse(&cfg, text, len, path, a, err);
    tlens__free(a, text);
    if (r) return r;
    tlens__join(path, sizeof path, dir, "model.safetensors");
    if ((r = tlens__st_open(&f, &st, path, a, err))) return r;
    if ((r = tlens__read_checkpoint(NULL, &cfg, f, &st, path, a, err)) ||
        (r = tlens__state_alloc(&s, &cfg, a, err))) {
        fclose(f);
        tlens__free(a, st.entries);
        return r;
    }
    r = tlens__read_checkpoint(&s, &cfg, f, &st, path, a, err);
    fclose(f);
    tlens__free(a, st.entries);
    if (r) goto done;
    if ((r = tlens__model_new(&m, &cfg, a, err))) goto done;
    m->processing = tlens__flags_from_options(o);
    m->wdtype = o->weight_dtype == TLENS_DTYPE_AUTO ? TLENS_F32 : o->weight_dtype;
    tlens__process(&s, &m->cfg, m->processing);
    if ((r = tlens__model_from_state(m, &s, err))) goto done;
    if (!o->no_tokenizer) {
        tlens__join(path, sizeof path, dir, "vocab.json");
        if (tlens__file_exists(path)) {
            if ((r = tlens__read_file(a, path, &m->vocab_json, &m->vocab_len, err))) goto done;
            tlens__join(path, sizeof path, dir, "merges.txt");
            if ((r = tlens__read_file(a, path, &m->merges_txt, &m->merges_len, err))) goto done;
        }
    }
done:
    tlens__state_free(&s, a);
    if (r && m) {
        tlens_free(m);
        m = NULL;
    }
    *out = m;
    return r;
}
#endif /* TLENS_NO_STDIO */

/* ------------------------------------------------------------------------
 * 3.7 The .tlens file format
 *
 * One self-contained file: configuration, tokenizer and weights. All
 * integers and floats are little-endian. Offsets are from the start of the
 * file; every tensor starts on a 64-byte boundary, so a file mapped or
 * compiled in at a 64-byte aligned address is used in place.
 *
 *   offset  size  field
 *   0       8     magic "TLENS\0\0\1"
 *   8       4     format version (1)
 *   12      4     header size (256)
 *   16      36    n_layers, d_model, n_heads, d_mlp, d_vocab, n_ctx, act_fn
 *                 (0 gelu_new, 1 gelu, 2 relu), scale_attn_by_inverse_layer_idx,
 *                 tied (u32 each)
 *   52      4     layer_norm_epsilon (f32)
 *   56      4     processing: 1 fold_ln, 2 center_writing_weights,
 *                 4 center_unembed, 8 fold_value_biases (0 = raw weights)
 *   60      4     weight type of embed.W_E and the matrices: 1 f32, 2 f16, 3 bf16
 *   64      4     matrix layout (TLENS__MAT_LAYOUT: the packing of 3.4)
 *   68      4     tensor count
 *   72      8     tensor table offset
 *   80      16    vocab.json offset, size (0, 0: no tokenizer)
 *   96      16    merges.txt offset, size
 *   112     8     data offset (the first tensor)
 *   120     136   zeros
 *   table   64 per tensor: name (40 bytes, NUL padded), kind (u32: 0 f32
 *           vector, 1 rows in the weight type, 2 packed matrix), rows,
 *           cols (u32), reserved (u32), offset (u64, from the file start)
 *   data    the tensors in the table's order, each padded to 64 bytes
 *
 * The tensor list is exactly the parameter table of 3.5 for the stored
 * processing, so a reader checks every row against what it expects.
 * ---------------------------------------------------------------------- */
#define TLENS__MAGIC "TLENS\0\0\1"
#define TLENS__FORMAT_VERSION 1u
#define TLENS__HEADER_SIZE 256u
#define TLENS__TABLE_ROW 64u

static tlens_result tlens__tlens_config(tlens_config *c, int *processing, tlens_dtype *dt, const unsigned char *h,
                                        size_t size, tlens_error *err) {
    if (size < TLENS__HEADER_SIZE || memcmp(h, TLENS__MAGIC, 8) != 0)
        return tlens__fail(err, TLENS_ERR_FORMAT, "not a .tlens file (bad magic or shorter than its header)");
    if (tlens__le32(h + 8) != TLENS__FORMAT_VERSION)
        return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens format version %u is not supported (this is %u)",
                           (unsigned)tlens__le32(h + 8), TLENS__FORMAT_VERSION);
    if (tlens__le32(h + 12) != TLENS__HEADER_SIZE)
        return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens header size %u is wrong", (unsigned)tlens__le32(h + 12));
    memset(c, 0, sizeof *c);
    c->n_layers = (int)(tlens__le32(h + 16) & 0x7fffffffu);
    c->d_model = (int)(tlens__le32(h + 20) & 0x7fffffffu);
    c->n_heads = (int)(tlens__le32(h + 24) & 0x7fffffffu);
    c->d_mlp = (int)(tlens__le32(h + 28) & 0x7fffffffu);
    c->d_vocab = (int)(tlens__le32(h + 32) & 0x7fffffffu);
    c->n_ctx = (int)(tlens__le32(h + 36) & 0x7fffffffu);
    c->act_fn = (int)tlens__le32(h + 40);
    c->scale_attn_by_inverse_layer_idx = tlens__le32(h + 44) != 0;
    c->tied = tlens__le32(h + 48) != 0;
    c->eps = tlens__f32_from_bits(tlens__le32(h + 52));
    if (c->n_heads > 0) c->d_head = c->d_model / c->n_heads;
    if (c->act_fn < 0 || c->act_fn > TLENS_ACT_RELU)
        return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens: unknown activation function %d", c->act_fn);
    *processing = (int)tlens__le32(h + 56);
    if (*processing & ~15)
        return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens: unknown processing flags %u", (unsigned)*processing);
    *dt = (tlens_dtype)tlens__le32(h + 60);
    if (*dt != TLENS_F32 && *dt != TLENS_F16 && *dt != TLENS_BF16)
        return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens: unknown weight type %u", (unsigned)tlens__le32(h + 60));
    if (tlens__le32(h + 64) != TLENS__MAT_LAYOUT)
        return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens: matrix layout %u is not this version's (%u)",
                           (unsigned)tlens__le32(h + 64), (unsigned)TLENS__MAT_LAYOUT);
    return tlens__config_check(c, ".tlens", err);
}

/* Is [off, off+n) inside a file of `size` bytes? */
static int tlens__in_file(uint64_t off, uint64_t n, size_t size) {
    return off <= (uint64_t)size && n <= (uint64_t)size - off;
}

/* Check the table against the expected one and return each tensor's
 * offset in offs[]. */
static tlens_result tlens__tlens_table(const unsigned char *d, size_t size, const tlens__param *t, int n,
                                       tlens_dtype dt, uint64_t *offs, tlens_error *err) {
    const unsigned char *h = d;
    uint64_t table = tlens__le64(h + 72);
    int i;
    if (tlens__le32(h + 68) != (uint32_t)n)
        return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens: %u tensors, expected %d for this configuration",
                           (unsigned)tlens__le32(h + 68), n);
    if (!tlens__in_file(table, (uint64_t)n * TLENS__TABLE_ROW, size))
        return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens: the tensor table lies outside the file");
    for (i = 0; i < n; i++) {
        const unsigned char *row = d + table + (uint64_t)i * TLENS__TABLE_ROW;
        uint64_t off = tlens__le64(row + 56), bytes = tlens__param_bytes(&t[i], dt);
        if (memcmp(row, t[i].name, strlen(t[i].name) + 1) != 0)
            return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens: tensor %d should be %s", i, t[i].name);
        if (tlens__le32(row + 40) != (uint32_t)t[i].kind || tlens__le32(row + 44) != (uint32_t)t[i].rows ||
            tlens__le32(row + 48) != (uint32_t)t[i].cols)
            return tlens__fail(err, TLENS_ERR_SHAPE, ".tlens: tensor %s has the wrong kind or shape", t[i].name);
        if ((off & 63u) || !tlens__in_file(off, bytes, size))
            return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens: tensor %s lies outside the file or is misaligned", t[i].name);
        offs[i] = off;
    }
    return TLENS_OK;
}

/* Byte-swap n elements of `width` bytes (big-endian hosts). */
static void tlens__swap(unsigned char *p, size_t n, size_t width) {
    size_t i, k;
    for (i = 0; i < n; i++, p += width)
        for (k = 0; k < width / 2; k++) {
            unsigned char t = p[k];
            p[k] = p[width - 1 - k];
            p[width - 1 - k] = t;
        }
}

static size_t tlens__param_width(const tlens__param *p, tlens_dtype dt) {
    return p->kind == TLENS__VEC ? 4u : tlens__dtype_size(dt);
}

/* Point the model at the file's tensors (in place), or copy them into a
 * parameter buffer when the host is big-endian or the data misaligned. */
static tlens_result tlens__tlens_wire(tlens_model *m, const unsigned char *d, const tlens__param *t, int n,
                                      const uint64_t *offs, tlens_error *err) {
    int i, in_place = tlens__host_is_little_endian() && ((uintptr_t)d & 63u) == 0;
    size_t total = 0, off = 0;
    unsigned char *base = NULL;
    if (!in_place) {
        for (i = 0; i < n; i++) total += tlens__param_bytes(&t[i], m->wdtype);
        m->params = tlens__alloc(&m->alloc, total + 64);
        if (!m->params) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for %zu MB of parameters", total / 1000000);
        base = (unsigned char *)m->params + ((64u - ((uintptr_t)m->params & 63u)) & 63u);
    }
    for (i = 0; i < n; i++) {
        size_t bytes = tlens__param_bytes(&t[i], m->wdtype);
        unsigned char *p = (unsigned char *)(uintptr_t)(d + offs[i]);
        if (!in_place) {
            memcpy(base + off, p, bytes);
            p = base + off;
            if (!tlens__host_is_little_endian()) tlens__swap(p, bytes / tlens__param_width(&t[i], m->wdtype), tlens__param_width(&t[i], m->wdtype));
            off += bytes;
        }
        if (t[i].kind == TLENS__PACKED) {
            t[i].mat->data = p;
            t[i].mat->K = t[i].rows;
            t[i].mat->N = t[i].cols;
            t[i].mat->dtype = m->wdtype;
        } else {
            *t[i].slot = p;
        }
    }
    return TLENS_OK;
}

/* Turn a loaded model back into a float32 state (to process raw weights
 * at load, or to change the weight type). */
static tlens_result tlens__state_from_model(tlens__state *s, const tlens_model *m, tlens_error *err) {
    const tlens_config *c = &m->cfg;
    size_t D = (size_t)c->d_model, V = (size_t)c->d_vocab, i, k;
    int l;
    tlens_result r;
    if ((r = tlens__state_alloc(s, c, &m->alloc, err))) return r;
#define TLENS__UNPACK_MAT(dst, mat) \
    for (k = 0; k < (size_t)(mat).K; k++) for (i = 0; i < (size_t)(mat).N; i++) (dst)[k * (size_t)(mat).N + i] = tlens__mat_get(&(mat), (int)k, (int)i)
#define TLENS__COPY_VEC(dst, src, n) do { if (src) memcpy(dst, src, (n) * sizeof(float)); } while (0)
    TLENS__UNPACK_MAT(s->W_U, m->W_U);
    if (m->W_E) tlens__decode_rows(s->W_E, m->W_E, 0, V * D, m->wdtype);
    else for (i = 0; i < V; i++) tlens__mat_column(&m->W_U, (int)i, s->W_E + i * D);
    memcpy(s->W_pos, m->W_pos, (size_t)c->n_ctx * D * sizeof(float));
    TLENS__COPY_VEC(s->lnf_w, m->lnf_w, D);
    TLENS__COPY_VEC(s->lnf_b, m->lnf_b, D);
    TLENS__COPY_VEC(s->b_U, m->b_U, V);
    for (l = 0; l < c->n_layers; l++) {
        const tlens__block *b = &m->blocks[l];
        tlens__state_block *sb = &s->blocks[l];
        TLENS__UNPACK_MAT(sb->W_QKV, b->W_QKV);
        TLENS__UNPACK_MAT(sb->W_O, b->W_O);
        TLENS__UNPACK_MAT(sb->W_in, b->W_in);
        TLENS__UNPACK_MAT(sb->W_out, b->W_out);
        TLENS__COPY_VEC(sb->ln1_w, b->ln1_w, D);
        TLENS__COPY_VEC(sb->ln1_b, b->ln1_b, D);
        TLENS__COPY_VEC(sb->ln2_w, b->ln2_w, D);
        TLENS__COPY_VEC(sb->ln2_b, b->ln2_b, D);
        TLENS__COPY_VEC(sb->b_QKV, b->b_QKV, 3 * D);
        TLENS__COPY_VEC(sb->b_O, b->b_O, D);
        TLENS__COPY_VEC(sb->b_in, b->b_in, (size_t)c->d_mlp);
        TLENS__COPY_VEC(sb->b_out, b->b_out, D);
    }
#undef TLENS__UNPACK_MAT
#undef TLENS__COPY_VEC
    return TLENS_OK;
}

/* Read the tokenizer sources stored in the file (copied: they are small). */
static tlens_result tlens__tlens_tokenizer(tlens_model *m, const unsigned char *d, size_t size, tlens_error *err) {
    uint64_t vo = tlens__le64(d + 80), vn = tlens__le64(d + 88), mo = tlens__le64(d + 96), mn = tlens__le64(d + 104);
    if (!vn && !mn) return TLENS_OK;
    if (!tlens__in_file(vo, vn, size) || !tlens__in_file(mo, mn, size) || vn > (64u << 20) || mn > (64u << 20))
        return tlens__fail(err, TLENS_ERR_FORMAT, ".tlens: the tokenizer section lies outside the file");
    m->vocab_json = (char *)tlens__alloc(&m->alloc, (size_t)vn + 1);
    m->merges_txt = (char *)tlens__alloc(&m->alloc, (size_t)mn + 1);
    if (!m->vocab_json || !m->merges_txt) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the tokenizer");
    memcpy(m->vocab_json, d + vo, (size_t)vn);
    memcpy(m->merges_txt, d + mo, (size_t)mn);
    m->vocab_json[vn] = m->merges_txt[mn] = 0;
    m->vocab_len = (size_t)vn;
    m->merges_len = (size_t)mn;
    return TLENS_OK;
}

static tlens_result tlens__reprocess(tlens_model *m, int flags, tlens_dtype dt, tlens_error *err);

TLENS_DEF tlens_result tlens_load_memory(tlens_model **out, const void *data, size_t size,
                                         const tlens_load_options *opt, tlens_error *err) {
    static const tlens_load_options defaults;
    const unsigned char *d = (const unsigned char *)data;
    tlens_config cfg;
    tlens_dtype dt = TLENS_F32;
    int processing = 0, want, n;
    tlens_model *m = NULL;
    tlens__param *t = NULL;
    uint64_t *offs = NULL;
    tlens_result r;
    if (!opt) opt = &defaults;
    *out = NULL;
    if (!data) return tlens__fail(err, TLENS_ERR_ARG, "tlens_load_memory: no data");
    if ((r = tlens__tlens_config(&cfg, &processing, &dt, d, size, err))) return r;
    if ((r = tlens__model_new(&m, &cfg, &opt->allocator, err))) return r;
    m->processing = processing;
    m->wdtype = dt;
    m->W_E = cfg.tied && !processing ? NULL : (const void *)d; /* decides the table */
    if (!(t = tlens__table_alloc(m, err))) { r = TLENS_ERR_NOMEM; goto done; }
    n = tlens__param_table(m, t);
    offs = (uint64_t *)tlens__alloc(&m->alloc, (size_t)n * sizeof *offs);
    if (!offs) { r = tlens__fail(err, TLENS_ERR_NOMEM, "out of memory"); goto done; }
    if ((r = tlens__tlens_table(d, size, t, n, dt, offs, err))) goto done;
    if ((r = tlens__tlens_wire(m, d, t, n, offs, err))) goto done;
    if (!opt->no_tokenizer && (r = tlens__tlens_tokenizer(m, d, size, err))) goto done;
    want = tlens__flags_from_options(opt);
    if (want != processing && processing != 0) {
        r = tlens__fail(err, TLENS_ERR_CONFIG,
                        ".tlens file was converted with processing flags %d, the options ask for %d; convert it with "
                        "--raw to choose the processing at load time", processing, want);
        goto done;
    }
    if (want != processing || (opt->weight_dtype != TLENS_DTYPE_AUTO && opt->weight_dtype != dt))
        r = tlens__reprocess(m, want, opt->weight_dtype == TLENS_DTYPE_AUTO ? dt : opt->weight_dtype, err);
done:
    tlens__free(&m->alloc, t);
    tlens__free(&m->alloc, offs);
    if (r) {
        tlens_free(m);
        m = NULL;
    }
    *out = m;
    if (!r) tlens__ok(err);
    return r;
}

/* Rebuild the parameters of m with other processing or weight type. */
static tlens_result tlens__reprocess(tlens_model *m, int flags, tlens_dtype dt, tlens_error *err) {
    tlens__state s;
    tlens_result r;
    void *old = m->params;
    if ((r = tlens__state_from_model(&s, m, err))) return r;
    tlens__process(&s, &m->cfg, flags & ~m->processing);
    m->processing = flags;
    m->wdtype = dt;
    m->params = NULL;
    memset(m->blocks, 0, (size_t)m->cfg.n_layers * sizeof *m->blocks);
    m->lnf_w = m->lnf_b = m->b_U = NULL;
    r = tlens__model_from_state(m, &s, err);
    tlens__free(&m->alloc, old);
    tlens__state_free(&s, &m->alloc);
    return r;
}

TLENS_DEF void tlens_free(tlens_model *m) {
    tlens_allocator a;
    if (!m) return;
    a = m->alloc;
    tlens__free(&a, m->params);
    tlens__free(&a, m->blocks);
    tlens__free(&a, m->vocab_json);
    tlens__free(&a, m->merges_txt);
    tlens__free(&a, m->file);
    tlens__free(&a, m);
}

TLENS_DEF const tlens_config *tlens_model_config(const tlens_model *m) { return &m->cfg; }

TLENS_DEF int tlens_model_processed(const tlens_model *m) { return m->processing != 0; }

#ifndef TLENS_NO_STDIO
static void tlens__put32(unsigned char *p, uint32_t v) {
    p[0] = (unsigned char)v; p[1] = (unsigned char)(v >> 8); p[2] = (unsigned char)(v >> 16); p[3] = (unsigned char)(v >> 24);
}

static void tlens__put64(unsigned char *p, uint64_t v) {
    tlens__put32(p, (uint32_t)v);
    tlens__put32(p + 4, (uint32_t)(v >> 32));
}

/* Write `n` bytes of tensor data little-endian, padded to 64 bytes. */
static int tlens__write_tensor(FILE *f, const void *p, size_t bytes, size_t width) {
    static const unsigned char zeros[64];
    size_t pad = (64u - (bytes & 63u)) & 63u;
    if (tlens__host_is_little_endian()) {
        if (fwrite(p, 1, bytes, f) != bytes) return 0;
    } else {
        unsigned char tmp[4096];
        size_t done = 0;
        while (done < bytes) {
            size_t n = bytes - done < sizeof tmp ? bytes - done : sizeof tmp;
            memcpy(tmp, (const unsigned char *)p + done, n);
            tlens__swap(tmp, n / width, width);
            if (fwrite(tmp, 1, n, f) != n) return 0;
            done += n;
        }
    }
    return fwrite(zeros, 1, pad, f) == pad;
}

TLENS_DEF tlens_result tlens_save(const tlens_model *m, const char *path, tlens_error *err) {
    unsigned char h[TLENS__HEADER_SIZE];
    tlens__param *t;
    unsigned char *table;
    int n, i;
    uint64_t off, table_off = TLENS__HEADER_SIZE, vocab_off, merges_off, data_off;
    FILE *f;
    tlens_model *mm = (tlens_model *)(uintptr_t)m; /* the table only reads through it */
    if (!(t = tlens__table_alloc(m, err))) return TLENS_ERR_NOMEM;
    {
        /* the table wires pointers into a copy of the model's slots */
        tlens_model copy = *m;
        tlens__block *blocks = (tlens__block *)tlens__alloc(&m->alloc, (size_t)m->cfg.n_layers * sizeof *blocks);
        if (!blocks) { tlens__free(&m->alloc, t); return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory"); }
        memcpy(blocks, m->blocks, (size_t)m->cfg.n_layers * sizeof *blocks);
        copy.blocks = blocks;
        n = tlens__param_table(&copy, t);
        (void)mm;
        f = fopen(path, "wb");
        if (!f) {
            tlens__free(&m->alloc, blocks);
            tlens__free(&m->alloc, t);
            return tlens__fail(err, TLENS_ERR_IO, "cannot create %s", path);
        }
        table = (unsigned char *)tlens__calloc(&m->alloc, (size_t)n * TLENS__TABLE_ROW);
        vocab_off = table_off + (uint64_t)n * TLENS__TABLE_ROW;
        merges_off = vocab_off + m->vocab_len;
        data_off = (merges_off + m->merges_len + 63u) & ~(uint64_t)63u;
        memset(h, 0, sizeof h);
        memcpy(h, TLENS__MAGIC, 8);
        tlens__put32(h + 8, TLENS__FORMAT_VERSION);
        tlens__put32(h + 12, TLENS__HEADER_SIZE);
        tlens__put32(h + 16, (uint32_t)m->cfg.n_layers);
        tlens__put32(h + 20, (uint32_t)m->cfg.d_model);
        tlens__put32(h + 24, (uint32_t)m->cfg.n_heads);
        tlens__put32(h + 28, (uint32_t)m->cfg.d_mlp);
        tlens__put32(h + 32, (uint32_t)m->cfg.d_vocab);
        tlens__put32(h + 36, (uint32_t)m->cfg.n_ctx);
        tlens__put32(h + 40, (uint32_t)m->cfg.act_fn);
        tlens__put32(h + 44, (uint32_t)m->cfg.scale_attn_by_inverse_layer_idx);
        tlens__put32(h + 48, (uint32_t)m->cfg.tied);
        tlens__put32(h + 52, tlens__bits_from_f32(m->cfg.eps));
        tlens__put32(h + 56, (uint32_t)m->processing);
        tlens__put32(h + 60, (uint32_t)m->wdtype);
        tlens__put32(h + 64, TLENS__MAT_LAYOUT);
        tlens__put32(h + 68, (uint32_t)n);
        tlens__put64(h + 72, table_off);
        if (m->vocab_json && m->merges_txt) {
            tlens__put64(h + 80, vocab_off);
            tlens__put64(h + 88, m->vocab_len);
            tlens__put64(h + 96, merges_off);
            tlens__put64(h + 104, m->merges_len);
        }
        tlens__put64(h + 112, data_off);
        off = data_off;
        for (i = 0; table && i < n; i++) {
            unsigned char *row = table + (size_t)i * TLENS__TABLE_ROW;
            memcpy(row, t[i].name, strlen(t[i].name));
            tlens__put32(row + 40, (uint32_t)t[i].kind);
            tlens__put32(row + 44, (uint32_t)t[i].rows);
            tlens__put32(row + 48, (uint32_t)t[i].cols);
            tlens__put64(row + 56, off);
            off += tlens__param_bytes(&t[i], m->wdtype);
        }
        {
            int ok = table != NULL;
            static const unsigned char zeros[64];
            size_t pad = (size_t)(data_off - merges_off - m->merges_len);
            ok = ok && fwrite(h, 1, sizeof h, f) == sizeof h;
            ok = ok && fwrite(table, 1, (size_t)n * TLENS__TABLE_ROW, f) == (size_t)n * TLENS__TABLE_ROW;
            if (m->vocab_json && m->merges_txt) {
                ok = ok && fwrite(m->vocab_json, 1, m->vocab_len, f) == m->vocab_len;
                ok = ok && fwrite(m->merges_txt, 1, m->merges_len, f) == m->merges_len;
            } else {
                pad = (size_t)(data_off - vocab_off);
            }
            ok = ok && fwrite(zeros, 1, pad, f) == pad;
            for (i = 0; ok && i < n; i++) {
                const void *p = t[i].kind == TLENS__PACKED ? t[i].mat->data : *t[i].slot;
                size_t w = tlens__param_width(&t[i], m->wdtype);
                size_t bytes = t[i].kind == TLENS__PACKED ? tlens__mat_bytes(t[i].rows, t[i].cols, m->wdtype)
                                                          : (size_t)t[i].rows * (size_t)t[i].cols * w;
                size_t padded = tlens__param_bytes(&t[i], m->wdtype);
                ok = tlens__write_tensor(f, p, bytes, w) &&
                     fwrite(zeros, 1, padded - ((bytes + 63u) & ~(size_t)63u), f) == padded - ((bytes + 63u) & ~(size_t)63u);
            }
            ok = fclose(f) == 0 && ok;
            tlens__free(&m->alloc, table);
            tlens__free(&m->alloc, blocks);
            tlens__free(&m->alloc, t);
            if (!ok) return tlens__fail(err, TLENS_ERR_IO, "cannot write %s", path);
        }
    }
    tlens__ok(err);
    return TLENS_OK;
}

static tlens_result tlens__read_file_aligned(const tlens_allocator *a, const char *path, char **block, char **data,
                                             size_t *size, tlens_error *err) {
    FILE *f = fopen(path, "rb");
    long n;
    char magic[1];
    if (!f) return tlens__fail(err, TLENS_ERR_IO, "cannot open %s (neither a folder with config.json nor a file)", path);
    /* a folder opens on some systems but cannot be read: try a byte first */
    if (fread(magic, 1, 1, f) != 1 && !feof(f)) {
        fclose(f);
        return tlens__fail(err, TLENS_ERR_IO, "cannot read %s (neither a folder with config.json nor a file)", path);
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return tlens__fail(err, TLENS_ERR_IO, "cannot determine the size of %s", path);
    }
    *block = (char *)tlens__alloc(a, (size_t)n + 64);
    if (!*block) {
        fclose(f);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory reading %s (%zu bytes)", path, (size_t)n);
    }
    *data = *block + ((64u - ((uintptr_t)*block & 63u)) & 63u);
    if (n && fread(*data, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        tlens__free(a, *block);
        return tlens__fail(err, TLENS_ERR_IO, "cannot read %s", path);
    }
    fclose(f);
    *size = (size_t)n;
    return TLENS_OK;
}

/* A path is a Hugging Face folder when it holds config.json. */
TLENS_DEF tlens_result tlens_load(tlens_model **out, const char *path, const tlens_load_options *opt,
                                  tlens_error *err) {
    static const tlens_load_options defaults;
    char cfg[4096];
    char *data = NULL, *aligned = NULL;
    size_t size = 0;
    tlens_result r;
    tlens_model *m;
    if (!opt) opt = &defaults;
    *out = NULL;
    if (!path) return tlens__fail(err, TLENS_ERR_ARG, "tlens_load: no path");
    if (tlens__join(cfg, sizeof cfg, path, "config.json") && tlens__file_exists(cfg)) {
        r = tlens__load_hf(out, path, opt, err);
        if (!r) tlens__ok(err);
        return r;
    }
    /* a .tlens file: read it whole into a 64-byte aligned buffer that the
     * model keeps, and use the weights there in place */
    if ((r = tlens__read_file_aligned(&opt->allocator, path, &data, &aligned, &size, err))) return r;
    r = tlens_load_memory(&m, aligned, size, opt, err);
    if (r) {
        tlens__free(&opt->allocator, data);
        if (err) {
            char msg[sizeof err->message];
            memcpy(msg, err->message, sizeof msg);
            tlens__fail(err, r, "%s: %s", path, msg);
        }
        return r;
    }
    m->file = data;
    *out = m;
    return TLENS_OK;
}
#endif /* TLENS_NO_STDIO */

/* ------------------------------------------------------------------------
 * 3.9 Hook points
 *
 * Every hook point has a fixed slot: global points first, then 23 per
 * block, then ln_final. The names are TransformerLens' names. A point is
 * "active" when a hook or the cache wants it; the forward pass checks one
 * byte per point and does nothing more when it is not.
 * ---------------------------------------------------------------------- */
enum {
    TLENS__HP_TOKENS, TLENS__HP_EMBED, TLENS__HP_POS_EMBED, TLENS__HP_GLOBAL_PRE
};
enum {
    TLENS__HP_RESID_PRE, TLENS__HP_ATTN_IN, TLENS__HP_Q_INPUT, TLENS__HP_K_INPUT, TLENS__HP_V_INPUT,
    TLENS__HP_LN1_SCALE, TLENS__HP_LN1_NORMALIZED, TLENS__HP_Q, TLENS__HP_K, TLENS__HP_V,
    TLENS__HP_ATTN_SCORES, TLENS__HP_PATTERN, TLENS__HP_Z, TLENS__HP_RESULT, TLENS__HP_ATTN_OUT,
    TLENS__HP_RESID_MID, TLENS__HP_MLP_IN, TLENS__HP_LN2_SCALE, TLENS__HP_LN2_NORMALIZED,
    TLENS__HP_MLP_PRE, TLENS__HP_MLP_POST, TLENS__HP_MLP_OUT, TLENS__HP_RESID_POST, TLENS__HP_PER_BLOCK
};
enum { TLENS__HP_LNF_SCALE, TLENS__HP_LNF_NORMALIZED, TLENS__HP_GLOBAL_POST };

static const char *const tlens__block_point_names[TLENS__HP_PER_BLOCK] = {
    "hook_resid_pre", "hook_attn_in", "hook_q_input", "hook_k_input", "hook_v_input",
    "ln1.hook_scale", "ln1.hook_normalized", "attn.hook_q", "attn.hook_k", "attn.hook_v",
    "attn.hook_attn_scores", "attn.hook_pattern", "attn.hook_z", "attn.hook_result", "hook_attn_out",
    "hook_resid_mid", "hook_mlp_in", "ln2.hook_scale", "ln2.hook_normalized",
    "mlp.hook_pre", "mlp.hook_post", "hook_mlp_out", "hook_resid_post"};

static int tlens__block_point_optional(int k) {
    return k == TLENS__HP_ATTN_IN || k == TLENS__HP_Q_INPUT || k == TLENS__HP_K_INPUT ||
           k == TLENS__HP_V_INPUT || k == TLENS__HP_RESULT || k == TLENS__HP_MLP_IN;
}

typedef struct tlens__hook {
    int handle;
    void *owned;            /* state the context frees with the hook */
    void (*owned_free)(void *);
    char *pattern;          /* a glob, or NULL with a filter */
    tlens_filter_fn filter;
    void *filter_user;
    tlens_hook_fn fn;
    void *user;
} tlens__hook;

typedef struct tlens__selection {
    char *pattern;
    tlens_filter_fn filter;
    void *user;
} tlens__selection;

typedef struct tlens__point {
    char *name;
    int layer;
    int optional;
    unsigned char active;   /* a hook or the cache wants it this run */
    unsigned char cached;
    int first_hook, n_hooks;/* into ctx->point_hooks */
    tlens_tensor cache;     /* the cached copy (data owned)      */
    size_t cache_cap;
} tlens__point;

struct tlens_ctx {
    const tlens_model *m;
    const tlens_allocator *alloc;
    int optional_hooks;
    /* hook points */
    tlens__point *points;
    int n_points;
    char *names;            /* one block holding every point's name */
    tlens__hook *hooks;
    int n_hooks, cap_hooks, next_handle;
    tlens__selection *sel;
    int n_sel, cap_sel;
    int *point_hooks;       /* per point, the indices of its hooks, in order */
    int dirty;              /* hooks or selection changed since the last run */
    int stop_point;         /* the point whose hooks ran last (for messages) */
    int any_attn_materialized;
    /* the activation area, sized for batch * pos */
    float *area;
    size_t area_cap;
    int B, T;
    float *embed, *pos_embed, *resid, *ln_in, *ln_mean, *ln_scale, *ln_out;
    float *qkv, *q, *k, *v, *att, *z, *result, *attn_out;
    float *mlp_pre, *mlp_post, *mlp_out, *logits;
    float *head_in[4];      /* optional per-head inputs: attn_in, q, k, v */
    int head_inputs_edited;
    int32_t *tokens;        /* ids after an edit at hook_tokens */
    int *positions;         /* (B, T) position of each token */
    tlens_tensor logits_tensor, resid_tensor;
    /* the key/value cache: (n_layers, B, kv_cap, D) each */
    int kv_on, kv_len, kv_cap, kv_batch;
    float *kv_k, *kv_v;
    unsigned char *key_mask;/* (B, mask_stride): 0 for padding; NULL: all real */
    int mask_stride;
    unsigned char *mask_buf;
};

/* Shell-style glob: '*' matches any run of characters (dots too), '?' one. */
static int tlens__glob(const char *p, const char *s) {
    const char *star = NULL, *retry = NULL;
    while (*s) {
        if (*p == '*') { star = p++; retry = s; continue; }
        if (*p == '?' || *p == *s) { p++; s++; continue; }
        if (!star) return 0;
        p = star + 1;
        s = ++retry;
    }
    while (*p == '*') p++;
    return *p == '\0';
}

static char *tlens__strdup(const tlens_allocator *a, const char *s) {
    size_t n = strlen(s) + 1;
    char *d = (char *)tlens__alloc(a, n);
    if (d) memcpy(d, s, n);
    return d;
}

static void tlens__name_point(tlens__buf *b, int layer, const char *suffix) {
    if (layer >= 0) {
        tlens__puts(b, "blocks.");
        tlens__puti(b, layer);
        tlens__putc(b, '.');
    }
    tlens__puts(b, suffix);
    tlens__putc(b, '\0');
}

static tlens_result tlens__points_init(tlens_ctx *ctx, tlens_error *err) {
    static const char *const pre[TLENS__HP_GLOBAL_PRE] = {"hook_tokens", "hook_embed", "hook_pos_embed"};
    static const char *const post[TLENS__HP_GLOBAL_POST] = {"ln_final.hook_scale", "ln_final.hook_normalized"};
    int L = ctx->m->cfg.n_layers, n = TLENS__HP_GLOBAL_PRE + L * TLENS__HP_PER_BLOCK + TLENS__HP_GLOBAL_POST;
    int i, l, k;
    tlens__buf b;
    size_t cap = (size_t)n * 40u;
    ctx->points = (tlens__point *)tlens__calloc(ctx->alloc, (size_t)n * sizeof *ctx->points);
    ctx->names = (char *)tlens__alloc(ctx->alloc, cap);
    ctx->point_hooks = NULL;
    if (!ctx->points || !ctx->names) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for hook points");
    ctx->n_points = n;
    b.p = ctx->names; b.cap = cap; b.len = 0;
    i = 0;
    for (k = 0; k < TLENS__HP_GLOBAL_PRE; k++, i++) {
        ctx->points[i].name = (char *)(size_t)b.len;
        ctx->points[i].layer = -1;
        ctx->points[i].optional = k == TLENS__HP_TOKENS;
        tlens__name_point(&b, -1, pre[k]);
    }
    for (l = 0; l < L; l++)
        for (k = 0; k < TLENS__HP_PER_BLOCK; k++, i++) {
            ctx->points[i].name = (char *)(size_t)b.len;
            ctx->points[i].layer = l;
            ctx->points[i].optional = tlens__block_point_optional(k);
            tlens__name_point(&b, l, tlens__block_point_names[k]);
        }
    for (k = 0; k < TLENS__HP_GLOBAL_POST; k++, i++) {
        ctx->points[i].name = (char *)(size_t)b.len;
        ctx->points[i].layer = -1;
        tlens__name_point(&b, -1, post[k]);
    }
    TLENS_ASSERT(b.len <= cap);
    for (i = 0; i < n; i++) ctx->points[i].name = ctx->names + (size_t)ctx->points[i].name;
    return TLENS_OK;
}

static int tlens__block_point(const tlens_ctx *ctx, int layer, int kind) {
    (void)ctx;
    return TLENS__HP_GLOBAL_PRE + layer * TLENS__HP_PER_BLOCK + kind;
}

static int tlens__post_point(const tlens_ctx *ctx, int kind) {
    return TLENS__HP_GLOBAL_PRE + ctx->m->cfg.n_layers * TLENS__HP_PER_BLOCK + kind;
}

static int tlens__hook_matches(const tlens__hook *h, const char *name) {
    return h->pattern ? tlens__glob(h->pattern, name) : h->filter(name, h->filter_user);
}

static int tlens__selected(const tlens_ctx *ctx, const char *name) {
    int i;
    for (i = 0; i < ctx->n_sel; i++) {
        const tlens__selection *s = &ctx->sel[i];
        if (s->pattern ? tlens__glob(s->pattern, name) : s->filter(name, s->user)) return 1;
    }
    return 0;
}

/* Recompute which points are active and which hooks each one runs. */
static tlens_result tlens__points_update(tlens_ctx *ctx, tlens_error *err) {
    int i, h, total = 0;
    if (!ctx->dirty) return TLENS_OK;
    tlens__free(ctx->alloc, ctx->point_hooks);
    ctx->point_hooks = NULL;
    for (i = 0; i < ctx->n_points; i++)
        for (h = 0; h < ctx->n_hooks; h++)
            if (tlens__hook_matches(&ctx->hooks[h], ctx->points[i].name)) total++;
    if (total) {
        ctx->point_hooks = (int *)tlens__alloc(ctx->alloc, (size_t)total * sizeof(int));
        if (!ctx->point_hooks) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for hooks");
    }
    total = 0;
    ctx->any_attn_materialized = 0;
    for (i = 0; i < ctx->n_points; i++) {
        tlens__point *p = &ctx->points[i];
        p->first_hook = total;
        for (h = 0; h < ctx->n_hooks; h++)
            if (tlens__hook_matches(&ctx->hooks[h], p->name)) ctx->point_hooks[total++] = h;
        p->n_hooks = total - p->first_hook;
        p->cached = (unsigned char)tlens__selected(ctx, p->name);
        if (p->optional && !ctx->optional_hooks) p->n_hooks = 0, p->cached = 0;
        p->active = (unsigned char)(p->n_hooks || p->cached);
        if (p->active && p->layer >= 0 &&
            (i - TLENS__HP_GLOBAL_PRE) % TLENS__HP_PER_BLOCK >= TLENS__HP_ATTN_SCORES &&
            (i - TLENS__HP_GLOBAL_PRE) % TLENS__HP_PER_BLOCK <= TLENS__HP_PATTERN)
            ctx->any_attn_materialized = 1;
        if (!p->cached && p->cache.data) p->cache.ndim = 0; /* no longer in the cache */
    }
    ctx->dirty = 0;
    return TLENS_OK;
}

/* Why a run stopped inside the pass. */
enum { TLENS__STOP_HOOK = 1, TLENS__STOP_NOMEM = 2, TLENS__STOP_SHAPE = 3 };

#ifndef TLENS_NO_HOOKS
/* Run point i's hooks on the tensor, then keep a copy if it is cached.
 * Returns non-zero when a hook asked to stop. */
static int tlens__fire(tlens_ctx *ctx, int i, tlens_tensor *t) {
    tlens__point *p = &ctx->points[i];
    int h;
    ctx->stop_point = i;
    for (h = 0; h < p->n_hooks; h++) {
        const tlens__hook *hk = &ctx->hooks[ctx->point_hooks[p->first_hook + h]];
        int r = hk->fn(p->name, p->layer, t, hk->user);
        if (r) return r == TLENS__STOP_SHAPE || r == TLENS__STOP_NOMEM ? r : TLENS__STOP_HOOK;
    }
    if (p->cached) {
        size_t n = tlens_tensor_numel(t) * sizeof(float);
        if (n > p->cache_cap) {
            tlens__free(ctx->alloc, p->cache.data);
            p->cache.data = (float *)tlens__alloc(ctx->alloc, n);
            p->cache_cap = p->cache.data ? n : 0;
            if (!p->cache.data) return TLENS__STOP_NOMEM;
        }
        memcpy(p->cache.data, t->data, n);
        p->cache.ndim = t->ndim;
        memcpy(p->cache.shape, t->shape, sizeof t->shape);
    }
    return 0;
}

#endif

static tlens_tensor tlens__tensor(float *data, int ndim, int s0, int s1, int s2, int s3) {
    tlens_tensor t;
    t.data = data;
    t.ndim = ndim;
    t.shape[0] = s0; t.shape[1] = s1; t.shape[2] = s2; t.shape[3] = s3;
    return t;
}

/* Fire point `pt` on `data` shaped (s0, s1, s2[, s3]) when it is active;
 * return from the calling function when a hook stops the run. With
 * TLENS_NO_HOOKS nothing fires (the hook and cache calls still link). */
#ifdef TLENS_NO_HOOKS
#define TLENS__HOOK(ctx, pt, data, ndim, s0, s1, s2, s3) \
    do { (void)(ctx); (void)(pt); (void)(data); (void)(s0); (void)(s1); (void)(s2); (void)(s3); } while (0)
#else
#define TLENS__HOOK(ctx, pt, data, ndim, s0, s1, s2, s3)                         \
    do {                                                                         \
        if ((ctx)->points[pt].active) {                                          \
            tlens_tensor tlens__t = tlens__tensor(data, ndim, s0, s1, s2, s3);   \
            int tlens__stop = tlens__fire(ctx, pt, &tlens__t);                   \
            if (tlens__stop) return tlens__stop;                                 \
        }                                                                        \
    } while (0)
#endif

/* ------------------------------------------------------------------------
 * 3.10 Elementwise kernels: LayerNorm, GELU, softmax
 * ---------------------------------------------------------------------- */

/* LayerNorm statistics of each row of x (R, D): its mean and
 * scale = sqrt(mean((x - mean)^2) + eps). */
static void tlens__layernorm_stats(const float *x, float *mean, float *scale, int R, int D, float eps) {
    int r, i;
    for (r = 0; r < R; r++) {
        const float *row = x + (size_t)r * (size_t)D;
        double s = 0, v = 0;
        for (i = 0; i < D; i++) s += row[i];
        s /= D;
        for (i = 0; i < D; i++) { double d = row[i] - s; v += d * d; }
        mean[r] = (float)s;
        scale[r] = (float)sqrt(v / D + eps);
    }
}

/* out = (x - mean) / scale, then * w + b when the LayerNorm has weights. */
static void tlens__layernorm_apply(const float *x, const float *mean, const float *scale, const float *w,
                                   const float *b, float *out, int R, int D) {
    int r, i;
    for (r = 0; r < R; r++) {
        const float *row = x + (size_t)r * (size_t)D;
        float *o = out + (size_t)r * (size_t)D, mu = mean[r], inv = 1.0f / scale[r];
        if (w) for (i = 0; i < D; i++) o[i] = (row[i] - mu) * inv * w[i] + b[i];
        else for (i = 0; i < D; i++) o[i] = (row[i] - mu) * inv;
    }
}

/* gelu_new(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
static void tlens__activation(float *out, const float *x, size_t n, int act) {
    size_t i;
    const float k = 0.7978845608028654f;
    for (i = 0; i < n; i++) {
        float v = x[i];
        if (act == TLENS_ACT_GELU_NEW) out[i] = 0.5f * v * (1.0f + tanhf(k * (v + 0.044715f * v * v * v)));
        else if (act == TLENS_ACT_GELU) out[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f));
        else out[i] = v > 0 ? v : 0;
    }
}

/* Softmax of row[0..n) in place; a row of -inf only becomes zeros (as
 * TransformerLens turns the NaNs of fully masked rows into zeros). */
static void tlens__softmax(float *row, int n) {
    int i;
    float mx = -INFINITY, sum = 0, inv;
    for (i = 0; i < n; i++) if (row[i] > mx) mx = row[i];
    if (mx == -INFINITY) { for (i = 0; i < n; i++) row[i] = 0; return; }
    for (i = 0; i < n; i++) { row[i] = expf(row[i] - mx); sum += row[i]; }
    inv = 1.0f / sum;
    for (i = 0; i < n; i++) row[i] *= inv;
}

/* ------------------------------------------------------------------------
 * 3.11 The forward pass
 *
 * Notation: B batch, T positions, D d_model, H heads, dh d_head, M d_mlp,
 * V vocabulary. All activations are row-major and batch first, so that a
 * (B*T, D) matrix is also TransformerLens' [batch, pos, d_model] tensor and
 * q, k, v, z as (B*T, D) are [batch, pos, head, d_head].
 * ---------------------------------------------------------------------- */

/* Lay the activation area out for (B, T); with base NULL only count. */
static size_t tlens__area_layout(tlens_ctx *ctx, int B, int T, float *base) {
    const tlens_config *c = &ctx->m->cfg;
    size_t BT = (size_t)B * (size_t)T, D = (size_t)c->d_model, off = 0;
    size_t NS = (size_t)ctx->kv_len + (size_t)T;
    size_t att = ctx->any_attn_materialized ? (size_t)B * (size_t)c->n_heads * (size_t)T * NS : (size_t)T * NS;
    size_t heads_copy = ctx->optional_hooks ? BT * (size_t)c->n_heads * D : 0;
#define TLENS__PLACE(ptr, n) do { if (base) ctx->ptr = base + off; off += ((n) + 15u) & ~(size_t)15u; } while (0)
    TLENS__PLACE(embed, BT * D);
    TLENS__PLACE(pos_embed, BT * D);
    TLENS__PLACE(resid, BT * D);
    TLENS__PLACE(ln_in, BT * D);
    TLENS__PLACE(head_in[0], heads_copy);
    TLENS__PLACE(head_in[1], heads_copy);
    TLENS__PLACE(head_in[2], heads_copy);
    TLENS__PLACE(head_in[3], heads_copy);
    TLENS__PLACE(ln_mean, BT);
    TLENS__PLACE(ln_scale, BT);
    TLENS__PLACE(ln_out, BT * D);
    TLENS__PLACE(qkv, BT * 3 * D);
    TLENS__PLACE(q, BT * D);
    TLENS__PLACE(k, BT * D);
    TLENS__PLACE(v, BT * D);
    TLENS__PLACE(att, att);
    TLENS__PLACE(z, BT * D);
    TLENS__PLACE(result, ctx->optional_hooks ? BT * (size_t)c->n_heads * D : 0);
    TLENS__PLACE(attn_out, BT * D);
    TLENS__PLACE(mlp_pre, BT * (size_t)c->d_mlp);
    TLENS__PLACE(mlp_post, BT * (size_t)c->d_mlp);
    TLENS__PLACE(mlp_out, BT * D);
    TLENS__PLACE(logits, BT * (size_t)c->d_vocab);
    if (base) ctx->tokens = (int32_t *)(void *)(base + off);
    off += (BT * sizeof(int32_t) / sizeof(float) + 15u) & ~(size_t)15u;
    if (base) ctx->positions = (int *)(void *)(base + off);
    off += (BT * sizeof(int) / sizeof(float) + 15u) & ~(size_t)15u;
#undef TLENS__PLACE
    return off;
}

static tlens_result tlens__area_reserve(tlens_ctx *ctx, int B, int T, tlens_error *err) {
    size_t need = tlens__area_layout(ctx, B, T, NULL), bytes;
    if (!tlens__mul_ok(need, sizeof(float), &bytes))
        return tlens__fail(err, TLENS_ERR_NOMEM, "batch %d x %d positions needs more memory than exists", B, T);
    if (need > ctx->area_cap) {
        tlens__free(ctx->alloc, ctx->area);
        ctx->area = (float *)tlens__alloc(ctx->alloc, bytes);
        ctx->area_cap = ctx->area ? need : 0;
        if (!ctx->area)
            return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory: %zu MB of activations for batch %d x %d positions",
                               bytes / 1000000, B, T);
    }
    tlens__area_layout(ctx, B, T, ctx->area);
    ctx->B = B;
    ctx->T = T;
    return TLENS_OK;
}

/* 1. Embeddings: hook_embed = W_E[token], hook_pos_embed = W_pos[pos];
 * the residual stream starts as their sum. */
static int tlens__embed(tlens_ctx *ctx, const int32_t *tokens) {
    const tlens_model *m = ctx->m;
    int B = ctx->B, T = ctx->T, D = m->cfg.d_model, b, t;
    size_t i, n = (size_t)B * (size_t)T * (size_t)D;
    for (b = 0; b < B; b++)
        for (t = 0; t < T; t++) {
            size_t row = (size_t)b * (size_t)T + (size_t)t;
            float *e = ctx->embed + row * (size_t)D;
            int32_t tok = tokens[row];
            if (m->W_E) tlens__decode_rows(e, m->W_E, (size_t)tok * (size_t)D, (size_t)D, m->wdtype);
            else tlens__mat_column(&m->W_U, tok, e);
            memcpy(ctx->pos_embed + row * (size_t)D, m->W_pos + (size_t)ctx->positions[row] * (size_t)D,
                   (size_t)D * sizeof(float));
        }
    TLENS__HOOK(ctx, TLENS__HP_EMBED, ctx->embed, 3, B, T, D, 0);
    TLENS__HOOK(ctx, TLENS__HP_POS_EMBED, ctx->pos_embed, 3, B, T, D, 0);
    for (i = 0; i < n; i++) ctx->resid[i] = ctx->embed[i] + ctx->pos_embed[i];
    return 0;
}

/* LayerNorm of x (B*T, D) into ctx->ln_out, firing hook_scale (B, T, 1)
 * between the statistics and the division, as TransformerLens does: an
 * edited scale is what the input is divided by. */
static int tlens__layernorm(tlens_ctx *ctx, const float *x, const float *w, const float *b, int scale_point) {
    int B = ctx->B, T = ctx->T, D = ctx->m->cfg.d_model;
    tlens__layernorm_stats(x, ctx->ln_mean, ctx->ln_scale, B * T, D, ctx->m->cfg.eps);
    TLENS__HOOK(ctx, scale_point, ctx->ln_scale, 3, B, T, 1, 0);
    tlens__layernorm_apply(x, ctx->ln_mean, ctx->ln_scale, w, b, ctx->ln_out, B * T, D);
    TLENS__HOOK(ctx, scale_point + 1, ctx->ln_out, 3, B, T, D, 0);
    return 0;
}

/* Copy x (B*T, D) once per head into (B, T, H, D), for the optional
 * hook_attn_in / hook_q_input / ... points. */
static void tlens__repeat_heads(float *dst, const float *x, int BT, int H, int D) {
    int r, h;
    for (r = 0; r < BT; r++)
        for (h = 0; h < H; h++)
            memcpy(dst + ((size_t)r * (size_t)H + (size_t)h) * (size_t)D, x + (size_t)r * (size_t)D,
                   (size_t)D * sizeof(float));
}

/* The keys of layer l: with a key/value cache they live in the cache
 * (B, n_kv, D), after the positions of earlier runs; without one they are
 * this run's k and v. */
static float *tlens__keys(const tlens_ctx *ctx, int l, int b) {
    size_t D = (size_t)ctx->m->cfg.d_model;
    if (ctx->kv_on) return ctx->kv_k + ((size_t)l * (size_t)ctx->B + (size_t)b) * (size_t)ctx->kv_cap * D;
    return ctx->k + (size_t)b * (size_t)ctx->T * D;
}

static float *tlens__values(const tlens_ctx *ctx, int l, int b) {
    size_t D = (size_t)ctx->m->cfg.d_model;
    if (ctx->kv_on) return ctx->kv_v + ((size_t)l * (size_t)ctx->B + (size_t)b) * (size_t)ctx->kv_cap * D;
    return ctx->v + (size_t)b * (size_t)ctx->T * D;
}

/* Attention scores of one (batch, head), a (T, S) block for T queries at
 * positions P..P+T-1 over S = P + T keys: S[i][j] = q_i . k_j / attn_scale
 * where key j is visible (j <= P + i and not padding), -inf elsewhere.
 * Unless `full`, entries right of the diagonal are left unset. */
static void tlens__attn_scores(const tlens_ctx *ctx, int l, int b, int h, float *S, float inv_scale, int full) {
    const tlens_config *c = &ctx->m->cfg;
    int T = ctx->T, P = ctx->kv_len, NS = P + T, D = c->d_model, dh = c->d_head, i, j, d;
    const float *q = ctx->q + (size_t)b * (size_t)T * (size_t)D + (size_t)h * (size_t)dh;
    const float *k = tlens__keys(ctx, l, b) + (size_t)h * (size_t)dh;
    const unsigned char *visible = ctx->key_mask ? ctx->key_mask + (size_t)b * (size_t)ctx->mask_stride : NULL;
    for (i = 0; i < T; i++) {
        const float *qi = q + (size_t)i * (size_t)D;
        float *row = S + (size_t)i * (size_t)NS;
        for (j = 0; j <= P + i; j++) {
            const float *kj = k + (size_t)j * (size_t)D;
            float s = 0;
            if (visible && !visible[j]) { row[j] = -INFINITY; continue; }
            for (d = 0; d < dh; d++) s += qi[d] * kj[d];
            row[j] = s * inv_scale;
        }
        if (full) for (j = P + i + 1; j < NS; j++) row[j] = -INFINITY;
    }
}

/* z[b, i, h, :] = sum_j P[i][j] v[b, j, h, :] over the visible keys, or
 * over all S keys when `full` (a hook may have put weight on the future;
 * TransformerLens would use it). */
static void tlens__attn_z(tlens_ctx *ctx, int l, int b, int h, const float *Pm, int full) {
    const tlens_config *c = &ctx->m->cfg;
    int T = ctx->T, P = ctx->kv_len, NS = P + T, D = c->d_model, dh = c->d_head, i, j, d;
    const float *v = tlens__values(ctx, l, b) + (size_t)h * (size_t)dh;
    float *z = ctx->z + (size_t)b * (size_t)T * (size_t)D + (size_t)h * (size_t)dh;
    for (i = 0; i < T; i++) {
        const float *row = Pm + (size_t)i * (size_t)NS;
        float *zi = z + (size_t)i * (size_t)D;
        int n = full ? NS : P + i + 1;
        for (d = 0; d < dh; d++) zi[d] = 0;
        for (j = 0; j < n; j++) {
            const float *vj = v + (size_t)j * (size_t)D;
            float p = row[j];
            if (p == 0) continue;
            for (d = 0; d < dh; d++) zi[d] += p * vj[d];
        }
    }
}

/* 3. Attention of layer l on q, k, v into z. When a hook or the cache
 * wants the scores or the pattern, the whole (B, H, T, S) tensor is made;
 * otherwise one (T, S) block at a time, only its causal part. */
static int tlens__attention(tlens_ctx *ctx, int l) {
    const tlens_config *c = &ctx->m->cfg;
    int B = ctx->B, T = ctx->T, NS = ctx->kv_len + ctx->T, H = c->n_heads, b, h, i;
    int p_scores = tlens__block_point(ctx, l, TLENS__HP_ATTN_SCORES);
    int full = ctx->points[p_scores].active || ctx->points[p_scores + 1].active;
    float attn_scale = sqrtf((float)c->d_head) * (c->scale_attn_by_inverse_layer_idx ? (float)(l + 1) : 1.0f);
    float inv_scale = 1.0f / attn_scale;
    size_t block = (size_t)T * (size_t)NS;
    if (!full) {
        for (b = 0; b < B; b++)
            for (h = 0; h < H; h++) {
                tlens__attn_scores(ctx, l, b, h, ctx->att, inv_scale, 0);
                for (i = 0; i < T; i++) tlens__softmax(ctx->att + (size_t)i * (size_t)NS, ctx->kv_len + i + 1);
                tlens__attn_z(ctx, l, b, h, ctx->att, 0);
            }
        return 0;
    }
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++)
            tlens__attn_scores(ctx, l, b, h, ctx->att + ((size_t)b * (size_t)H + (size_t)h) * block, inv_scale, 1);
    TLENS__HOOK(ctx, p_scores, ctx->att, 4, B, H, T, NS);
    for (i = 0; i < B * H * T; i++) tlens__softmax(ctx->att + (size_t)i * (size_t)NS, NS);
    TLENS__HOOK(ctx, p_scores + 1, ctx->att, 4, B, H, T, NS);
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++) tlens__attn_z(ctx, l, b, h, ctx->att + ((size_t)b * (size_t)H + (size_t)h) * block, 1);
    return 0;
}

/* Append this run's keys and values of layer l to the cache. */
static void tlens__kv_append(tlens_ctx *ctx, int l) {
    size_t D = (size_t)ctx->m->cfg.d_model, T = (size_t)ctx->T;
    int b;
    for (b = 0; b < ctx->B; b++) {
        memcpy(tlens__keys(ctx, l, b) + (size_t)ctx->kv_len * D, ctx->k + (size_t)b * T * D, T * D * sizeof(float));
        memcpy(tlens__values(ctx, l, b) + (size_t)ctx->kv_len * D, ctx->v + (size_t)b * T * D, T * D * sizeof(float));
    }
}

/* hook_result [b, p, h, D]: each head's z through its rows of W_O, without
 * b_O (an optional point). */
static void tlens__head_results(tlens_ctx *ctx, const tlens__mat *W_O) {
    const tlens_config *c = &ctx->m->cfg;
    int BT = ctx->B * ctx->T, H = c->n_heads, D = c->d_model, dh = c->d_head, r, h, i, n;
    for (r = 0; r < BT; r++)
        for (h = 0; h < H; h++) {
            float *out = ctx->result + ((size_t)r * (size_t)H + (size_t)h) * (size_t)D;
            const float *z = ctx->z + (size_t)r * (size_t)D + (size_t)h * (size_t)dh;
            for (n = 0; n < D; n++) out[n] = 0;
            for (i = 0; i < dh; i++)
                for (n = 0; n < D; n++) out[n] += z[i] * tlens__mat_get(W_O, h * dh + i, n);
        }
}

/* The optional per-head inputs: hook_attn_in is resid_pre repeated per
 * head, hook_q_input / k_input / v_input copies of it. When a hook is
 * registered on any of them (it may edit them), q, k and v are computed per
 * head from these inputs (see tlens__qkv_per_head); when they are only
 * cached, they are copies and the shared path gives the same values. */
static int tlens__head_inputs(tlens_ctx *ctx, int l) {
    const tlens_config *c = &ctx->m->cfg;
    int B = ctx->B, T = ctx->T, H = c->n_heads, D = c->d_model, p = tlens__block_point(ctx, l, 0), k;
    size_t n = (size_t)B * (size_t)T * (size_t)H * (size_t)D;
    ctx->head_inputs_edited = 0;
    for (k = TLENS__HP_ATTN_IN; k <= TLENS__HP_V_INPUT; k++) ctx->head_inputs_edited |= ctx->points[p + k].n_hooks > 0;
    if (!ctx->head_inputs_edited && !ctx->points[p + TLENS__HP_ATTN_IN].active &&
        !ctx->points[p + TLENS__HP_Q_INPUT].active && !ctx->points[p + TLENS__HP_K_INPUT].active &&
        !ctx->points[p + TLENS__HP_V_INPUT].active)
        return 0;
    tlens__repeat_heads(ctx->head_in[0], ctx->resid, B * T, H, D);
    TLENS__HOOK(ctx, p + TLENS__HP_ATTN_IN, ctx->head_in[0], 4, B, T, H, D);
    for (k = 1; k <= 3; k++) {
        memcpy(ctx->head_in[k], ctx->head_in[0], n * sizeof(float));
        TLENS__HOOK(ctx, p + TLENS__HP_ATTN_IN + k, ctx->head_in[k], 4, B, T, H, D);
    }
    return 0;
}

/* q, k, v head by head from the (possibly edited) per-head inputs:
 * x = head_in[1 + which][b, p, h, :]; q[b, p, h, :] = ln1(x) @ W_Q[:, head h]
 * + b_Q[head h]. The LayerNorm is applied to each head's input, as
 * TransformerLens does in this mode. */
static void tlens__qkv_per_head(tlens_ctx *ctx, int l) {
    const tlens_config *c = &ctx->m->cfg;
    const tlens__block *w = &ctx->m->blocks[l];
    int BT = ctx->B * ctx->T, H = c->n_heads, D = c->d_model, dh = c->d_head, which, r, h, d, j;
    float *x = ctx->ln_out; /* one row of scratch is enough */
    for (which = 0; which < 3; which++) {
        float *out = which == 0 ? ctx->q : which == 1 ? ctx->k : ctx->v;
        for (r = 0; r < BT; r++)
            for (h = 0; h < H; h++) {
                const float *in = ctx->head_in[1 + which] + ((size_t)r * (size_t)H + (size_t)h) * (size_t)D;
                float mean, scale;
                tlens__layernorm_stats(in, &mean, &scale, 1, D, c->eps);
                tlens__layernorm_apply(in, &mean, &scale, w->ln1_w, w->ln1_b, x, 1, D);
                for (j = 0; j < dh; j++) {
                    int col = which * D + h * dh + j;
                    double acc = w->b_QKV[col];
                    for (d = 0; d < D; d++) acc += (double)x[d] * tlens__mat_get(&w->W_QKV, d, col);
                    out[(size_t)r * (size_t)D + (size_t)(h * dh + j)] = (float)acc;
                }
            }
    }
}

static int tlens__block_forward(tlens_ctx *ctx, int l) {
    const tlens_model *m = ctx->m;
    const tlens__block *w = &m->blocks[l];
    int B = ctx->B, T = ctx->T, BT = B * T, D = m->cfg.d_model, H = m->cfg.n_heads, M = m->cfg.d_mlp, r;
    int p = tlens__block_point(ctx, l, 0), i;
    const float *ln1_src = ctx->resid, *ln2_src;
    size_t n = (size_t)BT * (size_t)D;
    /* 2. resid_pre and the first LayerNorm */
    TLENS__HOOK(ctx, p + TLENS__HP_RESID_PRE, ctx->resid, 3, B, T, D, 0);
    if (ctx->optional_hooks && (r = tlens__head_inputs(ctx, l))) return r;
    if ((r = tlens__layernorm(ctx, ln1_src, w->ln1_w, w->ln1_b, p + TLENS__HP_LN1_SCALE))) return r;
    /* q, k, v = ln1 @ W_QKV + b_QKV, (B*T, 3D) split into three (B, T, H, dh) */
    tlens__matmul(ctx->qkv, ctx->ln_out, &w->W_QKV, w->b_QKV, BT);
    for (i = 0; i < BT; i++) {
        const float *row = ctx->qkv + (size_t)i * 3u * (size_t)D;
        memcpy(ctx->q + (size_t)i * (size_t)D, row, (size_t)D * sizeof(float));
        memcpy(ctx->k + (size_t)i * (size_t)D, row + D, (size_t)D * sizeof(float));
        memcpy(ctx->v + (size_t)i * (size_t)D, row + 2 * D, (size_t)D * sizeof(float));
    }
    if (ctx->head_inputs_edited) tlens__qkv_per_head(ctx, l);
    TLENS__HOOK(ctx, p + TLENS__HP_Q, ctx->q, 4, B, T, H, m->cfg.d_head);
    TLENS__HOOK(ctx, p + TLENS__HP_K, ctx->k, 4, B, T, H, m->cfg.d_head);
    TLENS__HOOK(ctx, p + TLENS__HP_V, ctx->v, 4, B, T, H, m->cfg.d_head);
    if (ctx->kv_on) tlens__kv_append(ctx, l);
    /* 3. attention */
    if ((r = tlens__attention(ctx, l))) return r;
    TLENS__HOOK(ctx, p + TLENS__HP_Z, ctx->z, 4, B, T, H, m->cfg.d_head);
    if (ctx->points[p + TLENS__HP_RESULT].active) {
        tlens__head_results(ctx, &w->W_O);
        TLENS__HOOK(ctx, p + TLENS__HP_RESULT, ctx->result, 4, B, T, H, D);
    }
    /* attn_out = z @ W_O + b_O;  resid_mid = resid_pre + attn_out */
    tlens__matmul(ctx->attn_out, ctx->z, &w->W_O, w->b_O, BT);
    TLENS__HOOK(ctx, p + TLENS__HP_ATTN_OUT, ctx->attn_out, 3, B, T, D, 0);
    for (i = 0; i < (int)n; i++) ctx->resid[i] += ctx->attn_out[i];
    TLENS__HOOK(ctx, p + TLENS__HP_RESID_MID, ctx->resid, 3, B, T, D, 0);
    /* 4. the MLP: post = gelu(ln2 @ W_in + b_in); mlp_out = post @ W_out + b_out */
    ln2_src = ctx->resid;
    if (ctx->points[p + TLENS__HP_MLP_IN].active) { /* a copy: edits reach ln2 only */
        memcpy(ctx->ln_in, ctx->resid, n * sizeof(float));
        TLENS__HOOK(ctx, p + TLENS__HP_MLP_IN, ctx->ln_in, 3, B, T, D, 0);
        ln2_src = ctx->ln_in;
    }
    if ((r = tlens__layernorm(ctx, ln2_src, w->ln2_w, w->ln2_b, p + TLENS__HP_LN2_SCALE))) return r;
    tlens__matmul(ctx->mlp_pre, ctx->ln_out, &w->W_in, w->b_in, BT);
    TLENS__HOOK(ctx, p + TLENS__HP_MLP_PRE, ctx->mlp_pre, 3, B, T, M, 0);
    tlens__activation(ctx->mlp_post, ctx->mlp_pre, (size_t)BT * (size_t)M, m->cfg.act_fn);
    TLENS__HOOK(ctx, p + TLENS__HP_MLP_POST, ctx->mlp_post, 3, B, T, M, 0);
    tlens__matmul(ctx->mlp_out, ctx->mlp_post, &w->W_out, w->b_out, BT);
    TLENS__HOOK(ctx, p + TLENS__HP_MLP_OUT, ctx->mlp_out, 3, B, T, D, 0);
    /* 5. resid_post = resid_mid + mlp_out */
    for (i = 0; i < (int)n; i++) ctx->resid[i] += ctx->mlp_out[i];
    TLENS__HOOK(ctx, p + TLENS__HP_RESID_POST, ctx->resid, 3, B, T, D, 0);
    return 0;
}

/* The optional hook_tokens point: ids as floats (exact below 2^24); an
 * edit changes the ids that are embedded. */
static int tlens__hook_tokens(tlens_ctx *ctx, const int32_t **tokens) {
    size_t i, n = (size_t)ctx->B * (size_t)ctx->T;
    int V = ctx->m->cfg.d_vocab;
    for (i = 0; i < n; i++) ctx->embed[i] = (float)(*tokens)[i];
    TLENS__HOOK(ctx, TLENS__HP_TOKENS, ctx->embed, 2, ctx->B, ctx->T, 0, 0);
    for (i = 0; i < n; i++) {
        float f = ctx->embed[i];
        ctx->tokens[i] = f >= 0 && f < (float)V ? (int32_t)f : 0; /* out of range: token 0 */
    }
    *tokens = ctx->tokens;
    return 0;
}

/* The whole pass, or blocks [start, stop) of it: with tokens NULL the
 * residual stream is already in ctx->resid; with stop < n_layers the pass
 * ends there (TransformerLens' start_at_layer / stop_at_layer). */
static int tlens__forward(tlens_ctx *ctx, const int32_t *tokens, int start, int stop) {
    const tlens_model *m = ctx->m;
    int l, r, B = ctx->B, T = ctx->T, p;
    if (tokens) { /* NULL: the residual stream was given */
        if (ctx->points[TLENS__HP_TOKENS].active && (r = tlens__hook_tokens(ctx, &tokens))) return r;
        if ((r = tlens__embed(ctx, tokens))) return r;
    }
    for (l = start; l < stop; l++)
        if ((r = tlens__block_forward(ctx, l))) return r;
    if (stop < m->cfg.n_layers) return 0;
    /* 6. the final LayerNorm and the unembedding: logits = ln_final @ W_U + b_U */
    p = tlens__post_point(ctx, TLENS__HP_LNF_SCALE);
    if ((r = tlens__layernorm(ctx, ctx->resid, m->lnf_w, m->lnf_b, p))) return r;
    tlens__matmul(ctx->logits, ctx->ln_out, &m->W_U, m->b_U, B * T);
    return 0;
}

/* ------------------------------------------------------------------------
 * The run context: public functions
 * ---------------------------------------------------------------------- */
TLENS_DEF size_t tlens_tensor_numel(const tlens_tensor *t) {
    size_t n = 1;
    int i;
    for (i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

static void tlens__hook_release(tlens_ctx *ctx, tlens__hook *h) {
    tlens__free(ctx->alloc, h->pattern);
    if (h->owned_free) h->owned_free(h->owned);
}

TLENS_DEF tlens_result tlens_ctx_new(tlens_ctx **out, const tlens_model *m, tlens_error *err) {
    tlens_ctx *ctx;
    tlens_result r;
    *out = NULL;
    if (!m) return tlens__fail(err, TLENS_ERR_ARG, "tlens_ctx_new: no model");
    ctx = (tlens_ctx *)tlens__calloc(&m->alloc, sizeof *ctx);
    if (!ctx) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for a context");
    ctx->m = m;
    ctx->alloc = &m->alloc;
    ctx->next_handle = 1;
    ctx->dirty = 1;
    if ((r = tlens__points_init(ctx, err))) {
        tlens_ctx_free(ctx);
        return r;
    }
    *out = ctx;
    tlens__ok(err);
    return TLENS_OK;
}

TLENS_DEF void tlens_ctx_free(tlens_ctx *ctx) {
    int i;
    if (!ctx) return;
    for (i = 0; i < ctx->n_points; i++) tlens__free(ctx->alloc, ctx->points[i].cache.data);
    for (i = 0; i < ctx->n_hooks; i++) tlens__hook_release(ctx, &ctx->hooks[i]);
    for (i = 0; i < ctx->n_sel; i++) tlens__free(ctx->alloc, ctx->sel[i].pattern);
    tlens__free(ctx->alloc, ctx->points);
    tlens__free(ctx->alloc, ctx->names);
    tlens__free(ctx->alloc, ctx->hooks);
    tlens__free(ctx->alloc, ctx->sel);
    tlens__free(ctx->alloc, ctx->point_hooks);
    tlens__free(ctx->alloc, ctx->area);
    tlens__free(ctx->alloc, ctx->kv_k);
    tlens__free(ctx->alloc, ctx->kv_v);
    tlens__free(ctx->alloc, ctx->mask_buf);
    tlens__free(ctx->alloc, ctx);
}

TLENS_DEF void tlens_set_optional_hooks(tlens_ctx *ctx, int on) {
    ctx->optional_hooks = on != 0;
    ctx->dirty = 1;
}

static tlens_result tlens__check_tokens(const tlens_ctx *ctx, const int32_t *tokens, int B, int T,
                                        tlens_error *err) {
    const tlens_config *c = &ctx->m->cfg;
    size_t i, n;
    if (!tokens || B < 1) return tlens__fail(err, TLENS_ERR_ARG, "tlens_run: need at least one sequence");
    if (T < 1) return tlens__fail(err, TLENS_ERR_LENGTH, "tlens_run: empty sequence");
    if (T > c->n_ctx)
        return tlens__fail(err, TLENS_ERR_LENGTH, "sequence of %d tokens is longer than the model's n_ctx %d", T, c->n_ctx);
    n = (size_t)B * (size_t)T;
    for (i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= c->d_vocab)
            return tlens__fail(err, TLENS_ERR_TOKEN, "token id %d at batch %d, position %d is outside the vocabulary (0..%d)",
                               (int)tokens[i], (int)(i / (size_t)T), (int)(i % (size_t)T), c->d_vocab - 1);
    return TLENS_OK;
}

/* Make room for the key/value cache of `batch` sequences of up to n_ctx. */
static tlens_result tlens__kv_reserve(tlens_ctx *ctx, int batch, tlens_error *err) {
    const tlens_config *c = &ctx->m->cfg;
    size_t n, bytes;
    if (ctx->kv_k && ctx->kv_batch == batch) return TLENS_OK;
    tlens__free(ctx->alloc, ctx->kv_k);
    tlens__free(ctx->alloc, ctx->kv_v);
    ctx->kv_k = ctx->kv_v = NULL;
    n = (size_t)c->n_layers * (size_t)batch * (size_t)c->n_ctx * (size_t)c->d_model;
    if (!tlens__mul_ok(n, sizeof(float), &bytes))
        return tlens__fail(err, TLENS_ERR_NOMEM, "the key/value cache for batch %d does not fit in memory", batch);
    ctx->kv_k = (float *)tlens__alloc(ctx->alloc, bytes);
    ctx->kv_v = (float *)tlens__alloc(ctx->alloc, bytes);
    if (!ctx->kv_k || !ctx->kv_v)
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory: the key/value cache needs 2 x %zu MB", bytes / 1000000);
    ctx->kv_batch = batch;
    ctx->kv_cap = c->n_ctx;
    return TLENS_OK;
}

/* The padding mask of keys, (B, cap): kept across cached runs. */
static tlens_result tlens__mask_update(tlens_ctx *ctx, const int32_t *mask, int B, int T, tlens_error *err) {
    int cap = ctx->kv_on ? ctx->kv_cap : T, b, t;
    if (!mask && !ctx->key_mask) return TLENS_OK;
    if (!ctx->key_mask || ctx->kv_len == 0) {
        tlens__free(ctx->alloc, ctx->mask_buf);
        ctx->mask_buf = (unsigned char *)tlens__alloc(ctx->alloc, (size_t)B * (size_t)cap);
        if (!ctx->mask_buf) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the attention mask");
        memset(ctx->mask_buf, 1, (size_t)B * (size_t)cap); /* cached positions so far were real */
        ctx->key_mask = ctx->mask_buf;
        ctx->mask_stride = cap;
    }
    for (b = 0; b < B; b++)
        for (t = 0; t < T; t++)
            ctx->key_mask[(size_t)b * (size_t)cap + (size_t)ctx->kv_len + (size_t)t] =
                (unsigned char)(mask ? mask[(size_t)b * (size_t)T + (size_t)t] != 0 : 1);
    return TLENS_OK;
}

/* Positions as TransformerLens counts them: from each sequence's first
 * real token when there is padding, else from the start of the cache. */
static void tlens__positions(tlens_ctx *ctx) {
    int B = ctx->B, T = ctx->T, b, t, j;
    for (b = 0; b < B; b++)
        for (t = 0; t < T; t++) {
            int pos = ctx->kv_len + t;
            if (ctx->key_mask) {
                const unsigned char *m = ctx->key_mask + (size_t)b * (size_t)ctx->mask_stride;
                pos = -1;
                for (j = 0; j <= ctx->kv_len + t; j++) pos += m[j] != 0;
                if (pos < 0) pos = 0;
            }
            ctx->positions[(size_t)b * (size_t)T + (size_t)t] = pos;
        }
}

TLENS_DEF void tlens_kv_reset(tlens_ctx *ctx) {
    ctx->kv_len = 0;
    ctx->key_mask = NULL;
}

TLENS_DEF int tlens_kv_length(const tlens_ctx *ctx) { return ctx->kv_len; }

TLENS_DEF tlens_result tlens_run_ex(tlens_ctx *ctx, const int32_t *tokens, int batch, int pos,
                                    const tlens_run_options *opt, tlens_error *err) {
    static const tlens_run_options defaults;
    tlens_result r;
    int stop, L = ctx->m->cfg.n_layers, first = 0, last = L;
    if (!opt) opt = &defaults;
    if (opt->stop_at_layer) last = opt->stop_at_layer < 0 ? L + opt->stop_at_layer : opt->stop_at_layer;
    if (opt->start_resid) first = opt->start_at_layer < 0 ? L + opt->start_at_layer : opt->start_at_layer;
    if (last < 0 || last > L || first < 0 || first > last)
        return tlens__fail(err, TLENS_ERR_ARG, "start_at_layer %d / stop_at_layer %d are outside the model's %d layers",
                           opt->start_at_layer, opt->stop_at_layer, L);
    if (opt->start_resid && (opt->use_kv_cache || batch < 1 || pos < 1 || pos > ctx->m->cfg.n_ctx))
        return tlens__fail(err, TLENS_ERR_ARG, "start_resid needs 1 <= pos <= n_ctx and no key/value cache");
    if (!opt->start_resid && (r = tlens__check_tokens(ctx, tokens, batch, pos, err))) return r;
    ctx->kv_on = opt->use_kv_cache != 0;
    if (!ctx->kv_on) {
        ctx->kv_len = 0;
        ctx->key_mask = NULL;
    } else if (ctx->kv_len > 0 && batch != ctx->kv_batch) {
        return tlens__fail(err, TLENS_ERR_SHAPE, "the key/value cache holds batch %d, this run has %d", ctx->kv_batch, batch);
    } else if (ctx->kv_len + pos > ctx->m->cfg.n_ctx) {
        return tlens__fail(err, TLENS_ERR_LENGTH, "%d cached + %d new positions exceed n_ctx %d", ctx->kv_len, pos,
                           ctx->m->cfg.n_ctx);
    }
    if (ctx->kv_on && ctx->kv_len == 0) {
        ctx->key_mask = NULL;
        if ((r = tlens__kv_reserve(ctx, batch, err))) return r;
    }
    if ((r = tlens__points_update(ctx, err))) return r;
    if ((r = tlens__area_reserve(ctx, batch, pos, err))) return r;
    if ((r = tlens__mask_update(ctx, opt->attention_mask, batch, pos, err))) return r;
    tlens__positions(ctx);
    if (opt->start_resid)
        memcpy(ctx->resid, opt->start_resid, (size_t)batch * (size_t)pos * (size_t)ctx->m->cfg.d_model * sizeof(float));
    ctx->logits_tensor.data = NULL;
    stop = tlens__forward(ctx, opt->start_resid ? NULL : tokens, first, last);
    if (stop) {
        tlens_kv_reset(ctx); /* some layers may have appended, others not */
        const char *at = ctx->points[ctx->stop_point].name;
        if (stop == TLENS__STOP_NOMEM) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory at %s", at);
        if (stop == TLENS__STOP_SHAPE)
            return tlens__fail(err, TLENS_ERR_SHAPE, "the patch for %s does not have the activation's shape", at);
        return tlens__fail(err, TLENS_ERR_HOOK, "a hook at %s stopped the run", at);
    }
    if (ctx->kv_on) ctx->kv_len += pos;
    ctx->resid_tensor = tlens__tensor(ctx->resid, 3, batch, pos, ctx->m->cfg.d_model, 0);
    if (last == L) ctx->logits_tensor = tlens__tensor(ctx->logits, 3, batch, pos, ctx->m->cfg.d_vocab, 0);
    tlens__ok(err);
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_run(tlens_ctx *ctx, const int32_t *tokens, int batch, int pos, tlens_error *err) {
    return tlens_run_ex(ctx, tokens, batch, pos, NULL, err);
}

TLENS_DEF const tlens_tensor *tlens_resid(const tlens_ctx *ctx) {
    return ctx->resid_tensor.data ? &ctx->resid_tensor : NULL;
}

TLENS_DEF const tlens_tensor *tlens_logits(const tlens_ctx *ctx) {
    return ctx->logits_tensor.data ? &ctx->logits_tensor : NULL;
}

TLENS_DEF int tlens_hook_count(const tlens_ctx *ctx) {
    int i, n = 0;
    for (i = 0; i < ctx->n_points; i++) n += !ctx->points[i].optional || ctx->optional_hooks;
    return n;
}

TLENS_DEF const char *tlens_hook_name(const tlens_ctx *ctx, int index) {
    int i;
    for (i = 0; i < ctx->n_points; i++) {
        if (ctx->points[i].optional && !ctx->optional_hooks) continue;
        if (index-- == 0) return ctx->points[i].name;
    }
    return NULL;
}

static int tlens__hook_push(tlens_ctx *ctx, const char *pattern, tlens_filter_fn filter, void *filter_user,
                            tlens_hook_fn fn, void *user) {
    tlens__hook *h;
    if (!fn || (!pattern && !filter)) return 0;
    if (ctx->n_hooks == ctx->cap_hooks) {
        int cap = ctx->cap_hooks ? ctx->cap_hooks * 2 : 8;
        tlens__hook *hooks = (tlens__hook *)tlens__alloc(ctx->alloc, (size_t)cap * sizeof *hooks);
        if (!hooks) return 0;
        if (ctx->n_hooks) memcpy(hooks, ctx->hooks, (size_t)ctx->n_hooks * sizeof *hooks);
        tlens__free(ctx->alloc, ctx->hooks);
        ctx->hooks = hooks;
        ctx->cap_hooks = cap;
    }
    h = &ctx->hooks[ctx->n_hooks];
    h->pattern = NULL;
    h->owned = NULL;
    h->owned_free = NULL;
    if (pattern && !(h->pattern = tlens__strdup(ctx->alloc, pattern))) return 0;
    h->filter = filter;
    h->filter_user = filter_user;
    h->fn = fn;
    h->user = user;
    h->handle = ctx->next_handle++;
    ctx->n_hooks++;
    ctx->dirty = 1;
    return h->handle;
}

TLENS_DEF int tlens_add_hook(tlens_ctx *ctx, const char *pattern, tlens_hook_fn fn, void *user) {
    return tlens__hook_push(ctx, pattern, NULL, NULL, fn, user);
}

TLENS_DEF int tlens_add_hook_filter(tlens_ctx *ctx, tlens_filter_fn filter, void *filter_user, tlens_hook_fn fn,
                                    void *user) {
    return tlens__hook_push(ctx, NULL, filter, filter_user, fn, user);
}

TLENS_DEF void tlens_remove_hook(tlens_ctx *ctx, int handle) {
    int i;
    for (i = 0; i < ctx->n_hooks; i++)
        if (ctx->hooks[i].handle == handle) {
            tlens__hook_release(ctx, &ctx->hooks[i]);
            memmove(&ctx->hooks[i], &ctx->hooks[i + 1], (size_t)(ctx->n_hooks - i - 1) * sizeof *ctx->hooks);
            ctx->n_hooks--;
            ctx->dirty = 1;
            return;
        }
}

TLENS_DEF void tlens_reset_hooks(tlens_ctx *ctx) {
    int i;
    for (i = 0; i < ctx->n_hooks; i++) tlens__hook_release(ctx, &ctx->hooks[i]);
    ctx->n_hooks = 0;
    ctx->dirty = 1;
}

static tlens_result tlens__select_push(tlens_ctx *ctx, const char *pattern, tlens_filter_fn filter, void *user,
                                       tlens_error *err) {
    tlens__selection *s;
    if (ctx->n_sel == ctx->cap_sel) {
        int cap = ctx->cap_sel ? ctx->cap_sel * 2 : 8;
        tlens__selection *sel = (tlens__selection *)tlens__alloc(ctx->alloc, (size_t)cap * sizeof *sel);
        if (!sel) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the cache selection");
        if (ctx->n_sel) memcpy(sel, ctx->sel, (size_t)ctx->n_sel * sizeof *sel);
        tlens__free(ctx->alloc, ctx->sel);
        ctx->sel = sel;
        ctx->cap_sel = cap;
    }
    s = &ctx->sel[ctx->n_sel];
    s->pattern = NULL;
    if (pattern && !(s->pattern = tlens__strdup(ctx->alloc, pattern)))
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the cache selection");
    s->filter = filter;
    s->user = user;
    ctx->n_sel++;
    ctx->dirty = 1;
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_cache_select(tlens_ctx *ctx, const char *glob) {
    if (!glob) return TLENS_ERR_ARG;
    return tlens__select_push(ctx, glob, NULL, NULL, NULL);
}

TLENS_DEF tlens_result tlens_cache_select_filter(tlens_ctx *ctx, tlens_filter_fn filter, void *user) {
    if (!filter) return TLENS_ERR_ARG;
    return tlens__select_push(ctx, NULL, filter, user, NULL);
}

TLENS_DEF void tlens_cache_clear(tlens_ctx *ctx) {
    int i;
    for (i = 0; i < ctx->n_sel; i++) tlens__free(ctx->alloc, ctx->sel[i].pattern);
    ctx->n_sel = 0;
    ctx->dirty = 1;
}

TLENS_DEF const tlens_tensor *tlens_cache_get(const tlens_ctx *ctx, const char *name) {
    int i;
    for (i = 0; i < ctx->n_points; i++)
        if (strcmp(ctx->points[i].name, name) == 0)
            return ctx->points[i].cached && ctx->points[i].cache.ndim ? &ctx->points[i].cache : NULL;
    return NULL;
}


/* ------------------------------------------------------------------------
 * 3.12 .npy files (numpy's format), for activations on disk
 * ---------------------------------------------------------------------- */
#ifndef TLENS_NO_STDIO
/* Write t as a little-endian float32 .npy file in t's shape. */
TLENS_DEF tlens_result tlens_npy_save(const char *path, const tlens_tensor *t, tlens_error *err) {
    char header[256];
    tlens__buf b;
    int d, ok;
    size_t n = tlens_tensor_numel(t), i;
    FILE *f = fopen(path, "wb");
    if (!f) return tlens__fail(err, TLENS_ERR_IO, "cannot create %s", path);
    b.p = header; b.cap = sizeof header; b.len = 0;
    tlens__puts(&b, "\x93NUMPY\x01");
    tlens__putc(&b, '\0');
    tlens__puts(&b, "xx{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (d = 0; d < t->ndim; d++) {
        tlens__puti(&b, t->shape[d]);
        if (d + 1 < t->ndim || t->ndim == 1) tlens__putc(&b, ',');
        if (d + 1 < t->ndim) tlens__putc(&b, ' ');
    }
    tlens__puts(&b, "), }");
    while ((b.len + 1) % 64) tlens__putc(&b, ' ');
    tlens__putc(&b, '\n');
    header[8] = (char)((b.len - 10) & 0xff);
    header[9] = (char)((b.len - 10) >> 8);
    ok = fwrite(header, 1, b.len, f) == b.len;
    for (i = 0; ok && i < n; i++) {
        unsigned char le[4];
        uint32_t u = tlens__bits_from_f32(t->data[i]);
        le[0] = (unsigned char)u; le[1] = (unsigned char)(u >> 8); le[2] = (unsigned char)(u >> 16); le[3] = (unsigned char)(u >> 24);
        ok = fwrite(le, 1, 4, f) == 4;
    }
    ok = fclose(f) == 0 && ok;
    return ok ? TLENS_OK : tlens__fail(err, TLENS_ERR_IO, "cannot write %s", path);
}

/* Read a C-order .npy of float32, float64, int32 or int64 (either byte
 * order) into out->data (allocated; free with tlens_tensor_free). */
TLENS_DEF tlens_result tlens_npy_load(const char *path, tlens_tensor *out, tlens_error *err) {
    char *d;
    size_t size, hlen, n = 1, i, width;
    const char *descr, *shape, *p;
    int big, kind, nd = 0;
    tlens_result r;
    memset(out, 0, sizeof *out);
    if ((r = tlens__read_file(NULL, path, &d, &size, err))) return r;
    if (size < 10 || memcmp(d, "\x93NUMPY", 6) != 0) {
        tlens__free(NULL, d);
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: not a .npy file", path);
    }
    hlen = (unsigned char)d[8] | ((size_t)(unsigned char)d[9] << 8);
    if (d[6] >= 2) hlen = tlens__le32((const unsigned char *)d + 8);
    p = d + (d[6] >= 2 ? 12 : 10);
    descr = strstr(p, "'descr': '");
    shape = strstr(p, "'shape': (");
    if (!descr || !shape || (size_t)(p - d) + hlen > size || strstr(p, "'fortran_order': True")) {
        tlens__free(NULL, d);
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: unsupported .npy header (need C order)", path);
    }
    big = descr[10] == '>';
    kind = descr[11];
    width = (size_t)(descr[12] - '0');
    if (!((kind == 'f' && (width == 4 || width == 8)) || (kind == 'i' && (width == 4 || width == 8)))) {
        tlens__free(NULL, d);
        return tlens__fail(err, TLENS_ERR_DTYPE, "%s: .npy type must be float32/64 or int32/64", path);
    }
    for (shape += 10; *shape && *shape != ')'; ) {
        long v = 0;
        while (*shape == ' ' || *shape == ',') shape++;
        if (*shape == ')') break;
        if (*shape < '0' || *shape > '9' || nd == TLENS_MAX_DIMS) {
            tlens__free(NULL, d);
            return tlens__fail(err, TLENS_ERR_SHAPE, "%s: .npy shape must have 1 to 4 dimensions", path);
        }
        while (*shape >= '0' && *shape <= '9' && v < 0x7fffffffL / 10) v = v * 10 + (*shape++ - '0');
        out->shape[nd++] = (int)v;
        if (!tlens__mul_ok(n, (size_t)v, &n)) n = (size_t)-1;
    }
    out->ndim = nd;
    p += hlen;
    if (nd == 0 || n == (size_t)-1 || n > (size - (size_t)(p - d)) / width) {
        tlens__free(NULL, d);
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: .npy data is shorter than its shape", path);
    }
    out->data = (float *)tlens__alloc(NULL, n * sizeof(float));
    if (!out->data) {
        tlens__free(NULL, d);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory reading %s", path);
    }
    for (i = 0; i < n; i++) {
        unsigned char e[8];
        size_t k;
        for (k = 0; k < width; k++) e[k] = (unsigned char)p[i * width + (big ? width - 1 - k : k)];
        if (kind == 'f' && width == 4) out->data[i] = tlens__f32_from_bits(tlens__le32(e));
        else if (kind == 'f') { uint64_t u = tlens__le64(e); double v; memcpy(&v, &u, 8); out->data[i] = (float)v; }
        else if (width == 4) out->data[i] = (float)(int32_t)tlens__le32(e);
        else out->data[i] = (float)(int64_t)tlens__le64(e);
    }
    tlens__free(NULL, d);
    return TLENS_OK;
}

TLENS_DEF void tlens_tensor_free(tlens_tensor *t) {
    tlens__free(NULL, t->data);
    t->data = NULL;
}
#endif

/* TransformerLens' utils.get_act_name: ("resid_post", 3) ->
 * "blocks.3.hook_resid_post", ("pattern", 0) -> "blocks.0.attn.hook_pattern",
 * ("scale", 1, "ln1") -> "blocks.1.ln1.hook_scale", ("scale") ->
 * "ln_final.hook_scale"; full names pass through. */
TLENS_DEF const char *tlens_act_name(char *out, size_t cap, const char *name, int layer, const char *layer_type) {
    static const char *const alias[][2] = {{"attn", "pattern"}, {"attn_logits", "attn_scores"}, {"key", "k"},
                                           {"query", "q"}, {"value", "v"}, {"mlp_pre", "pre"},
                                           {"mlp_mid", "mid"}, {"mlp_post", "post"}};
    static const char *const attn_names[] = {"k", "v", "q", "z", "rot_k", "rot_q", "result", "pattern", "attn_scores"};
    static const char *const mlp_names[] = {"pre", "post", "mid", "pre_linear"};
    static const char *const type_alias[][2] = {{"a", "attn"}, {"m", "mlp"}, {"b", ""}, {"block", ""},
                                                {"blocks", ""}, {"attention", "attn"}};
    tlens__buf b;
    size_t i;
    const char *type = layer_type;
    b.p = out; b.cap = cap; b.len = 0;
    if ((strchr(name, '.') || strncmp(name, "hook_", 5) == 0) && layer < 0 && !layer_type) {
        tlens__puts(&b, name);
        tlens__putc(&b, '\0');
        return b.len <= cap ? out : NULL;
    }
    for (i = 0; i < sizeof alias / sizeof alias[0]; i++)
        if (!strcmp(name, alias[i][0])) name = alias[i][1];
    for (i = 0; i < sizeof attn_names / sizeof *attn_names; i++)
        if (!strcmp(name, attn_names[i])) type = "attn";
    for (i = 0; i < sizeof mlp_names / sizeof *mlp_names; i++)
        if (!strcmp(name, mlp_names[i])) type = "mlp";
    for (i = 0; type && i < sizeof type_alias / sizeof type_alias[0]; i++)
        if (!strcmp(type, type_alias[i][0])) type = type_alias[i][1];
    if ((!strcmp(name, "scale") || !strcmp(name, "normalized")) && layer < 0) tlens__puts(&b, "ln_final.");
    if (layer >= 0) {
        tlens__puts(&b, "blocks.");
        tlens__puti(&b, layer);
        tlens__putc(&b, '.');
    }
    if (type && *type) {
        tlens__puts(&b, type);
        tlens__putc(&b, '.');
    }
    tlens__puts(&b, "hook_");
    tlens__puts(&b, name);
    tlens__putc(&b, '\0');
    return b.len <= cap ? out : NULL;
}

/* The cache by TransformerLens' shorthand: tlens_cache_act(ctx, "pattern", 0, NULL). */
TLENS_DEF const tlens_tensor *tlens_cache_act(const tlens_ctx *ctx, const char *name, int layer,
                                              const char *layer_type) {
    char full[128];
    if (!tlens_act_name(full, sizeof full, name, layer, layer_type)) return NULL;
    return tlens_cache_get(ctx, full);
}

/* ------------------------------------------------------------------------
 * 3.13 The interpretability toolkit: loss, generation, ablation and
 *      patching, the residual stream, head detection
 * ---------------------------------------------------------------------- */

/* Next-token cross-entropy of the last run, as TransformerLens'
 * lm_cross_entropy_loss: position t predicts token t+1; with an attention
 * mask only pairs of real tokens count. */
TLENS_DEF tlens_result tlens_loss(const tlens_ctx *ctx, const int32_t *tokens, const int32_t *attention_mask,
                                  float *per_token, double *mean, tlens_error *err) {
    const tlens_tensor *logits = tlens_logits(ctx);
    int B, T, V, b, t, i;
    double total = 0;
    long count = 0;
    if (!logits) return tlens__fail(err, TLENS_ERR_ARG, "tlens_loss: the last run produced no logits");
    B = logits->shape[0];
    T = logits->shape[1];
    V = logits->shape[2];
    if (T < 2) return tlens__fail(err, TLENS_ERR_LENGTH, "tlens_loss: needs at least 2 positions");
    for (b = 0; b < B; b++)
        for (t = 0; t + 1 < T; t++) {
            const float *row = logits->data + ((size_t)b * (size_t)T + (size_t)t) * (size_t)V;
            int32_t target = tokens[(size_t)b * (size_t)T + (size_t)t + 1];
            int counted = !attention_mask || (attention_mask[(size_t)b * (size_t)T + (size_t)t] &&
                                              attention_mask[(size_t)b * (size_t)T + (size_t)t + 1]);
            double mx = -INFINITY, sum = 0, nll;
            for (i = 0; i < V; i++) if (row[i] > mx) mx = row[i];
            for (i = 0; i < V; i++) sum += exp((double)row[i] - mx);
            nll = counted ? -((double)row[target] - mx - log(sum)) : 0.0;
            if (per_token) per_token[(size_t)b * (size_t)(T - 1) + (size_t)t] = (float)nll;
            total += nll;
            count += counted;
        }
    if (mean) *mean = count ? total / (double)count : 0.0;
    tlens__ok(err);
    return TLENS_OK;
}

/* A small seedable generator (SplitMix64): the same seed gives the same
 * samples on every machine. */
static uint64_t tlens__rng_next(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double tlens__rng_uniform(uint64_t *state) {
    return (double)(tlens__rng_next(state) >> 11) * (1.0 / 9007199254740992.0);
}

/* Pick the next token from one row of logits as TransformerLens'
 * sample_logits does: temperature 0 is argmax; otherwise divide by the
 * temperature, keep the top k (or else the smallest set whose probability
 * reaches top_p) and sample. `work` holds V floats and V ints. */
static int32_t tlens__sample(const float *logits, int V, const tlens_generate_options *o, uint64_t *rng,
                             float *work, int *order) {
    int i, n = V;
    double mx = -INFINITY, sum = 0, u, acc = 0;
    if (o->temperature <= 0) {
        int best = 0;
        for (i = 1; i < V; i++) if (logits[i] > logits[best]) best = i;
        return best;
    }
    for (i = 0; i < V; i++) work[i] = logits[i] / o->temperature;
    if (o->top_k > 0 || (o->top_p > 0 && o->top_p < 1)) {
        /* sort indices by logit, descending (insertion into a heap would be
         * faster; V log V once per token is small next to the forward pass) */
        int k;
        for (i = 0; i < V; i++) order[i] = i;
        for (k = 1; k < V; k *= 2) { /* bottom-up merge sort on order[] */
            int lo;
            int *tmp = order + V;
            for (lo = 0; lo < V; lo += 2 * k) {
                int mid = lo + k < V ? lo + k : V, hi = lo + 2 * k < V ? lo + 2 * k : V, a = lo, b = mid, o2 = lo;
                while (a < mid || b < hi)
                    tmp[o2++] = (b >= hi || (a < mid && work[order[a]] >= work[order[b]])) ? order[a++] : order[b++];
            }
            memcpy(order, tmp, (size_t)V * sizeof(int));
        }
        if (o->top_k > 0) {
            float kth = work[order[(o->top_k < V ? o->top_k : V) - 1]];
            for (i = 0; i < V; i++) if (work[i] < kth) work[i] = -INFINITY;
        } else {
            double m0 = work[order[0]], z = 0, cum = 0;
            for (i = 0; i < V; i++) z += exp(work[order[i]] - m0);
            for (i = 0; i < V; i++) {
                double p = exp(work[order[i]] - m0) / z;
                if (cum > o->top_p) work[order[i]] = -INFINITY; /* keep the token that crosses top_p */
                cum += p;
            }
        }
    }
    for (i = 0; i < n; i++) if (work[i] > mx) mx = work[i];
    for (i = 0; i < n; i++) sum += exp(work[i] - mx);
    u = tlens__rng_uniform(rng) * sum;
    for (i = 0; i < n; i++) {
        acc += exp(work[i] - mx);
        if (u < acc) return i;
    }
    for (i = n - 1; i > 0 && work[i] == -INFINITY; i--) {}
    return i;
}

TLENS_DEF tlens_result tlens_generate(tlens_ctx *ctx, const int32_t *prompt, int n_prompt,
                                      const tlens_generate_options *opt, int32_t *out, int cap, int *n_out,
                                      tlens_error *err) {
    static const tlens_generate_options defaults;
    const tlens_config *c = &ctx->m->cfg;
    tlens_run_options ro;
    int max_new, n = 0, eos, V = c->d_vocab, total;
    uint64_t rng;
    float *work = NULL;
    int *order = NULL, *seq = NULL;
    tlens_result r = TLENS_OK;
    if (!opt) opt = &defaults;
    if (n_out) *n_out = 0;
    max_new = opt->max_new_tokens > 0 ? opt->max_new_tokens : 10;
    if (max_new > cap) max_new = cap;
    if (n_prompt < 1) return tlens__fail(err, TLENS_ERR_LENGTH, "tlens_generate: empty prompt");
    if (n_prompt + max_new > c->n_ctx) max_new = c->n_ctx - n_prompt;
    if (max_new < 0) return tlens__fail(err, TLENS_ERR_LENGTH, "prompt of %d tokens is longer than n_ctx %d", n_prompt, c->n_ctx);
    eos = opt->eos_token > 0 ? opt->eos_token : (V > 50256 ? 50256 : -1);
    rng = opt->seed;
    work = (float *)tlens__alloc(ctx->alloc, (size_t)V * sizeof(float));
    order = (int *)tlens__alloc(ctx->alloc, (size_t)V * 2 * sizeof(int));
    seq = (int *)tlens__alloc(ctx->alloc, (size_t)(n_prompt + max_new + 1) * sizeof(int32_t));
    if (!work || !order || !seq) { r = tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for generation"); goto done; }
    memcpy(seq, prompt, (size_t)n_prompt * sizeof(int32_t));
    total = n_prompt;
    memset(&ro, 0, sizeof ro);
    ro.use_kv_cache = !opt->no_kv_cache;
    tlens_kv_reset(ctx);
    if ((r = tlens_run_ex(ctx, (const int32_t *)seq, 1, total, &ro, err))) goto done;
    while (n < max_new) {
        const tlens_tensor *lg = tlens_logits(ctx);
        int32_t tok = tlens__sample(lg->data + (size_t)(lg->shape[1] - 1) * (size_t)V, V, opt, &rng, work, order);
        out[n++] = tok;
        seq[total++] = tok;
        if (opt->on_token && opt->on_token(tok, opt->user)) break;
        if (tok == eos && !opt->no_stop_at_eos) break;
        if (n == max_new) break;
        if (ro.use_kv_cache) r = tlens_run_ex(ctx, (const int32_t *)seq + total - 1, 1, 1, &ro, err);
        else r = tlens_run_ex(ctx, (const int32_t *)seq, 1, total, &ro, err);
        if (r) goto done;
    }
done:
    if (n_out) *n_out = n;
    tlens__free(ctx->alloc, work);
    tlens__free(ctx->alloc, order);
    tlens__free(ctx->alloc, seq);
    if (!r) tlens__ok(err);
    return r;
}

/* ---- ablation and patching: hooks with state the context owns ---- */

/* Which axis of a hook point's tensor holds heads, and which positions
 * (queries for the attention scores / pattern); -1 when it has none. */
static void tlens__point_axes(const char *name, int ndim, int *head_axis, int *pos_axis) {
    int scores = strstr(name, "attn_scores") || strstr(name, "hook_pattern");
    *pos_axis = ndim >= 2 ? (scores ? 2 : 1) : -1;
    *head_axis = ndim == 4 ? (scores ? 1 : 2) : -1;
}

typedef struct tlens__edit {
    int mode;              /* TLENS_ABLATE_ZERO, TLENS_ABLATE_MEAN, or 2: patch */
    int head, pos;         /* -1: all */
    tlens_tensor source;   /* patch: the values (owned copy) */
    const tlens_allocator *alloc;
    double *mean;          /* mean ablation: per-feature sums */
    size_t mean_cap;
} tlens__edit;

static void tlens__edit_free(void *p) {
    tlens__edit *e = (tlens__edit *)p;
    tlens__free(e->alloc, e->mean);
    tlens__free(e->alloc, e->source.data);
    tlens__free(e->alloc, e);
}

/* Index of element idx with its batch and position coordinates dropped. */
static size_t tlens__feature_index(const tlens_tensor *t, size_t idx, int pos_axis) {
    size_t f = 0, mul = 1, rest = idx;
    int d;
    for (d = t->ndim - 1; d >= 1; d--) {
        size_t c = rest % (size_t)t->shape[d];
        rest /= (size_t)t->shape[d];
        if (d == pos_axis) continue;
        f += c * mul;
        mul *= (size_t)t->shape[d];
    }
    return f;
}

/* Visit every element of t that the edit's head and position select,
 * with the index of that element and its index in the "feature" space
 * (the element with batch and position removed), for the mean. */
static int tlens__edit_selects(const tlens_tensor *t, const tlens__edit *e, size_t idx, int head_axis, int pos_axis) {
    int d;
    size_t rest = idx;
    int coord[TLENS_MAX_DIMS];
    for (d = t->ndim - 1; d >= 0; d--) {
        coord[d] = (int)(rest % (size_t)t->shape[d]);
        rest /= (size_t)t->shape[d];
    }
    if (e->head >= 0 && (head_axis < 0 || coord[head_axis] != e->head)) return 0;
    if (e->pos >= 0 && (pos_axis < 0 || coord[pos_axis] != e->pos)) return 0;
    return 1;
}

static int tlens__edit_hook(const char *name, int layer, tlens_tensor *t, void *user) {
    tlens__edit *e = (tlens__edit *)user;
    size_t n = tlens_tensor_numel(t), i;
    int head_axis, pos_axis;
    (void)layer;
    tlens__point_axes(name, t->ndim, &head_axis, &pos_axis);
    if (e->mode == TLENS_ABLATE_MEAN) {
        /* the mean over the batch and position axes of every other index */
        size_t per = n / ((size_t)t->shape[0] * (size_t)(pos_axis >= 0 ? t->shape[pos_axis] : 1));
        double count = (double)(n / per);
        if (per > e->mean_cap) {
            tlens__free(e->alloc, e->mean);
            e->mean = (double *)tlens__alloc(e->alloc, per * sizeof(double));
            e->mean_cap = e->mean ? per : 0;
            if (!e->mean) return TLENS__STOP_NOMEM;
        }
        memset(e->mean, 0, per * sizeof(double));
        for (i = 0; i < n; i++) e->mean[tlens__feature_index(t, i, pos_axis)] += t->data[i];
        for (i = 0; i < n; i++)
            if (tlens__edit_selects(t, e, i, head_axis, pos_axis))
                t->data[i] = (float)(e->mean[tlens__feature_index(t, i, pos_axis)] / count);
        return 0;
    }
    if (e->mode != TLENS_ABLATE_ZERO && tlens_tensor_numel(&e->source) != n) return TLENS__STOP_SHAPE;
    for (i = 0; i < n; i++) {
        if (!tlens__edit_selects(t, e, i, head_axis, pos_axis)) continue;
        t->data[i] = e->mode == TLENS_ABLATE_ZERO ? 0.0f : e->source.data[i];
    }
    return 0;
}

static int tlens__add_edit(tlens_ctx *ctx, const char *pattern, int mode, int head, int pos, const tlens_tensor *src) {
    tlens__edit *e = (tlens__edit *)tlens__calloc(ctx->alloc, sizeof *e);
    int handle;
    if (!e) return 0;
    e->mode = mode;
    e->head = head;
    e->pos = pos;
    e->alloc = ctx->alloc;
    if (src) {
        size_t bytes = tlens_tensor_numel(src) * sizeof(float);
        e->source = *src;
        e->source.data = (float *)tlens__alloc(ctx->alloc, bytes);
        if (!e->source.data) { tlens__free(ctx->alloc, e); return 0; }
        memcpy(e->source.data, src->data, bytes);
    }
    handle = tlens__hook_push(ctx, pattern, NULL, NULL, tlens__edit_hook, e);
    if (!handle) {
        tlens__edit_free(e);
        return 0;
    }
    ctx->hooks[ctx->n_hooks - 1].owned = e;
    ctx->hooks[ctx->n_hooks - 1].owned_free = tlens__edit_free;
    return handle;
}

TLENS_DEF int tlens_add_ablation(tlens_ctx *ctx, const char *pattern, int head, int mode) {
    if (mode != TLENS_ABLATE_ZERO && mode != TLENS_ABLATE_MEAN) return 0;
    return tlens__add_edit(ctx, pattern, mode, head, -1, NULL);
}

TLENS_DEF int tlens_add_patch(tlens_ctx *ctx, const char *name, const tlens_tensor *source, int head, int pos) {
    if (!source || !source->data) return 0;
    return tlens__add_edit(ctx, name, 2, head, pos, source);
}

/* ---- the residual stream, as TransformerLens' ActivationCache ---- */

TLENS_DEF void tlens_stack_free(tlens_stack *s) {
    tlens__free(&s->alloc, s->data);
    tlens__free(&s->alloc, s->labels);
    memset(s, 0, sizeof *s);
}

static tlens_result tlens__stack_init(const tlens_ctx *ctx, tlens_stack *s, int n, int B, int T, int D,
                                      tlens_error *err) {
    memset(s, 0, sizeof *s);
    s->alloc = *ctx->alloc;
    s->n = n; s->batch = B; s->pos = T; s->d_model = D;
    s->data = (float *)tlens__alloc(ctx->alloc, (size_t)(n ? n : 1) * (size_t)B * (size_t)T * (size_t)D * sizeof(float));
    s->labels = (char(*)[32])tlens__calloc(ctx->alloc, (size_t)(n ? n : 1) * 32u);
    if (!s->data || !s->labels) {
        tlens_stack_free(s);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for a residual stack");
    }
    return TLENS_OK;
}

/* Copy cached activation `name` into component i of the stack. */
static tlens_result tlens__stack_put(const tlens_ctx *ctx, tlens_stack *s, int i, const char *name, const char *label,
                                     tlens_error *err) {
    const tlens_tensor *t = tlens_cache_get(ctx, name);
    size_t n = (size_t)s->batch * (size_t)s->pos * (size_t)s->d_model;
    tlens__buf b;
    if (!t || tlens_tensor_numel(t) != n)
        return tlens__fail(err, TLENS_ERR_NOT_FOUND, "%s is not in the cache (select it before the run)", name);
    memcpy(s->data + (size_t)i * n, t->data, n * sizeof(float));
    b.p = s->labels[i]; b.cap = 32; b.len = 0;
    tlens__puts(&b, label);
    tlens__putc(&b, '\0');
    s->labels[i][31] = 0;
    return TLENS_OK;
}

static void tlens__label(char *out, int layer, const char *suffix) {
    tlens__buf b;
    b.p = out; b.cap = 32; b.len = 0;
    tlens__puti(&b, layer);
    tlens__puts(&b, suffix);
    tlens__putc(&b, '\0');
}

static tlens_result tlens__stack_shape(const tlens_ctx *ctx, int *B, int *T, tlens_error *err) {
    if (!ctx->resid_tensor.data) return tlens__fail(err, TLENS_ERR_ARG, "no run yet");
    *B = ctx->B;
    *T = ctx->T;
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_apply_ln_to_stack(const tlens_ctx *ctx, tlens_stack *s, int layer, int mlp_input,
                                               tlens_error *err) {
    char name[64];
    const tlens_tensor *scale;
    size_t per = (size_t)s->batch * (size_t)s->pos, D = (size_t)s->d_model, c, r, i;
    int L = ctx->m->cfg.n_layers;
    if (layer < 0 || layer >= L) tlens_act_name(name, sizeof name, "scale", -1, NULL);
    else tlens_act_name(name, sizeof name, "scale", layer, mlp_input ? "ln2" : "ln1");
    scale = tlens_cache_get(ctx, name);
    if (!scale || tlens_tensor_numel(scale) != per)
        return tlens__fail(err, TLENS_ERR_NOT_FOUND, "%s is not in the cache (select it before the run)", name);
    for (c = 0; c < (size_t)s->n; c++)
        for (r = 0; r < per; r++) {
            float *x = s->data + (c * per + r) * D;
            double mean = 0;
            for (i = 0; i < D; i++) mean += x[i];
            mean /= (double)D;
            for (i = 0; i < D; i++) x[i] = (float)((x[i] - mean) / scale->data[r]);
        }
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_accumulated_resid(const tlens_ctx *ctx, int layer, int incl_mid, int apply_ln,
                                               tlens_stack *s, tlens_error *err) {
    int L = ctx->m->cfg.n_layers, B, T, n = 0, l;
    char name[64], label[32];
    tlens_result r;
    if (layer < 0 || layer > L) layer = L;
    if ((r = tlens__stack_shape(ctx, &B, &T, err))) return r;
    for (l = 0; l <= layer; l++) n += 1 + (incl_mid && l < layer && l < L);
    if ((r = tlens__stack_init(ctx, s, n, B, T, ctx->m->cfg.d_model, err))) return r;
    n = 0;
    for (l = 0; l <= layer && !r; l++) {
        if (l == L) {
            r = tlens__stack_put(ctx, s, n++, tlens_act_name(name, sizeof name, "resid_post", L - 1, NULL), "final_post", err);
            break;
        }
        tlens__label(label, l, "_pre");
        r = tlens__stack_put(ctx, s, n++, tlens_act_name(name, sizeof name, "resid_pre", l, NULL), label, err);
        if (!r && incl_mid && l < layer) {
            tlens__label(label, l, "_mid");
            r = tlens__stack_put(ctx, s, n++, tlens_act_name(name, sizeof name, "resid_mid", l, NULL), label, err);
        }
    }
    if (!r && apply_ln) r = tlens_apply_ln_to_stack(ctx, s, layer, 0, err);
    if (r) tlens_stack_free(s);
    return r;
}

TLENS_DEF tlens_result tlens_decompose_resid(const tlens_ctx *ctx, int layer, int apply_ln, tlens_stack *s,
                                             tlens_error *err) {
    int L = ctx->m->cfg.n_layers, B, T, n = 0, l;
    char name[64], label[32];
    tlens_result r;
    if (layer < 0 || layer > L) layer = L;
    if ((r = tlens__stack_shape(ctx, &B, &T, err))) return r;
    if ((r = tlens__stack_init(ctx, s, 2 + 2 * layer, B, T, ctx->m->cfg.d_model, err))) return r;
    r = tlens__stack_put(ctx, s, n++, "hook_embed", "embed", err);
    if (!r) r = tlens__stack_put(ctx, s, n++, "hook_pos_embed", "pos_embed", err);
    for (l = 0; l < layer && !r; l++) {
        tlens__label(label, l, "_attn_out");
        r = tlens__stack_put(ctx, s, n++, tlens_act_name(name, sizeof name, "attn_out", l, NULL), label, err);
        tlens__label(label, l, "_mlp_out");
        if (!r) r = tlens__stack_put(ctx, s, n++, tlens_act_name(name, sizeof name, "mlp_out", l, NULL), label, err);
    }
    if (!r && apply_ln) r = tlens_apply_ln_to_stack(ctx, s, layer, 0, err);
    if (r) tlens_stack_free(s);
    return r;
}

TLENS_DEF tlens_result tlens_stack_head_results(const tlens_ctx *ctx, int layer, int apply_ln, tlens_stack *s,
                                                tlens_error *err) {
    const tlens_config *c = &ctx->m->cfg;
    int L = c->n_layers, H = c->n_heads, D = c->d_model, dh = c->d_head, B, T, l, h, r0, i, k;
    char name[64];
    tlens_result r;
    if (layer < 0 || layer > L) layer = L;
    if ((r = tlens__stack_shape(ctx, &B, &T, err))) return r;
    if ((r = tlens__stack_init(ctx, s, layer * H, B, T, D, err))) return r;
    for (l = 0; l < layer; l++) {
        const tlens_tensor *z = tlens_cache_get(ctx, tlens_act_name(name, sizeof name, "z", l, NULL));
        const tlens__mat *W_O = &ctx->m->blocks[l].W_O;
        if (!z) {
            tlens_stack_free(s);
            return tlens__fail(err, TLENS_ERR_NOT_FOUND, "%s is not in the cache (select it before the run)", name);
        }
        for (h = 0; h < H; h++) {
            float *out = s->data + (size_t)(l * H + h) * (size_t)B * (size_t)T * (size_t)D;
            tlens__buf b;
            b.p = s->labels[l * H + h]; b.cap = 32; b.len = 0;
            tlens__putc(&b, 'L'); tlens__puti(&b, l); tlens__putc(&b, 'H'); tlens__puti(&b, h); tlens__putc(&b, '\0');
            for (r0 = 0; r0 < B * T; r0++) {
                const float *zr = z->data + (size_t)r0 * (size_t)D + (size_t)h * (size_t)dh;
                float *o = out + (size_t)r0 * (size_t)D;
                for (i = 0; i < D; i++) o[i] = 0;
                for (k = 0; k < dh; k++)
                    for (i = 0; i < D; i++) o[i] += zr[k] * tlens__mat_get(W_O, h * dh + k, i);
            }
        }
    }
    if (apply_ln && (r = tlens_apply_ln_to_stack(ctx, s, layer, 0, err))) tlens_stack_free(s);
    return r;
}

TLENS_DEF tlens_result tlens_logit_attrs(const tlens_ctx *ctx, const tlens_stack *stack, int token,
                                         int incorrect_token, float *out, tlens_error *err) {
    const tlens_config *c = &ctx->m->cfg;
    tlens_stack s;
    size_t per, i, d, D = (size_t)c->d_model;
    float *dir;
    tlens_result r;
    if (token < 0 || token >= c->d_vocab || incorrect_token >= c->d_vocab)
        return tlens__fail(err, TLENS_ERR_TOKEN, "tlens_logit_attrs: token outside the vocabulary");
    s = *stack;
    per = (size_t)s.batch * (size_t)s.pos;
    s.data = (float *)tlens__alloc(ctx->alloc, (size_t)s.n * per * D * sizeof(float));
    dir = (float *)tlens__alloc(ctx->alloc, D * sizeof(float) * 2);
    if (!s.data || !dir) {
        tlens__free(ctx->alloc, s.data);
        tlens__free(ctx->alloc, dir);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory");
    }
    memcpy(s.data, stack->data, (size_t)s.n * per * D * sizeof(float));
    tlens__mat_column(&ctx->m->W_U, token, dir);
    if (incorrect_token >= 0) {
        tlens__mat_column(&ctx->m->W_U, incorrect_token, dir + D);
        for (d = 0; d < D; d++) dir[d] -= dir[D + d];
    }
    r = tlens_apply_ln_to_stack(ctx, &s, -1, 0, err);
    for (i = 0; !r && i < (size_t)s.n * per; i++) {
        double acc = 0;
        for (d = 0; d < D; d++) acc += (double)s.data[i * D + d] * dir[d];
        out[i] = (float)acc;
    }
    tlens__free(ctx->alloc, s.data);
    tlens__free(ctx->alloc, dir);
    return r;
}

/* ---- head detection, as TransformerLens' head_detector ---- */

/* The detection pattern's value at (query i, key j) for the tokens. */
static int tlens__detection(const int32_t *tok, int i, int j, int kind) {
    if (j > i) return 0;
    switch (kind) {
    case TLENS_HEAD_PREVIOUS_TOKEN: return j == i - 1;
    case TLENS_HEAD_DUPLICATE_TOKEN: return j != i && tok[j] == tok[i];
    default: return j >= 1 && j - 1 != i && tok[j - 1] == tok[i]; /* induction: attend to what followed */
    }
}

TLENS_DEF tlens_result tlens_detect_heads(tlens_ctx *ctx, const int32_t *tokens, int n, int kind,
                                          const tlens_detect_options *opt, float *scores, tlens_error *err) {
    static const tlens_detect_options defaults;
    const tlens_config *c = &ctx->m->cfg;
    int n_sel = ctx->n_sel, l, h, i, j;
    tlens_result r;
    char name[64];
    if (!opt) opt = &defaults;
    if (n < 2 || n >= c->n_ctx) return tlens__fail(err, TLENS_ERR_LENGTH, "head detection needs 1 < length < n_ctx");
    if ((r = tlens__select_push(ctx, "blocks.*.attn.hook_pattern", NULL, NULL, err))) return r;
    r = tlens_run(ctx, tokens, 1, n, err);
    for (l = 0; !r && l < c->n_layers; l++) {
        const tlens_tensor *pat = tlens_cache_get(ctx, tlens_act_name(name, sizeof name, "pattern", l, NULL));
        for (h = 0; h < c->n_heads; h++) {
            const float *P = pat->data + (size_t)h * (size_t)n * (size_t)n;
            double num = 0, den = 0, absdiff = 0;
            for (i = 0; i < n; i++)
                for (j = 0; j < n; j++) {
                    double a = P[(size_t)i * (size_t)n + (size_t)j];
                    int dpat = tlens__detection(tokens, i, j, kind);
                    int dropped = (opt->exclude_bos && j == 0) || (opt->exclude_current_token && i == j);
                    if (opt->error_measure_abs) {
                        if (!dropped) absdiff += fabs(a - dpat);
                    } else {
                        if (dropped) a = 0;
                        num += a * dpat;
                        den += a;
                    }
                }
            if (opt->error_measure_abs) {
                /* 1 - round(mean(|diff|) * n, 3) */
                double v = absdiff / ((double)n * n) * n;
                scores[l * c->n_heads + h] = (float)(1.0 - floor(v * 1000.0 + 0.5) / 1000.0);
            } else {
                scores[l * c->n_heads + h] = (float)(den > 0 ? num / den : 0.0);
            }
        }
    }
    while (ctx->n_sel > n_sel) tlens__free(ctx->alloc, ctx->sel[--ctx->n_sel].pattern);
    ctx->dirty = 1;
    return r;
}

/* ------------------------------------------------------------------------
 * 3.14 Random models, for tests and benchmarks of real shapes
 * ---------------------------------------------------------------------- */
static float tlens__rng_normal(uint64_t *state) {
    /* Box-Muller; one of the pair is enough here */
    double u1 = tlens__rng_uniform(state), u2 = tlens__rng_uniform(state);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

TLENS_DEF tlens_result tlens_init_random(tlens_model **out, const tlens_config *cfg, const tlens_load_options *opt,
                                         uint64_t seed, tlens_error *err) {
    static const tlens_load_options defaults;
    tlens_config c = *cfg;
    tlens__state s;
    tlens_model *m = NULL;
    tlens_result r;
    size_t i, n;
    if (!opt) opt = &defaults;
    *out = NULL;
    if (!c.d_head && c.n_heads > 0) c.d_head = c.d_model / c.n_heads;
    if (!c.eps) c.eps = 1e-5f;
    if ((r = tlens__config_check(&c, "tlens_init_random", err))) return r;
    if ((r = tlens__state_alloc(&s, &c, &opt->allocator, err))) return r;
    /* everything N(0, 0.02), then LayerNorm weights near 1 */
    n = (size_t)(s.blocks[c.n_layers - 1].b_out + c.d_model - s.buf);
    for (i = 0; i < n; i++) s.buf[i] = 0.02f * tlens__rng_normal(&seed);
    for (i = 0; i < (size_t)c.d_model; i++) {
        int l;
        s.lnf_w[i] += 1.0f;
        for (l = 0; l < c.n_layers; l++) { s.blocks[l].ln1_w[i] += 1.0f; s.blocks[l].ln2_w[i] += 1.0f; }
    }
    memset(s.b_U, 0, (size_t)c.d_vocab * sizeof(float));
    if (c.tied) {
        size_t v, d;
        for (v = 0; v < (size_t)c.d_vocab; v++)
            for (d = 0; d < (size_t)c.d_model; d++) s.W_U[d * (size_t)c.d_vocab + v] = s.W_E[v * (size_t)c.d_model + d];
    }
    if (!(r = tlens__model_new(&m, &c, &opt->allocator, err))) {
        m->processing = tlens__flags_from_options(opt);
        m->wdtype = opt->weight_dtype == TLENS_DTYPE_AUTO ? TLENS_F32 : opt->weight_dtype;
        tlens__process(&s, &m->cfg, m->processing);
        r = tlens__model_from_state(m, &s, err);
    }
    tlens__state_free(&s, &opt->allocator);
    if (r) {
        tlens_free(m);
        return r;
    }
    *out = m;
    tlens__ok(err);
    return TLENS_OK;
}

#endif /* TLENS_IMPLEMENTATION_DONE */
#endif /* TLENS_IMPLEMENTATION */

/*
------------------------------------------------------------------------------
4. LICENSE

MIT License

Copyright (c) 2026 The tlens authors

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in
all copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
------------------------------------------------------------------------------
*/
