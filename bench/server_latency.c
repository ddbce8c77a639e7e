/*
 * server_latency — the "floor" client: one pre-opened (and pre-handshaked) connection,
 * N sequential GETs, each timed from just before the write to the last byte of its response.
 *
 *   cc -O2 -o server_latency bench/server_latency.c -lssl -lcrypto
 *   server_latency --port 8080 [--host 127.0.0.1|::1] [--tls] [--sni localhost]
 *                  [--n 100000] [--warmup 2000] [--path /] [--label NAME] [--json]
 *
 * Prints p50/p90/p99/p99.9/max (and mean) in microseconds. With --json, one JSON object.
 * The TLS client does not verify the certificate: it measures request latency on an
 * established connection, where verification played no part.
 *
 * The response parser is deliberately minimal (status line, Content-Length or chunked,
 * no trailers, no 1xx): it serves benchmarks against known servers, not arbitrary ones.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define RBUF_CAP ((size_t)8 << 20) /* largest response this client accepts */

typedef struct client {
    int fd;
    SSL *ssl;
    char *buf;
    size_t len; /* bytes of the current response received so far */
} client;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "server_latency: %s (%s)\n", what, errno ? strerror(errno) : "");
    ERR_print_errors_fp(stderr);
    exit(1);
}

static int write_all(client *c, const char *p, size_t n) {
    while (n) {
        ssize_t w;
        if (c->ssl) {
            int r = SSL_write(c->ssl, p, (int)n);
            if (r <= 0) return -1;
            w = r;
        } else {
            w = send(c->fd, p, n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR) continue;
            if (w < 0) return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_more(client *c) {
    if (c->len == RBUF_CAP) return -1;
    if (c->ssl) {
        int r = SSL_read(c->ssl, c->buf + c->len, (int)(RBUF_CAP - c->len));
        if (r <= 0) return -1;
        c->len += (size_t)r;
        return 0;
    }
    for (;;) {
        ssize_t r = recv(c->fd, c->buf + c->len, RBUF_CAP - c->len, 0);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        c->len += (size_t)r;
        return 0;
    }
}

/* The end of the head at or after from, or 0. */
static size_t head_end(const char *p, size_t n) {
    const char *e = memmem(p, n, "\r\n\r\n", 4);
    return e ? (size_t)(e - p) + 4 : 0;
}

/* Reads one complete response; returns its status code, or -1. The connection must carry
 * nothing after it (sequential requests), which is checked. */
static int read_response(client *c, int head_request) {
    size_t hlen;
    c->len = 0;
    while ((hlen = head_end(c->buf, c->len)) == 0)
        if (read_more(c) < 0) return -1;
    if (hlen < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0) return -1;
    int status = atoi(c->buf + 9);
    long long clen = -1;
    int chunked = 0;
    for (const char *l = (const char *)memchr(c->buf, '\n', hlen) + 1; l < c->buf + hlen - 2;) {
        const char *e = memchr(l, '\n', (size_t)(c->buf + hlen - l));
        if (!e) break;
        if (strncasecmp(l, "content-length:", 15) == 0) clen = atoll(l + 15);
        if (strncasecmp(l, "transfer-encoding:", 18) == 0 && memmem(l, (size_t)(e - l), "chunked", 7))
            chunked = 1;
        l = e + 1;
    }
    if (head_request || status == 204 || status == 304) return c->len == hlen ? status : -1;
    if (!chunked) {
        if (clen < 0) return -1;
        while (c->len < hlen + (size_t)clen)
            if (read_more(c) < 0) return -1;
        return c->len == hlen + (size_t)clen ? status : -1;
    }
    size_t pos = hlen;
    for (;;) {
        char *lf;
        while ((lf = memchr(c->buf + pos, '\n', c->len - pos)) == NULL)
            if (read_more(c) < 0) return -1;
        size_t size = strtoul(c->buf + pos, NULL, 16);
        pos = (size_t)(lf - c->buf) + 1;
        size_t need = pos + size + 2; /* data + CRLF (after the last chunk: the empty trailer) */
        while (c->len < need)
            if (read_more(c) < 0) return -1;
        pos = need;
        if (size == 0) return c->len == pos ? status : -1;
    }
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(const uint64_t *sorted, size_t n, double p) {
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return (double)sorted[i] / 1000.0;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *sni = "localhost", *path = "/", *label = "";
    int port = 0, tls = 0, json = 0;
    long n = 100000, warmup = 2000;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--tls")) tls = 1;
        else if (!strcmp(a, "--json")) json = 1;
        else if (v && !strcmp(a, "--host")) host = v, i++;
        else if (v && !strcmp(a, "--port")) port = atoi(v), i++;
        else if (v && !strcmp(a, "--sni")) sni = v, i++;
        else if (v && !strcmp(a, "--path")) path = v, i++;
        else if (v && !strcmp(a, "--label")) label = v, i++;
        else if (v && !strcmp(a, "--n")) n = atol(v), i++;
        else if (v && !strcmp(a, "--warmup")) warmup = atol(v), i++;
        else {
            fprintf(stderr, "usage: %s --port P [--host H] [--tls] [--sni NAME] [--n N] "
                            "[--warmup N] [--path /] [--label NAME] [--json]\n", argv[0]);
            return 2;
        }
    }
    if (port <= 0 || port > 65535 || n < 1 || n > 100000000 || warmup < 0) {
        fprintf(stderr, "server_latency: bad --port, --n or --warmup\n");
        return 2;
    }

    client c = {.fd = -1};
    c.buf = malloc(RBUF_CAP);
    uint64_t *lat = malloc((size_t)n * sizeof *lat);
    if (!c.buf || !lat) die("out of memory");

    struct sockaddr_storage ss;
    socklen_t slen;
    memset(&ss, 0, sizeof ss);
    int fam = strchr(host, ':') ? AF_INET6 : AF_INET;
    if (fam == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) die("bad --host");
        slen = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) die("bad --host");
        slen = sizeof *a;
    }
    c.fd = socket(fam, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c.fd < 0 || connect(c.fd, (struct sockaddr *)&ss, slen) < 0) die("connect");
    int one = 1;
    setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

    SSL_CTX *ctx = NULL;
    if (tls) {
        ctx = SSL_CTX_new(TLS_client_method());
        if (!ctx) die("SSL_CTX_new");
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
        c.ssl = SSL_new(ctx);
        if (!c.ssl || !SSL_set_fd(c.ssl, c.fd)) die("SSL_new");
        SSL_set_tlsext_host_name(c.ssl, sni);
        if (SSL_connect(c.ssl) != 1) die("TLS handshake");
    }

    char req[1024];
    int rlen = snprintf(req, sizeof req,
                        "GET %s HTTP/1.1\r\nHost: localhost\r\nUser-Agent: fp-server-latency\r\n"
                        "Accept: */*\r\n\r\n", path);
    if (rlen <= 0 || (size_t)rlen >= sizeof req) die("path too long");

    size_t body_len = 0;
    for (long i = -warmup; i < n; i++) {
        uint64_t t0 = now_ns();
        if (write_all(&c, req, (size_t)rlen) < 0) die("write");
        int status = read_response(&c, 0);
        uint64_t t1 = now_ns();
        if (status != 200) die("bad or unexpected response");
        if (i >= 0) lat[i] = t1 - t0;
        body_len = c.len;
    }

    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    double sum = 0;
    for (long i = 0; i < n; i++) sum += (double)lat[i];
    double mean = sum / (double)n / 1000.0;
    if (json)
        printf("{\"label\":\"%s\",\"tls\":%s,\"n\":%ld,\"response_bytes\":%zu,\"p50\":%.2f,"
               "\"p90\":%.2f,\"p99\":%.2f,\"p999\":%.2f,\"max\":%.2f,\"mean\":%.2f,%s}\n",
               label, tls ? "true" : "false", n, body_len, pct(lat, (size_t)n, 50),
               pct(lat, (size_t)n, 90), pct(lat, (size_t)n, 99), pct(lat, (size_t)n, 99.9),
               (double)lat[n - 1] / 1000.0, mean,
               c.ssl ? (SSL_version(c.ssl) == TLS1_3_VERSION ? "\"proto\":\"TLSv1.3\""
                                                              : "\"proto\":\"TLSv1.2\"")
                     : "\"proto\":\"tcp\"");
    else
        printf("%s%s%s n=%ld response=%zuB  p50 %.1f  p90 %.1f  p99 %.1f  p99.9 %.1f  "
               "max %.1f  mean %.1f (us)\n",
               label, *label ? " " : "", tls ? "tls" : "plain", n, body_len,
               pct(lat, (size_t)n, 50), pct(lat, (size_t)n, 90), pct(lat, (size_t)n, 99),
               pct(lat, (size_t)n, 99.9), (double)lat[n - 1] / 1000.0, mean);

    if (c.ssl) {
        SSL_shutdown(c.ssl);
        SSL_free(c.ssl);
    }
    SSL_CTX_free(ctx);
    close(c.fd);
    free(c.buf);
    free(lat);
    return 0;
}
