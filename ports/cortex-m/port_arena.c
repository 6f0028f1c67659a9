/* port_arena.c - the static arena behind TLENS_MALLOC / TLENS_FREE; see
 * port_arena.h. Single-threaded, as a bare-metal program is. */
#include "port_arena.h"

#include <stdint.h>

#ifndef PORT_ARENA_BYTES
#define PORT_ARENA_BYTES (8u << 20) /* 8 MB of the board's 16 MB PSRAM */
#endif
#define PORT_ALIGN 64u
#define PORT_NONE ((size_t)-1)

/* The header before every block; one alignment unit, so blocks stay aligned. */
typedef union port_header {
    struct {
        size_t size;   /* the block's bytes after the header       */
        size_t prev;   /* offset of the block below, or PORT_NONE   */
        int used;
    } h;
    unsigned char pad[PORT_ALIGN];
} port_header;

static unsigned char port_arena[PORT_ARENA_BYTES] __attribute__((section(".arena"), aligned(64)));
static size_t port_top;              /* offset of the first free byte          */
static size_t port_last = PORT_NONE; /* offset of the top block's header        */
static port_arena_stats port_stats;

void *port_arena_alloc(size_t size, void *user) {
    port_header *h;
    size_t need;
    (void)user;
    size = (size + PORT_ALIGN - 1) / PORT_ALIGN * PORT_ALIGN;
    need = sizeof(port_header) + size;
    if (size > PORT_ARENA_BYTES || need > PORT_ARENA_BYTES - port_top) {
        port_stats.failed++;
        return NULL;
    }
    h = (port_header *)(void *)(port_arena + port_top);
    h->h.size = size;
    h->h.prev = port_last;
    h->h.used = 1;
    port_last = port_top;
    port_top += need;
    if (port_top > port_stats.peak) port_stats.peak = port_top;
    port_stats.live++;
    return h + 1;
}

void port_arena_free(void *ptr, void *user) {
    port_header *h;
    (void)user;
    if (!ptr) return;
    h = (port_header *)ptr - 1;
    h->h.used = 0;
    port_stats.live--;
    /* give back the top block and every freed one under it */
    while (port_last != PORT_NONE) {
        port_header *top = (port_header *)(void *)(port_arena + port_last);
        if (top->h.used) break;
        port_top = port_last;
        port_last = top->h.prev;
    }
}

port_arena_stats port_arena_get_stats(void) {
    port_arena_stats s = port_stats;
    s.capacity = PORT_ARENA_BYTES;
    s.in_use = port_top;
    return s;
}
