/* A strategy that imports a WASI function (wasi_snapshot_preview1 fd_write). */
#include "allele_test.h"

__attribute__((import_module("wasi_snapshot_preview1"), import_name("fd_write")))
extern int32_t wasi_fd_write(int32_t fd, int32_t iovs, int32_t iovs_len, int32_t nwritten);

static uint32_t g_iov[2];
static uint32_t g_written;
static const char g_msg[] = "hello from a strategy\n";

EXPORT("manifest") int32_t manifest(void) { return t_output_str(T_STRATEGY_MANIFEST("wasi_fd_write")); }
EXPORT("configure") int32_t configure(void) { return 0; }
EXPORT("reset") int32_t reset(void) { return 0; }
EXPORT("on_batch") int32_t on_batch(void) {
    return t_output_str("{\"row\":[],\"sym\":[],\"sizing\":[],\"amount\":[],\"limit\":[],\"group\":[]}");
}

EXPORT("on_event") int32_t on_event(void) {
    g_iov[0] = (uint32_t)(uintptr_t)g_msg;
    g_iov[1] = sizeof(g_msg) - 1;
    wasi_fd_write(1, (int32_t)(uintptr_t)g_iov, 1, (int32_t)(uintptr_t)&g_written);
    return t_output_str("[]");
}
