/* A strategy that reports the host's clock (extism:host/user allele_now_ns) in what it returns:
 * on_event -> one signal whose note is now_ns; on_batch -> one signal (row 0) whose group is now_ns. */
#include "allele_test.h"

ALLELE_IMPORT("allele_now_ns") extern int64_t allele_now_ns(void);

EXPORT("manifest") int32_t manifest(void) { return t_output_str(T_STRATEGY_MANIFEST("clock_probe")); }
EXPORT("configure") int32_t configure(void) { return 0; }
EXPORT("reset") int32_t reset(void) { return 0; }

EXPORT("on_event") int32_t on_event(void) {
    t_reset();
    t_str("[{\"symbol\":\"CLOCK\",\"sizing\":\"exposure\",\"amount\":0,\"limit_price\":null,\"group\":\"\","
          "\"note\":\"");
    t_i64(allele_now_ns());
    t_str("\"}]");
    return t_output();
}

EXPORT("on_batch") int32_t on_batch(void) {
    t_reset();
    t_str("{\"row\":[0],\"sym\":[0],\"sizing\":[0],\"amount\":[0],\"limit\":[null],\"group\":[\"");
    t_i64(allele_now_ns());
    t_str("\"]}");
    return t_output();
}
