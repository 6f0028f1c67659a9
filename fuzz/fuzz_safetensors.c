/* fuzz_safetensors: the safetensors header parser.
 *
 * The input is the JSON header (what follows the 8-byte length in a
 * .safetensors file), given to the private tlens__st_parse as if the file
 * held FUZZ_ST_DATA bytes of data after it. Every entry that parses must
 * lie inside that file, after the header, and span exactly its shape's
 * bytes: the reader later seeks and reads by these numbers.
 */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
#include "fuzz_util.h"

#define FUZZ_ST_DATA ((uint64_t)1 << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_check_entry(const tlens__st_entry *e, uint64_t data_start, uint64_t file_size) {
    size_t esize = tlens__st_dtype_size(e->dtype_name), numel = 1;
    int k;
    FUZZ_CHECK(memchr(e->name, '\0', sizeof e->name) != NULL, "name not terminated");
    FUZZ_CHECK(memchr(e->dtype_name, '\0', sizeof e->dtype_name) != NULL, "dtype not terminated");
    FUZZ_CHECK(esize > 0, "%s: unknown dtype %s accepted", e->name, e->dtype_name);
    FUZZ_CHECK(e->ndim >= 0 && e->ndim <= 8, "%s: ndim %d", e->name, e->ndim);
    FUZZ_CHECK(data_start <= e->begin && e->begin <= e->end && e->end <= file_size,
               "%s: [%llu, %llu) outside [%llu, %llu)", e->name, (unsigned long long)e->begin,
               (unsigned long long)e->end, (unsigned long long)data_start, (unsigned long long)file_size);
    for (k = 0; k < e->ndim; k++) {
        FUZZ_CHECK(e->shape[k] >= 0, "%s: negative dimension", e->name);
        numel *= (size_t)e->shape[k]; /* cannot wrap: the bytes fit the file */
    }
    FUZZ_CHECK(numel * esize == e->end - e->begin, "%s: %zu elements of %zu bytes in %llu bytes", e->name, numel,
               esize, (unsigned long long)(e->end - e->begin));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *header = (char *)fuzz_copy(data, size);
    uint64_t data_start = 8u + (uint64_t)size, file_size = data_start + FUZZ_ST_DATA;
    tlens__st st;
    tlens_error err;
    tlens_result r;
    int i;
    memset(&err, 0, sizeof err);
    r = tlens__st_parse(&st, header, size, file_size, "x", NULL, &err);
    if (r == TLENS_OK) {
        FUZZ_CHECK(st.count >= 0 && (st.count == 0 || st.entries), "%d entries", st.count);
        for (i = 0; i < st.count; i++) fuzz_check_entry(&st.entries[i], data_start, file_size);
        (void)tlens__st_find(&st, "wte.weight");
        (void)tlens__st_find(&st, "h.0.attn.c_attn.weight");
        tlens__free(NULL, st.entries);
    } else {
        FUZZ_CHECK_ERROR(r, err);
        FUZZ_CHECK(st.entries == NULL, "entries kept after a failure");
    }
    free(header);
    return 0;
}
