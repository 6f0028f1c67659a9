/* fuzz_util.h - helpers shared by the libFuzzer harnesses in fuzz/.
 *
 * Each harness is one translation unit that includes tlens.h with
 * TLENS_IMPLEMENTATION (some call private parsers directly), then this.
 *
 *   fuzz_copy       the input in a heap block of exactly its size, so that
 *                   ASan sees a read one byte past the end (libFuzzer's own
 *                   buffer is exact too, but harnesses cut it in pieces);
 *   fuzz_tmpdir     a per-process directory under /tmp, removed at exit;
 *   fuzz_write_file write bytes to a path (abort on failure: a harness that
 *                   cannot write its input tests nothing);
 *   fuzz_allocator  an allocator that refuses blocks above FUZZ_ALLOC_LIMIT,
 *                   so that a file claiming a huge model fails cleanly with
 *                   TLENS_ERR_NOMEM instead of hitting libFuzzer's malloc
 *                   limit (which would stop the run as an "OOM crash");
 *   FUZZ_CHECK      abort with a message when an invariant does not hold.
 */
#ifndef TLENS_FUZZ_UTIL_H
#define TLENS_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define FUZZ_ALLOC_LIMIT ((size_t)256 << 20)

/* Each harness uses some of the helpers. */
#define FUZZ_FN static __attribute__((unused))

#define FUZZ_CHECK(cond, ...)                                              \
    do {                                                                   \
        if (!(cond)) {                                                     \
            fprintf(stderr, "%s:%d: invariant failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                  \
            fprintf(stderr, "\n");                                         \
            abort();                                                       \
        }                                                                  \
    } while (0)

/* A failed call must say why: err.code is the result and the message is
 * not empty (the API promises a one-line message for every error). */
#define FUZZ_CHECK_ERROR(r, err)                                           \
    FUZZ_CHECK((err).code == (r) && (err).message[0] != '\0',              \
               "result %d but err.code %d, message \"%s\"", (int)(r), (int)(err).code, (err).message)

FUZZ_FN unsigned char *fuzz_copy(const uint8_t *data, size_t size) {
    unsigned char *p = (unsigned char *)malloc(size ? size : 1);
    if (!p) abort();
    if (size) memcpy(p, data, size);
    return p;
}

FUZZ_FN void *fuzz_limited_alloc(size_t size, void *user) {
    (void)user;
    return size > FUZZ_ALLOC_LIMIT ? NULL : malloc(size);
}

FUZZ_FN void fuzz_limited_free(void *p, void *user) {
    (void)user;
    free(p);
}

FUZZ_FN tlens_allocator fuzz_allocator(void) {
    tlens_allocator a;
    a.alloc = fuzz_limited_alloc;
    a.free = fuzz_limited_free;
    a.user = NULL;
    return a;
}

/* ---- temporary files ---------------------------------------------------- */
static char fuzz_dir[64];
static char fuzz_files[8][128]; /* what fuzz_path handed out, to remove */
static int fuzz_n_files;

/* Remove what fuzz_path handed out, newest first (files before the
 * directories that hold them; remove() takes both). */
FUZZ_FN void fuzz_cleanup(void) {
    int i;
    for (i = fuzz_n_files - 1; i >= 0; i--) remove(fuzz_files[i]);
    if (fuzz_dir[0]) rmdir(fuzz_dir);
}

/* The per-process directory (created on first use). */
FUZZ_FN const char *fuzz_tmpdir(void) {
    if (!fuzz_dir[0]) {
        strcpy(fuzz_dir, "/tmp/tlens-fuzz-XXXXXX");
        if (!mkdtemp(fuzz_dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_cleanup);
    }
    return fuzz_dir;
}

/* A path inside the directory, for a file or a sub-directory (which the
 * caller makes); removed at exit. */
FUZZ_FN const char *fuzz_path(const char *name) {
    char *p;
    if (fuzz_n_files == 8) abort();
    p = fuzz_files[fuzz_n_files++];
    snprintf(p, sizeof fuzz_files[0], "%s/%s", fuzz_tmpdir(), name);
    return p;
}

FUZZ_FN void fuzz_write_file(const char *path, const void *data, size_t size) {
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

#endif /* TLENS_FUZZ_UTIL_H */
