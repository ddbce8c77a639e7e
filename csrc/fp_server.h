/*
 * fp_server — the embedded HTTP/1.1 (and HTTPS) benchmark and test server.
 *
 * One server = one pthread running one epoll loop (level-triggered). The thread never touches
 * Python: the binding creates the server, starts the thread, reads the counters (atomics) and
 * stops it. Everything the loop owns lives in the fp_server struct; there is no global state.
 *
 * What it serves: a fixed response built once at creation (status, extra header lines, a body
 * given by the caller or a deterministic JSON-looking filler, Content-Length or chunked), or,
 * in echo mode, a response whose body is the exact request bytes (head and body). Behaviours
 * for client tests: close after N responses (announced or silent), idle timeout, delay.
 *
 * Request handling (RFC 9112): keep-alive by default for HTTP/1.1, "Connection: keep-alive"
 * for HTTP/1.0; pipelined requests are answered in order; request bodies are framed by
 * Content-Length only (a Transfer-Encoding in a request gets 501 and close, RFC 9112 §6.1);
 * anything malformed gets 400 and close. Every close after a final response is a lingering
 * close (shutdown for writing, then drain the input for up to FP_SRV_LINGER_MS) so that
 * requests the client pipelined past the last response do not turn the close into a reset
 * that destroys the response in flight (RFC 9112 §9.6).
 *
 * Loopback only: 127.0.0.1 or ::1.
 */
#ifndef FP_SERVER_H
#define FP_SERVER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes (negative; fp_http.h uses -1..-24 and -64..-70). */
enum {
    FP_SRV_E_CONFIG = -128,   /* a configuration value is out of range or inconsistent */
    FP_SRV_E_NOMEM = -129,    /* an allocation failed */
    FP_SRV_E_SOCKET = -130,   /* socket/bind/listen failed (see fp_server_create's err_no) */
    FP_SRV_E_TLS = -131,      /* building the TLS context or the certificates failed */
    FP_SRV_E_CLIENT_CA = -132,/* client_ca_pem holds no usable certificate */
    FP_SRV_E_THREAD = -133,   /* pthread_create failed */
    FP_SRV_E_STATE = -134,    /* start on a running server, or stop on one not running */
    FP_SRV_E_SYS = -135       /* epoll/eventfd creation failed */
};

/* TLS protocol versions for tls_min / tls_max (the TLS wire values). */
enum { FP_SRV_TLS_DEFAULT = 0, FP_SRV_TLS_1_2 = 0x0303, FP_SRV_TLS_1_3 = 0x0304 };

/* Bounds of the configuration and of what a connection may make the server buffer. */
#define FP_SRV_MAX_BODY ((size_t)64 << 20)        /* configured response body */
#define FP_SRV_MAX_HEADERS_BLOCK ((size_t)16384)  /* configured extra header lines */
#define FP_SRV_MAX_REQUEST_HEAD ((size_t)65536)   /* request line + fields + blank line */
#define FP_SRV_MAX_ECHO_REQUEST ((size_t)16 << 20)/* head + body held for one echo response */
#define FP_SRV_MAX_REQUEST_BODY ((uint64_t)1 << 40) /* discarded (non-echo) request body */
#define FP_SRV_MAX_CONNS 4096                     /* open connections; more are closed at accept */
#define FP_SRV_MAX_TIME_MS 3600000u               /* idle_timeout_ms and delay_ms */
#define FP_SRV_LINGER_MS 1000                     /* input drained after the final response */
#define FP_SRV_MAX_CLIENT_CA ((size_t)1 << 20)    /* client CA PEM bytes */

typedef struct fp_server_config {
    int ipv6;                      /* 0: bind 127.0.0.1, 1: bind ::1 */
    uint16_t port;                 /* 0: ephemeral (read it back with fp_server_port) */
    int tls;                       /* nonzero: HTTPS with an ephemeral CA made at creation */
    int tls_min, tls_max;          /* FP_SRV_TLS_*; DEFAULT means 1.2 and 1.3 respectively */
    int status;                    /* 200..599 */
    const char *headers;           /* extra field lines, each "Name: value\r\n" (may be NULL) */
    size_t headers_len;
    const char *body;              /* explicit body, or NULL for body_size filler bytes */
    size_t body_size;              /* filler length when body is NULL, else len(body) */
    int chunked;                   /* Transfer-Encoding: chunked (HTTP/1.1 clients) */
    size_t chunk_size;             /* bytes per chunk; 0: the whole body in one chunk */
    int echo;                      /* body = the request's bytes; fixed body settings unused */
    uint32_t close_after;          /* close after this many responses per connection; 0: never */
    int close_silently;            /* the last response does not announce Connection: close */
    uint32_t idle_timeout_ms;      /* close a connection without progress for this long; 0: never */
    uint32_t delay_ms;             /* hold each response this long after its request completed
                                    * (pipelined ones: after the previous response, if later) */
    const char *client_ca_pem;     /* non-NULL: require a client certificate signed by these */
    size_t client_ca_pem_len;
} fp_server_config;

/* Counters are updated by the loop thread as it goes: requests when a response is queued
 * (before its write), bytes_out and tls_handshakes after the write that completed them, so a
 * client that has just read a response may see those two lag for a moment. */
typedef struct fp_server_stats {
    uint64_t accepted;       /* connections accepted (refusals over FP_SRV_MAX_CONNS excluded) */
    uint64_t open;           /* connections currently open */
    uint64_t requests;       /* requests answered with the configured (or echo) response */
    uint64_t bad_requests;   /* requests answered with 400 or 501 */
    uint64_t tls_handshakes; /* TLS handshakes completed */
    uint64_t tls_resumed;    /* of which resumed a session (session cache or ticket) */
    uint64_t bytes_in;       /* application bytes received (after TLS decryption) */
    uint64_t bytes_out;      /* application bytes sent (before TLS encryption) */
} fp_server_stats;

typedef struct fp_server fp_server;

/* Fills cfg with the defaults: 127.0.0.1, ephemeral port, plain, 200, 137-byte filler body. */
void fp_server_config_init(fp_server_config *cfg);

/* Validates cfg, builds the responses (and the CA, certificate and TLS context), binds and
 * listens; copies everything it keeps from cfg. Returns 0 and *out, or FP_SRV_E_* with the
 * errno behind FP_SRV_E_SOCKET / FP_SRV_E_SYS in *err_no (0 otherwise; err_no may be NULL). */
int fp_server_create(const fp_server_config *cfg, fp_server **out, int *err_no);

/* Starts the event loop thread (all signals blocked in it). Returns 0 or FP_SRV_E_*. */
int fp_server_start(fp_server *srv);

/* Wakes the loop, joins the thread, closes every connection. Returns 0 or FP_SRV_E_STATE. */
int fp_server_stop(fp_server *srv);

/* Stops the server if it runs, closes every descriptor and frees srv (NULL is allowed). */
void fp_server_destroy(fp_server *srv);

/* The bound port (the ephemeral one when the configured port was 0). */
int fp_server_port(const fp_server *srv);

/* The PEM of the ephemeral CA that signed the server certificate; NULL without TLS. */
const char *fp_server_ca_pem(const fp_server *srv, size_t *len);

/* Copies the counters (each read atomically; the set is not one snapshot). */
void fp_server_get_stats(const fp_server *srv, fp_server_stats *out);

#ifdef __cplusplus
}
#endif
#endif /* FP_SERVER_H */
