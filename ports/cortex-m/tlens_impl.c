/* tlens_impl.c - the tlens implementation, configured for a bare-metal
 * Cortex-M program (one translation unit; `arm-none-eabi-size` of its
 * object is the library's own code size):
 *
 *   TLENS_NO_STDIO     no files: models come from memory (tlens_load_memory)
 *   TLENS_MALLOC/FREE  the static arena of port_arena.c, not malloc
 *   TLENS_ASSERT       reported through semihosting, not newlib's assert
 *                      (which would pull in fprintf and all of stdio)
 *
 * Neither SIMD nor OpenMP: 32-bit ARM uses tlens' portable C kernels, with
 * the single-precision FPU (-mfloat-abi=hard -mfpu=fpv4-sp-d16).
 */
#include "port_arena.h"

void port_assert_failed(const char *file, int line, const char *expr);

#define TLENS_NO_STDIO
#define TLENS_MALLOC(size, user) port_arena_alloc((size), (user))
#define TLENS_FREE(ptr, user) port_arena_free((ptr), (user))
#define TLENS_ASSERT(x) ((x) ? (void)0 : port_assert_failed(__FILE__, __LINE__, #x))
#define TLENS_IMPLEMENTATION
#include "tlens.h"
