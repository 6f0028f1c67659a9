/* startup.c - reset and fault handling for the Cortex-M port.
 *
 * The vector table (placed at address 0 by the linker script) holds the
 * initial stack pointer and the handlers. Reset_Handler turns the FPU on
 * (the code is built for -mfloat-abi=hard, so the first float instruction
 * would fault with the FPU off), copies .data from flash, clears .bss and
 * calls main; main's return value becomes QEMU's exit status through
 * semihosting. A fault prints its status registers and exits with 3, so a
 * crash under QEMU is a clear failure instead of a hang.
 */
#include <stdint.h>

#include "semihost.h"

extern uint32_t __data_load__, __data_start__, __data_end__, __bss_start__, __bss_end__, __stack_top__;
int main(void);
void Reset_Handler(void);
void port_fault_handler(void);

#define PORT_REG(addr) (*(volatile uint32_t *)(addr))
#define PORT_SCB_CPACR PORT_REG(0xE000ED88u) /* coprocessor access          */
#define PORT_SCB_SHCSR PORT_REG(0xE000ED24u) /* system handler control       */
#define PORT_SCB_CFSR PORT_REG(0xE000ED28u)  /* configurable fault status    */
#define PORT_SCB_HFSR PORT_REG(0xE000ED2Cu)  /* hard fault status            */
#define PORT_SCB_MMFAR PORT_REG(0xE000ED34u)
#define PORT_SCB_BFAR PORT_REG(0xE000ED38u)

/* Append s, then v in hex, to the line at *p. */
static void port_append(char **p, const char *s, uint32_t v) {
    static const char digits[] = "0123456789abcdef";
    int i;
    while (*s) *(*p)++ = *s++;
    for (i = 0; i < 8; i++) *(*p)++ = digits[(v >> (28 - 4 * i)) & 15u];
}

void port_fault_handler(void) {
    char line[96], *p = line;
    port_append(&p, "FAULT cfsr=", PORT_SCB_CFSR);
    port_append(&p, " hfsr=", PORT_SCB_HFSR);
    port_append(&p, " mmfar=", PORT_SCB_MMFAR);
    port_append(&p, " bfar=", PORT_SCB_BFAR);
    *p++ = '\n';
    *p = 0;
    port_write0(line);
    port_exit(3);
}

void Reset_Handler(void) {
    uint32_t *src, *dst;
    /* CP10 and CP11 (the single-precision FPU): full access */
    PORT_SCB_CPACR |= 0xFu << 20;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    /* report memory-management, bus and usage faults as themselves */
    PORT_SCB_SHCSR |= (1u << 16) | (1u << 17) | (1u << 18);
    for (src = &__data_load__, dst = &__data_start__; dst < &__data_end__;) *dst++ = *src++;
    for (dst = &__bss_start__; dst < &__bss_end__;) *dst++ = 0;
    port_exit(main());
}

/* The first 16 entries (the Cortex-M system exceptions); the board's
 * interrupts are never enabled, so their entries are not needed. */
__attribute__((section(".isr_vector"), used)) void (*const port_vectors[16])(void) = {
    (void (*)(void))(uintptr_t)&__stack_top__, /* initial stack pointer */
    Reset_Handler,
    port_fault_handler, /* NMI          */
    port_fault_handler, /* HardFault    */
    port_fault_handler, /* MemManage    */
    port_fault_handler, /* BusFault     */
    port_fault_handler, /* UsageFault   */
    0, 0, 0, 0,
    port_fault_handler, /* SVCall       */
    port_fault_handler, /* DebugMonitor */
    0,
    port_fault_handler, /* PendSV       */
    port_fault_handler, /* SysTick      */
};
