/* mcu.h -- helpers of tools/mcu/startup.c for the bare-metal test programs. */
#ifndef DC_MCU_H_
#define DC_MCU_H_
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
/* Instruction counter: valid under `qemu -icount shift=0`; 1 tick = 40 instructions. */
#define MCU_INSNS_PER_TICK 40u
void mcu_counter_start(void);
uint32_t mcu_counter_ticks(void);
/* Stack high-water mark: paint, run, then read the bytes used below the painter's sp. */
void mcu_stack_paint(void);
size_t mcu_stack_used(void);
size_t mcu_stack_size(void);
#ifdef __cplusplus
}
#endif
#endif
