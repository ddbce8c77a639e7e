/*
 * libFuzzer target for csrc/fp_http.c (build and run: fuzz/run.sh SECONDS).
 *
 * Input: 4 control bytes, then the data.
 *   c[0]  limits: bit 7 set = the defaults, else small limits drawn from the bits
 *   c[1]  bit 0 head_request, bit 1 end of input after the data, bit 2 byte by byte,
 *         bits 4-7 max_body (small limits only)
 *   c[2..3] seed of the split points
 *
 * The data is parsed whole, then fed in pieces (byte by byte or at seeded split points); every
 * piece is copied into a fresh allocation of exactly the bytes received so far, so ASan flags
 * any read past the caller's length. The two outcomes must be identical, byte for byte, or the
 * target aborts. The same data also drives the request writer, whose output is checked
 * against what was asked for.
 */
#include "fp_http.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FAIL(...)                                                                              \
    do {                                                                                       \
        fprintf(stderr, "fuzz_http: " __VA_ARGS__);                                            \
        fprintf(stderr, "\n");                                                                 \
        abort();                                                                               \
    } while (0)

#define MAX_SPANS 128

typedef struct outcome {
    int64_t rc;
    unsigned char *buf; /* the buffer after the last call (owned) */
    size_t len;
    fp_resp r;
    fp_span spans[MAX_SPANS];
} outcome;

static uint32_t next_rand(uint32_t *s)
{
    /* xorshift32: deterministic split points from the input's own bytes. */
    uint32_t x = *s ? *s : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

static unsigned char *grow(unsigned char *old, size_t old_len, const uint8_t *add, size_t n)
{
    /* An exact-size copy: the parser must never look past what it was given. */
    unsigned char *p = malloc(old_len + n ? old_len + n : 1);
    if (!p)
        abort();
    if (old_len)
        memcpy(p, old, old_len);
    if (n)
        memcpy(p + old_len, add, n);
    free(old);
    return p;
}

static void check_result(const outcome *o, const fp_limits *lim)
{
    const fp_resp *r = &o->r;
    if (o->rc == FP_NEED_MORE || o->rc >= 0) {
        if (o->rc >= 0 && (uint64_t)o->rc > o->len)
            FAIL("result %lld beyond buffer %zu", (long long)o->rc, o->len);
    } else if (o->rc < FP_E_NO_RESPONSE) {
        FAIL("unknown parse code %lld", (long long)o->rc);
    }
    if (o->rc < 0)
        return;
    const fp_head *h = &r->head;
    if (r->head_off + r->head_len != r->body_off || r->body_off + r->body_len != (uint64_t)o->rc)
        FAIL("inconsistent offsets");
    if (h->status < 200 || h->status > 999 || (h->minor_version != 0 && h->minor_version != 1))
        FAIL("bad status/version");
    if (r->head_len > lim->max_head || h->num_headers > lim->max_headers)
        FAIL("limits not enforced");
    if (r->body_len > lim->max_body)
        FAIL("body larger than max_body");
    if (h->reason_off + h->reason_len > r->head_len)
        FAIL("reason outside head");
    const unsigned char *head = o->buf + r->head_off;
    if (head[r->head_len - 1] != '\n')
        FAIL("head does not end with LF");
    for (uint32_t i = 0; i < h->num_headers; i++) {
        const fp_span *s = &o->spans[i];
        if ((uint64_t)s->name_off + s->name_len > r->head_len ||
            (uint64_t)s->value_off + s->value_len > r->head_len || s->name_len == 0)
            FAIL("span outside head");
        if (head[s->name_off + s->name_len] != ':')
            FAIL("name not followed by a colon");
        for (uint32_t k = 0; k < s->value_len; k++) {
            unsigned char c = head[s->value_off + k];
            if (c == '\r' || c == '\n' || c == 0 || c == 0x7f)
                FAIL("control byte inside a value span");
        }
    }
    if (!r->head_request && h->status != 204 && h->status != 304 && !h->chunked &&
        h->content_length >= 0 && r->body_len != (uint64_t)h->content_length)
        FAIL("Content-Length body of the wrong length");
    int ka = h->minor_version == 1 ? !h->conn_close : (h->conn_keep_alive && !h->conn_close);
    if (r->close_delimited)
        ka = 0;
    if (r->keep_alive != ka)
        FAIL("keep_alive rule");
}

static void parse(outcome *o, const uint8_t *data, size_t n, const fp_limits *lim, int head_req,
                  int eof, int mode, uint32_t seed)
{
    memset(o, 0, sizeof *o);
    fp_resp_init(&o->r, lim, head_req);
    size_t fed = 0;
    int64_t final = 0;
    int have_final = 0;
    o->rc = FP_NEED_MORE;
    do {
        size_t add = n - fed;
        if (mode == 1)
            add = add ? 1 : 0;
        else if (mode == 2 && add > 1)
            add = 1 + next_rand(&seed) % (add < 64 ? add : 64);
        o->buf = grow(o->buf, o->len, data + fed, add);
        o->len += add;
        fed += add;
        size_t before = o->len;
        o->rc = fp_resp_parse(&o->r, (char *)o->buf, &o->len, o->spans);
        if (o->len > before)
            FAIL("*len grew");
        if (have_final && o->rc != final)
            FAIL("result changed after it was final: %lld then %lld", (long long)final,
                 (long long)o->rc);
        if (!have_final && o->rc != FP_NEED_MORE) {
            final = o->rc;
            have_final = 1;
        }
        const fp_head *fh = &o->r.head;
        if (o->rc == FP_NEED_MORE && o->r.head_len && fh->chunked && !head_req &&
            fh->status != 204 && fh->status != 304) {
            /* In place: only a partial line may stay undecoded, which bounds the per-call
             * work (fp_http.h, chunked body). */
            uint64_t undecoded = o->len - o->r.body_off - o->r.chunked.decoded;
            if (undecoded > (uint64_t)lim->max_line + 1)
                FAIL("undecoded chunked input grew to %llu", (unsigned long long)undecoded);
        }
    } while (fed < n);
    if (o->rc == FP_NEED_MORE && eof) {
        o->rc = fp_resp_eof(&o->r, (const char *)o->buf, o->len);
        if (o->rc == FP_NEED_MORE)
            FAIL("eof asked for more");
        if (fp_resp_eof(&o->r, (const char *)o->buf, o->len) != o->rc)
            FAIL("eof result not stable");
    }
    check_result(o, lim);
}

static void compare(const outcome *a, const outcome *b)
{
    if (a->rc != b->rc)
        FAIL("whole gave %lld, split gave %lld", (long long)a->rc, (long long)b->rc);
    if (a->rc < 0)
        return;
    const fp_resp *x = &a->r, *y = &b->r;
    if (a->len != b->len || memcmp(a->buf, b->buf, a->len) != 0)
        FAIL("buffers differ");
    if (x->head_off != y->head_off || x->head_len != y->head_len || x->body_off != y->body_off ||
        x->body_len != y->body_len || x->keep_alive != y->keep_alive ||
        x->interim != y->interim)
        FAIL("response fields differ");
    const fp_head *g = &x->head, *h = &y->head;
    if (g->status != h->status || g->minor_version != h->minor_version ||
        g->reason_off != h->reason_off || g->reason_len != h->reason_len ||
        g->num_headers != h->num_headers || g->content_length != h->content_length ||
        g->chunked != h->chunked || g->conn_close != h->conn_close ||
        g->conn_keep_alive != h->conn_keep_alive)
        FAIL("head fields differ");
    if (memcmp(a->spans, b->spans, g->num_headers * sizeof(fp_span)) != 0)
        FAIL("spans differ");
}

/* ---- writer ---------------------------------------------------------------------------------- */

static int is_cl_name(const uint8_t *p, size_t n)
{
    static const char cl[] = "content-length";
    if (n != 14)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((p[i] | 0x20) != (uint8_t)cl[i])
            return 0;
    return 1;
}

static size_t count_lf(const char *p, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += p[i] == '\n';
    return c;
}

static void fuzz_writer(const uint8_t *data, size_t n, uint8_t flags)
{
    /* Pieces separated by 0xFF: method, target, then name/value pairs; a 0xFE byte
     * anywhere ends the fields and what follows is the body. */
    const uint8_t *piece[10];
    size_t plen[10];
    size_t np = 0, start = 0, body_at = n;
    for (size_t i = 0; i <= n && np < 10; i++) {
        if (i == n || data[i] == 0xFF || data[i] == 0xFE) {
            piece[np] = data + start;
            plen[np++] = i - start;
            start = i + 1;
            if (i < n && data[i] == 0xFE) {
                body_at = i + 1;
                break;
            }
        }
    }
    if (np < 2)
        return;
    fp_field fields[4];
    size_t nf = 0;
    int has_cl = 0;
    for (size_t i = 2; i + 1 < np && nf < 4; i += 2) {
        fields[nf] = (fp_field){(const char *)piece[i], plen[i], (const char *)piece[i + 1],
                                plen[i + 1]};
        has_cl |= is_cl_name(piece[i], plen[i]);
        nf++;
    }
    const char *body = body_at <= n ? (const char *)data + body_at : NULL;
    int64_t cl = (flags & 8) ? -1 : (int64_t)(n - body_at);
    if (body_at == n && (flags & 16))
        body = NULL; /* exercise the NULL body with content_length 0 */

    size_t size = fp_request_size(plen[0], plen[1], 0, fields, nf, cl);
    char *out = malloc(size ? size : 1);
    if (!out)
        abort();
    int64_t rc = fp_write_request(out, size, (const char *)piece[0], plen[0],
                                  (const char *)piece[1], plen[1], NULL, 0, fields, nf, body, cl);
    if (rc >= 0) {
        if ((size_t)rc > size || (!has_cl && (size_t)rc != size))
            FAIL("request size %zu vs written %lld", size, (long long)rc);
        if (fp_check_method((const char *)piece[0], plen[0]) ||
            fp_check_target((const char *)piece[1], plen[1]))
            FAIL("wrote an invalid method or target");
        if (memcmp(out, piece[0], plen[0]) || out[plen[0]] != ' ' ||
            memcmp(out + plen[0] + 1, piece[1], plen[1]) ||
            memcmp(out + plen[0] + 1 + plen[1], " HTTP/1.1\r\n", 11))
            FAIL("request line");
        size_t written_fields = 0;
        for (size_t i = 0; i < nf; i++) {
            if (fp_check_field(&fields[i]))
                FAIL("wrote an invalid field");
            written_fields += !is_cl_name((const uint8_t *)fields[i].name, fields[i].name_len);
        }
        /* No header injection: the head holds exactly one LF per line written. */
        size_t head_len = (size_t)rc - (cl > 0 ? (size_t)cl : 0);
        size_t lines = 1 + written_fields + (cl >= 0) + 1;
        if (count_lf(out, head_len) != lines || memcmp(out + head_len - 2, "\r\n", 2))
            FAIL("head has %zu LFs, expected %zu", count_lf(out, head_len), lines);
        if (cl > 0 && memcmp(out + head_len, body, (size_t)cl))
            FAIL("body");
        /* One byte less must fail and write nothing. */
        char *small = malloc((size_t)rc ? (size_t)rc : 1);
        if (!small)
            abort();
        memset(small, 0x5a, (size_t)rc ? (size_t)rc : 1);
        if (rc > 0) {
            int64_t rc2 = fp_write_request(small, (size_t)rc - 1, (const char *)piece[0],
                                           plen[0], (const char *)piece[1], plen[1], NULL, 0,
                                           fields, nf, body, cl);
            if (rc2 != FP_E_BUFFER)
                FAIL("cap - 1 gave %lld", (long long)rc2);
            for (int64_t i = 0; i < rc - 1; i++)
                if (small[i] != 0x5a)
                    FAIL("wrote on FP_E_BUFFER");
        }
        free(small);
    } else if (rc < FP_E_BUFFER || rc > FP_E_METHOD) {
        FAIL("unknown writer code %lld", (long long)rc);
    }
    free(out);

    /* The block writer on the same fields. */
    size_t need = 0;
    for (size_t i = 0; i < nf; i++)
        need += fields[i].name_len + fields[i].value_len + 4;
    char *blk = malloc(need ? need : 1);
    if (!blk)
        abort();
    int64_t brc = fp_write_fields(blk, need, fields, nf);
    if (brc >= 0) {
        if ((size_t)brc != need || count_lf(blk, need) != nf || has_cl)
            FAIL("fp_write_fields output");
    }
    free(blk);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    uint8_t c0 = data[0], c1 = data[1];
    uint32_t seed = (uint32_t)data[2] << 8 | data[3];
    data += 4;
    size -= 4;

    fp_limits lim;
    fp_limits_default(&lim);
    if (!(c0 & 0x80)) {
        lim.max_headers = 1 + (c0 & 7);
        lim.max_line = 16 + ((c0 >> 3) & 3) * 24;
        lim.max_head = 48 + ((c0 >> 5) & 3) * 100;
        lim.max_interim = c0 & 3;
        lim.max_body = (uint64_t)(c1 >> 4) * 40;
    }
    int head_req = c1 & 1, eof = (c1 >> 1) & 1, mode = (c1 & 4) ? 1 : 2;

    static outcome whole, split; /* large: keep them off the stack */
    parse(&whole, data, size, &lim, head_req, eof, 0, seed);
    parse(&split, data, size, &lim, head_req, eof, mode, seed);
    compare(&whole, &split);
    free(whole.buf);
    free(split.buf);

    fuzz_writer(data, size, c1);
    return 0;
}
