/*
 * fp_http — HTTP/1.1 response parser, in-place chunked decoder, request writer.
 * The rules are in fp_http.h; this file only adds the reasons behind the way they are coded.
 *
 * Two properties drive the structure:
 *  - Split independence. A line is only ever judged once it is complete (or provably too
 *    long), and the resume state is saved only after a complete line passed every check, so a
 *    call with more bytes continues exactly where the last one stopped and the result does not
 *    depend on where the reads happened to split the stream.
 *  - No over-read. Every load is bounded by the caller's length; the SSE4.2 paths load 16
 *    bytes only when 16 bytes of the caller's buffer are left, and fall back to the scalar
 *    loop for the last few bytes, so a buffer that ends on an unmapped page is safe.
 */
#include "fp_http.h"

#include <string.h>

#ifdef __SSE4_2__
#include <nmmintrin.h>
#endif

#define FP_INT64_MAX ((uint64_t)INT64_MAX)

#if defined(__GNUC__)
#define FP_LIKELY(x) __builtin_expect(!!(x), 1)
#define FP_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define FP_LIKELY(x) (x)
#define FP_UNLIKELY(x) (x)
#endif

/* ---- character classes ---------------------------------------------------------------------
 * One 256-entry table: a lookup per byte beats chains of comparisons and keeps the scalar
 * path branch-light. Bits:
 *   FP_C_TCHAR  tchar, RFC 9110 §5.6.2 (field names, methods)
 *   FP_C_VCHAR  allowed in a field value, reason phrase or chunk extension: HTAB, SP, VCHAR,
 *               obs-text (RFC 9110 §5.5, RFC 9112 §4 / §7.1.1); CR, LF, NUL, other controls
 *               and DEL are excluded because they are what request/response smuggling uses.
 *   FP_C_TARGET visible ASCII 0x21-0x7E, what fp_check_target allows (RFC 9112 §3.2).
 */
enum { FP_C_TCHAR = 1, FP_C_VCHAR = 2, FP_C_TARGET = 4 };

#define T_ (FP_C_TCHAR | FP_C_VCHAR | FP_C_TARGET) /* token byte */
#define V_ (FP_C_VCHAR | FP_C_TARGET)              /* visible, not token */
#define W_ (FP_C_VCHAR)                            /* HTAB, SP, obs-text */
static const unsigned char fp_cls[256] = {
    /* 0x00 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, W_, 0, 0, 0, 0, 0, 0,
    /* 0x10 */ 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    /* 0x20  SP ! " # $ % & ' ( ) * + , - . / */
    W_, T_, V_, T_, T_, T_, T_, T_, V_, V_, T_, T_, V_, T_, T_, V_,
    /* 0x30  0-9 : ; < = > ? */
    T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, V_, V_, V_, V_, V_, V_,
    /* 0x40  @ A-O */
    V_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_,
    /* 0x50  P-Z [ \ ] ^ _ */
    T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, V_, V_, V_, T_, T_,
    /* 0x60  ` a-o */
    T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_,
    /* 0x70  p-z { | } ~ DEL */
    T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, T_, V_, T_, V_, T_, 0,
    /* 0x80-0xFF: obs-text */
    W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_,
    W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_,
    W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_,
    W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_,
    W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_,
    W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_,
    W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_,
    W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_, W_,
};
#undef T_
#undef V_
#undef W_

/* HEXDIG value + 1, 0 for non-hex (RFC 9112 §7.1 chunk-size; RFC 5234 HEXDIG is
 * case-insensitive because ABNF literals are). */
static const unsigned char fp_hex1[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15,
    ['F'] = 16, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

#define FP_IS_OWS(c) ((c) == ' ' || (c) == '\t')

/* First byte of [p, e) that is not allowed in a field value, or e. safe_end (>= e) is the end
 * of the caller's buffer: the SIMD path may load up to there, never past it. */
static const unsigned char *fp_find_bad_vchar(const unsigned char *p, const unsigned char *e,
                                              const unsigned char *safe_end)
{
#ifdef __SSE4_2__
    /* The allowed set is three ranges (HTAB, 0x20-0x7E, 0x80-0xFF): stop at the first byte
     * outside them. Masked negative polarity leaves bytes past the given length as "no
     * match", so a short final block needs no masking. (This form, imm8 0x34, is also the one
     * valgrind can decode, which keeps callgrind usable on the SSE4.2 build.) */
    static const unsigned char ok[16] = {0x09, 0x09, 0x20, 0x7E, 0x80, 0xFF};
    const __m128i rng = _mm_loadu_si128((const __m128i *)(const void *)ok);
    while (p < e && safe_end - p >= 16) {
        ptrdiff_t n = e - p;
        int l = n > 16 ? 16 : (int)n;
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        int i = _mm_cmpestri(rng, 6, v, l,
                             _SIDD_UBYTE_OPS | _SIDD_CMP_RANGES |
                                 _SIDD_MASKED_NEGATIVE_POLARITY | _SIDD_LEAST_SIGNIFICANT);
        if (i < l)
            return p + i;
        p += l;
    }
#else
    (void)safe_end;
#endif
    /* Unrolled by 4: the common value is a few dozen bytes and the loop-carried branch is
     * the cost. */
    while (e - p >= 4) {
        if (FP_UNLIKELY(!(fp_cls[p[0]] & FP_C_VCHAR)))
            return p;
        if (FP_UNLIKELY(!(fp_cls[p[1]] & FP_C_VCHAR)))
            return p + 1;
        if (FP_UNLIKELY(!(fp_cls[p[2]] & FP_C_VCHAR)))
            return p + 2;
        if (FP_UNLIKELY(!(fp_cls[p[3]] & FP_C_VCHAR)))
            return p + 3;
        p += 4;
    }
    while (p < e && (fp_cls[*p] & FP_C_VCHAR))
        p++;
    return p;
}

/* First byte of [p, e) that is not a tchar, or e. */
static const unsigned char *fp_find_non_tchar(const unsigned char *p, const unsigned char *e,
                                              const unsigned char *safe_end)
{
#ifdef __SSE4_2__
    /* tchar needs nine ranges and the instruction takes eight, so '~' is left out: a stop on a
     * byte the table says is a tchar just resumes after it. The ranges are a subset of tchar,
     * which is what makes the stop test sound. */
    static const unsigned char tok[16] = {'!', '!', '#', '\'', '*', '+', '-', '.',
                                          '0', '9', 'A', 'Z', '^', 'z', '|', '|'};
    const __m128i rng = _mm_loadu_si128((const __m128i *)(const void *)tok);
    while (p < e && safe_end - p >= 16) {
        ptrdiff_t n = e - p;
        int l = n > 16 ? 16 : (int)n;
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        int i = _mm_cmpestri(rng, 16, v, l,
                             _SIDD_UBYTE_OPS | _SIDD_CMP_RANGES |
                                 _SIDD_MASKED_NEGATIVE_POLARITY | _SIDD_LEAST_SIGNIFICANT);
        if (i < l) {
            if (!(fp_cls[p[i]] & FP_C_TCHAR))
                return p + i;
            p += i + 1;
            continue;
        }
        p += l;
    }
#else
    (void)safe_end;
#endif
    while (p < e && (fp_cls[*p] & FP_C_TCHAR))
        p++;
    return p;
}

static uint64_t fp_load64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8); /* one unaligned load; memcpy keeps it defined behaviour */
    return v;
}

/* Case-insensitive equality with a lowercase literal of the same length. Only called on bytes
 * already known to be tchar or field-value bytes: there, b | 0x20 equals a lowercase letter
 * only for that letter in either case, and equals '-' only for '-' (0x0D, the other
 * preimage, is excluded by both classes), so the OR trick is exact. */
static int fp_lower_eq(const unsigned char *p, const char *lit, size_t n)
{
    /* The literals are lowercase letters and '-', which all have bit 0x20 set, so OR-ing the
     * mask into the input and comparing whole words is the same test as the byte loop; the
     * last word overlaps the previous one instead of reading past p + n. */
    if (n >= 8) {
        const uint64_t m = 0x2020202020202020ull;
        size_t i = 0;
        for (; i + 8 <= n; i += 8)
            if ((fp_load64(p + i) | m) != fp_load64(lit + i))
                return 0;
        return i == n || (fp_load64(p + n - 8) | m) == fp_load64(lit + n - 8);
    }
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)(p[i] | 0x20) != (unsigned char)lit[i])
            return 0;
    return 1;
}

/* 1*DIGIT to a value <= 2^63-1 (RFC 9110 §8.6 Content-Length), or -1. Leading zeros count
 * as digits, not as magnitude, so they never overflow. */
static int64_t fp_parse_dec(const unsigned char *p, size_t n)
{
    if (n == 0)
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned d = (unsigned)p[i] - '0';
        if (d > 9)
            return -1;
        if (v > (FP_INT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    return (int64_t)v;
}

/* ---- limits ---------------------------------------------------------------------------------- */

void fp_limits_default(fp_limits *lim)
{
    lim->max_headers = 100;
    lim->max_line = 8192;
    lim->max_head = 65536;
    lim->max_interim = 8;
    lim->max_body = (uint64_t)256 * 1024 * 1024;
}

/* ---- lines ------------------------------------------------------------------------------------
 * Finds the LF ending the line that starts at buf[start], resuming the search *scan bytes in.
 * The search never looks further than max_line + 2 bytes from the start: a line whose LF is
 * further away has more than max_line bytes of content whatever comes next, so it fails check 1
 * either way, and bounding the search keeps a huge buffer from being scanned for nothing.
 * Returns the LF's index, or -1 with *scan updated and *err set to FP_NEED_MORE or
 * FP_E_LINE_TOO_LONG. */
static int64_t fp_find_lf(const char *buf, uint64_t len, uint64_t start, uint64_t *scan,
                          uint32_t max_line, int *err)
{
    uint64_t stop = start + (uint64_t)max_line + 2;
    if (stop > len)
        stop = len;
    uint64_t from = start + *scan;
    if (from < stop) {
        const char *lf = memchr(buf + from, '\n', (size_t)(stop - from));
        if (lf)
            return lf - buf;
    }
    *scan = stop - start;
    /* Incomplete-line rule: more than max_line + 1 bytes without an LF (the +1 leaves room for
     * the CR of a coming CR LF). */
    *err = (len - start > (uint64_t)max_line + 1) ? FP_E_LINE_TOO_LONG : FP_NEED_MORE;
    return -1;
}

/* Checks a field line's syntax (fp_http.h, "Field lines"): content is c[0..n), safe_end
 * bounds SIMD loads. On success fills *name_len, *v_off, *v_len (offsets within the content). */
static int fp_field_syntax(const unsigned char *c, size_t n, const unsigned char *safe_end,
                           size_t *name_len, size_t *v_off, size_t *v_len)
{
    /* RFC 9112 §5.2: obs-fold is not accepted; a line starting with whitespace is one. */
    if (FP_IS_OWS(c[0]))
        return FP_E_OBS_FOLD;
    const unsigned char *e = c + n;
    const unsigned char *q = fp_find_non_tchar(c, e, safe_end);
    if (q == e)
        return FP_E_HEADER_NO_COLON;
    if (*q != ':') {
        /* RFC 9112 §5.1: whitespace between name and colon must be rejected, it is how
         * smuggling attacks hide a header from one parser and show it to another. */
        return FP_IS_OWS(*q) ? FP_E_HEADER_WS : FP_E_HEADER_NAME;
    }
    if (q == c)
        return FP_E_HEADER_NAME;
    const unsigned char *v = q + 1;
    if (fp_find_bad_vchar(v, e, safe_end) != e)
        return FP_E_HEADER_VALUE;
    /* RFC 9110 §5.5: leading and trailing whitespace is not part of the value. */
    while (v < e && FP_IS_OWS(*v))
        v++;
    const unsigned char *ve = e;
    while (ve > v && FP_IS_OWS(ve[-1]))
        ve--;
    *name_len = (size_t)(q - c);
    *v_off = (size_t)(v - c);
    *v_len = (size_t)(ve - v);
    return 0;
}

/* ---- one head -------------------------------------------------------------------------------- */

void fp_head_init(fp_head *h)
{
    memset(h, 0, sizeof *h);
    h->content_length = -1;
}

/* Status line, RFC 9112 §4. The version is case-sensitive (§2.3) and only 1.0 / 1.1 are
 * spoken here; anything else cannot be framed by these rules. */
static int fp_status_line(fp_head *h, const unsigned char *c, size_t n,
                          const unsigned char *safe_end, uint32_t off)
{
    if (n < 9 || memcmp(c, "HTTP/1.", 7) != 0 || (c[7] != '0' && c[7] != '1') || c[8] != ' ')
        return FP_E_VERSION;
    if (n < 12)
        return FP_E_STATUS;
    unsigned d0 = (unsigned)c[9] - '0', d1 = (unsigned)c[10] - '0', d2 = (unsigned)c[11] - '0';
    if (d0 > 9 || d1 > 9 || d2 > 9 || d0 == 0)
        return FP_E_STATUS;
    if (n > 12 && c[12] != ' ')
        return FP_E_STATUS;
    size_t r = n > 13 ? 13 : n;
    if (fp_find_bad_vchar(c + r, c + n, safe_end) != c + n)
        return FP_E_REASON;
    h->minor_version = c[7] - '0';
    h->status = (int)(d0 * 100 + d1 * 10 + d2);
    h->reason_off = off + (uint32_t)r;
    h->reason_len = (uint32_t)(n - r);
    return 0;
}

/* Semantic rules of one head field (fp_http.h); name and value are already valid. */
static int fp_field_semantics(fp_head *h, const unsigned char *name, size_t nl,
                              const unsigned char *val, size_t vl)
{
    switch (nl) {
    case 14:
        if (!fp_lower_eq(name, "content-length", 14))
            return 0;
        {
            /* RFC 9112 §6.3 rule 5: a list or a bad value makes the framing unknowable; a
             * second line, even an equal one, is refused too (stricter than the RFC's "MAY
             * accept identical values") because being lenient here is what desync exploits
             * feed on. */
            int64_t v = fp_parse_dec(val, vl);
            if (v < 0)
                return FP_E_CL_INVALID;
            if (h->content_length >= 0)
                return FP_E_CL_MULTIPLE;
            h->content_length = v;
        }
        return 0;
    case 17:
        if (!fp_lower_eq(name, "transfer-encoding", 17))
            return 0;
        /* RFC 9112 §6.1: only "chunked" can be framed here, HTTP/1.0 has no Transfer-Encoding,
         * and a second line would build a coding list whose last member must be checked. */
        if (h->minor_version == 0 || h->chunked || vl != 7 || !fp_lower_eq(val, "chunked", 7))
            return FP_E_TE_UNSUPPORTED;
        h->chunked = 1;
        return 0;
    case 10:
        if (!fp_lower_eq(name, "connection", 10))
            return 0;
        {
            /* RFC 9110 §7.6.1: a list of tokens. Only close / keep-alive matter for
             * persistence (RFC 9112 §9.3); anything else is ignored rather than refused. */
            const unsigned char *p = val, *e = val + vl;
            while (p < e) {
                const unsigned char *comma = memchr(p, ',', (size_t)(e - p));
                const unsigned char *te = comma ? comma : e;
                const unsigned char *ts = p;
                while (ts < te && FP_IS_OWS(*ts))
                    ts++;
                const unsigned char *tend = te;
                while (tend > ts && FP_IS_OWS(tend[-1]))
                    tend--;
                size_t tl = (size_t)(tend - ts);
                if (tl == 5 && fp_lower_eq(ts, "close", 5))
                    h->conn_close = 1;
                else if (tl == 10 && fp_lower_eq(ts, "keep-alive", 10))
                    h->conn_keep_alive = 1;
                p = comma ? comma + 1 : e;
            }
        }
        return 0;
    default:
        return 0;
    }
}

int64_t fp_head_parse(fp_head *h, const char *buf, size_t len, const fp_limits *lim,
                      fp_span *spans)
{
    const unsigned char *ub = (const unsigned char *)buf;
    const unsigned char *safe_end = ub + len;
    uint64_t pos = h->pos;
    for (;;) {
        uint64_t scan = h->scan;
        int err = FP_NEED_MORE;
        int64_t lf = fp_find_lf(buf, len, pos, &scan, lim->max_line, &err);
        if (lf < 0) {
            /* A partial line is never judged (except for length), so only the search
             * progress is kept; capping it keeps it in 32 bits and at worst rescans. */
            h->scan = scan > UINT32_MAX ? UINT32_MAX : (uint32_t)scan;
            return err;
        }
        uint64_t end = (uint64_t)lf;
        if (end > pos && ub[end - 1] == '\r')
            end--;
        uint64_t n = end - pos;
        /* Checks 1 and 2 come before any syntax check so that the first error does not
         * depend on how much of a long line was already received. */
        if (n > lim->max_line)
            return FP_E_LINE_TOO_LONG;
        if ((uint64_t)lf + 1 > lim->max_head)
            return FP_E_HEAD_TOO_LARGE;
        const unsigned char *c = ub + pos;
        if (!h->in_fields) {
            if (n == 0)
                return FP_E_VERSION;
            int rc = fp_status_line(h, c, (size_t)n, safe_end, (uint32_t)pos);
            if (rc)
                return rc;
            h->in_fields = 1;
        } else if (n == 0) {
            /* RFC 9112 §6.3 rule 3: both framings present is a smuggling signature, and a
             * response carrying both is refused rather than guessed at. */
            if (h->content_length >= 0 && h->chunked)
                return FP_E_CL_AND_TE;
            h->pos = (uint32_t)(lf + 1);
            h->scan = 0;
            return lf + 1;
        } else {
            size_t nl, vo, vl;
            int rc = fp_field_syntax(c, (size_t)n, safe_end, &nl, &vo, &vl);
            if (rc)
                return rc;
            if (h->num_headers >= lim->max_headers)
                return FP_E_TOO_MANY_HEADERS;
            rc = fp_field_semantics(h, c, nl, c + vo, vl);
            if (rc)
                return rc;
            fp_span *s = &spans[h->num_headers++];
            s->name_off = (uint32_t)pos;
            s->name_len = (uint32_t)nl;
            s->value_off = (uint32_t)(pos + vo);
            s->value_len = (uint32_t)vl;
        }
        /* Everything before lf + 1 is final: a later call starts here. The head is at most
         * max_head <= 2^32-1 bytes, so the offset fits. */
        pos = (uint64_t)lf + 1;
        h->pos = (uint32_t)pos;
        h->scan = 0;
    }
}

/* ---- chunked body ---------------------------------------------------------------------------- */

enum { FP_CH_SIZE = 0, FP_CH_DATA, FP_CH_CR, FP_CH_LF, FP_CH_TRAILER, FP_CH_DONE };

void fp_chunked_init(fp_chunked *d)
{
    memset(d, 0, sizeof *d);
    d->state = FP_CH_SIZE;
}

/* chunk-size [ chunk-ext ] (RFC 9112 §7.1, §7.1.1). Returns the size or an FP_E_* code. */
static int64_t fp_chunk_size_line(const unsigned char *c, size_t n,
                                  const unsigned char *safe_end)
{
    size_t i = 0;
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned h = fp_hex1[c[i]];
        if (!h)
            break;
        /* Sixteen digits are the most a 64-bit size can need; more (even zeros) is refused so
         * the size cannot be hidden behind padding that another parser would overflow on. */
        if (i == 16)
            return FP_E_CHUNK_SIZE;
        v = (v << 4) | (h - 1);
    }
    if (i == 0 || v > FP_INT64_MAX)
        return FP_E_CHUNK_SIZE;
    while (i < n && FP_IS_OWS(c[i]))
        i++;
    if (i < n) {
        if (c[i] != ';')
            return FP_E_CHUNK_SIZE;
        /* Extensions are ignored (§7.1.1) but must not carry controls: a CR here is the classic
         * chunk-extension smuggling vector. */
        if (fp_find_bad_vchar(c + i + 1, c + n, safe_end) != c + n)
            return FP_E_CHUNK_EXT;
    }
    return (int64_t)v;
}

int64_t fp_chunked_decode(fp_chunked *d, char *buf, size_t *len, const fp_limits *lim)
{
    if (d->state < 0)
        return d->state;
    unsigned char *ub = (unsigned char *)buf;
    const uint64_t n = *len;
    const unsigned char *safe_end = ub + n;
    /* w: end of decoded data; r: next input byte. Data is moved down from r to w as it is
     * decoded, so each data byte is moved once in its life; whatever is left undecoded at the
     * end of the call (a partial line, by construction made of bytes that arrived in this
     * call) is moved down once. Both keep the work linear in the bytes received. */
    uint64_t w = d->decoded, r = d->pos;
    int64_t rc = FP_NEED_MORE;

    while (rc == FP_NEED_MORE) {
        switch (d->state) {
        case FP_CH_SIZE:
        case FP_CH_TRAILER: {
            int err = FP_NEED_MORE;
            int64_t lf = fp_find_lf(buf, n, r, &d->scan, lim->max_line, &err);
            if (lf < 0) {
                if (err != FP_NEED_MORE)
                    rc = err;
                goto out;
            }
            uint64_t end = (uint64_t)lf;
            if (end > r && ub[end - 1] == '\r')
                end--;
            uint64_t cn = end - r;
            if (cn > lim->max_line) {
                rc = FP_E_LINE_TOO_LONG;
                goto out;
            }
            const unsigned char *c = ub + r;
            if (d->state == FP_CH_SIZE) {
                int64_t size = fp_chunk_size_line(c, (size_t)cn, safe_end);
                if (size < 0) {
                    rc = size;
                    goto out;
                }
                if ((uint64_t)size > lim->max_body || w > lim->max_body - (uint64_t)size) {
                    rc = FP_E_BODY_TOO_LARGE;
                    goto out;
                }
                r = (uint64_t)lf + 1;
                d->scan = 0;
                if (size == 0) {
                    d->state = FP_CH_TRAILER;
                    d->trailer_start = 0;
                    d->trailers = 0;
                } else {
                    d->left = (uint64_t)size;
                    d->state = FP_CH_DATA;
                }
                break;
            }
            /* Trailer section (RFC 9112 §7.1.2): syntax-checked like a head and bounded by
             * the same limits, then dropped: nothing here may change the framing, and a client
             * that merged trailers into headers would let the body's tail rewrite the head. */
            uint64_t total = d->trailer_start + ((uint64_t)lf + 1 - r);
            if (total > lim->max_head) {
                rc = FP_E_HEAD_TOO_LARGE;
                goto out;
            }
            if (cn == 0) {
                r = (uint64_t)lf + 1;
                d->scan = 0;
                d->state = FP_CH_DONE;
                rc = (int64_t)w;
                goto out;
            }
            size_t nl, vo, vl;
            int src = fp_field_syntax(c, (size_t)cn, safe_end, &nl, &vo, &vl);
            if (src) {
                rc = src;
                goto out;
            }
            if (d->trailers >= lim->max_headers) {
                rc = FP_E_TOO_MANY_HEADERS;
                goto out;
            }
            d->trailers++;
            d->trailer_start = total;
            r = (uint64_t)lf + 1;
            d->scan = 0;
            break;
        }
        case FP_CH_DATA: {
            uint64_t k = n - r;
            if (k > d->left)
                k = d->left;
            if (w != r)
                memmove(ub + w, ub + r, (size_t)k);
            w += k;
            r += k;
            d->left -= k;
            if (d->left)
                goto out;
            d->state = FP_CH_CR;
            break;
        }
        case FP_CH_CR:
        case FP_CH_LF:
            /* RFC 9112 §7.1: chunk data is followed by exactly CRLF. Judged byte by byte so a
             * wrong byte is reported as soon as it arrives, whatever the split. */
            if (r == n)
                goto out;
            if (ub[r] != (d->state == FP_CH_CR ? '\r' : '\n')) {
                rc = FP_E_CHUNK_CRLF;
                goto out;
            }
            r++;
            d->state = d->state == FP_CH_CR ? FP_CH_LF : FP_CH_SIZE;
            break;
        default: /* FP_CH_DONE */
            rc = (int64_t)w;
            goto out;
        }
    }
out:
    if (rc < FP_NEED_MORE) {
        /* Errors are sticky: the framing is lost, nothing after this point can be trusted. */
        d->state = (int)rc;
        return rc;
    }
    if (r != w) {
        memmove(ub + w, ub + r, (size_t)(n - r));
        *len = (size_t)(n - (r - w));
    }
    d->decoded = w;
    d->pos = w;
    return rc;
}

/* ---- a whole response ------------------------------------------------------------------------ */

enum { FP_R_HEAD = 0, FP_R_BODY_CL, FP_R_BODY_CHUNKED, FP_R_BODY_CLOSE, FP_R_DONE };

void fp_resp_init(fp_resp *r, const fp_limits *lim, int head_request)
{
    memset(r, 0, sizeof *r);
    r->lim = *lim;
    r->head_request = head_request != 0;
    fp_head_init(&r->head);
    fp_chunked_init(&r->chunked);
    r->state = FP_R_HEAD;
}

static int64_t fp_resp_fail(fp_resp *r, int64_t code)
{
    r->state = (int)code;
    return code;
}

static int64_t fp_resp_done(fp_resp *r, uint64_t body_len)
{
    r->body_len = body_len;
    r->state = FP_R_DONE;
    return (int64_t)(r->body_off + body_len);
}

int64_t fp_resp_parse(fp_resp *r, char *buf, size_t *len, fp_span *spans)
{
    const uint64_t n = *len;
    switch (r->state) {
    case FP_R_HEAD:
        for (;;) {
            int64_t hl = fp_head_parse(&r->head, buf + r->head_off, (size_t)(n - r->head_off),
                                       &r->lim, spans);
            if (hl == FP_NEED_MORE)
                return FP_NEED_MORE;
            if (hl < 0)
                return fp_resp_fail(r, hl);
            int status = r->head.status;
            /* RFC 9110 §15.2.2: 101 only answers an Upgrade request, which the pool never
             * sends; after it the bytes are not HTTP any more. */
            if (status == 101)
                return fp_resp_fail(r, FP_E_UNSOLICITED_101);
            if (status < 200) {
                /* RFC 9110 §15.2: interim responses precede the final one and have no
                 * body; a bound stops a server from stalling us with an endless stream. */
                if (r->interim >= r->lim.max_interim)
                    return fp_resp_fail(r, FP_E_TOO_MANY_INTERIM);
                r->interim++;
                r->head_off += (uint64_t)hl;
                fp_head_init(&r->head);
                continue;
            }
            r->head_len = (uint64_t)hl;
            r->body_off = r->head_off + (uint64_t)hl;
            /* RFC 9112 §9.3: 1.1 persists unless "close"; 1.0 only with "keep-alive". */
            r->keep_alive = r->head.minor_version == 1
                                ? !r->head.conn_close
                                : (r->head.conn_keep_alive && !r->head.conn_close);
            /* RFC 9112 §6.3, in its order: HEAD and 204/304 have no body whatever the
             * fields say (rule 1 and 2 of §6.3 for our purposes), then chunked, then
             * Content-Length, then read-until-close. */
            if (r->head_request || status == 204 || status == 304)
                return fp_resp_done(r, 0);
            if (r->head.chunked) {
                r->state = FP_R_BODY_CHUNKED;
                break;
            }
            if (r->head.content_length >= 0) {
                if ((uint64_t)r->head.content_length > r->lim.max_body)
                    return fp_resp_fail(r, FP_E_BODY_TOO_LARGE);
                r->state = FP_R_BODY_CL;
                break;
            }
            r->close_delimited = 1;
            r->keep_alive = 0;
            r->state = FP_R_BODY_CLOSE;
            break;
        }
        break;
    case FP_R_DONE:
        return (int64_t)(r->body_off + r->body_len);
    default:
        if (r->state < 0)
            return r->state;
        break;
    }

    switch (r->state) {
    case FP_R_BODY_CL: {
        uint64_t cl = (uint64_t)r->head.content_length;
        if (n - r->body_off >= cl)
            return fp_resp_done(r, cl);
        return FP_NEED_MORE;
    }
    case FP_R_BODY_CHUNKED: {
        size_t blen = (size_t)(n - r->body_off);
        int64_t rc = fp_chunked_decode(&r->chunked, buf + r->body_off, &blen, &r->lim);
        *len = (size_t)(r->body_off + blen);
        if (rc >= 0)
            return fp_resp_done(r, (uint64_t)rc);
        if (rc != FP_NEED_MORE)
            return fp_resp_fail(r, rc);
        return FP_NEED_MORE;
    }
    default: /* FP_R_BODY_CLOSE */
        if (n - r->body_off > r->lim.max_body)
            return fp_resp_fail(r, FP_E_BODY_TOO_LARGE);
        return FP_NEED_MORE;
    }
}

int64_t fp_resp_eof(fp_resp *r, const char *buf, size_t len)
{
    (void)buf;
    if (r->state < 0)
        return r->state;
    if (r->state == FP_R_DONE)
        return (int64_t)(r->body_off + r->body_len);
    if (r->state == FP_R_BODY_CLOSE && len >= r->body_off) {
        /* RFC 9112 §6.3 rule 8: without Content-Length or chunked, the close is the framing. */
        uint64_t bl = (uint64_t)len - r->body_off;
        if (bl > r->lim.max_body)
            return fp_resp_fail(r, FP_E_BODY_TOO_LARGE);
        return fp_resp_done(r, bl);
    }
    /* RFC 9112 §8: a message cut short by a close is incomplete, never "what we got". */
    return fp_resp_fail(r, len == 0 ? FP_E_NO_RESPONSE : FP_E_TRUNCATED);
}

/* ---- request writer -------------------------------------------------------------------------- */

int fp_check_method(const char *method, size_t len)
{
    const unsigned char *p = (const unsigned char *)method;
    if (len == 0)
        return FP_E_METHOD;
    for (size_t i = 0; i < len; i++)
        if (!(fp_cls[p[i]] & FP_C_TCHAR))
            return FP_E_METHOD;
    return 0;
}

int fp_check_target(const char *target, size_t len)
{
    const unsigned char *p = (const unsigned char *)target;
    if (len == 0)
        return FP_E_TARGET;
    /* RFC 9112 §3.2: origin-form or asterisk-form; the pool talks to one origin, so the
     * absolute and authority forms (proxies, CONNECT) are never right here. */
    if (len == 1 && p[0] == '*')
        return 0;
    if (p[0] != '/')
        return FP_E_TARGET;
    for (size_t i = 0; i < len; i++)
        if (!(fp_cls[p[i]] & FP_C_TARGET))
            return FP_E_TARGET;
    return 0;
}

/* Pool-owned field names (fp_http.h, fp_check_field). */
static int fp_is_forbidden(const unsigned char *name, size_t n)
{
    return (n == 4 && fp_lower_eq(name, "host", 4)) ||
           (n == 10 && fp_lower_eq(name, "connection", 10)) ||
           (n == 17 && fp_lower_eq(name, "transfer-encoding", 17));
}

static int fp_is_content_length(const unsigned char *name, size_t n)
{
    return n == 14 && fp_lower_eq(name, "content-length", 14);
}

int fp_check_field(const fp_field *f)
{
    const unsigned char *name = (const unsigned char *)f->name;
    const unsigned char *value = (const unsigned char *)f->value;
    if (fp_check_method(f->name, f->name_len) != 0) /* same rule: a non-empty token */
        return FP_E_FIELD_NAME;
    if (fp_is_forbidden(name, f->name_len))
        return FP_E_FIELD_FORBIDDEN;
    /* RFC 9110 §5.5: field-value is VCHAR / obs-text with SP / HTAB inside; CR and LF would
     * start a new line (header injection), NUL and other controls are refused by peers. */
    if (f->value_len) {
        const unsigned char *e = value + f->value_len;
        if (fp_find_bad_vchar(value, e, e) != e)
            return FP_E_FIELD_VALUE;
    }
    return 0;
}

/* Saturating size arithmetic: a sum that does not fit is "too big for any buffer". */
static size_t fp_add(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

static size_t fp_dec_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 10) {
        v /= 10;
        n++;
    }
    return n;
}

#define FP_REQ_LINE_FIXED 12 /* SP SP "HTTP/1.1" CRLF */
#define FP_CL_FIXED 18       /* "Content-Length: " CRLF */

size_t fp_request_size(size_t method_len, size_t target_len, size_t block_len,
                       const fp_field *fields, size_t nfields, int64_t content_length)
{
    size_t n = fp_add(fp_add(method_len, target_len), FP_REQ_LINE_FIXED);
    n = fp_add(n, block_len);
    for (size_t i = 0; i < nfields; i++)
        n = fp_add(n, fp_add(fp_add(fields[i].name_len, fields[i].value_len), 4));
    if (content_length >= 0) {
        n = fp_add(n, FP_CL_FIXED + fp_dec_len((uint64_t)content_length));
        n = fp_add(n, (uint64_t)content_length > SIZE_MAX ? SIZE_MAX : (size_t)content_length);
    }
    return fp_add(n, 2);
}

/* A caller Content-Length field's value: OWS-trimmed 1*DIGIT, or -1. */
static int64_t fp_field_cl_value(const fp_field *f)
{
    const unsigned char *v = (const unsigned char *)f->value;
    size_t a = 0, b = f->value_len;
    while (a < b && FP_IS_OWS(v[a]))
        a++;
    while (b > a && FP_IS_OWS(v[b - 1]))
        b--;
    return fp_parse_dec(v + a, b - a);
}

static char *fp_put(char *o, const void *src, size_t n)
{
    if (n)
        memcpy(o, src, n);
    return o + n;
}

static char *fp_put_field(char *o, const fp_field *f)
{
    o = fp_put(o, f->name, f->name_len);
    *o++ = ':';
    *o++ = ' ';
    o = fp_put(o, f->value, f->value_len);
    *o++ = '\r';
    *o++ = '\n';
    return o;
}

int64_t fp_write_request(char *out, size_t cap, const char *method, size_t method_len,
                         const char *target, size_t target_len, const char *block,
                         size_t block_len, const fp_field *fields, size_t nfields,
                         const char *body, int64_t content_length)
{
    /* Validation and sizing happen in one pass before any byte is written: a caller that
     * gets an error knows the buffer holds nothing of this request (NotSentError). */
    if (fp_check_method(method, method_len))
        return FP_E_METHOD;
    if (fp_check_target(target, target_len))
        return FP_E_TARGET;
    size_t need = fp_add(fp_add(method_len, target_len), FP_REQ_LINE_FIXED);
    need = fp_add(need, block_len);
    for (size_t i = 0; i < nfields; i++) {
        const fp_field *f = &fields[i];
        int rc = fp_check_field(f);
        if (rc)
            return rc;
        if (fp_is_content_length((const unsigned char *)f->name, f->name_len)) {
            /* The writer owns framing: an agreeing caller value is redundant and dropped, a
             * disagreeing one would frame the body wrongly (RFC 9112 §6.2), so it is refused. */
            if (content_length < 0 || fp_field_cl_value(f) != content_length)
                return FP_E_CL_MISMATCH;
            continue;
        }
        need = fp_add(need, fp_add(fp_add(f->name_len, f->value_len), 4));
    }
    char digits[24];
    size_t nd = 0;
    if (content_length >= 0) {
        if (content_length > 0 && body == NULL)
            return FP_E_CL_MISMATCH;
        uint64_t v = (uint64_t)content_length;
        char tmp[24];
        do {
            tmp[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        for (size_t i = 0; i < nd; i++)
            digits[i] = tmp[nd - 1 - i];
        need = fp_add(need, FP_CL_FIXED + nd);
        need = fp_add(need, (uint64_t)content_length > SIZE_MAX ? SIZE_MAX
                                                                 : (size_t)content_length);
    }
    need = fp_add(need, 2);
    if (need > cap || need > (size_t)INT64_MAX)
        return FP_E_BUFFER;

    char *o = out;
    o = fp_put(o, method, method_len);
    *o++ = ' ';
    o = fp_put(o, target, target_len);
    o = fp_put(o, " HTTP/1.1\r\n", 11);
    o = fp_put(o, block, block_len);
    for (size_t i = 0; i < nfields; i++)
        if (!fp_is_content_length((const unsigned char *)fields[i].name, fields[i].name_len))
            o = fp_put_field(o, &fields[i]);
    if (content_length >= 0) {
        o = fp_put(o, "Content-Length: ", 16);
        o = fp_put(o, digits, nd);
        *o++ = '\r';
        *o++ = '\n';
    }
    *o++ = '\r';
    *o++ = '\n';
    if (content_length > 0)
        o = fp_put(o, body, (size_t)content_length);
    return (int64_t)(o - out);
}

int64_t fp_write_fields(char *out, size_t cap, const fp_field *fields, size_t nfields)
{
    size_t need = 0;
    for (size_t i = 0; i < nfields; i++) {
        int rc = fp_check_field(&fields[i]);
        if (rc)
            return rc;
        /* The block is sent with every request, bodiless ones included, and the writer adds
         * its own Content-Length: one here would be wrong or duplicated on every request. */
        if (fp_is_content_length((const unsigned char *)fields[i].name, fields[i].name_len))
            return FP_E_FIELD_FORBIDDEN;
        need = fp_add(need, fp_add(fp_add(fields[i].name_len, fields[i].value_len), 4));
    }
    if (need > cap || need > (size_t)INT64_MAX)
        return FP_E_BUFFER;
    char *o = out;
    for (size_t i = 0; i < nfields; i++)
        o = fp_put_field(o, &fields[i]);
    return (int64_t)(o - out);
}
