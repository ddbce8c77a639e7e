/*
 * fp_tls — one client TLS configuration: an SSL_CTX plus the session kept for resumption.
 *
 * A pool owns one fp_tls. Because the context *is* the whole configuration (trust, client
 * certificate, versions, verification), a session cached in it can only be offered to a
 * server under the same configuration: the cache is keyed on the whole TLS configuration by
 * construction. Within it, sessions are kept with their server name, and only when the
 * handshake that produced them was verified (or verification was disabled for this context).
 *
 * Several sessions are kept, newest first: a TLS 1.3 session (ticket) is single use (RFC 8446
 * §C.4; OpenSSL marks a client session not resumable once used, and servers' anti-replay may
 * refuse a second use), and a pool opens connections in bursts — rotations, refills after a
 * drop, the initial ones. A TLS 1.3 session is taken when offered (the last one for a host is
 * kept rather than leave nothing); TLS 1.2 sessions may be offered again and again.
 *
 * The cipher offer is the caller's: fastpool passes fastpool/_model/tls_policy.py's strings
 * (RFC 9325: ECDHE + AEAD only for TLS 1.2), the one source the pure engine applies too.
 */
#ifndef FP_TLS_H
#define FP_TLS_H

#include <stddef.h>
#include <pthread.h>
#include <openssl/ssl.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fp_tls_config {
    int verify;              /* 1: verify the chain and the host name (the default) */
    const char *ca_file;     /* PEM bundle; NULL with ca_pem NULL: system trust store */
    const char *ca_pem;      /* in-memory PEM CA certificates (the embedded server's CA) */
    size_t ca_pem_len;
    const char *cert_file;   /* client certificate chain (mTLS), or NULL */
    const char *key_file;    /* its key; NULL: in cert_file */
    int min_version;         /* e.g. TLS1_2_VERSION; 0: TLS 1.2 */
    int max_version;         /* 0: the highest OpenSSL supports */
    const char *ciphers;     /* TLS 1.2 suites (SSL_CTX_set_cipher_list); NULL: OpenSSL's */
    const char *ciphersuites;/* TLS 1.3 suites (SSL_CTX_set_ciphersuites); NULL: OpenSSL's */
    const char *groups;      /* key exchange groups (SSL_CTX_set1_groups_list); NULL: OpenSSL's */
} fp_tls_config;

/* Sessions kept per context (OpenSSL servers send 2 tickets per handshake by default). */
#define FP_TLS_SESSIONS 8

typedef struct fp_tls_session {
    SSL_SESSION *session;    /* NULL: an empty slot */
    char host[256];          /* the server name it was issued for */
} fp_tls_session;

typedef struct fp_tls {
    SSL_CTX *ctx;
    int verify;
    pthread_mutex_t lock;    /* guards the sessions: connections open in parallel */
    int nsessions;
    fp_tls_session sessions[FP_TLS_SESSIONS];  /* oldest first */
} fp_tls;

/* Builds the context. Returns 0, or -1 with a message in err. */
int fp_tls_init(fp_tls *t, const fp_tls_config *cfg, char *err, size_t errlen);

/* Frees the context and the cached session. */
void fp_tls_free(fp_tls *t);

/* A new SSL for host (name or IP literal) doing its I/O through bio (which it takes over,
 * freed on failure too): SNI for names only (RFC 6066 §3), host name or IP verification,
 * ALPN http/1.1, the cached session offered when it was issued for host. Returns NULL with
 * a message in err. */
SSL *fp_tls_new_ssl(fp_tls *t, const char *host, BIO *bio, char *err, size_t errlen);

/* Drops every cached session (after a resumption was refused or a handshake failed). */
void fp_tls_forget(fp_tls *t);

/* Writes OpenSSL's error queue (and the verify result, when ssl is given) into err. */
void fp_tls_describe(SSL *ssl, const char *what, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif /* FP_TLS_H */
