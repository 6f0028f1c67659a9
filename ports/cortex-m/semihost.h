/* semihost.h - the two ARM semihosting calls the Cortex-M port needs.
 *
 * Semihosting lets a bare-metal program use the host's console through a
 * debugger or an emulator: the program executes `bkpt 0xab` with an
 * operation number in r0 and an argument in r1, and the host (here
 * qemu-system-arm with -semihosting-config enable=on) performs it. No
 * newlib stdio is linked: lines are written with SYS_WRITE0 and the
 * program ends with SYS_EXIT_EXTENDED, which carries an exit status that
 * QEMU passes on as its own (plain SYS_EXIT on 32-bit ARM only knows
 * "success" or "failure").
 *
 * On real hardware without a debugger attached, bkpt halts the core (or
 * faults): replace these two functions by a UART driver there.
 */
#ifndef PORT_SEMIHOST_H
#define PORT_SEMIHOST_H

#include <stdint.h>

#define PORT_SYS_WRITE0 0x04
#define PORT_SYS_EXIT_EXTENDED 0x20
#define PORT_ADP_STOPPED_APPLICATION_EXIT 0x20026

static inline int port_semihost(int op, const void *arg) {
    register int r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

/* Write a NUL-terminated string to the host's console. */
static inline void port_write0(const char *s) { port_semihost(PORT_SYS_WRITE0, s); }

/* End the program (and QEMU) with exit status `code`. */
static inline void port_exit(int code) __attribute__((noreturn));
static inline void port_exit(int code) {
    uint32_t block[2];
    block[0] = PORT_ADP_STOPPED_APPLICATION_EXIT;
    block[1] = (uint32_t)code;
    port_semihost(PORT_SYS_EXIT_EXTENDED, block);
    for (;;) __asm__ volatile("wfi"); /* not reached under QEMU */
}

#endif
