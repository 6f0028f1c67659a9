/* bin2c - turn a file into C source, for programs without a file system.
 *
 *   bin2c bytes NAME IN OUT.c     const unsigned char NAME[] (64-byte
 *                                 aligned) and const unsigned long NAME_size
 *   bin2c tokens NAME IN.npy OUT.c
 *                                 a 2-D int64/int32 .npy array (token ids)
 *                                 as const int32_t NAME[] and
 *                                 const int NAME_rows, NAME_cols
 *
 * The 64-byte alignment is what lets tlens_load_memory use a .tlens file's
 * weights in place instead of copying them into RAM. Plain C99, built for
 * the host; it reads the .npy with the tests' own reader (test_util.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../tests/test_util.h"

static int write_bytes(const char *name, const char *in, FILE *out) {
    size_t size, i;
    unsigned char *d = tu_read_file(in, &size);
    if (!d) {
        fprintf(stderr, "bin2c: cannot read %s\n", in);
        return 1;
    }
    fprintf(out, "/* %s, %lu bytes: made by ports/cortex-m/bin2c.c, do not edit. */\n", in, (unsigned long)size);
    fprintf(out, "const unsigned long %s_size = %luul;\n", name, (unsigned long)size);
    fprintf(out, "const unsigned char %s[%lu] __attribute__((aligned(64))) = {\n", name,
            (unsigned long)(size ? size : 1));
    for (i = 0; i < size; i++) fprintf(out, "%u,%s", d[i], i % 24 == 23 ? "\n" : "");
    if (!size) fprintf(out, "0");
    fprintf(out, "\n};\n");
    free(d);
    return 0;
}

static int write_tokens(const char *name, const char *in, FILE *out) {
    int rows = 0, cols = 0, i;
    int32_t *t = tu_read_npy_tokens(in, &rows, &cols);
    if (!t || rows <= 0 || cols <= 0) {
        fprintf(stderr, "bin2c: %s is not a 2-D int .npy array\n", in);
        free(t);
        return 1;
    }
    fprintf(out, "/* %s: made by ports/cortex-m/bin2c.c, do not edit. */\n#include <stdint.h>\n", in);
    fprintf(out, "const int %s_rows = %d, %s_cols = %d;\n", name, rows, name, cols);
    fprintf(out, "const int32_t %s[%d] = {\n", name, rows * cols);
    for (i = 0; i < rows * cols; i++) fprintf(out, "%ld,%s", (long)t[i], i % 16 == 15 ? "\n" : "");
    fprintf(out, "};\n");
    free(t);
    return 0;
}

int main(int argc, char **argv) {
    FILE *out;
    int rc;
    if (argc != 5 || (strcmp(argv[1], "bytes") != 0 && strcmp(argv[1], "tokens") != 0)) {
        fprintf(stderr, "usage: bin2c bytes|tokens NAME IN OUT.c\n");
        return 2;
    }
    if (!(out = fopen(argv[4], "w"))) {
        fprintf(stderr, "bin2c: cannot write %s\n", argv[4]);
        return 1;
    }
    rc = strcmp(argv[1], "bytes") == 0 ? write_bytes(argv[2], argv[3], out) : write_tokens(argv[2], argv[3], out);
    if (fclose(out) != 0) rc = 1;
    if (rc) remove(argv[4]);
    return rc;
}
