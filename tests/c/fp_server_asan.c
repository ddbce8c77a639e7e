/*
 * Drives fp_server through every configuration and every state a stop can find a connection
 * in, under ASan + LSan + UBSan and under TSan (tests/c/run_sanitizers.sh builds and runs it).
 * Without Python in the process, a leak report can only be ours or OpenSSL's.
 *
 * Behaviour is tested in tests/test_server.py; the checks here only make sure each scenario
 * really ran (a scenario that silently did nothing would prove nothing about memory).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "fp_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

static int failures, checks;

#define CHECK(cond)                                                                       \
    do {                                                                                  \
        checks++;                                                                         \
        if (!(cond)) {                                                                    \
            failures++;                                                                   \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);    \
        }                                                                                 \
    } while (0)

static const char GET[] = "GET / HTTP/1.1\r\nHost: t\r\n\r\n";

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int tcp_connect(int port) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        perror("connect");
        exit(1);
    }
    return fd;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

/* Reads until EOF, cap bytes, or timeout_ms without data. Returns the bytes read. */
static size_t recv_some(int fd, char *buf, size_t cap, int timeout_ms) {
    size_t len = 0;
    while (len < cap) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0) break;
        ssize_t r = recv(fd, buf + len, cap - len, 0);
        if (r <= 0) break;
        len += (size_t)r;
    }
    return len;
}

static int count(const char *buf, size_t len, const char *needle) {
    int n = 0;
    size_t nl = strlen(needle);
    const char *p = buf;
    while ((p = memmem(p, len - (size_t)(p - buf), needle, nl)) != NULL) {
        n++;
        p += nl;
    }
    return n;
}

static fp_server *start(const fp_server_config *cfg) {
    fp_server *srv = NULL;
    int err = 0;
    int rc = fp_server_create(cfg, &srv, &err);
    if (rc != 0) {
        fprintf(stderr, "fp_server_create: %d (errno %d)\n", rc, err);
        exit(1);
    }
    if (fp_server_start(srv) != 0) exit(1);
    return srv;
}

static void plain_scenarios(void) {
    static char buf[1 << 22];
    fp_server_config cfg;
    fp_server_stats st;

    /* default response, pipelining, a connection stopped mid-head, one mid-body */
    fp_server_config_init(&cfg);
    fp_server *srv = start(&cfg);
    int port = fp_server_port(srv);
    int a = tcp_connect(port), b = tcp_connect(port), d = tcp_connect(port);
    char pipe20[sizeof GET * 20];
    for (int i = 0; i < 20; i++) memcpy(pipe20 + i * (sizeof GET - 1), GET, sizeof GET - 1);
    send_all(a, pipe20, 20 * (sizeof GET - 1));
    size_t n = recv_some(a, buf, sizeof buf, 300);
    CHECK(count(buf, n, "HTTP/1.1 200 OK") == 20);
    send_all(b, "GET / HTTP/1.1\r\nHo", 18);
    send_all(d, "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\nabc", 53);
    sleep_ms(50);
    fp_server_get_stats(srv, &st);
    CHECK(st.accepted == 3 && st.requests == 20);
    fp_server_destroy(srv); /* stops with three connections in different states */
    CHECK(recv_some(b, buf, sizeof buf, 1000) == 0);
    close(a);
    close(b);
    close(d);

    /* echo + chunked, HEAD, HTTP/1.0, malformed */
    fp_server_config_init(&cfg);
    cfg.echo = 1;
    cfg.chunked = 1;
    cfg.chunk_size = 7;
    srv = start(&cfg);
    port = fp_server_port(srv);
    a = tcp_connect(port);
    static const char post[] = "POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world"
                               "HEAD / HTTP/1.1\r\nHost: t\r\n\r\n"
                               "GET / HTTP/1.0\r\n\r\n";
    send_all(a, post, sizeof post - 1);
    n = recv_some(a, buf, sizeof buf, 1000);
    CHECK(count(buf, n, "HTTP/1.1 200 OK") == 3 && count(buf, n, "hello world") == 0);
    CHECK(count(buf, n, "hello w") == 1); /* split across chunks of 7 */
    close(a);
    a = tcp_connect(port);
    send_all(a, "BAD\r\n\r\n", 7);
    n = recv_some(a, buf, sizeof buf, 1000);
    CHECK(count(buf, n, "400 Bad Request") == 1);
    close(a);
    fp_server_stop(srv);
    fp_server_destroy(srv);

    /* close_after (silent), delay with a request pending at stop, idle timeout */
    fp_server_config_init(&cfg);
    cfg.close_after = 2;
    cfg.close_silently = 1;
    cfg.idle_timeout_ms = 50;
    srv = start(&cfg);
    port = fp_server_port(srv);
    a = tcp_connect(port);
    send_all(a, pipe20, 5 * (sizeof GET - 1));
    n = recv_some(a, buf, sizeof buf, 1000);
    CHECK(count(buf, n, "HTTP/1.1 200 OK") == 2);
    close(a);
    a = tcp_connect(port);
    n = recv_some(a, buf, sizeof buf, 2000); /* idle: closed by the server */
    CHECK(n == 0);
    close(a);
    fp_server_destroy(srv);

    fp_server_config_init(&cfg);
    cfg.delay_ms = 30;
    srv = start(&cfg);
    port = fp_server_port(srv);
    a = tcp_connect(port);
    b = tcp_connect(port);
    send_all(a, GET, sizeof GET - 1);
    n = recv_some(a, buf, sizeof buf, 200);
    CHECK(count(buf, n, "HTTP/1.1 200 OK") == 1);
    send_all(b, GET, sizeof GET - 1);
    sleep_ms(5);
    fp_server_destroy(srv); /* b's response is held */
    close(a);
    close(b);

    /* a big body to a client that does not read: stop with output pending */
    fp_server_config_init(&cfg);
    cfg.body_size = 8 << 20;
    srv = start(&cfg);
    a = tcp_connect(fp_server_port(srv));
    send_all(a, pipe20, 3 * (sizeof GET - 1));
    sleep_ms(100);
    fp_server_get_stats(srv, &st);
    CHECK(st.requests >= 1);
    fp_server_destroy(srv);
    close(a);

    /* creation failures free what they built */
    fp_server_config_init(&cfg);
    cfg.status = 99;
    CHECK(fp_server_create(&cfg, &srv, NULL) == FP_SRV_E_CONFIG && srv == NULL);
    fp_server_config_init(&cfg);
    srv = start(&cfg);
    fp_server_config other;
    fp_server_config_init(&other);
    other.port = (uint16_t)fp_server_port(srv);
    fp_server *dup = NULL;
    int err = 0;
    CHECK(fp_server_create(&other, &dup, &err) == FP_SRV_E_SOCKET && err == EADDRINUSE);
    fp_server_destroy(srv);
    fp_server_config_init(&cfg);
    cfg.tls = 1;
    cfg.client_ca_pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    cfg.client_ca_pem_len = strlen(cfg.client_ca_pem);
    CHECK(fp_server_create(&cfg, &srv, NULL) == FP_SRV_E_CLIENT_CA && srv == NULL);
}

static SSL *tls_connect(SSL_CTX *ctx, int port, SSL_SESSION *sess, int *fd_out) {
    int fd = tcp_connect(port);
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (sess) SSL_set_session(ssl, sess);
    if (SSL_connect(ssl) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    *fd_out = fd;
    return ssl;
}

static int tls_get(SSL *ssl, char *buf, int cap) {
    if (SSL_write(ssl, GET, sizeof GET - 1) <= 0) return -1;
    int len = 0;
    while (len < cap && !memmem(buf, (size_t)len, "\"}", 2)) {
        int r = SSL_read(ssl, buf + len, cap - len);
        if (r <= 0) return -1;
        len += r;
    }
    return len;
}

static void tls_scenarios(int version) {
    static char buf[65536];
    fp_server_config cfg;
    fp_server_stats st;
    fp_server_config_init(&cfg);
    cfg.tls = 1;
    cfg.tls_min = cfg.tls_max = version;
    fp_server *srv = start(&cfg);
    int port = fp_server_port(srv);
    size_t pem_len = 0;
    /* copied: the server's PEM goes away with the server, and the mTLS part below reuses it */
    const char *srv_pem = fp_server_ca_pem(srv, &pem_len);
    char *pem = strndup(srv_pem, pem_len);
    CHECK(pem && pem_len > 100);

    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    BIO *bio = BIO_new_mem_buf(pem, (int)pem_len);
    X509 *ca = PEM_read_bio_X509(bio, NULL, NULL, NULL);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(ctx), ca);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);

    int fd1, fd2, fd3;
    SSL *s1 = tls_connect(ctx, port, NULL, &fd1);
    CHECK(s1 != NULL);
    if (s1) {
        CHECK(tls_get(s1, buf, sizeof buf) > 0);
        CHECK(tls_get(s1, buf, sizeof buf) > 0);
        SSL_SESSION *sess = SSL_get1_session(s1);
        SSL *s2 = tls_connect(ctx, port, sess, &fd2);
        CHECK(s2 != NULL && SSL_session_reused(s2));
        if (s2) CHECK(tls_get(s2, buf, sizeof buf) > 0);
        SSL_SESSION_free(sess);
        /* stop with: an established TLS connection (s2), one mid-handshake (fd3: TCP only,
         * then a partial ClientHello), and s1 closed by the client without close_notify */
        fd3 = tcp_connect(port);
        send_all(fd3, "\x16\x03\x01\x00\xff\x01", 6);
        close(fd1);
        sleep_ms(50);
        fp_server_get_stats(srv, &st);
        CHECK(st.tls_handshakes == 2 && st.tls_resumed == 1);
        fp_server_destroy(srv);
        srv = NULL;
        SSL_free(s1);
        if (s2) {
            SSL_free(s2);
            close(fd2);
        }
        close(fd3);
    }
    if (srv) fp_server_destroy(srv);

    /* mTLS required: this client has no certificate and is refused */
    fp_server_config_init(&cfg);
    cfg.tls = 1;
    cfg.tls_min = cfg.tls_max = version;
    cfg.client_ca_pem = pem; /* any CA will do: the client presents nothing */
    cfg.client_ca_pem_len = pem_len;
    srv = start(&cfg);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
    SSL *s = tls_connect(ctx, fp_server_port(srv), NULL, &fd1);
    int refused = s == NULL;
    if (s) {
        refused = tls_get(s, buf, sizeof buf) < 0; /* TLS 1.3: the refusal comes after */
        SSL_free(s);
        close(fd1);
    }
    ERR_clear_error();
    CHECK(refused);
    fp_server_destroy(srv);
    free(pem);

    X509_free(ca);
    BIO_free(bio);
    SSL_CTX_free(ctx);
}

int main(void) {
    for (int round = 0; round < 3; round++) {
        plain_scenarios();
        tls_scenarios(FP_SRV_TLS_1_2);
        tls_scenarios(FP_SRV_TLS_1_3);
    }
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
