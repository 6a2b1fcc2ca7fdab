/* dc_parallel_internal.h -- dc_parallel.c's functions for the library's other sources only (not
 * exported: the library is built with hidden visibility). */
#ifndef DC_PARALLEL_INTERNAL_H_
#define DC_PARALLEL_INTERNAL_H_

/* Registers dc_parallel.c's fork handlers (pthread_atfork: fork waits for the helper threads of
 * fills and tasks) now, if not done yet.  A source that registers fork handlers of its own whose
 * prepare handler must run before dc_parallel.c's (pthread_atfork runs prepare handlers in the
 * reverse order of registration) calls this first. */
void dc_parallel_register_atfork(void);

#endif /* DC_PARALLEL_INTERNAL_H_ */
