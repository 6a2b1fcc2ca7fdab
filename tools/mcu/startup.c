/* startup.c -- bare-metal start-up for the QEMU MPS2 Cortex-M boards of `make test-mcu`.
 *
 * Vector table, reset handler (FPU on, .bss zeroed, C library constructors, main, exit),
 * a fault handler that reports the fault over semihosting and exits with status 1, the heap
 * (_sbrk between the linker's `end` and `__heap_limit`), stack painting for measuring stack
 * use, and an instruction counter: under `qemu -icount shift=0` one instruction advances the
 * virtual clock by 1 ns, and the CMSDK APB timer 0 of the board counts down at its 25 MHz
 * peripheral clock, so elapsed timer ticks x 40 = instructions executed (+-40).
 * Console output and exit go through newlib's semihosting (rdimon) library. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mcu.h"

extern uint32_t __bss_start__, __bss_end__, __stack_top, __stack_limit, end, __heap_limit;
extern int main(void);
extern void __libc_init_array(void);
extern void initialise_monitor_handles(void);

void Reset_Handler(void);
void Fault_Handler(void);
static void Default_Handler(void) {
  Fault_Handler();
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))(&__stack_top),
    Reset_Handler,
    Default_Handler,
    Fault_Handler,
    Fault_Handler,
    Fault_Handler,
    Fault_Handler,
    0,
    0,
    0,
    0,
    Default_Handler,
    Default_Handler,
    0,
    Default_Handler,
    Default_Handler};

#define SCB_CPACR (*(volatile uint32_t*)0xE000ED88u)
#define SCB_CFSR (*(volatile uint32_t*)0xE000ED28u)
#define SCB_HFSR (*(volatile uint32_t*)0xE000ED2Cu)
#define SCB_MMFAR (*(volatile uint32_t*)0xE000ED34u)
#define SCB_BFAR (*(volatile uint32_t*)0xE000ED38u)
#define TIMER0_VALUE (*(volatile uint32_t*)0x40000004u)
#define TIMER0_CTRL (*(volatile uint32_t*)0x40000000u)
#define TIMER0_RELOAD (*(volatile uint32_t*)0x40000008u)

void Reset_Handler(void) {
  uint32_t* p;
#if defined(__ARM_FP)
  SCB_CPACR |= 0xFu << 20; /* CP10/CP11 full access */
  __asm volatile("dsb\n isb");
#endif
  for (p = &__bss_start__; p < &__bss_end__;) *p++ = 0;
  initialise_monitor_handles();
  __libc_init_array();
  exit(main());
}

/* -nostartfiles drops crti.o/crtn.o: empty hooks for __libc_init_array. */
void _init(void) {}
void _fini(void) {}

void Fault_Handler(void) {
  printf("FAULT: CFSR=%08lx HFSR=%08lx MMFAR=%08lx BFAR=%08lx\n", (unsigned long)SCB_CFSR,
         (unsigned long)SCB_HFSR, (unsigned long)SCB_MMFAR, (unsigned long)SCB_BFAR);
  exit(1);
}

void* _sbrk(ptrdiff_t incr) {
  static uint8_t* brk = (uint8_t*)&end;
  uint8_t* prev = brk;
  if (incr < 0 || (size_t)((uint8_t*)&__heap_limit - brk) < (size_t)incr) {
    errno = ENOMEM;
    return (void*)-1;
  }
  brk += incr;
  return prev;
}

/* ---- instruction counter (see the top comment) ---- */
void mcu_counter_start(void) {
  TIMER0_CTRL = 0;
  TIMER0_RELOAD = 0xFFFFFFFFu;
  TIMER0_VALUE = 0xFFFFFFFFu;
  TIMER0_CTRL = 1;
}
uint32_t mcu_counter_ticks(void) {
  return 0xFFFFFFFFu - TIMER0_VALUE;
}

/* ---- stack painting ---- */
#define PAINT 0xC5C5C5C5u
/* Paints the free stack below the current stack pointer (minus a guard for this frame). */
void mcu_stack_paint(void) {
  uint32_t* sp;
  uint32_t* q;
  __asm volatile("mov %0, sp" : "=r"(sp));
  for (q = &__stack_limit; q < sp - 16; ++q) *q = PAINT;
}
/* Bytes of stack used below the painting call's stack pointer since mcu_stack_paint. */
size_t mcu_stack_used(void) {
  uint32_t* sp;
  uint32_t* q = &__stack_limit;
  __asm volatile("mov %0, sp" : "=r"(sp));
  while (q < sp && *q == PAINT) ++q;
  return (size_t)((uint8_t*)sp - (uint8_t*)q);
}
size_t mcu_stack_size(void) {
  return (size_t)((uint8_t*)&__stack_top - (uint8_t*)&__stack_limit);
}
