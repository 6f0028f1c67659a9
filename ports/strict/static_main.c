/* static_main.c - links two TLENS_STATIC copies of tlens (static_tu.c). */
#include <stdio.h>

int port_tu_a(void);
int port_tu_b(void);

int main(void) {
    if (port_tu_a() != 0 || port_tu_b() != 0) {
        printf("FAIL: a TLENS_STATIC copy did not run\n");
        return 1;
    }
    printf("1 passed, 0 failed\n");
    return 0;
}
