/* port_arena.h - a static arena allocator for tlens on a microcontroller.
 *
 * tlens allocates through TLENS_MALLOC / TLENS_FREE (see tlens.h, section
 * 1); tlens_impl.c points them here, so no malloc is linked at all. The
 * arena is one static array (in the board's PSRAM, by the linker script).
 *
 * Allocation is a bump of the top; a freed block is given back when it is
 * the top one (and with it every freed block under it), which is how a
 * load followed by runs uses memory: long-lived blocks first, working
 * areas later. Every block is 64-byte aligned, as tlens' kernels like.
 * When the arena is full, port_arena_alloc returns NULL and tlens returns
 * TLENS_ERR_NOMEM: no crash.
 */
#ifndef PORT_ARENA_H
#define PORT_ARENA_H

#include <stddef.h>

void *port_arena_alloc(size_t size, void *user);
void port_arena_free(void *ptr, void *user);

typedef struct port_arena_stats {
    size_t capacity;   /* bytes in the arena                          */
    size_t in_use;     /* bytes from the bottom to the top, headers in */
    size_t peak;       /* the highest top so far                      */
    size_t live;       /* blocks allocated and not freed              */
    size_t failed;     /* requests that did not fit                   */
} port_arena_stats;

port_arena_stats port_arena_get_stats(void);

#endif
