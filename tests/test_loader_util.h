/* Helpers for test_loader.c, written independently of tlens.h:
 *   - float -> binary16 / bfloat16 rounding (round to nearest even),
 *   - an in-memory checkpoint and a safetensors writer,
 *   - config.json text with every key optional,
 *   - a counting allocator that refuses huge requests,
 *   - a naive double-precision GPT-2 forward pass.
 * Everything is prefixed lt_ (loader tests). */
#ifndef TLENS_TEST_LOADER_UTIL_H
#define TLENS_TEST_LOADER_UTIL_H

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define LT_REF "tests/data/reference/"
#define LT_TMP "build/test-tmp/loader/"

/* ------------------------------------------------------------------------
 * Rounding to fewer significand bits
 * ---------------------------------------------------------------------- */

/* x rounded to nearest (ties to even) with `bits` significant bits,
 * exponents down to emin (below it the quantum stays 2^(emin-bits+1):
 * subnormals); beyond max_finite it becomes infinity. */
static double lt_round_bits(double x, int bits, int emin, double max_finite) {
    double a = fabs(x), q, m, f;
    int e;
    if (a == 0 || x != x || isinf(x)) return x;
    frexp(a, &e); /* a in [2^(e-1), 2^e) */
    e -= 1;
    if (e < emin) e = emin;
    q = ldexp(1.0, e - (bits - 1));
    m = a / q; /* exact: q is a power of two */
    f = floor(m);
    if (m - f > 0.5 || (m - f == 0.5 && fmod(f, 2.0) != 0.0)) f += 1.0;
    a = f * q;
    if (a > max_finite) a = INFINITY;
    return x < 0 ? -a : a;
}

static float lt_round_f16(float x) { return (float)lt_round_bits(x, 11, -14, 65504.0); }
static float lt_round_bf16(float x) { return (float)lt_round_bits(x, 8, -126, 3.3895313892515355e38); }

/* The binary16 bits of r, a value binary16 holds exactly. */
static uint16_t lt_f16_bits(float r) {
    unsigned sign = signbit(r) ? 0x8000u : 0u;
    double a = fabs((double)r);
    int e;
    if (isinf(a)) return (uint16_t)(sign | 0x7c00u);
    if (a < ldexp(1.0, -14)) return (uint16_t)(sign | (unsigned)(a * ldexp(1.0, 24)));
    frexp(a, &e);
    return (uint16_t)(sign | (unsigned)(e - 1 + 15) << 10 | (unsigned)((ldexp(a, 1 - e) - 1.0) * 1024.0));
}

/* The bfloat16 bits of r, a value bfloat16 holds exactly. */
static uint16_t lt_bf16_bits(float r) {
    uint32_t u;
    memcpy(&u, &r, 4);
    return (uint16_t)(u >> 16);
}

/* ------------------------------------------------------------------------
 * Little-endian bytes
 * ---------------------------------------------------------------------- */
static void lt_put_u16(unsigned char *p, unsigned v) {
    p[0] = (unsigned char)v;
    p[1] = (unsigned char)(v >> 8);
}

static void lt_put_u32(unsigned char *p, uint32_t v) {
    lt_put_u16(p, v & 0xffffu);
    lt_put_u16(p + 2, v >> 16);
}

static void lt_put_u64(unsigned char *p, uint64_t v) {
    lt_put_u32(p, (uint32_t)v);
    lt_put_u32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t lt_get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void lt_put_f32(unsigned char *p, float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    lt_put_u32(p, u);
}

static float lt_get_f32(const unsigned char *p) {
    uint32_t u = lt_get_u32(p);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static void lt_put_f64(unsigned char *p, double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    lt_put_u64(p, u);
}

/* ------------------------------------------------------------------------
 * A growing string
 * ---------------------------------------------------------------------- */
typedef struct lt_str {
    char *p;
    size_t len, cap;
} lt_str;

static void lt_str_add(lt_str *s, const char *fmt, ...) {
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (s->len + (size_t)n + 1 > s->cap) {
        s->cap = (s->len + (size_t)n + 1) * 2;
        s->p = (char *)realloc(s->p, s->cap);
    }
    va_start(ap, fmt);
    vsnprintf(s->p + s->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    s->len += (size_t)n;
}

/* ------------------------------------------------------------------------
 * Files and folders
 * ---------------------------------------------------------------------- */
static void lt_mkdir(const char *path) { mkdir(path, 0777); }

static void lt_mkdirs(void) {
    lt_mkdir("build");
    lt_mkdir("build/test-tmp");
    lt_mkdir(LT_TMP);
}

/* LT_TMP + name (a folder is created when `dir`). */
static const char *lt_tmp(char *buf, size_t cap, const char *name, int dir) {
    lt_mkdirs();
    snprintf(buf, cap, LT_TMP "%s", name);
    if (dir) lt_mkdir(buf);
    return buf;
}

static int lt_write_text(const char *dir, const char *file, const char *text) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    return tu_write_file(path, text, strlen(text));
}

/* ------------------------------------------------------------------------
 * A checkpoint in memory: tensors of any dtype, written as safetensors
 * ---------------------------------------------------------------------- */
typedef struct lt_tensor {
    char name[400];        /* written as is (JSON escapes allowed) */
    char dtype[16];        /* written as is */
    int ndim;
    long long shape[4];
    unsigned char *data;   /* little-endian, owned */
    size_t bytes;
    int fake_offsets;      /* write data_offsets [fb, fe] instead */
    long long fb, fe;
} lt_tensor;

typedef struct lt_ckpt {
    lt_tensor *t;
    int n, cap;
    int metadata;          /* write a __metadata__ entry first */
    int pretty;            /* indented JSON with spaces after ':' and ',' */
    int no_pad;            /* no spaces padding the header to 8 bytes */
} lt_ckpt;

static size_t lt_numel(const lt_tensor *t) {
    size_t n = 1;
    int i;
    for (i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

/* Append a tensor with `bytes` zeroed bytes of data. */
static lt_tensor *lt_ckpt_add(lt_ckpt *c, const char *name, const char *dtype, int ndim, const long long *shape,
                              size_t bytes) {
    lt_tensor *t;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->t = (lt_tensor *)realloc(c->t, (size_t)c->cap * sizeof *c->t);
    }
    t = &c->t[c->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dtype);
    t->ndim = ndim;
    if (ndim) memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
    t->bytes = bytes;
    t->data = (unsigned char *)calloc(bytes ? bytes : 1, 1);
    return t;
}

static lt_tensor *lt_ckpt_add_f32(lt_ckpt *c, const char *name, int ndim, const long long *shape, const float *v) {
    lt_tensor *t = lt_ckpt_add(c, name, "F32", ndim, shape, 0);
    size_t i, n = lt_numel(t);
    free(t->data);
    t->bytes = n * 4;
    t->data = (unsigned char *)malloc(t->bytes ? t->bytes : 1);
    for (i = 0; i < n; i++) lt_put_f32(t->data + 4 * i, v ? v[i] : 0.0f);
    return t;
}

static lt_tensor *lt_ckpt_find(const lt_ckpt *c, const char *name) {
    int i;
    for (i = 0; i < c->n; i++)
        if (strcmp(c->t[i].name, name) == 0) return &c->t[i];
    return NULL;
}

static void lt_ckpt_remove(lt_ckpt *c, const char *name) {
    lt_tensor *t = lt_ckpt_find(c, name);
    if (!t) return;
    free(t->data);
    memmove(t, t + 1, (size_t)(c->t + c->n - (t + 1)) * sizeof *t);
    c->n--;
}

static void lt_ckpt_free(lt_ckpt *c) {
    int i;
    for (i = 0; i < c->n; i++) free(c->t[i].data);
    free(c->t);
    memset(c, 0, sizeof *c);
}

static void lt_ckpt_copy(lt_ckpt *dst, const lt_ckpt *src) {
    int i;
    memset(dst, 0, sizeof *dst);
    dst->metadata = src->metadata;
    dst->pretty = src->pretty;
    dst->no_pad = src->no_pad;
    for (i = 0; i < src->n; i++) {
        const lt_tensor *s = &src->t[i];
        lt_tensor *t = lt_ckpt_add(dst, s->name, s->dtype, s->ndim, s->shape, s->bytes);
        memcpy(t->data, s->data, s->bytes);
        t->fake_offsets = s->fake_offsets;
        t->fb = s->fb;
        t->fe = s->fe;
    }
}

/* Element i of an F32 tensor. */
static float lt_f32_at(const lt_tensor *t, size_t i) { return lt_get_f32(t->data + 4 * i); }

/* Put `prefix` before every name but lm_head.weight (as Hugging Face's
 * GPT2LMHeadModel does with "transformer."). */
static void lt_ckpt_prefix(lt_ckpt *c, const char *prefix) {
    int i;
    char tmp[600];
    for (i = 0; i < c->n; i++) {
        if (strcmp(c->t[i].name, "lm_head.weight") == 0) continue;
        snprintf(tmp, sizeof tmp, "%s%s", prefix, c->t[i].name);
        snprintf(c->t[i].name, sizeof c->t[i].name, "%.399s", tmp);
    }
}

/* Write the first character of every name as a JSON \\u escape. */
static void lt_ckpt_escape_names(lt_ckpt *c) {
    int i;
    char tmp[600];
    for (i = 0; i < c->n; i++) {
        snprintf(tmp, sizeof tmp, "\\u%04x%s", (unsigned char)c->t[i].name[0], c->t[i].name + 1);
        snprintf(c->t[i].name, sizeof c->t[i].name, "%.399s", tmp);
    }
}

static void lt_ckpt_reverse(lt_ckpt *c) {
    int i;
    for (i = 0; i < c->n / 2; i++) {
        lt_tensor tmp = c->t[i];
        c->t[i] = c->t[c->n - 1 - i];
        c->t[c->n - 1 - i] = tmp;
    }
}

/* The causal-mask buffers of Hugging Face's GPT2Attention: h.N.attn.bias
 * [1, 1, n_ctx, n_ctx] lower triangular in `dtype` (BOOL, U8, F32; NULL:
 * none) and, when `masked_bias`, h.N.attn.masked_bias, a scalar -1e4. */
static void lt_ckpt_add_masks(lt_ckpt *c, int n_layer, int n_ctx, const char *dtype, int masked_bias) {
    long long shape[4];
    char name[96];
    int l, i, j, f32 = dtype && strcmp(dtype, "F32") == 0;
    shape[0] = shape[1] = 1;
    shape[2] = shape[3] = n_ctx;
    for (l = 0; l < n_layer; l++) {
        if (dtype) {
            lt_tensor *t;
            snprintf(name, sizeof name, "h.%d.attn.bias", l);
            t = lt_ckpt_add(c, name, dtype, 4, shape, (size_t)n_ctx * (size_t)n_ctx * (f32 ? 4u : 1u));
            for (i = 0; i < n_ctx; i++)
                for (j = 0; j <= i; j++) {
                    size_t k = (size_t)i * (size_t)n_ctx + (size_t)j;
                    if (f32) lt_put_f32(t->data + 4 * k, 1.0f);
                    else t->data[k] = 1;
                }
        }
        if (masked_bias) {
            float v = -1e4f;
            snprintf(name, sizeof name, "h.%d.attn.masked_bias", l);
            lt_ckpt_add_f32(c, name, 0, shape, &v);
        }
    }
}

/* Rewrite every F32 tensor as `dtype`: "F16", "BF16", or "F32" holding
 * the values rounded to binary16 ("F32:F16") or bfloat16 ("F32:BF16"). */
static void lt_ckpt_convert(lt_ckpt *c, const char *dtype) {
    int i, bf = strstr(dtype, "BF16") != NULL, keep32 = strncmp(dtype, "F32", 3) == 0;
    for (i = 0; i < c->n; i++) {
        lt_tensor *t = &c->t[i];
        size_t k, n = lt_numel(t);
        unsigned char *out;
        if (strcmp(t->dtype, "F32") != 0) continue;
        out = (unsigned char *)malloc(n * (keep32 ? 4u : 2u) + 1);
        for (k = 0; k < n; k++) {
            float r = bf ? lt_round_bf16(lt_f32_at(t, k)) : lt_round_f16(lt_f32_at(t, k));
            if (keep32) lt_put_f32(out + 4 * k, r);
            else lt_put_u16(out + 2 * k, bf ? lt_bf16_bits(r) : lt_f16_bits(r));
        }
        free(t->data);
        t->data = out;
        t->bytes = n * (keep32 ? 4u : 2u);
        snprintf(t->dtype, sizeof t->dtype, "%s", keep32 ? "F32" : bf ? "BF16" : "F16");
    }
}

/* The JSON header, padded with spaces to a multiple of 8 bytes. */
static void lt_ckpt_header(const lt_ckpt *c, lt_str *h) {
    const char *nl = c->pretty ? "\n  " : "", *co = c->pretty ? ": " : ":", *cm = c->pretty ? ", " : ",";
    size_t off = 0;
    int i, d;
    lt_str_add(h, "{%s", nl);
    if (c->metadata)
        lt_str_add(h, "\"__metadata__\"%s{\"format\"%s\"pt\"%s\"note\"%s\"written by test_loader\"}", co, co, cm, co);
    for (i = 0; i < c->n; i++) {
        const lt_tensor *t = &c->t[i];
        lt_str_add(h, "%s%s\"%s\"%s{\"dtype\"%s\"%s\"%s\"shape\"%s[", i || c->metadata ? "," : "",
                   i || c->metadata ? nl : "", t->name, co, co, t->dtype, cm, co);
        for (d = 0; d < t->ndim; d++) lt_str_add(h, "%s%lld", d ? cm : "", t->shape[d]);
        if (t->fake_offsets) lt_str_add(h, "]%s\"data_offsets\"%s[%lld%s%lld]}", cm, co, t->fb, cm, t->fe);
        else lt_str_add(h, "]%s\"data_offsets\"%s[%zu%s%zu]}", cm, co, off, cm, off + t->bytes);
        off += t->bytes;
    }
    lt_str_add(h, "%s}", c->pretty ? "\n" : "");
    while (!c->no_pad && h->len % 8) lt_str_add(h, " ");
}

/* The whole safetensors file in memory. */
static unsigned char *lt_ckpt_image(const lt_ckpt *c, size_t *size) {
    lt_str h = {NULL, 0, 0};
    size_t total, off;
    unsigned char *img;
    int i;
    lt_ckpt_header(c, &h);
    total = 8 + h.len;
    for (i = 0; i < c->n; i++) total += c->t[i].bytes;
    img = (unsigned char *)malloc(total);
    lt_put_u64(img, h.len);
    memcpy(img + 8, h.p, h.len);
    off = 8 + h.len;
    for (i = 0; i < c->n; i++) {
        memcpy(img + off, c->t[i].data, c->t[i].bytes);
        off += c->t[i].bytes;
    }
    free(h.p);
    *size = total;
    return img;
}

static int lt_ckpt_write(const lt_ckpt *c, const char *path) {
    size_t size;
    unsigned char *img = lt_ckpt_image(c, &size);
    int ok = tu_write_file(path, img, size);
    free(img);
    return ok;
}

/* Read a reference checkpoint: names without "transformer.", without the
 * attention mask buffers, everything F32. */
static int lt_ckpt_read(lt_ckpt *c, const char *path) {
    tu_file f;
    int i;
    memset(c, 0, sizeof *c);
    if (!tu_read_safetensors(path, &f)) return 0;
    for (i = 0; i < f.n; i++) {
        const tu_tensor *t = &f.t[i];
        const char *nm = strncmp(t->name, "transformer.", 12) == 0 ? t->name + 12 : t->name;
        long long shape[4];
        int d;
        if (!t->f32 || strstr(nm, ".attn.bias") || strstr(nm, ".attn.masked_bias")) continue;
        for (d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        lt_ckpt_add_f32(c, nm, t->ndim, shape, t->f32);
    }
    tu_free_safetensors(&f);
    return c->n > 0;
}

/* ------------------------------------------------------------------------
 * config.json: every value is JSON text, NULL leaves the key out
 * ---------------------------------------------------------------------- */
typedef struct lt_config {
    const char *n_layer, *n_embd, *n_head, *vocab_size;
    const char *n_inner, *n_ctx, *n_positions, *eps;
    const char *scale_inv;     /* scale_attn_by_inverse_layer_idx */
    const char *act;           /* activation_function */
    int real_gpt2_keys;        /* add the keys of gpt2's own config.json */
} lt_config;

/* The keys of openai-community/gpt2's config.json that do not change the
 * forward pass, plus a few awkward ones (escapes, nesting, exponents). */
static const char *const lt_gpt2_keys =
    "\"_name_or_path\": \"gpt2\", \"architectures\": [\"GPT2LMHeadModel\"], \"attn_pdrop\": 0.1, "
    "\"bos_token_id\": 50256, \"embd_pdrop\": 0.1, \"eos_token_id\": 50256, \"initializer_range\": 0.02, "
    "\"model_type\": \"gpt2\", \"resid_pdrop\": 0.1, \"summary_activation\": null, \"summary_first_dropout\": 0.1, "
    "\"summary_proj_to_labels\": true, \"summary_type\": \"cls_index\", \"summary_use_proj\": true, "
    "\"task_specific_params\": {\"text-generation\": {\"do_sample\": true, \"max_length\": 50}}, "
    "\"torch_dtype\": \"float32\", \"transformers_version\": \"4.26.0.dev0\", \"use_cache\": true, "
    "\"reorder_and_upcast_attn\": false, \"scale_attn_weights\": true, \"id2label\": {\"0\": \"LABEL_0\"}, "
    "\"label2id\": {\"LABEL_0\": 0}, \"n_layer_note\": \"n_layer\\\": 99 \\u00e9\\n\", \"nested\": [[[], {}], -1.5e-3, 2E+2], "
    "\"huge\": 1e308, \"tiny\": -0.0, \"n_embd ignored\": 12345678901234567890";

static void lt_config_key(lt_str *s, const char *key, const char *value) {
    if (value) lt_str_add(s, "%s\"%s\": %s", s->len > 1 ? ", " : "", key, value);
}

static char *lt_config_text(const lt_config *c) {
    lt_str s = {NULL, 0, 0};
    lt_str_add(&s, "{");
    if (c->real_gpt2_keys) lt_str_add(&s, "%s", lt_gpt2_keys);
    lt_config_key(&s, "activation_function", c->act);
    lt_config_key(&s, "layer_norm_epsilon", c->eps);
    lt_config_key(&s, "n_layer", c->n_layer);
    lt_config_key(&s, "n_embd", c->n_embd);
    lt_config_key(&s, "n_head", c->n_head);
    lt_config_key(&s, "n_ctx", c->n_ctx);
    lt_config_key(&s, "n_positions", c->n_positions);
    lt_config_key(&s, "vocab_size", c->vocab_size);
    lt_config_key(&s, "n_inner", c->n_inner);
    lt_config_key(&s, "scale_attn_by_inverse_layer_idx", c->scale_inv);
    lt_str_add(&s, "}\n");
    return s.p;
}

/* A Hugging Face folder LT_TMP/name with config.json and model.safetensors. */
static const char *lt_write_model(char *dir, size_t cap, const char *name, const lt_config *cfg, const lt_ckpt *ck) {
    char path[512];
    char *text = lt_config_text(cfg);
    lt_tmp(dir, cap, name, 1);
    lt_write_text(dir, "config.json", text);
    free(text);
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lt_ckpt_write(ck, path);
    return dir;
}

/* ------------------------------------------------------------------------
 * A counting allocator: refuses (returns NULL for) requests above a limit
 * and records the largest request and the live block count.
 * ---------------------------------------------------------------------- */
typedef struct lt_alloc_stats {
    size_t limit, largest;
    int refused;
    long live;
} lt_alloc_stats;

static void *lt_alloc(size_t n, void *user) {
    lt_alloc_stats *s = (lt_alloc_stats *)user;
    void *p;
    if (n > s->largest) s->largest = n;
    if (n > s->limit) {
        s->refused++;
        return NULL;
    }
    p = malloc(n);
    if (p) s->live++;
    return p;
}

static void lt_free(void *p, void *user) {
    lt_alloc_stats *s = (lt_alloc_stats *)user;
    if (!p) return;
    s->live--;
    free(p);
}

/* ------------------------------------------------------------------------
 * A naive GPT-2 forward pass in double precision, straight from the
 * Hugging Face weights (Conv1D: y = x @ W + b with W (in, out)).
 * ---------------------------------------------------------------------- */
typedef struct lt_gpt2 {
    int n_layer, D, H, V, M;
    double eps;
    int inverse_layer_scale;
    const lt_ckpt *ck;
} lt_gpt2;

/* A tensor (bare name) as doubles; NULL when absent. */
static double *lt_weights(const lt_ckpt *c, const char *name) {
    const lt_tensor *t = lt_ckpt_find(c, name);
    size_t i, n;
    double *w;
    if (!t || strcmp(t->dtype, "F32") != 0) return NULL;
    n = lt_numel(t);
    w = (double *)malloc(n * sizeof *w);
    for (i = 0; i < n; i++) w[i] = lt_f32_at(t, i);
    return w;
}

static double *lt_layer_weights(const lt_ckpt *c, int layer, const char *suffix) {
    char name[96];
    snprintf(name, sizeof name, "h.%d.%s", layer, suffix);
    return lt_weights(c, name);
}

static void lt_layernorm(double *y, const double *x, const double *w, const double *b, int T, int D, double eps) {
    int t, d;
    for (t = 0; t < T; t++) {
        const double *r = x + (size_t)t * D;
        double mean = 0, var = 0;
        for (d = 0; d < D; d++) mean += r[d];
        mean /= D;
        for (d = 0; d < D; d++) var += (r[d] - mean) * (r[d] - mean);
        var /= D;
        for (d = 0; d < D; d++) y[(size_t)t * D + d] = (r[d] - mean) / sqrt(var + eps) * w[d] + b[d];
    }
}

/* y (T, N) = x (T, K) @ W (K, N) + b */
static void lt_linear(double *y, const double *x, const double *W, const double *b, int T, int K, int N) {
    int t, k, n;
    for (t = 0; t < T; t++) {
        double *out = y + (size_t)t * N;
        for (n = 0; n < N; n++) out[n] = b[n];
        for (k = 0; k < K; k++) {
            double xv = x[(size_t)t * K + k];
            const double *row = W + (size_t)k * N;
            for (n = 0; n < N; n++) out[n] += xv * row[n];
        }
    }
}

/* z (T, D) from qkv (T, 3D): causal softmax(q k^T / scale) v per head. */
static void lt_attention(double *z, const double *qkv, int T, int D, int H, double scale) {
    int dh = D / H, h, i, j, d;
    double *p = (double *)malloc((size_t)T * sizeof *p);
    for (h = 0; h < H; h++)
        for (i = 0; i < T; i++) {
            const double *q = qkv + (size_t)i * 3 * D + h * dh;
            double mx = -INFINITY, sum = 0;
            for (j = 0; j <= i; j++) {
                const double *k = qkv + (size_t)j * 3 * D + D + h * dh;
                double s = 0;
                for (d = 0; d < dh; d++) s += q[d] * k[d];
                p[j] = s / scale;
                if (p[j] > mx) mx = p[j];
            }
            for (j = 0; j <= i; j++) sum += p[j] = exp(p[j] - mx);
            for (d = 0; d < dh; d++) {
                double acc = 0;
                for (j = 0; j <= i; j++) acc += p[j] / sum * qkv[(size_t)j * 3 * D + 2 * D + h * dh + d];
                z[(size_t)i * D + h * dh + d] = acc;
            }
        }
    free(p);
}

static double lt_gelu_new(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / 3.14159265358979323846) * (x + 0.044715 * x * x * x)));
}

/* One block on the residual stream x (T, D), in place. */
static void lt_block(const lt_gpt2 *g, int l, double *x, int T) {
    int D = g->D, M = g->M;
    size_t i, TD = (size_t)T * D;
    double *ln1w = lt_layer_weights(g->ck, l, "ln_1.weight"), *ln1b = lt_layer_weights(g->ck, l, "ln_1.bias");
    double *Wa = lt_layer_weights(g->ck, l, "attn.c_attn.weight"), *ba = lt_layer_weights(g->ck, l, "attn.c_attn.bias");
    double *Wp = lt_layer_weights(g->ck, l, "attn.c_proj.weight"), *bp = lt_layer_weights(g->ck, l, "attn.c_proj.bias");
    double *ln2w = lt_layer_weights(g->ck, l, "ln_2.weight"), *ln2b = lt_layer_weights(g->ck, l, "ln_2.bias");
    double *Wf = lt_layer_weights(g->ck, l, "mlp.c_fc.weight"), *bf = lt_layer_weights(g->ck, l, "mlp.c_fc.bias");
    double *Wo = lt_layer_weights(g->ck, l, "mlp.c_proj.weight"), *bo = lt_layer_weights(g->ck, l, "mlp.c_proj.bias");
    double *h = (double *)malloc(TD * sizeof *h), *qkv = (double *)malloc(TD * 3 * sizeof *qkv);
    double *z = (double *)malloc(TD * sizeof *z), *out = (double *)malloc(TD * sizeof *out);
    double *mid = (double *)malloc((size_t)T * M * sizeof *mid);
    double scale = sqrt((double)(D / g->H)) * (g->inverse_layer_scale ? l + 1 : 1);
    lt_layernorm(h, x, ln1w, ln1b, T, D, g->eps);
    lt_linear(qkv, h, Wa, ba, T, D, 3 * D);
    lt_attention(z, qkv, T, D, g->H, scale);
    lt_linear(out, z, Wp, bp, T, D, D);
    for (i = 0; i < TD; i++) x[i] += out[i];
    lt_layernorm(h, x, ln2w, ln2b, T, D, g->eps);
    lt_linear(mid, h, Wf, bf, T, D, M);
    for (i = 0; i < (size_t)T * M; i++) mid[i] = lt_gelu_new(mid[i]);
    lt_linear(out, mid, Wo, bo, T, M, D);
    for (i = 0; i < TD; i++) x[i] += out[i];
    free(ln1w); free(ln1b); free(Wa); free(ba); free(Wp); free(bp);
    free(ln2w); free(ln2b); free(Wf); free(bf); free(Wo); free(bo);
    free(h); free(qkv); free(z); free(out); free(mid);
}

/* Logits (T, V) of one sequence. */
static double *lt_naive_logits(const lt_gpt2 *g, const int32_t *tok, int T) {
    int D = g->D, V = g->V, t, d, v;
    double *wte = lt_weights(g->ck, "wte.weight"), *wpe = lt_weights(g->ck, "wpe.weight");
    double *lm = lt_weights(g->ck, "lm_head.weight");
    double *lnw = lt_weights(g->ck, "ln_f.weight"), *lnb = lt_weights(g->ck, "ln_f.bias");
    double *x = (double *)malloc((size_t)T * D * sizeof *x), *h = (double *)malloc((size_t)T * D * sizeof *h);
    double *logits = (double *)malloc((size_t)T * V * sizeof *logits);
    const double *W_U = lm ? lm : wte; /* (V, D) */
    for (t = 0; t < T; t++)
        for (d = 0; d < D; d++) x[(size_t)t * D + d] = wte[(size_t)tok[t] * D + d] + wpe[(size_t)t * D + d];
    for (t = 0; t < g->n_layer; t++) lt_block(g, t, x, T);
    lt_layernorm(h, x, lnw, lnb, T, D, g->eps);
    for (t = 0; t < T; t++)
        for (v = 0; v < V; v++) {
            double s = 0;
            for (d = 0; d < D; d++) s += h[(size_t)t * D + d] * W_U[(size_t)v * D + d];
            logits[(size_t)t * V + v] = s;
        }
    free(wte); free(wpe); free(lm); free(lnw); free(lnb); free(x); free(h);
    return logits;
}

#endif /* TLENS_TEST_LOADER_UTIL_H */
