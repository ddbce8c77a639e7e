/*
 * Microbenchmark of csrc/fp_http.c: parse exchange-style responses, decode a chunked body,
 * build a request. Reports ns/op as the minimum over several runs (the minimum is the least
 * noisy estimate on a shared VM: noise only ever adds time).
 *
 *   c_parse_bench [--case NAME] [--iters N] [--runs R]
 *
 * For stable numbers run it under callgrind, one case at a time, counting only the measured
 * call (the fp_bench_* wrappers below are never inlined for that purpose):
 *   valgrind --tool=callgrind --toggle-collect=fp_bench_op --callgrind-out-file=cg.out \
 *       ./c_parse_bench --case ticker --iters 10000 --runs 1
 * instructions per op = total Ir / iters.
 */
#define _POSIX_C_SOURCE 199309L
#include "fp_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { KIND_PARSE, KIND_WRITE };

typedef struct bench_case {
    const char *name;
    int kind;
    int in_place; /* the parse rewrites the buffer: restore it before every op (not timed
                     separately; the copy cost is reported as its own case) */
    char *input;
    size_t len;
    int64_t expect;
} bench_case;

static char *dup_bytes(const char *s, size_t n)
{
    char *p = malloc(n ? n : 1);
    if (!p)
        abort();
    memcpy(p, s, n);
    return p;
}

/* head_fmt has one %zu for the Content-Length value. */
static char *with_cl(const char *head_fmt, const char *body, size_t *len)
{
    char head[1024];
    snprintf(head, sizeof head, head_fmt, strlen(body));
    size_t hl = strlen(head), bl = strlen(body);
    char *p = malloc(hl + bl + 1);
    if (!p)
        abort();
    memcpy(p, head, hl);
    memcpy(p + hl, body, bl + 1);
    *len = hl + bl;
    return p;
}

static char *cat(const char *head, const char *body, size_t *len)
{
    size_t hl = strlen(head), bl = strlen(body);
    char *p = malloc(hl + bl + 1);
    if (!p)
        abort();
    memcpy(p, head, hl);
    memcpy(p + hl, body, bl + 1);
    *len = hl + bl;
    return p;
}

/* A JSON body of exactly n bytes, order-book shaped. */
static char *book_json(size_t n)
{
    char *p = malloc(n + 1);
    if (!p)
        abort();
    size_t o = (size_t)snprintf(p, n + 1, "{\"lastUpdateId\":1027024,\"bids\":[");
    int i = 0;
    while (o + 40 < n) {
        o += (size_t)snprintf(p + o, n + 1 - o, "%s[\"%d.%02d000000\",\"%d.00000000\"]",
                              i ? "," : "", 64000 - i, i % 100, 1 + i % 9);
        i++;
    }
    while (o < n - 2)
        p[o++] = ' ';
    p[o++] = ']';
    p[o++] = '}';
    p[o] = 0;
    return p;
}

static fp_limits g_lim;
static fp_span g_spans[100];
static char *g_work;
static char g_out[4096];
static volatile int64_t g_sink;

/* Request inputs (the pool's shape: constant block + per-request fields + body). */
static const char g_block[] = "Host: api.exchange.example\r\nUser-Agent: fastpool/0.1\r\n"
                              "Accept: application/json\r\nX-API-KEY: "
                              "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
                              "\r\n";
static const char g_body[] =
    "symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01000000&price=64000.00"
    "&recvWindow=5000&timestamp=1716000000000";
static fp_field g_fields[2];

__attribute__((noinline)) static int64_t fp_bench_op(const bench_case *c)
{
    if (c->kind == KIND_WRITE) {
        return fp_write_request(g_out, sizeof g_out, "POST", 4, "/api/v3/order", 13, g_block,
                                sizeof g_block - 1, g_fields, 2, g_body,
                                (int64_t)(sizeof g_body - 1));
    }
    fp_resp r;
    fp_resp_init(&r, &g_lim, 0);
    size_t len = c->len;
    return fp_resp_parse(&r, c->in_place ? g_work : c->input, &len, g_spans);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void run_case(const bench_case *c, long iters, int runs)
{
    double best = 1e300, best_copy = 1e300;
    for (int r = 0; r < runs; r++) {
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            if (c->in_place)
                memcpy(g_work, c->input, c->len);
            int64_t rc = fp_bench_op(c);
            if (rc != c->expect) {
                fprintf(stderr, "%s: got %lld, expected %lld\n", c->name, (long long)rc,
                        (long long)c->expect);
                exit(1);
            }
            g_sink = rc;
        }
        double t = (now_ns() - t0) / (double)iters;
        if (t < best)
            best = t;
        if (c->in_place) {
            t0 = now_ns();
            for (long i = 0; i < iters; i++) {
                memcpy(g_work, c->input, c->len);
                __asm__ volatile("" ::"r"(g_work) : "memory");
            }
            t = (now_ns() - t0) / (double)iters;
            if (t < best_copy)
                best_copy = t;
        }
    }
    if (c->in_place)
        printf("%-16s %8zu bytes %10.1f ns/op  (of which input memcpy %.1f ns)\n", c->name,
               c->len, best, best_copy);
    else
        printf("%-16s %8zu bytes %10.1f ns/op\n", c->name, c->len, best);
}

int main(int argc, char **argv)
{
    const char *only = NULL;
    long iters = 0;
    int runs = 7;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--case") && i + 1 < argc)
            only = argv[++i];
        else if (!strcmp(argv[i], "--iters") && i + 1 < argc)
            iters = atol(argv[++i]);
        else if (!strcmp(argv[i], "--runs") && i + 1 < argc)
            runs = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--case NAME] [--iters N] [--runs R]\n", argv[0]);
            return 2;
        }
    }
    fp_limits_default(&g_lim);
    g_fields[0] = (fp_field){"Content-Type", 12, "application/x-www-form-urlencoded", 33};
    g_fields[1] = (fp_field){"X-Signature", 11,
                             "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71",
                             64};

    bench_case cases[5];
    size_t n;
    char *p;

    /* 137 bytes: a ticker price. */
    p = with_cl("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                "{\"symbol\":\"BTCUSDT\",\"price\":\"64123.45000000\",\"time\":1716000000000}",
                &n);
    cases[0] = (bench_case){"ticker-137", KIND_PARSE, 0, p, n, (int64_t)n};

    /* ~300 bytes: a typical gateway head (date, rate-limit headers) and a small body. */
    p = with_cl("HTTP/1.1 200 OK\r\nDate: Sat, 18 May 2024 02:40:00 GMT\r\n"
                "Content-Type: application/json;charset=UTF-8\r\nContent-Length: %zu\r\n"
                "Connection: keep-alive\r\nx-mbx-used-weight-1m: 6\r\n\r\n",
                "{\"symbol\":\"BTCUSDT\",\"bidPrice\":\"64123.45000000\",\"bidQty\":\"1.20000000\","
                "\"askPrice\":\"64123.46000000\",\"askQty\":\"0.50000000\"}",
                &n);
    cases[1] = (bench_case){"ticker-300", KIND_PARSE, 0, p, n, (int64_t)n};

    /* ~2 KB: an order-book snippet behind ten header lines. */
    {
        char *body = book_json(1600);
        char head[1024];
        snprintf(head, sizeof head,
                 "HTTP/1.1 200 OK\r\nDate: Sat, 18 May 2024 02:40:00 GMT\r\n"
                 "Content-Type: application/json;charset=UTF-8\r\nContent-Length: %zu\r\n"
                 "Connection: keep-alive\r\nVary: Accept-Encoding\r\n"
                 "x-mbx-uuid: 3b1f9a3e-7d5c-4b2a-9c1e-2f8d6e4a0b7c\r\n"
                 "x-mbx-used-weight: 25\r\nx-mbx-used-weight-1m: 25\r\n"
                 "Strict-Transport-Security: max-age=31536000; includeSubdomains\r\n"
                 "Cache-Control: no-cache, no-store, must-revalidate\r\n\r\n",
                 strlen(body));
        p = cat(head, body, &n);
        free(body);
        cases[2] = (bench_case){"book-2k", KIND_PARSE, 0, p, n, (int64_t)n};
    }

    /* 64 KB in 16 chunks of 4 KB: a snapshot streamed by a gateway that chunks. */
    {
        const char *head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                           "Transfer-Encoding: chunked\r\n\r\n";
        size_t hl = strlen(head), cap = hl + 16 * (4096 + 16) + 16;
        p = malloc(cap);
        if (!p)
            abort();
        memcpy(p, head, hl);
        size_t o = hl;
        for (int i = 0; i < 16; i++) {
            o += (size_t)sprintf(p + o, "1000\r\n");
            memset(p + o, 'a' + i, 4096);
            o += 4096;
            memcpy(p + o, "\r\n", 2);
            o += 2;
        }
        memcpy(p + o, "0\r\n\r\n", 5);
        o += 5;
        g_work = malloc(o);
        if (!g_work)
            abort();
        cases[3] = (bench_case){"chunked-64k", KIND_PARSE, 1, p, o, (int64_t)(hl + 65536)};
    }

    cases[4] = (bench_case){"write-request", KIND_WRITE, 0, dup_bytes("", 0), 0, 0};
    cases[4].expect = fp_write_request(g_out, sizeof g_out, "POST", 4, "/api/v3/order", 13,
                                       g_block, sizeof g_block - 1, g_fields, 2, g_body,
                                       (int64_t)(sizeof g_body - 1));
    cases[4].len = (size_t)cases[4].expect;
    if (cases[4].expect <= 0)
        abort();

#ifdef __SSE4_2__
    printf("# fp_http bench, SSE4.2 build\n");
#else
    printf("# fp_http bench, scalar build\n");
#endif
    for (int i = 0; i < 5; i++) {
        if (only && strcmp(only, cases[i].name) != 0)
            continue;
        long it = iters ? iters : (cases[i].len > 10000 ? 20000 : 1000000);
        run_case(&cases[i], it, runs);
    }
    for (int i = 0; i < 5; i++)
        free(cases[i].input);
    free(g_work);
    return 0;
}
