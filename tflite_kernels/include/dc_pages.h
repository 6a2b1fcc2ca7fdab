/*
 * dc_pages.h -- give back the resident pages of packed bytes that are no longer needed.
 *
 * After weights="compressed" has built its compact form (dc_sparse_fc.h), the packed bytes it
 * was built from are not read again unless the delegate is applied again.  When they live in a
 * read-only file mapping (a model opened by path: TFLite mmaps the file), their pages can be
 * dropped from this process (madvise MADV_DONTNEED): the file stays in the page cache and a
 * later read faults the same bytes back in.  Anonymous or writable memory (a model passed as
 * bytes) is left alone: dropping it would lose or zero the data.
 */
#ifndef DC_PAGES_H_
#define DC_PAGES_H_

#include <stddef.h>

#include "dc_codec.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Drops this process's mapping of the whole pages inside [p, p + n) when that range lies in one
 * read-only, file-backed mapping (Linux / Android, found in /proc/self/maps); does nothing
 * otherwise or elsewhere.  The bytes stay readable (faulted back from the file).  Returns the
 * number of bytes released (0: nothing done). */
DC_API size_t dc_release_file_pages(const void* p, size_t n);

/* Its two steps: 1 if the whole pages inside [p, p + n) lie in one read-only, file-backed
 * mapping (reads /proc/self/maps: ~0.3 ms in a Python process with LiteRT loaded, so the
 * compact-form build does it on its helper thread); and the drop itself, for a range the check
 * accepted (on other memory it would zero or lose data).  Returns as dc_release_file_pages. */
DC_API int dc_file_pages_readonly(const void* p, size_t n);
DC_API size_t dc_drop_file_pages(const void* p, size_t n);

/* Maps the whole pages inside [p, p + n) of freshly allocated memory writable in one call
 * (madvise MADV_POPULATE_WRITE, Linux 5.14+) instead of one page fault per page as a builder
 * first writes them (4096x4096 at 10 %: 1,200 faults, ~0.8 ms of the 7 ms compact-form build
 * in a fresh process).  A hint: does nothing where unsupported.  The contents are unchanged. */
DC_API void dc_populate_pages(void* p, size_t n);

#ifdef __cplusplus
}
#endif

#endif /* DC_PAGES_H_ */
