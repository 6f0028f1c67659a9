/* make_corpus: write the seed corpus of the fuzz harnesses.
 *
 *     build/fuzz/make_corpus fuzz/corpus      (make fuzz-corpus; run from
 *                                             the repository's top folder)
 *
 * Small, real-ish inputs for each harness (a few KB each, ~100 KB in all):
 *   tokenizer/    texts of the .jsonl files of tests/data/tokenizer, grouped,
 *                 plus invalid UTF-8, <|endoftext|> and long runs (heap BPE);
 *   vocab/        vocab.json 0xFF merges.txt pairs: the 256 bytes and the
 *                 first merges of GPT-2's merges.txt, in several spellings;
 *   config/       the reference configs and a few variants;
 *   safetensors/  safetensors headers (the tiny reference model's, micro's);
 *   hf_load/      complete micro checkpoints (F32, F16 with prefixes and
 *                 mask buffers, BF16 untied) and the tiny model cut at 4 KB;
 *   tlens/        .tlens files of random micro models (tlens_init_random +
 *                 tlens_save), one with a tokenizer;
 *   npy/          .npy files of each supported type and header version;
 *   sae/          SAE folders (cfg.json 0xFF sae_weights.safetensors) of each
 *                 architecture and cfg.json layout, for the micro model.
 * The micro model is 1 layer, d_model 8, 2 heads, vocabulary 16, n_ctx 8:
 * fuzz_hf_load's second folder has its config. Output is deterministic.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *out_dir;
static size_t total_bytes;
static int total_files;

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* ---- a growing byte buffer ---------------------------------------------- */
typedef struct buf {
    char *p;
    size_t len, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        b->cap = (b->len + n + 1) * 2;
        if (!(b->p = (char *)realloc(b->p, b->cap))) die("realloc");
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

static void putf(buf *b, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    put(b, tmp, (size_t)n);
}

static char *read_all(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    buf b = {0};
    char tmp[65536];
    size_t n;
    if (!f) die(path);
    while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) put(&b, tmp, n);
    fclose(f);
    *size = b.len;
    return b.p;
}

static void seed(const char *harness, const char *name, const void *data, size_t size) {
    char path[512];
    FILE *f;
    snprintf(path, sizeof path, "%s/%s", out_dir, harness);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, harness, name);
    if (!(f = fopen(path, "wb")) || fwrite(data, 1, size, f) != size || fclose(f) != 0) die(path);
    total_bytes += size;
    total_files++;
}

/* ---- tokenizer: texts ----------------------------------------------------- */

/* The decoded "text" of each line of a .jsonl file, appended to groups of
 * about `group` bytes, each written as one seed. */
static void seeds_from_jsonl(const char *path, const char *prefix, size_t group, int max_groups) {
    size_t size, at = 0;
    char *text = read_all(path, &size), name[64];
    buf g = {0};
    int groups = 0;
    while (at < size && groups < max_groups) {
        char *nl = (char *)memchr(text + at, '\n', size - at);
        size_t end = nl ? (size_t)(nl - text) : size;
        tlens__json j;
        tlens_error err;
        if (tlens__json_parse(&j, text + at, end - at, path, NULL, &err) == TLENS_OK) {
            int n = tlens__json_get(&j, 0, "text");
            if (n >= 0 && j.nodes[n].type == TLENS__JSON_STRING) {
                char *s = (char *)malloc(j.nodes[n].len + 1);
                size_t len = tlens__json_decode(&j.nodes[n], s, j.nodes[n].len + 1);
                if (len != (size_t)-1) put(&g, s, len);
                free(s);
            }
            tlens__json_free(&j);
        }
        if (g.len >= group) {
            snprintf(name, sizeof name, "%s-%02d", prefix, groups++);
            seed("tokenizer", name, g.p, g.len);
            g.len = 0;
        }
        at = end + 1;
    }
    free(g.p);
    free(text);
}

static void seeds_tokenizer(void) {
    static const char mixed[] = "ok \xff\xfe bad \xc3 half \xed\xa0\x80 surrogate \xf4\x90\x80\x80 big"
                                "<|endoftext|>after<|endoftext|><|endoftext|> <|endof";
    buf b = {0};
    int i;
    seeds_from_jsonl("tests/data/tokenizer/cases.jsonl", "cases", 512, 8);
    seeds_from_jsonl("tests/data/tokenizer/random_cases.jsonl", "random", 1024, 4);
    seed("tokenizer", "invalid-utf8-and-eot", mixed, sizeof mixed - 1);
    for (i = 0; i < 300; i++) puts_(&b, "a");
    puts_(&b, " ");
    for (i = 0; i < 200; i++) puts_(&b, "\xd0\xb6"); /* Cyrillic letters */
    for (i = 0; i < 100; i++) puts_(&b, " ");
    puts_(&b, "x\n\n\n");
    for (i = 0; i < 80; i++) puts_(&b, "1234");
    seed("tokenizer", "long-runs", b.p, b.len);
    free(b.p);
}

/* ---- vocab: vocab.json 0xFF merges.txt ------------------------------------ */

/* The character of GPT-2's byte alphabet that stands for byte `b`. */
static uint32_t char_of_byte(int b) {
    uint32_t cp;
    for (cp = 0; cp <= 0x143; cp++)
        if (tlens__tok_byte_of_char(cp) == b) return cp;
    return 0;
}

/* cp (below U+0800, as every character of the alphabet) as UTF-8 in out. */
static void char_utf8(uint32_t cp, char out[3]) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = '\0';
    } else {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        out[2] = '\0';
    }
}

/* cp inside a JSON string: escaped when it must be, or as \uXXXX. */
static void put_utf8(buf *b, uint32_t cp, int escape) {
    char u[3];
    if (escape && cp >= 0x80) { putf(b, "\\u%04X", (unsigned)cp); return; }
    if (cp == '"' || cp == '\\') { char e[2] = {'\\', (char)cp}; put(b, e, 2); return; }
    char_utf8(cp, u);
    puts_(b, u);
}

/* Write a token given in the alphabet's UTF-8 (as merges.txt spells it)
 * as a JSON string, optionally with \u escapes. */
static void put_token_json(buf *b, const char *tok, int escape) {
    const unsigned char *s = (const unsigned char *)tok;
    puts_(b, "\"");
    while (*s) {
        size_t len;
        int32_t cp = tlens__tok_utf8(s, strlen((const char *)s), &len);
        put_utf8(b, (uint32_t)cp, escape);
        s += len;
    }
    puts_(b, "\"");
}

/* One vocab/merges seed from the first `n_merges` merge lines of `merges`
 * (GPT-2's, or any "left right" lines): the 256 bytes, the merged tokens,
 * <|endoftext|> when `eot`. */
static void vocab_seed(const char *name, char **lines, int n_merges, int eot, int escape, int version, int crlf,
                       int bom) {
    buf v = {0}, m = {0};
    int b, i, id = 0;
    char tok[3];
    if (bom) puts_(&v, "\xEF\xBB\xBF");
    puts_(&v, "{");
    for (b = 0; b < 256; b++) {
        char_utf8(char_of_byte(b), tok);
        if (id) puts_(&v, ", ");
        put_token_json(&v, tok, escape);
        putf(&v, ": %d", id++);
    }
    if (version) puts_(&m, "#version: 0.2\n");
    for (i = 0; i < n_merges; i++) {
        char merged[256];
        const char *sp = strchr(lines[i], ' ');
        snprintf(merged, sizeof merged, "%.*s%s", (int)(sp - lines[i]), lines[i], sp + 1);
        puts_(&v, ", ");
        put_token_json(&v, merged, escape);
        putf(&v, ": %d", id++);
        puts_(&m, lines[i]);
        puts_(&m, crlf ? "\r\n" : "\n");
    }
    if (eot) putf(&v, ", \"<|endoftext|>\": %d", id++);
    puts_(&v, "}\n");
    put(&v, "\xff", 1);
    put(&v, m.p, m.len);
    seed("vocab", name, v.p, v.len);
    free(v.p);
    free(m.p);
}

static void seeds_vocab(void) {
    static char *doubling[] = {"a a", "aa aa", "aaaa aaaa", "aaaaaaaa aaaaaaaa", "\xc4\xa0 a", "\xc4\xa0" "a aa"};
    size_t size;
    char *text = read_all("tokenizer/merges.txt", &size), *lines[64], *p = strchr(text, '\n') + 1;
    int n = 0;
    while (n < 64) { /* the first 64 merges, NUL-terminated in place */
        char *nl = strchr(p, '\n');
        *nl = '\0';
        lines[n++] = p;
        p = nl + 1;
    }
    vocab_seed("gpt2-first-64-merges", lines, 64, 1, 0, 1, 0, 0);
    vocab_seed("escaped-crlf-bom", lines, 20, 1, 1, 0, 1, 1);
    vocab_seed("one-merge-no-eot", lines, 1, 0, 0, 0, 0, 0);
    vocab_seed("doubling-a", doubling, 6, 1, 0, 1, 0, 0);
    free(text);
}

/* ---- config --------------------------------------------------------------- */
static void copy_seed(const char *harness, const char *name, const char *path, size_t max) {
    size_t size;
    char *data = read_all(path, &size);
    seed(harness, name, data, size < max ? size : max);
    free(data);
}

static const char micro_config[] =
    "{\"activation_function\": \"gelu_new\", \"layer_norm_epsilon\": 1e-05, \"n_layer\": 1, \"n_embd\": 8,"
    " \"n_head\": 2, \"n_positions\": 8, \"vocab_size\": 16, \"n_inner\": null}\n";

static void seeds_config(void) {
    static const char relu[] =
        "{\"n_layer\": 3, \"n_embd\": 48, \"n_head\": 6, \"n_inner\": 100, \"n_ctx\": 32, \"vocab_size\": 300,"
        " \"activation_function\": \"relu\", \"layer_norm_epsilon\": 1.5e-3, \"scale_attn_by_inverse_layer_idx\":"
        " true, \"tie_word_embeddings\": false, \"name\": \"caf\\u00e9 \\ud83d\\ude00 \\\"q\\\" \\/\\b\\f\\n\\r\\t\"}";
    copy_seed("config", "tiny.json", "tests/data/reference/tiny/model/config.json", 4096);
    copy_seed("config", "mid.json", "tests/data/reference/mid/model/config.json", 4096);
    seed("config", "micro.json", micro_config, sizeof micro_config - 1);
    seed("config", "relu-escapes.json", relu, sizeof relu - 1);
}

/* ---- safetensors ---------------------------------------------------------- */
typedef struct tensor {
    const char *name;
    int ndim, shape[4];
} tensor;

static uint32_t rng = 12345;
static float rnd(void) {
    rng = rng * 1664525u + 1013904223u;
    return ((float)(rng >> 8) / 16777216.0f - 0.5f) * 0.2f;
}

/* A safetensors file of the micro model: dtype "F32", "F16" or "BF16";
 * `prefix` before every name; mask buffers; lm_head (untied). */
static void micro_safetensors(buf *out, size_t *header_len, const char *dtype, const char *prefix, int buffers,
                              int lm_head) {
    static const tensor base[] = {
        {"wte.weight", 2, {16, 8}},          {"wpe.weight", 2, {8, 8}},
        {"h.0.ln_1.weight", 1, {8}},         {"h.0.ln_1.bias", 1, {8}},
        {"h.0.attn.c_attn.weight", 2, {8, 24}}, {"h.0.attn.c_attn.bias", 1, {24}},
        {"h.0.attn.c_proj.weight", 2, {8, 8}},  {"h.0.attn.c_proj.bias", 1, {8}},
        {"h.0.ln_2.weight", 1, {8}},         {"h.0.ln_2.bias", 1, {8}},
        {"h.0.mlp.c_fc.weight", 2, {8, 32}}, {"h.0.mlp.c_fc.bias", 1, {32}},
        {"h.0.mlp.c_proj.weight", 2, {32, 8}}, {"h.0.mlp.c_proj.bias", 1, {8}},
        {"ln_f.weight", 1, {8}},             {"ln_f.bias", 1, {8}},
        {"h.0.attn.bias", 4, {1, 1, 8, 8}},  {"h.0.attn.masked_bias", 1, {1}},
        {"lm_head.weight", 2, {16, 8}},
    };
    buf h = {0}, d = {0};
    size_t esize = strcmp(dtype, "F32") == 0 ? 4 : 2, i, k, numel;
    unsigned char len8[8];
    int first = 1;
    puts_(&h, "{");
    if (buffers) puts_(&h, "\"__metadata__\": {\"format\": \"pt\"}"), first = 0;
    for (i = 0; i < sizeof base / sizeof base[0]; i++) {
        const tensor *t = &base[i];
        int is_buffer = strstr(t->name, "attn.bias") && t->ndim == 4, is_masked = strstr(t->name, "masked_bias") != 0;
        if ((is_buffer || is_masked) && !buffers) continue;
        if (!strcmp(t->name, "lm_head.weight") && !lm_head) continue;
        for (numel = 1, k = 0; k < (size_t)t->ndim; k++) numel *= (size_t)t->shape[k];
        putf(&h, "%s\"%s%s\": {\"dtype\": \"%s\", \"shape\": [", first ? "" : ", ",
             strcmp(t->name, "lm_head.weight") ? prefix : "", t->name, dtype);
        for (k = 0; k < (size_t)t->ndim; k++) putf(&h, "%s%d", k ? ", " : "", t->shape[k]);
        putf(&h, "], \"data_offsets\": [%zu, %zu]}", d.len, d.len + numel * esize);
        first = 0;
        for (k = 0; k < numel; k++) {
            float f = rnd() + (strstr(t->name, "ln_") && strstr(t->name, "weight") ? 1.0f : 0.0f);
            unsigned char e[4];
            uint32_t u = tlens__bits_from_f32(f);
            if (esize == 2) u = strcmp(dtype, "F16") == 0 ? tlens__f32_to_f16(f) : tlens__f32_to_bf16(f);
            e[0] = (unsigned char)u; e[1] = (unsigned char)(u >> 8);
            e[2] = (unsigned char)(u >> 16); e[3] = (unsigned char)(u >> 24);
            put(&d, e, esize);
        }
    }
    puts_(&h, "}");
    while (h.len % 8) puts_(&h, " "); /* as the safetensors writer pads */
    for (k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)h.len >> (8 * k));
    out->len = 0;
    put(out, len8, 8);
    put(out, h.p, h.len);
    put(out, d.p, d.len);
    *header_len = h.len;
    free(h.p);
    free(d.p);
}

static void seeds_safetensors(void) {
    buf f = {0};
    size_t size, hlen;
    char *tiny = read_all("tests/data/reference/tiny/model/model.safetensors", &size);
    hlen = (size_t)tlens__le64((const unsigned char *)tiny);
    seed("safetensors", "tiny-header.json", tiny + 8, hlen);
    seed("hf_load", "tiny-cut-at-4k.safetensors", tiny, 4096);
    micro_safetensors(&f, &hlen, "F32", "", 0, 0);
    seed("safetensors", "micro-header.json", f.p + 8, hlen);
    seed("hf_load", "micro-f32.safetensors", f.p, f.len);
    micro_safetensors(&f, &hlen, "F16", "transformer.", 1, 0);
    seed("safetensors", "micro-f16-prefix-buffers.json", f.p + 8, hlen);
    seed("hf_load", "micro-f16-prefix-buffers.safetensors", f.p, f.len);
    micro_safetensors(&f, &hlen, "BF16", "", 0, 1);
    seed("hf_load", "micro-bf16-untied.safetensors", f.p, f.len);
    free(f.p);
    free(tiny);
}

/* ---- SAEs: cfg.json 0xFF sae_weights.safetensors ------------------------- */
/* An SAE for the micro model: its cfg.json, then W_enc, W_dec, b_enc, b_dec
 * (and threshold) of random `dtype` values. */
static void sae_seed(const char *name, const char *cfg, const char *dtype, int d_in, int d_sae, int threshold) {
    tensor t[5];
    buf out = {0}, h = {0}, d = {0};
    size_t esize = strcmp(dtype, "F32") == 0 ? 4 : 2, i, k, numel;
    unsigned char len8[8];
    t[0].name = "W_enc"; t[0].ndim = 2; t[0].shape[0] = d_in; t[0].shape[1] = d_sae;
    t[1].name = "W_dec"; t[1].ndim = 2; t[1].shape[0] = d_sae; t[1].shape[1] = d_in;
    t[2].name = "b_enc"; t[2].ndim = 1; t[2].shape[0] = d_sae;
    t[3].name = "b_dec"; t[3].ndim = 1; t[3].shape[0] = d_in;
    t[4].name = "threshold"; t[4].ndim = 1; t[4].shape[0] = d_sae;
    puts_(&h, "{");
    for (i = 0; i < (threshold ? 5u : 4u); i++) {
        numel = (size_t)t[i].shape[0] * (size_t)(t[i].ndim == 2 ? t[i].shape[1] : 1);
        putf(&h, "%s\"%s\": {\"dtype\": \"%s\", \"shape\": [%d", i ? ", " : "", t[i].name, dtype, t[i].shape[0]);
        if (t[i].ndim == 2) putf(&h, ", %d", t[i].shape[1]);
        putf(&h, "], \"data_offsets\": [%zu, %zu]}", d.len, d.len + numel * esize);
        for (k = 0; k < numel; k++) {
            float f = rnd() * 10.0f;
            unsigned char e[4];
            uint32_t u = esize == 4 ? tlens__bits_from_f32(f)
                         : strcmp(dtype, "F16") == 0 ? tlens__f32_to_f16(f) : tlens__f32_to_bf16(f);
            e[0] = (unsigned char)u; e[1] = (unsigned char)(u >> 8);
            e[2] = (unsigned char)(u >> 16); e[3] = (unsigned char)(u >> 24);
            put(&d, e, esize);
        }
    }
    puts_(&h, "}");
    while (h.len % 8) puts_(&h, " ");
    for (k = 0; k < 8; k++) len8[k] = (unsigned char)((uint64_t)h.len >> (8 * k));
    puts_(&out, cfg);
    put(&out, "\xff", 1);
    put(&out, len8, 8);
    put(&out, h.p, h.len);
    put(&out, d.p, d.len);
    seed("sae", name, out.p, out.len);
    free(out.p);
    free(h.p);
    free(d.p);
}

static void seeds_sae(void) {
    sae_seed("standard-f32", "{\"architecture\": \"standard\", \"d_in\": 8, \"d_sae\": 12, \"hook_name\":"
             " \"blocks.0.hook_resid_pre\", \"hook_head_index\": null, \"apply_b_dec_to_input\": true,"
             " \"normalize_activations\": \"none\", \"dtype\": \"float32\"}", "F32", 8, 12, 0);
    sae_seed("topk-old-f16", "{\"d_in\": 8, \"d_sae\": 16, \"hook_point\": \"blocks.0.hook_mlp_out\","
             " \"activation_fn_str\": \"topk\", \"activation_fn_kwargs\": {\"k\": 3},"
             " \"normalize_activations\": \"constant_norm_rescale\"}", "F16", 8, 16, 0);
    sae_seed("jumprelu-meta-bf16", "{\"architecture\": \"jumprelu\", \"d_in\": 8, \"d_sae\": 10,"
             " \"apply_b_dec_to_input\": false, \"normalize_activations\": \"layer_norm\", \"metadata\":"
             " {\"sae_lens_version\": \"6.5.0\", \"hook_name\": \"blocks.0.hook_resid_post\"}}", "BF16", 8, 10, 1);
    sae_seed("hook-z", "{\"d_in\": 8, \"d_sae\": 8, \"hook_name\": \"blocks.0.attn.hook_z\","
             " \"normalize_activations\": \"expected_average_only_in\", \"norm_scaling_factor\": 2.5}", "F32", 8, 8, 0);
    sae_seed("q-head-1", "{\"architecture\": \"topk\", \"k\": 2, \"d_in\": 4, \"d_sae\": 6, \"hook_name\":"
             " \"blocks.0.attn.hook_q\", \"hook_head_index\": 1}", "F32", 4, 6, 0);
}

/* ---- .tlens --------------------------------------------------------------- */
static void tlens_seed(const char *name, int raw, tlens_dtype dt, int tied, int with_tokenizer) {
    char path[512];
    tlens_config c;
    tlens_load_options o;
    tlens_model *m;
    tlens_error err;
    size_t size;
    char *data;
    memset(&c, 0, sizeof c);
    c.n_layers = 1; c.d_model = 8; c.n_heads = 2; c.d_mlp = 32; c.d_vocab = 16; c.n_ctx = 8; c.tied = tied;
    memset(&o, 0, sizeof o);
    o.raw = raw;
    o.weight_dtype = dt;
    if (tlens_init_random(&m, &c, &o, 7, &err) != TLENS_OK) { fprintf(stderr, "%s\n", err.message); exit(1); }
    if (with_tokenizer) { /* the smallest valid tokenizer: the vocab seed with one merge */
        char vpath[512];
        size_t vsize;
        char *v, *sep;
        snprintf(vpath, sizeof vpath, "%s/vocab/one-merge-no-eot", out_dir);
        v = read_all(vpath, &vsize);
        sep = (char *)memchr(v, 0xFF, vsize);
        m->vocab_len = (size_t)(sep - v);
        m->merges_len = vsize - m->vocab_len - 1;
        m->vocab_json = (char *)malloc(m->vocab_len + 1);
        m->merges_txt = (char *)malloc(m->merges_len + 1);
        memcpy(m->vocab_json, v, m->vocab_len);
        m->vocab_json[m->vocab_len] = '\0';
        memcpy(m->merges_txt, sep + 1, m->merges_len);
        m->merges_txt[m->merges_len] = '\0';
        free(v);
    }
    snprintf(path, sizeof path, "%s/tlens", out_dir);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/tlens/%s", out_dir, name);
    if (tlens_save(m, path, &err) != TLENS_OK) { fprintf(stderr, "%s\n", err.message); exit(1); }
    tlens_free(m);
    data = read_all(path, &size); /* counted like the others */
    total_bytes += size;
    total_files++;
    free(data);
}

static void seeds_tlens(void) {
    tlens_seed("micro-processed-f32-tokenizer.tlens", 0, TLENS_DTYPE_AUTO, 1, 1);
    tlens_seed("micro-raw-f16.tlens", 1, TLENS_F16, 1, 0);
    tlens_seed("micro-raw-untied-bf16.tlens", 1, TLENS_BF16, 0, 0);
}

/* ---- .npy ----------------------------------------------------------------- */
static void npy_seed(const char *name, int version, const char *descr, const char *shape, size_t n, size_t width,
                     int big) {
    buf b = {0}, h = {0};
    size_t i, k, pre = version >= 2 ? 12 : 10;
    unsigned char len[4];
    putf(&h, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape);
    while ((pre + h.len + 1) % 64) puts_(&h, " ");
    puts_(&h, "\n");
    put(&b, "\x93NUMPY", 6);
    put(&b, version >= 2 ? "\x02\x00" : "\x01\x00", 2);
    for (k = 0; k < 4; k++) len[k] = (unsigned char)(h.len >> (8 * k));
    put(&b, len, version >= 2 ? 4 : 2);
    put(&b, h.p, h.len);
    for (i = 0; i < n; i++) {
        unsigned char e[8] = {0};
        for (k = 0; k < width; k++) e[big ? width - 1 - k : k] = (unsigned char)(k == 0 ? i * 37 : k == 1 ? 0x3f : 0);
        put(&b, e, width);
    }
    seed("npy", name, b.p, b.len);
    free(b.p);
    free(h.p);
}

static void seeds_npy(void) {
    npy_seed("f32-2d.npy", 1, "<f4", "(3, 4)", 12, 4, 0);
    npy_seed("i64-big-endian.npy", 1, ">i8", "(5,)", 5, 8, 1);
    npy_seed("f64-3d-v2.npy", 2, "<f8", "(2, 1, 3)", 6, 8, 0);
    npy_seed("i32-4d.npy", 1, "<i4", "(1, 2, 2, 2)", 8, 4, 0);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s OUT_DIR (run from the repository's top folder)\n", argv[0]);
        return 2;
    }
    out_dir = argv[1];
    mkdir(out_dir, 0755);
    seeds_tokenizer();
    seeds_vocab();
    seeds_config();
    seeds_safetensors();
    seeds_tlens();
    seeds_npy();
    seeds_sae();
    printf("%d seed files, %zu bytes, in %s\n", total_files, total_bytes, out_dir);
    return 0;
}
