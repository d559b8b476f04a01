/*
 * Shared helpers for the test-only Extism modules in this folder: freestanding C, no libc, no PDK.
 * Each module includes this header and defines its own exports.
 *
 * Build (the tests do this in a temporary directory):
 *   python -m ziglang cc --target=wasm32-freestanding -O2 -nostdlib -Wl,--no-entry -o OUT.wasm SRC.c
 */
#ifndef ALLELE_TEST_H
#define ALLELE_TEST_H

#include <stdint.h>

#define EXTISM_IMPORT(n) __attribute__((import_module("extism:host/env"), import_name(n)))
#define ALLELE_IMPORT(n) __attribute__((import_module("extism:host/user"), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))

EXTISM_IMPORT("input_length") extern uint64_t ex_input_length(void);
EXTISM_IMPORT("input_load_u8") extern uint32_t ex_input_load_u8(uint64_t offset);
EXTISM_IMPORT("alloc") extern uint64_t ex_alloc(uint64_t size);
EXTISM_IMPORT("store_u8") extern void ex_store_u8(uint64_t offset, uint32_t value);
EXTISM_IMPORT("output_set") extern void ex_output_set(uint64_t offset, uint64_t length);
EXTISM_IMPORT("error_set") extern void ex_error_set(uint64_t block);

/* ---- a small output buffer ---- */

static char t_buf[4096];
static uint32_t t_len;

__attribute__((unused)) static void t_reset(void) { t_len = 0; }

__attribute__((unused)) static void t_str(const char *s) {
    while (*s && t_len < sizeof(t_buf)) t_buf[t_len++] = *s++;
}

__attribute__((unused)) static void t_i64(int64_t v) {
    char d[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    if (v < 0) t_str("-");
    do {
        d[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    while (n && t_len < sizeof(t_buf)) t_buf[t_len++] = d[--n];
}

/* Copy the buffer into a fresh Extism block. */
__attribute__((unused)) static uint64_t t_block(void) {
    uint64_t b = ex_alloc(t_len ? t_len : 1);
    for (uint32_t i = 0; i < t_len; i++) ex_store_u8(b + i, (uint8_t)t_buf[i]);
    return b;
}

/* The buffer as the call's output; returns the export's success code. */
__attribute__((unused)) static int32_t t_output(void) {
    uint64_t b = t_block();
    ex_output_set(b, t_len);
    return 0;
}

/* The buffer as the call's error; returns the export's failure code. */
__attribute__((unused)) static int32_t t_error(void) {
    ex_error_set(t_block());
    return 1;
}

__attribute__((unused)) static int32_t t_output_str(const char *s) {
    t_reset();
    t_str(s);
    return t_output();
}

/* A valid strategy manifest with the given name and no parameters. */
#define T_STRATEGY_MANIFEST(name)                                                                          \
    "{\"name\":\"" name "\",\"version\":\"0.0.1\",\"kind\":\"strategy\",\"author\":\"Allele tests\","    \
    "\"description\":\"test-only Extism module\",\"parameters\":[],\"symbols\":[\"*\"],"                     \
    "\"sensor_inputs\":[],\"allowed_hosts\":[],\"proof\":\"docs/strategies/none.md\"}"

#endif
