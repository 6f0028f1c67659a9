/* fuzz_npy: tlens_npy_load on arbitrary files.
 *
 * tlens_npy_load reads a path, so each input is written to one file in a
 * per-process directory under /tmp (small writes to the page cache: cheap
 * next to the sanitizers). An array that loads must have 1 to 4
 * dimensions, no negative one, and data for all its elements.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *fuzz_file;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    tlens_tensor t;
    tlens_error err;
    tlens_result r;
    if (!fuzz_file) fuzz_file = fuzz_path("x.npy");
    fuzz_write_file(fuzz_file, data, size);
    r = tlens_npy_load(fuzz_file, &t, &err);
    if (r == TLENS_OK) {
        size_t n = 1, i;
        volatile float sink = 0;
        int d;
        FUZZ_CHECK(t.ndim >= 1 && t.ndim <= TLENS_MAX_DIMS, "ndim %d", t.ndim);
        for (d = 0; d < t.ndim; d++) {
            FUZZ_CHECK(t.shape[d] >= 0, "dimension %d is %d", d, t.shape[d]);
            n *= (size_t)t.shape[d];
        }
        FUZZ_CHECK(n == 0 || t.data != NULL, "no data");
        for (i = 0; i < n; i++) sink = t.data[i]; /* every element is there (ASan) */
        (void)sink;
        tlens_tensor_free(&t);
    } else {
        FUZZ_CHECK_ERROR(r, err);
        FUZZ_CHECK(t.data == NULL, "data kept after a failure");
    }
    return 0;
}
