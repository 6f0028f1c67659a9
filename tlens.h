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
 *     int main(int argc, char **argv) {
 *         tlens_error err;
 *         tlens_model *model;
 *         tlens_ctx *ctx;
 *         const tlens_tensor *r;
 *         int32_t tokens[4] = {50256, 464, 3797, 318};        // BOS and three ids
 *         if (tlens_load(&model, argc > 1 ? argv[1] : "models/kjv.tlens", NULL, &err) ||
 *             tlens_ctx_new(&ctx, model, &err)) {             // HF folder or .tlens
 *             fprintf(stderr, "%s\n", err.message);
 *             return 1;
 *         }
 *         tlens_cache_select(ctx, "blocks.*.hook_resid_post");  // names_filter
 *         if (tlens_run(ctx, tokens, 1, 4, &err)) {           // tokens [batch, pos]
 *             fprintf(stderr, "%s\n", err.message);
 *             return 1;
 *         }
 *         r = tlens_cache_act(ctx, "resid_post", 0, NULL);    // cache["resid_post", 0]
 *         printf("[%d, %d, %d] %f\n", r->shape[0], r->shape[1], r->shape[2], r->data[0]);
 *         tlens_ctx_free(ctx);
 *         tlens_free(model);
 *         return 0;
 *     }
 *
 * TABLE OF CONTENTS
 *   1. Compile-time options (below)
 *   2. Public API
 *      2.1 Results and errors
 *      2.2 Allocation
 *      2.3 The tokenizer
 *      2.4 Model configuration, as TransformerLens names it
 *      2.5 Loading
 *      2.6 Tensors, hooks and the run context
 *      2.7 .npy files (not with TLENS_NO_STDIO)
 *      2.8 The interpretability toolkit
 *      2.9 Sparse autoencoders (SAELens format)
 *      2.10 Steering and interventions
 *   3. Implementation
 *      3.1 Errors, allocation, files
 *      3.2 Half-precision conversion, little-endian reads
 *      3.3 The tokenizer: GPT-2's byte-level BPE
 *      3.4 A small JSON reader
 *      3.5 Kernels: matrix multiplication
 *      3.6 The model: parameters, configuration, safetensors, Hugging Face
 *      3.7 Weight processing, as TransformerLens' from_pretrained does it
 *      3.8 The .tlens file format
 *      3.9 Hook points
 *      3.10 Elementwise kernels: LayerNorm, GELU, softmax
 *      3.11 The forward pass
 *      3.12 .npy files (numpy's format), for activations on disk
 *      3.13 The interpretability toolkit: loss, generation, ablation, patching,
 *           the residual stream, head detection
 *      3.14 Random models, for tests and benchmarks of real shapes
 *      3.15 Sparse autoencoders (SAELens format): loading, splicing
 *      3.16 Steering vectors and intervention files
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
 *   OpenMP               If the compiler enables it (-fopenmp), the matmul,
 *                        attention and elementwise loops run in parallel;
 *                        results do not depend on the thread count. The
 *                        kernels keep blocks of up to 50 KB on each thread's
 *                        stack (AVX-512; 17 KB with the scalar kernels).
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
 * 2.3 The tokenizer
 *
 * GPT-2's byte-level BPE, giving the same ids as OpenAI's tiktoken
 * ("gpt2") and Hugging Face's GPT2TokenizerFast, read from vocab.json +
 * merges.txt (Hugging Face's names) or encoder.json + vocab.bpe (OpenAI's).
 *
 * Text is bytes. UTF-8 is expected, but any byte string encodes, and
 * decoding gives back exactly the same bytes. A byte that does not begin a
 * well-formed UTF-8 sequence (as the Unicode standard defines it: no
 * overlong forms, no surrogates U+D800..U+DFFF, nothing above U+10FFFF, no
 * truncated sequence) is a pre-token of its own and so becomes the token of
 * that single byte; it also ends the pre-tokens around it, like a
 * character that is neither a letter, a number nor white space. (tiktoken
 * cannot take such text; Python would have replaced each bad byte by
 * U+FFFD before.)
 *
 * "<|endoftext|>" written in the text becomes the end-of-text token
 * (50256), as in Hugging Face and TransformerLens, and the text around it
 * is encoded as if it were two separate texts.
 *
 * A tokenizer is read-only after loading: several threads may encode and
 * decode with one tokenizer at once.
 * ---------------------------------------------------------------------- */
typedef struct tlens_tokenizer tlens_tokenizer;

/* GPT-2's end-of-text token, also its beginning-of-sequence (BOS) token. */
#define TLENS_EOT 50256

/* Load the tokenizer files of folder `dir`: vocab.json + merges.txt, else
 * encoder.json + vocab.bpe. `alloc` may be NULL (malloc). Not with
 * TLENS_NO_STDIO. */
TLENS_API tlens_result tlens_tokenizer_load(tlens_tokenizer **out, const char *dir,
                                            const tlens_allocator *alloc,
                                            tlens_error *err);

/* Load from two named files: a vocabulary (vocab.json / encoder.json) and
 * a merge list (merges.txt / vocab.bpe). Not with TLENS_NO_STDIO. */
TLENS_API tlens_result tlens_tokenizer_load_files(tlens_tokenizer **out,
                                                  const char *vocab_path,
                                                  const char *merges_path,
                                                  const tlens_allocator *alloc,
                                                  tlens_error *err);

/* Load from the contents of the two files in memory (not NUL-terminated
 * necessarily); nothing is kept pointing into them.
 *
 * vocab.json must be a JSON object mapping each token, written in GPT-2's
 * byte-to-character alphabet, to its id; the ids must be 0..n-1, each
 * once, and every one of the 256 bytes must have a token. merges.txt has
 * an optional "#version" first line, then one merge per line: two tokens
 * separated by one space, highest priority first; both tokens and their
 * concatenation must be in the vocabulary. Anything else fails with
 * TLENS_ERR_TOKENIZER and a message naming the file, line and column. */
TLENS_API tlens_result tlens_tokenizer_load_memory(tlens_tokenizer **out,
                                                   const char *vocab_json, size_t vocab_len,
                                                   const char *merges_txt, size_t merges_len,
                                                   const tlens_allocator *alloc,
                                                   tlens_error *err);

/* Free a tokenizer (NULL is fine). */
TLENS_API void tlens_tokenizer_free(tlens_tokenizer *tok);

/* The number of tokens (50257 for GPT-2): ids are 0..vocab_size-1. */
TLENS_API int tlens_tokenizer_vocab_size(const tlens_tokenizer *tok);

/* Encode len bytes of text into ids (text may be NULL when len is 0). With
 * prepend_bos the end-of-text token comes first, as TransformerLens'
 * to_tokens does by default. *n_out gets the number of ids.
 *
 * The count is at most len + 1, so room for len + 1 ids is always enough.
 * With less room the first `cap` ids are written, *n_out still gets the
 * full count, and the result is TLENS_ERR_ARG. Fails with TLENS_ERR_NOMEM
 * only when a very long pre-token (a run of thousands of letters or
 * spaces) needs working memory that cannot be had. */
TLENS_API tlens_result tlens_encode(const tlens_tokenizer *tok, const char *text,
                                    size_t len, int prepend_bos, int32_t *ids,
                                    size_t cap, size_t *n_out, tlens_error *err);

/* Decode n ids into the bytes they stand for (the exact inverse of
 * tlens_encode). *len_out gets the number of bytes; when it is below cap a
 * NUL follows them (not counted). With less room than *len_out bytes
 * nothing is written and the result is TLENS_ERR_ARG: call with out NULL
 * and cap 0 to learn the length. An id outside the vocabulary is
 * TLENS_ERR_TOKEN. */
TLENS_API tlens_result tlens_decode(const tlens_tokenizer *tok, const int32_t *ids,
                                    size_t n, char *out, size_t cap,
                                    size_t *len_out, tlens_error *err);

/* The bytes of one token, as TransformerLens' to_str_tokens shows them:
 * *len gets the length (a token may hold a NUL byte, or part of a UTF-8
 * character); the bytes are followed by a NUL. NULL (and *len 0) for an id
 * outside the vocabulary. `len` may be NULL. */
TLENS_API const char *tlens_token_bytes(const tlens_tokenizer *tok, int32_t id,
                                        size_t *len);

/* The id of a text that is exactly one token (TransformerLens'
 * to_single_token); TLENS_ERR_ARG when it encodes to no token or to more
 * than one. */
TLENS_API tlens_result tlens_to_single_token(const tlens_tokenizer *tok,
                                             const char *text, size_t len,
                                             int32_t *id, tlens_error *err);

/* The position of token `id` in ids[0..n): its first occurrence, or its
 * last when `last` is non-zero (TransformerLens' get_token_position with
 * mode "first" / "last"). -1 when absent; positions above INT_MAX are not
 * searched. */
TLENS_API int tlens_token_position(const int32_t *ids, size_t n, int32_t id,
                                   int last);

/* ------------------------------------------------------------------------
 * 2.4 Model configuration, as TransformerLens names it
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
 * 2.5 Loading
 *
 * tlens_load_options is valid when zero-initialised, and a NULL pointer
 * means all defaults: TransformerLens' from_pretrained processing (fold_ln,
 * center_writing_weights, center_unembed, fold_value_biases), float32.
 * Memory: a Hugging Face folder is read into a float32 copy, processed,
 * then packed for the kernels (about twice the model's size for a moment);
 * a .tlens file is used as it is.
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
/* The tokenizer that came with the model (vocab.json + merges.txt in the
 * folder, or the one stored in the .tlens file), or NULL. */
TLENS_API const tlens_tokenizer *tlens_model_tokenizer(const tlens_model *model);
/* 1 when the weights were processed as in from_pretrained (fold_ln ...). */
TLENS_API int tlens_model_processed(const tlens_model *model);

/* ------------------------------------------------------------------------
 * 2.6 Tensors, hooks and the run context
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
 *   hook_attn_scores / hook_pattern are [batch, head, pos, cached + pos].
 *   The cache holds n_ctx positions of every sequence: keys and values,
 *   and the keys once more in the layout attention multiplies (GPT-2
 *   small, batch 1: 2 x 38 + 39 MB, touched as it fills). */
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
    /* only the last position's logits: tlens_logits is [batch, 1, d_vocab]
     * (the prefill before generating; saves batch * (pos - 1) * d_vocab
     * floats: 200 MB for GPT-2 at 1024 positions). */
    int last_logits_only;
    /* logits_rows (not NULL): every position's logits are computed but
     * not kept (tlens_logits is then NULL); they are handed to
     * logits_rows(logits_user, row0, n, logits) TLENS_LOGITS_BLOCK rows at
     * a time: rows [row0, row0 + n) of the [batch * pos, d_vocab] logits,
     * row-major, the same values a plain run keeps. Per-token losses or
     * top-k over long inputs then hold one block (39 MB for GPT-2), not
     * batch * pos * d_vocab floats. Ignored with last_logits_only. */
    void (*logits_rows)(void *logits_user, int row0, int n, const float *logits);
    void *logits_user;
} tlens_run_options;

/* Rows of logits per call of tlens_run_options.logits_rows. */
#define TLENS_LOGITS_BLOCK 192

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

/* TransformerLens' run_with_hooks: add these hooks, run, and remove them
 * again (whatever the run's result), leaving the context's own hooks. */
typedef struct tlens_hook_spec {
    const char *pattern;    /* exact name or glob */
    tlens_hook_fn fn;
    void *user;
} tlens_hook_spec;
TLENS_API tlens_result tlens_run_with_hooks(tlens_ctx *ctx, const int32_t *tokens,
                                            int batch, int pos,
                                            const tlens_hook_spec *hooks,
                                            int n_hooks, tlens_error *err);

/* TransformerLens' run_with_cache(names_filter=glob): replace the cache
 * selection by `glob` (NULL: every point) and run. */
TLENS_API tlens_result tlens_run_with_cache(tlens_ctx *ctx, const int32_t *tokens,
                                            int batch, int pos, const char *glob,
                                            tlens_error *err);

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
 * 2.7 .npy files (not with TLENS_NO_STDIO)
 * ---------------------------------------------------------------------- */
/* Write a tensor as float32 .npy in its shape. */
TLENS_API tlens_result tlens_npy_save(const char *path, const tlens_tensor *t,
                                      tlens_error *err);
/* Read a C-order float16/32/64 or int32/64 .npy as floats; free the data
 * with tlens_tensor_free. */
TLENS_API tlens_result tlens_npy_load(const char *path, tlens_tensor *out,
                                      tlens_error *err);
TLENS_API void tlens_tensor_free(tlens_tensor *t);

/* A .npy file written row by row, for arrays too big to hold in memory.
 * The file's shape is [rows, row_shape...] (row_ndim 0 to 3); the header
 * is written first with room for any row count, rows are appended as they
 * come, and closing writes the final count into it. Little-endian on every
 * host; tlens_npy_load reads all three types. */
typedef enum tlens_npy_type {
    TLENS_NPY_F32 = 0,  /* '<f4'                                          */
    TLENS_NPY_F16 = 1,  /* '<f2': floats rounded to nearest even, as numpy */
    TLENS_NPY_I32 = 2   /* '<i4'                                          */
} tlens_npy_type;
typedef struct tlens_npy_writer tlens_npy_writer;
TLENS_API tlens_result tlens_npy_writer_open(tlens_npy_writer **out, const char *path,
                                             tlens_npy_type type, int row_ndim,
                                             const int *row_shape, tlens_error *err);
/* Append n rows (n times the row's element count) to a float32 or float16
 * file; TLENS_ERR_DTYPE for an int32 one. */
TLENS_API tlens_result tlens_npy_writer_append(tlens_npy_writer *w, const float *rows,
                                               size_t n, tlens_error *err);
/* Append n rows to an int32 file. */
TLENS_API tlens_result tlens_npy_writer_append_i32(tlens_npy_writer *w,
                                                   const int32_t *rows, size_t n,
                                                   tlens_error *err);
TLENS_API size_t tlens_npy_writer_rows(const tlens_npy_writer *w);
/* Write the row count into the header, close the file and free the writer
 * (NULL is fine). After any failed call the file is not complete. */
TLENS_API tlens_result tlens_npy_writer_close(tlens_npy_writer *w, tlens_error *err);

/* Activation datasets: token sequences run in batches and chosen hook
 * points' activations streamed to DIR/<hook name>.npy, one row per token:
 * [rows, d] for [batch, pos, d] points, [rows, head, d_head] (or [rows,
 * head, d_model]) for per-head ones. Sequences of different lengths are
 * left-padded with an attention mask (tlens_run_ex); padding is never
 * written. DIR/tokens.npy (int32) holds each row's token id and
 * DIR/prompt_index.npy (int32) the index given with its sequence. Only the
 * queued sequences' tokens and one batch's activations are in memory. */
typedef struct tlens_collect_options {
    int batch;          /* sequences per run (0: 8)                        */
    int window;         /* 0 or 1: run the sequences in the order added;
                           N: hold up to N batches of them and run those
                           shortest first, in batches of similar lengths
                           (less padding: rows then come in that order)    */
    int f16;            /* store activations as float16, not float32       */
    int skip_first;     /* write no row for each sequence's first token (its
                           BOS): the model still sees it                   */
} tlens_collect_options;
typedef struct tlens_collector tlens_collector;

/* Collect the points `patterns` name into the existing directory `dir`.
 * A pattern is a hook name or a glob over the points the context shows
 * (each point once, in firing order; a glob passes over attn_scores and
 * pattern, whose key axis has no row per token, while naming one of them
 * is TLENS_ERR_SHAPE). Naming an optional point (attn.hook_result ...)
 * switches the context's optional points on. The context's cache selection
 * is replaced. Each run goes only as far as the points need (stop_at_layer
 * after the last block named, else logits of the last position only), so
 * hooks on later points do not fire. */
TLENS_API tlens_result tlens_collect_open(tlens_collector **out, tlens_ctx *ctx,
                                          const char *dir,
                                          const char *const *patterns,
                                          int n_patterns,
                                          const tlens_collect_options *opt,
                                          tlens_error *err);
/* Queue one sequence of n tokens (1 <= n <= n_ctx); when batch x window
 * sequences are queued they run and are written out now. */
TLENS_API tlens_result tlens_collect_add(tlens_collector *c, const int32_t *tokens,
                                         int n, int32_t index, tlens_error *err);
/* Rows written so far (queued sequences not counted). */
TLENS_API size_t tlens_collect_rows(const tlens_collector *c);
/* The points being collected: count, and names in file order. */
TLENS_API int tlens_collect_count(const tlens_collector *c);
TLENS_API const char *tlens_collect_name(const tlens_collector *c, int i);
/* Run the queued sequences, finish every file and free the collector
 * (NULL is fine); the files are complete only when this returns TLENS_OK. */
TLENS_API tlens_result tlens_collect_close(tlens_collector *c, tlens_error *err);

/* ------------------------------------------------------------------------
 * 2.8 The interpretability toolkit
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
 * pattern: axis 1) a head number edits only that head; for an SAE's
 * hook_sae_acts_pre / hook_sae_acts_post (2.9) it picks one feature.
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
 * difference token - incorrect_token (incorrect_token >= 0): the stack is
 * centred and divided by ln_final's cached scale here, as TransformerLens
 * does, so pass a stack built with apply_ln 0. out [n, batch, pos]. */
TLENS_API tlens_result tlens_logit_attrs(const tlens_ctx *ctx,
                                         const tlens_stack *stack, int token,
                                         int incorrect_token, float *out,
                                         tlens_error *err);
TLENS_API void tlens_stack_free(tlens_stack *stack);

/* Head detection (TransformerLens' detect_head): score every head's
 * attention pattern on `tokens` (1 < n < n_ctx, as there) against a
 * previous-token, duplicate-token or induction pattern. scores:
 * [n_layers, n_heads]. It runs the model on the context, so the context's
 * last run (logits, cache) is this one afterwards. */
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

/* ------------------------------------------------------------------------
 * 2.9 Sparse autoencoders (SAELens format)
 *
 * An SAE folder as SAELens writes it: cfg.json and sae_weights.safetensors
 * holding W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in],
 * b_dec [d_in] and, for JumpReLU, threshold [d_sae] (F32, F16 or BF16;
 * tlens computes in float32 whatever cfg.json's dtype says). cfg.json's
 * keys of every SAELens version are read: architecture ("standard",
 * "topk", "jumprelu"; absent: standard), or the older activation_fn_str
 * "relu" / "topk" with activation_fn_kwargs {"k": K} (or "k"), d_in,
 * d_sae, hook_name (or hook_point; at the top or under "metadata"),
 * hook_head_index, apply_b_dec_to_input (absent: true),
 * normalize_activations, reshape_activations, finetuning_scaling_factor.
 *
 * Attached to a context, the SAE replaces the activation x of the hook
 * point its cfg.json names by its output, as SAELens' HookedSAETransformer
 * (add_sae) does. Per position, x [d_in]:
 *
 *   x'        = normalise(x)                       (see below)
 *   sae_in    = x' - b_dec  (or x' when not apply_b_dec_to_input)
 *   acts_pre  = sae_in @ W_enc + b_enc                         [d_sae]
 *   acts_post = ReLU(acts_pre)                                 standard
 *             = ReLU of the k largest acts_pre, 0 elsewhere    topk
 *             = ReLU(acts_pre) where acts_pre > threshold, else 0  jumprelu
 *   recons    = acts_post @ W_dec + b_dec                      [d_in]
 *   output    = unnormalise(recons)       (+ error, with the error term)
 *
 * When cfg.json's finetuning_scaling_factor is true, acts_post is
 * multiplied by the file's "scaling_factor" tensor [d_sae] before W_dec
 * (a factor of all ones is dropped, as SAELens does). With use_error_term,
 * error = x - the output computed from the same x with no hook editing the
 * SAE, and output = recons + error: the model's output is unchanged unless
 * a hook edits the SAE's input, features or reconstruction, and such edits
 * then take effect exactly (SAELens' use_error_term). Without it the model
 * runs on the reconstruction.
 *
 * The SAE's internals are hook points of their own, named as SAELens names
 * them and firing in this order, right after the host point's own hooks
 * and cache copy (the host keeps firing, with the SAE's input x; SAELens
 * replaces it):
 *   <hook_name>.hook_sae_input     [b, p, d_in]   x, before normalising
 *   <hook_name>.hook_sae_acts_pre  [b, p, d_sae]
 *   <hook_name>.hook_sae_acts_post [b, p, d_sae]  the features
 *   <hook_name>.hook_sae_recons    [b, p, d_in]   before unnormalising
 *   <hook_name>.hook_sae_error     (the host's shape; with the error term)
 *   <hook_name>.hook_sae_output    (the host's shape) what flows on
 * They take hooks, globs, the cache (tlens_cache_get by full name),
 * tlens_add_ablation and tlens_add_patch like any other point; for the
 * two acts points the `head` argument of those picks one feature.
 *
 * normalize_activations: "none"; "constant_norm_rescale": x times
 * sqrt(d_in) / |x|, the output divided by the same; "layer_norm": (x - mean)
 * / (std + 1e-5), the output times std plus mean (std with n - 1, as
 * torch.std); "expected_average_only_in": x times s, the output divided by
 * s, where s is the release's norm_scaling_factor (SAELens' from_pretrained
 * folds it into the weights, which is the same): give it in the load
 * options or as "norm_scaling_factor" in cfg.json; without one s = 1, as in
 * SAELens' load_from_disk.
 *
 * Shapes: an SAE on attn.hook_z with d_in = n_heads * d_head sees
 * [b, p, head, d_head] flattened to [b, p, d_in] (reshape_activations
 * "hook_z", or a hook_name ending in "_z" in older cfg.json files); with a
 * hook_head_index it sees only that head's [b, p, d_in] slice of a
 * per-head point (q, k, v, z, the *_input points) and leaves the others.
 *
 * Raw models: SAEs trained on TransformerLens' processed GPT-2 (the
 * default of from_pretrained, center_writing_weights) were trained on a
 * residual stream whose mean over d_model is zero at every position. A
 * model loaded raw (or without center_writing_weights) has the same
 * stream plus that mean, so the SAE would see other inputs. The attach
 * option `center` (TLENS_SAE_CENTER_AUTO, the default) subtracts each
 * position's mean over d_model before the SAE and adds it back to the
 * output when the model's writing weights are not centred and the point
 * is one of the residual stream's (hook_embed, hook_pos_embed,
 * hook_resid_pre / mid / post, hook_attn_out, hook_mlp_out): the SAE's
 * points then hold exactly what they hold on the processed model, and the
 * log-probabilities agree. TLENS_SAE_CENTER_ON / _OFF force it. (The
 * other way round cannot be repaired: an SAE whose cfg.json lists
 * model_from_pretrained_kwargs such as center_writing_weights: false was
 * trained on the raw stream and wants the model loaded that way.)
 *
 * An SAE is read-only once loaded: several contexts (and threads) may use
 * one; it must outlive them. With TLENS_NO_HOOKS attaching fails.
 * Memory: W_enc and W_dec as float32 (2 * d_in * d_sae * 4 bytes) and, per
 * context, about 2 * batch * pos * d_sae floats during a run.
 * ---------------------------------------------------------------------- */
typedef struct tlens_sae tlens_sae;

enum { TLENS_SAE_STANDARD = 0, TLENS_SAE_TOPK = 1, TLENS_SAE_JUMPRELU = 2 };
enum {
    TLENS_SAE_NORM_NONE = 0,
    TLENS_SAE_NORM_EXPECTED_AVERAGE_ONLY_IN = 1,
    TLENS_SAE_NORM_CONSTANT_NORM_RESCALE = 2,
    TLENS_SAE_NORM_LAYER_NORM = 3
};

/* What cfg.json says, as read. */
typedef struct tlens_sae_config {
    int architecture;            /* TLENS_SAE_STANDARD, _TOPK, _JUMPRELU   */
    int d_in, d_sae;
    int k;                       /* TopK: features kept per position       */
    char hook_name[128];         /* e.g. "blocks.7.hook_resid_pre"         */
    int hook_head_index;         /* -1: null                               */
    int apply_b_dec_to_input;
    int normalize_activations;   /* TLENS_SAE_NORM_*                       */
    float norm_scaling_factor;   /* expected_average_only_in's s (1: none) */
    int reshape_hook_z;          /* [.., head, d_head] seen as [.., d_in]  */
    int finetuning_scaling;      /* acts are scaled before W_dec           */
    tlens_dtype dtype;           /* W_enc's element type in the file       */
} tlens_sae_config;

/* Zero-initialised (or NULL) means defaults. */
typedef struct tlens_sae_load_options {
    float norm_scaling_factor;   /* > 0: expected_average_only_in's s,
                                    overriding cfg.json                    */
    tlens_allocator allocator;
} tlens_sae_load_options;

/* Load folder `dir` (cfg.json + sae_weights.safetensors). Both files are
 * read into memory first. Not with TLENS_NO_STDIO. */
TLENS_API tlens_result tlens_sae_load(tlens_sae **out, const char *dir,
                                      const tlens_sae_load_options *opt,
                                      tlens_error *err);
/* The same from the two files' contents in memory (cfg_json need not be
 * NUL-terminated); nothing is kept pointing into them. */
TLENS_API tlens_result tlens_sae_load_memory(tlens_sae **out,
                                             const char *cfg_json, size_t cfg_len,
                                             const void *weights, size_t weights_len,
                                             const tlens_sae_load_options *opt,
                                             tlens_error *err);
TLENS_API void tlens_sae_free(tlens_sae *sae);
TLENS_API const tlens_sae_config *tlens_sae_get_config(const tlens_sae *sae);

enum { TLENS_SAE_CENTER_AUTO = 0, TLENS_SAE_CENTER_ON = 1, TLENS_SAE_CENTER_OFF = 2 };
/* Zero-initialised (or NULL): no error term (SAELens' default), AUTO. */
typedef struct tlens_sae_attach_options {
    int use_error_term;
    int center;                  /* TLENS_SAE_CENTER_*                     */
} tlens_sae_attach_options;

/* Splice `sae` into ctx at its hook_name (replacing an SAE already
 * there). TLENS_ERR_NOT_FOUND when the model has no such point,
 * TLENS_ERR_SHAPE when its activation is not d_in wide. An SAE on an
 * optional point runs while the optional points are on. */
TLENS_API tlens_result tlens_sae_attach(tlens_ctx *ctx, const tlens_sae *sae,
                                        const tlens_sae_attach_options *opt,
                                        tlens_error *err);
/* Remove the SAE at hook point `hook_name` (NULL: every SAE), its hook
 * points and their cached values; TLENS_ERR_NOT_FOUND when there is none.
 * Hooks added on its points stay (they match nothing until re-attached). */
TLENS_API tlens_result tlens_sae_detach(tlens_ctx *ctx, const char *hook_name);

/* ------------------------------------------------------------------------
 * 2.10 Steering and interventions
 *
 * Edits made by hooks the context owns (remove one with tlens_remove_hook,
 * all with tlens_reset_hooks), like tlens_add_ablation's.
 *
 * Positions are positions in the token sequence: 0 is the first token (a
 * padding token too), and a run that continues the key/value cache starts
 * at the number of cached tokens. So an edit at position 7 is made to the
 * 8th token whether it came with the prompt or was generated, and
 * tlens_generate with the cache edits exactly what a run of the whole
 * sequence would. Positions a run does not reach are left alone. For
 * attn_scores and pattern the positions are the query positions.
 * ---------------------------------------------------------------------- */

/* The last dimension of hook point `name`: d_model for the residual
 * stream, d_head for q, k, v and z, d_mlp for mlp.hook_pre / hook_post, 1
 * for the LayerNorm scales; 0 when there is no such point or its last
 * dimension changes with the run (hook_tokens, attn_scores, pattern). */
TLENS_API int tlens_hook_last_dim(const tlens_ctx *ctx, const char *name);

/* Steering: add coef * vec along the last axis of every hook point that
 * `pattern` (an exact name or a glob) names, at every position (positions
 * NULL or n_positions 0) or at the n_positions listed; for head-indexed
 * points, to every head. n must equal the points' last dimension. The
 * vector is copied. Returns a hook handle > 0, or 0 with err filled
 * (TLENS_ERR_SHAPE: a length mismatch; TLENS_ERR_NOT_FOUND: no point
 * matches). Typical: "blocks.6.hook_resid_pre" with a steering vector. */
TLENS_API int tlens_add_steering(tlens_ctx *ctx, const char *pattern,
                                 const float *vec, int n, float coef,
                                 const int *positions, int n_positions,
                                 tlens_error *err);

/* A steering vector from contrasting prompts: the mean of a hook point's
 * activation over the positive prompts minus its mean over the negative
 * ones (activation addition, contrastive activation addition). Each
 * prompt gives one activation vector:
 *   default       the mean over the prompt's positions, leaving out
 *                 position 0 when it holds BOS (50256): BOS's activation
 *                 is the same in every prompt and, in GPT-2, far larger
 *                 than the others, so it would only add noise;
 *   last_token    the activation at the prompt's last token (CAA);
 *   include_bos   the mean keeps position 0 all the same.
 * With pca the result is instead the first principal component of the
 * per-pair differences positive[i] - negative[i] (pairs by index, so
 * n_pos == n_neg >= 2; the differences are centred, as PCA does; power
 * iteration from a fixed start, so the same prompts give the same
 * vector): a unit vector whose sign makes its dot product with the mean
 * difference non-negative. */
typedef struct tlens_steer_options {
    int last_token;
    int include_bos;
    int pca;
} tlens_steer_options;

/* Prompts are concatenated: pos_tokens holds n_pos prompts, prompt i of
 * pos_lens[i] tokens (BOS included when wanted: tlens_encode with
 * prepend_bos, as tlens run does). `name` is an exact hook point of shape
 * [batch, pos, d] (the residual stream, attn_out, mlp_out, mlp.hook_post,
 * ...); out receives n floats, n its last dimension. Each prompt is one
 * run of the context (its hooks stay in place, so activations can be taken
 * under other interventions); the last run's logits and cache are those of
 * the last prompt, and the run stops after the point's block. */
TLENS_API tlens_result tlens_steering_vector(tlens_ctx *ctx, const char *name,
                                             const int32_t *pos_tokens,
                                             const int *pos_lens, int n_pos,
                                             const int32_t *neg_tokens,
                                             const int *neg_lens, int n_neg,
                                             const tlens_steer_options *opt,
                                             float *out, int n,
                                             tlens_error *err);

/* Intervention files: one JSON file describing a whole experiment's edits,
 * an array of objects applied in the file's order (hooks on one point run
 * in the order added, so two entries on one point compose in file order):
 *
 *   [
 *     {"hook": "blocks.3.attn.hook_z", "head": 5, "op": "zero"},
 *     {"hook": "blocks.*.hook_resid_pre", "positions": [0, 1], "op": "scale",
 *      "factor": 0.5},
 *     {"hook": "blocks.6.hook_resid_pre", "op": "add", "file": "love.npy",
 *      "coef": 4},
 *     {"hook": "blocks.2.hook_resid_post", "op": "project_out",
 *      "direction": [0.1, -0.3, ...]},
 *     {"hook": "blocks.1.hook_mlp_out", "op": "replace", "file": "clean.npy"}
 *   ]
 *
 * Keys of every entry:
 *   "hook"       required; an exact hook point name or a glob ('*', '?')
 *                that must match at least one point
 *   "op"         required; one of the operations below
 *   "head"       optional integer: only this head (the point must have a
 *                head axis: q, k, v, z, result, attn_scores, pattern, the
 *                per-head inputs); default every head
 *   "positions"  optional non-empty list of integers >= 0: only these
 *                positions (see the top of 2.10); default every position
 * The operations and their own keys ("file" is a .npy path, relative to
 * the intervention file's folder; 1-D for a vector):
 *   "zero"         set to 0
 *   "mean"         set each value to its mean over the batch and every
 *                  position of the run (as TLENS_ABLATE_MEAN; during
 *                  cached generation a run is one token, so it changes
 *                  nothing then)
 *   "scale"        multiply by "factor" (a number, required)
 *   "add"          add "coef" (a number, default 1) times a vector along the
 *                  last axis: "vector" (a list of numbers) or "file"
 *   "project_out"  remove the component along a direction of the last
 *                  axis: x -= (x . u) u, u = direction / |direction|;
 *                  "direction" (a list of numbers) or "file"
 *   "replace"      take the values from "file", an array shaped like the
 *                  point's activation over the whole sequence ([batch, pos,
 *                  ...]): position p takes the file's position p, so it
 *                  must cover every position edited
 * Parsing is strict: unknown keys or operations, keys that do not belong to
 * the operation, repeated keys, wrong types, missing keys and files fail,
 * as do (when the entries are added to a context) hooks that match nothing,
 * heads and shapes that do not fit; the message names the file, the entry
 * (counted from 0) and the key: "exp.json: entry 2: \"factor\" must be a
 * number". Parsing reads every file once: the same file always gives the
 * same edits. */
typedef struct tlens_interventions tlens_interventions;

/* Parse the JSON text json[0..len). `what` names it in messages (NULL:
 * "interventions"); relative "file" paths are taken from folder `dir`
 * (NULL: as written). With TLENS_NO_STDIO entries with "file" fail.
 * `alloc` may be NULL. */
TLENS_API tlens_result tlens_interventions_parse(tlens_interventions **out,
                                                 const char *json, size_t len,
                                                 const char *what,
                                                 const char *dir,
                                                 const tlens_allocator *alloc,
                                                 tlens_error *err);
/* Read and parse a file (not with TLENS_NO_STDIO). */
TLENS_API tlens_result tlens_interventions_load(tlens_interventions **out,
                                                const char *path,
                                                const tlens_allocator *alloc,
                                                tlens_error *err);
TLENS_API int tlens_interventions_count(const tlens_interventions *iv);
/* Add every entry to the context as a hook, in order (the data is copied:
 * iv may be freed afterwards). handles (NULL, or room for
 * tlens_interventions_count) receives each entry's hook handle. On failure
 * none of the entries stays added. */
TLENS_API tlens_result tlens_add_interventions(tlens_ctx *ctx,
                                               const tlens_interventions *iv,
                                               int *handles, tlens_error *err);
TLENS_API void tlens_interventions_free(tlens_interventions *iv);

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
#if defined(__GNUC__) || defined(__clang__)
#define TLENS_DEF static __attribute__((unused)) /* a program uses a part */
#else
#define TLENS_DEF static
#endif
#else
#define TLENS_DEF
#endif

/* Helpers only the file loaders call: unused without stdio. */
#if defined(TLENS_NO_STDIO) && (defined(__GNUC__) || defined(__clang__))
#define TLENS__NOSTDIO_UNUSED __attribute__((unused))
#else
#define TLENS__NOSTDIO_UNUSED
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
    if ((unsigned)r >= (unsigned)TLENS_RESULT_COUNT) return "unknown result code";
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
TLENS__NOSTDIO_UNUSED static void tlens__decode_floats(float *dst, const unsigned char *src, size_t n, tlens_dtype dt) {
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

/* tok_impl.h - implementation of tlens' GPT-2 tokenizer (to be spliced into
 * the implementation part of tlens.h, after 3.2; it uses tlens__fail,
 * tlens__vformat, tlens__alloc, tlens__read_file, tlens__join ...). */

/* ------------------------------------------------------------------------
 * 3.3 The tokenizer: GPT-2's byte-level BPE
 *
 * How GPT-2 turns text into token ids, in four steps:
 *
 * 1. Special tokens. Each "<|endoftext|>" in the text becomes its id
 *    (50256); the stretches of text between are tokenized on their own.
 *
 * 2. Pre-tokenizing. A stretch of text is cut into pre-tokens, left to
 *    right, by the regular expression
 *        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *    where at each position the first alternative that matches wins:
 *    an English contraction; a run of letters, of numbers or of other
 *    characters (punctuation, symbols, marks), each of which may take one
 *    plain space in front; or white space. "\s+(?!\S)" stops a run of
 *    white space before its last character when a non-space follows, so
 *    that the last space goes with the next word: "a   b" is "a", "  ",
 *    " b". No regex engine is needed: tlens__tok_piece_end does this by
 *    hand, with the character classes of Unicode 16.0 (the version
 *    tiktoken's Rust regex engine has) generated by tools/gen_unicode.py.
 *    A byte that is not part of well-formed UTF-8 is a pre-token of its
 *    own (and so becomes its byte's token).
 *
 * 3. Byte-pair encoding (BPE), on each pre-token by itself. Start from its
 *    bytes, one token each; then again and again merge the two adjacent
 *    tokens whose concatenation is the token of lowest rank (the earliest
 *    line of merges.txt), the leftmost pair when ranks tie, until no
 *    adjacent pair concatenates to a token. As in tiktoken, any two
 *    adjacent tokens whose bytes together form a merged token merge, not
 *    only the pair that merges.txt names ("Ġt he" makes "Ġthe", but "Ġ"
 *    next to "the" merges into it as well), so the pair table below holds
 *    every split of every token into two tokens. Also as in tiktoken, a
 *    pre-token that is itself a token is that token at once.
 *
 * 4. Ids. vocab.json gives each token (a byte string) its id. Decoding is
 *    concatenating the byte strings of the ids.
 *
 * The files write bytes as characters (GPT-2's byte alphabet, see
 * tlens__tok_byte_of_char), because a token may be any byte string, half
 * of a UTF-8 character included.
 * ---------------------------------------------------------------------- */

/* BEGIN tables generated by tools/gen_unicode.py; do not edit */
/* Unicode 16.0. Classes: 0 other, 1 letter (\p{L}), 2 number (\p{N}),
 * 3 space (\s, the White_Space property). */
enum { TLENS__TOK_OTHER = 0, TLENS__TOK_LETTER = 1, TLENS__TOK_NUMBER = 2, TLENS__TOK_SPACE = 3 };

static const unsigned char tlens__tok_ascii_class[128] = {
    0,0,0,0,0,0,0,0,0,3,3,3,3,3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,
    3,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,2,2,2,2,2,2,2,2,2,2,0,0,0,0,0,0,
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,
    0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,
};

/* Runs of one class covering 0..0x10FFFF: (first code point << 2) | class,
 * ascending; a run ends where the next begins. */
#define TLENS__TOK_CLASS_RUNS 1610
static const uint32_t tlens__tok_class_runs[TLENS__TOK_CLASS_RUNS] = {
    0x0, 0x27, 0x38, 0x83, 0x84, 0xc2, 0xe8, 0x105,
    0x16c, 0x185, 0x1ec, 0x217, 0x218, 0x283, 0x284, 0x2a9,
    0x2ac, 0x2ca, 0x2d0, 0x2d5, 0x2d8, 0x2e6, 0x2e9, 0x2ec,
    0x2f2, 0x2fc, 0x301, 0x35c, 0x361, 0x3dc, 0x3e1, 0xb08,
    0xb19, 0xb48, 0xb81, 0xb94, 0xbb1, 0xbb4, 0xbb9, 0xbbc,
    0xdc1, 0xdd4, 0xdd9, 0xde0, 0xde9, 0xdf8, 0xdfd, 0xe00,
    0xe19, 0xe1c, 0xe21, 0xe2c, 0xe31, 0xe34, 0xe39, 0xe88,
    0xe8d, 0xfd8, 0xfdd, 0x1208, 0x1229, 0x14c0, 0x14c5, 0x155c,
    0x1565, 0x1568, 0x1581, 0x1624, 0x1741, 0x17ac, 0x17bd, 0x17cc,
    0x1881, 0x192c, 0x1982, 0x19a8, 0x19b9, 0x19c0, 0x19c5, 0x1b50,
    0x1b55, 0x1b58, 0x1b95, 0x1b9c, 0x1bb9, 0x1bc2, 0x1be9, 0x1bf4,
    0x1bfd, 0x1c00, 0x1c41, 0x1c44, 0x1c49, 0x1cc0, 0x1d35, 0x1e98,
    0x1ec5, 0x1ec8, 0x1f02, 0x1f29, 0x1fac, 0x1fd1, 0x1fd8, 0x1fe9,
    0x1fec, 0x2001, 0x2058, 0x2069, 0x206c, 0x2091, 0x2094, 0x20a1,
    0x20a4, 0x2101, 0x2164, 0x2181, 0x21ac, 0x21c1, 0x2220, 0x2225,
    0x223c, 0x2281, 0x2328, 0x2411, 0x24e8, 0x24f5, 0x24f8, 0x2541,
    0x2544, 0x2561, 0x2588, 0x259a, 0x25c0, 0x25c5, 0x2604, 0x2615,
    0x2634, 0x263d, 0x2644, 0x264d, 0x26a4, 0x26a9, 0x26c4, 0x26c9,
    0x26cc, 0x26d9, 0x26e8, 0x26f5, 0x26f8, 0x2739, 0x273c, 0x2771,
    0x2778, 0x277d, 0x2788, 0x279a, 0x27c1, 0x27c8, 0x27d2, 0x27e8,
    0x27f1, 0x27f4, 0x2815, 0x282c, 0x283d, 0x2844, 0x284d, 0x28a4,
    0x28a9, 0x28c4, 0x28c9, 0x28d0, 0x28d5, 0x28dc, 0x28e1, 0x28e8,
    0x2965, 0x2974, 0x2979, 0x297c, 0x299a, 0x29c0, 0x29c9, 0x29d4,
    0x2a15, 0x2a38, 0x2a3d, 0x2a48, 0x2a4d, 0x2aa4, 0x2aa9, 0x2ac4,
    0x2ac9, 0x2ad0, 0x2ad5, 0x2ae8, 0x2af5, 0x2af8, 0x2b41, 0x2b44,
    0x2b81, 0x2b88, 0x2b9a, 0x2bc0, 0x2be5, 0x2be8, 0x2c15, 0x2c34,
    0x2c3d, 0x2c44, 0x2c4d, 0x2ca4, 0x2ca9, 0x2cc4, 0x2cc9, 0x2cd0,
    0x2cd5, 0x2ce8, 0x2cf5, 0x2cf8, 0x2d71, 0x2d78, 0x2d7d, 0x2d88,
    0x2d9a, 0x2dc0, 0x2dc5, 0x2dca, 0x2de0, 0x2e0d, 0x2e10, 0x2e15,
    0x2e2c, 0x2e39, 0x2e44, 0x2e49, 0x2e58, 0x2e65, 0x2e6c, 0x2e71,
    0x2e74, 0x2e79, 0x2e80, 0x2e8d, 0x2e94, 0x2ea1, 0x2eac, 0x2eb9,
    0x2ee8, 0x2f41, 0x2f44, 0x2f9a, 0x2fcc, 0x3015, 0x3034, 0x3039,
    0x3044, 0x3049, 0x30a4, 0x30a9, 0x30e8, 0x30f5, 0x30f8, 0x3161,
    0x316c, 0x3175, 0x3178, 0x3181, 0x3188, 0x319a, 0x31c0, 0x31e2,
    0x31fc, 0x3201, 0x3204, 0x3215, 0x3234, 0x3239, 0x3244, 0x3249,
    0x32a4, 0x32a9, 0x32d0, 0x32d5, 0x32e8, 0x32f5, 0x32f8, 0x3375,
    0x337c, 0x3381, 0x3388, 0x339a, 0x33c0, 0x33c5, 0x33cc, 0x3411,
    0x3434, 0x3439, 0x3444, 0x3449, 0x34ec, 0x34f5, 0x34f8, 0x3539,
    0x353c, 0x3551, 0x355c, 0x3562, 0x357d, 0x3588, 0x359a, 0x35e4,
    0x35e9, 0x3600, 0x3615, 0x365c, 0x3669, 0x36c8, 0x36cd, 0x36f0,
    0x36f5, 0x36f8, 0x3701, 0x371c, 0x379a, 0x37c0, 0x3805, 0x38c4,
    0x38c9, 0x38d0, 0x3901, 0x391c, 0x3942, 0x3968, 0x3a05, 0x3a0c,
    0x3a11, 0x3a14, 0x3a19, 0x3a2c, 0x3a31, 0x3a90, 0x3a95, 0x3a98,
    0x3a9d, 0x3ac4, 0x3ac9, 0x3ad0, 0x3af5, 0x3af8, 0x3b01, 0x3b14,
    0x3b19, 0x3b1c, 0x3b42, 0x3b68, 0x3b71, 0x3b80, 0x3c01, 0x3c04,
    0x3c82, 0x3cd0, 0x3d01, 0x3d20, 0x3d25, 0x3db4, 0x3e21, 0x3e34,
    0x4001, 0x40ac, 0x40fd, 0x4102, 0x4128, 0x4141, 0x4158, 0x4169,
    0x4178, 0x4185, 0x4188, 0x4195, 0x419c, 0x41b9, 0x41c4, 0x41d5,
    0x4208, 0x4239, 0x423c, 0x4242, 0x4268, 0x4281, 0x4318, 0x431d,
    0x4320, 0x4335, 0x4338, 0x4341, 0x43ec, 0x43f1, 0x4924, 0x4929,
    0x4938, 0x4941, 0x495c, 0x4961, 0x4964, 0x4969, 0x4978, 0x4981,
    0x4a24, 0x4a29, 0x4a38, 0x4a41, 0x4ac4, 0x4ac9, 0x4ad8, 0x4ae1,
    0x4afc, 0x4b01, 0x4b04, 0x4b09, 0x4b18, 0x4b21, 0x4b5c, 0x4b61,
    0x4c44, 0x4c49, 0x4c58, 0x4c61, 0x4d6c, 0x4da6, 0x4df4, 0x4e01,
    0x4e40, 0x4e81, 0x4fd8, 0x4fe1, 0x4ff8, 0x5005, 0x59b4, 0x59bd,
    0x5a03, 0x5a05, 0x5a6c, 0x5a81, 0x5bac, 0x5bba, 0x5bc5, 0x5be4,
    0x5c01, 0x5c48, 0x5c7d, 0x5cc8, 0x5d01, 0x5d48, 0x5d81, 0x5db4,
    0x5db9, 0x5dc4, 0x5e01, 0x5ed0, 0x5f5d, 0x5f60, 0x5f71, 0x5f74,
    0x5f82, 0x5fa8, 0x5fc2, 0x5fe8, 0x6042, 0x6068, 0x6081, 0x61e4,
    0x6201, 0x6214, 0x621d, 0x62a4, 0x62a9, 0x62ac, 0x62c1, 0x63d8,
    0x6401, 0x647c, 0x651a, 0x6541, 0x65b8, 0x65c1, 0x65d4, 0x6601,
    0x66b0, 0x66c1, 0x6728, 0x6742, 0x676c, 0x6801, 0x685c, 0x6881,
    0x6954, 0x6a02, 0x6a28, 0x6a42, 0x6a68, 0x6a9d, 0x6aa0, 0x6c15,
    0x6cd0, 0x6d15, 0x6d34, 0x6d42, 0x6d68, 0x6e0d, 0x6e84, 0x6eb9,
    0x6ec2, 0x6ee9, 0x6f98, 0x7001, 0x7090, 0x7102, 0x7128, 0x7135,
    0x7142, 0x7169, 0x71f8, 0x7201, 0x722c, 0x7241, 0x72ec, 0x72f5,
    0x7300, 0x73a5, 0x73b4, 0x73b9, 0x73d0, 0x73d5, 0x73dc, 0x73e9,
    0x73ec, 0x7401, 0x7700, 0x7801, 0x7c58, 0x7c61, 0x7c78, 0x7c81,
    0x7d18, 0x7d21, 0x7d38, 0x7d41, 0x7d60, 0x7d65, 0x7d68, 0x7d6d,
    0x7d70, 0x7d75, 0x7d78, 0x7d7d, 0x7df8, 0x7e01, 0x7ed4, 0x7ed9,
    0x7ef4, 0x7ef9, 0x7efc, 0x7f09, 0x7f14, 0x7f19, 0x7f34, 0x7f41,
    0x7f50, 0x7f59, 0x7f70, 0x7f81, 0x7fb4, 0x7fc9, 0x7fd4, 0x7fd9,
    0x7ff4, 0x8003, 0x802c, 0x80a3, 0x80a8, 0x80bf, 0x80c0, 0x817f,
    0x8180, 0x81c2, 0x81c5, 0x81c8, 0x81d2, 0x81e8, 0x81fd, 0x8202,
    0x8228, 0x8241, 0x8274, 0x8409, 0x840c, 0x841d, 0x8420, 0x8429,
    0x8450, 0x8455, 0x8458, 0x8465, 0x8478, 0x8491, 0x8494, 0x8499,
    0x849c, 0x84a1, 0x84a4, 0x84a9, 0x84b8, 0x84bd, 0x84e8, 0x84f1,
    0x8500, 0x8515, 0x8528, 0x8539, 0x853c, 0x8542, 0x860d, 0x8616,
    0x8628, 0x9182, 0x9270, 0x93aa, 0x9400, 0x9dda, 0x9e50, 0xb001,
    0xb394, 0xb3ad, 0xb3bc, 0xb3c9, 0xb3d0, 0xb3f6, 0xb3f8, 0xb401,
    0xb498, 0xb49d, 0xb4a0, 0xb4b5, 0xb4b8, 0xb4c1, 0xb5a0, 0xb5bd,
    0xb5c0, 0xb601, 0xb65c, 0xb681, 0xb69c, 0xb6a1, 0xb6bc, 0xb6c1,
    0xb6dc, 0xb6e1, 0xb6fc, 0xb701, 0xb71c, 0xb721, 0xb73c, 0xb741,
    0xb75c, 0xb761, 0xb77c, 0xb8bd, 0xb8c0, 0xc003, 0xc004, 0xc015,
    0xc01e, 0xc020, 0xc086, 0xc0a8, 0xc0c5, 0xc0d8, 0xc0e2, 0xc0ed,
    0xc0f4, 0xc105, 0xc25c, 0xc275, 0xc280, 0xc285, 0xc3ec, 0xc3f1,
    0xc400, 0xc415, 0xc4c0, 0xc4c5, 0xc63c, 0xc64a, 0xc658, 0xc681,
    0xc700, 0xc7c1, 0xc800, 0xc882, 0xc8a8, 0xc922, 0xc940, 0xc946,
    0xc980, 0xca02, 0xca28, 0xcac6, 0xcb00, 0xd001, 0x13700, 0x13801,
    0x29234, 0x29341, 0x293f8, 0x29401, 0x29834, 0x29841, 0x29882, 0x298a9,
    0x298b0, 0x29901, 0x299bc, 0x299fd, 0x29a78, 0x29a81, 0x29b9a, 0x29bc0,
    0x29c5d, 0x29c80, 0x29c89, 0x29e24, 0x29e2d, 0x29f38, 0x29f41, 0x29f48,
    0x29f4d, 0x29f50, 0x29f55, 0x29f74, 0x29fc9, 0x2a008, 0x2a00d, 0x2a018,
    0x2a01d, 0x2a02c, 0x2a031, 0x2a08c, 0x2a0c2, 0x2a0d8, 0x2a101, 0x2a1d0,
    0x2a209, 0x2a2d0, 0x2a342, 0x2a368, 0x2a3c9, 0x2a3e0, 0x2a3ed, 0x2a3f0,
    0x2a3f5, 0x2a3fc, 0x2a402, 0x2a429, 0x2a498, 0x2a4c1, 0x2a51c, 0x2a581,
    0x2a5f4, 0x2a611, 0x2a6cc, 0x2a73d, 0x2a742, 0x2a768, 0x2a781, 0x2a794,
    0x2a799, 0x2a7c2, 0x2a7e9, 0x2a7fc, 0x2a801, 0x2a8a4, 0x2a901, 0x2a90c,
    0x2a911, 0x2a930, 0x2a942, 0x2a968, 0x2a981, 0x2a9dc, 0x2a9e9, 0x2a9ec,
    0x2a9f9, 0x2aac0, 0x2aac5, 0x2aac8, 0x2aad5, 0x2aadc, 0x2aae5, 0x2aaf8,
    0x2ab01, 0x2ab04, 0x2ab09, 0x2ab0c, 0x2ab6d, 0x2ab78, 0x2ab81, 0x2abac,
    0x2abc9, 0x2abd4, 0x2ac05, 0x2ac1c, 0x2ac25, 0x2ac3c, 0x2ac45, 0x2ac5c,
    0x2ac81, 0x2ac9c, 0x2aca1, 0x2acbc, 0x2acc1, 0x2ad6c, 0x2ad71, 0x2ada8,
    0x2adc1, 0x2af8c, 0x2afc2, 0x2afe8, 0x2b001, 0x35e90, 0x35ec1, 0x35f1c,
    0x35f2d, 0x35ff0, 0x3e401, 0x3e9b8, 0x3e9c1, 0x3eb68, 0x3ec01, 0x3ec1c,
    0x3ec4d, 0x3ec60, 0x3ec75, 0x3ec78, 0x3ec7d, 0x3eca4, 0x3eca9, 0x3ecdc,
    0x3ece1, 0x3ecf4, 0x3ecf9, 0x3ecfc, 0x3ed01, 0x3ed08, 0x3ed0d, 0x3ed14,
    0x3ed19, 0x3eec8, 0x3ef4d, 0x3f4f8, 0x3f541, 0x3f640, 0x3f649, 0x3f720,
    0x3f7c1, 0x3f7f0, 0x3f9c1, 0x3f9d4, 0x3f9d9, 0x3fbf4, 0x3fc42, 0x3fc68,
    0x3fc85, 0x3fcec, 0x3fd05, 0x3fd6c, 0x3fd99, 0x3fefc, 0x3ff09, 0x3ff20,
    0x3ff29, 0x3ff40, 0x3ff49, 0x3ff60, 0x3ff69, 0x3ff74, 0x40001, 0x40030,
    0x40035, 0x4009c, 0x400a1, 0x400ec, 0x400f1, 0x400f8, 0x400fd, 0x40138,
    0x40141, 0x40178, 0x40201, 0x403ec, 0x4041e, 0x404d0, 0x40502, 0x405e4,
    0x4062a, 0x40630, 0x40a01, 0x40a74, 0x40a81, 0x40b44, 0x40b86, 0x40bf0,
    0x40c01, 0x40c82, 0x40c90, 0x40cb5, 0x40d06, 0x40d09, 0x40d2a, 0x40d2c,
    0x40d41, 0x40dd8, 0x40e01, 0x40e78, 0x40e81, 0x40f10, 0x40f21, 0x40f40,
    0x40f46, 0x40f58, 0x41001, 0x41278, 0x41282, 0x412a8, 0x412c1, 0x41350,
    0x41361, 0x413f0, 0x41401, 0x414a0, 0x414c1, 0x41590, 0x415c1, 0x415ec,
    0x415f1, 0x4162c, 0x41631, 0x4164c, 0x41651, 0x41658, 0x4165d, 0x41688,
    0x4168d, 0x416c8, 0x416cd, 0x416e8, 0x416ed, 0x416f4, 0x41701, 0x417d0,
    0x41801, 0x41cdc, 0x41d01, 0x41d58, 0x41d81, 0x41da0, 0x41e01, 0x41e18,
    0x41e1d, 0x41ec4, 0x41ec9, 0x41eec, 0x42001, 0x42018, 0x42021, 0x42024,
    0x42029, 0x420d8, 0x420dd, 0x420e4, 0x420f1, 0x420f4, 0x420fd, 0x42158,
    0x42162, 0x42181, 0x421dc, 0x421e6, 0x42201, 0x4227c, 0x4229e, 0x422c0,
    0x42381, 0x423cc, 0x423d1, 0x423d8, 0x423ee, 0x42401, 0x4245a, 0x42470,
    0x42481, 0x424e8, 0x42601, 0x426e0, 0x426f2, 0x426f9, 0x42702, 0x42740,
    0x4274a, 0x42801, 0x42804, 0x42841, 0x42850, 0x42855, 0x42860, 0x42865,
    0x428d8, 0x42902, 0x42924, 0x42981, 0x429f6, 0x429fc, 0x42a01, 0x42a76,
    0x42a80, 0x42b01, 0x42b20, 0x42b25, 0x42b94, 0x42bae, 0x42bc0, 0x42c01,
    0x42cd8, 0x42d01, 0x42d58, 0x42d62, 0x42d81, 0x42dcc, 0x42de2, 0x42e01,
    0x42e48, 0x42ea6, 0x42ec0, 0x43001, 0x43124, 0x43201, 0x432cc, 0x43301,
    0x433cc, 0x433ea, 0x43401, 0x43490, 0x434c2, 0x434e8, 0x43502, 0x43529,
    0x43598, 0x435bd, 0x43618, 0x43982, 0x439fc, 0x43a01, 0x43aa8, 0x43ac1,
    0x43ac8, 0x43b09, 0x43b14, 0x43c01, 0x43c76, 0x43c9d, 0x43ca0, 0x43cc1,
    0x43d18, 0x43d46, 0x43d54, 0x43dc1, 0x43e08, 0x43ec1, 0x43f16, 0x43f30,
    0x43f81, 0x43fdc, 0x4400d, 0x440e0, 0x4414a, 0x441c0, 0x441c5, 0x441cc,
    0x441d5, 0x441d8, 0x4420d, 0x442c0, 0x44341, 0x443a4, 0x443c2, 0x443e8,
    0x4440d, 0x4449c, 0x444da, 0x44500, 0x44511, 0x44514, 0x4451d, 0x44520,
    0x44541, 0x445cc, 0x445d9, 0x445dc, 0x4460d, 0x446cc, 0x44705, 0x44714,
    0x44742, 0x44769, 0x4476c, 0x44771, 0x44774, 0x44786, 0x447d4, 0x44801,
    0x44848, 0x4484d, 0x448b0, 0x448fd, 0x44904, 0x44a01, 0x44a1c, 0x44a21,
    0x44a24, 0x44a29, 0x44a38, 0x44a3d, 0x44a78, 0x44a7d, 0x44aa4, 0x44ac1,
    0x44b7c, 0x44bc2, 0x44be8, 0x44c15, 0x44c34, 0x44c3d, 0x44c44, 0x44c4d,
    0x44ca4, 0x44ca9, 0x44cc4, 0x44cc9, 0x44cd0, 0x44cd5, 0x44ce8, 0x44cf5,
    0x44cf8, 0x44d41, 0x44d44, 0x44d75, 0x44d88, 0x44e01, 0x44e28, 0x44e2d,
    0x44e30, 0x44e39, 0x44e3c, 0x44e41, 0x44ed8, 0x44edd, 0x44ee0, 0x44f45,
    0x44f48, 0x44f4d, 0x44f50, 0x45001, 0x450d4, 0x4511d, 0x4512c, 0x45142,
    0x45168, 0x4517d, 0x45188, 0x45201, 0x452c0, 0x45311, 0x45318, 0x4531d,
    0x45320, 0x45342, 0x45368, 0x45601, 0x456bc, 0x45761, 0x45770, 0x45801,
    0x458c0, 0x45911, 0x45914, 0x45942, 0x45968, 0x45a01, 0x45aac, 0x45ae1,
    0x45ae4, 0x45b02, 0x45b28, 0x45b42, 0x45b90, 0x45c01, 0x45c6c, 0x45cc2,
    0x45cf0, 0x45d01, 0x45d1c, 0x46001, 0x460b0, 0x46281, 0x46382, 0x463cc,
    0x463fd, 0x4641c, 0x46425, 0x46428, 0x46431, 0x46450, 0x46455, 0x4645c,
    0x46461, 0x464c0, 0x464fd, 0x46500, 0x46505, 0x46508, 0x46542, 0x46568,
    0x46681, 0x466a0, 0x466a9, 0x46744, 0x46785, 0x46788, 0x4678d, 0x46790,
    0x46801, 0x46804, 0x4682d, 0x468cc, 0x468e9, 0x468ec, 0x46941, 0x46944,
    0x46971, 0x46a28, 0x46a75, 0x46a78, 0x46ac1, 0x46be4, 0x46f01, 0x46f84,
    0x46fc2, 0x46fe8, 0x47001, 0x47024, 0x47029, 0x470bc, 0x47101, 0x47104,
    0x47142, 0x471b4, 0x471c9, 0x47240, 0x47401, 0x4741c, 0x47421, 0x47428,
    0x4742d, 0x474c4, 0x47519, 0x4751c, 0x47542, 0x47568, 0x47581, 0x47598,
    0x4759d, 0x475a4, 0x475a9, 0x47628, 0x47661, 0x47664, 0x47682, 0x476a8,
    0x47b81, 0x47bcc, 0x47c09, 0x47c0c, 0x47c11, 0x47c44, 0x47c49, 0x47cd0,
    0x47d42, 0x47d68, 0x47ec1, 0x47ec4, 0x47f02, 0x47f54, 0x48001, 0x48e68,
    0x49002, 0x491bc, 0x49201, 0x49510, 0x4be41, 0x4bfc4, 0x4c001, 0x4d0c0,
    0x4d105, 0x4d11c, 0x4d181, 0x50fec, 0x51001, 0x5191c, 0x58401, 0x58478,
    0x584c2, 0x584e8, 0x5a001, 0x5a8e4, 0x5a901, 0x5a97c, 0x5a982, 0x5a9a8,
    0x5a9c1, 0x5aafc, 0x5ab02, 0x5ab28, 0x5ab41, 0x5abb8, 0x5ac01, 0x5acc0,
    0x5ad01, 0x5ad10, 0x5ad42, 0x5ad68, 0x5ad6e, 0x5ad88, 0x5ad8d, 0x5ade0,
    0x5adf5, 0x5ae40, 0x5b501, 0x5b5b4, 0x5b5c2, 0x5b5e8, 0x5b901, 0x5ba02,
    0x5ba5c, 0x5bc01, 0x5bd2c, 0x5bd41, 0x5bd44, 0x5be4d, 0x5be80, 0x5bf81,
    0x5bf88, 0x5bf8d, 0x5bf90, 0x5c001, 0x61fe0, 0x62001, 0x63358, 0x633fd,
    0x63424, 0x6bfc1, 0x6bfd0, 0x6bfd5, 0x6bff0, 0x6bff5, 0x6bffc, 0x6c001,
    0x6c48c, 0x6c4c9, 0x6c4cc, 0x6c541, 0x6c54c, 0x6c555, 0x6c558, 0x6c591,
    0x6c5a0, 0x6c5c1, 0x6cbf0, 0x6f001, 0x6f1ac, 0x6f1c1, 0x6f1f4, 0x6f201,
    0x6f224, 0x6f241, 0x6f268, 0x733c2, 0x733e8, 0x74b02, 0x74b50, 0x74b82,
    0x74bd0, 0x74d82, 0x74de4, 0x75001, 0x75154, 0x75159, 0x75274, 0x75279,
    0x75280, 0x75289, 0x7528c, 0x75295, 0x7529c, 0x752a5, 0x752b4, 0x752b9,
    0x752e8, 0x752ed, 0x752f0, 0x752f5, 0x75310, 0x75315, 0x75418, 0x7541d,
    0x7542c, 0x75435, 0x75454, 0x75459, 0x75474, 0x75479, 0x754e8, 0x754ed,
    0x754fc, 0x75501, 0x75514, 0x75519, 0x7551c, 0x75529, 0x75544, 0x75549,
    0x75a98, 0x75aa1, 0x75b04, 0x75b09, 0x75b6c, 0x75b71, 0x75bec, 0x75bf1,
    0x75c54, 0x75c59, 0x75cd4, 0x75cd9, 0x75d3c, 0x75d41, 0x75dbc, 0x75dc1,
    0x75e24, 0x75e29, 0x75ea4, 0x75ea9, 0x75f0c, 0x75f11, 0x75f30, 0x75f3a,
    0x76000, 0x77c01, 0x77c7c, 0x77c95, 0x77cac, 0x780c1, 0x781b8, 0x78401,
    0x784b4, 0x784dd, 0x784f8, 0x78502, 0x78528, 0x78539, 0x7853c, 0x78a41,
    0x78ab8, 0x78b01, 0x78bb0, 0x78bc2, 0x78be8, 0x79341, 0x793b0, 0x793c2,
    0x793e8, 0x79741, 0x797b8, 0x797c1, 0x797c6, 0x797ec, 0x79f81, 0x79f9c,
    0x79fa1, 0x79fb0, 0x79fb5, 0x79fbc, 0x79fc1, 0x79ffc, 0x7a001, 0x7a314,
    0x7a31e, 0x7a340, 0x7a401, 0x7a510, 0x7a52d, 0x7a530, 0x7a542, 0x7a568,
    0x7b1c6, 0x7b2b0, 0x7b2b6, 0x7b2c0, 0x7b2c6, 0x7b2d4, 0x7b406, 0x7b4b8,
    0x7b4be, 0x7b4f8, 0x7b801, 0x7b810, 0x7b815, 0x7b880, 0x7b885, 0x7b88c,
    0x7b891, 0x7b894, 0x7b89d, 0x7b8a0, 0x7b8a5, 0x7b8cc, 0x7b8d1, 0x7b8e0,
    0x7b8e5, 0x7b8e8, 0x7b8ed, 0x7b8f0, 0x7b909, 0x7b90c, 0x7b91d, 0x7b920,
    0x7b925, 0x7b928, 0x7b92d, 0x7b930, 0x7b935, 0x7b940, 0x7b945, 0x7b94c,
    0x7b951, 0x7b954, 0x7b95d, 0x7b960, 0x7b965, 0x7b968, 0x7b96d, 0x7b970,
    0x7b975, 0x7b978, 0x7b97d, 0x7b980, 0x7b985, 0x7b98c, 0x7b991, 0x7b994,
    0x7b99d, 0x7b9ac, 0x7b9b1, 0x7b9cc, 0x7b9d1, 0x7b9e0, 0x7b9e5, 0x7b9f4,
    0x7b9f9, 0x7b9fc, 0x7ba01, 0x7ba28, 0x7ba2d, 0x7ba70, 0x7ba85, 0x7ba90,
    0x7ba95, 0x7baa8, 0x7baad, 0x7baf0, 0x7c402, 0x7c434, 0x7efc2, 0x7efe8,
    0x80001, 0xa9b80, 0xa9c01, 0xadce8, 0xadd01, 0xae078, 0xae081, 0xb3a88,
    0xb3ac1, 0xbaf84, 0xbafc1, 0xbb978, 0xbe001, 0xbe878, 0xc0001, 0xc4d2c,
    0xc4d41, 0xc8ec0,
};
/* END tables generated by tools/gen_unicode.py */

/* A byte that begins no well-formed UTF-8 character: a pre-token of its own. */
enum { TLENS__TOK_INVALID = 4 };

/* Pre-tokens up to this many bytes are merged with a simple scan (most are
 * a few bytes long); longer ones with a heap, in O(n log n). */
#define TLENS__TOK_SMALL_PIECE 48

#define TLENS__TOK_NO_RANK INT32_MAX

/* One token: its bytes in tok->bytes, and the rank of the merge that makes
 * it (-1 for the single bytes and for tokens no merge makes, such as
 * <|endoftext|>). */
typedef struct tlens__tok_token {
    uint32_t start, len;
    int32_t rank;
} tlens__tok_token;

/* A slot of the vocabulary hash table (bytes -> id); id -1 is empty. */
typedef struct tlens__tok_slot {
    uint32_t hash;
    int32_t id;
} tlens__tok_slot;

/* A slot of the pair table: tokens left and right concatenate to token
 * `merged`, of rank `rank`; left -1 is empty. */
typedef struct tlens__tok_pair {
    int32_t left, right, rank, merged;
} tlens__tok_pair;

struct tlens_tokenizer {
    tlens_allocator alloc;
    int32_t n_tokens;
    tlens__tok_token *tokens;   /* [n_tokens], by id                    */
    unsigned char *bytes;       /* every token's bytes, each NUL-ended  */
    int32_t byte_token[256];    /* the token of each single byte        */
    int32_t eot;                /* <|endoftext|>, or -1                 */
    tlens__tok_slot *vocab;     /* [vocab_mask + 1]                     */
    uint32_t vocab_mask;
    tlens__tok_pair *pairs;     /* [pair_mask + 1]                      */
    uint32_t pair_mask;
};

/* ---- Characters: UTF-8 and the classes of the pattern ------------------ */

/* Decode the character at s[0..n), n >= 1: its code point, with *len its
 * length; or -1 with *len 1 when s[0] does not begin a well-formed UTF-8
 * sequence (Unicode's table 3-7: no overlong forms, no surrogates, nothing
 * above U+10FFFF, no missing continuation byte). */
static int32_t tlens__tok_utf8(const unsigned char *s, size_t n, size_t *len) {
    unsigned c = s[0], lo = 0x80, hi = 0xBF;
    *len = 1;
    if (c < 0x80) return (int32_t)c;
    if (c < 0xC2 || c > 0xF4 || n < 2) return -1;
    if (c < 0xE0) {
        if ((s[1] & 0xC0) != 0x80) return -1;
        *len = 2;
        return (int32_t)(((c & 0x1Fu) << 6) | (s[1] & 0x3Fu));
    }
    if (c == 0xE0) lo = 0xA0;      /* shorter forms are overlong */
    else if (c == 0xED) hi = 0x9F; /* ED A0..BF would be surrogates */
    else if (c == 0xF0) lo = 0x90;
    else if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
    if (s[1] < lo || s[1] > hi || n < 3 || (s[2] & 0xC0) != 0x80) return -1;
    if (c < 0xF0) {
        *len = 3;
        return (int32_t)(((c & 0x0Fu) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3Fu));
    }
    if (n < 4 || (s[3] & 0xC0) != 0x80) return -1;
    *len = 4;
    return (int32_t)(((c & 0x07u) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) |
                     (s[3] & 0x3Fu));
}

/* The class of a code point: binary search in the class runs. Text tends
 * to stay in one script, so the run found last time (*hint) is tried
 * first. */
static int tlens__tok_class_of(uint32_t cp, size_t *hint) {
    const uint32_t *runs = tlens__tok_class_runs;
    uint32_t key = (cp << 2) | 3u; /* above every run starting at cp */
    size_t lo = *hint, hi;
    if (runs[lo] <= key && (lo + 1 == TLENS__TOK_CLASS_RUNS || runs[lo + 1] > key))
        return (int)(runs[lo] & 3u);
    lo = 0;
    hi = TLENS__TOK_CLASS_RUNS; /* runs[lo] <= key < runs[hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (runs[mid] <= key) lo = mid;
        else hi = mid;
    }
    *hint = lo;
    return (int)(runs[lo] & 3u);
}

/* The class of the character at s[i] (i < n), and its length in *len. */
static int tlens__tok_char_at(const unsigned char *s, size_t n, size_t i, size_t *len,
                              size_t *hint) {
    int32_t cp;
    if (s[i] < 0x80) {
        *len = 1;
        return tlens__tok_ascii_class[s[i]];
    }
    cp = tlens__tok_utf8(s + i, n - i, len);
    if (cp < 0) return TLENS__TOK_INVALID;
    return tlens__tok_class_of((uint32_t)cp, hint);
}

/* ---- GPT-2's byte alphabet ----------------------------------------------
 * The 188 bytes that are printable Latin-1 characters ('!'..'~',
 * '¡'..'¬', '®'..'ÿ') are written as themselves; the other 68 (controls,
 * the space, 0x7F..0xA0 and the soft hyphen 0xAD), in byte order, as
 * U+0100..U+0143: the space 0x20 is U+0120 'Ġ', '\n' is U+010A 'Ċ'. */
static int tlens__tok_byte_is_printable(uint32_t b) {
    return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

/* The byte a character of the alphabet stands for, or -1. */
static int tlens__tok_byte_of_char(uint32_t cp) {
    uint32_t k = cp - 0x100; /* the k-th byte that is not printable */
    if (cp < 0x100) return tlens__tok_byte_is_printable(cp) ? (int)cp : -1;
    if (cp > 0x143) return -1;
    if (k < 33) return (int)k;                  /* 0x00..0x20 */
    if (k < 67) return (int)(0x7F + (k - 33));  /* 0x7F..0xA0 */
    return 0xAD;
}

/* ---- Hash tables ------------------------------------------------------- */

/* A hash of a byte string, a word at a time; the last 1..8 bytes are read
 * as two overlapping 4-byte words (or three single bytes), which is exact
 * enough because the length is hashed too, and avoids a memcpy call of
 * variable size. (The value differs between little- and big-endian
 * machines, which is fine: tables are built and searched on the same one.) */
static uint32_t tlens__tok_hash(const unsigned char *p, size_t n) {
    const uint64_t k = UINT64_C(0x9E3779B97F4A7C15);
    uint64_t h = k ^ (uint64_t)n, w;
    uint32_t a, b;
    for (; n > 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * k;
        h ^= h >> 29;
    }
    if (n >= 4) {
        memcpy(&a, p, 4);
        memcpy(&b, p + n - 4, 4);
        w = ((uint64_t)a << 32) | b;
    } else {
        w = n ? (uint64_t)p[0] | ((uint64_t)p[n / 2] << 8) | ((uint64_t)p[n - 1] << 16) : 0;
    }
    h = (h ^ w) * k;
    h ^= h >> 32;
    h *= UINT64_C(0xD6E8FEB86659FD93);
    return (uint32_t)(h >> 32);
}

static uint32_t tlens__tok_hash_pair(int32_t left, int32_t right) {
    uint64_t h = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    h *= UINT64_C(0x9E3779B97F4A7C15);
    return (uint32_t)(h >> 32);
}

/* The number of slots for `count` entries: a power of two, at most half
 * full. 0 when that does not fit a uint32_t. */
static uint32_t tlens__tok_table_size(size_t count) {
    uint32_t size = 16;
    while ((size_t)size / 2 < count) {
        if (size >= 0x80000000u) return 0;
        size *= 2;
    }
    return size;
}

/* The id of the token with these bytes, or -1. */
static int32_t tlens__tok_lookup(const tlens_tokenizer *tok, const unsigned char *p, size_t n) {
    uint32_t h = tlens__tok_hash(p, n), i = h & tok->vocab_mask;
    for (;; i = (i + 1) & tok->vocab_mask) {
        const tlens__tok_slot *slot = &tok->vocab[i];
        const tlens__tok_token *t;
        if (slot->id < 0) return -1;
        t = &tok->tokens[slot->id];
        if (slot->hash == h && t->len == n && memcmp(tok->bytes + t->start, p, n) == 0)
            return slot->id;
    }
}

/* Add token `id` to the vocabulary table; the id of an earlier token with
 * the same bytes if there is one (nothing is added then), else -1. */
static int32_t tlens__tok_vocab_add(tlens_tokenizer *tok, int32_t id) {
    const tlens__tok_token *t = &tok->tokens[id];
    const unsigned char *p = tok->bytes + t->start;
    int32_t found = tlens__tok_lookup(tok, p, t->len);
    uint32_t h = tlens__tok_hash(p, t->len), i = h & tok->vocab_mask;
    if (found >= 0) return found;
    while (tok->vocab[i].id >= 0) i = (i + 1) & tok->vocab_mask;
    tok->vocab[i].hash = h;
    tok->vocab[i].id = id;
    return -1;
}

/* The merge of tokens left and right, or NULL when they do not merge. */
static const tlens__tok_pair *tlens__tok_pair_find(const tlens_tokenizer *tok, int32_t left,
                                                   int32_t right) {
    uint32_t i = tlens__tok_hash_pair(left, right) & tok->pair_mask;
    for (;; i = (i + 1) & tok->pair_mask) {
        const tlens__tok_pair *pr = &tok->pairs[i];
        if (pr->left < 0) return NULL;
        if (pr->left == left && pr->right == right) return pr;
    }
}

static void tlens__tok_pair_add(tlens_tokenizer *tok, const tlens__tok_pair *pair) {
    uint32_t i = tlens__tok_hash_pair(pair->left, pair->right) & tok->pair_mask;
    while (tok->pairs[i].left >= 0) i = (i + 1) & tok->pair_mask;
    tok->pairs[i] = *pair;
}

/* ---- Error messages that point into a file ----------------------------- */

/* A file being read: its name (for messages) and its contents. */
typedef struct tlens__tok_src {
    const char *name;
    const unsigned char *text;
    size_t len;
} tlens__tok_src;

/* Fail with TLENS_ERR_TOKENIZER and "NAME: line L, column C: MESSAGE" for
 * the byte at `offset` (columns count bytes, from 1). */
static tlens_result tlens__tok_fail_at(tlens_error *err, const tlens__tok_src *src,
                                       size_t offset, const char *fmt, ...) {
    char what[240];
    size_t line = 1, column = 1, i;
    va_list ap;
    if (!err) return TLENS_ERR_TOKENIZER;
    va_start(ap, fmt);
    tlens__vformat(what, sizeof what, fmt, ap);
    va_end(ap);
    for (i = 0; i < offset && i < src->len; i++) {
        if (src->text[i] == '\n') { line++; column = 1; }
        else column++;
    }
    return tlens__fail(err, TLENS_ERR_TOKENIZER, "%s: line %zu, column %zu: %s", src->name,
                       line, column, what);
}

/* Up to 40 bytes of s[0..n) as a C string for a message, cut at a UTF-8
 * character boundary, "..." when shortened. */
static const char *tlens__tok_excerpt(char *buf, const unsigned char *s, size_t n) {
    size_t k = n < 40 ? n : 40;
    while (k < n && k > 0 && (s[k] & 0xC0) == 0x80) k--;
    memcpy(buf, s, k);
    memcpy(buf + k, k < n ? "..." : "", k < n ? 4 : 1);
    return buf;
}

/* "U+00E9"-style text for a code point, for messages. */
static const char *tlens__tok_u_plus(char *buf, uint32_t cp) {
    static const char digits[] = "0123456789ABCDEF";
    int n = cp > 0xFFFFF ? 6 : cp > 0xFFFF ? 5 : 4, i;
    buf[0] = 'U';
    buf[1] = '+';
    for (i = 0; i < n; i++) buf[2 + i] = digits[(cp >> (4 * (n - 1 - i))) & 15u];
    buf[2 + n] = '\0';
    return buf;
}

/* ---- Reading vocab.json --------------------------------------------------
 * A strict reader for exactly what vocab.json is: one JSON object whose
 * keys are tokens in the byte alphabet and whose values are their ids. */

typedef struct tlens__tok_json {
    const tlens__tok_src *src;
    size_t pos;
} tlens__tok_json;

/* One entry of the object, in file order. */
typedef struct tlens__tok_entry {
    uint32_t start, len; /* the token's bytes in tok->bytes */
    int32_t id;
    size_t key_at, id_at; /* where key and id are in the file */
} tlens__tok_entry;

static void tlens__tok_json_space(tlens__tok_json *j) {
    const tlens__tok_src *s = j->src;
    while (j->pos < s->len && (s->text[j->pos] == ' ' || s->text[j->pos] == '\t' ||
                               s->text[j->pos] == '\n' || s->text[j->pos] == '\r'))
        j->pos++;
}

/* The next byte, or -1 at the end of the file. */
static int tlens__tok_json_peek(const tlens__tok_json *j) {
    return j->pos < j->src->len ? j->src->text[j->pos] : -1;
}

/* Fail at the current position, saying what was expected. */
static tlens_result tlens__tok_json_expected(const tlens__tok_json *j, const char *what,
                                             tlens_error *err) {
    if (j->pos >= j->src->len)
        return tlens__tok_fail_at(err, j->src, j->pos, "unexpected end of file, expected %s", what);
    return tlens__tok_fail_at(err, j->src, j->pos, "expected %s, found '%c'", what,
                              j->src->text[j->pos]);
}

static int tlens__tok_hex4(const tlens__tok_src *s, size_t at, uint32_t *value) {
    size_t i;
    *value = 0;
    if (at > s->len || s->len - at < 4) return 0;
    for (i = at; i < at + 4; i++) {
        unsigned c = s->text[i];
        uint32_t d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return 0;
        *value = *value * 16 + d;
    }
    return 1;
}

/* A \uXXXX escape at j->pos (the backslash), or a surrogate pair of two. */
static tlens_result tlens__tok_json_unicode(tlens__tok_json *j, uint32_t *cp, tlens_error *err) {
    const tlens__tok_src *s = j->src;
    size_t at = j->pos;
    uint32_t high, low;
    if (!tlens__tok_hex4(s, at + 2, &high))
        return tlens__tok_fail_at(err, s, at, "bad escape: \\u needs four hex digits");
    j->pos = at + 6;
    if (high >= 0xDC00 && high <= 0xDFFF)
        return tlens__tok_fail_at(err, s, at, "unpaired low surrogate \\u%c%c%c%c",
                                  s->text[at + 2], s->text[at + 3], s->text[at + 4], s->text[at + 5]);
    if (high < 0xD800 || high > 0xDBFF) {
        *cp = high;
        return TLENS_OK;
    }
    if (!(at + 7 < s->len && s->text[at + 6] == '\\' && s->text[at + 7] == 'u' &&
          tlens__tok_hex4(s, at + 8, &low) && low >= 0xDC00 && low <= 0xDFFF))
        return tlens__tok_fail_at(err, s, at, "high surrogate \\u%c%c%c%c without a low surrogate after it",
                                  s->text[at + 2], s->text[at + 3], s->text[at + 4], s->text[at + 5]);
    *cp = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00);
    j->pos = at + 12;
    return TLENS_OK;
}

/* The escape at j->pos (a backslash). */
static tlens_result tlens__tok_json_escape(tlens__tok_json *j, uint32_t *cp, tlens_error *err) {
    const tlens__tok_src *s = j->src;
    int c = j->pos + 1 < s->len ? s->text[j->pos + 1] : -1;
    switch (c) {
    case '"': *cp = '"'; break;
    case '\\': *cp = '\\'; break;
    case '/': *cp = '/'; break;
    case 'b': *cp = 8; break;
    case 'f': *cp = 12; break;
    case 'n': *cp = 10; break;
    case 'r': *cp = 13; break;
    case 't': *cp = 9; break;
    case 'u': return tlens__tok_json_unicode(j, cp, err);
    case -1: return tlens__tok_fail_at(err, s, j->pos, "unexpected end of file in a string");
    default: return tlens__tok_fail_at(err, s, j->pos, "bad escape \\%c", c);
    }
    j->pos += 2;
    return TLENS_OK;
}

/* The string at j->pos (its opening quote) as a token: each character is
 * one byte of the byte alphabet. The bytes go to out, which has room for
 * the string's length in the file (a character takes at least one byte of
 * the file). */
static tlens_result tlens__tok_json_token(tlens__tok_json *j, unsigned char *out,
                                          uint32_t *out_len, tlens_error *err) {
    const tlens__tok_src *s = j->src;
    size_t start = j->pos, n = 0, len;
    char name[12];
    j->pos++;
    for (;;) {
        size_t at = j->pos;
        uint32_t cp = 0;
        int byte;
        if (at >= s->len) return tlens__tok_fail_at(err, s, start, "unterminated string");
        if (s->text[at] == '"') break;
        if (s->text[at] == '\\') {
            tlens_result r = tlens__tok_json_escape(j, &cp, err);
            if (r != TLENS_OK) return r;
        } else if (s->text[at] < 0x20) {
            return tlens__tok_fail_at(err, s, at, "control character (byte %u) in a string",
                                      (unsigned)s->text[at]);
        } else {
            int32_t c = tlens__tok_utf8(s->text + at, s->len - at, &len);
            if (c < 0) return tlens__tok_fail_at(err, s, at, "invalid UTF-8");
            cp = (uint32_t)c;
            j->pos += len;
        }
        byte = tlens__tok_byte_of_char(cp);
        if (byte < 0)
            return tlens__tok_fail_at(err, s, at, "%s is not a character of GPT-2's byte alphabet",
                                      tlens__tok_u_plus(name, cp));
        out[n++] = (unsigned char)byte;
    }
    j->pos++;
    if (n == 0) return tlens__tok_fail_at(err, s, start, "empty token");
    *out_len = (uint32_t)n;
    return TLENS_OK;
}

/* A token id: a non-negative JSON integer below 2^31. */
static tlens_result tlens__tok_json_id(tlens__tok_json *j, int32_t *id, tlens_error *err) {
    const tlens__tok_src *s = j->src;
    size_t at = j->pos;
    int64_t v = 0;
    int c = tlens__tok_json_peek(j);
    if (c == '-') return tlens__tok_fail_at(err, s, at, "negative id");
    if (c < '0' || c > '9') return tlens__tok_json_expected(j, "a token id (an integer)", err);
    if (c == '0' && at + 1 < s->len && s->text[at + 1] >= '0' && s->text[at + 1] <= '9')
        return tlens__tok_fail_at(err, s, at, "a number with a leading zero is not JSON");
    while ((c = tlens__tok_json_peek(j)) >= '0' && c <= '9') {
        v = v * 10 + (c - '0');
        if (v > INT32_MAX) return tlens__tok_fail_at(err, s, at, "id too large");
        j->pos++;
    }
    if (c == '.' || c == 'e' || c == 'E')
        return tlens__tok_fail_at(err, s, at, "ids must be integers");
    *id = (int32_t)v;
    return TLENS_OK;
}

/* Parse the object into entries (room for `room` of them) and the token
 * bytes into tok->bytes. */
static tlens_result tlens__tok_json_object(tlens_tokenizer *tok, tlens__tok_json *j,
                                           tlens__tok_entry *entries, size_t room,
                                           size_t *n_entries, tlens_error *err) {
    size_t n = 0, used = 0;
    tlens_result r;
    if (j->src->len >= 3 && memcmp(j->src->text, "\xEF\xBB\xBF", 3) == 0) j->pos = 3; /* BOM */
    tlens__tok_json_space(j);
    if (tlens__tok_json_peek(j) != '{') return tlens__tok_json_expected(j, "'{'", err);
    j->pos++;
    tlens__tok_json_space(j);
    if (tlens__tok_json_peek(j) == '}') return tlens__tok_fail_at(err, j->src, j->pos, "no tokens");
    for (;;) {
        tlens__tok_entry *e = &entries[n];
        int c;
        tlens__tok_json_space(j);
        if (tlens__tok_json_peek(j) != '"') return tlens__tok_json_expected(j, "a token (a string)", err);
        if (n == room) return tlens__tok_fail_at(err, j->src, j->pos, "too many tokens");
        e->key_at = j->pos;
        e->start = (uint32_t)used;
        if ((r = tlens__tok_json_token(j, tok->bytes + used, &e->len, err)) != TLENS_OK) return r;
        used += e->len;
        tok->bytes[used++] = '\0';
        tlens__tok_json_space(j);
        if (tlens__tok_json_peek(j) != ':') return tlens__tok_json_expected(j, "':'", err);
        j->pos++;
        tlens__tok_json_space(j);
        e->id_at = j->pos;
        if ((r = tlens__tok_json_id(j, &e->id, err)) != TLENS_OK) return r;
        n++;
        tlens__tok_json_space(j);
        c = tlens__tok_json_peek(j);
        j->pos++;
        if (c == '}') break;
        if (c != ',') {
            j->pos--;
            return tlens__tok_json_expected(j, "',' or '}'", err);
        }
    }
    tlens__tok_json_space(j);
    if (j->pos != j->src->len)
        return tlens__tok_fail_at(err, j->src, j->pos, "unexpected text after the JSON object");
    *n_entries = n;
    return TLENS_OK;
}

/* Put the entries in id order and into the vocabulary table: the ids must
 * be 0..n-1, each once, and the tokens distinct. */
static tlens_result tlens__tok_index_entries(tlens_tokenizer *tok, const tlens__tok_src *src,
                                             const tlens__tok_entry *entries, size_t n,
                                             tlens_error *err) {
    size_t i;
    char excerpt[48];
    for (i = 0; i < n; i++) {
        const tlens__tok_entry *e = &entries[i];
        if ((size_t)e->id >= n)
            return tlens__tok_fail_at(err, src, e->id_at,
                                      "id %d is out of range: %zu tokens must have the ids 0..%zu, each once",
                                      (int)e->id, n, n - 1);
        if (tok->tokens[e->id].len != 0)
            return tlens__tok_fail_at(err, src, e->id_at, "id %d is given to two tokens", (int)e->id);
        tok->tokens[e->id].start = e->start;
        tok->tokens[e->id].len = e->len;
        tok->tokens[e->id].rank = -1;
    }
    tok->n_tokens = (int32_t)n;
    for (i = 0; i < n; i++) {
        const tlens__tok_entry *e = &entries[i];
        if (tlens__tok_vocab_add(tok, e->id) >= 0)
            return tlens__tok_fail_at(err, src, e->key_at, "duplicate token %s",
                                      tlens__tok_excerpt(excerpt, src->text + e->key_at,
                                                         src->len - e->key_at));
    }
    return TLENS_OK;
}

/* Every byte needs its own token, or some texts could not be encoded. */
static tlens_result tlens__tok_find_byte_tokens(tlens_tokenizer *tok, const tlens__tok_src *src,
                                                tlens_error *err) {
    unsigned b;
    char name[12];
    for (b = 0; b < 256; b++) {
        unsigned char byte = (unsigned char)b;
        uint32_t cp = tlens__tok_byte_is_printable(b) ? b : 0;
        tok->byte_token[b] = tlens__tok_lookup(tok, &byte, 1);
        if (tok->byte_token[b] >= 0) continue;
        if (!cp) { /* find the character that stands for this byte */
            for (cp = 0x100; tlens__tok_byte_of_char(cp) != (int)b; cp++) {}
        }
        return tlens__fail(err, TLENS_ERR_TOKENIZER, "%s: no token for the byte %u (%s)", src->name,
                           b, tlens__tok_u_plus(name, cp));
    }
    tok->eot = tlens__tok_lookup(tok, (const unsigned char *)"<|endoftext|>", 13);
    return TLENS_OK;
}

/* Read vocab.json into tok->tokens, tok->bytes and tok->vocab. */
static tlens_result tlens__tok_read_vocab(tlens_tokenizer *tok, const tlens__tok_src *src,
                                          tlens_error *err) {
    const tlens_allocator *a = &tok->alloc;
    size_t room = 1, n = 0, i, entry_bytes, token_bytes, slot_bytes;
    uint32_t slots;
    tlens__tok_entry *entries;
    tlens__tok_json j;
    tlens_result r;
    if (src->len == 0) return tlens__fail(err, TLENS_ERR_TOKENIZER, "%s: empty file", src->name);
    for (i = 0; i < src->len; i++)
        if (src->text[i] == ':') room++; /* each entry has one */
    slots = tlens__tok_table_size(room);
    if (src->len >= 0xFFFFFFFFu || !slots || !tlens__mul_ok(room, sizeof *entries, &entry_bytes) ||
        !tlens__mul_ok(room, sizeof *tok->tokens, &token_bytes) ||
        !tlens__mul_ok(slots, sizeof *tok->vocab, &slot_bytes))
        return tlens__fail(err, TLENS_ERR_TOKENIZER, "%s: too large (%zu bytes)", src->name, src->len);
    entries = (tlens__tok_entry *)tlens__alloc(a, entry_bytes);
    /* the token bytes and their NULs take no more room than the file */
    tok->bytes = (unsigned char *)tlens__alloc(a, src->len + 1);
    tok->tokens = (tlens__tok_token *)tlens__calloc(a, token_bytes);
    tok->vocab = (tlens__tok_slot *)tlens__alloc(a, slot_bytes);
    if (!entries || !tok->bytes || !tok->tokens || !tok->vocab) {
        tlens__free(a, entries);
        return tlens__fail(err, TLENS_ERR_NOMEM, "%s: out of memory", src->name);
    }
    tok->vocab_mask = slots - 1;
    memset(tok->vocab, 0xFF, slot_bytes); /* id -1: empty */
    j.src = src;
    j.pos = 0;
    r = tlens__tok_json_object(tok, &j, entries, room, &n, err);
    if (r == TLENS_OK) r = tlens__tok_index_entries(tok, src, entries, n, err);
    if (r == TLENS_OK) r = tlens__tok_find_byte_tokens(tok, src, err);
    tlens__free(a, entries);
    return r;
}

/* ---- Reading merges.txt --------------------------------------------------
 * One merge per line, "left right", highest priority first; the rank of a
 * merge is its index, and it is the rank of the token it makes. */

/* Decode one token of a merges line, s[0..n), into out. */
static tlens_result tlens__tok_merge_token(const tlens__tok_src *src, size_t at, size_t n,
                                           unsigned char *out, size_t *out_len, tlens_error *err) {
    size_t i = 0, k = 0, len;
    char name[12];
    while (i < n) {
        int32_t cp = tlens__tok_utf8(src->text + at + i, n - i, &len);
        int byte;
        if (cp < 0) return tlens__tok_fail_at(err, src, at + i, "invalid UTF-8");
        byte = tlens__tok_byte_of_char((uint32_t)cp);
        if (byte < 0)
            return tlens__tok_fail_at(err, src, at + i, "%s is not a character of GPT-2's byte alphabet",
                                      tlens__tok_u_plus(name, (uint32_t)cp));
        out[k++] = (unsigned char)byte;
        i += len;
    }
    *out_len = k;
    return TLENS_OK;
}

/* The id of a token named in a merges line; it must be a byte or made by
 * an earlier merge, since BPE can only ever merge those. */
static tlens_result tlens__tok_merge_part(const tlens_tokenizer *tok, const tlens__tok_src *src,
                                          size_t at, size_t n, const unsigned char *bytes,
                                          size_t len, int32_t *id, tlens_error *err) {
    char excerpt[48];
    *id = tlens__tok_lookup(tok, bytes, len);
    if (*id < 0)
        return tlens__tok_fail_at(err, src, at, "unknown token %s (not in the vocabulary)",
                                  tlens__tok_excerpt(excerpt, src->text + at, n));
    if (len > 1 && tok->tokens[*id].rank < 0)
        return tlens__tok_fail_at(err, src, at, "token %s is not a byte and no earlier merge makes it",
                                  tlens__tok_excerpt(excerpt, src->text + at, n));
    return TLENS_OK;
}

/* One merge line, text[at..at+n) without its line end, of rank `rank`. */
static tlens_result tlens__tok_merge_line(tlens_tokenizer *tok, const tlens__tok_src *src,
                                          size_t at, size_t n, int32_t rank, size_t first_line,
                                          unsigned char *scratch, tlens_error *err) {
    const unsigned char *line = src->text + at;
    const unsigned char *space = (const unsigned char *)memchr(line, ' ', n);
    size_t left_n, left_len, right_len;
    int32_t left, right, merged;
    char excerpt[48];
    tlens_result r;
    if (!space || space == line || space == line + n - 1 ||
        memchr(space + 1, ' ', (size_t)(line + n - space - 1)))
        return tlens__tok_fail_at(err, src, at, "expected two tokens separated by one space, found \"%s\"",
                                  tlens__tok_excerpt(excerpt, line, n));
    left_n = (size_t)(space - line);
    /* decode both tokens next to each other: scratch then holds the merge */
    if ((r = tlens__tok_merge_token(src, at, left_n, scratch, &left_len, err)) != TLENS_OK ||
        (r = tlens__tok_merge_token(src, at + left_n + 1, n - left_n - 1, scratch + left_len,
                                    &right_len, err)) != TLENS_OK ||
        (r = tlens__tok_merge_part(tok, src, at, left_n, scratch, left_len, &left, err)) != TLENS_OK ||
        (r = tlens__tok_merge_part(tok, src, at + left_n + 1, n - left_n - 1, scratch + left_len,
                                   right_len, &right, err)) != TLENS_OK)
        return r;
    merged = tlens__tok_lookup(tok, scratch, left_len + right_len);
    if (merged < 0)
        return tlens__tok_fail_at(err, src, at, "the merge \"%s\" makes a token that is not in the vocabulary",
                                  tlens__tok_excerpt(excerpt, line, n));
    if (tok->tokens[merged].rank >= 0)
        return tlens__tok_fail_at(err, src, at, "the merge \"%s\" makes the same token as line %zu",
                                  tlens__tok_excerpt(excerpt, line, n),
                                  first_line + (size_t)tok->tokens[merged].rank);
    tok->tokens[merged].rank = rank;
    return TLENS_OK;
}

/* Read merges.txt: set the rank of every token a merge makes. */
static tlens_result tlens__tok_read_merges(tlens_tokenizer *tok, const tlens__tok_src *src,
                                           tlens_error *err) {
    size_t pos = 0, line = 1, first_line;
    int32_t rank = 0;
    unsigned char *scratch;
    tlens_result r = TLENS_OK;
    if (src->len == 0) return tlens__fail(err, TLENS_ERR_TOKENIZER, "%s: empty file", src->name);
    if (src->len >= 8 && memcmp(src->text, "#version", 8) == 0) { /* a header line */
        const unsigned char *end = (const unsigned char *)memchr(src->text, '\n', src->len);
        pos = end ? (size_t)(end - src->text) + 1 : src->len;
        line = 2;
    }
    first_line = line;
    if (!(scratch = (unsigned char *)tlens__alloc(&tok->alloc, src->len)))
        return tlens__fail(err, TLENS_ERR_NOMEM, "%s: out of memory", src->name);
    for (; pos < src->len && r == TLENS_OK; line++) {
        const unsigned char *nl = (const unsigned char *)memchr(src->text + pos, '\n', src->len - pos);
        size_t end = nl ? (size_t)(nl - src->text) : src->len, n = end - pos;
        if (n && src->text[end - 1] == '\r') n--; /* CRLF line ends */
        if (rank == INT32_MAX - 1) r = tlens__tok_fail_at(err, src, pos, "too many merges");
        else r = tlens__tok_merge_line(tok, src, pos, n, rank++, first_line, scratch, err);
        pos = end + 1;
    }
    tlens__free(&tok->alloc, scratch);
    if (r == TLENS_OK && rank == 0)
        r = tlens__fail(err, TLENS_ERR_TOKENIZER, "%s: no merges", src->name);
    return r;
}

/* ---- The pair table -------------------------------------------------------
 * Every way to write each merged token as two tokens that BPE can produce
 * (bytes or merged tokens): GPT-2's 50,000 merges give about 108,000
 * pairs, 50,000 of them the pairs merges.txt names. This is tiktoken's rule
 * by construction. (For GPT-2's own files the extra pairs never changed an
 * id in testing, on 8 million tokens of random token sequences: Hugging
 * Face's rule, which only merges the named pairs, agrees there. Building
 * them costs about 10 ms of the load.) */

static int tlens__tok_mergeable(const tlens_tokenizer *tok, int32_t id) {
    return id >= 0 && (tok->tokens[id].rank >= 0 || tok->tokens[id].len == 1);
}

/* Every split of every merged token into two mergeable tokens, into
 * pairs (room for one per split); the count. */
static size_t tlens__tok_find_pairs(const tlens_tokenizer *tok, tlens__tok_pair *pairs) {
    size_t count = 0;
    int32_t id;
    for (id = 0; id < tok->n_tokens; id++) {
        const tlens__tok_token *t = &tok->tokens[id];
        const unsigned char *p = tok->bytes + t->start;
        uint32_t k;
        if (t->rank < 0) continue;
        for (k = 1; k < t->len; k++) {
            tlens__tok_pair *pair = &pairs[count];
            pair->left = tlens__tok_lookup(tok, p, k);
            if (!tlens__tok_mergeable(tok, pair->left)) continue;
            pair->right = tlens__tok_lookup(tok, p + k, t->len - k);
            if (!tlens__tok_mergeable(tok, pair->right)) continue;
            pair->rank = t->rank;
            pair->merged = id;
            count++;
        }
    }
    return count;
}

static tlens_result tlens__tok_build_pairs(tlens_tokenizer *tok, tlens_error *err) {
    size_t splits = 0, count, bytes, i;
    uint32_t size;
    tlens__tok_pair *found;
    int32_t id;
    for (id = 0; id < tok->n_tokens; id++)
        if (tok->tokens[id].rank >= 0) splits += tok->tokens[id].len - 1;
    if (!tlens__mul_ok(splits, sizeof *found, &bytes) ||
        !(found = (tlens__tok_pair *)tlens__alloc(&tok->alloc, bytes)))
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the tokenizer's pair table");
    count = tlens__tok_find_pairs(tok, found);
    size = tlens__tok_table_size(count);
    if (!size || !tlens__mul_ok(size, sizeof *tok->pairs, &bytes) ||
        !(tok->pairs = (tlens__tok_pair *)tlens__alloc(&tok->alloc, bytes))) {
        tlens__free(&tok->alloc, found);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the tokenizer's pair table");
    }
    memset(tok->pairs, 0xFF, bytes); /* left -1: empty */
    tok->pair_mask = size - 1;
    for (i = 0; i < count; i++) tlens__tok_pair_add(tok, &found[i]);
    tlens__free(&tok->alloc, found);
    return TLENS_OK;
}

/* ---- Loading ------------------------------------------------------------ */

TLENS_DEF void tlens_tokenizer_free(tlens_tokenizer *tok) {
    tlens_allocator a;
    if (!tok) return;
    a = tok->alloc;
    tlens__free(&a, tok->tokens);
    tlens__free(&a, tok->bytes);
    tlens__free(&a, tok->vocab);
    tlens__free(&a, tok->pairs);
    tlens__free(&a, tok);
}

static tlens_result tlens__tok_load(tlens_tokenizer **out, const tlens__tok_src *vocab,
                                    const tlens__tok_src *merges, const tlens_allocator *alloc,
                                    tlens_error *err) {
    tlens_tokenizer *tok;
    tlens_result r;
    if (!out) return tlens__fail(err, TLENS_ERR_ARG, "tlens_tokenizer_load: out is NULL");
    *out = NULL;
    if ((!vocab->text && vocab->len) || (!merges->text && merges->len))
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_tokenizer_load_memory: NULL data");
    if (!(tok = (tlens_tokenizer *)tlens__calloc(alloc, sizeof *tok)))
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the tokenizer");
    if (alloc) tok->alloc = *alloc;
    r = tlens__tok_read_vocab(tok, vocab, err);
    if (r == TLENS_OK) r = tlens__tok_read_merges(tok, merges, err);
    if (r == TLENS_OK) r = tlens__tok_build_pairs(tok, err);
    if (r != TLENS_OK) {
        tlens_tokenizer_free(tok);
        return r;
    }
    *out = tok;
    tlens__ok(err);
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_tokenizer_load_memory(tlens_tokenizer **out, const char *vocab_json,
                                                   size_t vocab_len, const char *merges_txt,
                                                   size_t merges_len, const tlens_allocator *alloc,
                                                   tlens_error *err) {
    tlens__tok_src vocab, merges;
    vocab.name = "vocab.json";
    vocab.text = (const unsigned char *)vocab_json;
    vocab.len = vocab_len;
    merges.name = "merges.txt";
    merges.text = (const unsigned char *)merges_txt;
    merges.len = merges_len;
    return tlens__tok_load(out, &vocab, &merges, alloc, err);
}

#ifndef TLENS_NO_STDIO
TLENS_DEF tlens_result tlens_tokenizer_load_files(tlens_tokenizer **out, const char *vocab_path,
                                                  const char *merges_path,
                                                  const tlens_allocator *alloc, tlens_error *err) {
    char *vocab_data = NULL, *merges_data = NULL;
    tlens__tok_src vocab, merges;
    tlens_result r;
    if (out) *out = NULL;
    if (!vocab_path || !merges_path)
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_tokenizer_load_files: NULL path");
    if ((r = tlens__read_file(alloc, vocab_path, &vocab_data, &vocab.len, err)) != TLENS_OK)
        return r;
    if ((r = tlens__read_file(alloc, merges_path, &merges_data, &merges.len, err)) != TLENS_OK) {
        tlens__free(alloc, vocab_data);
        return r;
    }
    vocab.name = vocab_path;
    vocab.text = (const unsigned char *)vocab_data;
    merges.name = merges_path;
    merges.text = (const unsigned char *)merges_data;
    r = tlens__tok_load(out, &vocab, &merges, alloc, err);
    tlens__free(alloc, vocab_data);
    tlens__free(alloc, merges_data);
    return r;
}

TLENS_DEF tlens_result tlens_tokenizer_load(tlens_tokenizer **out, const char *dir,
                                            const tlens_allocator *alloc, tlens_error *err) {
    static const char *const names[2][2] = {{"vocab.json", "merges.txt"},
                                            {"encoder.json", "vocab.bpe"}};
    char vocab_path[1024], merges_path[1024];
    int i;
    if (out) *out = NULL;
    if (!dir) return tlens__fail(err, TLENS_ERR_ARG, "tlens_tokenizer_load: dir is NULL");
    for (i = 0; i < 2; i++) {
        if (!tlens__join(vocab_path, sizeof vocab_path, dir, names[i][0]) ||
            !tlens__join(merges_path, sizeof merges_path, dir, names[i][1]))
            return tlens__fail(err, TLENS_ERR_ARG, "tlens_tokenizer_load: path too long: %s", dir);
        if (tlens__file_exists(vocab_path))
            return tlens_tokenizer_load_files(out, vocab_path, merges_path, alloc, err);
    }
    return tlens__fail(err, TLENS_ERR_MISSING,
                       "%s: no tokenizer files (vocab.json + merges.txt, or encoder.json + vocab.bpe)",
                       dir);
}
#endif /* TLENS_NO_STDIO */

TLENS_DEF int tlens_tokenizer_vocab_size(const tlens_tokenizer *tok) {
    return tok ? (int)tok->n_tokens : 0;
}

/* ---- Pre-tokenizing -------------------------------------------------------
 * tlens__tok_piece_end(s, n, i) is where the pattern's match at s[i] ends. */

/* The length of the contraction at s ('s 't 're 've 'm 'll 'd), or 0. */
static size_t tlens__tok_contraction(const unsigned char *s, size_t n) {
    if (n >= 2 && (s[1] == 's' || s[1] == 't' || s[1] == 'm' || s[1] == 'd')) return 2;
    if (n >= 3 && ((s[1] == 'r' && s[2] == 'e') || (s[1] == 'v' && s[2] == 'e') ||
                   (s[1] == 'l' && s[2] == 'l')))
        return 3;
    return 0;
}

/* The end of the run of characters of class `cls` from s[i]. */
static size_t tlens__tok_run_end(const unsigned char *s, size_t n, size_t i, int cls, size_t *hint) {
    size_t len;
    if (cls == TLENS__TOK_LETTER) { /* the common case, ASCII words, quickly */
        while (i < n && s[i] < 0x80 && tlens__tok_ascii_class[s[i]] == TLENS__TOK_LETTER) i++;
    }
    while (i < n && tlens__tok_char_at(s, n, i, &len, hint) == cls) i += len;
    return i;
}

/* \s+(?!\S)|\s+ from s[i], whose first character is `len` bytes long: the
 * run of white space, but without its last character when the run has
 * several and a non-space follows (that one then starts the next
 * pre-token, as the space of " word"). */
static size_t tlens__tok_space_end(const unsigned char *s, size_t n, size_t i, size_t len,
                                   size_t *hint) {
    size_t last = i, end = i + len;
    while (end < n && tlens__tok_char_at(s, n, end, &len, hint) == TLENS__TOK_SPACE) {
        last = end;
        end += len;
    }
    if (end == n || last == i) return end;
    return last;
}

/* Where the pre-token that starts at s[i] (i < n) ends. */
static size_t tlens__tok_piece_end(const unsigned char *s, size_t n, size_t i, size_t *hint) {
    size_t len, next_len;
    int cls;
    if (s[i] == '\'') {
        size_t c = tlens__tok_contraction(s + i, n - i);
        if (c) return i + c;
    }
    if (s[i] == ' ' && i + 1 < n) { /* " ?" before a letter, number or other run */
        int next = tlens__tok_char_at(s, n, i + 1, &next_len, hint);
        if (next <= TLENS__TOK_NUMBER) /* other, letter or number */
            return tlens__tok_run_end(s, n, i + 1 + next_len, next, hint);
    }
    cls = tlens__tok_char_at(s, n, i, &len, hint);
    if (cls == TLENS__TOK_INVALID) return i + 1;
    if (cls == TLENS__TOK_SPACE) return tlens__tok_space_end(s, n, i, len, hint);
    return tlens__tok_run_end(s, n, i + len, cls, hint);
}

/* ---- Byte-pair encoding -------------------------------------------------- */

/* The state of one tlens_encode call: its output and working memory. */
typedef struct tlens__tok_work {
    const tlens_tokenizer *tok;
    int32_t *ids;
    size_t cap, n;   /* ids has room for cap; n counts every id, even past cap */
    size_t hint;     /* for tlens__tok_class_of */
    void *mem;       /* for pre-tokens of up to mem_bytes bytes */
    size_t mem_bytes;
} tlens__tok_work;

static void tlens__tok_emit(tlens__tok_work *w, int32_t id) {
    if (w->n < w->cap) w->ids[w->n] = id;
    w->n++;
}

/* A token of a short pre-token, and the merge with the token after it. */
typedef struct tlens__tok_part {
    int32_t id, rank, merged;
} tlens__tok_part;

static void tlens__tok_part_rank(const tlens_tokenizer *tok, tlens__tok_part *part) {
    const tlens__tok_pair *pr = tlens__tok_pair_find(tok, part[0].id, part[1].id);
    part[0].rank = pr ? pr->rank : TLENS__TOK_NO_RANK;
    part[0].merged = pr ? pr->merged : -1;
}

/* BPE by scanning for the lowest rank after each merge: quadratic, but
 * the fastest way for the few bytes of a typical pre-token. */
static void tlens__tok_bpe_small(tlens__tok_work *w, const unsigned char *p, size_t n) {
    const tlens_tokenizer *tok = w->tok;
    tlens__tok_part part[TLENS__TOK_SMALL_PIECE];
    size_t i, m = n;
    for (i = 0; i < n; i++) part[i].id = tok->byte_token[p[i]];
    for (i = 0; i + 1 < n; i++) tlens__tok_part_rank(tok, &part[i]);
    part[n - 1].rank = TLENS__TOK_NO_RANK;
    for (;;) {
        size_t best = 0;
        for (i = 1; i + 1 < m; i++)
            if (part[i].rank < part[best].rank) best = i;
        if (m < 2 || part[best].rank == TLENS__TOK_NO_RANK) break;
        part[best].id = part[best].merged;
        memmove(&part[best + 1], &part[best + 2], (m - best - 2) * sizeof *part);
        m--;
        if (best > 0) tlens__tok_part_rank(tok, &part[best - 1]);
        if (best + 1 < m) tlens__tok_part_rank(tok, &part[best]);
        else part[best].rank = TLENS__TOK_NO_RANK;
    }
    for (i = 0; i < m; i++) tlens__tok_emit(w, part[i].id);
}

/* A candidate merge for the heap: the pair that starts at byte `pos`. */
typedef struct tlens__tok_item {
    size_t pos;
    int32_t rank;
} tlens__tok_item;

/* The heap's order: lowest rank first, then leftmost. */
static int tlens__tok_item_before(const tlens__tok_item *a, const tlens__tok_item *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void tlens__tok_heap_push(tlens__tok_item *heap, size_t *n, tlens__tok_item item) {
    size_t i = (*n)++;
    while (i > 0 && tlens__tok_item_before(&item, &heap[(i - 1) / 2])) {
        heap[i] = heap[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    heap[i] = item;
}

static tlens__tok_item tlens__tok_heap_pop(tlens__tok_item *heap, size_t *n) {
    tlens__tok_item top = heap[0], last = heap[--*n];
    size_t i = 0, child;
    while ((child = 2 * i + 1) < *n) {
        if (child + 1 < *n && tlens__tok_item_before(&heap[child + 1], &heap[child])) child++;
        if (!tlens__tok_item_before(&heap[child], &last)) break;
        heap[i] = heap[child];
        i = child;
    }
    heap[i] = last;
    return top;
}

/* The linked list of tokens of a long pre-token: the token that starts at
 * byte i is id[i] (-1 once merged into the one before), followed by the
 * token at next[i] and preceded by the one at prev[i] (n: none). */
typedef struct tlens__tok_list {
    int32_t *id;
    size_t *next, *prev;
    size_t n;
    tlens__tok_item *heap;
    size_t heap_n;
} tlens__tok_list;

static void tlens__tok_push_pair(const tlens_tokenizer *tok, tlens__tok_list *l, size_t i) {
    const tlens__tok_pair *pr;
    if (i >= l->n || l->next[i] >= l->n) return;
    pr = tlens__tok_pair_find(tok, l->id[i], l->id[l->next[i]]);
    if (pr) {
        tlens__tok_item item;
        item.pos = i;
        item.rank = pr->rank;
        tlens__tok_heap_push(l->heap, &l->heap_n, item);
    }
}

/* Working memory for a pre-token of n bytes: the list and a heap of up to
 * 2n candidates (n - 1 at first; each merge pops one and pushes at most
 * two, and there are at most n - 1 merges). */
static int tlens__tok_reserve(tlens__tok_work *w, size_t n, tlens__tok_list *l) {
    size_t per_byte = 2 * sizeof(tlens__tok_item) + 2 * sizeof(size_t) + sizeof(int32_t), bytes;
    unsigned char *mem;
    if (!tlens__mul_ok(n, per_byte, &bytes)) return 0;
    if (bytes > w->mem_bytes) {
        tlens__free(&w->tok->alloc, w->mem);
        w->mem_bytes = 0;
        if (!(w->mem = tlens__alloc(&w->tok->alloc, bytes))) return 0;
        w->mem_bytes = bytes;
    }
    mem = (unsigned char *)w->mem; /* largest alignment first */
    l->heap = (tlens__tok_item *)(void *)mem;
    l->next = (size_t *)(void *)(mem + 2 * n * sizeof(tlens__tok_item));
    l->prev = l->next + n;
    l->id = (int32_t *)(void *)(l->prev + n);
    l->n = n;
    l->heap_n = 0;
    return 1;
}

/* BPE with a heap of candidate merges, in O(n log n): for long pre-tokens
 * (a run of thousands of letters must not take quadratic time). A
 * candidate is still valid when popped if its pair still has its rank. */
static tlens_result tlens__tok_bpe_large(tlens__tok_work *w, const unsigned char *p, size_t n,
                                         tlens_error *err) {
    const tlens_tokenizer *tok = w->tok;
    tlens__tok_list l;
    size_t i;
    if (!tlens__tok_reserve(w, n, &l))
        return tlens__fail(err, TLENS_ERR_NOMEM, "tlens_encode: out of memory for a pre-token of %zu bytes", n);
    for (i = 0; i < n; i++) {
        l.id[i] = tok->byte_token[p[i]];
        l.next[i] = i + 1;
        l.prev[i] = i ? i - 1 : n;
    }
    for (i = 0; i + 1 < n; i++) tlens__tok_push_pair(tok, &l, i);
    while (l.heap_n) {
        tlens__tok_item item = tlens__tok_heap_pop(l.heap, &l.heap_n);
        size_t left = item.pos, right = l.next[left];
        const tlens__tok_pair *pr;
        if (l.id[left] < 0 || right >= n) continue;
        pr = tlens__tok_pair_find(tok, l.id[left], l.id[right]);
        if (!pr || pr->rank != item.rank) continue; /* stale */
        l.id[left] = pr->merged;
        l.id[right] = -1;
        l.next[left] = l.next[right];
        if (l.next[right] < n) l.prev[l.next[right]] = left;
        tlens__tok_push_pair(tok, &l, l.prev[left]);
        tlens__tok_push_pair(tok, &l, left);
    }
    for (i = 0; i < n; i = l.next[i]) tlens__tok_emit(w, l.id[i]);
    return TLENS_OK;
}

/* Encode one pre-token. */
static tlens_result tlens__tok_encode_piece(tlens__tok_work *w, const unsigned char *p, size_t n,
                                            tlens_error *err) {
    int32_t id = tlens__tok_lookup(w->tok, p, n);
    if (tlens__tok_mergeable(w->tok, id)) {
        tlens__tok_emit(w, id);
        return TLENS_OK;
    }
    if (n <= TLENS__TOK_SMALL_PIECE) {
        tlens__tok_bpe_small(w, p, n);
        return TLENS_OK;
    }
    return tlens__tok_bpe_large(w, p, n, err);
}

/* Encode text that holds no special token: pre-tokens, then BPE. */
static tlens_result tlens__tok_encode_ordinary(tlens__tok_work *w, const unsigned char *s,
                                               size_t n, tlens_error *err) {
    size_t i = 0;
    while (i < n) {
        size_t end = tlens__tok_piece_end(s, n, i, &w->hint);
        tlens_result r = tlens__tok_encode_piece(w, s + i, end - i, err);
        if (r != TLENS_OK) return r;
        i = end;
    }
    return TLENS_OK;
}

/* Where the next "<|endoftext|>" begins in s[from..n), or n. */
static size_t tlens__tok_find_eot(const tlens_tokenizer *tok, const unsigned char *s, size_t n,
                                  size_t from) {
    const tlens__tok_token *t;
    if (tok->eot < 0) return n;
    t = &tok->tokens[tok->eot];
    while (from < n) {
        const unsigned char *lt = (const unsigned char *)memchr(s + from, tok->bytes[t->start], n - from);
        size_t at;
        if (!lt) break;
        at = (size_t)(lt - s);
        if (n - at >= t->len && memcmp(lt, tok->bytes + t->start, t->len) == 0) return at;
        from = at + 1;
    }
    return n;
}

/* Encode into w (w->n counts the ids, also those past w->cap). */
static tlens_result tlens__tok_encode_into(tlens__tok_work *w, const unsigned char *s, size_t n,
                                           int prepend_bos, tlens_error *err) {
    const tlens_tokenizer *tok = w->tok;
    size_t start = 0;
    tlens_result r = TLENS_OK;
    if (prepend_bos) {
        if (tok->eot < 0)
            return tlens__fail(err, TLENS_ERR_ARG, "tlens_encode: prepend_bos, but the vocabulary has no <|endoftext|>");
        tlens__tok_emit(w, tok->eot);
    }
    while (start < n && r == TLENS_OK) {
        size_t eot = tlens__tok_find_eot(tok, s, n, start);
        r = tlens__tok_encode_ordinary(w, s + start, eot - start, err);
        if (eot == n) break;
        tlens__tok_emit(w, tok->eot);
        start = eot + tok->tokens[tok->eot].len;
    }
    tlens__free(&tok->alloc, w->mem);
    w->mem = NULL;
    w->mem_bytes = 0;
    return r;
}

static void tlens__tok_work_init(tlens__tok_work *w, const tlens_tokenizer *tok, int32_t *ids,
                                 size_t cap) {
    w->tok = tok;
    w->ids = ids;
    w->cap = ids ? cap : 0;
    w->n = 0;
    w->hint = 0;
    w->mem = NULL;
    w->mem_bytes = 0;
}

/* ---- The public functions ------------------------------------------------ */

TLENS_DEF tlens_result tlens_encode(const tlens_tokenizer *tok, const char *text, size_t len,
                                    int prepend_bos, int32_t *ids, size_t cap, size_t *n_out,
                                    tlens_error *err) {
    tlens__tok_work w;
    tlens_result r;
    if (n_out) *n_out = 0;
    if (!tok || !n_out || (!text && len))
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_encode: NULL tokenizer, text or n_out");
    tlens__tok_work_init(&w, tok, ids, cap);
    if ((r = tlens__tok_encode_into(&w, (const unsigned char *)text, len, prepend_bos, err)) != TLENS_OK)
        return r;
    *n_out = w.n;
    if (w.n > w.cap)
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_encode: the text is %zu tokens, ids has room for %zu",
                           w.n, w.cap);
    tlens__ok(err);
    return TLENS_OK;
}

TLENS_DEF const char *tlens_token_bytes(const tlens_tokenizer *tok, int32_t id, size_t *len) {
    if (!tok || id < 0 || id >= tok->n_tokens) {
        if (len) *len = 0;
        return NULL;
    }
    if (len) *len = tok->tokens[id].len;
    return (const char *)tok->bytes + tok->tokens[id].start;
}

TLENS_DEF tlens_result tlens_decode(const tlens_tokenizer *tok, const int32_t *ids, size_t n,
                                    char *out, size_t cap, size_t *len_out, tlens_error *err) {
    size_t total = 0, i;
    if (len_out) *len_out = 0;
    if (!tok || !len_out || (!ids && n))
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_decode: NULL tokenizer, ids or len_out");
    for (i = 0; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= tok->n_tokens)
            return tlens__fail(err, TLENS_ERR_TOKEN, "tlens_decode: ids[%zu] = %d is not in the vocabulary (0..%d)",
                               i, (int)ids[i], (int)tok->n_tokens - 1);
        total += tok->tokens[ids[i]].len;
        if (total < tok->tokens[ids[i]].len) /* wrapped around */
            return tlens__fail(err, TLENS_ERR_ARG, "tlens_decode: the text would be too long");
    }
    *len_out = total;
    if (!out) {
        if (cap) return tlens__fail(err, TLENS_ERR_ARG, "tlens_decode: out is NULL");
        tlens__ok(err); /* asking for the length */
        return TLENS_OK;
    }
    if (total > cap)
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_decode: the text is %zu bytes, out has room for %zu",
                           total, cap);
    for (i = 0, total = 0; i < n; i++) {
        const tlens__tok_token *t = &tok->tokens[ids[i]];
        memcpy(out + total, tok->bytes + t->start, t->len);
        total += t->len;
    }
    if (total < cap) out[total] = '\0';
    tlens__ok(err);
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_to_single_token(const tlens_tokenizer *tok, const char *text,
                                             size_t len, int32_t *id, tlens_error *err) {
    tlens__tok_work w;
    int32_t ids[2];
    tlens_result r;
    if (!tok || !id || (!text && len))
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_to_single_token: NULL tokenizer, text or id");
    tlens__tok_work_init(&w, tok, ids, 2);
    if ((r = tlens__tok_encode_into(&w, (const unsigned char *)text, len, 0, err)) != TLENS_OK)
        return r;
    if (w.n != 1)
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_to_single_token: the text is %zu tokens, not one", w.n);
    *id = ids[0];
    tlens__ok(err);
    return TLENS_OK;
}

TLENS_DEF int tlens_token_position(const int32_t *ids, size_t n, int32_t id, int last) {
    const size_t int_max = (size_t)((unsigned)-1 >> 1);
    size_t i;
    if (!ids) return -1;
    if (n > int_max) n = int_max;
    if (last) {
        for (i = n; i > 0; i--)
            if (ids[i - 1] == id) return (int)(i - 1);
    } else {
        for (i = 0; i < n; i++)
            if (ids[i] == id) return (int)i;
    }
    return -1;
}

/* ------------------------------------------------------------------------
 * 3.4 A small JSON reader
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
            } else if (*j->p == '\0' || !strchr("\"\\/bfnrt", *j->p)) {
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
    int neg = 0, frac_digits = 0, exp = 0, exp_neg = 0, is_int = 1, id;
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
    id = tlens__json_new_node(j, TLENS__JSON_NUMBER);
    if (id < 0) return -1;
    exp = (exp_neg ? -exp : exp) - frac_digits;
    j->nodes[id].number = (neg ? -mant : mant) * pow(10.0, (double)exp);
    /* a long long holds -2^63 .. 2^63-1: negate in unsigned arithmetic */
    j->nodes[id].is_integer = is_int && ival_ok && ival <= 9223372036854775807ull + (unsigned)neg;
    j->nodes[id].integer = !j->nodes[id].is_integer ? 0
                           : neg ? (ival == 9223372036854775808ull ? -9223372036854775807LL - 1 : -(long long)ival)
                                 : (long long)ival;
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

/* Parse text[0..len) whose top level must open with `open` ('{': an
 * object, '[': an array); `expected` names it in the error. */
static tlens_result tlens__json_parse_top(tlens__json *j, const char *text, size_t len, const char *what,
                                          const tlens_allocator *a, tlens_error *err, char open,
                                          const char *expected) {
    memset(j, 0, sizeof *j);
    j->p = j->start = text;
    j->end = text + len;
    j->alloc = a;
    j->what = what;
    j->err = err;
    tlens__json_skip_ws(j);
    if (j->p >= j->end || *j->p != open) {
        tlens__json_error(j, expected);
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

/* Parse text[0..len) whose top level must be an object. */
static tlens_result tlens__json_parse(tlens__json *j, const char *text, size_t len, const char *what,
                                      const tlens_allocator *a, tlens_error *err) {
    return tlens__json_parse_top(j, text, len, what, a, err, '{', "expected an object");
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
 * 3.5 Kernels: matrix multiplication
 *
 * Every big product in GPT-2 is activations (M rows, K wide) times a weight
 * matrix W (K inputs, N outputs). The weights are used many times, so they
 * are stored once in a layout made for the kernels; the activations are
 * used as they are (row-major), without copies.
 *
 * PACKED WEIGHT LAYOUT (also the layout of matrices in .tlens files)
 *   W is cut into column panels of TLENS__PANEL = 32 columns. Panel p holds
 *   columns 32p .. 32p+31 as K rows of 32 elements, row after row, and the
 *   panels follow each other:
 *
 *       element (k, n)  is at index  ((n / 32) * K + k) * 32 + n % 32
 *
 *   The last panel is padded with zeros up to 32 columns, so the packed
 *   matrix holds K * 32 * ceil(N / 32) elements: the padding costs
 *   K * (32 * ceil(N / 32) - N) elements, less than 32 columns (for GPT-2's
 *   unembedding, N = 50257 -> 50272: 0.03%; the other matrices need none).
 *   Elements are float32, IEEE binary16 or bfloat16 (tlens_dtype), in the
 *   machine's byte order. The layout is the same on every instruction set,
 *   so a packed file can be mapped in place anywhere. Every panel is a
 *   multiple of 64 bytes long, so when the matrix starts on a 64-byte
 *   boundary (best for speed, not required) every panel does.
 *
 * HOW A PRODUCT IS COMPUTED
 *   The micro-kernel (tlens__tile) keeps a tile of the output, MR rows x
 *   KCOLS columns (NV vectors), in registers and runs down K: per step it
 *   loads one row of the panel (NV vectors, widened to f32 for F16/BF16),
 *   broadcasts one activation per tile row, and does MR * NV fused
 *   multiply-adds. MR x NV is as large as the registers allow (AVX-512:
 *   12 x 2 = 24 accumulators + 2 weight vectors + 1 broadcast of the 32
 *   registers): 2 * MR * NV flops per NV + MR loads keep the FMA units
 *   busy, and 24 independent sums hide the FMA latency.
 *
 *   Around it, cache blocking after Goto and van de Geijn, with W packed
 *   beforehand:
 *     for each work item: MC rows x GP panels of the output
 *       for each block of KC steps along K
 *         for each panel of the item
 *           for each MR-row tile of the item: micro-kernel, KC steps
 *   With KC = 256 a panel's block is 256 x 32 floats = 32 KB (16 KB in
 *   F16/BF16): it is read from memory once and then served from the L1
 *   (32-48 KB on current cores) or the nearby L2 to all MC / MR row tiles.
 *   The item's activations, MC x KC floats (MC = 16 MR: 192 rows, 192 KB
 *   with AVX-512), stay in the L2 cache (1-2 MB) while the item's panels
 *   pass. Per step a tile reads NV vectors of W (L1) and MR activations
 *   (L2): little traffic for 2 * MR * NV * VW flops. KC = 256 measured
 *   best on Zen 4 among 96..384. GP = 4 panels (128 columns) per item
 *   reuses the activations 4 times and still cuts GPT-2's narrowest
 *   matrices (768 columns) into 6 items per row block for the threads.
 *
 *   The forward pass gives the kernel its activations in MR-row strips
 *   (tlens__interleave_rows): strip i holds rows i MR .. i MR + MR - 1 as
 *   K steps of MR adjacent floats, so a tile reads one stream and reaches
 *   a step's MR values from one pointer. Read in place instead, the MR
 *   rows are MR streams lda apart, each with a pointer of its own, more
 *   than the registers hold. With strips, packing included, GPT-2 small's
 *   products at M = 1024 ran 4-8% faster (the unembedding from 0.86 to
 *   0.95 of OpenBLAS) and a T = 1024 pass ~3% (2 threads, Sapphire
 *   Rapids); the packing is ~1.5% of the pass. The sums are the same.
 *
 *   Other callers (a head's part of W_O, the scores, SAE encoders) read
 *   the activations in place. There, when K * 4 bytes is a multiple of 4 KB
 *   (K = 1024 or 3072), the MR rows of a tile fall into
 *   the same L1 cache set and evict each other at every step. Then four
 *   tiles of activations at a time are copied (TLENS__PACK_ROWS = 4 MR
 *   rows x KC floats, 48 KB on the stack with AVX-512) once per K block
 *   and used for all the item's panels, each panel block serving the four
 *   tiles (tlens__rows_crowd_l1); items are then made wider (8 to 16
 *   panels at T = 1024) so that the rows are copied fewer times. Copying
 *   one tile at a time, each panel block came from the L2 for every tile:
 *   5-10 % slower on Sapphire Rapids at T = 128 and 1024.
 *
 *   The kernel also asks for memory it will need soon (prefetching): a
 *   tile of the first row group asks for the next panel block of the item
 *   (tlens__ask_next_block), and a one-row tile (M = 1) asks for the row
 *   of its own operand that lies as many rows ahead as make 2 KB of a
 *   panel (TLENS__PREFETCH_AHEAD). Nothing else measured faster.
 *
 *   Work items are the unit of OpenMP parallelism (dynamic scheduling:
 *   a thread slowed down by other programs takes fewer); a thread computes
 *   whole items. Products under TLENS__PARALLEL_MIN multiply-adds stay on
 *   the calling thread. A range of W's rows (tlens__matmul_rows: one
 *   head's part of W_O) only moves the start of each panel block. Neither
 *   a nor out needs any alignment.
 *
 * DETERMINISM
 *   Whatever the blocking, every output element is computed the same way:
 *   start from the bias (or 0), then add a[k] * W[k][n] for k = 0, 1, ...,
 *   K-1 in order, one multiply-add at a time (a K block resumes from the
 *   value the previous block stored). A dot product is never split. So the
 *   result does not depend on the number of threads, on M, nor on which
 *   rows and columns were computed together. It is even the same with
 *   AVX-512, AVX2 and NEON, whose fused multiply-adds round alike (the
 *   scalar path multiplies and adds separately, unless the compiler fuses).
 *
 * M = 1 (one token with a key/value cache) is a matrix-vector product,
 *   bound by memory bandwidth: work items are single panels, so each
 *   thread reads its contiguous part of W once, in memory order. The
 *   activation x activation products of attention run on the same
 *   micro-kernel: scores = q k^T as a product with the layer's keys,
 *   packed once per layer like a weight matrix (tlens__pack_keys), and
 *   z = pattern v with tlens__gemm_nn, which copies blocks of its right
 *   operand into panel form on the stack where needed.
 *
 * INSTRUCTION SETS
 *   A small macro layer (vector type, load, store, broadcast, fma, sum, and
 *   the F16 / BF16 widening loads) maps the one micro-kernel onto AVX-512,
 *   AVX2 + FMA, NEON (AArch64) or plain C, chosen at compile time (see
 *   TLENS_NO_SIMD and friends). 32-bit x86, with 8 vector registers, uses
 *   a 2-row tile; 32-bit ARM uses plain C.
 * ---------------------------------------------------------------------- */

/* g++ 12 warns, wrongly, that the _mm*_undefined_* placeholders inside
 * its own AVX-512 intrinsics are used uninitialized. */
#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#if !defined(TLENS_NO_SIMD) && !defined(TLENS_NO_AVX512) && defined(__AVX512F__)
#define TLENS__ISA_AVX512 1
#define TLENS__ISA_NAME "avx512"
#elif !defined(TLENS_NO_SIMD) && !defined(TLENS_NO_AVX2) && defined(__AVX2__) && defined(__FMA__)
#define TLENS__ISA_AVX2 1
#define TLENS__ISA_NAME "avx2"
#elif !defined(TLENS_NO_SIMD) && !defined(TLENS_NO_NEON) && defined(__ARM_NEON) && defined(__aarch64__)
#define TLENS__ISA_NEON 1
#define TLENS__ISA_NAME "neon"
#else
#define TLENS__ISA_SCALAR 1
#define TLENS__ISA_NAME "scalar"
#endif

#if defined(__GNUC__) || defined(__clang__)
#define TLENS__ALWAYS_INLINE static inline __attribute__((always_inline))
#elif defined(_MSC_VER)
#define TLENS__ALWAYS_INLINE static __forceinline
#else
#define TLENS__ALWAYS_INLINE static inline
#endif

/* Unroll the loop that follows completely (the micro-kernel's loops over
 * its register tile, so that the tile stays in registers). */
#if defined(__GNUC__) || defined(__clang__)
#define TLENS__UNROLL _Pragma("GCC unroll 32")
#else
#define TLENS__UNROLL
#endif

/* For functions that only some programs call (references, accessors). */
#if defined(__GNUC__) || defined(__clang__)
#define TLENS__MAYBE_UNUSED __attribute__((unused))
#else
#define TLENS__MAYBE_UNUSED
#endif

/* A hint to start reading the cache line at address p into the cache; it
 * never faults, whatever the address. */
#if defined(__GNUC__) || defined(__clang__)
#define TLENS__PREFETCH(p) __builtin_prefetch(p)
#else
#define TLENS__PREFETCH(p) ((void)(p))
#endif

/* 32-bit x86 has 8 vector registers instead of 16 (AVX2) or 32 (AVX-512). */
#if defined(__x86_64__) || defined(_M_X64)
#define TLENS__X86_REGS_WIDE 1
#endif

/* The macro layer. tlens__vf is one vector of TLENS__VW floats;
 * TLENS__V_FMA(x, w, acc) = x * w + acc; the widening loads read TLENS__VW
 * 16-bit values. TLENS__MR x TLENS__NV is the micro-kernel's register
 * tile (rows x vectors). */
#if defined(TLENS__ISA_AVX512)
#include <immintrin.h>
typedef __m512 tlens__vf;
#define TLENS__VW 16
#define TLENS__V_ZERO() _mm512_setzero_ps()
#define TLENS__V_LOAD(p) _mm512_loadu_ps(p)
#define TLENS__V_STORE(p, v) _mm512_storeu_ps((p), (v))
#define TLENS__V_SET1(x) _mm512_set1_ps(x)
#define TLENS__V_FMA(x, w, acc) _mm512_fmadd_ps((x), (w), (acc))
#define TLENS__V_SUM(v) _mm512_reduce_add_ps(v)
#define TLENS__V_LOAD_F16(p) \
    _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(const void *)(p)))
#define TLENS__V_LOAD_BF16(p)                                                \
    _mm512_castsi512_ps(_mm512_slli_epi32(                                   \
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(const void *)(p))), 16))
#define TLENS__V_ADD(a, b) _mm512_add_ps((a), (b))
#define TLENS__V_SUB(a, b) _mm512_sub_ps((a), (b))
#define TLENS__V_MUL(a, b) _mm512_mul_ps((a), (b))
#define TLENS__V_DIV(a, b) _mm512_div_ps((a), (b))
#define TLENS__V_MAX(a, b) _mm512_max_ps((a), (b))
#define TLENS__V_MIN(a, b) _mm512_min_ps((a), (b))
#define TLENS__V_HMAX(v) _mm512_reduce_max_ps(v)
#define TLENS__V_ROUND(v) _mm512_cvtepi32_ps(_mm512_cvtps_epi32(v)) /* nearest-even */
#define TLENS__V_POW2(n) /* 2^n for whole-numbered n */ \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23))
#ifdef TLENS__X86_REGS_WIDE
#define TLENS__MR 12
#else
#define TLENS__MR 2
#endif
#define TLENS__NV 2

#elif defined(TLENS__ISA_AVX2)
#include <immintrin.h>
typedef __m256 tlens__vf;
#define TLENS__VW 8
#define TLENS__V_ZERO() _mm256_setzero_ps()
#define TLENS__V_LOAD(p) _mm256_loadu_ps(p)
#define TLENS__V_STORE(p, v) _mm256_storeu_ps((p), (v))
#define TLENS__V_SET1(x) _mm256_set1_ps(x)
#define TLENS__V_FMA(x, w, acc) _mm256_fmadd_ps((x), (w), (acc))
#define TLENS__V_SUM(v) tlens__avx2_sum(v)
#define TLENS__V_ADD(a, b) _mm256_add_ps((a), (b))
#define TLENS__V_SUB(a, b) _mm256_sub_ps((a), (b))
#define TLENS__V_MUL(a, b) _mm256_mul_ps((a), (b))
#define TLENS__V_DIV(a, b) _mm256_div_ps((a), (b))
#define TLENS__V_MAX(a, b) _mm256_max_ps((a), (b))
#define TLENS__V_MIN(a, b) _mm256_min_ps((a), (b))
#define TLENS__V_HMAX(v) tlens__avx2_max(v)
#define TLENS__V_ROUND(v) _mm256_round_ps((v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define TLENS__V_POW2(n) \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23))
#define TLENS__V_LOAD_BF16(p)                                                \
    _mm256_castsi256_ps(_mm256_slli_epi32(                                   \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)(p))), 16))
#ifdef __F16C__
#define TLENS__V_LOAD_F16(p) \
    _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p)))
#else
#define TLENS__V_LOAD_F16(p) tlens__avx2_load_f16(p)
/* Without F16C: put the half's exponent and mantissa into a float's bits
 * (a value 2^-112 too small, subnormal halves included), scale by 2^112,
 * then mark infinities and NaNs (half exponent 31) and copy the sign. */
TLENS__ALWAYS_INLINE __m256 tlens__avx2_load_f16(const uint16_t *p) {
    __m256i h = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(const void *)p));
    __m256i sign = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x8000)), 16);
    __m256i bits = _mm256_slli_epi32(_mm256_and_si256(h, _mm256_set1_epi32(0x7fff)), 13);
    __m256i inf_nan = _mm256_cmpgt_epi32(bits, _mm256_set1_epi32(0x0f7fffff));
    __m256 scaled = _mm256_mul_ps(_mm256_castsi256_ps(bits),
                                  _mm256_castsi256_ps(_mm256_set1_epi32(0x77800000)));
    bits = _mm256_or_si256(_mm256_castps_si256(scaled),
                           _mm256_and_si256(inf_nan, _mm256_set1_epi32(0x7f800000)));
    return _mm256_castsi256_ps(_mm256_or_si256(bits, sign));
}
#endif
TLENS__ALWAYS_INLINE float tlens__avx2_max(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
TLENS__ALWAYS_INLINE float tlens__avx2_sum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#ifdef TLENS__X86_REGS_WIDE
#define TLENS__MR 6
#else
#define TLENS__MR 2
#endif
#define TLENS__NV 2

#elif defined(TLENS__ISA_NEON)
#include <arm_neon.h>
typedef float32x4_t tlens__vf;
#define TLENS__VW 4
#define TLENS__V_ZERO() vdupq_n_f32(0.0f)
#define TLENS__V_LOAD(p) vld1q_f32(p)
#define TLENS__V_STORE(p, v) vst1q_f32((p), (v))
#define TLENS__V_SET1(x) vdupq_n_f32(x)
#define TLENS__V_FMA(x, w, acc) vfmaq_f32((acc), (x), (w))
#define TLENS__V_SUM(v) vaddvq_f32(v)
#define TLENS__V_LOAD_F16(p) vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)))
#define TLENS__V_LOAD_BF16(p) vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16))
#define TLENS__V_ADD(a, b) vaddq_f32((a), (b))
#define TLENS__V_SUB(a, b) vsubq_f32((a), (b))
#define TLENS__V_MUL(a, b) vmulq_f32((a), (b))
#define TLENS__V_DIV(a, b) vdivq_f32((a), (b))
#define TLENS__V_MAX(a, b) vmaxq_f32((a), (b))
#define TLENS__V_MIN(a, b) vminq_f32((a), (b))
#define TLENS__V_HMAX(v) vmaxvq_f32(v)
#define TLENS__V_ROUND(v) vrndnq_f32(v)
#define TLENS__V_POW2(n) \
    vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127)), 23))
#define TLENS__MR 6
#define TLENS__NV 4

#else /* portable C: a "vector" is one float */
typedef float tlens__vf;
#define TLENS__VW 1
#define TLENS__V_ZERO() 0.0f
#define TLENS__V_LOAD(p) (*(p))
#define TLENS__V_STORE(p, v) (*(p) = (v))
#define TLENS__V_SET1(x) (x)
#define TLENS__V_FMA(x, w, acc) ((x) * (w) + (acc))
#define TLENS__V_SUM(v) (v)
#define TLENS__V_LOAD_F16(p) tlens__f16_to_f32(*(p))
#define TLENS__V_LOAD_BF16(p) tlens__bf16_to_f32(*(p))
#define TLENS__V_ADD(a, b) ((a) + (b))
#define TLENS__V_SUB(a, b) ((a) - (b))
#define TLENS__V_MUL(a, b) ((a) * (b))
#define TLENS__V_DIV(a, b) ((a) / (b))
#define TLENS__V_MAX(a, b) ((a) > (b) ? (a) : (b))
#define TLENS__V_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TLENS__V_HMAX(v) (v)
#define TLENS__V_ROUND(v) floorf((v) + 0.5f)
#define TLENS__V_POW2(n) tlens__pow2i((int)(n))
/* 2^n from its bits, as the vector paths build it (n = -127 gives 0). */
static float tlens__pow2i(int n) {
    uint32_t bits = (uint32_t)(n + 127) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}
#define TLENS__MR 4
#define TLENS__NV 4
#endif

/* Blocking constants; see the comment at the top of this section. */
#define TLENS__PANEL 32                        /* columns per packed panel */
#define TLENS__KCOLS (TLENS__NV * TLENS__VW)   /* columns per micro-kernel */
#define TLENS__KC 256                          /* K steps per cache block  */
#define TLENS__MC (16 * TLENS__MR)             /* rows per work item       */
#define TLENS__GP 4                            /* panels per work item     */
#define TLENS__PACK_ROWS (4 * TLENS__MR)       /* rows copied at a time when they crowd the L1 */
/* Fewer multiply-adds than this (some 5 microseconds of work) run on one
 * thread: waking others would cost more than it saves. */
#define TLENS__PARALLEL_MIN 524288.0
#ifdef _OPENMP
#include <omp.h>
#endif

/* The micro-kernel covers a panel in whole steps. */
typedef char tlens__kcols_divides_panel[TLENS__PANEL % TLENS__KCOLS == 0 ? 1 : -1];

/* Stored in .tlens files: which layout their matrices are packed in. */
#define TLENS__MAT_LAYOUT 1u /* 1: panels of 32 columns */

/* A weight matrix W with K inputs (rows) and N outputs (columns), in the
 * packed layout. */
typedef struct tlens__mat {
    const void *data;
    int K, N;
    tlens_dtype dtype;
} tlens__mat;

static size_t tlens__dtype_size(tlens_dtype dt) { return dt == TLENS_F32 ? 4u : 2u; }

/* Element i of an array of type dt, as a float. */
static float tlens__load_elem(const void *p, size_t i, tlens_dtype dt) {
    if (dt == TLENS_F32) return ((const float *)p)[i];
    if (dt == TLENS_F16) return tlens__f16_to_f32(((const uint16_t *)p)[i]);
    return tlens__bf16_to_f32(((const uint16_t *)p)[i]);
}

static int tlens__min_int(int a, int b) { return a < b ? a : b; }
static int tlens__max_int(int a, int b) { return a > b ? a : b; }
static size_t tlens__min_size(size_t a, size_t b) { return a < b ? a : b; }

static int tlens__mat_panels(int N) {
    return (N + TLENS__PANEL - 1) / TLENS__PANEL;
}

/* Index of element (k, n) in the packed layout. */
static size_t tlens__mat_index(int K, int k, int n) {
    return ((size_t)(n / TLENS__PANEL) * (size_t)K + (size_t)k) * TLENS__PANEL +
           (size_t)(n % TLENS__PANEL);
}

/* A packed matrix's bytes without the 64-byte padding: only tlens_save
 * needs them (the parameter buffer uses tlens__param_bytes). */
TLENS__NOSTDIO_UNUSED static size_t tlens__mat_bytes(int K, int N, tlens_dtype dt) {
    return (size_t)tlens__mat_panels(N) * TLENS__PANEL * (size_t)K * tlens__dtype_size(dt);
}

static void tlens__mat_store(void *dst, size_t i, float v, tlens_dtype dt) {
    if (dt == TLENS_F32) ((float *)dst)[i] = v;
    else if (dt == TLENS_F16) ((uint16_t *)dst)[i] = tlens__f32_to_f16(v);
    else ((uint16_t *)dst)[i] = tlens__f32_to_bf16(v);
}

/* Pack w, (K, N) row-major, into dst (tlens__mat_bytes(K, N, dt) bytes),
 * rounding to nearest for F16 and BF16. Writes the padding zeros too. */
static void tlens__mat_pack(void *dst, const float *w, int K, int N, tlens_dtype dt) {
    int panels = tlens__mat_panels(N), p, k, j;
    size_t i = 0;
    for (p = 0; p < panels; p++)
        for (k = 0; k < K; k++)
            for (j = 0; j < TLENS__PANEL; j++) {
                int n = p * TLENS__PANEL + j;
                float v = n < N ? w[(size_t)k * (size_t)N + (size_t)n] : 0.0f;
                tlens__mat_store(dst, i++, v, dt);
            }
}

TLENS__MAYBE_UNUSED static float tlens__mat_get(const tlens__mat *w, int k, int n) {
    return tlens__load_elem(w->data, tlens__mat_index(w->K, k, n), w->dtype);
}

/* out[k] = W[k][n] for every k: column n, e.g. a token's embedding read
 * from a tied unembedding. */
TLENS__MAYBE_UNUSED static void tlens__mat_column(const tlens__mat *w, int n, float *out) {
    size_t i = tlens__mat_index(w->K, 0, n);
    int k;
    for (k = 0; k < w->K; k++, i += TLENS__PANEL) out[k] = tlens__load_elem(w->data, i, w->dtype);
}

/* The naive references: one element at a time, k in order. */
TLENS__MAYBE_UNUSED static void tlens__matmul_ref(float *out, const float *a,
                                                  const tlens__mat *w, const float *bias, int M) {
    int i, k, n, K = w->K, N = w->N;
    for (i = 0; i < M; i++)
        for (n = 0; n < N; n++) {
            float acc = bias ? bias[n] : 0.0f;
            for (k = 0; k < K; k++)
                acc += a[(size_t)i * (size_t)K + (size_t)k] * tlens__mat_get(w, k, n);
            out[(size_t)i * (size_t)N + (size_t)n] = acc;
        }
}

TLENS__MAYBE_UNUSED static void tlens__gemm_nn_ref(float *c, int ldc, const float *a, int lda,
                                                   const float *b, int ldb, int M, int N, int K) {
    int i, j, k;
    for (i = 0; i < M; i++)
        for (j = 0; j < N; j++) {
            float acc = 0.0f;
            for (k = 0; k < K; k++)
                acc += a[(size_t)i * (size_t)lda + (size_t)k] * b[(size_t)k * (size_t)ldb + (size_t)j];
            c[(size_t)i * (size_t)ldc + (size_t)j] = acc;
        }
}

/* One vector of weights, widened to f32. `dt` is a constant wherever this
 * is inlined, so the branches disappear. */
TLENS__ALWAYS_INLINE tlens__vf tlens__load_weights(const void *b, size_t i, tlens_dtype dt) {
    if (dt == TLENS_F16) return TLENS__V_LOAD_F16((const uint16_t *)b + i);
    if (dt == TLENS_BF16) return TLENS__V_LOAD_BF16((const uint16_t *)b + i);
    return TLENS__V_LOAD((const float *)b + i);
}

/* How far ahead of the micro-kernel a matrix-vector product asks for the
 * weights: each row of a panel is then read from memory while the kernel
 * works on earlier ones. The hardware prefetchers alone left float32
 * decoding at ~83% of the memory bandwidth (Sapphire Rapids, 2 threads);
 * 1-2 KB ahead reached ~98%. */
#define TLENS__PREFETCH_AHEAD 2048

/* Ask for the cache lines of the row of b that comes as many rows after
 * row element i as make TLENS__PREFETCH_AHEAD bytes of a packed panel (the
 * same distance when the rows are further apart, as attention's values
 * are). The address is computed as an integer because it may lie past the
 * end of b (prefetching it is harmless). */
TLENS__ALWAYS_INLINE void tlens__prefetch_weights(const void *b, size_t i, size_t ldb, tlens_dtype dt) {
    size_t row_bytes = TLENS__KCOLS * tlens__dtype_size(dt), off;
    size_t ahead = (size_t)TLENS__PREFETCH_AHEAD / row_bytes * ldb; /* in elements */
    uintptr_t p = (uintptr_t)b + (uintptr_t)((i + ahead) * tlens__dtype_size(dt));
    TLENS__UNROLL
    for (off = 0; off < row_bytes; off += 64) TLENS__PREFETCH((const void *)(p + off));
}

/* The arguments of a micro-kernel call. */
typedef struct tlens__tile_args {
    int kc;               /* K steps                                       */
    const float *a;       /* rows x kc activations, row stride lda, or     */
    size_t lda;           /* (a_strip > 0) in an MR-row strip: a[k][r]     */
    size_t a_strip;       /* floats from one strip to the next             */
    const void *b;        /* kc x KCOLS weights of type dt, row stride ldb */
    size_t ldb;           /* (in elements)                                 */
    tlens_dtype dt;
    float *c;             /* rows x KCOLS outputs, row stride ldc          */
    size_t ldc;
    int resume;           /* 1: add to the sums stored in c, 0: overwrite  */
    const float *bias;    /* KCOLS values (read when !resume), or NULL     */
    const char *next;     /* cache lines of W to ask for, one per K step:  */
    size_t next_lines;    /* the block the next tiles will need, or none   */
} tlens__tile_args;

/* The micro-kernel: for r < rows, j < KCOLS,
 *     c[r][j] = start[r][j] + sum over k < kc of a[r][k] * b[k][j]
 * where start is c itself when resuming, else the bias (NULL: zero).
 * `rows` (<= TLENS__MR), `dt` and `in_strip` are constants at every call,
 * so the compiler unrolls the loops over the tile and keeps it in
 * registers. In a strip (in_strip) the step's MR activations are
 * adjacent and one pointer reaches them all. */
TLENS__ALWAYS_INLINE void tlens__tile(const int rows, const tlens_dtype dt, const int in_strip,
                                      const tlens__tile_args *t) {
    const float *a = t->a, *bias = t->bias;
    const void *b = t->b;
    float *c = t->c;
    size_t lda = t->lda, ldb = t->ldb, ldc = t->ldc, bi = 0;
    int kc = t->kc, r, v, k;
    tlens__vf acc[TLENS__MR][TLENS__NV];
    TLENS__UNROLL
    for (r = 0; r < rows; r++) {
        TLENS__UNROLL
        for (v = 0; v < TLENS__NV; v++)
            acc[r][v] = t->resume ? TLENS__V_LOAD(c + (size_t)r * ldc + (size_t)(v * TLENS__VW))
                        : bias    ? TLENS__V_LOAD(bias + v * TLENS__VW)
                                  : TLENS__V_ZERO();
    }
    for (k = 0; k < kc; k++, bi += ldb) {
        tlens__vf w[TLENS__NV];
        if (rows == 1) tlens__prefetch_weights(b, bi, ldb, dt); /* a matrix-vector product */
        else if ((size_t)k < t->next_lines) TLENS__PREFETCH(t->next + (size_t)k * 64);
        TLENS__UNROLL
        for (v = 0; v < TLENS__NV; v++)
            w[v] = tlens__load_weights(b, bi + (size_t)(v * TLENS__VW), dt);
        TLENS__UNROLL
        for (r = 0; r < rows; r++) {
            tlens__vf x = TLENS__V_SET1(in_strip ? a[(size_t)k * TLENS__MR + (size_t)r] : a[(size_t)r * lda + (size_t)k]);
            TLENS__UNROLL
            for (v = 0; v < TLENS__NV; v++) acc[r][v] = TLENS__V_FMA(x, w[v], acc[r][v]);
        }
    }
    TLENS__UNROLL
    for (r = 0; r < rows; r++) {
        TLENS__UNROLL
        for (v = 0; v < TLENS__NV; v++)
            TLENS__V_STORE(c + (size_t)r * ldc + (size_t)(v * TLENS__VW), acc[r][v]);
    }
}

/* tlens__tile for a fixed row count, for each element type and layout
 * of the activations. */
#define TLENS__TILE_TYPES(ROWS, IN_STRIP, t)                                      \
    do {                                                                          \
        if ((t)->dt == TLENS_F16) tlens__tile(ROWS, TLENS_F16, IN_STRIP, t);      \
        else if ((t)->dt == TLENS_BF16) tlens__tile(ROWS, TLENS_BF16, IN_STRIP, t); \
        else tlens__tile(ROWS, TLENS_F32, IN_STRIP, t);                           \
    } while (0)
#define TLENS__TILE_FUNCTION(NAME, ROWS)                       \
    static void NAME(const tlens__tile_args *t) {              \
        if (t->a_strip) TLENS__TILE_TYPES(ROWS, 1, t);         \
        else TLENS__TILE_TYPES(ROWS, 0, t);                    \
    }
TLENS__TILE_FUNCTION(tlens__tile_mr, TLENS__MR)
TLENS__TILE_FUNCTION(tlens__tile_1, 1)
#if TLENS__MR > 2
TLENS__TILE_FUNCTION(tlens__tile_2, 2)
#endif
#if TLENS__MR > 4
TLENS__TILE_FUNCTION(tlens__tile_4, 4)
#endif
#if TLENS__MR > 8
TLENS__TILE_FUNCTION(tlens__tile_8, 8)
#endif

/* Full-width tiles (KCOLS columns) for any number of rows: MR-row tiles,
 * then the rest as 8 + 4 + 2 + 1 rows. */
static void tlens__tiles_full_width(tlens__tile_args t, int rows) {
    while (rows > 0) {
        int n = rows >= TLENS__MR ? TLENS__MR : rows >= 8 ? 8 : rows >= 4 ? 4 : rows >= 2 ? 2 : 1;
        if (n == TLENS__MR) tlens__tile_mr(&t);
#if TLENS__MR > 8
        else if (n == 8) tlens__tile_8(&t);
#endif
#if TLENS__MR > 4
        else if (n == 4) tlens__tile_4(&t);
#endif
#if TLENS__MR > 2
        else if (n == 2) tlens__tile_2(&t);
#endif
        else tlens__tile_1(&t);
        if (t.next_lines > 0) { /* the lines this tile asked for */
            size_t asked = tlens__min_size(t.next_lines, (size_t)t.kc);
            t.next += asked * 64;
            t.next_lines -= asked;
        }
        t.a += !t.a_strip ? (size_t)n * t.lda : n == TLENS__MR ? t.a_strip : (size_t)n; /* the next strip, or within the last */
        t.c += (size_t)n * t.ldc;
        rows -= n;
    }
}

/* Tiles whose last `cols` < KCOLS columns exist in c: each MR-row chunk is
 * computed in a full-width copy on the stack. b must be readable (zeros,
 * say) up to KCOLS columns. */
static void tlens__tiles_narrow(tlens__tile_args t, int rows, int cols) {
    float tile[TLENS__MR * TLENS__KCOLS], bias[TLENS__KCOLS];
    float *c = t.c;
    size_t ldc = t.ldc, n = (size_t)cols;
    int r, r0;
    memset(tile, 0, sizeof tile);
    if (t.bias && !t.resume) {
        memset(bias, 0, sizeof bias);
        memcpy(bias, t.bias, n * sizeof(float));
        t.bias = bias;
    }
    t.c = tile;
    t.ldc = TLENS__KCOLS;
    for (r0 = 0; r0 < rows; r0 += TLENS__MR) {
        int chunk = tlens__min_int(rows - r0, TLENS__MR);
        float *c0 = c + (size_t)r0 * ldc;
        if (t.resume)
            for (r = 0; r < chunk; r++)
                memcpy(tile + r * TLENS__KCOLS, c0 + (size_t)r * ldc, n * sizeof(float));
        tlens__tiles_full_width(t, chunk);
        for (r = 0; r < chunk; r++)
            memcpy(c0 + (size_t)r * ldc, tile + r * TLENS__KCOLS, n * sizeof(float));
        t.a += t.a_strip ? t.a_strip : (size_t)chunk * t.lda;
    }
}

static void tlens__tiles(const tlens__tile_args *t, int rows, int cols) {
    if (cols >= TLENS__KCOLS) tlens__tiles_full_width(*t, rows);
    else tlens__tiles_narrow(*t, rows, cols);
}

/* A product out (M, N) = a (M, k_count) @ W[k_begin .. k_begin + k_count)
 * + bias (tlens__matmul's arguments plus a range of W's rows), and how it
 * is cut into work items: row blocks of MC rows x groups of item_panels
 * panels, numbered group by group. */
typedef struct tlens__matmul_job {
    float *out;
    const float *a;
    size_t lda;
    const float *strips; /* a in MR-row strips (tlens__interleave_rows), or NULL */
    const tlens__mat *w;
    int k_begin, k_count;
    const float *bias;
    int M, panels, item_panels, row_blocks;
} tlens__matmul_job;

/* Whether the MR rows of an activation tile, lda floats apart, crowd one
 * set of the L1 cache. A set holds the lines whose addresses agree modulo
 * 4 KB (32 KB, 8 ways; 64 KB 4-way L1s span 16 KB and are served at
 * least as well); the kernel reads one line of every tile row at a time.
 * When lda * 4 is a multiple of 4 KB (K = 1024, 2048, 3072, 4096: GPT-2's
 * MLP output projections) all MR lines fall into one set, more than it
 * has ways, and evict each other at every step: then tiles are packed.
 * With K = 768 only every fourth row shares a set. */
static size_t tlens__gcd(size_t a, size_t b) {
    while (b) {
        size_t r = a % b;
        a = b;
        b = r;
    }
    return a;
}

static int tlens__rows_crowd_l1(size_t lda) {
    size_t span = 4096, period = span / tlens__gcd(lda * sizeof(float) % span, span); /* rows until a set repeats */
    return (TLENS__MR + period - 1) / period > 4;
}

/* rows x kc activations (row stride lda) copied into buf, row stride kc. */
static void tlens__pack_rows(float *buf, const float *a, size_t lda, int rows, int kc) {
    int r;
    for (r = 0; r < rows; r++)
        memcpy(buf + (size_t)r * (size_t)kc, a + (size_t)r * lda, (size_t)kc * sizeof(float));
}

/* Panels per work item when tiles are packed: every item copies its
 * activation tiles anew, so wider items copy less (at K = 3072, T = 1024
 * the copies took 3% of the pass with 4 panels an item). Widen while
 * there are still 4 items per thread for the dynamic schedule to balance. */
static int tlens__packed_item_panels(const tlens__matmul_job *job) {
    int width = TLENS__GP, threads = 1;
#ifdef _OPENMP
    threads = omp_get_max_threads();
#endif
    while (2 * width <= job->panels &&
           job->row_blocks * ((job->panels + 2 * width - 1) / (2 * width)) >= 4 * threads)
        width *= 2;
    return width;
}

/* While the tiles of panel p's K block starting at k0 run, ask for the
 * block of W the item needs next (the next panel's, or the first panel's
 * next K block): otherwise the first tile of every block waits for it to
 * come from memory (32 KB in f32). With few rows per block that wait is
 * much of the work: asking ahead took GPT-2's 50257-column unembedding
 * from 103 to ~165 GFLOP/s at M = 16 and by ~15% at M = 128 (2 threads,
 * Sapphire Rapids). Only the first row group asks. */
static void tlens__ask_next_block(tlens__tile_args *t, const tlens__matmul_job *job, int p, int panel0,
                                  int panel_end, int k0, int first_rows) {
    const tlens__mat *w = job->w;
    size_t esize = tlens__dtype_size(w->dtype);
    int kc;
    t->next_lines = 0;
    if (!first_rows) return;
    if (++p == panel_end) {
        p = panel0;
        k0 += TLENS__KC;
    }
    if (k0 >= job->k_count) return;
    kc = tlens__min_int(TLENS__KC, job->k_count - k0);
    t->next = (const char *)w->data +
              ((size_t)p * (size_t)w->K + (size_t)(job->k_begin + k0)) * TLENS__PANEL * esize;
    t->next_lines = (size_t)kc * TLENS__PANEL * esize / 64;
}

/* One work item: its rows x its panels, over the whole K range. Each
 * panel's KC-step block is read once into the L1 cache and serves all the
 * item's row tiles, whose activations come from the L2: from the job's
 * strips, or read in place. When rows read in place crowd an L1 set
 * (tlens__rows_crowd_l1), they are instead copied,
 * TLENS__PACK_ROWS at a time and once per KC block, to the stack and used
 * for all the panels. */
static void tlens__matmul_item(const tlens__matmul_job *job, int item) {
    const tlens__mat *w = job->w;
    size_t esize = tlens__dtype_size(w->dtype);
    int row0 = item % job->row_blocks * TLENS__MC, rows = tlens__min_int(TLENS__MC, job->M - row0);
    int panel0 = item / job->row_blocks * job->item_panels;
    int panel_end = tlens__min_int(panel0 + job->item_panels, job->panels);
    int pack = rows > 1 && !job->strips && tlens__rows_crowd_l1(job->lda), group = pack ? TLENS__PACK_ROWS : TLENS__MC;
    int N = w->N, k0, r0, p, s;
    float packed[TLENS__PACK_ROWS * TLENS__KC];
    tlens__tile_args t;
    t.ldb = TLENS__PANEL;
    t.dt = w->dtype;
    t.ldc = (size_t)N;
    for (k0 = 0; k0 < job->k_count; k0 += TLENS__KC) {
        size_t k = (size_t)(job->k_begin + k0); /* row of W */
        t.kc = tlens__min_int(TLENS__KC, job->k_count - k0);
        t.resume = k0 > 0;
        for (r0 = 0; r0 < rows; r0 += group) {
            int chunk = tlens__min_int(group, rows - r0);
            t.lda = job->lda;
            t.a_strip = job->strips ? (size_t)job->k_count * TLENS__MR : 0;
            if (job->strips) /* row0 + r0 starts a strip */
                t.a = job->strips + (size_t)((row0 + r0) / TLENS__MR) * t.a_strip + (size_t)k0 * TLENS__MR;
            else
                t.a = job->a + (size_t)(row0 + r0) * job->lda + (size_t)k0;
            if (pack) {
                tlens__pack_rows(packed, t.a, t.lda, chunk, t.kc);
                t.a = packed;
                t.lda = (size_t)t.kc;
            }
            for (p = panel0; p < panel_end; p++) {
                const char *panel = (const char *)w->data + (size_t)p * (size_t)w->K * TLENS__PANEL * esize;
                tlens__ask_next_block(&t, job, p, panel0, panel_end, k0, r0 == 0);
                for (s = 0; s < TLENS__PANEL; s += TLENS__KCOLS) {
                    int col = p * TLENS__PANEL + s;
                    if (col >= N) break;
                    t.b = panel + (k * TLENS__PANEL + (size_t)s) * esize;
                    t.c = job->out + (size_t)(row0 + r0) * t.ldc + (size_t)col;
                    t.bias = job->bias ? job->bias + col : NULL;
                    tlens__tiles(&t, chunk, N - col);
                    t.next_lines = 0; /* asked for by the panel's first KCOLS columns */
                }
            }
        }
    }
}

/* out (M, N) = a (M, k_count; row stride lda) @ W[k_begin .. k_begin +
 * k_count) + bias (may be NULL): a product with some of W's rows, such as
 * one attention head's part of W_O. out must not overlap a. `strips`, when
 * not NULL, holds a's rows in strips (tlens__interleave_rows), which the
 * kernel then reads instead of a when M > 1. */
static void tlens__matmul_rows(float *out, const float *a, int lda, const float *strips, const tlens__mat *w,
                               int k_begin, int k_count, const float *bias, int M) {
    tlens__matmul_job job;
    int items, item;
    if (M <= 0 || w->N <= 0) return;
    if (k_count <= 0) { /* an empty sum: the bias */
        int i;
        for (i = 0; i < M; i++) {
            float *o = out + (size_t)i * (size_t)w->N;
            if (bias) memcpy(o, bias, (size_t)w->N * sizeof(float));
            else memset(o, 0, (size_t)w->N * sizeof(float));
        }
        return;
    }
    job.out = out;
    job.a = a;
    job.lda = (size_t)lda;
    job.strips = M > 1 ? strips : NULL;
    job.w = w;
    job.k_begin = k_begin;
    job.k_count = k_count;
    job.bias = bias;
    job.M = M;
    job.panels = tlens__mat_panels(w->N);
    job.item_panels = M == 1 ? 1 : TLENS__GP;
    job.row_blocks = (M + TLENS__MC - 1) / TLENS__MC;
    if (M > 1 && !job.strips && tlens__rows_crowd_l1(job.lda)) job.item_panels = tlens__packed_item_panels(&job);
    items = job.row_blocks * ((job.panels + job.item_panels - 1) / job.item_panels);
#ifdef _OPENMP
    if (M == 1) {
        /* A matrix-vector product, bound by memory bandwidth: each thread
         * streams one contiguous part of W, which memory serves best. */
#pragma omp parallel for schedule(static) if ((double)k_count * w->N >= TLENS__PARALLEL_MIN && !omp_in_parallel())
        for (item = 0; item < items; item++) tlens__matmul_item(&job, item);
        return;
    }
    /* Dynamic: threads slowed down (by other programs, or by edge items)
     * take fewer items. */
#pragma omp parallel for schedule(dynamic) if ((double)M * k_count * w->N >= TLENS__PARALLEL_MIN && !omp_in_parallel())
#endif
    for (item = 0; item < items; item++) tlens__matmul_item(&job, item);
}

/* out (M, N) = a (M, K) @ W + bias (may be NULL); a and out row-major
 * contiguous, not overlapping. (The forward pass goes through strips:
 * tlens__linear.) */
TLENS__MAYBE_UNUSED static void tlens__matmul(float *out, const float *a, const tlens__mat *w, const float *bias, int M) {
    tlens__matmul_rows(out, a, w->K, NULL, w, 0, w->K, bias, M);
}

/* The rows of a (M, K; row stride lda) as MR-row strips: strip i holds
 * rows i MR .. i MR + MR - 1 as K steps of MR adjacent values, a[k][r]
 * (the last strip's missing rows are never read). See "How a product is
 * computed" above for why. Threads take whole strips; each strip is
 * written a K block at a time, which stays in the L1. */
static void tlens__interleave_rows(float *strips, const float *a, size_t lda, int M, int K) {
    int n_strips = (M + TLENS__MR - 1) / TLENS__MR, i;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)M * K >= 65536.0 && !omp_in_parallel())
#endif
    for (i = 0; i < n_strips; i++) {
        float *strip = strips + (size_t)i * (size_t)K * TLENS__MR;
        int rows = tlens__min_int(TLENS__MR, M - i * TLENS__MR), r, k, k0;
        for (k0 = 0; k0 < K; k0 += TLENS__KC) { /* a block of the strip stays in the L1 */
            int kend = tlens__min_int(K, k0 + TLENS__KC);
            for (r = 0; r < rows; r++) {
                const float *row = a + (size_t)(i * TLENS__MR + r) * lda;
                for (k = k0; k < kend; k++) strip[(size_t)k * TLENS__MR + (size_t)r] = row[k];
            }
        }
    }
}

/* The activation x activation product z = pattern @ v. The right operand
 * is not packed, so blocks of it are copied into panel form (KC x KCOLS
 * floats, 32 KB at most, on the stack) where the kernel cannot read it in
 * place (a last block narrower than KCOLS) or should not (a block that
 * several row tiles read).
 * Work items and determinism as for tlens__matmul. Called inside an
 * enclosing OpenMP parallel region (attention split by head, say) it runs
 * on the calling thread. */
typedef struct tlens__gemm_job {
    float *c;
    size_t ldc;
    const float *a;
    size_t lda;
    const float *b;
    size_t ldb;
    int K;
} tlens__gemm_job;

/* buf[k][j] = b[k0 + k][col + j] for j < cols, zero for cols <= j < KCOLS. */
static void tlens__copy_block_nn(float *buf, const tlens__gemm_job *job, int k0, int kc, int col,
                                 int cols) {
    int k, v;
    if (cols == TLENS__KCOLS) { /* whole vectors */
        for (k = 0; k < kc; k++) {
            const float *src = job->b + (size_t)(k0 + k) * job->ldb + (size_t)col;
            float *dst = buf + (size_t)k * TLENS__KCOLS;
            for (v = 0; v < TLENS__NV; v++) TLENS__V_STORE(dst + v * TLENS__VW, TLENS__V_LOAD(src + v * TLENS__VW));
        }
        return;
    }
    memset(buf, 0, (size_t)kc * TLENS__KCOLS * sizeof(float));
    for (k = 0; k < kc; k++)
        memcpy(buf + (size_t)k * TLENS__KCOLS, job->b + (size_t)(k0 + k) * job->ldb + (size_t)col,
               (size_t)cols * sizeof(float));
}

/* One work item: rows [row0, row0 + rows) x columns [col0, col0 + cols). */
static void tlens__gemm_item(const tlens__gemm_job *job, int row0, int rows, int col0, int cols) {
    float buf[TLENS__KC * TLENS__KCOLS];
    tlens__tile_args t;
    int k0, col;
    t.lda = job->lda;
    t.a_strip = 0;
    t.dt = TLENS_F32;
    t.ldc = job->ldc;
    t.bias = NULL;
    t.next_lines = 0;
    for (k0 = 0; k0 < job->K; k0 += TLENS__KC) {
        t.kc = tlens__min_int(TLENS__KC, job->K - k0);
        t.resume = k0 > 0;
        t.a = job->a + (size_t)row0 * job->lda + (size_t)k0;
        for (col = col0; col < col0 + cols; col += TLENS__KCOLS) {
            int width = tlens__min_int(TLENS__KCOLS, col0 + cols - col);
            /* A block that several row tiles read is copied too: b's rows
             * are far apart (attention's values: d_model floats) and their
             * lines fall into few L1 sets, so the block would come from the
             * L2 for every tile; copied, it stays in the L1 (z = pattern v
             * ~15% faster at T = 1024). */
            if (width < TLENS__KCOLS || rows > TLENS__MR) {
                tlens__copy_block_nn(buf, job, k0, t.kc, col, width);
                t.b = buf;
                t.ldb = TLENS__KCOLS;
            } else { /* one row tile: read b in place */
                t.b = job->b + (size_t)k0 * job->ldb + (size_t)col;
                t.ldb = job->ldb;
            }
            t.c = job->c + (size_t)row0 * job->ldc + (size_t)col;
            tlens__tiles(&t, rows, width);
        }
    }
}

static void tlens__gemm(const tlens__gemm_job *job, int M, int N) {
    int item_cols = TLENS__GP * TLENS__PANEL;
    int row_blocks = (M + TLENS__MC - 1) / TLENS__MC;
    int groups = (N + item_cols - 1) / item_cols;
    int items = row_blocks * groups, item;
    if (M <= 0 || N <= 0) return;
    if (job->K <= 0) {
        int i;
        for (i = 0; i < M; i++) memset(job->c + (size_t)i * job->ldc, 0, (size_t)N * sizeof(float));
        return;
    }
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic) if ((double)M * N * job->K >= TLENS__PARALLEL_MIN && !omp_in_parallel())
#endif
    for (item = 0; item < items; item++) {
        int group = item / row_blocks, block = item % row_blocks;
        int row0 = block * TLENS__MC, col0 = group * item_cols;
        tlens__gemm_item(job, row0, tlens__min_int(TLENS__MC, M - row0), col0,
                         tlens__min_int(item_cols, N - col0));
    }
}

static tlens__gemm_job tlens__gemm_args(float *c, int ldc, const float *a, int lda, const float *b,
                                        int ldb, int K) {
    tlens__gemm_job job;
    job.c = c;
    job.ldc = (size_t)ldc;
    job.a = a;
    job.lda = (size_t)lda;
    job.b = b;
    job.ldb = (size_t)ldb;
    job.K = K;
    return job;
}

/* c (M x N) = a (M x K) @ b (K x N): z = pattern @ v. */
TLENS__MAYBE_UNUSED static void tlens__gemm_nn(float *c, int ldc, const float *a, int lda,
                                               const float *b, int ldb, int M, int N, int K) {
    tlens__gemm_job job = tlens__gemm_args(c, ldc, a, lda, b, ldb, K);
    tlens__gemm(&job, M, N);
}

#if defined(__cplusplus) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

/* dst[i] = src[offset + i] as float, for i < n, src of type dt. */
static void tlens__decode_rows(float *dst, const void *src, size_t offset, size_t n, tlens_dtype dt) {
    size_t i;
    if (dt == TLENS_F32) { memcpy(dst, (const float *)src + offset, n * sizeof(float)); return; }
    for (i = 0; i < n; i++) dst[i] = tlens__load_elem(src, offset + i, dt);
}

/* ------------------------------------------------------------------------
 * 3.6 The model: parameters, configuration, safetensors, Hugging Face
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
    tlens_tokenizer *tokenizer; /* from vocab.json + merges.txt, or NULL  */
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
    size_t i = 0;
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
 * every tensor starts on a cache line (and on any SIMD alignment). A size
 * that overflows saturates, so that any sum of it overflows too (and is
 * refused) instead of wrapping to a small buffer. */
static size_t tlens__param_bytes(const tlens__param *p, tlens_dtype dt) {
    size_t width = p->kind == TLENS__VEC ? 4u : tlens__dtype_size(dt), n;
    size_t cols = p->kind == TLENS__PACKED ? (size_t)tlens__mat_panels(p->cols) * TLENS__PANEL : (size_t)p->cols;
    if (!tlens__mul_ok((size_t)p->rows, cols, &n) || !tlens__mul_ok(n, width, &n) || !tlens__add_ok(n, 63u, &n))
        return (size_t)-1 & ~(size_t)63u;
    return n & ~(size_t)63u;
}

/* The parameter buffer for table t: the tensors' padded bytes plus 64 to
 * align its start; 0 when the sum overflows size_t. */
static size_t tlens__params_size(const tlens__param *t, int n, tlens_dtype dt) {
    size_t total = 64;
    int i;
    for (i = 0; i < n; i++)
        if (!tlens__add_ok(total, tlens__param_bytes(&t[i], dt), &total)) return 0;
    return total;
}

/* An upper bound, in floats, of the parameter buffer (every tensor of the
 * unfolded table in float32, matrices padded to whole 32-column panels and
 * each tensor to 16 floats) and of the float32 state of 3.7. The padding
 * counts: a d_model of 1 stores every W_out column as a 32-wide panel.
 * 0 when it overflows size_t. */
static int tlens__param_floats(const tlens_config *c, size_t *out) {
    size_t D = ((size_t)c->d_model + 31u) & ~(size_t)31u, M = ((size_t)c->d_mlp + 31u) & ~(size_t)31u;
    size_t V = ((size_t)c->d_vocab + 31u) & ~(size_t)31u, P = (size_t)c->n_ctx, layers, embed;
    /* per layer: W_QKV, W_O, W_in, W_out, vectors of <= 9 D + M floats, 12 paddings */
    return tlens__mul_ok(D, 4u * D + 2u * M + 16u, &layers) && tlens__add_ok(layers, M + 12u * 16u, &layers) &&
           tlens__mul_ok(layers, (size_t)c->n_layers, &layers) &&
           /* W_E, W_U, W_pos and ln_final (<= (2 V + P + 2) D), b_U, 6 paddings */
           tlens__mul_ok(2u * V + P + 2u, D, &embed) && tlens__add_ok(embed, V + 6u * 16u, &embed) &&
           tlens__add_ok(layers, embed, out);
}

/* Validate a configuration: every size positive, d_model divisible by
 * n_heads, and the whole parameter count representable. Bounds are far
 * above gpt2-xl (48 layers, 1600 wide) but stop absurd headers early. */
static tlens_result tlens__config_check(const tlens_config *c, const char *what, tlens_error *err) {
    size_t total, bytes;
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
    /* in bytes, twice: loading holds the float32 state and the buffer at once */
    if (!tlens__param_floats(c, &total) || !tlens__mul_ok(total, 8, &bytes))
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
TLENS__NOSTDIO_UNUSED static tlens_result tlens__config_parse(tlens_config *c, const char *text, size_t len, const char *what,
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
    /* 4 * n_embd only once n_embd is known to be small: config_check names it */
    c->d_mlp = d_mlp ? d_mlp : c->d_model > 0 && c->d_model <= 65536 ? 4 * c->d_model : 1;
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
TLENS__NOSTDIO_UNUSED static tlens_result tlens__st_parse(tlens__st *st, const char *header, size_t header_len, uint64_t file_size,
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

TLENS__NOSTDIO_UNUSED static const tlens__st_entry *tlens__st_find(const tlens__st *st, const char *name) {
    int i;
    for (i = 0; i < st->count; i++)
        if (strcmp(st->entries[i].name, name) == 0) return &st->entries[i];
    return NULL;
}

/* ------------------------------------------------------------------------
 * 3.7 Weight processing, as TransformerLens' from_pretrained does it
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
    for (k = 0; k < K; k++) {
        const float *row = W + (size_t)k * (size_t)N;
        for (n = 0; n < N; n++) b[n] += lb[k] * row[n];
    }
    for (k = 0; k < K; k++) {
        float *row = W + (size_t)k * (size_t)N;
        for (n = 0; n < N; n++) row[n] *= w[k];
    }
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

/* Build the model's tokenizer from the vocab.json / merges.txt it keeps. */
static tlens_result tlens__model_tokenizer(tlens_model *m, tlens_error *err) {
    if (!m->vocab_json || !m->merges_txt) return TLENS_OK;
    return tlens_tokenizer_load_memory(&m->tokenizer, m->vocab_json, m->vocab_len, m->merges_txt, m->merges_len,
                                       &m->alloc, err);
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
    size_t total;
    unsigned char *base;
    if (!t) return TLENS_ERR_NOMEM;
    if (!m->processing && m->cfg.tied) m->W_E = NULL; /* read from W_U's columns */
    else m->W_E = s->W_E; /* anything non-NULL: the table includes it */
    n = tlens__param_table(m, t);
    total = tlens__params_size(t, n, m->wdtype);
    base = total ? (unsigned char *)tlens__alloc(&m->alloc, total) : NULL;
    if (!base) {
        tlens__free(&m->alloc, t);
        if (!total) return tlens__fail(err, TLENS_ERR_NOMEM, "the parameters' size overflows this machine's address space");
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
            if ((r = tlens__model_tokenizer(m, err))) goto done;
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
 * 3.8 The .tlens file format
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
 *   64      4     matrix layout (TLENS__MAT_LAYOUT: the packing of 3.5)
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
 * The tensor list is exactly the parameter table of 3.6 for the stored
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
 * offset in offs[]. Tensors follow the header in table order without
 * overlapping: a file whose tensors share bytes would claim more data than
 * it holds, and the copy of a misaligned file would add those sizes up. */
static tlens_result tlens__tlens_table(const unsigned char *d, size_t size, const tlens__param *t, int n,
                                       tlens_dtype dt, uint64_t *offs, tlens_error *err) {
    const unsigned char *h = d;
    uint64_t table = tlens__le64(h + 72), end = TLENS__HEADER_SIZE;
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
        if (off < end)
            return tlens__fail(err, TLENS_ERR_FORMAT,
                               ".tlens: tensor %s at offset %llu overlaps the header or the tensor before it "
                               "(offsets must increase)", t[i].name, (unsigned long long)off);
        offs[i] = off;
        end = off + bytes; /* no overflow: inside the file */
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
    size_t total, off = 0;
    unsigned char *base = NULL;
    if (!in_place) {
        if (!(total = tlens__params_size(t, n, m->wdtype)))
            return tlens__fail(err, TLENS_ERR_NOMEM, ".tlens: the parameters' size overflows this machine's address space");
        m->params = tlens__alloc(&m->alloc, total);
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
    tlens_load_options defaults;
    const unsigned char *d = (const unsigned char *)data;
    tlens_config cfg;
    tlens_dtype dt = TLENS_F32;
    int processing = 0, want, n;
    tlens_model *m = NULL;
    tlens__param *t = NULL;
    uint64_t *offs = NULL;
    tlens_result r;
    memset(&defaults, 0, sizeof defaults);
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
    if (!opt->no_tokenizer && ((r = tlens__tlens_tokenizer(m, d, size, err)) || (r = tlens__model_tokenizer(m, err))))
        goto done;
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
    tlens_tokenizer_free(m->tokenizer);
    tlens__free(&a, m);
}

TLENS_DEF const tlens_config *tlens_model_config(const tlens_model *m) { return &m->cfg; }

TLENS_DEF int tlens_model_processed(const tlens_model *m) { return m->processing != 0; }

TLENS_DEF const tlens_tokenizer *tlens_model_tokenizer(const tlens_model *m) { return m->tokenizer; }

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
    unsigned char zeros[64] = {0};
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
    if (!(t = tlens__table_alloc(m, err))) return TLENS_ERR_NOMEM;
    {
        /* the table wires pointers into a copy of the model's slots */
        tlens_model copy = *m;
        tlens__block *blocks = (tlens__block *)tlens__alloc(&m->alloc, (size_t)m->cfg.n_layers * sizeof *blocks);
        if (!blocks) { tlens__free(&m->alloc, t); return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory"); }
        memcpy(blocks, m->blocks, (size_t)m->cfg.n_layers * sizeof *blocks);
        copy.blocks = blocks;
        n = tlens__param_table(&copy, t);
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
            unsigned char zeros[64] = {0};
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
    tlens_load_options defaults;
    char cfg[4096];
    char *data = NULL, *aligned = NULL;
    size_t size = 0;
    tlens_result r;
    tlens_model *m;
    memset(&defaults, 0, sizeof defaults);
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
    int sae_site;           /* a host: 1 + its SAE's site (3.15), 0: none */
    int sae_host;           /* an SAE's own point: 1 + its host, 0: not   */
} tlens__point;

/* A sparse autoencoder spliced into a hook point (3.15). */
typedef struct tlens__sae_site tlens__sae_site;

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
    float *keys_packed;     /* (B, H) x this layer's keys / attn_scale, packed: tlens__pack_keys */
    float *keys_now;        /* the packed keys attention reads this layer: */
    size_t keys_panels;     /* keys_packed, or the cache's kv_kp; panels per (b, h) */
    float *mlp_pre, *mlp_post, *mlp_out, *logits;
    float *strips;          /* a product's input in MR-row strips: tlens__interleave_rows */
    float *head_in[4];      /* optional per-head inputs: attn_in, q, k, v */
    int head_inputs_edited;
    int32_t *tokens;        /* ids after an edit at hook_tokens */
    int last_logits_only;   /* this run keeps one position of logits */
    void (*logits_rows)(void *, int, int, const float *); /* this run streams its logits */
    void *logits_user;
    int *positions;         /* (B, T) position of each token */
    tlens_tensor logits_tensor, resid_tensor;
    /* the key/value cache: (n_layers, B, kv_cap, D) each */
    int kv_on, kv_len, kv_cap, kv_batch;
    float *kv_k, *kv_v;
    float *kv_kp;           /* (n_layers, B, H) x the keys packed as for attention, */
    int *kv_packed;         /* kv_cap / PANEL + 1 panels each; keys packed per layer */
    unsigned char *key_mask;/* (B, mask_stride): 0 for padding; NULL: all real */
    int mask_stride;
    unsigned char *mask_buf;
    tlens__sae_site *sae_sites; /* attached SAEs (3.15) */
    int n_sae_sites;
};

static void tlens__sae_sites_free(tlens_ctx *ctx);
#ifndef TLENS_NO_HOOKS
static int tlens__sae_splice(tlens_ctx *ctx, int host, tlens_tensor *t);
#endif

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

/* One token's row of point i, from the model's shape: its dimensions into
 * shape, their number returned (0 for hook_tokens), or -1 for
 * attn_scores / pattern, whose key axis gives no row per token. */
TLENS__MAYBE_UNUSED static int tlens__point_row_shape(const tlens_ctx *ctx, int i, int *shape) {
    const tlens_config *c = &ctx->m->cfg;
    int first_post = TLENS__HP_GLOBAL_PRE + c->n_layers * TLENS__HP_PER_BLOCK;
    shape[0] = c->d_model;
    if (i == TLENS__HP_TOKENS) return 0;
    if (i < TLENS__HP_GLOBAL_PRE) return 1;
    if (i >= first_post) {
        if (i - first_post == TLENS__HP_LNF_SCALE) shape[0] = 1;
        return 1;
    }
    switch ((i - TLENS__HP_GLOBAL_PRE) % TLENS__HP_PER_BLOCK) {
    case TLENS__HP_ATTN_SCORES: case TLENS__HP_PATTERN: return -1;
    case TLENS__HP_LN1_SCALE: case TLENS__HP_LN2_SCALE: shape[0] = 1; return 1;
    case TLENS__HP_MLP_PRE: case TLENS__HP_MLP_POST: shape[0] = c->d_mlp; return 1;
    case TLENS__HP_Q: case TLENS__HP_K: case TLENS__HP_V: case TLENS__HP_Z:
        shape[0] = c->n_heads;
        shape[1] = c->d_head;
        return 2;
    case TLENS__HP_ATTN_IN: case TLENS__HP_Q_INPUT: case TLENS__HP_K_INPUT: case TLENS__HP_V_INPUT:
    case TLENS__HP_RESULT:
        shape[0] = c->n_heads;
        shape[1] = c->d_model;
        return 2;
    default: return 1;
    }
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
        p->active = (unsigned char)(p->n_hooks || p->cached ||
                                    (p->sae_site && (!p->optional || ctx->optional_hooks)));
        if (p->active && p->layer >= 0 && !p->sae_host &&
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
    if (p->sae_site) return tlens__sae_splice(ctx, i, t); /* the SAE's output flows on */
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

/* e^x for a vector, through the macro layer of 3.5: x log2(e) = n + f with
 * n whole and |f| <= 1/2, e^x = 2^n 2^f, 2^f by a degree-6 polynomial
 * (relative error below 4e-7). x is clamped to [-88, 88.3]: at the low end
 * 2^n underflows to an exact 0, so e^-inf (a masked score) is exactly 0. */
TLENS__ALWAYS_INLINE tlens__vf tlens__v_exp(tlens__vf x) {
    tlens__vf t, n, f, p;
    x = TLENS__V_MIN(TLENS__V_MAX(x, TLENS__V_SET1(-88.0f)), TLENS__V_SET1(88.3f));
    t = TLENS__V_MUL(x, TLENS__V_SET1(1.44269504088896341f));
    n = TLENS__V_ROUND(t);
    f = TLENS__V_SUB(t, n);
    p = TLENS__V_SET1(1.535336188319500e-4f);
    p = TLENS__V_FMA(p, f, TLENS__V_SET1(1.339887440266574e-3f));
    p = TLENS__V_FMA(p, f, TLENS__V_SET1(9.618437357674640e-3f));
    p = TLENS__V_FMA(p, f, TLENS__V_SET1(5.550332471162809e-2f));
    p = TLENS__V_FMA(p, f, TLENS__V_SET1(2.402264791363012e-1f));
    p = TLENS__V_FMA(p, f, TLENS__V_SET1(6.931472028550421e-1f));
    p = TLENS__V_FMA(p, f, TLENS__V_SET1(1.0f));
    return TLENS__V_MUL(p, TLENS__V_POW2(n));
}

/* Loops over n floats in whole vectors; the last partial vector goes
 * through a padded copy, so every element takes the same vector code. */
#define TLENS__FOR_VECTORS(i, n)                                          \
    for ((i) = 0; (i) + TLENS__VW <= (n); (i) += TLENS__VW)
#define TLENS__TAIL_LOAD(buf, src, count, pad)                                    \
    do {                                                                          \
        int tlens__k;                                                             \
        for (tlens__k = 0; tlens__k < TLENS__VW; tlens__k++)                      \
            (buf)[tlens__k] = tlens__k < (count) ? (src)[tlens__k] : (pad);       \
    } while (0)

/* LayerNorm statistics of each row of x (R, D): its mean and
 * scale = sqrt(mean((x - mean)^2) + eps), as TransformerLens computes them
 * (centre first, then the mean of squares). */
static void tlens__layernorm_stats(const float *x, float *mean, float *scale, int R, int D, float eps) {
    int r, i;
    for (r = 0; r < R; r++) {
        const float *row = x + (size_t)r * (size_t)D;
        tlens__vf acc = TLENS__V_ZERO();
        float s, v, buf[TLENS__VW];
        TLENS__FOR_VECTORS(i, D) acc = TLENS__V_ADD(acc, TLENS__V_LOAD(row + i));
        TLENS__TAIL_LOAD(buf, row + i, D - i, 0.0f);
        s = (TLENS__V_SUM(acc) + TLENS__V_SUM(TLENS__V_LOAD(buf))) / (float)D;
        acc = TLENS__V_ZERO();
        TLENS__FOR_VECTORS(i, D) {
            tlens__vf d = TLENS__V_SUB(TLENS__V_LOAD(row + i), TLENS__V_SET1(s));
            acc = TLENS__V_FMA(d, d, acc);
        }
        TLENS__TAIL_LOAD(buf, row + i, D - i, s);
        {
            tlens__vf d = TLENS__V_SUB(TLENS__V_LOAD(buf), TLENS__V_SET1(s));
            v = TLENS__V_SUM(TLENS__V_FMA(d, d, acc)) / (float)D;
        }
        mean[r] = s;
        scale[r] = sqrtf(v + eps);
    }
}

/* out = (x - mean) / scale, then * w + b when the LayerNorm has weights. */
static void tlens__layernorm_apply(const float *x, const float *mean, const float *scale, const float *w,
                                   const float *b, float *out, int R, int D) {
    int r, i;
    for (r = 0; r < R; r++) {
        const float *row = x + (size_t)r * (size_t)D;
        float *o = out + (size_t)r * (size_t)D;
        tlens__vf mu = TLENS__V_SET1(mean[r]), sc = TLENS__V_SET1(scale[r]);
        TLENS__FOR_VECTORS(i, D) {
            tlens__vf y = TLENS__V_DIV(TLENS__V_SUB(TLENS__V_LOAD(row + i), mu), sc);
            if (w) y = TLENS__V_FMA(y, TLENS__V_LOAD(w + i), TLENS__V_LOAD(b + i));
            TLENS__V_STORE(o + i, y);
        }
        for (; i < D; i++) {
            float y = (row[i] - mean[r]) / scale[r];
            o[i] = w ? y * w[i] + b[i] : y;
        }
    }
}

/* gelu_new(x) = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), with
 * tanh(u) = 1 - 2 / (e^(2u) + 1). */
TLENS__ALWAYS_INLINE tlens__vf tlens__v_gelu_new(tlens__vf x) {
    tlens__vf x3 = TLENS__V_MUL(TLENS__V_MUL(x, x), x);
    tlens__vf u = TLENS__V_MUL(TLENS__V_SET1(0.7978845608028654f), TLENS__V_FMA(TLENS__V_SET1(0.044715f), x3, x));
    tlens__vf e = tlens__v_exp(TLENS__V_ADD(u, u));
    tlens__vf th = TLENS__V_SUB(TLENS__V_SET1(1.0f), TLENS__V_DIV(TLENS__V_SET1(2.0f), TLENS__V_ADD(e, TLENS__V_SET1(1.0f))));
    return TLENS__V_MUL(TLENS__V_MUL(TLENS__V_SET1(0.5f), x), TLENS__V_ADD(TLENS__V_SET1(1.0f), th));
}

static void tlens__activation(float *out, const float *x, size_t n, int act) {
    size_t i = 0;
    if (act == TLENS_ACT_GELU_NEW) {
        float buf[TLENS__VW];
        int k;
        for (; i + TLENS__VW <= n; i += TLENS__VW) TLENS__V_STORE(out + i, tlens__v_gelu_new(TLENS__V_LOAD(x + i)));
        TLENS__TAIL_LOAD(buf, x + i, (int)(n - i), 0.0f);
        TLENS__V_STORE(buf, tlens__v_gelu_new(TLENS__V_LOAD(buf)));
        for (k = 0; i < n; i++, k++) out[i] = buf[k];
        return;
    }
    for (; i < n; i++) {
        float v = x[i];
        out[i] = act == TLENS_ACT_GELU ? 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)) : v > 0 ? v : 0;
    }
}

/* The activation of a (rows, M) matrix, rows on the threads (elementwise:
 * the same values however it is split). */
static void tlens__activation_rows(float *out, const float *x, int rows, int M, int act) {
    int r;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)rows * M >= 65536.0 && !omp_in_parallel())
#endif
    for (r = 0; r < rows; r++)
        tlens__activation(out + (size_t)r * (size_t)M, x + (size_t)r * (size_t)M, (size_t)M, act);
}

/* Softmax of row[0..n) in place; a row of -inf only becomes zeros (as
 * TransformerLens turns the NaNs of fully masked rows into zeros). */
static void tlens__softmax(float *row, int n) {
    int i, k;
    float mx = -INFINITY, sum, buf[TLENS__VW];
    tlens__vf vmax = TLENS__V_SET1(-INFINITY), acc = TLENS__V_ZERO(), inv;
    TLENS__FOR_VECTORS(i, n) vmax = TLENS__V_MAX(vmax, TLENS__V_LOAD(row + i));
    mx = TLENS__V_HMAX(vmax);
    for (k = i; k < n; k++) if (row[k] > mx) mx = row[k];
    if (mx == -INFINITY) {
        memset(row, 0, (size_t)n * sizeof(float));
        return;
    }
    vmax = TLENS__V_SET1(mx);
    TLENS__FOR_VECTORS(i, n) {
        tlens__vf e = tlens__v_exp(TLENS__V_SUB(TLENS__V_LOAD(row + i), vmax));
        TLENS__V_STORE(row + i, e);
        acc = TLENS__V_ADD(acc, e);
    }
    TLENS__TAIL_LOAD(buf, row + i, n - i, -INFINITY);
    TLENS__V_STORE(buf, tlens__v_exp(TLENS__V_SUB(TLENS__V_LOAD(buf), vmax)));
    sum = TLENS__V_SUM(acc);
    for (k = 0; i + k < n; k++) {
        row[i + k] = buf[k];
        sum += buf[k];
    }
    inv = TLENS__V_SET1(1.0f / sum);
    TLENS__FOR_VECTORS(i, n) TLENS__V_STORE(row + i, TLENS__V_MUL(TLENS__V_LOAD(row + i), inv));
    for (; i < n; i++) row[i] *= 1.0f / sum;
}

/* ------------------------------------------------------------------------
 * 3.11 The forward pass
 *
 * Notation: B batch, T positions, D d_model, H heads, dh d_head, M d_mlp,
 * V vocabulary. All activations are row-major and batch first, so that a
 * (B*T, D) matrix is also TransformerLens' [batch, pos, d_model] tensor and
 * q, k, v, z as (B*T, D) are [batch, pos, head, d_head].
 *
 * GPT-2 is a residual stream x (B, T, D) that every block reads from and
 * adds to. The functions below run, in this order (tlens__forward):
 *
 *   1. embed        x = W_E[tokens] + W_pos[positions]             (B, T, D)
 *   then for each block l (tlens__block_forward):
 *   2. ln1          LN(x) = (x - mean(x)) / sqrt(var(x) + eps) * w + b
 *                   q, k, v = LN1(x) @ W_Q, W_K, W_V + b       (B, T, H, dh)
 *   3. attention    scores = q k^T / sqrt(dh), -inf after the query
 *                                                             (B, H, T, T)
 *                   pattern = softmax(scores) over the keys      (B, H, T, T)
 *                   z = pattern @ v                            (B, T, H, dh)
 *                   attn_out = z @ W_O + b_O; x = x + attn_out     (B, T, D)
 *   4. MLP          post = gelu_new(LN2(x) @ W_in + b_in)         (B, T, M)
 *                   mlp_out = post @ W_out + b_out                 (B, T, D)
 *   5. residual     x = x + mlp_out
 *   6. unembed      logits = LN_final(x) @ W_U + b_U               (B, T, V)
 *
 * Every step fires its hook points (TLENS__HOOK) as it finishes, so a hook
 * sees and may edit exactly what TransformerLens' hook of that name holds.
 * The matmuls are 3.5's, the LayerNorm, GELU and softmax 3.10's.
 * ---------------------------------------------------------------------- */

/* Query rows per block of the causal attention: a block of R queries
 * needs keys 0 .. P + last query only, so about half of the (T, T) work
 * is skipped, and its (R, S) scores stay in the cache. */
#define TLENS__ATTN_ROWS 64

static int tlens__threads(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

/* Advance *off (in floats) past a * b elements of `width` bytes, rounded up
 * to 64 bytes so that every piece of the area starts on a cache line; 0
 * when the sizes overflow size_t. */
static int tlens__area_piece(size_t *off, size_t a, size_t b, size_t width) {
    size_t n;
    if (!tlens__mul_ok(a, b, &n) || !tlens__mul_ok(n, width, &n) || !tlens__add_ok(n, 63u, &n)) return 0;
    return tlens__add_ok(*off, (n & ~(size_t)63u) / sizeof(float), off);
}

/* The area's products of three or four sizes (B and T come from the
 * caller, the rest from a file): B*T rows, the attention scores and, with
 * the optional hooks, a copy of the input per head. 0 when one overflows. */
static int tlens__area_terms(const tlens_ctx *ctx, int B, int T, size_t *BT, size_t *att, size_t *per_head,
                             size_t *keys) {
    const tlens_config *c = &ctx->m->cfg;
    size_t NS = (size_t)ctx->kv_len + (size_t)T, H = (size_t)c->n_heads, panels = NS / TLENS__PANEL + 1;
    if (!tlens__mul_ok((size_t)B, (size_t)T, BT) ||
        !tlens__mul_ok(ctx->optional_hooks ? H : 0, (size_t)c->d_model, per_head) ||
        /* the keys packed for this run (the cache keeps its own, kv_kp) */
        !tlens__mul_ok(ctx->kv_on ? 0 : (size_t)B, H, keys) || !tlens__mul_ok(*keys, panels * TLENS__PANEL, keys) ||
        !tlens__mul_ok(*keys, (size_t)c->d_head, keys))
        return 0;
    if (!ctx->any_attn_materialized) return tlens__mul_ok((size_t)tlens__threads() * TLENS__ATTN_ROWS, NS, att);
    return tlens__mul_ok((size_t)B, H, att) && tlens__mul_ok(*att, (size_t)T, att) && tlens__mul_ok(*att, NS, att);
}

/* Rows of logits the area holds: one per sequence (last_logits_only), a
 * block (streamed), or every position. */
static size_t tlens__logits_rows_held(const tlens_ctx *ctx, size_t B, size_t BT) {
    if (ctx->last_logits_only) return B;
    if (ctx->logits_rows && BT > TLENS_LOGITS_BLOCK) return TLENS_LOGITS_BLOCK;
    return BT;
}

/* Lay the activation area out for (B, T); with base NULL only count.
 * Returns its size in floats, 0 when it overflows size_t. */
static size_t tlens__area_layout(tlens_ctx *ctx, int B, int T, float *base) {
    const tlens_config *c = &ctx->m->cfg;
    size_t BT, att, per_head, keys, D = (size_t)c->d_model, M = (size_t)c->d_mlp, off = 0;
    size_t strip_rows, widest = D > M ? D : M;
    if (!tlens__area_terms(ctx, B, T, &BT, &att, &per_head, &keys)) return 0;
    strip_rows = BT > 1 ? (BT / TLENS__MR + 1) * TLENS__MR : 0; /* one row is read in place */
#define TLENS__PLACE(ptr, a, b, type) do { \
        if (base) ctx->ptr = (type *)(void *)(base + off); \
        if (!tlens__area_piece(&off, a, b, sizeof(type))) return 0; \
    } while (0)
    TLENS__PLACE(embed, BT, D, float);
    TLENS__PLACE(pos_embed, BT, D, float);
    TLENS__PLACE(resid, BT, D, float);
    TLENS__PLACE(ln_in, BT, D, float);
    TLENS__PLACE(head_in[0], BT, per_head, float);
    TLENS__PLACE(head_in[1], BT, per_head, float);
    TLENS__PLACE(head_in[2], BT, per_head, float);
    TLENS__PLACE(head_in[3], BT, per_head, float);
    TLENS__PLACE(ln_mean, BT, 1, float);
    TLENS__PLACE(ln_scale, BT, 1, float);
    TLENS__PLACE(ln_out, BT, D, float);
    TLENS__PLACE(qkv, BT, 3 * D, float);
    TLENS__PLACE(q, BT, D, float);
    TLENS__PLACE(k, BT, D, float);
    TLENS__PLACE(v, BT, D, float);
    TLENS__PLACE(att, att, 1, float);
    TLENS__PLACE(keys_packed, keys, 1, float);
    TLENS__PLACE(z, BT, D, float);
    TLENS__PLACE(result, BT, per_head, float);
    TLENS__PLACE(attn_out, BT, D, float);
    TLENS__PLACE(mlp_pre, BT, M, float);
    TLENS__PLACE(mlp_post, BT, M, float);
    TLENS__PLACE(mlp_out, BT, D, float);
    TLENS__PLACE(strips, strip_rows, widest, float);
    TLENS__PLACE(logits, tlens__logits_rows_held(ctx, (size_t)B, BT), (size_t)c->d_vocab, float);
    TLENS__PLACE(tokens, BT, 1, int32_t);
    TLENS__PLACE(positions, BT, 1, int);
#undef TLENS__PLACE
    return off;
}

static tlens_result tlens__area_reserve(tlens_ctx *ctx, int B, int T, tlens_error *err) {
    size_t need = tlens__area_layout(ctx, B, T, NULL), bytes;
    if (!need || !tlens__mul_ok(need, sizeof(float), &bytes))
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
    int B = ctx->B, T = ctx->T, D = ctx->m->cfg.d_model, BT = B * T, r;
    float eps = ctx->m->cfg.eps;
    /* Rows are independent: blocks of 8 on the threads (a pass left on one
     * thread kept the other waiting for some 3% of a T=128 forward). */
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)BT * D >= 65536.0 && !omp_in_parallel())
#endif
    for (r = 0; r < BT; r += 8)
        tlens__layernorm_stats(x + (size_t)r * (size_t)D, ctx->ln_mean + r, ctx->ln_scale + r,
                               tlens__min_int(8, BT - r), D, eps);
    TLENS__HOOK(ctx, scale_point, ctx->ln_scale, 3, B, T, 1, 0);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if ((double)BT * D >= 65536.0 && !omp_in_parallel())
#endif
    for (r = 0; r < BT; r += 8)
        tlens__layernorm_apply(x + (size_t)r * (size_t)D, ctx->ln_mean + r, ctx->ln_scale + r, w, b,
                               ctx->ln_out + (size_t)r * (size_t)D, tlens__min_int(8, BT - r), D);
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

/* Step 0: the keys of layer l, divided by attn_scale, in the packed
 * weight layout (3.5) for each (batch, head): a (d_head, n_keys) matrix
 * whose 32-key panels hold d_head rows of 32. Every block of queries then
 * multiplies them in place, where copying the keys it needs into panel
 * form each time cost a fifth of the scores' time. The scores are those of
 * q . (k / attn_scale), summed in the same order either way. With the
 * key/value cache the packed keys are kept (kv_kp) and a run packs only its
 * own: repacking every cached key took ~4% of a decoding step at 300
 * tokens of context, and grows with it. tlens__keys_to_pack says where
 * layer l's packed keys are and the first key to pack; a panel's columns
 * past the last key are zeroed once, when the panel is begun (zeroing
 * them at every token was a third of a decoding step's attention). */
static int tlens__keys_to_pack(tlens_ctx *ctx, int l) {
    int H = ctx->m->cfg.n_heads, dh = ctx->m->cfg.d_head, from = 0;
    size_t panels = (size_t)(ctx->kv_len + ctx->T) / TLENS__PANEL + 1;
    ctx->keys_now = ctx->keys_packed;
    if (ctx->kv_on) { /* the cached keys were packed by earlier runs */
        panels = (size_t)ctx->kv_cap / TLENS__PANEL + 1;
        ctx->keys_now = ctx->kv_kp + (size_t)l * (size_t)ctx->B * (size_t)H * panels * TLENS__PANEL * (size_t)dh;
        from = tlens__min_int(ctx->kv_packed[l], ctx->kv_len);
        ctx->kv_packed[l] = ctx->kv_len + ctx->T;
    }
    ctx->keys_panels = panels;
    return from;
}

/* Keys from .. NS-1 of (batch, head) bh packed into ctx->keys_now. */
static void tlens__pack_head_keys(const tlens_ctx *ctx, int l, int bh, int from, float inv_scale) {
    const tlens_config *c = &ctx->m->cfg;
    int H = c->n_heads, dh = c->d_head, NS = ctx->kv_len + ctx->T, p, d, j;
    int end = (NS / TLENS__PANEL + 1) * TLENS__PANEL; /* through the last panel */
    size_t D = (size_t)c->d_model;
    const float *keys = tlens__keys(ctx, l, bh / H) + (size_t)(bh % H) * (size_t)dh;
    float *dst = ctx->keys_now + (size_t)bh * ctx->keys_panels * TLENS__PANEL * (size_t)dh;
    for (p = from / TLENS__PANEL; p * TLENS__PANEL < end; p++) {
        int k0 = p * TLENS__PANEL, j0 = tlens__max_int(from - k0, 0), j1 = tlens__min_int(NS - k0, TLENS__PANEL);
        for (d = 0; d < dh; d++) {
            float *row = dst + ((size_t)p * (size_t)dh + (size_t)d) * TLENS__PANEL;
            for (j = j0; j < j1; j++) row[j] = inv_scale * keys[(size_t)(k0 + j) * D + (size_t)d];
            if (j0 == 0) /* past NS: read, never used; zeroed when a panel is begun */
                for (j = j1; j < TLENS__PANEL; j++) row[j] = 0.0f;
        }
    }
}

static void tlens__pack_keys(tlens_ctx *ctx, int l, float inv_scale) {
    int from = tlens__keys_to_pack(ctx, l), bh, BH = ctx->B * ctx->m->cfg.n_heads;
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (BH > 1 && (double)(ctx->kv_len + ctx->T - from) * ctx->m->cfg.d_model >= 65536.0)
#endif
    for (bh = 0; bh < BH; bh++) tlens__pack_head_keys(ctx, l, bh, from, inv_scale);
}

/* Keys 0 .. n-1 of (batch b, head h), packed, as a matrix for tlens__matmul. */
static tlens__mat tlens__packed_keys(const tlens_ctx *ctx, int b, int h, int n) {
    const tlens_config *c = &ctx->m->cfg;
    tlens__mat keys;
    keys.data = ctx->keys_now +
                ((size_t)b * (size_t)c->n_heads + (size_t)h) * ctx->keys_panels * TLENS__PANEL * (size_t)c->d_head;
    keys.K = c->d_head;
    keys.N = n;
    keys.dtype = TLENS_F32;
    return keys;
}

/* Rows i0 .. i0+R-1 of one (batch, head)'s attention, over keys 0 .. n-1:
 * n = P + i0 + R, the keys they can see, or, when `full`, all P + T keys
 * (TransformerLens' whole tensor). S is (R, n). Step 1: S = q k^T /
 * attn_scale. Step 2: padding keys and (when `full`) future keys become
 * -inf. The softmax and z = S v (steps 3 and 4) follow. */
static void tlens__attn_scores(const tlens_ctx *ctx, int b, int h, int i0, int R, float *S, int full) {
    const tlens_config *c = &ctx->m->cfg;
    int T = ctx->T, P = ctx->kv_len, D = c->d_model, dh = c->d_head, n = full ? P + T : P + i0 + R, ld = n, i, j;
    const float *q = ctx->q + ((size_t)b * (size_t)T + (size_t)i0) * (size_t)D + (size_t)h * (size_t)dh;
    const unsigned char *visible = ctx->key_mask ? ctx->key_mask + (size_t)b * (size_t)ctx->mask_stride : NULL;
    tlens__mat keys = tlens__packed_keys(ctx, b, h, n);
    tlens__matmul_rows(S, q, D, NULL, &keys, 0, dh, NULL, R);
    for (i = 0; i < R; i++) {
        float *row = S + (size_t)i * (size_t)ld;
        if (visible)
            for (j = 0; j < n; j++)
                if (!visible[j]) row[j] = -INFINITY;
        if (full)
            for (j = P + i0 + i + 1; j < n; j++) row[j] = -INFINITY;
    }
}

/* Step 3: softmax of each row over its visible keys (the whole row when
 * `full`); step 4: z rows = pattern @ v. */
static void tlens__attn_softmax(const tlens_ctx *ctx, int i0, int R, float *S, int ld, int full) {
    int P = ctx->kv_len, i, n;
    for (i = 0; i < R; i++) {
        float *row = S + (size_t)i * (size_t)ld;
        n = full ? ld : P + i0 + i + 1;
        tlens__softmax(row, n);
        if (!full) memset(row + n, 0, (size_t)(P + i0 + R - n) * sizeof(float));
    }
}

static void tlens__attn_z(tlens_ctx *ctx, int l, int b, int h, int i0, int R, const float *S, int ld, int full) {
    const tlens_config *c = &ctx->m->cfg;
    int T = ctx->T, D = c->d_model, dh = c->d_head, n = full ? ld : ctx->kv_len + i0 + R;
    const float *v = tlens__values(ctx, l, b) + (size_t)h * (size_t)dh;
    float *z = ctx->z + ((size_t)b * (size_t)T + (size_t)i0) * (size_t)D + (size_t)h * (size_t)dh;
    tlens__gemm_nn(z, D, S, ld, v, D, R, dh, n);
}

/* 3. Attention of layer l on q, k, v into z. When a hook or the cache
 * wants the scores or the pattern, the whole (B, H, T, P + T) tensor is
 * made, with -inf where TransformerLens masks; otherwise blocks of query
 * rows are computed in parallel, each over the keys it can see. */
static int tlens__attention(tlens_ctx *ctx, int l) {
    const tlens_config *c = &ctx->m->cfg;
    int B = ctx->B, T = ctx->T, NS = ctx->kv_len + ctx->T, H = c->n_heads, b, h, job;
    int p_scores = tlens__block_point(ctx, l, TLENS__HP_ATTN_SCORES);
    int full = ctx->points[p_scores].active || ctx->points[p_scores + 1].active;
    float attn_scale = sqrtf((float)c->d_head) * (c->scale_attn_by_inverse_layer_idx ? (float)(l + 1) : 1.0f);
    size_t block = (size_t)T * (size_t)NS;
    int blocks = (T + TLENS__ATTN_ROWS - 1) / TLENS__ATTN_ROWS, jobs = B * H * blocks, from = 0;
    /* With one block of rows per head (decoding, short prompts) each job
     * packs its own head's new keys; otherwise all are packed first. */
    int pack_in_job = !full && blocks == 1;
    if (pack_in_job) from = tlens__keys_to_pack(ctx, l);
    else tlens__pack_keys(ctx, l, 1.0f / attn_scale);
    if (!full) {
        /* Threads once all heads together read enough keys and values: in
         * decoding they come from memory (the weights streamed through the
         * caches since the last token), and two threads' requests overlap.
         * From 17 cached tokens (GPT-2 small) a token's attention took
         * 0.5 ms on two threads against 0.7 on one. */
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic) if (jobs > 1 && (double)B * H * T * NS * c->d_head >= 8192.0)
#endif
        for (job = 0; job < jobs; job++) {
            int bh = job / blocks, i0 = (job % blocks) * TLENS__ATTN_ROWS, R = T - i0 < TLENS__ATTN_ROWS ? T - i0 : TLENS__ATTN_ROWS;
            int n = ctx->kv_len + i0 + R; /* the keys these rows see; S is (R, n) */
#ifdef _OPENMP
            float *S = ctx->att + (size_t)omp_get_thread_num() * TLENS__ATTN_ROWS * (size_t)NS;
#else
            float *S = ctx->att;
#endif
            if (pack_in_job) tlens__pack_head_keys(ctx, l, bh, from, 1.0f / attn_scale);
            tlens__attn_scores(ctx, bh / H, bh % H, i0, R, S, 0);
            tlens__attn_softmax(ctx, i0, R, S, n, 0);
            tlens__attn_z(ctx, l, bh / H, bh % H, i0, R, S, n, 0);
        }
        return 0;
    }
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++)
            tlens__attn_scores(ctx, b, h, 0, T, ctx->att + ((size_t)b * (size_t)H + (size_t)h) * block, 1);
    TLENS__HOOK(ctx, p_scores, ctx->att, 4, B, H, T, NS);
    for (b = 0; b < B * H; b++) tlens__attn_softmax(ctx, 0, T, ctx->att + (size_t)b * block, NS, 1);
    TLENS__HOOK(ctx, p_scores + 1, ctx->att, 4, B, H, T, NS);
    for (b = 0; b < B; b++)
        for (h = 0; h < H; h++)
            tlens__attn_z(ctx, l, b, h, 0, T, ctx->att + ((size_t)b * (size_t)H + (size_t)h) * block, NS, 1);
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
    int BT = ctx->B * ctx->T, H = c->n_heads, D = c->d_model, dh = c->d_head, r, h;
    for (h = 0; h < H; h++) {
        /* (B*T, dh) @ W_O[h*dh .. h*dh+dh) -> rows of `scratch`, then into place */
        float *tmp = ctx->attn_out; /* free until attn_out is computed */
        tlens__matmul_rows(tmp, ctx->z + (size_t)h * (size_t)dh, D, NULL, W_O, h * dh, dh, NULL, BT);
        for (r = 0; r < BT; r++)
            memcpy(ctx->result + ((size_t)r * (size_t)H + (size_t)h) * (size_t)D, tmp + (size_t)r * (size_t)D,
                   (size_t)D * sizeof(float));
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
    for (k = TLENS__HP_ATTN_IN; k <= TLENS__HP_V_INPUT; k++)
        ctx->head_inputs_edited |= ctx->points[p + k].n_hooks > 0 || ctx->points[p + k].sae_site;
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

/* dst += src, n floats (the residual stream's additions), element by
 * element; split over the threads in blocks when long (the residual stream
 * at T = 1024 is 3 MB: the additions were 1 % of the pass on one thread).
 * The same sums however it is split. */
static void tlens__add(float *dst, const float *src, size_t n) {
    enum { BLOCK = 16384 };
    long b, blocks = (long)((n + BLOCK - 1) / BLOCK);
#ifdef _OPENMP
#pragma omp parallel for schedule(static) if (blocks > 1 && !omp_in_parallel())
#endif
    for (b = 0; b < blocks; b++) {
        size_t i = (size_t)b * BLOCK, end = n - i < BLOCK ? n : i + BLOCK;
        for (; i < end; i++) dst[i] += src[i];
    }
}

/* a (rows, K) in strips (ctx->strips) for the products that read it, or
 * NULL for a single row, which the matrix-vector path reads in place. */
static const float *tlens__to_strips(tlens_ctx *ctx, const float *a, int rows, int K) {
    if (rows < 2) return NULL;
    tlens__interleave_rows(ctx->strips, a, (size_t)K, rows, K);
    return ctx->strips;
}

/* out (rows, N) = a (rows, K) @ W + bias, a product of the forward pass. */
static void tlens__linear(tlens_ctx *ctx, float *out, const float *a, const tlens__mat *w, const float *bias,
                          int rows) {
    tlens__matmul_rows(out, a, w->K, tlens__to_strips(ctx, a, rows, w->K), w, 0, w->K, bias, rows);
}

/* q, k and v straight from ln1's output. W_QKV's three thirds are column
 * ranges of the packed matrix; when D is a whole number of panels each
 * third is itself a packed (D, D) matrix, so no split copy is needed. */
static void tlens__qkv(tlens_ctx *ctx, const tlens__block *w, int BT) {
    int D = ctx->m->cfg.d_model, which, i;
    float *out[3];
    const float *strips = tlens__to_strips(ctx, ctx->ln_out, BT, D); /* one packing for the three */
    out[0] = ctx->q; out[1] = ctx->k; out[2] = ctx->v;
    if (D % TLENS__PANEL == 0) {
        for (which = 0; which < 3; which++) {
            tlens__mat third = w->W_QKV;
            third.N = D;
            third.data = (const unsigned char *)w->W_QKV.data +
                         (size_t)which * (size_t)D * (size_t)D * tlens__dtype_size(w->W_QKV.dtype);
            tlens__matmul_rows(out[which], ctx->ln_out, D, strips, &third, 0, D, w->b_QKV + (size_t)which * (size_t)D, BT);
        }
        return;
    }
    tlens__matmul_rows(ctx->qkv, ctx->ln_out, D, strips, &w->W_QKV, 0, D, w->b_QKV, BT); /* (B*T, 3D), then split */
    for (i = 0; i < BT; i++)
        for (which = 0; which < 3; which++)
            memcpy(out[which] + (size_t)i * (size_t)D, ctx->qkv + ((size_t)i * 3u + (size_t)which) * (size_t)D,
                   (size_t)D * sizeof(float));
}

static int tlens__block_forward(tlens_ctx *ctx, int l) {
    const tlens_model *m = ctx->m;
    const tlens__block *w = &m->blocks[l];
    int B = ctx->B, T = ctx->T, BT = B * T, D = m->cfg.d_model, H = m->cfg.n_heads, M = m->cfg.d_mlp, r;
    int p = tlens__block_point(ctx, l, 0);
    const float *ln1_src = ctx->resid, *ln2_src;
    size_t n = (size_t)BT * (size_t)D;
    /* 2. resid_pre and the first LayerNorm */
    TLENS__HOOK(ctx, p + TLENS__HP_RESID_PRE, ctx->resid, 3, B, T, D, 0);
    if (ctx->optional_hooks && (r = tlens__head_inputs(ctx, l))) return r;
    if ((r = tlens__layernorm(ctx, ln1_src, w->ln1_w, w->ln1_b, p + TLENS__HP_LN1_SCALE))) return r;
    /* q, k, v = ln1 @ W_Q|W_K|W_V + b, each (B*T, D) = [batch, pos, head, d_head] */
    tlens__qkv(ctx, w, BT);
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
    tlens__linear(ctx, ctx->attn_out, ctx->z, &w->W_O, w->b_O, BT);            /* (B*T, D) */
    TLENS__HOOK(ctx, p + TLENS__HP_ATTN_OUT, ctx->attn_out, 3, B, T, D, 0);
    tlens__add(ctx->resid, ctx->attn_out, n);
    TLENS__HOOK(ctx, p + TLENS__HP_RESID_MID, ctx->resid, 3, B, T, D, 0);
    /* 4. the MLP: post = gelu(ln2 @ W_in + b_in); mlp_out = post @ W_out + b_out */
    ln2_src = ctx->resid;
    if (ctx->points[p + TLENS__HP_MLP_IN].active) { /* a copy: edits reach ln2 only */
        memcpy(ctx->ln_in, ctx->resid, n * sizeof(float));
        TLENS__HOOK(ctx, p + TLENS__HP_MLP_IN, ctx->ln_in, 3, B, T, D, 0);
        ln2_src = ctx->ln_in;
    }
    if ((r = tlens__layernorm(ctx, ln2_src, w->ln2_w, w->ln2_b, p + TLENS__HP_LN2_SCALE))) return r;
    tlens__linear(ctx, ctx->mlp_pre, ctx->ln_out, &w->W_in, w->b_in, BT);       /* (B*T, M) */
    TLENS__HOOK(ctx, p + TLENS__HP_MLP_PRE, ctx->mlp_pre, 3, B, T, M, 0);
    tlens__activation_rows(ctx->mlp_post, ctx->mlp_pre, BT, M, m->cfg.act_fn); /* (B*T, M) */
    TLENS__HOOK(ctx, p + TLENS__HP_MLP_POST, ctx->mlp_post, 3, B, T, M, 0);
    tlens__linear(ctx, ctx->mlp_out, ctx->mlp_post, &w->W_out, w->b_out, BT);  /* (B*T, D) */
    TLENS__HOOK(ctx, p + TLENS__HP_MLP_OUT, ctx->mlp_out, 3, B, T, D, 0);
    /* 5. resid_post = resid_mid + mlp_out */
    tlens__add(ctx->resid, ctx->mlp_out, n);
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
    if (ctx->last_logits_only) { /* gather each sequence's last row */
        int b;
        for (b = 0; b < B; b++)
            memmove(ctx->ln_out + (size_t)b * (size_t)m->cfg.d_model,
                    ctx->ln_out + ((size_t)b * (size_t)T + (size_t)T - 1) * (size_t)m->cfg.d_model,
                    (size_t)m->cfg.d_model * sizeof(float));
        tlens__linear(ctx, ctx->logits, ctx->ln_out, &m->W_U, m->b_U, B);
        return 0;
    }
    { /* every row at once, or, streamed, a block at a time into the caller's hands */
        int row0, n, D = m->cfg.d_model, step = ctx->logits_rows ? TLENS_LOGITS_BLOCK : B * T;
        for (row0 = 0; row0 < B * T; row0 += step) {
            n = tlens__min_int(step, B * T - row0);
            tlens__linear(ctx, ctx->logits, ctx->ln_out + (size_t)row0 * (size_t)D, &m->W_U, m->b_U, n);
            if (ctx->logits_rows) ctx->logits_rows(ctx->logits_user, row0, n, ctx->logits);
        }
    }
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
    tlens__sae_sites_free(ctx);
    tlens__free(ctx->alloc, ctx->points);
    tlens__free(ctx->alloc, ctx->names);
    tlens__free(ctx->alloc, ctx->hooks);
    tlens__free(ctx->alloc, ctx->sel);
    tlens__free(ctx->alloc, ctx->point_hooks);
    tlens__free(ctx->alloc, ctx->area);
    tlens__free(ctx->alloc, ctx->kv_k);
    tlens__free(ctx->alloc, ctx->kv_v);
    tlens__free(ctx->alloc, ctx->kv_kp);
    tlens__free(ctx->alloc, ctx->kv_packed);
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

/* Make room for the key/value cache of `batch` sequences of up to n_ctx:
 * keys and values as the layers made them (hook_k, hook_v), and the keys
 * once more, packed for attention's product (tlens__pack_keys), so that a
 * new token packs only its own key instead of all the cached ones. */
static tlens_result tlens__kv_reserve(tlens_ctx *ctx, int batch, tlens_error *err) {
    const tlens_config *c = &ctx->m->cfg;
    size_t n, bytes, packed_bytes, panels = (size_t)c->n_ctx / TLENS__PANEL + 1;
    if (ctx->kv_k && ctx->kv_v && ctx->kv_kp && ctx->kv_packed && ctx->kv_batch == batch) return TLENS_OK;
    tlens__free(ctx->alloc, ctx->kv_k);
    tlens__free(ctx->alloc, ctx->kv_v);
    tlens__free(ctx->alloc, ctx->kv_kp);
    tlens__free(ctx->alloc, ctx->kv_packed);
    ctx->kv_k = ctx->kv_v = ctx->kv_kp = NULL;
    ctx->kv_packed = NULL;
    if (!tlens__mul_ok((size_t)c->n_layers, (size_t)batch, &n) || !tlens__mul_ok(n, (size_t)c->n_ctx, &n) ||
        !tlens__mul_ok(n, (size_t)c->d_model, &n) || !tlens__mul_ok(n, sizeof(float), &bytes) ||
        !tlens__mul_ok((size_t)c->n_layers, (size_t)c->n_heads, &n) || !tlens__mul_ok(n, (size_t)batch, &n) ||
        !tlens__mul_ok(n, panels * TLENS__PANEL, &n) || !tlens__mul_ok(n, (size_t)c->d_head, &n) ||
        !tlens__mul_ok(n, sizeof(float), &packed_bytes))
        return tlens__fail(err, TLENS_ERR_NOMEM, "the key/value cache for batch %d does not fit in memory", batch);
    ctx->kv_k = (float *)tlens__alloc(ctx->alloc, bytes);
    ctx->kv_v = (float *)tlens__alloc(ctx->alloc, bytes);
    ctx->kv_kp = (float *)tlens__alloc(ctx->alloc, packed_bytes);
    ctx->kv_packed = (int *)tlens__alloc(ctx->alloc, (size_t)c->n_layers * sizeof(int));
    if (!ctx->kv_k || !ctx->kv_v || !ctx->kv_kp || !ctx->kv_packed)
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory: the key/value cache needs 2 x %zu + %zu MB",
                           bytes / 1000000, packed_bytes / 1000000);
    memset(ctx->kv_packed, 0, (size_t)c->n_layers * sizeof(int));
    ctx->kv_batch = batch;
    ctx->kv_cap = c->n_ctx;
    return TLENS_OK;
}

/* The padding mask of keys, (B, cap): kept across cached runs. */
static tlens_result tlens__mask_update(tlens_ctx *ctx, const int32_t *mask, int B, int T, tlens_error *err) {
    int cap = ctx->kv_on ? ctx->kv_cap : T, b, t;
    size_t bytes;
    if (!mask && !ctx->key_mask) return TLENS_OK;
    if (!ctx->key_mask || ctx->kv_len == 0) {
        tlens__free(ctx->alloc, ctx->mask_buf);
        ctx->mask_buf = ctx->key_mask = NULL; /* no pointer to the freed block on failure */
        if (!tlens__mul_ok((size_t)B, (size_t)cap, &bytes))
            return tlens__fail(err, TLENS_ERR_NOMEM, "the attention mask for batch %d x %d keys does not fit in memory", B, cap);
        ctx->mask_buf = (unsigned char *)tlens__alloc(ctx->alloc, bytes);
        if (!ctx->mask_buf) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the attention mask");
        memset(ctx->mask_buf, 1, bytes); /* cached positions so far were real */
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
    tlens_run_options defaults;
    tlens_result r;
    int stop, L = ctx->m->cfg.n_layers, first = 0, last = L;
    memset(&defaults, 0, sizeof defaults);
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
    ctx->last_logits_only = opt->last_logits_only != 0;
    ctx->logits_rows = ctx->last_logits_only ? NULL : opt->logits_rows;
    ctx->logits_user = opt->logits_user;
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
    if (last == L && !ctx->logits_rows)
        ctx->logits_tensor = tlens__tensor(ctx->logits, 3, batch, ctx->last_logits_only ? 1 : pos, ctx->m->cfg.d_vocab, 0);
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

/* An SAE's own points (3.15) come right after their host, in firing order. */
TLENS_DEF const char *tlens_hook_name(const tlens_ctx *ctx, int index) {
    int i, j;
    for (i = 0; i < ctx->n_points; i++) {
        if (ctx->points[i].sae_host) continue;
        if (!(ctx->points[i].optional && !ctx->optional_hooks) && index-- == 0) return ctx->points[i].name;
        for (j = 0; ctx->points[i].sae_site && j < ctx->n_points; j++)
            if (ctx->points[j].sae_host == i + 1 && index-- == 0) return ctx->points[j].name;
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

TLENS_DEF tlens_result tlens_run_with_hooks(tlens_ctx *ctx, const int32_t *tokens, int batch, int pos,
                                            const tlens_hook_spec *hooks, int n_hooks, tlens_error *err) {
    int i, added = 0;
    tlens_result r = TLENS_OK;
    for (i = 0; i < n_hooks; i++) {
        int handle = tlens_add_hook(ctx, hooks[i].pattern, hooks[i].fn, hooks[i].user);
        if (!handle) {
            r = tlens__fail(err, TLENS_ERR_ARG, "cannot add hook %d (%s)", i, hooks[i].pattern ? hooks[i].pattern : "NULL");
            break;
        }
        added++;
    }
    if (!r) r = tlens_run(ctx, tokens, batch, pos, err);
    /* the hooks just added are the last `added` ones */
    while (added-- > 0) tlens_remove_hook(ctx, ctx->hooks[ctx->n_hooks - 1].handle);
    return r;
}

TLENS_DEF tlens_result tlens_run_with_cache(tlens_ctx *ctx, const int32_t *tokens, int batch, int pos,
                                            const char *glob, tlens_error *err) {
    tlens_result r;
    tlens_cache_clear(ctx);
    if ((r = tlens__select_push(ctx, glob ? glob : "*", NULL, NULL, err))) return r;
    return tlens_run(ctx, tokens, batch, pos, err);
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

/* Read a C-order .npy of float16, float32, float64, int32 or int64 (either
 * byte order) into out->data (allocated; free with tlens_tensor_free). */
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
    if (d[6] != 1 && d[6] != 2 && d[6] != 3) {
        int version = (unsigned char)d[6];
        tlens__free(NULL, d);
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: unknown .npy version %d", path, version);
    }
    if (d[6] >= 2 && size < 12) {
        tlens__free(NULL, d);
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: .npy header is cut short", path);
    }
    hlen = (unsigned char)d[8] | ((size_t)(unsigned char)d[9] << 8);
    if (d[6] >= 2) hlen = tlens__le32((const unsigned char *)d + 8);
    p = d + (d[6] >= 2 ? 12 : 10);
    /* the header text ends at the file's end at the latest (read_file adds a NUL) */
    descr = strstr(p, "'descr': '");
    shape = strstr(p, "'shape': (");
    if (!descr || !shape || (size_t)(p - d) + hlen > size || strlen(descr) < 13 ||
        strstr(p, "'fortran_order': True")) {
        tlens__free(NULL, d);
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: unsupported .npy header (need C order)", path);
    }
    big = descr[10] == '>';
    kind = descr[11];
    width = (size_t)(descr[12] - '0');
    if (!((kind == 'f' && (width == 2 || width == 4 || width == 8)) || (kind == 'i' && (width == 4 || width == 8)))) {
        tlens__free(NULL, d);
        return tlens__fail(err, TLENS_ERR_DTYPE, "%s: .npy type must be float16/32/64 or int32/64", path);
    }
    for (shape += 10; *shape && *shape != ')'; ) {
        long v = 0;
        while (*shape == ' ' || *shape == ',') shape++;
        if (*shape == ')') break;
        if (*shape < '0' || *shape > '9' || nd == TLENS_MAX_DIMS) {
            tlens__free(NULL, d);
            return tlens__fail(err, TLENS_ERR_SHAPE, "%s: .npy shape must have 1 to 4 dimensions", path);
        }
        while (*shape >= '0' && *shape <= '9') {
            if (v > (0x7fffffffL - 9) / 10) {
                tlens__free(NULL, d);
                return tlens__fail(err, TLENS_ERR_SHAPE, "%s: a .npy dimension is too large", path);
            }
            v = v * 10 + (*shape++ - '0');
        }
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
        else if (kind == 'f' && width == 2) out->data[i] = tlens__f16_to_f32(tlens__le16(e));
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

/* ---- the streaming writer ------------------------------------------------ */
struct tlens_npy_writer {
    FILE *f;
    const tlens_allocator *alloc;
    tlens_npy_type type;
    int row_ndim;
    int row_shape[TLENS_MAX_DIMS - 1];
    size_t row_numel;       /* elements per row                            */
    size_t rows;            /* rows appended so far                        */
    size_t header_len;      /* bytes before the data: a multiple of 64     */
    int failed;             /* a write failed: the file is not complete    */
    char *path;             /* for messages (stored after the struct)      */
};

#define TLENS__NPY_HEADER_CAP 256

/* numpy's version 1.0 header for [rows, row_shape...]: magic, version, the
 * length, then the dict, `spare` spaces, more spaces up to a multiple of 64
 * bytes and at least min_total, and '\n'. The spare spaces leave room for
 * a longer row count later, as numpy's own writer does for growing files
 * (21 digits). Returns the total length, 0 when it does not fit cap. */
static size_t tlens__npy_header(char *out, size_t cap, const tlens_npy_writer *w, size_t rows, size_t spare,
                                size_t min_total) {
    static const char *const descr[3] = {"<f4", "<f2", "<i4"};
    tlens__buf b;
    int d;
    b.p = out; b.cap = cap; b.len = 0;
    tlens__puts(&b, "\x93NUMPY\x01");
    tlens__putc(&b, '\0');
    tlens__puts(&b, "xx{'descr': '");
    tlens__puts(&b, descr[w->type]);
    tlens__puts(&b, "', 'fortran_order': False, 'shape': (");
    tlens__putu(&b, rows);
    if (w->row_ndim == 0) tlens__putc(&b, ','); /* Python's one-element tuple */
    for (d = 0; d < w->row_ndim; d++) {
        tlens__puts(&b, ", ");
        tlens__puti(&b, w->row_shape[d]);
    }
    tlens__puts(&b, "), }");
    while (spare--) tlens__putc(&b, ' ');
    while ((b.len + 1) % 64 || b.len + 1 < min_total) tlens__putc(&b, ' ');
    tlens__putc(&b, '\n');
    if (b.len > cap || b.len - 10 > 0xffff) return 0;
    out[8] = (char)((b.len - 10) & 0xffu);
    out[9] = (char)((b.len - 10) >> 8);
    return b.len;
}

/* The writer of the public function, with an allocator (the collector
 * passes the model's). */
static tlens_result tlens__npy_writer_open(tlens_npy_writer **out, const char *path, tlens_npy_type type, int row_ndim,
                                           const int *row_shape, const tlens_allocator *a, tlens_error *err) {
    char header[TLENS__NPY_HEADER_CAP];
    size_t len = strlen(path), n = 1;
    tlens_npy_writer *w;
    int d;
    *out = NULL;
    if ((unsigned)type > (unsigned)TLENS_NPY_I32 || row_ndim < 0 || row_ndim >= TLENS_MAX_DIMS || (row_ndim && !row_shape))
        return tlens__fail(err, TLENS_ERR_ARG, "%s: a .npy writer needs a known type and 0 to %d row dimensions", path,
                           TLENS_MAX_DIMS - 1);
    for (d = 0; d < row_ndim; d++)
        if (row_shape[d] < 0 || !tlens__mul_ok(n, (size_t)row_shape[d], &n))
            return tlens__fail(err, TLENS_ERR_SHAPE, "%s: bad row dimension %d", path, row_shape[d]);
    w = (tlens_npy_writer *)tlens__calloc(a, sizeof *w + len + 1);
    if (!w) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory opening %s", path);
    w->path = (char *)(w + 1);
    memcpy(w->path, path, len + 1);
    w->alloc = a;
    w->type = type;
    w->row_ndim = row_ndim;
    for (d = 0; d < row_ndim; d++) w->row_shape[d] = row_shape[d];
    w->row_numel = n;
    w->header_len = tlens__npy_header(header, sizeof header, w, 0, 21, 0);
    if (!(w->f = fopen(path, "wb"))) {
        tlens__free(a, w);
        return tlens__fail(err, TLENS_ERR_IO, "cannot create %s", path);
    }
    if (fwrite(header, 1, w->header_len, w->f) != w->header_len) {
        fclose(w->f);
        tlens__free(a, w);
        return tlens__fail(err, TLENS_ERR_IO, "cannot write %s", path);
    }
    *out = w;
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_npy_writer_open(tlens_npy_writer **out, const char *path, tlens_npy_type type,
                                             int row_ndim, const int *row_shape, tlens_error *err) {
    return tlens__npy_writer_open(out, path, type, row_ndim, row_shape, NULL, err);
}

/* Write count elements, from floats or (ints not NULL) int32s, as the file's
 * little-endian type, through a buffer of whole elements. */
static tlens_result tlens__npy_put(tlens_npy_writer *w, const float *f, const int32_t *ints, size_t count,
                                   tlens_error *err) {
    unsigned char buf[4096];
    size_t width = w->type == TLENS_NPY_F16 ? 2u : 4u, per = sizeof buf / width, i, k, n;
    for (i = 0; i < count; i += n) {
        n = count - i < per ? count - i : per;
        for (k = 0; k < n; k++) {
            uint32_t u = ints ? (uint32_t)ints[i + k]
                              : w->type == TLENS_NPY_F16 ? (uint32_t)tlens__f32_to_f16(f[i + k]) : tlens__bits_from_f32(f[i + k]);
            unsigned char *e = buf + k * width;
            e[0] = (unsigned char)(u & 0xffu);
            e[1] = (unsigned char)((u >> 8) & 0xffu);
            if (width == 4) {
                e[2] = (unsigned char)((u >> 16) & 0xffu);
                e[3] = (unsigned char)(u >> 24);
            }
        }
        if (fwrite(buf, width, n, w->f) != n) {
            w->failed = 1;
            return tlens__fail(err, TLENS_ERR_IO, "cannot write %s", w->path);
        }
    }
    return TLENS_OK;
}

static tlens_result tlens__npy_append(tlens_npy_writer *w, const float *f, const int32_t *ints, size_t n,
                                      tlens_error *err) {
    size_t count;
    tlens_result r;
    if (w->failed) return tlens__fail(err, TLENS_ERR_IO, "%s: an earlier write failed", w->path);
    if (!tlens__mul_ok(n, w->row_numel, &count))
        return tlens__fail(err, TLENS_ERR_ARG, "%s: %zu rows are more than memory holds", w->path, n);
    if ((r = tlens__npy_put(w, f, ints, count, err))) return r;
    w->rows += n;
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_npy_writer_append(tlens_npy_writer *w, const float *rows, size_t n, tlens_error *err) {
    if (w->type == TLENS_NPY_I32)
        return tlens__fail(err, TLENS_ERR_DTYPE, "%s holds int32: append with tlens_npy_writer_append_i32", w->path);
    return tlens__npy_append(w, rows, NULL, n, err);
}

TLENS_DEF tlens_result tlens_npy_writer_append_i32(tlens_npy_writer *w, const int32_t *rows, size_t n,
                                                   tlens_error *err) {
    if (w->type != TLENS_NPY_I32)
        return tlens__fail(err, TLENS_ERR_DTYPE, "%s holds floats: append with tlens_npy_writer_append", w->path);
    return tlens__npy_append(w, NULL, rows, n, err);
}

TLENS_DEF size_t tlens_npy_writer_rows(const tlens_npy_writer *w) { return w->rows; }

/* The header is rewritten in place with the final count: the spare spaces
 * of the first one make it exactly as long, so the data does not move. */
TLENS_DEF tlens_result tlens_npy_writer_close(tlens_npy_writer *w, tlens_error *err) {
    char header[TLENS__NPY_HEADER_CAP];
    int ok;
    tlens_result r = TLENS_OK;
    if (!w) return TLENS_OK;
    ok = !w->failed && tlens__npy_header(header, sizeof header, w, w->rows, 0, w->header_len) == w->header_len;
    ok = ok && fflush(w->f) == 0 && fseek(w->f, 0, SEEK_SET) == 0 &&
         fwrite(header, 1, w->header_len, w->f) == w->header_len;
    ok = fclose(w->f) == 0 && ok;
    if (!ok) r = tlens__fail(err, TLENS_ERR_IO, "cannot finish %s%s", w->path, w->failed ? " (a write failed)" : "");
    tlens__free(w->alloc, w);
    return r;
}

/* ---- activation datasets ------------------------------------------------- */
struct tlens_collector {
    tlens_ctx *ctx;
    const tlens_allocator *alloc;
    int batch, skip_first, n_ctx, n_points;
    int cap, queued;            /* sequences held (batch * window), queued  */
    int stop_at_layer;          /* where the pass can end (run options)     */
    int *points;                /* indices into ctx->points, firing order   */
    tlens_npy_writer **acts;    /* one file per point                       */
    tlens_npy_writer *tokens_w, *index_w;
    int32_t *seqs;              /* (cap, n_ctx): the queued sequences       */
    int *lens;                  /* (cap) each queued sequence's length      */
    int32_t *index;             /* (cap) and the index it came with         */
    int *order;                 /* (cap) queue slots in the order they run  */
    int *count;                 /* (n_ctx + 1) for sorting by length        */
    int32_t *padded, *mask;     /* (batch, n_ctx): one run's input          */
    int32_t *row_index;         /* (n_ctx): one sequence's prompt_index rows */
    size_t rows;
};

/* Mark the points `pattern` selects in chosen[]: an exact name, else a glob
 * over the points the context shows that have a row per token. */
static tlens_result tlens__collect_match(tlens_ctx *ctx, const char *pattern, unsigned char *chosen, int *optional,
                                         tlens_error *err) {
    int i, found = 0, shape[TLENS_MAX_DIMS];
    for (i = 0; i < ctx->n_points; i++)
        if (!strcmp(ctx->points[i].name, pattern)) {
            if (tlens__point_row_shape(ctx, i, shape) < 0)
                return tlens__fail(err, TLENS_ERR_SHAPE, "collect: %s is [batch, head, query, key]: no row per token",
                                   pattern);
            chosen[i] = 1;
            *optional |= ctx->points[i].optional;
            return TLENS_OK;
        }
    for (i = 0; i < ctx->n_points; i++)
        if ((!ctx->points[i].optional || ctx->optional_hooks) && tlens__glob(pattern, ctx->points[i].name) &&
            tlens__point_row_shape(ctx, i, shape) >= 0) {
            chosen[i] = 1;
            found++;
        }
    if (!found) return tlens__fail(err, TLENS_ERR_NOT_FOUND, "collect: no hook point with a row per token matches %s", pattern);
    return TLENS_OK;
}

/* Free everything; the files are closed as they are (errors ignored). */
static void tlens__collect_free(tlens_collector *c) {
    int p;
    for (p = 0; c->acts && p < c->n_points; p++) tlens_npy_writer_close(c->acts[p], NULL);
    tlens_npy_writer_close(c->tokens_w, NULL);
    tlens_npy_writer_close(c->index_w, NULL);
    tlens__free(c->alloc, c->points);
    tlens__free(c->alloc, c->acts);
    tlens__free(c->alloc, c->seqs);
    tlens__free(c->alloc, c->lens);
    tlens__free(c->alloc, c->index);
    tlens__free(c->alloc, c->order);
    tlens__free(c->alloc, c->count);
    tlens__free(c->alloc, c->padded);
    tlens__free(c->alloc, c->mask);
    tlens__free(c->alloc, c->row_index);
    tlens__free(c->alloc, c);
}

/* The collector and its buffers for the points marked in chosen[]. */
static tlens_result tlens__collect_new(tlens_collector **out, tlens_ctx *ctx, const unsigned char *chosen, int batch,
                                       int window, tlens_error *err) {
    const tlens_allocator *a = ctx->alloc;
    size_t n_ctx = (size_t)ctx->m->cfg.n_ctx, one = (size_t)batch * n_ctx * sizeof(int32_t), cap, all;
    tlens_collector *c;
    int i;
    if (!tlens__mul_ok((size_t)batch, (size_t)(window > 1 ? window : 1), &cap) || cap > 0x7fffffff ||
        !tlens__mul_ok(cap, n_ctx * sizeof(int32_t), &all))
        return tlens__fail(err, TLENS_ERR_ARG, "collect: batch %d x window %d sequences are too many", batch, window);
    if (!(*out = c = (tlens_collector *)tlens__calloc(a, sizeof *c)))
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for a collector");
    c->ctx = ctx;
    c->alloc = a;
    c->batch = batch;
    c->cap = (int)cap;
    c->n_ctx = (int)n_ctx;
    for (i = 0; i < ctx->n_points; i++) c->n_points += chosen[i];
    c->points = (int *)tlens__alloc(a, (size_t)c->n_points * sizeof(int));
    c->acts = (tlens_npy_writer **)tlens__calloc(a, (size_t)c->n_points * sizeof(tlens_npy_writer *));
    c->seqs = (int32_t *)tlens__alloc(a, all);
    c->padded = (int32_t *)tlens__alloc(a, one);
    c->mask = (int32_t *)tlens__alloc(a, one);
    c->lens = (int *)tlens__alloc(a, cap * sizeof(int));
    c->index = (int32_t *)tlens__alloc(a, cap * sizeof(int32_t));
    c->order = (int *)tlens__alloc(a, cap * sizeof(int));
    c->count = (int *)tlens__alloc(a, (n_ctx + 1) * sizeof(int));
    c->row_index = (int32_t *)tlens__alloc(a, n_ctx * sizeof(int32_t));
    if (!c->points || !c->acts || !c->seqs || !c->padded || !c->mask || !c->lens || !c->index || !c->order ||
        !c->count || !c->row_index)
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for a collector of %zu sequences", cap);
    c->n_points = 0;
    for (i = 0; i < ctx->n_points; i++)
        if (chosen[i]) c->points[c->n_points++] = i;
    return TLENS_OK;
}

/* The pass need not go past the last block with a collected point (the
 * logits of GPT-2 small's 50257 words alone are a third of its work):
 * stop_at_layer after that block, else (a point of the last block or of
 * ln_final) the whole pass with the logits of the last position only. */
static void tlens__collect_stop(tlens_collector *c) {
    int L = c->ctx->m->cfg.n_layers, first_post = TLENS__HP_GLOBAL_PRE + L * TLENS__HP_PER_BLOCK, last = -1, p;
    for (p = 0; p < c->n_points; p++) {
        int i = c->points[p], layer = i >= first_post ? L : c->ctx->points[i].layer;
        if (layer > last) last = layer;
    }
    c->stop_at_layer = last + 1 >= L ? 0 : last + 1 == 0 ? -L : last + 1; /* 0 blocks is -L */
}

/* DIR/<name>.npy */
static tlens_result tlens__collect_file(tlens_collector *c, const char *dir, const char *name, tlens_npy_type type,
                                        int row_ndim, const int *row_shape, tlens_npy_writer **w, tlens_error *err) {
    size_t cap = strlen(dir) + strlen(name) + 6;
    char *path = (char *)tlens__alloc(c->alloc, cap);
    tlens_result r;
    if (!path) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for a path in %s", dir);
    tlens__join(path, cap, dir, name);
    memcpy(path + strlen(path), ".npy", 5);
    r = tlens__npy_writer_open(w, path, type, row_ndim, row_shape, c->alloc, err);
    tlens__free(c->alloc, path);
    return r;
}

/* Every file, and the cache selection of exactly the collected points. */
static tlens_result tlens__collect_files(tlens_collector *c, const char *dir, int f16, tlens_error *err) {
    int p, shape[TLENS_MAX_DIMS];
    tlens_result r;
    tlens_cache_clear(c->ctx);
    for (p = 0; p < c->n_points; p++) {
        const char *name = c->ctx->points[c->points[p]].name;
        int nd = tlens__point_row_shape(c->ctx, c->points[p], shape);
        if ((r = tlens__collect_file(c, dir, name, f16 ? TLENS_NPY_F16 : TLENS_NPY_F32, nd, shape, &c->acts[p], err)))
            return r;
        if ((r = tlens__select_push(c->ctx, name, NULL, NULL, err))) return r;
    }
    if ((r = tlens__collect_file(c, dir, "tokens", TLENS_NPY_I32, 0, NULL, &c->tokens_w, err))) return r;
    return tlens__collect_file(c, dir, "prompt_index", TLENS_NPY_I32, 0, NULL, &c->index_w, err);
}

TLENS_DEF tlens_result tlens_collect_open(tlens_collector **out, tlens_ctx *ctx, const char *dir,
                                          const char *const *patterns, int n_patterns,
                                          const tlens_collect_options *opt, tlens_error *err) {
    tlens_collect_options defaults;
    unsigned char *chosen;
    tlens_result r = TLENS_OK;
    int i, optional = 0;
    *out = NULL;
    memset(&defaults, 0, sizeof defaults);
    if (!opt) opt = &defaults;
    if (!ctx || !dir || !patterns || n_patterns < 1 || opt->batch < 0 || opt->window < 0)
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_collect_open: need a context, a directory and hook names");
    if (!(chosen = (unsigned char *)tlens__calloc(ctx->alloc, (size_t)ctx->n_points)))
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for the hook points");
    for (i = 0; !r && i < n_patterns; i++) r = tlens__collect_match(ctx, patterns[i], chosen, &optional, err);
    if (!r) r = tlens__collect_new(out, ctx, chosen, opt->batch ? opt->batch : 8, opt->window, err);
    tlens__free(ctx->alloc, chosen);
    if (!r) {
        (*out)->skip_first = opt->skip_first != 0;
        tlens__collect_stop(*out);
        if (optional && !ctx->optional_hooks) tlens_set_optional_hooks(ctx, 1);
        r = tlens__collect_files(*out, dir, opt->f16, err);
    }
    if (r && *out) {
        tlens__collect_free(*out);
        *out = NULL;
    }
    return r;
}

/* The rows of the sequences just run (queue slots `slots`), point by
 * point: sequence b's real tokens are rows b * T + pad .. b * T + T - 1 of
 * a [B, T, ...] activation, one contiguous block. */
static tlens_result tlens__collect_write(tlens_collector *c, int p, const int *slots, int B, int T, tlens_error *err) {
    const tlens__point *pt = &c->ctx->points[c->points[p]];
    tlens_npy_writer *w = c->acts[p];
    size_t row = w->row_numel;
    tlens_result r;
    int b, d, ok = pt->cached && pt->cache.ndim == 2 + w->row_ndim && pt->cache.shape[0] == B && pt->cache.shape[1] == T;
    for (d = 0; ok && d < w->row_ndim; d++) ok = pt->cache.shape[2 + d] == w->row_shape[d];
    if (!ok) return tlens__fail(err, TLENS_ERR_SHAPE, "collect: %s was not cached as [%d, %d, ...]", pt->name, B, T);
    for (b = 0; b < B; b++) {
        int first = T - c->lens[slots[b]] + c->skip_first;
        if ((r = tlens_npy_writer_append(w, pt->cache.data + ((size_t)b * (size_t)T + (size_t)first) * row,
                                         (size_t)(T - first), err)))
            return r;
    }
    return TLENS_OK;
}

/* tokens.npy and prompt_index.npy for the sequences just run. */
static tlens_result tlens__collect_write_ids(tlens_collector *c, const int *slots, int B, tlens_error *err) {
    tlens_result r;
    int b, t;
    for (b = 0; b < B; b++) {
        int s = slots[b];
        size_t n = (size_t)(c->lens[s] - c->skip_first);
        for (t = 0; t < (int)n; t++) c->row_index[t] = c->index[s];
        if ((r = tlens_npy_writer_append_i32(c->tokens_w, c->seqs + (size_t)s * (size_t)c->n_ctx + c->skip_first, n, err)) ||
            (r = tlens_npy_writer_append_i32(c->index_w, c->row_index, n, err)))
            return r;
        c->rows += n;
    }
    return TLENS_OK;
}

/* Run B queued sequences left-padded to the longest, then write them. */
static tlens_result tlens__collect_run(tlens_collector *c, const int *slots, int B, tlens_error *err) {
    tlens_run_options ro;
    tlens_result r;
    int T = 0, b, t, p, padding = 0;
    for (b = 0; b < B; b++) T = c->lens[slots[b]] > T ? c->lens[slots[b]] : T;
    for (b = 0; b < B; b++) {
        int pad = T - c->lens[slots[b]];
        const int32_t *seq = c->seqs + (size_t)slots[b] * (size_t)c->n_ctx;
        padding |= pad;
        for (t = 0; t < T; t++) {
            c->padded[(size_t)b * (size_t)T + (size_t)t] = t < pad ? 0 : seq[t - pad];
            c->mask[(size_t)b * (size_t)T + (size_t)t] = t >= pad;
        }
    }
    memset(&ro, 0, sizeof ro);
    ro.attention_mask = padding ? c->mask : NULL;
    ro.stop_at_layer = c->stop_at_layer;
    ro.last_logits_only = 1;
    if ((r = tlens_run_ex(c->ctx, c->padded, B, T, &ro, err))) return r;
    for (p = 0; p < c->n_points; p++)
        if ((r = tlens__collect_write(c, p, slots, B, T, err))) return r;
    return tlens__collect_write_ids(c, slots, B, err);
}

/* Run everything queued: in the order added, or (a window of more than one
 * batch) shortest first, so that each batch holds similar lengths and
 * little padding. A counting sort by length: stable, and lengths are at
 * most n_ctx. */
static tlens_result tlens__collect_flush(tlens_collector *c, tlens_error *err) {
    int n = c->queued, i, l, sum = 0;
    tlens_result r;
    for (i = 0; i < n; i++) c->order[i] = i;
    if (c->cap > c->batch) {
        memset(c->count, 0, (size_t)(c->n_ctx + 1) * sizeof(int));
        for (i = 0; i < n; i++) c->count[c->lens[i]]++;
        for (l = 0; l <= c->n_ctx; l++) {
            int k = c->count[l];
            c->count[l] = sum; /* where length l starts */
            sum += k;
        }
        for (i = 0; i < n; i++) c->order[c->count[c->lens[i]]++] = i;
    }
    c->queued = 0; /* run or not, these sequences are done */
    for (i = 0; i < n; i += c->batch)
        if ((r = tlens__collect_run(c, c->order + i, n - i < c->batch ? n - i : c->batch, err))) return r;
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_collect_add(tlens_collector *c, const int32_t *tokens, int n, int32_t index,
                                         tlens_error *err) {
    int t, V = c->ctx->m->cfg.d_vocab;
    if (!tokens || n < 1 || n > c->n_ctx)
        return tlens__fail(err, TLENS_ERR_LENGTH, "collect: sequence %d has %d tokens (1 to n_ctx %d allowed)", (int)index,
                           n, c->n_ctx);
    for (t = 0; t < n; t++)
        if (tokens[t] < 0 || tokens[t] >= V)
            return tlens__fail(err, TLENS_ERR_TOKEN, "collect: token id %d at position %d of sequence %d is outside the vocabulary (0..%d)",
                               (int)tokens[t], t, (int)index, V - 1);
    if (n <= c->skip_first) return TLENS_OK; /* no row to write */
    memcpy(c->seqs + (size_t)c->queued * (size_t)c->n_ctx, tokens, (size_t)n * sizeof(int32_t));
    c->lens[c->queued] = n;
    c->index[c->queued++] = index;
    return c->queued == c->cap ? tlens__collect_flush(c, err) : TLENS_OK;
}

TLENS_DEF size_t tlens_collect_rows(const tlens_collector *c) { return c->rows; }

TLENS_DEF int tlens_collect_count(const tlens_collector *c) { return c->n_points; }

TLENS_DEF const char *tlens_collect_name(const tlens_collector *c, int i) {
    return i >= 0 && i < c->n_points ? c->ctx->points[c->points[i]].name : NULL;
}

/* Each file's header gets its row count even after a failed run (the
 * files then hold what was written), but only success says so. */
TLENS_DEF tlens_result tlens_collect_close(tlens_collector *c, tlens_error *err) {
    tlens_result r, r2;
    int p;
    if (!c) return TLENS_OK;
    r = tlens__collect_flush(c, err);
    for (p = 0; p < c->n_points; p++) {
        r2 = tlens_npy_writer_close(c->acts[p], r ? NULL : err);
        c->acts[p] = NULL;
        if (!r) r = r2;
    }
    r2 = tlens_npy_writer_close(c->tokens_w, r ? NULL : err);
    if (!r) r = r2;
    r2 = tlens_npy_writer_close(c->index_w, r ? NULL : err);
    if (!r) r = r2;
    c->tokens_w = c->index_w = NULL;
    tlens__collect_free(c);
    return r;
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
    tlens_generate_options defaults;
    const tlens_config *c = &ctx->m->cfg;
    tlens_run_options ro;
    int max_new, n = 0, eos, V = c->d_vocab, total;
    uint64_t rng;
    float *work = NULL;
    int *order = NULL, *seq = NULL;
    tlens_result r = TLENS_OK;
    memset(&defaults, 0, sizeof defaults);
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
    ro.last_logits_only = 1;
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
    if (strstr(name, ".hook_sae_acts_")) *head_axis = ndim - 1; /* an SAE's features (3.15) */
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
    int coord[TLENS_MAX_DIMS] = {0};
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

/* The floats of a stack of n components of [B, T, D], or of a copy of
 * one; 0 when a size is negative or the product overflows size_t. */
static size_t tlens__stack_floats(int n, int B, int T, int D) {
    size_t f;
    if (n < 0 || B < 0 || T < 0 || D < 0 || !tlens__mul_ok((size_t)(n ? n : 1), (size_t)B, &f) ||
        !tlens__mul_ok(f, (size_t)T, &f) || !tlens__mul_ok(f, (size_t)D, &f) || !tlens__mul_ok(f, sizeof(float), &f))
        return 0;
    return f / sizeof(float);
}

static tlens_result tlens__stack_init(const tlens_ctx *ctx, tlens_stack *s, int n, int B, int T, int D,
                                      tlens_error *err) {
    size_t floats = tlens__stack_floats(n, B, T, D);
    memset(s, 0, sizeof *s);
    if (!floats)
        return tlens__fail(err, TLENS_ERR_NOMEM, "a residual stack of %d x [%d, %d, %d] does not fit in memory", n, B, T, D);
    s->alloc = *ctx->alloc;
    s->n = n; s->batch = B; s->pos = T; s->d_model = D;
    s->data = (float *)tlens__alloc(ctx->alloc, floats * sizeof(float));
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
    int L = ctx->m->cfg.n_layers, B = 0, T = 0, n = 0, l;
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
    int L = ctx->m->cfg.n_layers, B = 0, T = 0, n = 0, l;
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
    int L = c->n_layers, H = c->n_heads, D = c->d_model, dh = c->d_head, B = 0, T = 0, l, h, r0, i, k;
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
    size_t per, i, d, D = (size_t)c->d_model, count;
    float *dir;
    tlens_result r;
    if (token < 0 || token >= c->d_vocab || incorrect_token >= c->d_vocab)
        return tlens__fail(err, TLENS_ERR_TOKEN, "tlens_logit_attrs: token outside the vocabulary");
    s = *stack;
    /* the stack is the caller's: its sizes must be the model's and fit */
    if (!s.data || s.d_model != c->d_model || !(count = tlens__stack_floats(s.n, s.batch, s.pos, s.d_model)))
        return tlens__fail(err, TLENS_ERR_SHAPE, "tlens_logit_attrs: a stack of %d x [%d, %d, %d] does not match d_model %d "
                           "or does not fit in memory", s.n, s.batch, s.pos, s.d_model, c->d_model);
    per = (size_t)s.batch * (size_t)s.pos;
    s.data = (float *)tlens__alloc(ctx->alloc, count * sizeof(float));
    dir = (float *)tlens__alloc(ctx->alloc, D * sizeof(float) * 2);
    if (!s.data || !dir) {
        tlens__free(ctx->alloc, s.data);
        tlens__free(ctx->alloc, dir);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory");
    }
    memcpy(s.data, stack->data, (size_t)s.n * per * D * sizeof(float)); /* <= count floats */
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
    default: return j >= 1 && tok[j - 1] == tok[i]; /* induction: attend to what followed before */
    }
}

TLENS_DEF tlens_result tlens_detect_heads(tlens_ctx *ctx, const int32_t *tokens, int n, int kind,
                                          const tlens_detect_options *opt, float *scores, tlens_error *err) {
    tlens_detect_options defaults;
    const tlens_config *c = &ctx->m->cfg;
    int n_sel = ctx->n_sel, l, h, i, j;
    tlens_result r;
    char name[64];
    memset(&defaults, 0, sizeof defaults);
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
/* Two standard normal samples (Box-Muller). */
static void tlens__rng_normal2(uint64_t *state, float *a, float *b) {
    double u1 = tlens__rng_uniform(state), u2 = tlens__rng_uniform(state), r;
    if (u1 < 1e-300) u1 = 1e-300;
    r = sqrt(-2.0 * log(u1));
    *a = (float)(r * cos(6.283185307179586 * u2));
    *b = (float)(r * sin(6.283185307179586 * u2));
}

TLENS_DEF tlens_result tlens_init_random(tlens_model **out, const tlens_config *cfg, const tlens_load_options *opt,
                                         uint64_t seed, tlens_error *err) {
    tlens_load_options defaults;
    tlens_config c = *cfg;
    tlens__state s;
    tlens_model *m = NULL;
    tlens_result r;
    size_t i, n;
    memset(&defaults, 0, sizeof defaults);
    if (!opt) opt = &defaults;
    *out = NULL;
    if (!c.d_head && c.n_heads > 0) c.d_head = c.d_model / c.n_heads;
    if (c.eps <= 0.0f) c.eps = 1e-5f;
    if ((r = tlens__config_check(&c, "tlens_init_random", err))) return r;
    if ((r = tlens__state_alloc(&s, &c, &opt->allocator, err))) return r;
    /* everything N(0, 0.02), then LayerNorm weights near 1 */
    n = (size_t)(s.blocks[c.n_layers - 1].b_out + c.d_model - s.buf);
    for (i = 0; i + 1 < n; i += 2) {
        tlens__rng_normal2(&seed, &s.buf[i], &s.buf[i + 1]);
        s.buf[i] *= 0.02f;
        s.buf[i + 1] *= 0.02f;
    }
    if (i < n) {
        float spare;
        tlens__rng_normal2(&seed, &s.buf[i], &spare);
        s.buf[i] *= 0.02f;
    }
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

/* ------------------------------------------------------------------------
 * 3.15 Sparse autoencoders (SAELens format): loading, splicing
 *
 * Loading reads cfg.json with the JSON reader (3.4) and the weights'
 * header with the safetensors parser (3.6); every tensor's shape is
 * checked against d_in and d_sae before anything is allocated. W_enc is
 * packed for the matmul kernels (3.5); W_dec stays row-major (d_sae,
 * d_in), so that decoding adds only the rows of the active features.
 *
 * Splicing: an attached SAE is a "site" of the context: its host point (a
 * model point, which fires as before) and six points of its own, appended
 * after the model's points and marked with their host (sae_host). After
 * the host's hooks and cache copy, tlens__fire calls tlens__sae_splice,
 * which computes the SAE in scratch the site owns, fires the six points on
 * the way, and writes the output over the host's activation, which then
 * flows downstream as any edit does.
 * ---------------------------------------------------------------------- */
struct tlens_sae {
    tlens_sae_config cfg;
    tlens_allocator alloc;
    tlens__mat W_enc;           /* (d_in, d_sae), packed float32        */
    const float *W_dec;         /* (d_sae, d_in), row-major             */
    const float *b_enc, *b_dec; /* (d_sae), (d_in)                      */
    const float *threshold;     /* (d_sae): JumpReLU, else NULL         */
    const float *scale;         /* (d_sae): finetuning scaling, or NULL */
    float *block;               /* the one allocation holding them all  */
};

/* ---- cfg.json ---- */

/* A member of cfg.json: at the top, else under "metadata" or "meta"
 * (where SAELens 6 keeps hook_name and hook_head_index); -1 when absent
 * or null. */
static int tlens__sae_member(const tlens__json *j, const char *key) {
    int n = tlens__json_get(j, 0, key);
    if (n < 0) n = tlens__json_get(j, tlens__json_get(j, 0, "metadata"), key);
    if (n < 0) n = tlens__json_get(j, tlens__json_get(j, 0, "meta"), key);
    return n >= 0 && j->nodes[n].type == TLENS__JSON_NULL ? -1 : n;
}

/* A string node's text for a message. */
static const char *tlens__sae_text(const tlens__json *j, int n, char *buf, size_t cap) {
    if (j->nodes[n].type != TLENS__JSON_STRING || tlens__json_decode(&j->nodes[n], buf, cap) == (size_t)-1)
        return "(not a short string)";
    return buf;
}

/* Node n (when not -1) as an integer in lo .. hi. */
static tlens_result tlens__sae_int(const tlens__json *j, int n, const char *key, int lo, int hi, int *out,
                                   const char *what, tlens_error *err) {
    const tlens__json_node *v;
    if (n < 0) return TLENS_OK;
    v = &j->nodes[n];
    if (v->type != TLENS__JSON_NUMBER || !v->is_integer || v->integer < lo || v->integer > hi)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: \"%s\" must be an integer in %d..%d", what, key, lo, hi);
    *out = (int)v->integer;
    return TLENS_OK;
}

static tlens_result tlens__sae_bool(const tlens__json *j, const char *key, int *out, const char *what,
                                    tlens_error *err) {
    int n = tlens__sae_member(j, key);
    if (n < 0) return TLENS_OK;
    if (j->nodes[n].type != TLENS__JSON_TRUE && j->nodes[n].type != TLENS__JSON_FALSE)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: \"%s\" must be true or false", what, key);
    *out = j->nodes[n].type == TLENS__JSON_TRUE;
    return TLENS_OK;
}

/* architecture, or the older activation_fn_str: before SAELens 6 a TopK
 * SAE was a "standard" one with a "topk" activation and k in its kwargs. */
static tlens_result tlens__sae_cfg_arch(tlens_sae_config *c, const tlens__json *j, const char *what,
                                        tlens_error *err) {
    int a = tlens__sae_member(j, "architecture"), f = tlens__sae_member(j, "activation_fn_str"), k;
    char buf[48];
    if (f < 0) f = tlens__sae_member(j, "activation_fn");
    c->architecture = TLENS_SAE_STANDARD;
    if (a >= 0 && tlens__json_str_eq(&j->nodes[a], "topk")) c->architecture = TLENS_SAE_TOPK;
    else if (a >= 0 && tlens__json_str_eq(&j->nodes[a], "jumprelu")) c->architecture = TLENS_SAE_JUMPRELU;
    else if (a >= 0 && !tlens__json_str_eq(&j->nodes[a], "standard"))
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: architecture \"%s\" is not supported (standard, topk, jumprelu)",
                           what, tlens__sae_text(j, a, buf, sizeof buf));
    if (f >= 0 && tlens__json_str_eq(&j->nodes[f], "topk")) {
        if (c->architecture == TLENS_SAE_STANDARD) c->architecture = TLENS_SAE_TOPK;
    } else if (f >= 0 && !tlens__json_str_eq(&j->nodes[f], "relu")) {
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: activation function \"%s\" is not supported (relu, topk)", what,
                           tlens__sae_text(j, f, buf, sizeof buf));
    }
    if (c->architecture != TLENS_SAE_TOPK) return TLENS_OK;
    k = tlens__sae_member(j, "k");
    if (k < 0) k = tlens__json_get(j, tlens__sae_member(j, "activation_fn_kwargs"), "k");
    if (k < 0) return tlens__fail(err, TLENS_ERR_CONFIG, "%s: a TopK SAE needs \"k\" (or activation_fn_kwargs {\"k\": K})", what);
    return tlens__sae_int(j, k, "k", 1, c->d_sae, &c->k, what, err);
}

/* normalize_activations (a bool before SAELens 3: true meant
 * expected_average_only_in) and the scaling factor that mode needs. */
static tlens_result tlens__sae_cfg_norm(tlens_sae_config *c, const tlens__json *j, const char *what,
                                        tlens_error *err) {
    static const char *const modes[4] = {"none", "expected_average_only_in", "constant_norm_rescale", "layer_norm"};
    int n = tlens__sae_member(j, "normalize_activations"), m;
    char buf[48];
    c->normalize_activations = TLENS_SAE_NORM_NONE;
    c->norm_scaling_factor = 1.0f;
    if (n >= 0 && (j->nodes[n].type == TLENS__JSON_TRUE || j->nodes[n].type == TLENS__JSON_FALSE)) {
        if (j->nodes[n].type == TLENS__JSON_TRUE) c->normalize_activations = TLENS_SAE_NORM_EXPECTED_AVERAGE_ONLY_IN;
    } else if (n >= 0) {
        for (m = 0; m < 4 && !tlens__json_str_eq(&j->nodes[n], modes[m]); m++) {}
        if (m == 4)
            return tlens__fail(err, TLENS_ERR_CONFIG, "%s: normalize_activations \"%s\" is not supported (none, "
                               "expected_average_only_in, constant_norm_rescale, layer_norm)", what,
                               tlens__sae_text(j, n, buf, sizeof buf));
        c->normalize_activations = m;
    }
    if ((n = tlens__sae_member(j, "norm_scaling_factor")) >= 0) {
        if (j->nodes[n].type != TLENS__JSON_NUMBER || !(j->nodes[n].number > 0 && j->nodes[n].number < 1e30))
            return tlens__fail(err, TLENS_ERR_CONFIG, "%s: \"norm_scaling_factor\" must be a positive number", what);
        c->norm_scaling_factor = (float)j->nodes[n].number;
    }
    return TLENS_OK;
}

/* hook_name (hook_point before SAELens 3), hook_head_index, and whether a
 * hook_z SAE sees the heads flattened (reshape_activations; before
 * SAELens 6: every hook_name ending in "_z"). */
static tlens_result tlens__sae_cfg_hook(tlens_sae_config *c, const tlens__json *j, const char *what,
                                        tlens_error *err) {
    int n = tlens__sae_member(j, "hook_name"), h;
    size_t len;
    tlens_result r;
    if (n < 0) n = tlens__sae_member(j, "hook_point");
    if (n < 0 || j->nodes[n].type != TLENS__JSON_STRING)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: missing \"hook_name\" (a string)", what);
    len = tlens__json_decode(&j->nodes[n], c->hook_name, sizeof c->hook_name);
    if (len == (size_t)-1 || len == 0)
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: \"hook_name\" is empty or longer than %d bytes", what,
                           (int)sizeof c->hook_name - 1);
    h = tlens__sae_member(j, "hook_head_index");
    if (h < 0) h = tlens__sae_member(j, "hook_point_head_index");
    c->hook_head_index = -1;
    if ((r = tlens__sae_int(j, h, "hook_head_index", 0, 65535, &c->hook_head_index, what, err))) return r;
    n = tlens__sae_member(j, "reshape_activations");
    if (n < 0) c->reshape_hook_z = len >= 2 && strcmp(c->hook_name + len - 2, "_z") == 0;
    else if (tlens__json_str_eq(&j->nodes[n], "hook_z")) c->reshape_hook_z = 1;
    else if (!tlens__json_str_eq(&j->nodes[n], "none"))
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: reshape_activations must be \"none\" or \"hook_z\"", what);
    return TLENS_OK;
}

static tlens_result tlens__sae_cfg_parse(tlens_sae_config *c, const char *text, size_t len, const char *what,
                                         const tlens_sae_load_options *opt, const tlens_allocator *a,
                                         tlens_error *err) {
    tlens__json j;
    tlens_result r;
    int d_in, d_sae;
    memset(c, 0, sizeof *c);
    c->apply_b_dec_to_input = 1; /* SAELens' default when the key is absent */
    if ((r = tlens__json_parse(&j, text, len, what, a, err))) return r;
    d_in = tlens__sae_member(&j, "d_in");
    d_sae = tlens__sae_member(&j, "d_sae");
    if (d_in < 0 || d_sae < 0)
        r = tlens__fail(err, TLENS_ERR_CONFIG, "%s: missing \"%s\"", what, d_in < 0 ? "d_in" : "d_sae");
    if (!r) r = tlens__sae_int(&j, d_in, "d_in", 1, 1 << 20, &c->d_in, what, err);
    if (!r) r = tlens__sae_int(&j, d_sae, "d_sae", 1, 1 << 26, &c->d_sae, what, err);
    if (!r) r = tlens__sae_cfg_arch(c, &j, what, err);
    if (!r) r = tlens__sae_cfg_norm(c, &j, what, err);
    if (!r) r = tlens__sae_cfg_hook(c, &j, what, err);
    if (!r) r = tlens__sae_bool(&j, "apply_b_dec_to_input", &c->apply_b_dec_to_input, what, err);
    if (!r) r = tlens__sae_bool(&j, "finetuning_scaling_factor", &c->finetuning_scaling, what, err);
    tlens__json_free(&j);
    if (opt->norm_scaling_factor > 0) c->norm_scaling_factor = opt->norm_scaling_factor;
    return r;
}

/* ---- sae_weights.safetensors ---- */

/* The safetensors header of a file image in memory. */
static tlens_result tlens__sae_st_open(tlens__st *st, const unsigned char *data, size_t size, const char *what,
                                       const tlens_allocator *a, tlens_error *err) {
    uint64_t hlen;
    memset(st, 0, sizeof *st);
    if (!data || size < 8) return tlens__fail(err, TLENS_ERR_FORMAT, "%s: too short for a safetensors file", what);
    hlen = tlens__le64(data);
    if (hlen < 2 || hlen > (uint64_t)(size - 8))
        return tlens__fail(err, TLENS_ERR_FORMAT, "%s: safetensors header length %llu does not fit the file (%zu bytes)",
                           what, (unsigned long long)hlen, size);
    return tlens__st_parse(st, (const char *)data + 8, (size_t)hlen, (uint64_t)size, what, a, err);
}

/* "[a, b]", an entry's shape for messages. */
static const char *tlens__sae_shape_text(const tlens__st_entry *e, char *out, size_t cap) {
    tlens__buf b;
    int d;
    b.p = out; b.cap = cap; b.len = 0;
    tlens__putc(&b, '[');
    for (d = 0; d < e->ndim; d++) {
        if (d) tlens__puts(&b, ", ");
        tlens__puti(&b, e->shape[d]);
    }
    tlens__puts(&b, "]");
    tlens__putc(&b, '\0');
    out[cap - 1] = '\0';
    return out;
}

/* Tensor `name`, which must be F32/F16/BF16 of shape [rows, cols] (rows
 * 0: [cols]); *out is NULL (and the result OK) when it is absent and
 * `optional`. */
static tlens_result tlens__sae_tensor(const tlens__st *st, const char *name, int rows, int cols, int optional,
                                      const tlens__st_entry **out, const char *what, tlens_error *err) {
    const tlens__st_entry *e = tlens__st_find(st, name);
    char got[96];
    *out = e;
    if (!e) return optional ? TLENS_OK : tlens__fail(err, TLENS_ERR_MISSING, "%s: missing tensor %s", what, name);
    if (!e->dtype)
        return tlens__fail(err, TLENS_ERR_DTYPE, "%s: tensor %s has dtype %s; only F32, F16 and BF16 are supported",
                           what, name, e->dtype_name);
    if (rows ? (e->ndim != 2 || e->shape[0] != rows || e->shape[1] != cols) : (e->ndim != 1 || e->shape[0] != cols)) {
        tlens__sae_shape_text(e, got, sizeof got);
        if (rows)
            return tlens__fail(err, TLENS_ERR_SHAPE, "%s: tensor %s is %s, but cfg.json's d_in / d_sae make it [%d, %d]",
                               what, name, got, rows, cols);
        return tlens__fail(err, TLENS_ERR_SHAPE, "%s: tensor %s is %s, but cfg.json's d_in / d_sae make it [%d]", what,
                           name, got, cols);
    }
    return TLENS_OK;
}

/* Every tensor the config calls for, checked before anything is
 * allocated: W_enc, W_dec, b_enc, b_dec; JumpReLU's threshold (or the
 * log_threshold training saves); a finetuning scaling factor. */
typedef struct tlens__sae_entries {
    const tlens__st_entry *W_enc, *W_dec, *b_enc, *b_dec, *threshold, *scale;
    int log_threshold;
} tlens__sae_entries;

static tlens_result tlens__sae_entries_find(tlens__sae_entries *t, const tlens__st *st, const tlens_sae_config *c,
                                            const char *what, tlens_error *err) {
    int jump = c->architecture == TLENS_SAE_JUMPRELU;
    tlens_result r;
    memset(t, 0, sizeof *t);
    if ((r = tlens__sae_tensor(st, "W_enc", c->d_in, c->d_sae, 0, &t->W_enc, what, err)) ||
        (r = tlens__sae_tensor(st, "W_dec", c->d_sae, c->d_in, 0, &t->W_dec, what, err)) ||
        (r = tlens__sae_tensor(st, "b_enc", 0, c->d_sae, 0, &t->b_enc, what, err)) ||
        (r = tlens__sae_tensor(st, "b_dec", 0, c->d_in, 0, &t->b_dec, what, err)) ||
        (jump && (r = tlens__sae_tensor(st, "threshold", 0, c->d_sae, 1, &t->threshold, what, err))) ||
        (r = tlens__sae_tensor(st, "scaling_factor", 0, c->d_sae, 1, &t->scale, what, err)))
        return r;
    if (!t->scale && (r = tlens__sae_tensor(st, "finetuning_scaling_factor", 0, c->d_sae, 1, &t->scale, what, err)))
        return r;
    if (jump && !t->threshold) {
        if ((r = tlens__sae_tensor(st, "log_threshold", 0, c->d_sae, 1, &t->threshold, what, err))) return r;
        if (!t->threshold) return tlens__fail(err, TLENS_ERR_MISSING, "%s: missing tensor threshold (a JumpReLU SAE needs it)", what);
        t->log_threshold = 1;
    }
    if (c->finetuning_scaling && !t->scale)
        return tlens__fail(err, TLENS_ERR_MISSING, "%s: missing tensor scaling_factor (cfg.json's finetuning_scaling_factor is true)", what);
    return TLENS_OK;
}

/* Floats of the one block: packed W_enc, W_dec, b_enc, b_dec, threshold,
 * scale; 0 when they overflow size_t. */
static size_t tlens__sae_block_floats(const tlens_sae_config *c, size_t *n_enc) {
    size_t dec, total, bytes;
    if (!tlens__mul_ok((size_t)tlens__mat_panels(c->d_sae) * TLENS__PANEL, (size_t)c->d_in, n_enc) ||
        !tlens__mul_ok((size_t)c->d_sae, (size_t)c->d_in, &dec) || !tlens__add_ok(*n_enc, dec, &total) ||
        !tlens__add_ok(total, 3u * (size_t)c->d_sae + (size_t)c->d_in, &total) ||
        !tlens__mul_ok(total, sizeof(float), &bytes))
        return 0;
    return total;
}

/* W_enc (K inputs, N features) into the packed layout one row at a time,
 * through `row` (N floats of scratch). */
static void tlens__sae_pack(float *dst, const unsigned char *data, const tlens__st_entry *e, int K, int N, float *row) {
    size_t esize = tlens__dtype_size((tlens_dtype)e->dtype);
    int k, p, panels = tlens__mat_panels(N);
    for (k = 0; k < K; k++) {
        tlens__decode_floats(row, data + e->begin + (size_t)k * (size_t)N * esize, (size_t)N, (tlens_dtype)e->dtype);
        for (p = 0; p < panels; p++) {
            int n0 = p * TLENS__PANEL, cols = tlens__min_int(TLENS__PANEL, N - n0);
            float *d = dst + tlens__mat_index(K, k, n0);
            memcpy(d, row + n0, (size_t)cols * sizeof(float));
            if (cols < TLENS__PANEL) memset(d + cols, 0, (size_t)(TLENS__PANEL - cols) * sizeof(float));
        }
    }
}

static void tlens__sae_decode_vec(float *dst, const unsigned char *data, const tlens__st_entry *e) {
    tlens__decode_floats(dst, data + e->begin, (size_t)e->shape[0], (tlens_dtype)e->dtype);
}

/* Read the tensors into one block. A scaling factor of all ones is dropped
 * (SAELens does the same); any other needs cfg.json's
 * finetuning_scaling_factor, as SAELens insists. */
static tlens_result tlens__sae_weights(tlens_sae *sae, const tlens__st *st, const unsigned char *data,
                                       const char *what, tlens_error *err) {
    tlens_sae_config *c = &sae->cfg;
    tlens__sae_entries t;
    size_t n_enc, total, i, S = (size_t)c->d_sae;
    float *p, *thr, *scale;
    int ones = 1;
    tlens_result r;
    if ((r = tlens__sae_entries_find(&t, st, c, what, err))) return r;
    if (!(total = tlens__sae_block_floats(c, &n_enc)))
        return tlens__fail(err, TLENS_ERR_CONFIG, "%s: d_in %d x d_sae %d does not fit this machine's memory", what,
                           c->d_in, c->d_sae);
    if (!(sae->block = p = (float *)tlens__alloc(&sae->alloc, total * sizeof(float))))
        return tlens__fail(err, TLENS_ERR_NOMEM, "%s: out of memory for %zu MB of weights", what,
                           total * sizeof(float) / 1000000);
    sae->W_dec = p + n_enc;
    tlens__sae_pack(p, data, t.W_enc, c->d_in, c->d_sae, p + n_enc); /* W_dec's room as scratch */
    tlens__decode_floats(p + n_enc, data + t.W_dec->begin, S * (size_t)c->d_in, (tlens_dtype)t.W_dec->dtype);
    p += n_enc + S * (size_t)c->d_in;
    tlens__sae_decode_vec(p, data, t.b_enc);
    tlens__sae_decode_vec(p + S, data, t.b_dec);
    sae->b_enc = p;
    sae->b_dec = p + S;
    thr = p + S + (size_t)c->d_in;
    scale = thr + S;
    if (t.threshold) {
        tlens__sae_decode_vec(thr, data, t.threshold);
        for (i = 0; t.log_threshold && i < S; i++) thr[i] = expf(thr[i]);
        sae->threshold = thr;
    }
    if (t.scale) {
        tlens__sae_decode_vec(scale, data, t.scale);
        for (i = 0; i < S; i++) ones &= scale[i] == 1.0f;
        if (!ones && !c->finetuning_scaling)
            return tlens__fail(err, TLENS_ERR_CONFIG, "%s: tensor %s is not all ones but cfg.json's "
                               "finetuning_scaling_factor is not true", what, t.scale->name);
        sae->scale = ones ? NULL : scale;
    }
    c->finetuning_scaling = sae->scale != NULL;
    c->dtype = (tlens_dtype)t.W_enc->dtype;
    sae->W_enc.data = sae->block;
    sae->W_enc.K = c->d_in;
    sae->W_enc.N = c->d_sae;
    sae->W_enc.dtype = TLENS_F32;
    return TLENS_OK;
}

static tlens_result tlens__sae_load(tlens_sae **out, const char *cfg, size_t cfg_len, const char *cfg_what,
                                    const unsigned char *w, size_t w_len, const char *w_what,
                                    const tlens_sae_load_options *opt, tlens_error *err) {
    tlens_sae_load_options defaults;
    tlens_sae *sae;
    tlens__st st;
    tlens_result r;
    *out = NULL;
    if (!opt) {
        memset(&defaults, 0, sizeof defaults);
        opt = &defaults;
    }
    if (!cfg) return tlens__fail(err, TLENS_ERR_ARG, "tlens_sae_load_memory: no cfg.json text");
    sae = (tlens_sae *)tlens__calloc(&opt->allocator, sizeof *sae);
    if (!sae) return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory for an SAE");
    sae->alloc = opt->allocator;
    r = tlens__sae_cfg_parse(&sae->cfg, cfg, cfg_len, cfg_what, opt, &sae->alloc, err);
    if (!r && !(r = tlens__sae_st_open(&st, w, w_len, w_what, &sae->alloc, err))) {
        r = tlens__sae_weights(sae, &st, w, w_what, err);
        tlens__free(&sae->alloc, st.entries);
    }
    if (r) {
        tlens_sae_free(sae);
        return r;
    }
    *out = sae;
    tlens__ok(err);
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_sae_load_memory(tlens_sae **out, const char *cfg_json, size_t cfg_len,
                                             const void *weights, size_t weights_len,
                                             const tlens_sae_load_options *opt, tlens_error *err) {
    return tlens__sae_load(out, cfg_json, cfg_len, "cfg.json", (const unsigned char *)weights, weights_len,
                           "sae_weights.safetensors", opt, err);
}

#ifndef TLENS_NO_STDIO
TLENS_DEF tlens_result tlens_sae_load(tlens_sae **out, const char *dir, const tlens_sae_load_options *opt,
                                      tlens_error *err) {
    char cfg_path[1024], w_path[1024];
    char *cfg = NULL, *w = NULL;
    size_t cfg_len = 0, w_len = 0;
    const tlens_allocator *a = opt ? &opt->allocator : NULL;
    tlens_result r;
    *out = NULL;
    if (!dir) return tlens__fail(err, TLENS_ERR_ARG, "tlens_sae_load: no folder");
    if (!tlens__join(cfg_path, sizeof cfg_path, dir, "cfg.json") ||
        !tlens__join(w_path, sizeof w_path, dir, "sae_weights.safetensors"))
        return tlens__fail(err, TLENS_ERR_ARG, "SAE folder path too long: %s", dir);
    if (!(r = tlens__read_file(a, cfg_path, &cfg, &cfg_len, err)) &&
        !(r = tlens__read_file(a, w_path, &w, &w_len, err)))
        r = tlens__sae_load(out, cfg, cfg_len, cfg_path, (const unsigned char *)w, w_len, w_path, opt, err);
    tlens__free(a, cfg);
    tlens__free(a, w);
    return r;
}
#endif

TLENS_DEF void tlens_sae_free(tlens_sae *sae) {
    tlens_allocator a;
    if (!sae) return;
    a = sae->alloc;
    tlens__free(&a, sae->block);
    tlens__free(&a, sae);
}

TLENS_DEF const tlens_sae_config *tlens_sae_get_config(const tlens_sae *sae) { return &sae->cfg; }

/* ---- attaching: sites and their hook points ---- */

enum {
    TLENS__SAE_INPUT, TLENS__SAE_ACTS_PRE, TLENS__SAE_ACTS_POST, TLENS__SAE_RECONS, TLENS__SAE_ERROR,
    TLENS__SAE_OUTPUT, TLENS__SAE_POINTS
};

/* In firing order, SAELens' names. */
static const char *const tlens__sae_point_names[TLENS__SAE_POINTS] = {
    "hook_sae_input", "hook_sae_acts_pre", "hook_sae_acts_post", "hook_sae_recons", "hook_sae_error",
    "hook_sae_output"};

struct tlens__sae_site {
    const tlens_sae *sae;
    int host;              /* the model point the SAE replaces            */
    int first;             /* its own points: first .. first + 5          */
    int use_error_term;
    int center;            /* take each row's mean out before, back after */
    char *names;           /* the six names, one block                    */
    float *buf;            /* scratch of a run (tlens__sae_scratch)       */
    size_t buf_cap;        /* floats                                      */
    int *topk;             /* (k) TopK's chosen features                  */
};

/* Each host's sae_site from the site list. */
static void tlens__sae_link(tlens_ctx *ctx) {
    int i;
    for (i = 0; i < ctx->n_points; i++) ctx->points[i].sae_site = 0;
    for (i = 0; i < ctx->n_sae_sites; i++) ctx->points[ctx->sae_sites[i].host].sae_site = i + 1; /* the last wins */
    ctx->dirty = 1;
}

static void tlens__sae_site_release(tlens_ctx *ctx, tlens__sae_site *s) {
    tlens__free(ctx->alloc, s->names);
    tlens__free(ctx->alloc, s->buf);
    tlens__free(ctx->alloc, s->topk);
}

/* Drop site s, its points (and their cached values) and its scratch. */
static void tlens__sae_remove(tlens_ctx *ctx, int s) {
    tlens__sae_site *site = &ctx->sae_sites[s];
    int i, first = site->first;
    for (i = first; i < first + TLENS__SAE_POINTS; i++) tlens__free(ctx->alloc, ctx->points[i].cache.data);
    memmove(&ctx->points[first], &ctx->points[first + TLENS__SAE_POINTS],
            (size_t)(ctx->n_points - first - TLENS__SAE_POINTS) * sizeof *ctx->points);
    ctx->n_points -= TLENS__SAE_POINTS;
    tlens__sae_site_release(ctx, site);
    memmove(site, site + 1, (size_t)(ctx->n_sae_sites - s - 1) * sizeof *site);
    ctx->n_sae_sites--;
    for (i = 0; i < ctx->n_sae_sites; i++)
        if (ctx->sae_sites[i].first > first) ctx->sae_sites[i].first -= TLENS__SAE_POINTS;
    tlens__sae_link(ctx);
}

static void tlens__sae_sites_free(tlens_ctx *ctx) {
    int i;
    for (i = 0; i < ctx->n_sae_sites; i++) tlens__sae_site_release(ctx, &ctx->sae_sites[i]);
    tlens__free(ctx->alloc, ctx->sae_sites);
    ctx->sae_sites = NULL;
    ctx->n_sae_sites = 0;
}

TLENS_DEF tlens_result tlens_sae_detach(tlens_ctx *ctx, const char *hook_name) {
    int s, found = 0;
    for (s = ctx->n_sae_sites - 1; s >= 0; s--)
        if (!hook_name || strcmp(ctx->points[ctx->sae_sites[s].host].name, hook_name) == 0) {
            tlens__sae_remove(ctx, s);
            found = 1;
        }
    return found || !hook_name ? TLENS_OK : TLENS_ERR_NOT_FOUND;
}

#ifdef TLENS_NO_HOOKS
TLENS_DEF tlens_result tlens_sae_attach(tlens_ctx *ctx, const tlens_sae *sae, const tlens_sae_attach_options *opt,
                                        tlens_error *err) {
    (void)ctx;
    (void)sae;
    (void)opt;
    return tlens__fail(err, TLENS_ERR_ARG, "tlens_sae_attach: tlens was built with TLENS_NO_HOOKS");
}
#else
/* The axes of model point i after batch and position (dims[0..n)), n = 0
 * when no SAE can sit there (token ids; scores and pattern, whose key
 * axis varies); *resid: a point of the residual stream, which
 * center_writing_weights makes mean-free. */
static int tlens__sae_point_dims(const tlens_ctx *ctx, int i, int dims[2], int *resid) {
    int n = tlens__point_row_shape(ctx, i, dims), k = (i - TLENS__HP_GLOBAL_PRE) % TLENS__HP_PER_BLOCK;
    if (n <= 0) n = 0;
    if (i < TLENS__HP_GLOBAL_PRE) *resid = n > 0; /* hook_embed, hook_pos_embed */
    else if (i >= tlens__post_point(ctx, 0)) *resid = 0;
    else *resid = k == TLENS__HP_RESID_PRE || k == TLENS__HP_RESID_MID || k == TLENS__HP_RESID_POST ||
                  k == TLENS__HP_ATTN_OUT || k == TLENS__HP_MLP_OUT;
    return n;
}

/* Does the SAE's input fit point `host`? Sets *resid as above. */
static tlens_result tlens__sae_fits(const tlens_ctx *ctx, const tlens_sae_config *c, int host, int *resid,
                                    tlens_error *err) {
    int dims[2], n = tlens__sae_point_dims(ctx, host, dims, resid), width;
    const char *name = ctx->points[host].name;
    if (!n) return tlens__fail(err, TLENS_ERR_SHAPE, "an SAE cannot sit at %s (no fixed last axis)", name);
    if (c->hook_head_index >= 0) {
        if (n != 2 || c->hook_head_index >= dims[0])
            return tlens__fail(err, TLENS_ERR_SHAPE, "%s has no head %d (the SAE's hook_head_index)", name,
                               c->hook_head_index);
        width = dims[1];
    } else {
        width = n == 1 ? dims[0] : c->reshape_hook_z ? dims[0] * dims[1] : dims[1];
    }
    if (width != c->d_in)
        return tlens__fail(err, TLENS_ERR_SHAPE, "the SAE's d_in is %d but %s is %d wide", c->d_in, name, width);
    return TLENS_OK;
}

static int tlens__sae_find_host(const tlens_ctx *ctx, const char *name) {
    int i;
    for (i = 0; i < ctx->n_points; i++)
        if (!ctx->points[i].sae_host && strcmp(ctx->points[i].name, name) == 0) return i;
    return -1;
}

/* The site's names and TopK scratch. */
static tlens_result tlens__sae_site_init(tlens_ctx *ctx, tlens__sae_site *s, tlens_error *err) {
    const tlens_sae_config *c = &s->sae->cfg;
    size_t len = strlen(c->hook_name), off = 0;
    int k;
    s->names = (char *)tlens__alloc(ctx->alloc, TLENS__SAE_POINTS * (len + 24));
    if (c->architecture == TLENS_SAE_TOPK) s->topk = (int *)tlens__alloc(ctx->alloc, (size_t)c->k * sizeof(int));
    if (!s->names || (c->architecture == TLENS_SAE_TOPK && !s->topk)) {
        tlens__sae_site_release(ctx, s);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory attaching an SAE");
    }
    for (k = 0; k < TLENS__SAE_POINTS; k++) {
        size_t n = strlen(tlens__sae_point_names[k]);
        memcpy(s->names + off, c->hook_name, len);
        s->names[off + len] = '.';
        memcpy(s->names + off + len + 1, tlens__sae_point_names[k], n + 1);
        off += len + n + 2;
    }
    return TLENS_OK;
}

/* Append the site and its six points (the arrays grow by copying, so a
 * failure leaves the context as it was). */
static tlens_result tlens__sae_site_add(tlens_ctx *ctx, tlens__sae_site *s, tlens_error *err) {
    tlens__sae_site *sites = (tlens__sae_site *)tlens__alloc(ctx->alloc, (size_t)(ctx->n_sae_sites + 1) * sizeof *sites);
    tlens__point *pts = (tlens__point *)tlens__calloc(ctx->alloc, (size_t)(ctx->n_points + TLENS__SAE_POINTS) * sizeof *pts);
    const char *name = s->names;
    int k;
    if (!sites || !pts) {
        tlens__free(ctx->alloc, sites);
        tlens__free(ctx->alloc, pts);
        tlens__sae_site_release(ctx, s);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory attaching an SAE");
    }
    if (ctx->n_sae_sites) memcpy(sites, ctx->sae_sites, (size_t)ctx->n_sae_sites * sizeof *sites);
    memcpy(pts, ctx->points, (size_t)ctx->n_points * sizeof *pts);
    s->first = ctx->n_points;
    for (k = 0; k < TLENS__SAE_POINTS; k++, name += strlen(name) + 1) {
        tlens__point *p = &pts[s->first + k];
        p->name = (char *)name;
        p->layer = ctx->points[s->host].layer;
        p->sae_host = s->host + 1;
    }
    tlens__free(ctx->alloc, ctx->sae_sites);
    tlens__free(ctx->alloc, ctx->points);
    sites[ctx->n_sae_sites++] = *s;
    ctx->sae_sites = sites;
    ctx->points = pts;
    ctx->n_points += TLENS__SAE_POINTS;
    tlens__sae_link(ctx);
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_sae_attach(tlens_ctx *ctx, const tlens_sae *sae, const tlens_sae_attach_options *opt,
                                        tlens_error *err) {
    tlens_sae_attach_options defaults;
    tlens__sae_site s;
    tlens_result r;
    int resid = 0, writes_centred, replaced;
    if (!ctx || !sae) return tlens__fail(err, TLENS_ERR_ARG, "tlens_sae_attach: no context or no SAE");
    if (!opt) {
        memset(&defaults, 0, sizeof defaults);
        opt = &defaults;
    }
    memset(&s, 0, sizeof s);
    s.sae = sae;
    if ((s.host = tlens__sae_find_host(ctx, sae->cfg.hook_name)) < 0)
        return tlens__fail(err, TLENS_ERR_NOT_FOUND, "the SAE's hook_name %s is not a hook point of this model",
                           sae->cfg.hook_name);
    if ((r = tlens__sae_fits(ctx, &sae->cfg, s.host, &resid, err))) return r;
    writes_centred = (ctx->m->processing & TLENS__CENTER_WRITING) != 0;
    s.use_error_term = opt->use_error_term != 0;
    s.center = opt->center == TLENS_SAE_CENTER_ON ||
               (opt->center == TLENS_SAE_CENTER_AUTO && resid && !writes_centred && sae->cfg.hook_head_index < 0);
    replaced = ctx->points[s.host].sae_site - 1;
    if ((r = tlens__sae_site_init(ctx, &s, err)) || (r = tlens__sae_site_add(ctx, &s, err))) return r;
    if (replaced >= 0) tlens__sae_remove(ctx, replaced); /* only once the new one is in */
    tlens__ok(err);
    return TLENS_OK;
}

/* ---- the SAE inside a forward pass ---- */

/* One splice: the host's activation and the scratch laid out for it. */
typedef struct tlens__sae_run {
    const tlens__sae_site *site;
    const tlens_sae *sae;
    tlens_tensor *host;
    int R, d, S;                 /* rows, d_in, d_sae                     */
    int ndim;                    /* the SAE's input shape [..., d_in]     */
    int shape[TLENS_MAX_DIMS];
    float *x;                    /* (R, d) the input x (centred)          */
    float *in;                   /* (R, d) hook_sae_input, then sae_in    */
    float *out;                  /* (R, d) recons, then the output        */
    float *err;                  /* (R, d) the error term                 */
    float *pre, *post;           /* (R, S) acts_pre, acts_post            */
    float *mu;                   /* (R) centring means                    */
    float *na, *nb;              /* (R) normalisation: scale, mean        */
} tlens__sae_run;

/* The SAE's view of the host tensor: the head's slice, the heads
 * flattened, or the tensor as it is; TLENS__STOP_SHAPE when it is not
 * d_in wide (tlens_sae_attach checked it already). */
static int tlens__sae_shape(tlens__sae_run *u) {
    const tlens_sae_config *c = &u->sae->cfg;
    const tlens_tensor *t = u->host;
    size_t rows = 1;
    int i, head = c->hook_head_index;
    u->d = c->d_in;
    u->S = c->d_sae;
    u->ndim = t->ndim;
    memcpy(u->shape, t->shape, sizeof u->shape);
    if (head >= 0) {
        if (t->ndim != 4 || head >= t->shape[2]) return TLENS__STOP_SHAPE;
        u->ndim = 3; /* [b, p, d_in] of a [b, p, head, d_in] point */
        u->shape[2] = t->shape[3];
    } else if (c->reshape_hook_z && t->ndim == 4) {
        u->ndim = 3;
        u->shape[2] = t->shape[2] * t->shape[3];
    }
    if (u->ndim < 1 || u->shape[u->ndim - 1] != c->d_in) return TLENS__STOP_SHAPE;
    for (i = 0; i + 1 < u->ndim; i++) rows *= (size_t)u->shape[i];
    if (rows > 0x7fffffff) return TLENS__STOP_SHAPE;
    u->R = (int)rows;
    return 0;
}

/* Lay the site's scratch out for R rows (it grows, never shrinks). */
static int tlens__sae_scratch(tlens__sae_site *s, tlens__sae_run *u, const tlens_allocator *a) {
    size_t R = (size_t)u->R, rd, rs, need, bytes;
    if (!tlens__mul_ok(R, (size_t)u->d, &rd) || !tlens__mul_ok(R, (size_t)u->S, &rs) ||
        !tlens__mul_ok(rd, 4, &need) || !tlens__add_ok(need, 3 * R, &need) || !tlens__add_ok(need, rs, &need) ||
        !tlens__add_ok(need, rs, &need) || !tlens__mul_ok(need, sizeof(float), &bytes))
        return TLENS__STOP_NOMEM;
    if (need > s->buf_cap) {
        tlens__free(a, s->buf);
        s->buf = (float *)tlens__alloc(a, bytes);
        s->buf_cap = s->buf ? need : 0;
        if (!s->buf) return TLENS__STOP_NOMEM;
    }
    u->x = s->buf;
    u->in = u->x + rd;
    u->out = u->in + rd;
    u->err = u->out + rd;
    u->pre = u->err + rd;
    u->post = u->pre + rs;
    u->mu = u->post + rs;
    u->na = u->mu + R;
    u->nb = u->na + R;
    return 0;
}

/* Row r of the SAE's input inside the host tensor. */
static float *tlens__sae_host_row(const tlens__sae_run *u, int r) {
    int head = u->sae->cfg.hook_head_index;
    if (head < 0) return u->host->data + (size_t)r * (size_t)u->d;
    return u->host->data + ((size_t)r * (size_t)u->host->shape[2] + (size_t)head) * (size_t)u->d;
}

/* x = the host's rows, each less its mean over d_in when centring. */
static void tlens__sae_gather(tlens__sae_run *u) {
    int r, i, d = u->d;
    for (r = 0; r < u->R; r++) {
        float *x = u->x + (size_t)r * (size_t)d;
        double sum = 0;
        memcpy(x, tlens__sae_host_row(u, r), (size_t)d * sizeof(float));
        if (!u->site->center) continue;
        for (i = 0; i < d; i++) sum += x[i];
        u->mu[r] = (float)(sum / d);
        for (i = 0; i < d; i++) x[i] -= u->mu[r];
    }
}

/* The host's rows = the output (plus the mean taken out). */
static void tlens__sae_scatter(const tlens__sae_run *u) {
    int r, i, d = u->d;
    for (r = 0; r < u->R; r++) {
        float *dst = tlens__sae_host_row(u, r);
        const float *o = u->out + (size_t)r * (size_t)d;
        float m = u->site->center ? u->mu[r] : 0.0f;
        for (i = 0; i < d; i++) dst[i] = o[i] + m;
    }
}

/* normalize_activations on the way in, in place; each row's factors go to
 * na / nb for the way out. */
static void tlens__sae_norm_in(const tlens__sae_run *u, float *x) {
    int mode = u->sae->cfg.normalize_activations, r, i, d = u->d;
    if (mode == TLENS_SAE_NORM_NONE) return;
    for (r = 0; r < u->R; r++) {
        float *row = x + (size_t)r * (size_t)d;
        double sum = 0, sq = 0;
        if (mode == TLENS_SAE_NORM_LAYER_NORM) {
            float mean, den;
            for (i = 0; i < d; i++) sum += row[i];
            mean = (float)(sum / d);
            for (i = 0; i < d; i++) sq += (double)(row[i] - mean) * (row[i] - mean);
            u->nb[r] = mean;
            u->na[r] = (float)sqrt(sq / (d - 1)); /* torch.std: n - 1 */
            den = u->na[r] + 1e-5f;
            for (i = 0; i < d; i++) row[i] = (row[i] - mean) / den;
            continue;
        }
        if (mode == TLENS_SAE_NORM_EXPECTED_AVERAGE_ONLY_IN) {
            u->na[r] = u->sae->cfg.norm_scaling_factor;
        } else { /* constant_norm_rescale: to norm sqrt(d_in) */
            for (i = 0; i < d; i++) sq += (double)row[i] * row[i];
            u->na[r] = (float)(sqrt((double)d) / sqrt(sq));
        }
        for (i = 0; i < d; i++) row[i] *= u->na[r];
    }
}

/* ... and undone on the way out, in place. */
static void tlens__sae_norm_out(const tlens__sae_run *u, float *y) {
    int mode = u->sae->cfg.normalize_activations, r, i, d = u->d;
    if (mode == TLENS_SAE_NORM_NONE) return;
    for (r = 0; r < u->R; r++) {
        float *row = y + (size_t)r * (size_t)d;
        for (i = 0; i < d; i++)
            row[i] = mode == TLENS_SAE_NORM_LAYER_NORM ? row[i] * u->na[r] + u->nb[r] : row[i] / u->na[r];
    }
}

/* pre (R, S) = (normalise(in) - b_dec) @ W_enc + b_enc; `in` is used up. */
static void tlens__sae_encode(const tlens__sae_run *u, float *in) {
    const tlens_sae *s = u->sae;
    int r, i;
    tlens__sae_norm_in(u, in);
    if (s->cfg.apply_b_dec_to_input)
        for (r = 0; r < u->R; r++)
            for (i = 0; i < u->d; i++) in[(size_t)r * (size_t)u->d + (size_t)i] -= s->b_dec[i];
    tlens__matmul(u->pre, in, &s->W_enc, s->b_enc, u->R);
}

/* TopK's order: is feature a worse than b (smaller, or equal and later)? */
static int tlens__sae_worse(const float *v, int a, int b) {
    return v[a] < v[b] || (v[a] == v[b] && a > b);
}

/* The k best features of row v (n wide) into h, a heap with the worst on
 * top while it fills: O(n log k). */
static void tlens__sae_topk(const float *v, int n, int k, int *h) {
    int f, size = 0;
    for (f = 0; f < n; f++) {
        int i, t;
        if (size < k) {
            h[size] = f;
            for (i = size++; i > 0 && tlens__sae_worse(v, h[i], h[(i - 1) / 2]); i = (i - 1) / 2) {
                t = h[i]; h[i] = h[(i - 1) / 2]; h[(i - 1) / 2] = t;
            }
            continue;
        }
        if (!(v[f] > v[h[0]])) continue; /* ties keep the earlier feature */
        h[0] = f;
        for (i = 0;;) {
            int c = 2 * i + 1;
            if (c >= k) break;
            if (c + 1 < k && tlens__sae_worse(v, h[c + 1], h[c])) c++;
            if (!tlens__sae_worse(v, h[c], h[i])) break;
            t = h[c]; h[c] = h[i]; h[i] = t;
            i = c;
        }
    }
}

/* post = the activation of pre: ReLU; ReLU where pre > threshold
 * (JumpReLU); ReLU of the k largest, 0 elsewhere (TopK, as SAELens'
 * TopK: topk of pre, then ReLU). */
static void tlens__sae_activate(const tlens__sae_run *u) {
    const tlens_sae *s = u->sae;
    int r, f, S = u->S;
    for (r = 0; r < u->R; r++) {
        const float *pre = u->pre + (size_t)r * (size_t)S;
        float *post = u->post + (size_t)r * (size_t)S;
        if (s->cfg.architecture == TLENS_SAE_TOPK) {
            int *h = u->site->topk;
            memset(post, 0, (size_t)S * sizeof(float));
            tlens__sae_topk(pre, S, s->cfg.k, h);
            for (f = 0; f < s->cfg.k; f++) post[h[f]] = pre[h[f]] > 0 ? pre[h[f]] : 0.0f;
            continue;
        }
        for (f = 0; f < S; f++)
            post[f] = pre[f] > 0 && (!s->threshold || pre[f] > s->threshold[f]) ? pre[f] : 0.0f;
    }
}

/* Rows decoded together: each row of W_dec is read once per block. */
#define TLENS__SAE_ROWS 16

/* o (d) += v * w, on the vector macros of 3.10. */
static void tlens__sae_axpy(float *o, float v, const float *w, int d) {
    tlens__vf vv = TLENS__V_SET1(v);
    int i;
    TLENS__FOR_VECTORS(i, d) TLENS__V_STORE(o + i, TLENS__V_FMA(vv, TLENS__V_LOAD(w + i), TLENS__V_LOAD(o + i)));
    for (; i < d; i++) o[i] += v * w[i];
}

/* out (R, d) = (acts * scale) @ W_dec + b_dec, adding only the rows of
 * W_dec whose feature is not 0, in feature order (so the result does not
 * depend on the blocking or the threads). */
static void tlens__sae_decode(const tlens_sae *s, const float *acts, float *out, int R) {
    int blk, d = s->cfg.d_in, S = s->cfg.d_sae, blocks = (R + TLENS__SAE_ROWS - 1) / TLENS__SAE_ROWS;
#ifdef _OPENMP
#pragma omp parallel for schedule(dynamic) if (blocks > 1)
#endif
    for (blk = 0; blk < blocks; blk++) {
        int r0 = blk * TLENS__SAE_ROWS, n = tlens__min_int(TLENS__SAE_ROWS, R - r0), f, r;
        for (r = r0; r < r0 + n; r++) memcpy(out + (size_t)r * (size_t)d, s->b_dec, (size_t)d * sizeof(float));
        for (f = 0; f < S; f++) {
            const float *w = s->W_dec + (size_t)f * (size_t)d;
            for (r = r0; r < r0 + n; r++) {
                float v = acts[(size_t)r * (size_t)S + (size_t)f];
                if (v != 0.0f) tlens__sae_axpy(out + (size_t)r * (size_t)d, s->scale ? v * s->scale[f] : v, w, d);
            }
        }
    }
}

/* Fire the SAE's point `which` on data: in the SAE's input shape with the
 * last axis `width`, or (as_host, for the output and the error) in the
 * host's own shape. */
static int tlens__sae_fire(tlens_ctx *ctx, const tlens__sae_run *u, int which, float *data, int width,
                           int as_host) {
    int i = u->site->first + which;
    tlens_tensor t;
    if (!ctx->points[i].active) return 0;
    if (as_host && u->sae->cfg.hook_head_index < 0) {
        t = *u->host;
    } else {
        t.ndim = u->ndim;
        memcpy(t.shape, u->shape, sizeof t.shape);
        t.shape[u->ndim - 1] = width;
    }
    t.data = data;
    return tlens__fire(ctx, i, &t);
}

/* The pass hooks see: input, acts_pre, acts_post, recons; out = the
 * unnormalised reconstruction. */
static int tlens__sae_forward(tlens_ctx *ctx, const tlens__sae_run *u) {
    int r;
    memcpy(u->in, u->x, (size_t)u->R * (size_t)u->d * sizeof(float));
    if ((r = tlens__sae_fire(ctx, u, TLENS__SAE_INPUT, u->in, u->d, 0))) return r;
    tlens__sae_encode(u, u->in);
    if ((r = tlens__sae_fire(ctx, u, TLENS__SAE_ACTS_PRE, u->pre, u->S, 0))) return r;
    tlens__sae_activate(u);
    if ((r = tlens__sae_fire(ctx, u, TLENS__SAE_ACTS_POST, u->post, u->S, 0))) return r;
    tlens__sae_decode(u->sae, u->post, u->out, u->R);
    if ((r = tlens__sae_fire(ctx, u, TLENS__SAE_RECONS, u->out, u->d, 0))) return r;
    tlens__sae_norm_out(u, u->out);
    return 0;
}

/* Could a hook have changed the pass (not just cached it)? */
static int tlens__sae_edited(const tlens_ctx *ctx, const tlens__sae_site *s) {
    int k;
    for (k = TLENS__SAE_INPUT; k <= TLENS__SAE_RECONS; k++)
        if (ctx->points[s->first + k].n_hooks) return 1;
    return 0;
}

/* With the error term: err = x - the output of x with no hook (the same
 * pass again when hooks may have edited it, as SAELens recomputes it), and
 * out += err; then hook_sae_output. */
static int tlens__sae_finish(tlens_ctx *ctx, const tlens__sae_run *u) {
    size_t i, n = (size_t)u->R * (size_t)u->d;
    int r;
    if (u->site->use_error_term) {
        if (tlens__sae_edited(ctx, u->site)) {
            memcpy(u->in, u->x, n * sizeof(float));
            tlens__sae_encode(u, u->in);
            tlens__sae_activate(u);
            tlens__sae_decode(u->sae, u->post, u->err, u->R);
            tlens__sae_norm_out(u, u->err);
        } else {
            memcpy(u->err, u->out, n * sizeof(float));
        }
        for (i = 0; i < n; i++) u->err[i] = u->x[i] - u->err[i];
        if ((r = tlens__sae_fire(ctx, u, TLENS__SAE_ERROR, u->err, u->d, 1))) return r;
        for (i = 0; i < n; i++) u->out[i] += u->err[i];
    }
    return tlens__sae_fire(ctx, u, TLENS__SAE_OUTPUT, u->out, u->d, 1);
}

/* Called by tlens__fire after the host's hooks and cache copy. */
static int tlens__sae_splice(tlens_ctx *ctx, int host, tlens_tensor *t) {
    tlens__sae_site *s = &ctx->sae_sites[ctx->points[host].sae_site - 1];
    tlens__sae_run u;
    int r;
    memset(&u, 0, sizeof u);
    u.site = s;
    u.sae = s->sae;
    u.host = t;
    if ((r = tlens__sae_shape(&u)) || (r = tlens__sae_scratch(s, &u, ctx->alloc))) return r;
    tlens__sae_gather(&u);
    if ((r = tlens__sae_forward(ctx, &u)) || (r = tlens__sae_finish(ctx, &u))) return r;
    tlens__sae_scatter(&u);
    return 0;
}
#endif /* TLENS_NO_HOOKS */

/* ------------------------------------------------------------------------
 * 3.16 Steering vectors and intervention files
 *
 * Every intervention is a hook the context owns (as ablation and patching
 * are), its state one tlens__iv: the operation, the head and positions it
 * edits, its data (copied when added). The hook sees the activation as
 * rows along the last axis ([b, p, D]: b*p rows of D; [b, p, h, dh]: one
 * row per head; [b, h, q, k]: a row of keys per query) and edits the rows
 * its head and positions select. A row's position is absolute: the number
 * of tokens the key/value cache held before the run, plus its index in the
 * run, so that cached generation edits what a run of the whole sequence
 * would.
 * ---------------------------------------------------------------------- */
enum {
    TLENS__IV_ZERO, TLENS__IV_MEAN, TLENS__IV_SCALE, TLENS__IV_ADD, TLENS__IV_PROJECT, TLENS__IV_REPLACE,
    TLENS__IV_OPS
};

typedef struct tlens__iv {
    int op;
    int head;               /* -1: every head */
    int *positions;         /* absolute positions; NULL: every position */
    int n_positions;
    float factor;           /* scale */
    float *vec;             /* add: coef * vector; project_out: the unit direction */
    int n;                  /* its length: the point's last dimension */
    tlens_tensor source;    /* replace: [batch, pos, ...] of the whole sequence */
    const tlens_ctx *ctx;   /* for the number of cached positions */
    const tlens_allocator *alloc;
    double *mean;           /* mean: per-feature sums, grown as needed */
    size_t mean_cap;
} tlens__iv;

/* A hook's tensor as rows along its last axis. hook_tokens [b, p] has the
 * position last: there each value is a row of one. */
typedef struct tlens__rows {
    size_t n, width;
    int rd;                 /* axes 0 .. rd-1 number the rows */
    int pos_axis, head_axis;
} tlens__rows;

static void tlens__rows_init(tlens__rows *r, const char *name, const tlens_tensor *t) {
    tlens__point_axes(name, t->ndim, &r->head_axis, &r->pos_axis);
    r->rd = r->pos_axis == t->ndim - 1 ? t->ndim : t->ndim - 1;
    r->width = r->rd == t->ndim ? 1 : (size_t)t->shape[t->ndim - 1];
    r->n = tlens_tensor_numel(t) / r->width;
}

/* Row i's coordinates c[0 .. rd-1]. Returns its feature index: the
 * coordinates other than batch and position, flattened (what a mean over
 * batch and positions keeps apart). */
static size_t tlens__row_coords(const tlens__rows *r, const tlens_tensor *t, size_t i, int *c) {
    size_t f = 0, mul = 1;
    int d;
    for (d = r->rd - 1; d >= 0; d--) {
        c[d] = (int)(i % (size_t)t->shape[d]);
        i /= (size_t)t->shape[d];
        if (d == 0 || d == r->pos_axis) continue;
        f += (size_t)c[d] * mul;
        mul *= (size_t)t->shape[d];
    }
    return f;
}

/* Does the intervention edit the row at coordinates c? *pos gets the row's
 * absolute position. */
static int tlens__iv_selects(const tlens__iv *iv, const tlens__rows *r, const int *c, int *pos) {
    int k;
    *pos = iv->ctx->kv_len + c[r->pos_axis];
    if (iv->head >= 0 && (r->head_axis < 0 || c[r->head_axis] != iv->head)) return 0;
    if (!iv->positions) return 1;
    for (k = 0; k < iv->n_positions; k++)
        if (iv->positions[k] == *pos) return 1;
    return 0;
}

/* "mean": every selected value becomes its feature's mean over the batch
 * and all positions of the run (summed first, then written). */
static int tlens__iv_mean(tlens__iv *iv, const tlens__rows *r, tlens_tensor *t) {
    size_t per = r->n / ((size_t)t->shape[0] * (size_t)t->shape[r->pos_axis]); /* feature rows */
    size_t need = per * r->width, i, w;
    double count = (double)(r->n / per);
    int c[TLENS_MAX_DIMS], pos;
    if (need > iv->mean_cap) {
        tlens__free(iv->alloc, iv->mean);
        iv->mean = (double *)tlens__alloc(iv->alloc, need * sizeof(double));
        iv->mean_cap = iv->mean ? need : 0;
        if (!iv->mean) return TLENS__STOP_NOMEM;
    }
    memset(iv->mean, 0, need * sizeof(double));
    for (i = 0; i < r->n; i++) {
        const float *x = t->data + i * r->width;
        double *m = iv->mean + tlens__row_coords(r, t, i, c) * r->width;
        for (w = 0; w < r->width; w++) m[w] += x[w];
    }
    for (i = 0; i < r->n; i++) {
        float *x = t->data + i * r->width;
        const double *m = iv->mean + tlens__row_coords(r, t, i, c) * r->width;
        if (!tlens__iv_selects(iv, r, c, &pos)) continue;
        for (w = 0; w < r->width; w++) x[w] = (float)(m[w] / count);
    }
    return 0;
}

/* "replace": the source's offset of the row at coordinates c and absolute
 * position pos, or (size_t)-1 when the source does not reach it. */
static size_t tlens__iv_source_row(const tlens__iv *iv, const tlens__rows *r, const int *c, int pos) {
    const tlens_tensor *s = &iv->source;
    size_t off = 0;
    int d;
    for (d = 0; d < r->rd; d++) {
        int v = d == r->pos_axis ? pos : c[d];
        if (v >= s->shape[d]) return (size_t)-1;
        off = off * (size_t)s->shape[d] + (size_t)v;
    }
    return r->rd < s->ndim ? off * (size_t)s->shape[s->ndim - 1] : off;
}

/* The source has the activation's axes, each as long, except the
 * positions and the keys of attn_scores / pattern (the whole sequence's,
 * at least as long; the positions are checked row by row). */
static int tlens__iv_source_fits(const tlens__iv *iv, const tlens__rows *r, const tlens_tensor *t) {
    int d;
    if (iv->source.ndim != t->ndim) return 0;
    for (d = 0; d < t->ndim; d++) {
        int keys = d == t->ndim - 1 && r->pos_axis == 2;
        if (d == r->pos_axis) continue;
        if (keys ? t->shape[d] > iv->source.shape[d] : t->shape[d] != iv->source.shape[d]) return 0;
    }
    return 1;
}

/* Edit one selected row x (width values). */
static int tlens__iv_row(const tlens__iv *iv, const tlens__rows *r, float *x, const int *c, int pos) {
    size_t w, n = r->width, off;
    double dot = 0;
    switch (iv->op) {
    case TLENS__IV_ZERO:
        memset(x, 0, n * sizeof(float));
        break;
    case TLENS__IV_SCALE:
        for (w = 0; w < n; w++) x[w] *= iv->factor;
        break;
    case TLENS__IV_ADD:
        for (w = 0; w < n; w++) x[w] += iv->vec[w];
        break;
    case TLENS__IV_PROJECT: /* x -= (x . u) u */
        for (w = 0; w < n; w++) dot += (double)x[w] * (double)iv->vec[w];
        for (w = 0; w < n; w++) x[w] -= (float)(dot * (double)iv->vec[w]);
        break;
    default: /* TLENS__IV_REPLACE */
        off = tlens__iv_source_row(iv, r, c, pos);
        if (off == (size_t)-1) return TLENS__STOP_SHAPE;
        memcpy(x, iv->source.data + off, n * sizeof(float));
        break;
    }
    return 0;
}

static int tlens__iv_hook(const char *name, int layer, tlens_tensor *t, void *user) {
    tlens__iv *iv = (tlens__iv *)user;
    tlens__rows r;
    size_t i;
    int c[TLENS_MAX_DIMS], pos, stop;
    (void)layer;
    tlens__rows_init(&r, name, t);
    if ((iv->op == TLENS__IV_ADD || iv->op == TLENS__IV_PROJECT) && r.width != (size_t)iv->n) return TLENS__STOP_SHAPE;
    if (iv->op == TLENS__IV_REPLACE && !tlens__iv_source_fits(iv, &r, t)) return TLENS__STOP_SHAPE;
    if (iv->op == TLENS__IV_MEAN) return tlens__iv_mean(iv, &r, t);
    for (i = 0; i < r.n; i++) {
        tlens__row_coords(&r, t, i, c);
        if (!tlens__iv_selects(iv, &r, c, &pos)) continue;
        if ((stop = tlens__iv_row(iv, &r, t->data + i * r.width, c, pos))) return stop;
    }
    return 0;
}

/* ---- checks against the model, when an intervention is added ---- */

static int tlens__point_index(const tlens_ctx *ctx, const char *name) {
    int i;
    for (i = 0; i < ctx->n_points; i++)
        if (strcmp(ctx->points[i].name, name) == 0) return i;
    return -1;
}

/* Point i's shape: returns its number of axes and fills dims, with -1
 * where the length depends on the run (batch, positions, keys). */
static int tlens__point_dims(const tlens_ctx *ctx, int i, int *dims) {
    const tlens_config *c = &ctx->m->cfg;
    int nd = 3, last = c->d_model;
    dims[0] = dims[1] = dims[2] = dims[3] = -1;
    if (i == TLENS__HP_TOKENS) return 2;
    if (i >= tlens__post_point(ctx, 0)) {
        if (i == tlens__post_point(ctx, TLENS__HP_LNF_SCALE)) last = 1;
    } else if (i >= TLENS__HP_GLOBAL_PRE) {
        switch ((i - TLENS__HP_GLOBAL_PRE) % TLENS__HP_PER_BLOCK) {
        case TLENS__HP_LN1_SCALE: case TLENS__HP_LN2_SCALE:
            last = 1;
            break;
        case TLENS__HP_MLP_PRE: case TLENS__HP_MLP_POST:
            last = c->d_mlp;
            break;
        case TLENS__HP_ATTN_IN: case TLENS__HP_Q_INPUT: case TLENS__HP_K_INPUT: case TLENS__HP_V_INPUT:
        case TLENS__HP_RESULT:
            nd = 4;
            dims[2] = c->n_heads;
            break;
        case TLENS__HP_Q: case TLENS__HP_K: case TLENS__HP_V: case TLENS__HP_Z:
            nd = 4;
            dims[2] = c->n_heads;
            last = c->d_head;
            break;
        case TLENS__HP_ATTN_SCORES: case TLENS__HP_PATTERN: /* [b, h, q, keys] */
            dims[1] = c->n_heads;
            return 4;
        default:
            break;
        }
    }
    dims[nd - 1] = last;
    return nd;
}

TLENS_DEF int tlens_hook_last_dim(const tlens_ctx *ctx, const char *name) {
    int dims[TLENS_MAX_DIMS], i = ctx && name ? tlens__point_index(ctx, name) : -1, nd;
    if (i < 0) return 0;
    nd = tlens__point_dims(ctx, i, dims);
    return dims[nd - 1] > 0 ? dims[nd - 1] : 0;
}

/* A shape for messages: "[2, 5, 64]", or for a point "[batch, pos, 64]". */
static void tlens__shape_text(char *out, size_t cap, const int *dims, int nd, int pos_axis) {
    tlens__buf b;
    int d;
    b.p = out; b.cap = cap; b.len = 0;
    tlens__putc(&b, '[');
    for (d = 0; d < nd; d++) {
        if (d) tlens__puts(&b, ", ");
        if (dims[d] >= 0) tlens__puti(&b, dims[d]);
        else tlens__puts(&b, d == 0 ? "batch" : d == pos_axis ? "pos" : "keys");
    }
    tlens__putc(&b, ']');
    tlens__putc(&b, '\0');
    if (cap) out[cap - 1] = '\0';
}

/* The source of "replace" against point i: the same axes, the fixed ones
 * as long, and every listed position inside it. */
static tlens_result tlens__iv_check_source(const tlens_ctx *ctx, int i, const tlens__iv *iv, const char *pre,
                                           tlens_error *err) {
    const char *name = ctx->points[i].name;
    int dims[TLENS_MAX_DIMS], nd = tlens__point_dims(ctx, i, dims), head_axis, pos_axis, d, k, ok;
    char want[64], have[64];
    tlens__point_axes(name, nd, &head_axis, &pos_axis);
    ok = iv->source.ndim == nd;
    for (d = 0; ok && d < nd; d++) ok = dims[d] < 0 || iv->source.shape[d] == dims[d];
    if (!ok) {
        tlens__shape_text(want, sizeof want, dims, nd, pos_axis);
        tlens__shape_text(have, sizeof have, iv->source.shape, iv->source.ndim, -1);
        return tlens__fail(err, TLENS_ERR_SHAPE, "%s\"file\": shape %s does not fit %s %s", pre, have, name, want);
    }
    for (k = 0; k < iv->n_positions; k++)
        if (iv->positions[k] >= iv->source.shape[pos_axis])
            return tlens__fail(err, TLENS_ERR_SHAPE, "%s\"positions\": %d is beyond the %d positions of \"file\"", pre,
                               iv->positions[k], iv->source.shape[pos_axis]);
    return TLENS_OK;
}

/* Can the intervention edit point i? `pre` starts every message ("exp.json:
 * entry 2: "), vec_key names where the vector came from. */
static tlens_result tlens__iv_check_point(const tlens_ctx *ctx, int i, const tlens__iv *iv, const char *pre,
                                          const char *vec_key, tlens_error *err) {
    const char *name = ctx->points[i].name;
    int dims[TLENS_MAX_DIMS], nd = tlens__point_dims(ctx, i, dims), head_axis, pos_axis;
    tlens__point_axes(name, nd, &head_axis, &pos_axis);
    if (iv->head >= 0 && head_axis < 0)
        return tlens__fail(err, TLENS_ERR_ARG, "%s\"head\": %s has no head axis", pre, name);
    if (iv->op == TLENS__IV_ADD || iv->op == TLENS__IV_PROJECT) {
        if (dims[nd - 1] < 0)
            return tlens__fail(err, TLENS_ERR_ARG, "%s\"hook\": the last axis of %s changes with the run: no vector fits it",
                               pre, name);
        if (dims[nd - 1] != iv->n)
            return tlens__fail(err, TLENS_ERR_SHAPE, "%s\"%s\": %d values, but the last axis of %s has %d", pre, vec_key,
                               iv->n, name, dims[nd - 1]);
    }
    return iv->op == TLENS__IV_REPLACE ? tlens__iv_check_source(ctx, i, iv, pre, err) : TLENS_OK;
}

/* Every point `pattern` matches must take the intervention; at least one
 * must match. Optional points count even when they are off. */
static tlens_result tlens__iv_check(const tlens_ctx *ctx, const char *pattern, const tlens__iv *iv, const char *pre,
                                    const char *vec_key, tlens_error *err) {
    const tlens_config *c = &ctx->m->cfg;
    int i, k, matched = 0;
    tlens_result r;
    if (iv->head >= c->n_heads)
        return tlens__fail(err, TLENS_ERR_ARG, "%s\"head\": %d, but the model has %d heads", pre, iv->head, c->n_heads);
    for (k = 0; k < iv->n_positions; k++)
        if (iv->positions[k] >= c->n_ctx)
            return tlens__fail(err, TLENS_ERR_ARG, "%s\"positions\": %d is beyond the model's n_ctx %d", pre,
                               iv->positions[k], c->n_ctx);
    for (i = 0; i < ctx->n_points; i++) {
        if (!tlens__glob(pattern, ctx->points[i].name)) continue;
        matched++;
        if ((r = tlens__iv_check_point(ctx, i, iv, pre, vec_key, err))) return r;
    }
    if (!matched) return tlens__fail(err, TLENS_ERR_NOT_FOUND, "%s\"hook\": no hook point matches %s", pre, pattern);
    return TLENS_OK;
}

/* ---- adding interventions as hooks ---- */

static void tlens__iv_free(void *p) {
    tlens__iv *iv = (tlens__iv *)p;
    tlens__free(iv->alloc, iv->positions);
    tlens__free(iv->alloc, iv->vec);
    tlens__free(iv->alloc, iv->source.data);
    tlens__free(iv->alloc, iv->mean);
    tlens__free(iv->alloc, iv);
}

/* The hook's own copy of `proto` (whose arrays are borrowed): add's vector
 * times coef, project_out's direction made a unit vector. NULL when out of
 * memory. */
static tlens__iv *tlens__iv_copy(tlens_ctx *ctx, const tlens__iv *proto, float coef) {
    tlens__iv *iv = (tlens__iv *)tlens__calloc(ctx->alloc, sizeof *iv);
    size_t n = (size_t)proto->n, w, src = proto->source.data ? tlens_tensor_numel(&proto->source) : 0;
    double norm = 0;
    if (!iv) return NULL;
    *iv = *proto;
    iv->positions = NULL; iv->vec = NULL; iv->source.data = NULL; iv->mean = NULL; iv->mean_cap = 0;
    iv->ctx = ctx;
    iv->alloc = ctx->alloc;
    if ((proto->n_positions && !(iv->positions = (int *)tlens__alloc(ctx->alloc, (size_t)proto->n_positions * sizeof(int)))) ||
        (proto->vec && !(iv->vec = (float *)tlens__alloc(ctx->alloc, n * sizeof(float)))) ||
        (src && !(iv->source.data = (float *)tlens__alloc(ctx->alloc, src * sizeof(float))))) {
        tlens__iv_free(iv);
        return NULL;
    }
    if (iv->positions) memcpy(iv->positions, proto->positions, (size_t)proto->n_positions * sizeof(int));
    if (src) memcpy(iv->source.data, proto->source.data, src * sizeof(float));
    if (!iv->vec) return iv;
    for (w = 0; w < n; w++) norm += (double)proto->vec[w] * (double)proto->vec[w];
    norm = sqrt(norm);
    for (w = 0; w < n; w++)
        iv->vec[w] = proto->op == TLENS__IV_PROJECT ? (float)((double)proto->vec[w] / norm) : coef * proto->vec[w];
    return iv;
}

static int tlens__iv_add(tlens_ctx *ctx, const char *pattern, const tlens__iv *proto, float coef) {
    tlens__iv *iv = tlens__iv_copy(ctx, proto, coef);
    int handle;
    if (!iv) return 0;
    handle = tlens__hook_push(ctx, pattern, NULL, NULL, tlens__iv_hook, iv);
    if (!handle) {
        tlens__iv_free(iv);
        return 0;
    }
    ctx->hooks[ctx->n_hooks - 1].owned = iv;
    ctx->hooks[ctx->n_hooks - 1].owned_free = tlens__iv_free;
    return handle;
}

TLENS_DEF int tlens_add_steering(tlens_ctx *ctx, const char *pattern, const float *vec, int n, float coef,
                                 const int *positions, int n_positions, tlens_error *err) {
    tlens__iv proto;
    int k, handle;
    if (!ctx || !pattern || !vec || n < 1 || n_positions < 0 || (n_positions > 0 && !positions)) {
        tlens__fail(err, TLENS_ERR_ARG, "tlens_add_steering: needs a context, a hook name and a vector of n >= 1 values");
        return 0;
    }
    for (k = 0; k < n_positions; k++)
        if (positions[k] < 0) {
            tlens__fail(err, TLENS_ERR_ARG, "tlens_add_steering: position %d is negative", positions[k]);
            return 0;
        }
    memset(&proto, 0, sizeof proto);
    proto.op = TLENS__IV_ADD;
    proto.head = -1;
    proto.positions = n_positions ? (int *)positions : NULL; /* borrowed: the hook copies it */
    proto.n_positions = n_positions;
    proto.vec = (float *)vec;
    proto.n = n;
    if (tlens__iv_check(ctx, pattern, &proto, "tlens_add_steering: ", "vec", err)) return 0;
    handle = tlens__iv_add(ctx, pattern, &proto, coef);
    if (!handle) {
        tlens__fail(err, TLENS_ERR_NOMEM, "tlens_add_steering: out of memory");
        return 0;
    }
    tlens__ok(err);
    return handle;
}

/* ---- intervention files ---- */

static const char *const tlens__iv_op_names[TLENS__IV_OPS] = {"zero", "mean", "scale", "add", "project_out",
                                                               "replace"};

typedef struct tlens__iv_entry {
    char *hook;
    tlens__iv proto;        /* op, head, positions, factor, vector, source: owned here */
    float coef;
    const char *vec_key;    /* "vector", "direction" or "file": for messages */
} tlens__iv_entry;

struct tlens_interventions {
    tlens_allocator alloc;
    char *what;             /* the file's name, for messages */
    tlens__iv_entry *entries;
    int n;
};

/* The keys an entry may have, and the operations each belongs to. */
enum {
    TLENS__IVK_HOOK, TLENS__IVK_OP, TLENS__IVK_HEAD, TLENS__IVK_POSITIONS, TLENS__IVK_FACTOR, TLENS__IVK_COEF,
    TLENS__IVK_VECTOR, TLENS__IVK_DIRECTION, TLENS__IVK_FILE, TLENS__IVK_COUNT
};
typedef struct tlens__iv_key {
    const char *name;
    unsigned ops;
} tlens__iv_key;
#define TLENS__IV_ALL ((1u << TLENS__IV_OPS) - 1u)
static const tlens__iv_key tlens__iv_keys[TLENS__IVK_COUNT] = {
    {"hook", TLENS__IV_ALL}, {"op", TLENS__IV_ALL}, {"head", TLENS__IV_ALL}, {"positions", TLENS__IV_ALL},
    {"factor", 1u << TLENS__IV_SCALE}, {"coef", 1u << TLENS__IV_ADD}, {"vector", 1u << TLENS__IV_ADD},
    {"direction", 1u << TLENS__IV_PROJECT},
    {"file", (1u << TLENS__IV_ADD) | (1u << TLENS__IV_PROJECT) | (1u << TLENS__IV_REPLACE)}};

/* What one entry's parse needs; every message starts "what: entry i: ". */
typedef struct tlens__iv_parse {
    tlens_interventions *s;
    const tlens__json *j;
    const char *dir;
    tlens_error *err;
    tlens__iv_entry *e;
    int index;
    int member[TLENS__IVK_COUNT]; /* each key's value node, or -1 */
} tlens__iv_parse;

/* The top level of an intervention file is an array. */
static tlens_result tlens__json_parse_array(tlens__json *j, const char *text, size_t len, const char *what,
                                            const tlens_allocator *a, tlens_error *err) {
    return tlens__json_parse_top(j, text, len, what, a, err, '[', "expected an array of interventions");
}

static const tlens__json_node *tlens__iv_node(const tlens__iv_parse *p, int key) {
    return p->member[key] >= 0 ? &p->j->nodes[p->member[key]] : NULL;
}

/* A string value, decoded into memory of the allocator (the decoded text
 * is never longer than the escaped one). */
static char *tlens__iv_string(const tlens__iv_parse *p, const tlens__json_node *n) {
    char *s = (char *)tlens__alloc(&p->s->alloc, n->len + 1);
    if (s) tlens__json_decode(n, s, n->len + 1);
    return s;
}

/* Find each member's key; unknown and repeated keys fail. */
static tlens_result tlens__iv_members(tlens__iv_parse *p, int obj) {
    const tlens__json *j = p->j;
    int c, k;
    for (k = 0; k < TLENS__IVK_COUNT; k++) p->member[k] = -1;
    if (j->nodes[obj].type != TLENS__JSON_OBJECT)
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: an intervention must be an object", p->s->what,
                           p->index);
    for (c = j->nodes[obj].first; c >= 0; c = j->nodes[c].next) {
        const tlens__json_node *key = &j->nodes[j->nodes[c].key];
        char name[40];
        for (k = 0; k < TLENS__IVK_COUNT && !tlens__json_str_eq(key, tlens__iv_keys[k].name); k++) {}
        if (k == TLENS__IVK_COUNT) {
            if (tlens__json_decode(key, name, sizeof name) == (size_t)-1) memcpy(name, "(a long key)", 13);
            return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: unknown key \"%s\"", p->s->what, p->index, name);
        }
        if (p->member[k] >= 0)
            return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: key \"%s\" appears twice", p->s->what, p->index,
                               tlens__iv_keys[k].name);
        p->member[k] = c;
    }
    return TLENS_OK;
}

/* "op": required, one of the operations; then every key present must
 * belong to it. */
static tlens_result tlens__iv_op(tlens__iv_parse *p) {
    const tlens__json_node *n = tlens__iv_node(p, TLENS__IVK_OP);
    char name[40];
    int k;
    if (!n) return tlens__fail(p->err, TLENS_ERR_MISSING, "%s: entry %d: missing key \"op\"", p->s->what, p->index);
    if (n->type != TLENS__JSON_STRING)
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: \"op\" must be a string", p->s->what, p->index);
    for (k = 0; k < TLENS__IV_OPS && !tlens__json_str_eq(n, tlens__iv_op_names[k]); k++) {}
    if (k == TLENS__IV_OPS) {
        if (tlens__json_decode(n, name, sizeof name) == (size_t)-1) memcpy(name, "(a long name)", 14);
        return tlens__fail(p->err, TLENS_ERR_FORMAT,
                           "%s: entry %d: \"op\": unknown operation \"%s\" (zero, mean, scale, add, project_out, replace)",
                           p->s->what, p->index, name);
    }
    p->e->proto.op = k;
    for (k = 0; k < TLENS__IVK_COUNT; k++)
        if (p->member[k] >= 0 && !(tlens__iv_keys[k].ops & (1u << p->e->proto.op)))
            return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: key \"%s\" does not belong to op \"%s\"",
                               p->s->what, p->index, tlens__iv_keys[k].name, tlens__iv_op_names[p->e->proto.op]);
    return TLENS_OK;
}

/* "hook" (required, a non-empty string) and "head" (an integer >= 0). */
static tlens_result tlens__iv_hook_head(tlens__iv_parse *p) {
    const tlens__json_node *n = tlens__iv_node(p, TLENS__IVK_HOOK), *h = tlens__iv_node(p, TLENS__IVK_HEAD);
    if (!n) return tlens__fail(p->err, TLENS_ERR_MISSING, "%s: entry %d: missing key \"hook\"", p->s->what, p->index);
    if (n->type != TLENS__JSON_STRING || n->len == 0)
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: \"hook\" must be a hook name or glob", p->s->what,
                           p->index);
    if (!(p->e->hook = tlens__iv_string(p, n)))
        return tlens__fail(p->err, TLENS_ERR_NOMEM, "%s: entry %d: out of memory", p->s->what, p->index);
    p->e->proto.head = -1;
    if (!h) return TLENS_OK;
    if (h->type != TLENS__JSON_NUMBER || !h->is_integer || h->integer < 0 || h->integer > (1 << 20))
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: \"head\" must be an integer >= 0", p->s->what,
                           p->index);
    p->e->proto.head = (int)h->integer;
    return TLENS_OK;
}

/* "positions": a non-empty list of integers >= 0. */
static tlens_result tlens__iv_positions(tlens__iv_parse *p) {
    const tlens__json_node *n = tlens__iv_node(p, TLENS__IVK_POSITIONS);
    const tlens__json *j = p->j;
    int c, k = 0, ok;
    if (!n) return TLENS_OK;
    ok = n->type == TLENS__JSON_ARRAY && n->first >= 0;
    for (c = ok ? n->first : -1; c >= 0; c = j->nodes[c].next, k++)
        ok &= j->nodes[c].type == TLENS__JSON_NUMBER && j->nodes[c].is_integer && j->nodes[c].integer >= 0 &&
              j->nodes[c].integer < (1 << 24);
    if (!ok)
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: \"positions\" must be a non-empty list of integers >= 0",
                           p->s->what, p->index);
    p->e->proto.positions = (int *)tlens__alloc(&p->s->alloc, (size_t)k * sizeof(int));
    if (!p->e->proto.positions)
        return tlens__fail(p->err, TLENS_ERR_NOMEM, "%s: entry %d: out of memory", p->s->what, p->index);
    p->e->proto.n_positions = k;
    for (c = n->first, k = 0; c >= 0; c = j->nodes[c].next, k++) p->e->proto.positions[k] = (int)j->nodes[c].integer;
    return TLENS_OK;
}

/* A number that is a finite float. */
static int tlens__iv_is_float(const tlens__json_node *n) {
    return n->type == TLENS__JSON_NUMBER && n->number == n->number && n->number <= 3.4028234e38 &&
           n->number >= -3.4028234e38;
}

/* "factor" and "coef": numbers; "coef" defaults to 1. */
static tlens_result tlens__iv_numbers(tlens__iv_parse *p) {
    const tlens__json_node *f = tlens__iv_node(p, TLENS__IVK_FACTOR), *c = tlens__iv_node(p, TLENS__IVK_COEF);
    if (f && !tlens__iv_is_float(f))
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: \"factor\" must be a number", p->s->what, p->index);
    if (c && !tlens__iv_is_float(c))
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: \"coef\" must be a number", p->s->what, p->index);
    if (!f && p->e->proto.op == TLENS__IV_SCALE)
        return tlens__fail(p->err, TLENS_ERR_MISSING, "%s: entry %d: op \"scale\" needs \"factor\"", p->s->what, p->index);
    p->e->proto.factor = f ? (float)f->number : 1.0f;
    p->e->coef = c ? (float)c->number : 1.0f;
    return TLENS_OK;
}

/* An inline "vector" / "direction": a non-empty list of numbers. */
static tlens_result tlens__iv_inline_vector(tlens__iv_parse *p, const tlens__json_node *n, const char *key) {
    const tlens__json *j = p->j;
    int c, k = 0, ok = n->type == TLENS__JSON_ARRAY && n->first >= 0;
    for (c = ok ? n->first : -1; c >= 0; c = j->nodes[c].next, k++) ok &= tlens__iv_is_float(&j->nodes[c]);
    if (!ok)
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: \"%s\" must be a non-empty list of numbers",
                           p->s->what, p->index, key);
    if (!(p->e->proto.vec = (float *)tlens__alloc(&p->s->alloc, (size_t)k * sizeof(float))))
        return tlens__fail(p->err, TLENS_ERR_NOMEM, "%s: entry %d: out of memory", p->s->what, p->index);
    p->e->proto.n = k;
    for (c = n->first, k = 0; c >= 0; c = j->nodes[c].next, k++) p->e->proto.vec[k] = (float)j->nodes[c].number;
    return TLENS_OK;
}

#ifndef TLENS_NO_STDIO
static int tlens__path_is_absolute(const char *path) {
    return path[0] == '/' || path[0] == '\\' || (path[0] && path[1] == ':');
}

/* Read the .npy that "file" names (relative to p->dir) into `out`, in the
 * allocator's memory. */
static tlens_result tlens__iv_read_npy(tlens__iv_parse *p, const char *path, tlens_tensor *out) {
    const tlens_allocator *a = &p->s->alloc;
    size_t nd = p->dir && *p->dir && !tlens__path_is_absolute(path) ? strlen(p->dir) : 0, np = strlen(path), n;
    char *full = (char *)tlens__alloc(a, nd + np + 2);
    tlens_tensor t;
    tlens_error e;
    tlens_result r;
    if (!full) return tlens__fail(p->err, TLENS_ERR_NOMEM, "%s: entry %d: out of memory", p->s->what, p->index);
    if (nd) {
        memcpy(full, p->dir, nd);
        full[nd++] = '/';
    }
    memcpy(full + nd, path, np + 1);
    r = tlens_npy_load(full, &t, &e);
    tlens__free(a, full);
    if (r) return tlens__fail(p->err, r, "%s: entry %d: \"file\": %s", p->s->what, p->index, e.message);
    *out = t;
    n = tlens_tensor_numel(&t);
    out->data = (float *)tlens__alloc(a, n * sizeof(float));
    if (out->data) memcpy(out->data, t.data, n * sizeof(float));
    tlens_tensor_free(&t);
    if (!out->data) return tlens__fail(p->err, TLENS_ERR_NOMEM, "%s: entry %d: out of memory", p->s->what, p->index);
    return TLENS_OK;
}
#endif

/* "file": a .npy holding the vector (add, project_out: 1-D) or the
 * replacement (replace). */
static tlens_result tlens__iv_file(tlens__iv_parse *p, const tlens__json_node *n) {
#ifdef TLENS_NO_STDIO
    (void)n;
    return tlens__fail(p->err, TLENS_ERR_ARG, "%s: entry %d: \"file\": no file access in this build (TLENS_NO_STDIO)",
                       p->s->what, p->index);
#else
    tlens__iv *proto = &p->e->proto;
    tlens_tensor t;
    tlens_result r;
    char *path, shape[64];
    if (n->type != TLENS__JSON_STRING || n->len == 0)
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: \"file\" must be a path", p->s->what, p->index);
    if (!(path = tlens__iv_string(p, n)))
        return tlens__fail(p->err, TLENS_ERR_NOMEM, "%s: entry %d: out of memory", p->s->what, p->index);
    r = tlens__iv_read_npy(p, path, &t);
    if (r) {
        tlens__free(&p->s->alloc, path);
        return r;
    }
    if (proto->op == TLENS__IV_REPLACE) {
        proto->source = t;
    } else if (t.ndim == 1) {
        proto->vec = t.data;
        proto->n = t.shape[0];
    } else {
        tlens__shape_text(shape, sizeof shape, t.shape, t.ndim, -1);
        r = tlens__fail(p->err, TLENS_ERR_SHAPE, "%s: entry %d: \"file\": %s holds shape %s, not a vector", p->s->what,
                        p->index, path, shape);
        tlens__free(&p->s->alloc, t.data);
    }
    tlens__free(&p->s->alloc, path);
    return r;
#endif
}

/* The data of add (vector), project_out (direction) and replace (file):
 * exactly one source where there is a choice; a direction of length 0
 * fails. */
static tlens_result tlens__iv_data(tlens__iv_parse *p) {
    int op = p->e->proto.op, key = op == TLENS__IV_ADD ? TLENS__IVK_VECTOR : TLENS__IVK_DIRECTION, w;
    const tlens__json_node *inl = tlens__iv_node(p, key), *file = tlens__iv_node(p, TLENS__IVK_FILE);
    const char *name = tlens__iv_keys[key].name;
    tlens_result r;
    double norm = 0;
    if (op != TLENS__IV_ADD && op != TLENS__IV_PROJECT && op != TLENS__IV_REPLACE) return TLENS_OK;
    if (op == TLENS__IV_REPLACE && !file)
        return tlens__fail(p->err, TLENS_ERR_MISSING, "%s: entry %d: op \"replace\" needs \"file\"", p->s->what, p->index);
    if (op != TLENS__IV_REPLACE && inl && file)
        return tlens__fail(p->err, TLENS_ERR_FORMAT, "%s: entry %d: give \"%s\" or \"file\", not both", p->s->what,
                           p->index, name);
    if (op != TLENS__IV_REPLACE && !inl && !file)
        return tlens__fail(p->err, TLENS_ERR_MISSING, "%s: entry %d: op \"%s\" needs \"%s\" or \"file\"", p->s->what,
                           p->index, tlens__iv_op_names[op], name);
    p->e->vec_key = inl ? name : "file";
    if ((r = inl ? tlens__iv_inline_vector(p, inl, name) : tlens__iv_file(p, file))) return r;
    for (w = 0; op == TLENS__IV_PROJECT && w < p->e->proto.n; w++)
        norm += (double)p->e->proto.vec[w] * (double)p->e->proto.vec[w];
    if (op == TLENS__IV_PROJECT && !(norm > 0))
        return tlens__fail(p->err, TLENS_ERR_ARG, "%s: entry %d: \"%s\" has length 0", p->s->what, p->index, p->e->vec_key);
    return TLENS_OK;
}

static tlens_result tlens__iv_parse_entry(tlens__iv_parse *p, int obj) {
    tlens_result r;
    if ((r = tlens__iv_members(p, obj)) || (r = tlens__iv_op(p)) || (r = tlens__iv_hook_head(p)) ||
        (r = tlens__iv_positions(p)) || (r = tlens__iv_numbers(p)) || (r = tlens__iv_data(p)))
        return r;
    return TLENS_OK;
}

TLENS_DEF void tlens_interventions_free(tlens_interventions *s) {
    tlens_allocator a;
    int i;
    if (!s) return;
    a = s->alloc;
    for (i = 0; s->entries && i < s->n; i++) {
        tlens__iv_entry *e = &s->entries[i];
        tlens__free(&a, e->hook);
        tlens__free(&a, e->proto.positions);
        tlens__free(&a, e->proto.vec);
        tlens__free(&a, e->proto.source.data);
    }
    tlens__free(&a, s->entries);
    tlens__free(&a, s->what);
    tlens__free(&a, s);
}

TLENS_DEF tlens_result tlens_interventions_parse(tlens_interventions **out, const char *json, size_t len,
                                                 const char *what, const char *dir, const tlens_allocator *alloc,
                                                 tlens_error *err) {
    tlens_allocator a;
    tlens_interventions *s;
    tlens__json j;
    tlens__iv_parse p;
    tlens_result r;
    int c, n = 0;
    *out = NULL;
    if (alloc) a = *alloc;
    else memset(&a, 0, sizeof a);
    s = (tlens_interventions *)tlens__calloc(&a, sizeof *s);
    if (!s || !(s->what = tlens__strdup(&a, what ? what : "interventions"))) {
        tlens__free(&a, s);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory reading interventions");
    }
    s->alloc = a;
    if ((r = tlens__json_parse_array(&j, json ? json : "", json ? len : 0, s->what, &s->alloc, err))) {
        tlens_interventions_free(s);
        return r;
    }
    for (c = j.nodes[0].first; c >= 0; c = j.nodes[c].next) n++;
    s->entries = (tlens__iv_entry *)tlens__calloc(&s->alloc, (size_t)n * sizeof *s->entries);
    r = s->entries ? TLENS_OK : tlens__fail(err, TLENS_ERR_NOMEM, "%s: out of memory", s->what);
    memset(&p, 0, sizeof p);
    p.s = s; p.j = &j; p.dir = dir; p.err = err;
    for (c = j.nodes[0].first; !r && c >= 0; c = j.nodes[c].next, p.index++) {
        p.e = &s->entries[p.index];
        s->n = p.index + 1; /* freed with the rest when this entry fails */
        r = tlens__iv_parse_entry(&p, c);
    }
    tlens__json_free(&j);
    if (r) {
        tlens_interventions_free(s);
        return r;
    }
    *out = s;
    tlens__ok(err);
    return TLENS_OK;
}

#ifndef TLENS_NO_STDIO
TLENS_DEF tlens_result tlens_interventions_load(tlens_interventions **out, const char *path,
                                                const tlens_allocator *alloc, tlens_error *err) {
    char *text, *dir = NULL;
    const char *slash;
    size_t size;
    tlens_result r;
    *out = NULL;
    if ((r = tlens__read_file(alloc, path, &text, &size, err))) return r;
    /* "file" paths are relative to the intervention file's folder */
    slash = strrchr(path, '/');
    if (!slash) slash = strrchr(path, '\\');
    if (slash && !(dir = (char *)tlens__alloc(alloc, (size_t)(slash - path) + 2))) {
        tlens__free(alloc, text);
        return tlens__fail(err, TLENS_ERR_NOMEM, "out of memory reading %s", path);
    }
    if (dir) {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
        if (slash == path) memcpy(dir, "/", 2);
    }
    r = tlens_interventions_parse(out, text, size, path, dir, alloc, err);
    tlens__free(alloc, dir);
    tlens__free(alloc, text);
    return r;
}
#endif

TLENS_DEF int tlens_interventions_count(const tlens_interventions *s) { return s ? s->n : 0; }

/* "what: entry i: " */
static void tlens__iv_prefix(char *out, size_t cap, const char *what, int index) {
    tlens__buf b;
    b.p = out; b.cap = cap; b.len = 0;
    tlens__puts(&b, what);
    tlens__puts(&b, ": entry ");
    tlens__puti(&b, index);
    tlens__puts(&b, ": ");
    tlens__putc(&b, '\0');
    if (cap) out[cap - 1] = '\0';
}

TLENS_DEF tlens_result tlens_add_interventions(tlens_ctx *ctx, const tlens_interventions *s, int *handles,
                                               tlens_error *err) {
    char pre[200];
    int i, added = 0, handle;
    tlens_result r = TLENS_OK;
    if (!ctx || !s) return tlens__fail(err, TLENS_ERR_ARG, "tlens_add_interventions: no context or interventions");
    for (i = 0; !r && i < s->n; i++) {
        const tlens__iv_entry *e = &s->entries[i];
        tlens__iv_prefix(pre, sizeof pre, s->what, i);
        if ((r = tlens__iv_check(ctx, e->hook, &e->proto, pre, e->vec_key, err))) break;
        if (!(handle = tlens__iv_add(ctx, e->hook, &e->proto, e->coef))) {
            r = tlens__fail(err, TLENS_ERR_NOMEM, "%sout of memory", pre);
            break;
        }
        if (handles) handles[i] = handle;
        added++;
    }
    /* all or nothing: the hooks just added are the last `added` ones */
    if (r) while (added-- > 0) tlens_remove_hook(ctx, ctx->hooks[ctx->n_hooks - 1].handle);
    else tlens__ok(err);
    return r;
}

/* ---- steering vectors from contrasting prompts ---- */

/* The hook that takes one prompt's activation vector: the mean over its
 * positions (from 1 when position 0 is a BOS to leave out) or its last. */
typedef struct tlens__grab {
    double *act;            /* (width) */
    int width, last_token, skip_first, fired;
} tlens__grab;

static int tlens__grab_hook(const char *name, int layer, tlens_tensor *t, void *user) {
    tlens__grab *g = (tlens__grab *)user;
    int T = t->shape[1], first = g->last_token ? T - 1 : (g->skip_first && T > 1 ? 1 : 0), p, w;
    (void)name;
    (void)layer;
    for (w = 0; w < g->width; w++) g->act[w] = 0;
    for (p = first; p < T; p++) /* batch 1: row p of [1, T, width] */
        for (w = 0; w < g->width; w++) g->act[w] += t->data[(size_t)p * (size_t)g->width + (size_t)w];
    for (w = 0; w < g->width; w++) g->act[w] /= (double)(T - first);
    g->fired = 1;
    return 0;
}

/* Run every prompt (positives, then negatives) alone; acts receives one
 * vector per prompt, (n_pos + n_neg, width). */
static tlens_result tlens__steer_collect(tlens_ctx *ctx, int point, tlens__grab *g, const int32_t *const *tokens,
                                         const int *const *lens, const int *count, const tlens_steer_options *opt,
                                         double *acts, tlens_error *err) {
    const char *name = ctx->points[point].name;
    int layer = ctx->points[point].layer, L = ctx->m->cfg.n_layers, side, k, row = 0;
    tlens_run_options ro;
    tlens_error e;
    memset(&ro, 0, sizeof ro);
    ro.last_logits_only = 1;
    /* stop after the point's block; -L: the embeddings only */
    if (layer >= 0 && layer + 1 < L) ro.stop_at_layer = layer + 1;
    else if (layer < 0 && point < TLENS__HP_GLOBAL_PRE) ro.stop_at_layer = -L;
    for (side = 0; side < 2; side++) {
        const int32_t *tok = tokens[side];
        for (k = 0; k < count[side]; k++, row++) {
            int len = lens[side][k];
            if (len < 1)
                return tlens__fail(err, TLENS_ERR_LENGTH, "tlens_steering_vector: %s prompt %d is empty",
                                   side ? "negative" : "positive", k);
            g->act = acts + (size_t)row * (size_t)g->width;
            g->skip_first = !opt->include_bos && len > 1 && tok[0] == TLENS_EOT;
            g->fired = 0;
            if (tlens_run_ex(ctx, tok, 1, len, &ro, &e))
                return tlens__fail(err, e.code, "tlens_steering_vector: %s prompt %d: %s", side ? "negative" : "positive",
                                   k, e.message);
            if (!g->fired)
                return tlens__fail(err, TLENS_ERR_NOT_FOUND,
                                   "tlens_steering_vector: %s did not fire (optional points need tlens_set_optional_hooks)",
                                   name);
            tok += len;
        }
    }
    return TLENS_OK;
}

/* The first principal component of the centred pair differences
 * x_i = (pos_i - neg_i) - mean, by power iteration on their covariance:
 * v <- X^T (X v), normalised, without forming the (width, width) matrix.
 * The start is pseudo-random from a fixed seed (a start orthogonal to the
 * component would never find it); the sign follows the mean difference. */
static tlens_result tlens__steer_pca(const tlens_allocator *a, const double *acts, int n, int W, const double *mean,
                                     double *v, tlens_error *err) {
    double *x = (double *)tlens__alloc(a, (size_t)n * (size_t)W * sizeof(double));
    double *y = (double *)tlens__alloc(a, (size_t)n * sizeof(double));
    double *next = (double *)tlens__alloc(a, (size_t)W * sizeof(double));
    double total = 0, norm, delta, dot;
    uint64_t rng = 0x5354454552ull; /* "STEER" */
    int i, w, it;
    tlens_result r = TLENS_OK;
    if (!x || !y || !next) {
        r = tlens__fail(err, TLENS_ERR_NOMEM, "tlens_steering_vector: out of memory for the principal component");
        goto done;
    }
    for (i = 0; i < n; i++)
        for (w = 0; w < W; w++) {
            size_t at = (size_t)i * (size_t)W + (size_t)w;
            x[at] = acts[at] - acts[(size_t)(n + i) * (size_t)W + (size_t)w] - mean[w];
            total += x[at] * x[at];
        }
    if (!(total > 0)) {
        r = tlens__fail(err, TLENS_ERR_ARG, "tlens_steering_vector: the pair differences are all equal: no principal component");
        goto done;
    }
    for (w = 0, norm = 0; w < W; w++) {
        v[w] = tlens__rng_uniform(&rng) - 0.5;
        norm += v[w] * v[w];
    }
    for (w = 0; w < W; w++) v[w] /= sqrt(norm);
    for (it = 0; it < 10000; it++) {
        for (i = 0; i < n; i++)
            for (w = 0, y[i] = 0; w < W; w++) y[i] += x[(size_t)i * (size_t)W + (size_t)w] * v[w];
        for (w = 0; w < W; w++)
            for (i = 0, next[w] = 0; i < n; i++) next[w] += y[i] * x[(size_t)i * (size_t)W + (size_t)w];
        for (w = 0, norm = 0; w < W; w++) norm += next[w] * next[w];
        if (!(norm > 0)) {
            r = tlens__fail(err, TLENS_ERR_ARG, "tlens_steering_vector: the power iteration lost its direction");
            goto done;
        }
        norm = sqrt(norm);
        for (w = 0, delta = 0; w < W; w++) {
            double u = next[w] / norm;
            delta += (u - v[w]) * (u - v[w]);
            v[w] = u;
        }
        if (delta < 1e-26) break;
    }
    for (w = 0, dot = 0; w < W; w++) dot += v[w] * mean[w];
    if (dot < 0)
        for (w = 0; w < W; w++) v[w] = -v[w];
done:
    tlens__free(a, x);
    tlens__free(a, y);
    tlens__free(a, next);
    return r;
}

/* out = the principal component, as floats. */
static tlens_result tlens__steer_pca_out(const tlens_allocator *a, const double *acts, int n_pairs, int W,
                                         const double *mean, float *out, tlens_error *err) {
    double *v = (double *)tlens__alloc(a, (size_t)W * sizeof(double));
    tlens_result r;
    int w;
    if (!v) return tlens__fail(err, TLENS_ERR_NOMEM, "tlens_steering_vector: out of memory");
    r = tlens__steer_pca(a, acts, n_pairs, W, mean, v, err);
    for (w = 0; !r && w < W; w++) out[w] = (float)v[w];
    tlens__free(a, v);
    return r;
}

/* The arguments, against the model: an exact [batch, pos, n] point. */
static tlens_result tlens__steer_check(const tlens_ctx *ctx, const char *name, int n_pos, int n_neg,
                                       const tlens_steer_options *opt, int n, int *point, tlens_error *err) {
    int dims[TLENS_MAX_DIMS], nd;
    if (n_pos < 1 || n_neg < 1)
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_steering_vector: needs at least one positive and one negative prompt");
    if ((*point = tlens__point_index(ctx, name)) < 0)
        return tlens__fail(err, TLENS_ERR_NOT_FOUND, "tlens_steering_vector: no hook point %s", name);
    nd = tlens__point_dims(ctx, *point, dims);
    if (nd != 3)
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_steering_vector: %s is not a [batch, pos, d] point", name);
    if (dims[2] != n)
        return tlens__fail(err, TLENS_ERR_SHAPE, "tlens_steering_vector: the last axis of %s has %d, the output %d", name,
                           dims[2], n);
    if (opt->pca && (n_pos != n_neg || n_pos < 2))
        return tlens__fail(err, TLENS_ERR_ARG,
                           "tlens_steering_vector: pca pairs the prompts: it needs as many negative as positive prompts, "
                           "at least 2 (got %d and %d)", n_pos, n_neg);
    return TLENS_OK;
}

TLENS_DEF tlens_result tlens_steering_vector(tlens_ctx *ctx, const char *name, const int32_t *pos_tokens,
                                             const int *pos_lens, int n_pos, const int32_t *neg_tokens,
                                             const int *neg_lens, int n_neg, const tlens_steer_options *opt, float *out,
                                             int n, tlens_error *err) {
    tlens_steer_options defaults;
    const int32_t *tokens[2];
    const int *lens[2];
    int count[2], point = -1, handle, k, w;
    size_t rows;
    double *acts = NULL, *diff = NULL;
    tlens__grab g;
    tlens_result r;
    memset(&defaults, 0, sizeof defaults);
    if (!opt) opt = &defaults;
    if (!ctx || !name || !out || !pos_tokens || !pos_lens || !neg_tokens || !neg_lens)
        return tlens__fail(err, TLENS_ERR_ARG, "tlens_steering_vector: a needed argument is NULL");
    if ((r = tlens__steer_check(ctx, name, n_pos, n_neg, opt, n, &point, err))) return r;
    rows = (size_t)n_pos + (size_t)n_neg;
    acts = (double *)tlens__alloc(ctx->alloc, rows * (size_t)n * sizeof(double));
    diff = (double *)tlens__alloc(ctx->alloc, (size_t)n * sizeof(double));
    memset(&g, 0, sizeof g);
    g.width = n;
    g.last_token = opt->last_token != 0;
    handle = acts && diff ? tlens_add_hook(ctx, name, tlens__grab_hook, &g) : 0;
    if (!handle) {
        r = tlens__fail(err, TLENS_ERR_NOMEM, "tlens_steering_vector: out of memory");
    } else {
        tokens[0] = pos_tokens; tokens[1] = neg_tokens;
        lens[0] = pos_lens; lens[1] = neg_lens;
        count[0] = n_pos; count[1] = n_neg;
        r = tlens__steer_collect(ctx, point, &g, tokens, lens, count, opt, acts, err);
        tlens_remove_hook(ctx, handle);
    }
    for (w = 0; !r && w < n; w++) { /* mean(positive) - mean(negative) */
        double sp = 0, sn = 0;
        for (k = 0; k < n_pos; k++) sp += acts[(size_t)k * (size_t)n + (size_t)w];
        for (k = 0; k < n_neg; k++) sn += acts[(size_t)(n_pos + k) * (size_t)n + (size_t)w];
        diff[w] = sp / n_pos - sn / n_neg;
        out[w] = (float)diff[w];
    }
    if (!r && opt->pca) r = tlens__steer_pca_out(ctx->alloc, acts, n_pos, n, diff, out, err);
    tlens__free(ctx->alloc, acts);
    tlens__free(ctx->alloc, diff);
    if (!r) tlens__ok(err);
    return r;
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
