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
    TLENS_F32 = 0,
    TLENS_F16 = 1,
    TLENS_BF16 = 2
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
    tlens_dtype weight_dtype;       /* storage of the big matrices         */
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

/* Load a .tlens file from memory (a memory map, or an array compiled into
 * the program). The memory must stay valid and unchanged while the model
 * lives; a processed float file is used in place, without a copy, when it
 * is 64-byte aligned. */
TLENS_API tlens_result tlens_load_memory(tlens_model **out, const void *data,
                                         size_t size,
                                         const tlens_load_options *opt,
                                         tlens_error *err);

TLENS_API void tlens_free(tlens_model *model);
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
/* The logits of the last run: [batch, pos, d_vocab]. */
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
    }
}

/* @@CORE@@ */

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
