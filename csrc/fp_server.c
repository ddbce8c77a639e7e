/*
 * fp_server — see fp_server.h for the contract. This file: configuration and response
 * building, certificates and TLS context, the request-side parser, the connection state
 * machine and the epoll loop.
 *
 * Threading: the loop thread owns every connection and all of fp_server except the counters,
 * which it alone writes and any thread may read. Creation, start, stop and destroy run on the
 * caller's thread while the loop thread does not exist (before start, after the join).
 */
#include "fp_server.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* Pending output above which a connection stops reading and parsing: a client that pipelines
 * without reading its responses must not make the server buffer without bound. */
#define OUT_HIGH_WATER ((size_t)256 * 1024)
/* Input buffer a connection starts with: a few typical requests, so a pipelined burst of
 * small GETs is taken by one read. It grows (up to the head or echo limits) only when one
 * request does not fit. */
#define IBUF_INITIAL ((size_t)16384)
/* Buffers larger than this are released once drained, so an idle connection that once carried
 * a big echo does not keep megabytes. */
#define BUF_KEEP ((size_t)1 << 20)
#define EPOLL_BATCH 64
#define ACCEPT_BATCH 64
#define NS_PER_MS 1000000ull

enum { CS_HANDSHAKE, CS_OPEN, CS_LINGER };
enum { TK_NONE, TK_IDLE, TK_DELAY, TK_LINGER };
/* Internal parse results besides a head length (> 0) and 0 (need more). */
enum { PR_BAD = -400, PR_TOO_LARGE = -413, PR_NOT_IMPL = -501 };

/* A parsed request head. */
typedef struct srv_req {
    size_t head_len;
    uint64_t content_length;
    uint8_t head_only;  /* method HEAD: the response has no body (RFC 9110 §9.3.2) */
    uint8_t http10;
    uint8_t conn_close;
    uint8_t conn_keep_alive;
} srv_req;

typedef struct srv_conn {
    struct srv_conn *prev, *next; /* every open connection, for the teardown at stop */
    int fd;
    SSL *ssl;
    uint8_t state;
    uint8_t tk;                /* which deadline the timer slot holds */
    uint8_t wr_blocked;        /* the last write would block: wait for EPOLLOUT */
    uint8_t rd_wants_wr;       /* SSL_read asked for writability */
    uint8_t wr_wants_rd;       /* SSL_write asked for readability */
    uint8_t close_after_flush; /* the last response is queued: close once it is written */
    uint8_t peer_eof;          /* the client finished sending */
    uint8_t held;              /* a complete request waits for its delay */
    uint8_t delay_done;        /* the held request's delay has passed */
    uint8_t has_req;           /* req is parsed and its body is still arriving */
    uint32_t events;           /* epoll interest currently registered */
    uint32_t hs_want;          /* what the TLS handshake waits for */
    uint32_t served;
    int heap_idx;              /* -1 when not in the timer heap */
    uint64_t deadline;         /* the slot's deadline; the heap key may be earlier (lazy) */
    srv_req req;
    uint64_t discard;          /* non-echo body bytes still to skip */
    char *ibuf;
    size_t icap, ilen, ipos;   /* unparsed input is ibuf[ipos..ilen) */
    size_t scan;               /* input from ipos already searched for the end of the head */
    const char *zptr;          /* pending output that lives in the server's prebuilt buffers */
    size_t zlen;
    char *obuf;
    size_t ocap, olen, opos;   /* pending output is obuf[opos..olen) (never both z and obuf) */
} srv_conn;

typedef struct srv_timer {
    uint64_t when;
    srv_conn *c;
} srv_timer;

/* Counters: written by the loop thread only, so a relaxed load and store is enough (no locked
 * read-modify-write on the hot path); readers on other threads load them relaxed. */
typedef struct srv_counters {
    _Atomic uint64_t accepted, closed, requests, bad_requests, tls_handshakes, tls_resumed,
        bytes_in, bytes_out;
} srv_counters;

struct fp_server {
    /* configuration */
    int echo, chunked, close_silently, no_body;
    size_t chunk_size;
    uint32_t close_after;
    uint64_t idle_ns, delay_ns;
    int port;
    /* prebuilt responses; variant v: bit 0 = announce "Connection: close", bit 1 = HTTP/1.0 */
    char *common;             /* status line + extra headers + Content-Type */
    size_t common_len;
    char *heads[4];           /* complete heads of the fixed response */
    size_t head_lens[4];
    char *full0;              /* heads[0] + encoded body, contiguous: the zero-copy response */
    size_t full0_len;
    const char *enc_body;     /* body as sent to HTTP/1.1 (inside full0) */
    size_t enc_len;
    char *raw_body;           /* body as sent to HTTP/1.0 (never chunked, RFC 9112 §6.1) */
    size_t raw_len;
    /* TLS */
    SSL_CTX *ssl_ctx;
    char *ca_pem;
    size_t ca_pem_len;
    /* descriptors and the loop */
    int listen_fd, wake_fd, epoll_fd, spare_fd;
    pthread_t thread;
    int started, stopped;
    uint64_t now;             /* CLOCK_MONOTONIC ns, refreshed after each epoll_wait */
    srv_conn *conns;
    int nconns;
    srv_timer *heap;
    int heap_n;
    srv_counters ctr;
};

/* ---------------------------------------------------------------------------------------- */
/* small helpers                                                                            */
/* ---------------------------------------------------------------------------------------- */

#define CTR_ADD(srv, field, n)                                                           \
    atomic_store_explicit(&(srv)->ctr.field,                                             \
                          atomic_load_explicit(&(srv)->ctr.field, memory_order_relaxed) + \
                              (uint64_t)(n),                                             \
                          memory_order_relaxed)

static uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* tchar (RFC 9110 §5.6.2): the bytes allowed in methods, field names and Connection tokens. */
static int is_tchar(unsigned char ch) {
    if ((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z'))
        return 1;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* field-value bytes (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text. */
static int is_value_byte(unsigned char ch) {
    return ch == '\t' || (ch >= 0x20 && ch != 0x7f);
}

static int lower(int ch) { return (ch >= 'A' && ch <= 'Z') ? ch + 32 : ch; }

static int ieq(const char *a, size_t alen, const char *lit) {
    size_t n = strlen(lit);
    if (alen != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lit[i]) return 0;
    return 1;
}

static const char *reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 418: return "I'm a teapot";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* Bytes of the chunked encoding of len bytes in chunks of chunk (0: one chunk). */
static size_t chunked_size(size_t len, size_t chunk) {
    char tmp[24];
    size_t total = 5; /* "0\r\n\r\n": last chunk, empty trailer section */
    if (len == 0) return total;
    if (chunk == 0 || chunk > len) chunk = len;
    size_t full = len / chunk, rest = len % chunk;
    total += full * ((size_t)snprintf(tmp, sizeof tmp, "%zx", chunk) + 4 + chunk);
    if (rest) total += (size_t)snprintf(tmp, sizeof tmp, "%zx", rest) + 4 + rest;
    return total;
}

/* Writes the chunked encoding (RFC 9112 §7.1) of src into dst, which has chunked_size() bytes. */
static size_t chunked_encode(char *dst, const char *src, size_t len, size_t chunk) {
    size_t o = 0;
    if (chunk == 0 || chunk > len) chunk = len;
    for (size_t i = 0; i < len; i += chunk) {
        size_t n = len - i < chunk ? len - i : chunk;
        o += (size_t)snprintf(dst + o, 24, "%zx\r\n", n);
        memcpy(dst + o, src + i, n);
        o += n;
        memcpy(dst + o, "\r\n", 2);
        o += 2;
    }
    memcpy(dst + o, "0\r\n\r\n", 5);
    return o + 5;
}

/* The deterministic filler: valid JSON of exactly n bytes, so clients that decode the body as
 * JSON (as a trading client does) work against it. */
static void fill_json(char *dst, size_t n) {
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    static const char open[] = "{\"filler\":\"";
    const size_t open_len = sizeof open - 1;
    if (n == 0) return;
    if (n == 1) {
        dst[0] = '0';
        return;
    }
    if (n < open_len + 2) { /* too short for the object with a string: braces and spaces */
        dst[0] = '{';
        memset(dst + 1, ' ', n - 2);
        dst[n - 1] = '}';
        return;
    }
    memcpy(dst, open, open_len);
    for (size_t i = open_len; i < n - 2; i++) dst[i] = alphabet[(i - open_len) % 36];
    dst[n - 2] = '"';
    dst[n - 1] = '}';
}

/* ---------------------------------------------------------------------------------------- */
/* configuration                                                                            */
/* ---------------------------------------------------------------------------------------- */

void fp_server_config_init(fp_server_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->status = 200;
    cfg->body_size = 137;
}

/* Checks the caller's header lines: each "name: value\r\n" with a token name and a clean
 * value; Content-Length, Transfer-Encoding and Connection belong to the server (it frames
 * bodies and decides persistence). Sets *has_ct when a Content-Type is among them. */
static int check_header_block(const char *p, size_t n, int *has_ct) {
    size_t i = 0;
    *has_ct = 0;
    while (i < n) {
        size_t name = i;
        while (i < n && is_tchar((unsigned char)p[i])) i++;
        if (i == name || i >= n || p[i] != ':') return FP_SRV_E_CONFIG;
        size_t name_len = i - name;
        i++;
        while (i < n && p[i] != '\r') {
            if (!is_value_byte((unsigned char)p[i])) return FP_SRV_E_CONFIG;
            i++;
        }
        if (i + 1 >= n || p[i + 1] != '\n') return FP_SRV_E_CONFIG;
        i += 2;
        if (ieq(p + name, name_len, "content-length") ||
            ieq(p + name, name_len, "transfer-encoding") ||
            ieq(p + name, name_len, "connection"))
            return FP_SRV_E_CONFIG;
        if (ieq(p + name, name_len, "content-type")) *has_ct = 1;
    }
    return 0;
}

static int check_config(const fp_server_config *cfg) {
    if (cfg->ipv6 != 0 && cfg->ipv6 != 1) return FP_SRV_E_CONFIG;
    if (cfg->status < 200 || cfg->status > 599) return FP_SRV_E_CONFIG;
    if (cfg->headers_len > FP_SRV_MAX_HEADERS_BLOCK) return FP_SRV_E_CONFIG;
    if (cfg->headers_len && !cfg->headers) return FP_SRV_E_CONFIG;
    if (cfg->body_size > FP_SRV_MAX_BODY) return FP_SRV_E_CONFIG;
    if (cfg->chunk_size && !cfg->chunked) return FP_SRV_E_CONFIG;
    if (cfg->close_silently && !cfg->close_after) return FP_SRV_E_CONFIG;
    if (cfg->idle_timeout_ms > FP_SRV_MAX_TIME_MS || cfg->delay_ms > FP_SRV_MAX_TIME_MS)
        return FP_SRV_E_CONFIG;
    /* 204 and 304 never carry a body nor body framing (RFC 9110 §15.3.5, §15.4.5). */
    int no_body = cfg->status == 204 || cfg->status == 304;
    if (no_body && (cfg->echo || cfg->chunked || cfg->body_size)) return FP_SRV_E_CONFIG;
    if (!cfg->tls && (cfg->tls_min || cfg->tls_max || cfg->client_ca_pem))
        return FP_SRV_E_CONFIG;
    int tmin = cfg->tls_min ? cfg->tls_min : FP_SRV_TLS_1_2;
    int tmax = cfg->tls_max ? cfg->tls_max : FP_SRV_TLS_1_3;
    if ((tmin != FP_SRV_TLS_1_2 && tmin != FP_SRV_TLS_1_3) ||
        (tmax != FP_SRV_TLS_1_2 && tmax != FP_SRV_TLS_1_3) || tmin > tmax)
        return FP_SRV_E_CONFIG;
    if (cfg->client_ca_pem &&
        (cfg->client_ca_pem_len == 0 || cfg->client_ca_pem_len > FP_SRV_MAX_CLIENT_CA))
        return FP_SRV_E_CONFIG;
    return 0;
}

/* The connection header of variant v: HTTP/1.1 persists by default; an HTTP/1.0 client needs
 * "keep-alive" said explicitly (RFC 9112 §9.3). */
static const char *const CONN_HDR[4] = {
    "", "Connection: close\r\n", "Connection: keep-alive\r\n", "Connection: close\r\n"};

/* Writes the head of variant v for a body of body_len bytes (body_len < 0: no body framing,
 * for 204/304) into dst (NULL: just count). HTTP/1.1 variants use chunked when configured. */
static size_t build_head(const fp_server *srv, char *dst, int v, int64_t body_len) {
    char frame[64];
    size_t flen = 0;
    if (body_len >= 0) {
        if (srv->chunked && !(v & 2))
            flen = (size_t)snprintf(frame, sizeof frame, "Transfer-Encoding: chunked\r\n");
        else
            flen = (size_t)snprintf(frame, sizeof frame, "Content-Length: %lld\r\n",
                                    (long long)body_len);
    }
    size_t clen = strlen(CONN_HDR[v]);
    size_t total = srv->common_len + clen + flen + 2;
    if (dst) {
        memcpy(dst, srv->common, srv->common_len);
        memcpy(dst + srv->common_len, CONN_HDR[v], clen);
        memcpy(dst + srv->common_len + clen, frame, flen);
        memcpy(dst + total - 2, "\r\n", 2);
    }
    return total;
}

static int build_responses(fp_server *srv, const fp_server_config *cfg) {
    int has_ct = 0;
    if (cfg->headers_len && check_header_block(cfg->headers, cfg->headers_len, &has_ct) < 0)
        return FP_SRV_E_CONFIG;
    const char *ct = has_ct || srv->no_body ? ""
                     : srv->echo           ? "Content-Type: application/octet-stream\r\n"
                                           : "Content-Type: application/json\r\n";
    char line[64];
    int llen = snprintf(line, sizeof line, "HTTP/1.1 %d %s\r\n", cfg->status,
                        reason_phrase(cfg->status));
    srv->common_len = (size_t)llen + cfg->headers_len + strlen(ct);
    srv->common = malloc(srv->common_len);
    if (!srv->common) return FP_SRV_E_NOMEM;
    memcpy(srv->common, line, (size_t)llen);
    if (cfg->headers_len) memcpy(srv->common + llen, cfg->headers, cfg->headers_len);
    memcpy(srv->common + llen + cfg->headers_len, ct, strlen(ct));
    if (srv->echo) return 0; /* echo heads depend on each request's length */

    srv->raw_len = srv->no_body ? 0 : cfg->body_size;
    srv->raw_body = malloc(srv->raw_len ? srv->raw_len : 1);
    if (!srv->raw_body) return FP_SRV_E_NOMEM;
    if (cfg->body)
        memcpy(srv->raw_body, cfg->body, srv->raw_len);
    else
        fill_json(srv->raw_body, srv->raw_len);
    int64_t blen = srv->no_body ? -1 : (int64_t)srv->raw_len;
    for (int v = 0; v < 4; v++) {
        srv->head_lens[v] = build_head(srv, NULL, v, blen);
        srv->heads[v] = malloc(srv->head_lens[v]);
        if (!srv->heads[v]) return FP_SRV_E_NOMEM;
        build_head(srv, srv->heads[v], v, blen);
    }
    srv->enc_len = srv->chunked ? chunked_size(srv->raw_len, srv->chunk_size) : srv->raw_len;
    srv->full0_len = srv->head_lens[0] + srv->enc_len;
    srv->full0 = malloc(srv->full0_len);
    if (!srv->full0) return FP_SRV_E_NOMEM;
    memcpy(srv->full0, srv->heads[0], srv->head_lens[0]);
    if (srv->chunked)
        chunked_encode(srv->full0 + srv->head_lens[0], srv->raw_body, srv->raw_len,
                       srv->chunk_size);
    else if (srv->raw_len)
        memcpy(srv->full0 + srv->head_lens[0], srv->raw_body, srv->raw_len);
    srv->enc_body = srv->full0 + srv->head_lens[0];
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* certificates and TLS context                                                             */
/* ---------------------------------------------------------------------------------------- */

static int add_ext(X509 *issuer, X509 *subject, int nid, const char *value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, subject, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext) return -1;
    int ok = X509_add_ext(subject, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A certificate skeleton: v3, random 127-bit serial (positive, RFC 5280 §4.1.2.2), valid
 * from an hour ago (tolerates clock skew between the client's view and ours) for 30 days. */
static X509 *new_cert(EVP_PKEY *key, const char *cn) {
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    X509_NAME *name;
    if (!x || !bn) goto fail;
    if (!X509_set_version(x, 2)) goto fail;
    if (!BN_rand(bn, 127, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY)) goto fail;
    if (!BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x))) goto fail;
    if (!X509_gmtime_adj(X509_getm_notBefore(x), -3600)) goto fail;
    if (!X509_gmtime_adj(X509_getm_notAfter(x), 30L * 86400)) goto fail;
    if (!X509_set_pubkey(x, key)) goto fail;
    name = X509_get_subject_name(x);
    if (!X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"fastpool",
                                    -1, -1, 0) ||
        !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1,
                                    -1, 0))
        goto fail;
    BN_free(bn);
    return x;
fail:
    BN_free(bn);
    X509_free(x);
    return NULL;
}

/* Makes the ephemeral CA and the server certificate it signs (both EC P-256, ECDSA-SHA256),
 * installs certificate and key in ctx and keeps the CA's PEM. The extensions are the ones a
 * strict verifier (X509_V_FLAG_X509_STRICT, Python 3.13's default) insists on: key
 * identifiers, key usage, basic constraints marked critical on the CA. */
static int make_certs(fp_server *srv) {
    int rc = FP_SRV_E_TLS;
    EVP_PKEY *ca_key = EVP_EC_gen("P-256");
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *ca = NULL, *crt = NULL;
    BIO *mem = NULL;
    if (!ca_key || !key) goto out;

    ca = new_cert(ca_key, "fastpool embedded test CA");
    if (!ca || !X509_set_issuer_name(ca, X509_get_subject_name(ca))) goto out;
    if (add_ext(ca, ca, NID_basic_constraints, "critical,CA:TRUE") ||
        add_ext(ca, ca, NID_key_usage, "critical,keyCertSign,cRLSign") ||
        add_ext(ca, ca, NID_subject_key_identifier, "hash") ||
        add_ext(ca, ca, NID_authority_key_identifier, "keyid:always"))
        goto out;
    if (!X509_sign(ca, ca_key, EVP_sha256())) goto out;

    crt = new_cert(key, "localhost");
    if (!crt || !X509_set_issuer_name(crt, X509_get_subject_name(ca))) goto out;
    if (add_ext(ca, crt, NID_basic_constraints, "critical,CA:FALSE") ||
        add_ext(ca, crt, NID_key_usage, "critical,digitalSignature") ||
        add_ext(ca, crt, NID_ext_key_usage, "serverAuth") ||
        add_ext(ca, crt, NID_subject_alt_name, "DNS:localhost,IP:127.0.0.1,IP:::1") ||
        add_ext(ca, crt, NID_subject_key_identifier, "hash") ||
        add_ext(ca, crt, NID_authority_key_identifier, "keyid:always"))
        goto out;
    if (!X509_sign(crt, ca_key, EVP_sha256())) goto out;

    if (SSL_CTX_use_certificate(srv->ssl_ctx, crt) != 1 ||
        SSL_CTX_use_PrivateKey(srv->ssl_ctx, key) != 1 ||
        SSL_CTX_check_private_key(srv->ssl_ctx) != 1)
        goto out;

    mem = BIO_new(BIO_s_mem());
    if (!mem || PEM_write_bio_X509(mem, ca) != 1) goto out;
    char *data = NULL;
    long n = BIO_get_mem_data(mem, &data);
    if (n <= 0) goto out;
    srv->ca_pem = malloc((size_t)n + 1);
    if (!srv->ca_pem) {
        rc = FP_SRV_E_NOMEM;
        goto out;
    }
    memcpy(srv->ca_pem, data, (size_t)n);
    srv->ca_pem[n] = '\0';
    srv->ca_pem_len = (size_t)n;
    rc = 0;
out:
    BIO_free(mem);
    X509_free(crt);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(ca_key);
    return rc;
}

/* ALPN (RFC 7301): only "http/1.1" is spoken; a client offering other protocols only gets the
 * no_application_protocol alert (§3.2). Clients that send no ALPN never get here. */
static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                       const unsigned char *in, unsigned int inlen, void *arg) {
    (void)ssl;
    (void)arg;
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int n = in[i];
        if (i + 1 + n > inlen) break;
        if (n == 8 && memcmp(in + i + 1, "http/1.1", 8) == 0) {
            *out = in + i + 1;
            *outlen = (unsigned char)n;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

static int load_client_ca(SSL_CTX *ctx, const char *pem, size_t len) {
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int count = 0, rc = 0;
    X509 *x;
    if (!bio) return FP_SRV_E_NOMEM;
    while ((x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        /* the store verifies the chain; the client CA list tells the client which of its
         * certificates to send (the CertificateRequest's certificate_authorities) */
        if (X509_STORE_add_cert(store, x) != 1 || SSL_CTX_add_client_CA(ctx, x) != 1) rc = -1;
        X509_free(x);
        count++;
    }
    BIO_free(bio);
    ERR_clear_error(); /* the read that ends the loop leaves "no start line" queued */
    if (rc < 0) return FP_SRV_E_TLS;
    return count ? 0 : FP_SRV_E_CLIENT_CA;
}

static int build_tls(fp_server *srv, const fp_server_config *cfg) {
    static const unsigned char sid_ctx[] = "fastpool-fp_server";
    srv->ssl_ctx = SSL_CTX_new(TLS_server_method());
    if (!srv->ssl_ctx) return FP_SRV_E_TLS;
    SSL_CTX *ctx = srv->ssl_ctx;
    if (!SSL_CTX_set_min_proto_version(ctx, cfg->tls_min ? cfg->tls_min : TLS1_2_VERSION) ||
        !SSL_CTX_set_max_proto_version(ctx, cfg->tls_max ? cfg->tls_max : TLS1_3_VERSION))
        return FP_SRV_E_TLS;
    /* Renegotiation would let SSL_write want a read mid-stream and costs a handshake per
     * request for a client that abuses it; an EOF without close_notify is how most HTTP
     * clients close, and is reported as a plain EOF instead of an error. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Partial writes let one SSL_write stop at a full socket buffer instead of buffering the
     * whole response; the output buffer may move between retries because it grows when
     * pipelined responses are appended while a write is blocked. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* Read-ahead makes one read() take everything the kernel has (a request usually fits one
     * record) instead of a 5-byte header read followed by a body read; the bytes it
     * buffers beyond one record are found with SSL_has_pending, since epoll cannot see them. */
    SSL_CTX_set_read_ahead(ctx, 1);
    /* Resumption: a server-side session cache for TLS 1.2 session IDs and stateless tickets
     * (the default, with keys per SSL_CTX) for 1.2 and 1.3. The session id context is
     * mandatory once client certificates are verified, or resumption fails (OpenSSL refuses
     * to resume a session that could have come from another context). */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
    SSL_CTX_sess_set_cache_size(ctx, 1024);
    if (!SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1)) return FP_SRV_E_TLS;
    SSL_CTX_set_alpn_select_cb(ctx, alpn_select, NULL);
    if (cfg->client_ca_pem) {
        int rc = load_client_ca(ctx, cfg->client_ca_pem, cfg->client_ca_pem_len);
        if (rc < 0) return rc;
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    return make_certs(srv);
}

/* ---------------------------------------------------------------------------------------- */
/* request parsing (RFC 9112 §2-§6, server side, only what this server needs)              */
/* ---------------------------------------------------------------------------------------- */

/* Looks for the end of the head in p[0..n) starting at *scan. Returns the head length, or 0
 * with *scan advanced past what cannot be the end (so a trickled head is not rescanned). A
 * line may end in CRLF or a bare LF (RFC 9112 §2.2). */
static size_t find_head_end(const char *p, size_t n, size_t *scan) {
    size_t i = *scan;
    while (i < n) {
        const char *lf = memchr(p + i, '\n', n - i);
        if (!lf) {
            *scan = n;
            return 0;
        }
        size_t k = (size_t)(lf - p);
        if (k + 1 >= n) {
            *scan = k;
            return 0;
        }
        if (p[k + 1] == '\n') return k + 2;
        if (p[k + 1] == '\r') {
            if (k + 2 >= n) {
                *scan = k;
                return 0;
            }
            if (p[k + 2] == '\n') return k + 3;
        }
        i = k + 1;
    }
    *scan = n;
    return 0;
}

/* The content of the line starting at p[*pos], without its line ending. The head is known
 * complete (it ends in an empty line), so an LF is always ahead; a CR elsewhere than before
 * the LF stays in the content, where the byte rules reject it. Advances *pos past the LF. */
static void next_line(const char *p, size_t *pos, const char **line, size_t *len) {
    const char *start = p + *pos;
    size_t i = *pos;
    while (p[i] != '\n') i++;
    size_t end = i;
    if (end > *pos && p[end - 1] == '\r') end--;
    *line = start;
    *len = end - *pos;
    *pos = i + 1;
}

/* Parses a complete head p[0..head_len). Returns 0 or PR_BAD / PR_NOT_IMPL. */
static int parse_head(const char *p, size_t head_len, srv_req *r) {
    size_t pos = 0, len, i;
    const char *line;
    memset(r, 0, sizeof *r);
    r->head_len = head_len;

    /* request-line = method SP request-target SP HTTP-version (RFC 9112 §3) */
    next_line(p, &pos, &line, &len);
    for (i = 0; i < len && is_tchar((unsigned char)line[i]); i++) {}
    if (i == 0 || i >= len || line[i] != ' ') return PR_BAD;
    r->head_only = (i == 4 && memcmp(line, "HEAD", 4) == 0);
    size_t t = ++i;
    for (; i < len && line[i] > 0x20 && line[i] < 0x7f; i++) {}
    if (i == t || i >= len || line[i] != ' ') return PR_BAD;
    i++;
    if (len - i != 8 || memcmp(line + i, "HTTP/1.", 7) != 0) return PR_BAD;
    if (line[i + 7] == '0')
        r->http10 = 1;
    else if (line[i + 7] != '1')
        return PR_BAD;

    int hosts = 0, cls = 0, te = 0;
    for (;;) {
        next_line(p, &pos, &line, &len);
        if (len == 0) break;
        /* obs-fold and whitespace before the colon are rejected (RFC 9112 §5.1, §5.2) */
        for (i = 0; i < len && is_tchar((unsigned char)line[i]); i++) {}
        if (i == 0 || i >= len || line[i] != ':') return PR_BAD;
        const char *name = line;
        size_t nlen = i;
        size_t v = i + 1, ve = len;
        for (size_t k = v; k < len; k++)
            if (!is_value_byte((unsigned char)line[k])) return PR_BAD;
        while (v < ve && (line[v] == ' ' || line[v] == '\t')) v++;
        while (ve > v && (line[ve - 1] == ' ' || line[ve - 1] == '\t')) ve--;
        const char *val = line + v;
        size_t vlen = ve - v;

        if (ieq(name, nlen, "content-length")) {
            /* 1*DIGIT only; a repeated field is refused rather than compared, which closes
             * the request-smuggling door that differing copies open (RFC 9112 §6.3) */
            if (cls++ || vlen == 0 || vlen > 18) return PR_BAD;
            uint64_t cl = 0;
            for (size_t k = 0; k < vlen; k++) {
                if (val[k] < '0' || val[k] > '9') return PR_BAD;
                cl = cl * 10 + (uint64_t)(val[k] - '0');
            }
            r->content_length = cl;
        } else if (ieq(name, nlen, "transfer-encoding")) {
            te = 1;
        } else if (ieq(name, nlen, "host")) {
            hosts++;
        } else if (ieq(name, nlen, "connection")) {
            size_t k = 0;
            while (k < vlen) {
                while (k < vlen && (val[k] == ' ' || val[k] == '\t' || val[k] == ',')) k++;
                size_t s = k;
                while (k < vlen && val[k] != ',' && val[k] != ' ' && val[k] != '\t') k++;
                if (ieq(val + s, k - s, "close")) r->conn_close = 1;
                if (ieq(val + s, k - s, "keep-alive")) r->conn_keep_alive = 1;
            }
        }
    }
    /* HTTP/1.1 requests carry exactly one Host (RFC 9112 §3.2); both framings at once is the
     * classic smuggling shape (§6.3 allows rejecting it); a transfer coding we do not
     * implement gets 501 (§6.1). */
    if ((!r->http10 && hosts != 1) || hosts > 1) return PR_BAD;
    if (te) return cls ? PR_BAD : PR_NOT_IMPL;
    return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* timers: a binary min-heap of deadlines, one slot per connection                          */
/* ---------------------------------------------------------------------------------------- */

static void heap_place(fp_server *srv, int i, srv_timer t) {
    srv->heap[i] = t;
    t.c->heap_idx = i;
}

static void heap_up(fp_server *srv, int i) {
    srv_timer t = srv->heap[i];
    while (i > 0) {
        int parent = (i - 1) / 2;
        if (srv->heap[parent].when <= t.when) break;
        heap_place(srv, i, srv->heap[parent]);
        i = parent;
    }
    heap_place(srv, i, t);
}

static void heap_down(fp_server *srv, int i) {
    srv_timer t = srv->heap[i];
    for (;;) {
        int child = 2 * i + 1;
        if (child >= srv->heap_n) break;
        if (child + 1 < srv->heap_n && srv->heap[child + 1].when < srv->heap[child].when)
            child++;
        if (srv->heap[child].when >= t.when) break;
        heap_place(srv, i, srv->heap[child]);
        i = child;
    }
    heap_place(srv, i, t);
}

static void heap_remove(fp_server *srv, srv_conn *c) {
    int i = c->heap_idx;
    if (i < 0) return;
    c->heap_idx = -1;
    srv->heap_n--;
    if (i == srv->heap_n) return;
    srv_timer last = srv->heap[srv->heap_n];
    heap_place(srv, i, last);
    heap_up(srv, i);
    heap_down(srv, last.c->heap_idx);
}

/* Arms c's timer slot. Moving a deadline later only updates c->deadline: the heap entry fires
 * at the old key and is re-keyed then, so the idle timer costs no heap work per request. */
static void timer_set(fp_server *srv, srv_conn *c, int kind, uint64_t when) {
    c->tk = (uint8_t)kind;
    c->deadline = when;
    if (c->heap_idx < 0) {
        int i = srv->heap_n++; /* at most one entry per connection: capacity MAX_CONNS */
        srv->heap[i].when = when;
        srv->heap[i].c = c;
        c->heap_idx = i;
        heap_up(srv, i);
    } else if (when < srv->heap[c->heap_idx].when) {
        srv->heap[c->heap_idx].when = when;
        heap_up(srv, c->heap_idx);
    }
}

/* Progress on c: push its idle deadline (unless a delay or linger owns the slot). */
static void touch(fp_server *srv, srv_conn *c) {
    if (srv->idle_ns && (c->tk == TK_NONE || c->tk == TK_IDLE))
        timer_set(srv, c, TK_IDLE, srv->now + srv->idle_ns);
}

/* ---------------------------------------------------------------------------------------- */
/* connections                                                                              */
/* ---------------------------------------------------------------------------------------- */

static size_t out_pending(const srv_conn *c) { return c->zlen + (c->olen - c->opos); }

static void conn_close(fp_server *srv, srv_conn *c) {
    heap_remove(srv, c);
    if (c->ssl) SSL_free(c->ssl);
    /* Deregister before closing: after a fork() the child holds a copy of this descriptor,
     * and epoll drops a registration only when every descriptor of the open file is closed,
     * so the closed (and freed) connection would go on getting events here. */
    epoll_ctl(srv->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->ibuf);
    free(c->obuf);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    srv->nconns--;
    free(c);
    CTR_ADD(srv, closed, 1);
}

/* One attempt at close_notify: the peer learns the close was deliberate (not a truncation
 * attack), and a socket buffer too full to take it is not worth waiting for. */
static void tls_close_notify(srv_conn *c) {
    if (c->ssl && c->state == CS_OPEN) {
        ERR_clear_error();
        SSL_shutdown(c->ssl);
        ERR_clear_error();
    }
}

/* After the final response: close_notify, FIN, then read and drop whatever the client still
 * sends until it closes or FP_SRV_LINGER_MS pass. Closing with unread input would make the
 * kernel send RST, which can destroy the response before the client reads it (RFC 9112 §9.6). */
static void conn_linger(fp_server *srv, srv_conn *c) {
    tls_close_notify(c);
    shutdown(c->fd, SHUT_WR);
    c->state = CS_LINGER;
    free(c->ibuf);
    free(c->obuf);
    c->ibuf = c->obuf = NULL;
    c->icap = c->ilen = c->ipos = c->ocap = c->olen = c->opos = 0;
    timer_set(srv, c, TK_LINGER, srv->now + (uint64_t)FP_SRV_LINGER_MS * NS_PER_MS);
}

/* Returns 0 (drained for now), or -1 when the client is gone and c must be closed. */
static int linger_read(srv_conn *c) {
    char sink[4096];
    for (int i = 0; i < 16; i++) { /* bounded: a client streaming at us must not starve others */
        ssize_t n = recv(c->fd, sink, sizeof sink, 0);
        if (n > 0) continue;
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return 0;
        return -1;
    }
    return 0;
}

/* Makes room for extra more output bytes in obuf (moving a pending zero-copy response into it
 * first, since output must stay in order). Returns 0 or -1 (allocation failed). */
static int out_reserve(srv_conn *c, size_t extra) {
    if (c->zlen) {
        const char *z = c->zptr;
        size_t zl = c->zlen;
        c->zlen = 0;
        c->zptr = NULL;
        if (out_reserve(c, zl + extra) < 0) return -1;
        memcpy(c->obuf + c->olen, z, zl);
        c->olen += zl;
        return 0;
    }
    if (c->opos == c->olen) c->opos = c->olen = 0;
    if (c->ocap - c->olen >= extra) return 0;
    if (c->opos) {
        memmove(c->obuf, c->obuf + c->opos, c->olen - c->opos);
        c->olen -= c->opos;
        c->opos = 0;
        if (c->ocap - c->olen >= extra) return 0;
    }
    size_t cap = c->ocap ? c->ocap * 2 : 4096;
    if (cap < c->olen + extra) cap = c->olen + extra;
    char *nb = realloc(c->obuf, cap);
    if (!nb) return -1;
    c->obuf = nb;
    c->ocap = cap;
    return 0;
}

static int out_copy(srv_conn *c, const char *p, size_t n) {
    if (out_reserve(c, n) < 0) return -1;
    memcpy(c->obuf + c->olen, p, n);
    c->olen += n;
    return 0;
}

/* Queues bytes that live as long as the server: by reference when nothing else is pending
 * (the common case, one request per read: no copy at all), else copied behind the rest. */
static int out_static(srv_conn *c, const char *p, size_t n) {
    if (out_pending(c) == 0) {
        c->zptr = p;
        c->zlen = n;
        return 0;
    }
    return out_copy(c, p, n);
}

static const char RESP_400[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\n"
    "Connection: close\r\n\r\nbad request\n";
static const char RESP_413[] =
    "HTTP/1.1 413 Content Too Large\r\nContent-Type: text/plain\r\nContent-Length: 18\r\n"
    "Connection: close\r\n\r\ncontent too large\n";
static const char RESP_501[] =
    "HTTP/1.1 501 Not Implemented\r\nContent-Type: text/plain\r\nContent-Length: 35\r\n"
    "Connection: close\r\n\r\ntransfer codings are not supported\n";

/* Answers a request the server refuses, then closes. */
static int respond_error(fp_server *srv, srv_conn *c, int pr) {
    const char *r = pr == PR_NOT_IMPL ? RESP_501 : pr == PR_TOO_LARGE ? RESP_413 : RESP_400;
    size_t n = pr == PR_NOT_IMPL ? sizeof RESP_501 - 1
               : pr == PR_TOO_LARGE ? sizeof RESP_413 - 1
                                    : sizeof RESP_400 - 1;
    CTR_ADD(srv, bad_requests, 1);
    c->close_after_flush = 1;
    return out_static(c, r, n);
}

/* Queues the response to c->req; data is the request's bytes (echo mode) or NULL. */
static int respond(fp_server *srv, srv_conn *c, const char *data) {
    const srv_req *r = &c->req;
    c->served++;
    CTR_ADD(srv, requests, 1);
    int client_close = r->conn_close || (r->http10 && !r->conn_keep_alive);
    int last = srv->close_after && c->served >= srv->close_after;
    /* a close the client asked for is always announced; the server's own (close_after) is
     * announced unless the test wants the silent close a keep-alive client must survive */
    int announce = client_close || (last && !srv->close_silently);
    int v = (r->http10 ? 2 : 0) | (announce ? 1 : 0);
    if (client_close || last) c->close_after_flush = 1;

    if (srv->echo) {
        size_t total = r->head_len + (size_t)r->content_length;
        size_t hlen = build_head(srv, NULL, v, (int64_t)total);
        int chunk = srv->chunked && !r->http10;
        size_t blen = r->head_only ? 0 : chunk ? chunked_size(total, srv->chunk_size) : total;
        if (out_reserve(c, hlen + blen) < 0) return -1;
        c->olen += build_head(srv, c->obuf + c->olen, v, (int64_t)total);
        if (r->head_only) return 0;
        if (chunk) {
            c->olen += chunked_encode(c->obuf + c->olen, data, total, srv->chunk_size);
        } else {
            memcpy(c->obuf + c->olen, data, total);
            c->olen += total;
        }
        return 0;
    }
    if (v == 0 && !r->head_only) return out_static(c, srv->full0, srv->full0_len);
    if (out_static(c, srv->heads[v], srv->head_lens[v]) < 0) return -1;
    if (r->head_only || srv->no_body) return 0;
    if (r->http10) return out_copy(c, srv->raw_body, srv->raw_len);
    return out_copy(c, srv->enc_body, srv->enc_len);
}

/* Parses and answers the complete requests in the input, in order, until the input runs out,
 * a response is the last one, a delay holds the next one, or pending output reaches the high
 * water mark. Returns the number of requests consumed (>= 0) or -1 (allocation failed). */
static int conn_process(fp_server *srv, srv_conn *c) {
    int done = 0;
    while (!c->close_after_flush && !c->held && out_pending(c) < OUT_HIGH_WATER) {
        if (!c->has_req) {
            /* empty lines before a request-line are ignored (RFC 9112 §2.2) */
            while (c->ipos < c->ilen && (c->ibuf[c->ipos] == '\n' ||
                                         (c->ibuf[c->ipos] == '\r' && c->ipos + 1 < c->ilen &&
                                          c->ibuf[c->ipos + 1] == '\n'))) {
                c->ipos += c->ibuf[c->ipos] == '\r' ? 2 : 1;
                c->scan = 0;
            }
            size_t avail = c->ilen - c->ipos;
            if (avail == 0) break;
            size_t head_len = find_head_end(c->ibuf + c->ipos, avail, &c->scan);
            int pr = 0;
            if (head_len == 0 && avail < FP_SRV_MAX_REQUEST_HEAD) break; /* need more */
            if (head_len == 0 || head_len > FP_SRV_MAX_REQUEST_HEAD)
                pr = PR_BAD;
            else
                pr = parse_head(c->ibuf + c->ipos, head_len, &c->req);
            if (pr == 0 && srv->echo &&
                c->req.content_length > FP_SRV_MAX_ECHO_REQUEST - head_len)
                pr = PR_TOO_LARGE;
            if (pr == 0 && !srv->echo && c->req.content_length > FP_SRV_MAX_REQUEST_BODY)
                pr = PR_TOO_LARGE;
            if (pr < 0) return respond_error(srv, c, pr) < 0 ? -1 : done + 1;
            c->has_req = 1;
            c->scan = 0;
            if (!srv->echo) {
                c->ipos += head_len;
                c->discard = c->req.content_length;
            }
        }
        /* the body: echo keeps it in the buffer (the response repeats it); otherwise it is
         * skipped as it arrives, so its size does not matter */
        if (srv->echo) {
            if (c->ilen - c->ipos < c->req.head_len + c->req.content_length) break;
        } else {
            size_t avail = c->ilen - c->ipos;
            size_t take = c->discard < avail ? (size_t)c->discard : avail;
            c->ipos += take;
            c->discard -= take;
            if (c->discard) break;
        }
        if (srv->delay_ns && !c->delay_done) {
            c->held = 1;
            timer_set(srv, c, TK_DELAY, srv->now + srv->delay_ns);
            break;
        }
        c->delay_done = 0;
        if (respond(srv, c, srv->echo ? c->ibuf + c->ipos : NULL) < 0) return -1;
        if (srv->echo) c->ipos += c->req.head_len + (size_t)c->req.content_length;
        c->has_req = 0;
        done++;
    }
    if (c->ipos == c->ilen) c->ipos = c->ilen = 0;
    /* the client sent all it will: what is incomplete now never will be */
    if (c->peer_eof && !c->held && out_pending(c) < OUT_HIGH_WATER) c->close_after_flush = 1;
    return done;
}

/* How much the input may still take: compacts, allocates or grows ibuf as the current
 * request needs, within the head and echo limits. */
static size_t input_room(fp_server *srv, srv_conn *c) {
    if (c->ilen < c->icap) return c->icap - c->ilen;
    if (c->ipos) {
        memmove(c->ibuf, c->ibuf + c->ipos, c->ilen - c->ipos);
        c->ilen -= c->ipos;
        c->ipos = 0;
        return c->icap - c->ilen;
    }
    size_t need = IBUF_INITIAL;
    if (c->icap) {
        /* full from ipos 0: one request (head, or echo head + body) does not fit yet */
        size_t limit = FP_SRV_MAX_REQUEST_HEAD;
        if (srv->echo && c->has_req) limit = c->req.head_len + (size_t)c->req.content_length;
        if (c->icap >= limit) return 0;
        need = c->icap * 2 < limit ? c->icap * 2 : limit;
    }
    char *nb = realloc(c->ibuf, need);
    if (!nb) return 0;
    c->ibuf = nb;
    c->icap = need;
    return c->icap - c->ilen;
}

static int conn_can_read(const srv_conn *c) {
    return c->state == CS_OPEN && !c->peer_eof && !c->close_after_flush && !c->held &&
           out_pending(c) < OUT_HIGH_WATER;
}

/* One read (plain), or one SSL_read plus the records read-ahead already holds. Returns bytes
 * read (>= 0; EOF sets peer_eof) or -1 when the connection failed. */
static ssize_t conn_read(fp_server *srv, srv_conn *c) {
    ssize_t total = 0;
    for (;;) {
        size_t room = input_room(srv, c);
        if (room == 0) {
            /* only reachable when the buffer could not grow (allocation failure): processing
             * frees room in every other case before a read is attempted, and a readable fd
             * that is never read would spin the level-triggered loop */
            if (total == 0) return -1;
            break;
        }
        if (!c->ssl) {
            ssize_t n = recv(c->fd, c->ibuf + c->ilen, room, 0);
            if (n > 0) {
                c->ilen += (size_t)n;
                total += n;
            } else if (n == 0) {
                c->peer_eof = 1;
            } else if (errno == EINTR) {
                continue;
            } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
                return -1;
            }
            break; /* level-triggered epoll reports what this read left behind */
        }
        ERR_clear_error();
        int n = SSL_read(c->ssl, c->ibuf + c->ilen, room > INT_MAX ? INT_MAX : (int)room);
        if (n > 0) {
            c->rd_wants_wr = 0;
            c->ilen += (size_t)n;
            total += n;
            if (SSL_has_pending(c->ssl)) continue;
            break;
        }
        int err = SSL_get_error(c->ssl, n);
        if (err == SSL_ERROR_WANT_READ) break;
        if (err == SSL_ERROR_WANT_WRITE) {
            c->rd_wants_wr = 1;
            break;
        }
        if (err == SSL_ERROR_ZERO_RETURN) {
            c->peer_eof = 1;
            break;
        }
        ERR_clear_error();
        return -1;
    }
    if (total) {
        CTR_ADD(srv, bytes_in, total);
        touch(srv, c);
    }
    return total;
}

/* Writes pending output until done or the socket is full. Returns 1 (all written), 0 (blocked:
 * wr_blocked or wr_wants_rd set) or -1 (the connection failed). */
static int conn_flush(fp_server *srv, srv_conn *c) {
    size_t wrote = 0;
    int rc = 1;
    while (out_pending(c)) {
        const char *p = c->zlen ? c->zptr : c->obuf + c->opos;
        size_t len = c->zlen ? c->zlen : c->olen - c->opos;
        ssize_t n;
        if (!c->ssl) {
            n = send(c->fd, p, len, MSG_NOSIGNAL);
            if (n < 0) {
                if (errno == EINTR) continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    c->wr_blocked = 1;
                    rc = 0;
                    break;
                }
                rc = -1;
                break;
            }
        } else {
            ERR_clear_error();
            int r = SSL_write(c->ssl, p, len > INT_MAX ? INT_MAX : (int)len);
            if (r <= 0) {
                int err = SSL_get_error(c->ssl, r);
                if (err == SSL_ERROR_WANT_WRITE) {
                    c->wr_blocked = 1;
                    rc = 0;
                } else if (err == SSL_ERROR_WANT_READ) {
                    c->wr_wants_rd = 1;
                    rc = 0;
                } else {
                    ERR_clear_error();
                    rc = -1;
                }
                break;
            }
            n = r;
        }
        wrote += (size_t)n;
        if (c->zlen) {
            c->zptr += n;
            c->zlen -= (size_t)n;
        } else {
            c->opos += (size_t)n;
        }
    }
    if (wrote) {
        CTR_ADD(srv, bytes_out, wrote);
        touch(srv, c);
    }
    if (rc == 1) {
        c->wr_blocked = c->wr_wants_rd = 0;
        c->opos = c->olen = 0;
        if (c->ocap > BUF_KEEP) {
            free(c->obuf);
            c->obuf = NULL;
            c->ocap = 0;
        }
        if (c->icap > BUF_KEEP && c->ilen == 0) {
            free(c->ibuf);
            c->ibuf = NULL;
            c->icap = 0;
        }
    }
    return rc;
}

static void conn_interest(fp_server *srv, srv_conn *c) {
    uint32_t want;
    if (c->state == CS_HANDSHAKE)
        want = c->hs_want;
    else if (c->state == CS_LINGER)
        want = EPOLLIN;
    else
        want = ((conn_can_read(c) || c->wr_wants_rd) ? EPOLLIN : 0) |
               ((c->wr_blocked || c->rd_wants_wr) ? EPOLLOUT : 0);
    if (want == c->events) return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    epoll_ctl(srv->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
    c->events = want;
}

/* Returns 1 (done), 0 (waiting: hs_want says for what) or -1 (failed). */
static int conn_handshake(fp_server *srv, srv_conn *c) {
    ERR_clear_error();
    int r = SSL_do_handshake(c->ssl);
    if (r == 1) {
        c->state = CS_OPEN;
        CTR_ADD(srv, tls_handshakes, 1);
        if (SSL_session_reused(c->ssl)) CTR_ADD(srv, tls_resumed, 1);
        touch(srv, c);
        return 1;
    }
    int err = SSL_get_error(c->ssl, r);
    if (err == SSL_ERROR_WANT_READ) {
        c->hs_want = EPOLLIN;
        return 0;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        c->hs_want = EPOLLOUT;
        return 0;
    }
    ERR_clear_error();
    return -1;
}

/* Drives an open connection: read (when readable), answer, write, repeat while that makes
 * progress. In the common case that is one read and one write. */
static void conn_run(fp_server *srv, srv_conn *c, int readable) {
    for (int round = 0;; round++) {
        int progress = 0;
        /* decrypted or read-ahead bytes inside OpenSSL are invisible to epoll */
        int tls_buffered = c->ssl && SSL_has_pending(c->ssl);
        if ((readable || tls_buffered) && conn_can_read(c)) {
            readable = 0;
            ssize_t n = conn_read(srv, c);
            if (n < 0) {
                conn_close(srv, c);
                return;
            }
            if (n > 0 || c->peer_eof) progress = 1;
        }
        int done = conn_process(srv, c);
        if (done < 0) {
            conn_close(srv, c);
            return;
        }
        if (done > 0) progress = 1;
        if (out_pending(c) && !c->wr_blocked && !c->wr_wants_rd) {
            if (conn_flush(srv, c) < 0) {
                conn_close(srv, c);
                return;
            }
        }
        if (c->close_after_flush && !out_pending(c)) {
            conn_linger(srv, c);
            break;
        }
        /* the bound only guards against a logic error turning into a spin; progress needs
         * input, and input is bounded by the buffers */
        if (!progress || round > 1024) break;
    }
    conn_interest(srv, c);
}

static void conn_event(fp_server *srv, srv_conn *c, uint32_t ev) {
    if (ev & (EPOLLERR | EPOLLHUP)) {
        /* reset, or both directions shut: nothing we send can arrive any more */
        conn_close(srv, c);
        return;
    }
    if (c->state == CS_LINGER) {
        if (linger_read(c) < 0) conn_close(srv, c);
        return;
    }
    if (c->state == CS_HANDSHAKE) {
        int r = conn_handshake(srv, c);
        if (r < 0) {
            conn_close(srv, c);
            return;
        }
        if (r == 0) {
            conn_interest(srv, c);
            return;
        }
        /* the client's first request may have arrived with its Finished and already be in
         * OpenSSL's read-ahead buffer: read now rather than wait for an event that may not come */
        conn_run(srv, c, 1);
        return;
    }
    if (ev & EPOLLOUT) c->wr_blocked = 0;
    if ((ev & EPOLLIN) && c->wr_wants_rd) c->wr_wants_rd = 0;
    conn_run(srv, c, (ev & EPOLLIN) || ((ev & EPOLLOUT) && c->rd_wants_wr));
}

static void accept_all(fp_server *srv) {
    for (int i = 0; i < ACCEPT_BATCH; i++) {
        int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO) continue;
            if ((errno == EMFILE || errno == ENFILE) && srv->spare_fd >= 0) {
                /* out of descriptors: the pending connection would keep the listener readable
                 * and the loop spinning; free the spare, accept and drop it, take it back */
                close(srv->spare_fd);
                fd = accept4(srv->listen_fd, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) close(fd);
                srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
                continue;
            }
            return; /* EAGAIN, or a transient shortage (ENOBUFS, ENOMEM): next event */
        }
        if (srv->nconns >= FP_SRV_MAX_CONNS) {
            close(fd);
            continue;
        }
        /* responses are written whole; Nagle would hold a response's tail for the client's
         * delayed ACK (up to 40 ms on Linux) */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        srv_conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->heap_idx = -1;
        c->state = CS_OPEN;
        c->events = EPOLLIN;
        if (srv->ssl_ctx) {
            c->ssl = SSL_new(srv->ssl_ctx);
            if (!c->ssl || SSL_set_fd(c->ssl, fd) != 1) {
                SSL_free(c->ssl);
                ERR_clear_error();
                free(c);
                close(fd);
                continue;
            }
            SSL_set_accept_state(c->ssl);
            c->state = CS_HANDSHAKE;
            c->hs_want = EPOLLIN;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
            SSL_free(c->ssl);
            free(c);
            close(fd);
            continue;
        }
        c->next = srv->conns;
        if (srv->conns) srv->conns->prev = c;
        srv->conns = c;
        srv->nconns++;
        CTR_ADD(srv, accepted, 1);
        touch(srv, c);
    }
}

static void timers_run(fp_server *srv) {
    while (srv->heap_n && srv->heap[0].when <= srv->now) {
        srv_conn *c = srv->heap[0].c;
        if (c->tk == TK_NONE) {
            heap_remove(srv, c);
            continue;
        }
        if (c->deadline > srv->now) { /* pushed later since the entry was keyed: re-key */
            srv->heap[0].when = c->deadline;
            heap_down(srv, 0);
            continue;
        }
        heap_remove(srv, c);
        int kind = c->tk;
        c->tk = TK_NONE;
        if (kind == TK_DELAY) {
            c->held = 0;
            c->delay_done = 1;
            touch(srv, c);
            conn_run(srv, c, 0);
        } else {
            /* idle (keepalive_timeout-like: no FIN-and-drain, just close) or linger over */
            if (kind == TK_IDLE) tls_close_notify(c);
            conn_close(srv, c);
        }
    }
}

static void *loop_main(void *arg) {
    fp_server *srv = arg;
    struct epoll_event evs[EPOLL_BATCH];
    int running = 1;
    srv->now = mono_ns();
    while (running) {
        int timeout = -1;
        if (srv->heap_n) {
            uint64_t now = mono_ns(), when = srv->heap[0].when;
            /* round up: waking before the deadline would only cost another wait */
            uint64_t ms = when > now ? (when - now + NS_PER_MS - 1) / NS_PER_MS : 0;
            timeout = ms > INT_MAX ? INT_MAX : (int)ms;
        }
        int n = epoll_wait(srv->epoll_fd, evs, EPOLL_BATCH, timeout);
        if (n < 0) {
            if (errno == EINTR) continue;
            break; /* EBADF/EINVAL: the descriptors are gone, nothing left to serve */
        }
        srv->now = mono_ns();
        for (int i = 0; i < n; i++) {
            void *tag = evs[i].data.ptr;
            if (tag == &srv->wake_fd)
                running = 0;
            else if (tag == &srv->listen_fd)
                accept_all(srv);
            else
                conn_event(srv, tag, evs[i].events);
        }
        if (running) timers_run(srv);
    }
    while (srv->conns) conn_close(srv, srv->conns);
    srv->heap_n = 0;
    OPENSSL_thread_stop(); /* this thread's error queue and per-thread OpenSSL state */
    return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* lifecycle                                                                                */
/* ---------------------------------------------------------------------------------------- */

static int open_listener(fp_server *srv, const fp_server_config *cfg, int *err_no) {
    int fam = cfg->ipv6 ? AF_INET6 : AF_INET;
    int fd = socket(fam, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) goto fail;
    srv->listen_fd = fd;
    int one = 1;
    /* a fixed port can be reused right after a previous server's connections in TIME_WAIT */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_storage ss;
    socklen_t slen;
    memset(&ss, 0, sizeof ss);
    if (cfg->ipv6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(cfg->port);
        a->sin6_addr = in6addr_loopback;
        slen = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(cfg->port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        slen = sizeof *a;
    }
    if (bind(fd, (struct sockaddr *)&ss, slen) < 0 || listen(fd, SOMAXCONN) < 0) goto fail;
    slen = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &slen) < 0) goto fail;
    srv->port = ntohs(cfg->ipv6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
fail:
    if (err_no) *err_no = errno;
    return FP_SRV_E_SOCKET;
}

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

static void close_descriptors(fp_server *srv) {
    close_fd(&srv->listen_fd);
    close_fd(&srv->wake_fd);
    close_fd(&srv->epoll_fd);
    close_fd(&srv->spare_fd);
}

int fp_server_create(const fp_server_config *cfg, fp_server **out, int *err_no) {
    if (err_no) *err_no = 0;
    *out = NULL;
    int rc = check_config(cfg);
    if (rc < 0) return rc;
    fp_server *srv = calloc(1, sizeof *srv);
    if (!srv) return FP_SRV_E_NOMEM;
    srv->listen_fd = srv->wake_fd = srv->epoll_fd = srv->spare_fd = -1;
    srv->echo = cfg->echo != 0;
    srv->chunked = cfg->chunked != 0;
    srv->chunk_size = cfg->chunk_size;
    srv->close_after = cfg->close_after;
    srv->close_silently = cfg->close_silently != 0;
    srv->no_body = cfg->status == 204 || cfg->status == 304;
    srv->idle_ns = (uint64_t)cfg->idle_timeout_ms * NS_PER_MS;
    srv->delay_ns = (uint64_t)cfg->delay_ms * NS_PER_MS;

    if ((rc = build_responses(srv, cfg)) < 0) goto fail;
    if (cfg->tls && (rc = build_tls(srv, cfg)) < 0) {
        ERR_clear_error();
        goto fail;
    }
    srv->heap = calloc(FP_SRV_MAX_CONNS, sizeof *srv->heap);
    if (!srv->heap) {
        rc = FP_SRV_E_NOMEM;
        goto fail;
    }
    if ((rc = open_listener(srv, cfg, err_no)) < 0) goto fail;
    srv->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    srv->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    srv->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (srv->wake_fd < 0 || srv->epoll_fd < 0 || srv->spare_fd < 0) {
        if (err_no) *err_no = errno;
        rc = FP_SRV_E_SYS;
        goto fail;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &srv->listen_fd};
    struct epoll_event wev = {.events = EPOLLIN, .data.ptr = &srv->wake_fd};
    if (epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->listen_fd, &ev) < 0 ||
        epoll_ctl(srv->epoll_fd, EPOLL_CTL_ADD, srv->wake_fd, &wev) < 0) {
        if (err_no) *err_no = errno;
        rc = FP_SRV_E_SYS;
        goto fail;
    }
    *out = srv;
    return 0;
fail:
    fp_server_destroy(srv);
    return rc;
}

int fp_server_start(fp_server *srv) {
    if (srv->started || srv->stopped) return FP_SRV_E_STATE;
    /* The loop thread inherits a full signal mask: signals go to the caller's threads (Python
     * handles them in its main thread), and a SIGPIPE raised by a write to a reset peer inside
     * OpenSSL (which writes without MSG_NOSIGNAL) stays pending instead of killing us. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&srv->thread, NULL, loop_main, srv);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) return FP_SRV_E_THREAD;
    srv->started = 1;
    return 0;
}

int fp_server_stop(fp_server *srv) {
    if (srv->stopped) return FP_SRV_E_STATE;
    if (srv->started) {
        uint64_t one = 1;
        /* an eventfd write cannot fail short of a counter overflow; the loop reads it as
         * level-triggered readiness, so even a wake that lands before epoll_wait is seen */
        while (write(srv->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {}
        pthread_join(srv->thread, NULL);
    }
    while (srv->conns) conn_close(srv, srv->conns); /* never started: nothing; else done */
    close_descriptors(srv);
    srv->stopped = 1;
    return 0;
}

void fp_server_destroy(fp_server *srv) {
    if (!srv) return;
    if (!srv->stopped) fp_server_stop(srv);
    SSL_CTX_free(srv->ssl_ctx);
    free(srv->ca_pem);
    free(srv->common);
    for (int v = 0; v < 4; v++) free(srv->heads[v]);
    free(srv->full0);
    free(srv->raw_body);
    free(srv->heap);
    free(srv);
}

int fp_server_port(const fp_server *srv) { return srv->port; }

const char *fp_server_ca_pem(const fp_server *srv, size_t *len) {
    if (len) *len = srv->ca_pem_len;
    return srv->ca_pem;
}

void fp_server_get_stats(const fp_server *srv, fp_server_stats *out) {
    fp_server *s = (fp_server *)srv; /* atomic loads take non-const pointers in C11 */
    /* closed first: a connection accepted and closed between the two loads then raises only
     * accepted, and open never reads as negative */
    uint64_t closed = atomic_load_explicit(&s->ctr.closed, memory_order_relaxed);
    uint64_t accepted = atomic_load_explicit(&s->ctr.accepted, memory_order_relaxed);
    out->accepted = accepted;
    out->open = accepted >= closed ? accepted - closed : 0;
    out->requests = atomic_load_explicit(&s->ctr.requests, memory_order_relaxed);
    out->bad_requests = atomic_load_explicit(&s->ctr.bad_requests, memory_order_relaxed);
    out->tls_handshakes = atomic_load_explicit(&s->ctr.tls_handshakes, memory_order_relaxed);
    out->tls_resumed = atomic_load_explicit(&s->ctr.tls_resumed, memory_order_relaxed);
    out->bytes_in = atomic_load_explicit(&s->ctr.bytes_in, memory_order_relaxed);
    out->bytes_out = atomic_load_explicit(&s->ctr.bytes_out, memory_order_relaxed);
}
