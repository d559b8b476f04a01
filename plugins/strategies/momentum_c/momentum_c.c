/*
 * momentum_c: time-series momentum strategy for Allele, as an Extism plugin
 * written in freestanding C (no libc, no PDK header).
 *
 * Build:
 *   python -m ziglang cc --target=wasm32-freestanding -O2 -nostdlib \
 *       -Wl,--no-entry -o /tmp/momentum_c.wasm plugins/strategies/momentum_c/momentum_c.c
 *
 * Logic (identical on on_event and on_batch): per symbol keep the last
 * `lookback` prices. Once a symbol has seen lookback+1 prices,
 * r = price / price_lookback_bars_ago - 1 (only when that old price is > 0).
 * r > threshold -> side +1, r < -threshold -> side -1, otherwise unchanged.
 * An exposure signal (amount = side) is emitted whenever the side changes.
 *
 * Proof document: docs/strategies/momentum_c.md
 *
 * Memory: state lives in static arrays; per-call scratch (batch columns,
 * decoded strings, signals) lives on a bump heap above __heap_base that is
 * reset at the start of every call and grown with memory.grow. Input is read
 * from Extism memory through a 64 KiB window, output is written through a
 * 64 KiB staging buffer, so neither is ever copied whole.
 */

#include <stddef.h>
#include <stdint.h>

typedef uint8_t u8;
typedef uint32_t u32;
typedef uint64_t u64;
typedef int32_t i32;
typedef int64_t i64;

/* ------------------------------------------------------------------------ */
/* Imports and exports                                                       */
/* ------------------------------------------------------------------------ */

#define EXTISM_IMPORT(n) __attribute__((import_module("extism:host/env"), import_name(n)))
#define ALLELE_IMPORT(n) __attribute__((import_module("extism:host/user"), import_name(n)))
#define EXPORT(n) __attribute__((export_name(n)))

EXTISM_IMPORT("input_length") extern u64 ex_input_length(void);
EXTISM_IMPORT("input_load_u8") extern u32 ex_input_load_u8(u64 offset);
EXTISM_IMPORT("input_load_u64") extern u64 ex_input_load_u64(u64 offset);
EXTISM_IMPORT("alloc") extern u64 ex_alloc(u64 size);
EXTISM_IMPORT("free") extern void ex_free(u64 block);
EXTISM_IMPORT("store_u8") extern void ex_store_u8(u64 offset, u32 value);
EXTISM_IMPORT("store_u64") extern void ex_store_u64(u64 offset, u64 value);
EXTISM_IMPORT("output_set") extern void ex_output_set(u64 offset, u64 length);
EXTISM_IMPORT("error_set") extern void ex_error_set(u64 block);

/* level: 0 debug, 1 info, 2 warn, 3 error; message: an Extism block of UTF-8 */
ALLELE_IMPORT("allele_log") extern void allele_log(i64 level, i64 message_block);

/* ------------------------------------------------------------------------ */
/* The few libc routines the compiler may emit calls to                      */
/* ------------------------------------------------------------------------ */

__attribute__((no_builtin)) void *memcpy(void *restrict dst, const void *restrict src, size_t n) {
    u8 *d = (u8 *)dst;
    const u8 *s = (const u8 *)src;
    while (n--) *d++ = *s++;
    return dst;
}

__attribute__((no_builtin)) void *memmove(void *dst, const void *src, size_t n) {
    u8 *d = (u8 *)dst;
    const u8 *s = (const u8 *)src;
    if (d < s) {
        while (n--) *d++ = *s++;
    } else {
        while (n--) d[n] = s[n];
    }
    return dst;
}

__attribute__((no_builtin)) void *memset(void *dst, int c, size_t n) {
    u8 *d = (u8 *)dst;
    while (n--) *d++ = (u8)c;
    return dst;
}

__attribute__((no_builtin)) int memcmp(const void *a, const void *b, size_t n) {
    const u8 *x = (const u8 *)a, *y = (const u8 *)b;
    for (size_t i = 0; i < n; i++)
        if (x[i] != y[i]) return x[i] < y[i] ? -1 : 1;
    return 0;
}

static u32 cstrlen(const char *s) {
    u32 n = 0;
    while (s[n]) n++;
    return n;
}

static int bytes_eq(const u8 *a, u32 alen, const char *lit) {
    u32 n = cstrlen(lit);
    return alen == n && memcmp(a, lit, n) == 0;
}

/* ------------------------------------------------------------------------ */
/* Strategy state (static)                                                   */
/* ------------------------------------------------------------------------ */

#define MAX_SYMBOLS 256   /* distinct symbols per configured instance */
#define MAX_NAME 128      /* bytes per symbol name, exclusive */
#define LOOKBACK_MIN 1
#define LOOKBACK_MAX 1000
#define THRESHOLD_MIN 0.0
#define THRESHOLD_MAX 0.5

typedef struct {
    u32 count; /* prices seen, saturating at lookback */
    u32 pos;   /* next ring slot = oldest price once the ring is full */
    i32 side;  /* 0 flat (never decided), +1, -1 */
} SymState;

static i32 g_lookback = 20;
static double g_threshold = 0.0;

static u32 g_nsym;
static u8 g_names[MAX_SYMBOLS][MAX_NAME];
static u32 g_name_len[MAX_SYMBOLS];
static SymState g_state[MAX_SYMBOLS];
static double g_ring[MAX_SYMBOLS * LOOKBACK_MAX];

static void state_reset(void) { g_nsym = 0; }

/* One price for one symbol; returns the new side if it changed, else 0. */
static inline i32 step(u32 slot, double price) {
    SymState *st = &g_state[slot];
    double *ring = &g_ring[(size_t)slot * LOOKBACK_MAX];
    u32 lb = (u32)g_lookback;
    i32 changed = 0;
    if (st->count >= lb) {
        double old = ring[st->pos]; /* the price `lookback` bars ago */
        if (old > 0.0) {
            double r = price / old - 1.0;
            i32 side = st->side;
            if (r > g_threshold)
                side = 1;
            else if (r < -g_threshold)
                side = -1;
            if (side != st->side) {
                st->side = side;
                changed = side;
            }
        }
    } else {
        st->count++;
    }
    ring[st->pos] = price;
    if (++st->pos == lb) st->pos = 0;
    return changed;
}

/* ------------------------------------------------------------------------ */
/* Error messages                                                            */
/* ------------------------------------------------------------------------ */

static char g_err[1024];
static u32 g_errlen;
static const char *g_ctx = "";

static void e_reset(void) { g_errlen = 0; }
static void e_bytes(const void *p, u32 n) {
    const u8 *s = (const u8 *)p;
    for (u32 i = 0; i < n && g_errlen < sizeof(g_err); i++) g_err[g_errlen++] = (char)s[i];
}
static void e_str(const char *s) { e_bytes(s, cstrlen(s)); }
static void e_u64(u64 v) {
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n) e_bytes(&buf[--n], 1);
}
/* A user-supplied name, shortened if very long (never inside a UTF-8
   sequence: the host decodes the message as UTF-8). `p` holds at least
   min(n, 80) bytes. */
static void e_name(const u8 *p, u32 n) {
    if (n > 80) {
        u32 cut = 77;
        while (cut && (p[cut] & 0xC0) == 0x80) cut--;
        e_bytes(p, cut);
        e_str("...");
    } else {
        e_bytes(p, n);
    }
}

/* ------------------------------------------------------------------------ */
/* Bump heap for per-call scratch                                            */
/* ------------------------------------------------------------------------ */

extern u8 __heap_base;
static u64 g_heap_top;
static u64 g_mem_end;

static void heap_reset(void) {
    g_heap_top = ((u64)(uintptr_t)&__heap_base + 15) & ~(u64)15;
    g_mem_end = (u64)__builtin_wasm_memory_size(0) * 65536u;
}

/* Grow by exactly the pages needed: under Extism a growth past the manifest's
   max_pages traps instead of returning -1, so over-allocating could turn a
   batch that fits into a failure. */
static int heap_ensure(u64 end) {
    if (end <= g_mem_end) return 0;
    if (end > 0xFFFF0000ull) goto oom;
    if (__builtin_wasm_memory_grow(0, (size_t)((end - g_mem_end + 65535) / 65536)) == (size_t)-1) goto oom;
    g_mem_end = (u64)__builtin_wasm_memory_size(0) * 65536u;
    return 0;
oom:
    e_reset();
    e_str(g_ctx);
    e_str(": out of memory (input too large for the plugin's memory limit)");
    return -1;
}

static inline u8 *hptr(u64 off) { return (u8 *)(uintptr_t)off; }
static inline u64 align8(u64 v) { return (v + 7) & ~(u64)7; }

/* ------------------------------------------------------------------------ */
/* Input: read through a window from Extism memory                           */
/* ------------------------------------------------------------------------ */

#define RBUF_SIZE 65536
static u8 g_rbuf[RBUF_SIZE];
static u32 g_rpos, g_rlen;
static u64 g_in_len, g_in_off;

static void input_begin(void) {
    g_in_len = ex_input_length();
    g_in_off = 0;
    g_rpos = g_rlen = 0;
}

/* Keep the unread tail of the window (numbers are lexed from one contiguous
   span) and fill up behind it; returns 1 if more input was read. */
static int refill_keep(void) {
    if (g_in_off >= g_in_len) return 0;
    u32 keep = g_rlen - g_rpos;
    memmove(g_rbuf, g_rbuf + g_rpos, keep);
    u64 rem = g_in_len - g_in_off;
    u32 n = RBUF_SIZE - keep;
    if (rem < n) n = (u32)rem;
    u32 i = 0;
    u8 *dst = g_rbuf + keep;
    for (; i + 8 <= n; i += 8) {
        u64 v = ex_input_load_u64(g_in_off + i);
        for (int k = 0; k < 8; k++) dst[i + k] = (u8)(v >> (8 * k));
    }
    for (; i < n; i++) dst[i] = (u8)ex_input_load_u8(g_in_off + i);
    g_in_off += n;
    g_rpos = 0;
    g_rlen = keep + n;
    return n > 0;
}

static inline int peekc(void) {
    if (g_rpos >= g_rlen) {
        if (!refill_keep()) return -1;
    }
    return g_rbuf[g_rpos];
}
static inline void adv(void) { g_rpos++; }
static u64 in_pos(void) { return g_in_off - g_rlen + g_rpos; }

static inline int ws(void) {
    int c;
    while ((c = peekc()) == ' ' || c == '\n' || c == '\r' || c == '\t') adv();
    return c;
}

static int syntax(const char *what) {
    e_reset();
    e_str(g_ctx);
    e_str(": invalid JSON at byte ");
    e_u64(in_pos());
    e_str(": ");
    e_str(what);
    return -1;
}

static int expect_end(void) {
    if (ws() != -1) return syntax("unexpected characters after the JSON value");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Strings: decoded (escapes resolved, UTF-8) onto the heap top, uncommitted */
/* ------------------------------------------------------------------------ */

static u8 *g_str;
static u32 g_strlen;

static int hex4(u32 *out) {
    u32 v = 0;
    for (int i = 0; i < 4; i++) {
        int c = peekc();
        u32 d;
        if (c >= '0' && c <= '9')
            d = (u32)(c - '0');
        else if (c >= 'a' && c <= 'f')
            d = (u32)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F')
            d = (u32)(c - 'A' + 10);
        else
            return syntax("bad \\u escape in string");
        adv();
        v = v * 16 + d;
    }
    *out = v;
    return 0;
}

/* The current character is the opening quote. */
static int parse_string(void) {
    u64 base = g_heap_top;
    u64 len = 0;
    adv();
    for (;;) {
        if (base + len + 8 > g_mem_end && heap_ensure(base + len + 8)) return -1;
        u8 *dst = hptr(base + len);
        /* fast path: plain bytes inside the window */
        while (g_rpos < g_rlen) {
            u8 c = g_rbuf[g_rpos];
            if (c == '"' || c == '\\' || c < 0x20) break;
            if (base + len + 8 > g_mem_end) break;
            *dst++ = c;
            len++;
            g_rpos++;
        }
        int c = peekc();
        if (c < 0) return syntax("unterminated string");
        if (c == '"') {
            adv();
            break;
        }
        if (c < 0x20) return syntax("control character in string");
        if (c != '\\') continue; /* window or heap boundary: loop again */
        adv();
        int esc = peekc();
        if (esc < 0) return syntax("unterminated string");
        adv();
        u32 cp;
        switch (esc) {
        case '"': cp = '"'; break;
        case '\\': cp = '\\'; break;
        case '/': cp = '/'; break;
        case 'b': cp = 8; break;
        case 'f': cp = 12; break;
        case 'n': cp = 10; break;
        case 'r': cp = 13; break;
        case 't': cp = 9; break;
        case 'u':
            if (hex4(&cp)) return -1;
            if (cp >= 0xD800 && cp < 0xDC00 && peekc() == '\\') {
                /* high surrogate: combine with a following low surrogate */
                adv();
                if (peekc() != 'u') return syntax("bad escape after a high surrogate");
                adv();
                u32 lo;
                if (hex4(&lo)) return -1;
                if (lo >= 0xDC00 && lo < 0xE000) {
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                } else {
                    /* lone high surrogate followed by another escape: emit both */
                    dst = hptr(base + len);
                    dst[0] = (u8)(0xE0 | (cp >> 12));
                    dst[1] = (u8)(0x80 | ((cp >> 6) & 0x3F));
                    dst[2] = (u8)(0x80 | (cp & 0x3F));
                    len += 3;
                    cp = lo;
                }
            }
            break;
        default: return syntax("bad escape in string");
        }
        dst = hptr(base + len);
        if (cp < 0x80) {
            dst[0] = (u8)cp;
            len += 1;
        } else if (cp < 0x800) {
            dst[0] = (u8)(0xC0 | (cp >> 6));
            dst[1] = (u8)(0x80 | (cp & 0x3F));
            len += 2;
        } else if (cp < 0x10000) {
            dst[0] = (u8)(0xE0 | (cp >> 12));
            dst[1] = (u8)(0x80 | ((cp >> 6) & 0x3F));
            dst[2] = (u8)(0x80 | (cp & 0x3F));
            len += 3;
        } else {
            dst[0] = (u8)(0xF0 | (cp >> 18));
            dst[1] = (u8)(0x80 | ((cp >> 12) & 0x3F));
            dst[2] = (u8)(0x80 | ((cp >> 6) & 0x3F));
            dst[3] = (u8)(0x80 | (cp & 0x3F));
            len += 4;
        }
    }
    if (len > 0xFFFFFFF0ull) return syntax("string too long");
    g_str = hptr(base);
    g_strlen = (u32)len;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Numbers: strict JSON grammar, deterministic correctly rounded conversion  */
/* ------------------------------------------------------------------------ */

typedef struct {
    double v;   /* value as a double */
    i64 iv;     /* value as an integer, when iv_ok */
    int is_int; /* written without fraction or exponent */
    int iv_ok;  /* is_int and fits in i64 */
} Num;

static char g_nraw[40]; /* the number's text, for error messages */
static u32 g_nrawlen;

static const double P10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                               1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

static inline u64 dbits(double d) {
    union {
        double d;
        u64 u;
    } x;
    x.d = d;
    return x.u;
}
static inline double bitsd(u64 u) {
    union {
        double d;
        u64 u;
    } x;
    x.u = u;
    return x.d;
}

/* --- exact big-integer fallback --- */

#define BIG_LIMBS 160 /* 5120 bits: 800 digits plus 10^-1142 and the scaling shifts */
typedef struct {
    u32 n;
    u32 d[BIG_LIMBS];
} Big;

static void big_set(Big *a, u64 v) {
    a->n = 0;
    while (v) {
        a->d[a->n++] = (u32)v;
        v >>= 32;
    }
}
static void big_mul_small(Big *a, u32 m) {
    u64 carry = 0;
    for (u32 i = 0; i < a->n; i++) {
        u64 t = (u64)a->d[i] * m + carry;
        a->d[i] = (u32)t;
        carry = t >> 32;
    }
    if (carry) a->d[a->n++] = (u32)carry;
}
static void big_mul_pow10(Big *a, int e) {
    static const u32 small[10] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000};
    while (e >= 9) {
        big_mul_small(a, 1000000000u);
        e -= 9;
    }
    if (e > 0) big_mul_small(a, small[e]);
}
static int big_bitlen(const Big *a) {
    if (!a->n) return 0;
    return (int)(a->n - 1) * 32 + 32 - __builtin_clz(a->d[a->n - 1]);
}
static void big_shl(Big *a, int s) {
    if (!a->n || s <= 0) return;
    int limbs = s / 32, bits = s % 32;
    u32 n = a->n;
    if (bits) {
        a->d[n] = 0;
        for (int i = (int)n; i > 0; i--) a->d[i] = (a->d[i] << bits) | (a->d[i - 1] >> (32 - bits));
        a->d[0] <<= bits;
        n++;
    }
    if (limbs) {
        for (int i = (int)n - 1; i >= 0; i--) a->d[i + limbs] = a->d[i];
        for (int i = 0; i < limbs; i++) a->d[i] = 0;
        n += (u32)limbs;
    }
    while (n && !a->d[n - 1]) n--;
    a->n = n;
}
static void big_shr1(Big *a) {
    for (u32 i = 0; i < a->n; i++) {
        a->d[i] = (a->d[i] >> 1) | (i + 1 < a->n ? a->d[i + 1] << 31 : 0);
    }
    while (a->n && !a->d[a->n - 1]) a->n--;
}
static int big_cmp(const Big *a, const Big *b) {
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (int i = (int)a->n - 1; i >= 0; i--)
        if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}
static void big_sub(Big *a, const Big *b) { /* a -= b, a >= b */
    u64 borrow = 0;
    for (u32 i = 0; i < a->n; i++) {
        u64 bi = i < b->n ? b->d[i] : 0;
        u64 t = (u64)a->d[i] - bi - borrow;
        a->d[i] = (u32)t;
        borrow = (t >> 63) & 1;
    }
    while (a->n && !a->d[a->n - 1]) a->n--;
}

/* Digits after the 19th significant one, kept for the exact path. Beyond
   MAX_XDIGITS only whether any is non-zero matters (768 digits decide any
   rounding of a double). */
#define MAX_XDIGITS 800
static u8 g_xdig[MAX_XDIGITS];
static u32 g_nx;

static void big_add_small(Big *a, u32 v) {
    u64 carry = v;
    for (u32 i = 0; i < a->n && carry; i++) {
        u64 t = (u64)a->d[i] + carry;
        a->d[i] = (u32)t;
        carry = t >> 32;
    }
    if (carry) a->d[a->n++] = (u32)carry;
}

/* Correctly rounded (M followed by the g_nx extra digits) * 10^(e - g_nx), M > 0;
   `sticky`: non-zero digits were dropped beyond those. */
static double slow_decimal(u64 M, int e, int sticky) {
    Big N, D, T;
    big_set(&N, M);
    for (u32 i = 0; i < g_nx;) { /* append the extra digits, 9 at a time */
        u32 chunk = 0, k = 0;
        for (; k < 9 && i < g_nx; k++, i++) chunk = chunk * 10 + g_xdig[i];
        static const u32 pw[10] = {1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000};
        big_mul_small(&N, pw[k]);
        big_add_small(&N, chunk);
    }
    e -= (int)g_nx;
    big_set(&D, 1);
    if (e >= 0)
        big_mul_pow10(&N, e);
    else
        big_mul_pow10(&D, -e);
    /* E = floor(log2(N / D)) */
    int diff = big_bitlen(&N) - big_bitlen(&D);
    int E;
    if (diff >= 0) {
        T = D;
        big_shl(&T, diff);
        E = big_cmp(&N, &T) >= 0 ? diff : diff - 1;
    } else {
        T = N;
        big_shl(&T, -diff);
        E = big_cmp(&T, &D) >= 0 ? diff : diff - 1;
    }
    int s = 53 - E; /* q = floor(N * 2^s / D) has 54 bits: 53 + a rounding bit */
    if (s > 1075) s = 1075; /* subnormal: fixed scale 2^-1075 */
    if (s >= 0)
        big_shl(&N, s);
    else
        big_shl(&D, -s);
    T = D;
    big_shl(&T, 53);
    u64 q = 0;
    for (int i = 0; i < 54; i++) {
        q <<= 1;
        if (big_cmp(&N, &T) >= 0) {
            big_sub(&N, &T);
            q |= 1;
        }
        big_shr1(&T);
    }
    if (N.n) sticky = 1;
    u64 mant = q >> 1;
    if ((q & 1) && (sticky || (mant & 1))) mant++;
    if (s == 1075) return bitsd(mant); /* subnormal (or the smallest normals): raw bits */
    if (mant == (1ull << 53)) {
        mant >>= 1;
        E++;
    }
    int biased = E + 1023;
    if (biased >= 2047) return bitsd(0x7FF0000000000000ull);
    return bitsd(((u64)biased << 52) | (mant - (1ull << 52)));
}

static inline void split(double a, double *hi, double *lo) {
    double t = 134217729.0 * a; /* 2^27 + 1 */
    double h = t - (t - a);
    *hi = h;
    *lo = a - h;
}
static inline void two_prod(double a, double b, double *p, double *err) {
    double x = a * b, ah, al, bh, bl;
    split(a, &ah, &al);
    split(b, &bh, &bl);
    *p = x;
    *err = ((ah * bh - x) + ah * bl + al * bh) + al * bl;
}

/* M * 10^e (plus any extra digits, see slow_decimal), M > 0, correctly rounded to nearest-even. */
static double decimal_to_double(u64 M, int e, int nsig, int truncated) {
    if (e + nsig > 310) return bitsd(0x7FF0000000000000ull);
    if (e + nsig < -342) return 0.0;
    if (!truncated && !g_nx && e >= -22 && e <= 22) {
        if (M <= (1ull << 53)) { /* both operands exact: one rounding */
            double m = (double)M;
            return e >= 0 ? m * P10[e] : m / P10[-e];
        }
        /* double-double estimate with an error bound far below half an ulp;
           fall back to exact arithmetic when it lands too near a tie */
        double mh = (double)M;
        double ml = (double)(i64)(M - (u64)mh);
        double h, l;
        if (e >= 0) {
            double p, pe, P = P10[e];
            two_prod(mh, P, &p, &pe);
            double s = pe + ml * P;
            h = p + s;
            l = s - (h - p);
        } else {
            double D = P10[-e], a, b;
            double q1 = mh / D;
            two_prod(q1, D, &a, &b);
            double r = ((mh - a) - b) + ml;
            double q2 = r / D;
            h = q1 + q2;
            l = q2 - (h - q1);
        }
        u64 hb = dbits(h);
        u64 ex = (hb >> 52) & 0x7FF;
        if (ex > 1 && ex < 2046) {
            double up = bitsd(hb + 1) - h, dn = h - bitsd(hb - 1);
            double eps = h * 0x1p-90;
            if (l >= 0 ? (l + eps < 0.5 * up) : (eps - l < 0.5 * dn)) return h;
        }
    }
    return slow_decimal(M, e, truncated);
}

/* Lex one number from [s, end); `eof` says the input ends at `end`.
   Returns the bytes consumed, 0 if the number may continue past `end`, or -1
   (g_err set) on a syntax error. Only the first 39 characters are kept in
   g_nraw (for messages). */
static int lex_number(const u8 *s, const u8 *end, int eof, Num *o) {
    const u8 *q = s;
    u64 M = 0;
    int nsig = 0, trunc = 0, e10 = 0, neg = 0, is_int = 1;
    g_nx = 0;
    /* s is always g_rbuf + g_rpos: on an error, point the position at q */
#define LEX_FAIL(msg)              \
    do {                           \
        g_rpos += (u32)(q - s);    \
        return syntax(msg);        \
    } while (0)
#define CUR (q < end ? (int)*q : -1)
#define NEED_MORE                   \
    do {                            \
        if (q >= end && !eof) return 0; \
    } while (0)
    int c = CUR;
    if (c == '-') {
        neg = 1;
        q++;
        NEED_MORE;
        c = CUR;
    }
    if (c < '0' || c > '9') LEX_FAIL("invalid number");
    if (c == '0') {
        q++;
        NEED_MORE;
        c = CUR;
        if (c >= '0' && c <= '9') LEX_FAIL("leading zero in number");
    } else {
        do {
            int d = c - '0';
            if (nsig < 19) {
                M = M * 10 + (u64)d;
                nsig++;
            } else {
                e10++;
                if (g_nx < MAX_XDIGITS)
                    g_xdig[g_nx++] = (u8)d;
                else if (d)
                    trunc = 1;
            }
            q++;
            c = CUR;
        } while (c >= '0' && c <= '9');
        NEED_MORE;
    }
    if (c == '.') {
        is_int = 0;
        q++;
        NEED_MORE;
        c = CUR;
        if (c < '0' || c > '9') LEX_FAIL("digit expected after decimal point");
        do {
            int d = c - '0';
            if (nsig < 19) {
                if (nsig || d) {
                    M = M * 10 + (u64)d;
                    nsig++;
                }
                e10--;
            } else if (g_nx < MAX_XDIGITS) {
                g_xdig[g_nx++] = (u8)d;
            } else if (d) {
                trunc = 1;
            }
            q++;
            c = CUR;
        } while (c >= '0' && c <= '9');
        NEED_MORE;
    }
    if (c == 'e' || c == 'E') {
        is_int = 0;
        q++;
        NEED_MORE;
        c = CUR;
        int esign = 1, ex = 0;
        if (c == '+' || c == '-') {
            if (c == '-') esign = -1;
            q++;
            NEED_MORE;
            c = CUR;
        }
        if (c < '0' || c > '9') LEX_FAIL("digit expected in exponent");
        do {
            if (ex < 100000) ex = ex * 10 + (c - '0');
            q++;
            c = CUR;
        } while (c >= '0' && c <= '9');
        NEED_MORE;
        e10 += esign * ex;
    }
#undef CUR
#undef NEED_MORE
#undef LEX_FAIL
    u32 len = (u32)(q - s);
    g_nrawlen = len < sizeof(g_nraw) - 1 ? len : (u32)sizeof(g_nraw) - 1;
    for (u32 i = 0; i < g_nrawlen; i++) g_nraw[i] = (char)s[i];
    g_nraw[g_nrawlen] = 0;
    double v = M ? decimal_to_double(M, e10, nsig, trunc) : 0.0;
    o->v = neg ? -v : v;
    o->is_int = is_int;
    o->iv_ok = is_int && e10 == 0 && M <= 0x7FFFFFFFFFFFFFFFull;
    o->iv = o->iv_ok ? (neg ? -(i64)M : (i64)M) : 0;
    return (int)len;
}

/* The current character starts the number ('-' or a digit). */
static int parse_number(Num *o) {
    for (int attempt = 0;; attempt++) {
        if (g_rpos >= g_rlen) refill_keep();
        int eof = g_in_off >= g_in_len;
        int r = lex_number(g_rbuf + g_rpos, g_rbuf + g_rlen, eof, o);
        if (r > 0) {
            g_rpos += (u32)r;
            return 0;
        }
        if (r < 0) return -1;
        /* the number runs into the end of the window: pull in more input */
        if (attempt == 0 && g_rpos > 0) {
            refill_keep();
            continue;
        }
        if (!refill_keep()) return syntax("number too long (over 64 KiB)");
    }
}

static inline int starts_number(int c) { return c == '-' || (c >= '0' && c <= '9'); }

/* ------------------------------------------------------------------------ */
/* Generic JSON structure                                                    */
/* ------------------------------------------------------------------------ */

static int lit(const char *w) {
    for (const char *p = w; *p; p++) {
        if (peekc() != *p) return syntax("invalid literal");
        adv();
    }
    return 0;
}

static int skip_value(int depth);

static u8 g_key[96]; /* the current object key (its first 96 bytes) */
static u32 g_keylen; /* its full length */

static int key_is(const char *s) { return g_keylen < sizeof(g_key) && bytes_eq(g_key, g_keylen, s); }

/* Call after '{' was consumed. Returns 1 with the key in g_key and the value
   next, 0 after the closing '}', -1 on error. */
static int obj_next(u32 *count) {
    int c = ws();
    if (c == '}') {
        adv();
        return 0;
    }
    if (*count) {
        if (c != ',') return syntax("expected ',' or '}' in object");
        adv();
        c = ws();
    }
    if (c != '"') return syntax("expected a string key in object");
    if (parse_string()) return -1;
    g_keylen = g_strlen;
    for (u32 i = 0; i < g_strlen && i < sizeof(g_key); i++) g_key[i] = g_str[i];
    if (ws() != ':') return syntax("expected ':' after key");
    adv();
    ws();
    (*count)++;
    return 1;
}

/* Call after '[' was consumed. Returns 1 with an element next, 0 after ']'. */
static int arr_next(u32 *count) {
    int c = ws();
    if (c == ']') {
        adv();
        return 0;
    }
    if (*count) {
        if (c != ',') return syntax("expected ',' or ']' in array");
        adv();
        c = ws();
    }
    if (c < 0) return syntax("unexpected end of input in array");
    (*count)++;
    return 1;
}

static int skip_value(int depth) {
    if (depth > 200) return syntax("nesting too deep");
    int c = ws();
    u32 n = 0;
    int r;
    switch (c) {
    case '{':
        adv();
        while ((r = obj_next(&n)) == 1)
            if (skip_value(depth + 1)) return -1;
        return r;
    case '[':
        adv();
        while ((r = arr_next(&n)) == 1)
            if (skip_value(depth + 1)) return -1;
        return r;
    case '"': return parse_string();
    case 't': return lit("true");
    case 'f': return lit("false");
    case 'n': return lit("null");
    default:
        if (starts_number(c)) {
            Num num;
            return parse_number(&num);
        }
        if (c < 0) return syntax("unexpected end of input");
        return syntax("unexpected character");
    }
}

static const char *type_name(int c) {
    switch (c) {
    case '{': return "an object";
    case '[': return "a list";
    case '"': return "a string";
    case 't':
    case 'f': return "a boolean";
    case 'n': return "null";
    default: return starts_number(c) ? "a number" : "invalid JSON";
    }
}

/* ------------------------------------------------------------------------ */
/* Output: each writer runs twice, once to measure, once to write            */
/* ------------------------------------------------------------------------ */

#define WBUF_SIZE 65536
static u8 g_wbuf[WBUF_SIZE];
static u32 g_wlen;
static int g_wcount;
static u64 g_wtotal, g_wblock, g_woff;

static void w_flush(void) {
    u32 i = 0;
    for (; i + 8 <= g_wlen; i += 8) {
        u64 v = (u64)g_wbuf[i] | (u64)g_wbuf[i + 1] << 8 | (u64)g_wbuf[i + 2] << 16 | (u64)g_wbuf[i + 3] << 24 |
                (u64)g_wbuf[i + 4] << 32 | (u64)g_wbuf[i + 5] << 40 | (u64)g_wbuf[i + 6] << 48 |
                (u64)g_wbuf[i + 7] << 56;
        ex_store_u64(g_wblock + g_woff + i, v);
    }
    for (; i < g_wlen; i++) ex_store_u8(g_wblock + g_woff + i, g_wbuf[i]);
    g_woff += g_wlen;
    g_wlen = 0;
}

static void w_bytes(const void *p, u32 n) {
    if (g_wcount) {
        g_wtotal += n;
        return;
    }
    const u8 *s = (const u8 *)p;
    while (n) {
        u32 room = WBUF_SIZE - g_wlen;
        u32 k = n < room ? n : room;
        for (u32 i = 0; i < k; i++) g_wbuf[g_wlen + i] = s[i];
        g_wlen += k;
        s += k;
        n -= k;
        if (g_wlen == WBUF_SIZE) w_flush();
    }
}
static void w_str(const char *s) { w_bytes(s, cstrlen(s)); }
static void w_i64(i64 v) {
    char buf[24];
    int n = 0;
    u64 u = v < 0 ? (u64)0 - (u64)v : (u64)v;
    do {
        buf[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) buf[n++] = '-';
    char out[24];
    for (int i = 0; i < n; i++) out[i] = buf[n - 1 - i];
    w_bytes(out, (u32)n);
}
/* A JSON string literal of UTF-8 bytes. A lone surrogate (which the
   decoder keeps as a 3-byte ED A0..BF xx sequence) is written back as a
   \uXXXX escape, so the output stays valid UTF-8. */
static void w_json_str(const u8 *s, u32 n) {
    static const char hex[] = "0123456789abcdef";
    w_bytes("\"", 1);
    u32 start = 0;
    for (u32 i = 0; i < n; i++) {
        u8 c = s[i];
        if (c == 0xED && i + 2 < n && (s[i + 1] & 0xE0) == 0xA0) {
            u32 cp = 0xD000u | (u32)(s[i + 1] & 0x3F) << 6 | (u32)(s[i + 2] & 0x3F);
            w_bytes(s + start, i - start);
            char esc[6] = {'\\', 'u', hex[cp >> 12], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15], hex[cp & 15]};
            w_bytes(esc, 6);
            i += 2;
            start = i + 1;
            continue;
        }
        if (c == '"' || c == '\\' || c < 0x20) {
            w_bytes(s + start, i - start);
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            if (c == '"' || c == '\\') {
                esc[1] = (char)c;
                w_bytes(esc, 2);
            } else {
                w_bytes(esc, 6);
            }
            start = i + 1;
        }
    }
    w_bytes(s + start, n - start);
    w_bytes("\"", 1);
}

typedef void (*emit_fn)(void);

static int output_with(emit_fn emit) {
    g_wcount = 1;
    g_wtotal = 0;
    emit();
    g_wblock = ex_alloc(g_wtotal ? g_wtotal : 1);
    if (!g_wblock) {
        e_reset();
        e_str(g_ctx);
        e_str(": could not allocate the output");
        return -1;
    }
    g_wcount = 0;
    g_wlen = 0;
    g_woff = 0;
    emit();
    w_flush();
    ex_output_set(g_wblock, g_wtotal);
    return 0;
}

/* An Extism block holding bytes. */
static u64 block_of(const void *p, u32 n) {
    u64 b = ex_alloc(n ? n : 1);
    if (!b) return 0;
    const u8 *s = (const u8 *)p;
    u32 i = 0;
    for (; i + 8 <= n; i += 8) {
        u64 v = 0;
        for (int k = 7; k >= 0; k--) v = (v << 8) | s[i + k];
        ex_store_u64(b + i, v);
    }
    for (; i < n; i++) ex_store_u8(b + i, s[i]);
    return b;
}

static i32 fail_call(void) {
    u64 b = block_of(g_err, g_errlen);
    if (b) ex_error_set(b);
    return 1;
}

static void log_msg(i64 level, const char *msg, u32 n) {
    u64 b = block_of(msg, n);
    if (!b) return;
    allele_log(level, (i64)b);
    ex_free(b);
}

/* ------------------------------------------------------------------------ */
/* manifest                                                                  */
/* ------------------------------------------------------------------------ */

static const char MANIFEST[] =
    "{\"name\":\"momentum_c\",\"version\":\"0.1.0\",\"kind\":\"strategy\",\"author\":\"Allele\","
    "\"description\":\"Time-series momentum: long (+1 exposure) when the price is more than threshold above its "
    "value lookback bars ago, short (-1) when more than threshold below, otherwise hold the previous side; "
    "signals only when the side changes.\","
    "\"parameters\":["
    "{\"name\":\"lookback\",\"type\":\"int\",\"default\":20,\"min\":1,\"max\":1000,\"step\":1,\"choices\":[],"
    "\"description\":\"bars between the two prices compared (per symbol)\"},"
    "{\"name\":\"threshold\",\"type\":\"float\",\"default\":0.0,\"min\":0.0,\"max\":0.5,\"step\":null,"
    "\"choices\":[],\"description\":\"minimum absolute lookback return (as a fraction) needed to take or flip a "
    "side; inside the band the previous side is kept\"}"
    "],"
    "\"symbols\":[\"*\"],\"sensor_inputs\":[],\"allowed_hosts\":[],\"proof\":\"docs/strategies/momentum_c.md\"}";

static void emit_manifest(void) { w_bytes(MANIFEST, sizeof(MANIFEST) - 1); }

EXPORT("manifest") i32 manifest(void) {
    g_ctx = "manifest";
    heap_reset();
    if (output_with(emit_manifest)) return fail_call();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* configure / reset                                                         */
/* ------------------------------------------------------------------------ */

static int param_error(const char *name, const char *what) {
    e_reset();
    e_str("configure: parameter '");
    e_str(name);
    e_str("' ");
    e_str(what);
    return -1;
}

static int do_configure(void) {
    i32 lookback = g_lookback;
    double threshold = g_threshold;
    if (ws() != '{') {
        e_reset();
        e_str("configure: input must be a JSON object of parameter values, e.g. {\"lookback\": 20}");
        return -1;
    }
    adv();
    u32 n = 0;
    int r;
    while ((r = obj_next(&n)) == 1) {
        int c = peekc();
        int is_lb = key_is("lookback"), is_th = key_is("threshold");
        if (!is_lb && !is_th) {
            e_reset();
            e_str("configure: unknown parameter '");
            e_name(g_key, g_keylen);
            e_str("' (known: lookback, threshold)");
            return -1;
        }
        const char *name = is_lb ? "lookback" : "threshold";
        if (!starts_number(c)) {
            if (skip_value(0)) return -1; /* reports invalid JSON first */
            param_error(name, is_lb ? "must be an integer, got " : "must be a number, got ");
            e_str(type_name(c));
            return -1;
        }
        Num num;
        if (parse_number(&num)) return -1;
        double v = num.v;
        if (is_lb) {
            if (v != v || v - v != 0.0 || __builtin_floor(v) != v) {
                param_error(name, "must be an integer, got ");
                e_str(g_nraw);
                return -1;
            }
            if (v < LOOKBACK_MIN || v > LOOKBACK_MAX) {
                param_error(name, "= ");
                e_str(g_nraw);
                e_str(" is outside [1, 1000]");
                return -1;
            }
            lookback = (i32)v;
        } else {
            if (v - v != 0.0) {
                param_error(name, "must be finite, got ");
                e_str(g_nraw);
                return -1;
            }
            if (v < THRESHOLD_MIN || v > THRESHOLD_MAX) {
                param_error(name, "= ");
                e_str(g_nraw);
                e_str(" is outside [0.0, 0.5]");
                return -1;
            }
            threshold = v;
        }
    }
    if (r < 0) return -1;
    if (expect_end()) return -1;
    g_lookback = lookback;
    g_threshold = threshold + 0.0; /* -0.0 -> 0.0 */
    state_reset();
    return 0;
}

static u32 fmt_threshold(char *out, double t) {
    /* t in [0, 0.5]: "0." and up to 9 decimals, for the log line only */
    u32 n = 0;
    out[n++] = '0';
    out[n++] = '.';
    u64 frac = (u64)(t * 1e9 + 0.5);
    if (frac >= 1000000000ull) frac = 999999999ull;
    char d[9];
    for (int i = 8; i >= 0; i--) {
        d[i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    int last = 0;
    for (int i = 0; i < 9; i++)
        if (d[i] != '0') last = i;
    for (int i = 0; i <= last; i++) out[n++] = d[i];
    return n;
}

EXPORT("configure") i32 configure(void) {
    g_ctx = "configure";
    heap_reset();
    input_begin();
    if (do_configure()) return fail_call();
    char msg[96];
    u32 n = 0;
    const char *a = "momentum_c configured: lookback=";
    for (u32 i = 0; a[i]; i++) msg[n++] = a[i];
    char num[12];
    int k = 0;
    u32 lb = (u32)g_lookback;
    do {
        num[k++] = (char)('0' + lb % 10);
        lb /= 10;
    } while (lb);
    while (k) msg[n++] = num[--k];
    const char *b = " threshold=";
    for (u32 i = 0; b[i]; i++) msg[n++] = b[i];
    n += fmt_threshold(msg + n, g_threshold);
    log_msg(1, msg, n);
    return 0;
}

EXPORT("reset") i32 reset(void) {
    state_reset();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Symbol table                                                              */
/* ------------------------------------------------------------------------ */

/* Slot of a name among the first `upto` entries, or -1. */
static i32 find_symbol(const u8 *name, u32 len, u32 upto) {
    for (u32 i = 0; i < upto; i++)
        if (g_name_len[i] == len && memcmp(g_names[i], name, len) == 0) return (i32)i;
    return -1;
}

static int name_check(const u8 *name, u32 len) {
    if (len >= MAX_NAME) {
        e_reset();
        e_str(g_ctx);
        e_str(": symbol '");
        e_name(name, len);
        e_str("' is too long (at most 127 bytes)");
        return -1;
    }
    return 0;
}

static int too_many_symbols(void) {
    e_reset();
    e_str(g_ctx);
    e_str(": too many symbols (at most 256 distinct symbols until the next reset or configure)");
    return -1;
}

/* Write a tentative entry at index `at` (>= g_nsym); committed by bumping g_nsym. */
static void stage_symbol(u32 at, const u8 *name, u32 len) {
    memcpy(g_names[at], name, len);
    g_name_len[at] = len;
    g_state[at].count = 0;
    g_state[at].pos = 0;
    g_state[at].side = 0;
}

/* ------------------------------------------------------------------------ */
/* on_event                                                                  */
/* ------------------------------------------------------------------------ */

static u8 g_ev_sym[MAX_NAME];
static u32 g_ev_symlen;
static i32 g_ev_signal;

static int field_error(const char *field, const char *what) {
    e_reset();
    e_str("on_event: market.");
    e_str(field);
    e_str(" ");
    e_str(what);
    return -1;
}

static int number_field(const char *field, int integer, Num *num) {
    int c = peekc();
    if (!starts_number(c)) {
        field_error(field, integer ? "must be an integer, got " : "must be a number, got ");
        e_str(type_name(c));
        return -1;
    }
    if (parse_number(num)) return -1;
    if (integer && !num->iv_ok) {
        field_error(field, "must be an integer, got ");
        e_str(g_nraw);
        return -1;
    }
    return 0;
}

static int string_field(const char *field) {
    int c = peekc();
    if (c != '"') {
        field_error(field, "must be a string, got ");
        e_str(type_name(c));
        return -1;
    }
    return parse_string();
}

/* Parses the market object; on success g_ev_sym/price are set. */
static int parse_market(double *price) {
    if (ws() != '{') {
        e_reset();
        e_str("on_event: 'market' must be an object, got ");
        e_str(type_name(peekc()));
        return -1;
    }
    adv();
    int have_sym = 0, have_price = 0;
    u32 n = 0;
    int r;
    Num num;
    while ((r = obj_next(&n)) == 1) {
        if (key_is("symbol")) {
            if (string_field("symbol")) return -1;
            if (name_check(g_str, g_strlen)) return -1;
            memcpy(g_ev_sym, g_str, g_strlen);
            g_ev_symlen = g_strlen;
            have_sym = 1;
        } else if (key_is("price")) {
            if (number_field("price", 0, &num)) return -1;
            if (num.v - num.v != 0.0) return field_error("price", "must be finite");
            *price = num.v;
            have_price = 1;
        } else if (key_is("kind")) {
            if (string_field("kind")) return -1;
            if (!bytes_eq(g_str, g_strlen, "trade") && !bytes_eq(g_str, g_strlen, "quote") &&
                !bytes_eq(g_str, g_strlen, "bar"))
                return field_error("kind", "must be \"trade\", \"quote\" or \"bar\"");
        } else if (key_is("venue")) {
            if (string_field("venue")) return -1;
        } else if (key_is("ts_ns")) {
            if (number_field("ts_ns", 1, &num)) return -1;
        } else if (key_is("size") || key_is("bid") || key_is("ask") || key_is("bid_size") ||
                   key_is("ask_size")) {
            char f[16];
            u32 i = 0;
            for (; i < g_keylen && i < sizeof(f) - 1; i++) f[i] = (char)g_key[i];
            f[i] = 0;
            if (number_field(f, 0, &num)) return -1;
        } else {
            if (skip_value(0)) return -1; /* unknown fields are ignored */
        }
    }
    if (r < 0) return -1;
    if (!have_sym) {
        e_reset();
        e_str("on_event: market event has no 'symbol'");
        return -1;
    }
    if (!have_price) {
        e_reset();
        e_str("on_event: market event has no 'price'");
        return -1;
    }
    return 0;
}

static void emit_event_signals(void) {
    if (!g_ev_signal) {
        w_str("[]");
        return;
    }
    w_str("[{\"symbol\":");
    w_json_str(g_ev_sym, g_ev_symlen);
    w_str(",\"sizing\":\"exposure\",\"amount\":");
    w_str(g_ev_signal > 0 ? "1" : "-1");
    w_str(",\"limit_price\":null,\"group\":\"\",\"note\":\"");
    w_str(g_ev_signal > 0 ? "momentum up" : "momentum down");
    w_str("\"}]");
}

static int do_on_event(void) {
    g_ev_signal = 0;
    if (ws() != '{') {
        e_reset();
        e_str("on_event: input must be a JSON object {\"market\": {...}} or {\"reading\": {...}}");
        return -1;
    }
    adv();
    int kinds = 0, is_market = 0;
    double price = 0.0;
    u32 n = 0;
    int r;
    while ((r = obj_next(&n)) == 1) {
        if (key_is("market")) {
            if (parse_market(&price)) return -1;
            is_market = 1;
        } else if (key_is("reading")) {
            int c = peekc();
            if (c != '{') {
                e_reset();
                e_str("on_event: 'reading' must be an object, got ");
                e_str(type_name(c));
                return -1;
            }
            if (skip_value(0)) return -1;
        } else {
            e_reset();
            e_str("on_event: unknown key '");
            e_name(g_key, g_keylen);
            e_str("' (expected 'market' or 'reading')");
            return -1;
        }
        kinds++;
    }
    if (r < 0) return -1;
    if (expect_end()) return -1;
    if (kinds != 1) {
        e_reset();
        e_str("on_event: input must hold exactly one of 'market' or 'reading'");
        return -1;
    }
    if (!is_market) return 0; /* readings produce no signals */
    i32 slot = find_symbol(g_ev_sym, g_ev_symlen, g_nsym);
    if (slot < 0) {
        if (g_nsym >= MAX_SYMBOLS) return too_many_symbols();
        stage_symbol(g_nsym, g_ev_sym, g_ev_symlen);
        slot = (i32)g_nsym++;
    }
    g_ev_signal = step((u32)slot, price);
    return 0;
}

EXPORT("on_event") i32 on_event(void) {
    g_ctx = "on_event";
    heap_reset();
    input_begin();
    if (do_on_event()) return fail_call();
    if (output_with(emit_event_signals)) return fail_call();
    return 0;
}

/* ------------------------------------------------------------------------ */
/* on_batch                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct {
    u32 row;
    u32 sym_up; /* symbol index << 1 | (amount > 0); indices are < 2^31 since
                   each dictionary entry takes at least 3 input bytes */
} BatchSignal;

static BatchSignal *g_sigs;
static u32 g_nsigs;

static int col_error(const char *col, const char *what) {
    e_reset();
    e_str("on_batch: batch column '");
    e_str(col);
    e_str("' ");
    e_str(what);
    return -1;
}

static int row_error(const char *col, u32 row, const char *what) {
    col_error(col, bytes_eq((const u8 *)col, cstrlen(col), "symbols") ? "item " : "row ");
    e_u64(row);
    e_str(": ");
    e_str(what);
    return -1;
}

static int length_error(const char *col, u64 got, u64 n) {
    col_error(col, "has ");
    e_u64(got);
    e_str(" rows, 'price' has ");
    e_u64(n);
    return -1;
}

/* "symbols": packed on the heap as [u32 len][bytes, padded to 8] records,
   then an index of record offsets. */
static int parse_symbols(u64 **index_out, u32 *count_out) {
    if (peekc() != '[') return col_error("symbols", "must be a list of strings");
    adv();
    u64 region = g_heap_top;
    u32 n = 0;
    int r;
    while ((r = arr_next(&n)) == 1) {
        if (peekc() != '"') {
            row_error("symbols", n - 1, "is not a string, got ");
            e_str(type_name(peekc()));
            return -1;
        }
        u64 rec = g_heap_top;
        if (heap_ensure(rec + 8)) return -1;
        g_heap_top = rec + 8; /* length slot, kept 8-aligned */
        if (parse_string()) return -1;
        *(u32 *)hptr(rec) = g_strlen;
        g_heap_top = align8(g_heap_top + g_strlen);
    }
    if (r < 0) return -1;
    u64 idx = g_heap_top;
    if (heap_ensure(idx + (u64)n * 8)) return -1;
    u64 *index = (u64 *)hptr(idx);
    u64 p = region;
    for (u32 i = 0; i < n; i++) {
        index[i] = p;
        p = align8(p + 8 + *(u32 *)hptr(p));
    }
    g_heap_top = idx + (u64)n * 8;
    *index_out = index;
    *count_out = n;
    return 0;
}

static int parse_sym_column(u32 **out, u32 *count) {
    if (peekc() != '[') return col_error("sym", "must be a list of integers");
    adv();
    u64 base = g_heap_top;
    u32 n = 0;
    int r;
    Num num;
    while ((r = arr_next(&n)) == 1) {
        int c = peekc();
        if (!starts_number(c)) {
            row_error("sym", n - 1, "is not an integer, got ");
            e_str(type_name(c));
            return -1;
        }
        if (parse_number(&num)) return -1;
        if (!num.iv_ok || num.iv < 0 || num.iv > 0xFFFFFFFFll) {
            row_error("sym", n - 1, "");
            e_str(g_nraw);
            e_str(" is not a valid symbol index");
            return -1;
        }
        u64 at = base + (u64)(n - 1) * 4;
        if (at + 4 > g_mem_end && heap_ensure(at + 4)) return -1;
        *(u32 *)hptr(at) = (u32)num.iv;
    }
    if (r < 0) return -1;
    *out = (u32 *)hptr(base);
    *count = n;
    g_heap_top = align8(base + (u64)n * 4);
    return 0;
}

static int parse_price_column(double **out, u32 *count) {
    if (peekc() != '[') return col_error("price", "must be a list of numbers");
    adv();
    u64 base = g_heap_top;
    u32 n = 0;
    int r;
    Num num;
    while ((r = arr_next(&n)) == 1) {
        int c = peekc();
        if (!starts_number(c)) {
            row_error("price", n - 1, "is not a number, got ");
            e_str(type_name(c));
            return -1;
        }
        if (parse_number(&num)) return -1;
        if (num.v - num.v != 0.0) {
            row_error("price", n - 1, "");
            e_str(g_nraw);
            e_str(" is not finite");
            return -1;
        }
        u64 at = base + (u64)(n - 1) * 8;
        if (at + 8 > g_mem_end && heap_ensure(at + 8)) return -1;
        *(double *)hptr(at) = num.v;
    }
    if (r < 0) return -1;
    *out = (double *)hptr(base);
    *count = n;
    g_heap_top = base + (u64)n * 8;
    return 0;
}

/* "ts": a list of integers (only counted) or {"start": int, "step": int}. */
static int parse_ts_column(int *is_list, u32 *count) {
    int c = peekc();
    Num num;
    u32 n = 0;
    int r;
    if (c == '[') {
        adv();
        while ((r = arr_next(&n)) == 1) {
            c = peekc();
            if (!starts_number(c)) {
                row_error("ts", n - 1, "is not an integer, got ");
                e_str(type_name(c));
                return -1;
            }
            if (parse_number(&num)) return -1;
            if (!num.iv_ok) {
                row_error("ts", n - 1, "");
                e_str(g_nraw);
                e_str(" is not an integer");
                return -1;
            }
        }
        if (r < 0) return -1;
        *is_list = 1;
        *count = n;
        return 0;
    }
    if (c == '{') {
        adv();
        int have_start = 0, have_step = 0;
        while ((r = obj_next(&n)) == 1) {
            int is_start = key_is("start"), is_step = key_is("step");
            if (is_start || is_step) {
                c = peekc();
                if (!starts_number(c)) return col_error("ts", "as an object needs integer 'start' and 'step'");
                if (parse_number(&num)) return -1;
                if (!num.iv_ok) return col_error("ts", "as an object needs integer 'start' and 'step'");
                if (is_start) have_start = 1;
                else have_step = 1;
            } else if (skip_value(0)) {
                return -1;
            }
        }
        if (r < 0) return -1;
        if (!have_start || !have_step) return col_error("ts", "as an object needs integer 'start' and 'step'");
        *is_list = 0;
        *count = 0;
        return 0;
    }
    return col_error("ts", "must be a list of integers or {\"start\": int, \"step\": int}");
}

static const char *const OPTIONAL_COLS[6] = {"kind", "size", "bid", "ask", "bid_size", "ask_size"};

static void emit_batch(void) {
    u32 n = g_nsigs;
    const BatchSignal *s = g_sigs;
    w_str("{\"row\":[");
    for (u32 i = 0; i < n; i++) {
        if (i) w_bytes(",", 1);
        w_i64(s[i].row);
    }
    w_str("],\"sym\":[");
    for (u32 i = 0; i < n; i++) {
        if (i) w_bytes(",", 1);
        w_i64(s[i].sym_up >> 1);
    }
    w_str("],\"sizing\":[");
    for (u32 i = 0; i < n; i++) w_bytes(&",0"[i == 0], i == 0 ? 1 : 2);
    w_str("],\"amount\":[");
    for (u32 i = 0; i < n; i++) {
        int up = (int)(s[i].sym_up & 1);
        const char *a = up ? ",1" : ",-1";
        u32 len = up ? 2 : 3;
        if (i == 0)
            w_bytes(a + 1, len - 1);
        else
            w_bytes(a, len);
    }
    w_str("],\"limit\":[");
    for (u32 i = 0; i < n; i++) w_bytes(&",null"[i == 0], i == 0 ? 4 : 5);
    w_str("],\"group\":[");
    for (u32 i = 0; i < n; i++) w_bytes(&",\"\""[i == 0], i == 0 ? 2 : 3);
    w_str("]}");
}

static int do_on_batch(void) {
    if (ws() != '{') {
        e_reset();
        e_str("on_batch: input must be a JSON object of columns");
        return -1;
    }
    adv();
    u64 *names = 0;
    u32 nnames = 0, *sym = 0, nsymcol = 0, nprice = 0, nts = 0;
    double *price = 0;
    int have_names = 0, have_sym = 0, have_price = 0, have_ts = 0, ts_list = 0;
    int opt_present[6] = {0, 0, 0, 0, 0, 0};
    u32 opt_len[6] = {0, 0, 0, 0, 0, 0};
    u32 n = 0;
    int r;
    while ((r = obj_next(&n)) == 1) {
        if (key_is("symbols")) {
            if (parse_symbols(&names, &nnames)) return -1;
            have_names = 1;
        } else if (key_is("sym")) {
            if (parse_sym_column(&sym, &nsymcol)) return -1;
            have_sym = 1;
        } else if (key_is("price")) {
            if (parse_price_column(&price, &nprice)) return -1;
            have_price = 1;
        } else if (key_is("ts")) {
            if (parse_ts_column(&ts_list, &nts)) return -1;
            have_ts = 1;
        } else {
            int k = -1;
            for (int i = 0; i < 6; i++)
                if (key_is(OPTIONAL_COLS[i])) k = i;
            if (k < 0) {
                if (skip_value(0)) return -1; /* unknown columns are ignored */
                continue;
            }
            int c = peekc();
            if (c == 'n') { /* null: same as absent */
                if (lit("null")) return -1;
                opt_present[k] = 0;
                continue;
            }
            if (c != '[') {
                col_error(OPTIONAL_COLS[k], "must be a list, got ");
                e_str(type_name(c));
                return -1;
            }
            adv();
            u32 m = 0;
            while ((r = arr_next(&m)) == 1)
                if (skip_value(1)) return -1;
            if (r < 0) return -1;
            opt_present[k] = 1;
            opt_len[k] = m;
        }
    }
    if (r < 0) return -1;
    if (expect_end()) return -1;

    /* validate everything before touching any state */
    if (!have_names) return col_error("symbols", "is missing or not a list");
    if (!have_price) return col_error("price", "is missing or not a list");
    if (!have_ts) return col_error("ts", "is missing, or neither a list nor {\"start\", \"step\"}");
    u32 rows = nprice;
    if (!have_sym && nnames != 1)
        return col_error("sym", "is missing (it may be left out only when there is exactly one symbol)");
    if (have_sym && nsymcol != rows) return length_error("sym", nsymcol, rows);
    if (ts_list && nts != rows) return length_error("ts", nts, rows);
    for (int k = 0; k < 6; k++)
        if (opt_present[k] && opt_len[k] != rows) return length_error(OPTIONAL_COLS[k], opt_len[k], rows);

    /* which dictionary entries are used */
    u64 used_at = g_heap_top;
    if (heap_ensure(used_at + (u64)nnames * 5 + 16)) return -1;
    u8 *used = hptr(used_at);
    i32 *slot_of = (i32 *)hptr(align8(used_at + nnames));
    g_heap_top = align8(used_at + nnames) + (u64)nnames * 4;
    memset(used, 0, nnames);
    if (have_sym) {
        for (u32 i = 0; i < rows; i++) {
            u32 s = sym[i];
            if (s >= nnames) {
                row_error("sym", i, "index ");
                e_u64(s);
                e_str(" is out of range for ");
                e_u64(nnames);
                e_str(" symbols");
                return -1;
            }
            used[s] = 1;
        }
    } else if (rows) {
        used[0] = 1;
    }

    /* room for a signal on every row, reserved before any state changes */
    u64 sig_at = align8(g_heap_top);
    if (heap_ensure(sig_at + (u64)rows * sizeof(BatchSignal) + 8)) return -1;

    /* map used names to slots; new names are staged past g_nsym, then committed */
    u32 staged = 0;
    for (u32 i = 0; i < nnames; i++) {
        slot_of[i] = -1;
        if (!used[i]) continue;
        u32 len = *(u32 *)hptr(names[i]);
        const u8 *nm = hptr(names[i] + 8);
        if (name_check(nm, len)) return -1;
        i32 s = find_symbol(nm, len, g_nsym + staged);
        if (s < 0) {
            if (g_nsym + staged >= MAX_SYMBOLS) return too_many_symbols();
            stage_symbol(g_nsym + staged, nm, len);
            s = (i32)(g_nsym + staged);
            staged++;
        }
        slot_of[i] = s;
    }
    g_nsym += staged;

    /* run the rows in order */
    g_sigs = (BatchSignal *)hptr(sig_at);
    g_nsigs = 0;
    for (u32 i = 0; i < rows; i++) {
        u32 s = have_sym ? sym[i] : 0;
        i32 side = step((u32)slot_of[s], price[i]);
        if (side) {
            g_sigs[g_nsigs].row = i;
            g_sigs[g_nsigs].sym_up = s << 1 | (side > 0);
            g_nsigs++;
        }
    }
    g_heap_top = sig_at + (u64)g_nsigs * sizeof(BatchSignal);
    return 0;
}

EXPORT("on_batch") i32 on_batch(void) {
    g_ctx = "on_batch";
    heap_reset();
    input_begin();
    if (do_on_batch()) return fail_call();
    if (output_with(emit_batch)) return fail_call();
    return 0;
}
