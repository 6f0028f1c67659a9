/* Readers for the tests' reference data, written independently of
 * tlens.h: a .npy reader (int64 / int32 / float32) and a reader for the
 * safetensors files under tests/data (compact JSON header). */
#ifndef TLENS_TEST_UTIL_H
#define TLENS_TEST_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>

static unsigned char *tu_read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    n = ftell(f);
    fseek(f, 0, SEEK_SET);
    buf = (unsigned char *)malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) buf[n] = 0;
    *size = (size_t)n;
    return buf;
}

static int tu_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    int ok;
    if (!f) return 0;
    ok = fwrite(data, 1, size, f) == size;
    return fclose(f) == 0 && ok;
}

/* A .npy array of int64/int32 read as int32 (tokens): rows x cols. */
static int32_t *tu_read_npy_tokens(const char *path, int *rows, int *cols) {
    size_t size, hlen, i, n;
    unsigned char *d = tu_read_file(path, &size);
    const char *descr, *shape;
    int32_t *out;
    int wide;
    if (!d || size < 10 || memcmp(d, "\x93NUMPY", 6) != 0) { free(d); return NULL; }
    hlen = (size_t)d[8] | ((size_t)d[9] << 8);
    descr = strstr((const char *)d + 10, "'descr': '");
    shape = strstr((const char *)d + 10, "'shape': (");
    if (!descr || !shape) { free(d); return NULL; }
    wide = strncmp(descr + 10, "<i8", 3) == 0;
    if (sscanf(shape + 10, "%d, %d", rows, cols) != 2) { free(d); return NULL; }
    n = (size_t)*rows * (size_t)*cols;
    out = (int32_t *)malloc(n * sizeof *out);
    for (i = 0; i < n; i++) {
        const unsigned char *p = d + 10 + hlen + i * (wide ? 8u : 4u);
        out[i] = (int32_t)((uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24));
    }
    free(d);
    return out;
}

typedef struct tu_tensor {
    char name[96];
    char dtype[8];
    int ndim;
    int shape[4];
    size_t numel;
    const float *f32;       /* F32 tensors */
    const int64_t *i64;     /* I64 tensors */
} tu_tensor;

typedef struct tu_file {
    unsigned char *data;
    tu_tensor *t;
    int n;
} tu_file;

/* Little-endian elements of `width` bytes to the host's order, in place. */
static void tu_to_native(unsigned char *p, size_t n, int width) {
    const uint16_t one = 1;
    size_t i;
    int k;
    if (*(const unsigned char *)&one) return;
    for (i = 0; i < n; i++, p += width)
        for (k = 0; k < width / 2; k++) {
            unsigned char t = p[k];
            p[k] = p[width - 1 - k];
            p[width - 1 - k] = t;
        }
}

/* Parse {"name":{"dtype":"F32","shape":[1,2],"data_offsets":[0,8]},...} */
static int tu_read_safetensors(const char *path, tu_file *f) {
    size_t size, hlen;
    const char *p, *end;
    f->data = tu_read_file(path, &size);
    f->t = NULL;
    f->n = 0;
    if (!f->data) return 0;
    hlen = (size_t)f->data[0] | ((size_t)f->data[1] << 8) | ((size_t)f->data[2] << 16) | ((size_t)f->data[3] << 24);
    p = (const char *)f->data + 8;
    end = p + hlen;
    f->t = (tu_tensor *)calloc(4096, sizeof *f->t);
    while (p < end && (p = strchr(p, '"')) && p < end) {
        tu_tensor *t = &f->t[f->n];
        const char *q = strchr(p + 1, '"');
        long long b, e;
        size_t len = (size_t)(q - p - 1);
        const char *s;
        if (len >= sizeof t->name) return 0;
        memcpy(t->name, p + 1, len);
        t->name[len] = 0;
        if (!strcmp(t->name, "__metadata__")) { p = strchr(q, '}') + 1; continue; }
        s = strstr(q, "\"dtype\":\"");
        sscanf(s + 9, "%7[A-Z0-9]", t->dtype);
        s = strstr(q, "\"shape\":[") + 9;
        t->ndim = 0;
        t->numel = 1;
        while (*s != ']') {
            t->shape[t->ndim] = (int)strtol(s, (char **)&s, 10);
            t->numel *= (size_t)t->shape[t->ndim++];
            if (*s == ',') s++;
        }
        s = strstr(s, "\"data_offsets\":[") + 16;
        sscanf(s, "%lld,%lld", &b, &e);
        tu_to_native(f->data + 8 + hlen + b, t->numel, !strcmp(t->dtype, "I64") ? 8 : 4);
        if (!strcmp(t->dtype, "F32")) t->f32 = (const float *)(f->data + 8 + hlen + b);
        if (!strcmp(t->dtype, "I64")) t->i64 = (const int64_t *)(f->data + 8 + hlen + b);
        f->n++;
        p = strchr(s, '}') + 1;
    }
    return 1;
}

static void tu_free_safetensors(tu_file *f) {
    free(f->data);
    free(f->t);
}

#endif
