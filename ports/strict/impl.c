/* impl.c - tlens.h's implementation alone, one translation unit: what
 * `make test-strict` compiles with every warning, -Wconversion and -Werror
 * in each configuration (and `make test-cxx` compiles as C++), and links
 * with user.c, which includes only the API. */
#define TLENS_IMPLEMENTATION
#include "tlens.h"
