#include "fp_tls.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

/* ALPN wire format: length-prefixed protocol names. We only speak HTTP/1.1, so offering it
 * lets a gateway that also serves h2 pick the protocol we actually parse (RFC 7301). */
static const unsigned char ALPN_HTTP11[] = "\x08http/1.1";

static int is_ip_literal(const char *host)
{
    unsigned char addr[16];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

/* OpenSSL hands every new session here (for TLS 1.3 after the handshake, when the
 * NewSessionTicket arrives). Returning 1 keeps our reference. */
static int on_new_session(SSL *ssl, SSL_SESSION *session)
{
    fp_tls *t = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
    const char *host = SSL_get_app_data(ssl);
    if (t == NULL || host == NULL || strlen(host) >= sizeof t->sessions[0].host)
        return 0;
    /* A session is a shortcut past certificate verification on the next handshake: keep
     * only sessions from verified handshakes (or from a context where the caller disabled
     * verification, whose sessions can only be offered under that same configuration). */
    if (t->verify && SSL_get_verify_result(ssl) != X509_V_OK)
        return 0;
    if (!SSL_SESSION_is_resumable(session))
        return 0;
    pthread_mutex_lock(&t->lock);
    if (t->nsessions == FP_TLS_SESSIONS) { /* full: the oldest goes */
        SSL_SESSION_free(t->sessions[0].session);
        memmove(&t->sessions[0], &t->sessions[1], (FP_TLS_SESSIONS - 1) * sizeof t->sessions[0]);
        t->nsessions--;
    }
    t->sessions[t->nsessions].session = session;
    strcpy(t->sessions[t->nsessions].host, host);
    t->nsessions++;
    pthread_mutex_unlock(&t->lock);
    return 1;
}

/* Under t->lock: the session to offer host (newest first), taken out of the cache when it is
 * single use (TLS 1.3) and another one for host remains; NULL when none. The caller owns a
 * reference either way. */
static SSL_SESSION *session_for(fp_tls *t, const char *host)
{
    int i, j, others = 0;
    SSL_SESSION *s;
    for (i = t->nsessions - 1; i >= 0; i--)
        if (strcmp(t->sessions[i].host, host) == 0)
            break;
    if (i < 0)
        return NULL;
    s = t->sessions[i].session;
    for (j = 0; j < t->nsessions; j++)
        others += j != i && strcmp(t->sessions[j].host, host) == 0;
    if (SSL_SESSION_get_protocol_version(s) >= TLS1_3_VERSION && others > 0) {
        memmove(&t->sessions[i], &t->sessions[i + 1],
                (size_t)(t->nsessions - i - 1) * sizeof t->sessions[0]);
        t->nsessions--;
        return s; /* the cache's reference, now the caller's */
    }
    SSL_SESSION_up_ref(s);
    return s;
}

static int load_ca_pem(SSL_CTX *ctx, const char *pem, size_t len)
{
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    X509 *cert;
    int loaded = 0;
    if (bio == NULL)
        return -1;
    while ((cert = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, cert) == 1)
            loaded++;
        X509_free(cert);
    }
    ERR_clear_error(); /* the loop ends on a "no start line" error by design */
    BIO_free(bio);
    return loaded > 0 ? 0 : -1;
}

void fp_tls_describe(SSL *ssl, const char *what, char *err, size_t errlen)
{
    unsigned long e;
    size_t used;
    long vr = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    if (errlen == 0)
        return;
    if (ssl && vr != X509_V_OK)
        used = (size_t)snprintf(err, errlen, "%s: certificate verify failed: %s", what,
                                X509_verify_cert_error_string(vr));
    else
        used = (size_t)snprintf(err, errlen, "%s", what);
    while ((e = ERR_get_error()) != 0) {
        if (used + 3 >= errlen)
            continue; /* drain the queue even when the message is full */
        used += (size_t)snprintf(err + used, errlen - used, ": ");
        ERR_error_string_n(e, err + used, errlen - used);
        used = strlen(err);
    }
}

int fp_tls_init(fp_tls *t, const fp_tls_config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx;
    memset(t, 0, sizeof *t);
    ERR_clear_error();
    ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL) {
        fp_tls_describe(NULL, "cannot create the TLS context", err, errlen);
        return -1;
    }
    /* TLS 1.2 is the floor: exchanges require it, and older versions lack AEAD suites. */
    if (!SSL_CTX_set_min_proto_version(ctx, cfg->min_version ? cfg->min_version : TLS1_2_VERSION)
        || (cfg->max_version && !SSL_CTX_set_max_proto_version(ctx, cfg->max_version))) {
        fp_tls_describe(NULL, "unsupported TLS version bounds", err, errlen);
        goto fail;
    }
    /* The offer (RFC 9325 §4.2): without it OpenSSL's default list includes static-RSA key
     * exchange (no forward secrecy) and CBC suites with SHA-1 MACs. */
    if (cfg->ciphers && SSL_CTX_set_cipher_list(ctx, cfg->ciphers) != 1) {
        fp_tls_describe(NULL, "unsupported TLS 1.2 cipher list", err, errlen);
        goto fail;
    }
    if (cfg->ciphersuites && SSL_CTX_set_ciphersuites(ctx, cfg->ciphersuites) != 1) {
        fp_tls_describe(NULL, "unsupported TLS 1.3 cipher suites", err, errlen);
        goto fail;
    }
    if (cfg->groups && SSL_CTX_set1_groups_list(ctx, cfg->groups) != 1) {
        fp_tls_describe(NULL, "unsupported key exchange groups", err, errlen);
        goto fail;
    }
    /* Renegotiation mid-stream would stall a request on a handshake; refuse it. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    /* Many servers close without close_notify; for a Content-Length or chunked response the
     * framing already tells us whether it was complete, so an unexpected EOF is an EOF. */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Read ahead: one read() syscall fetches every record that has arrived, instead of a
     * 5-byte header read plus a body read per record. The cost is that decrypted or
     * undecrypted bytes may wait in OpenSSL with the fd not readable; fp_conn drains with
     * SSL_read until WANT_READ before it ever waits on the fd. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_verify(ctx, cfg->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (cfg->verify) {
        int ok;
        if (cfg->ca_pem)
            ok = load_ca_pem(ctx, cfg->ca_pem, cfg->ca_pem_len) == 0;
        else if (cfg->ca_file)
            ok = SSL_CTX_load_verify_locations(ctx, cfg->ca_file, NULL) == 1;
        else /* honours SSL_CERT_FILE / SSL_CERT_DIR, like the system's openssl */
            ok = SSL_CTX_set_default_verify_paths(ctx) == 1;
        if (!ok) {
            fp_tls_describe(NULL, "cannot load the CA certificates", err, errlen);
            goto fail;
        }
    }
    if (cfg->cert_file) {
        const char *key = cfg->key_file ? cfg->key_file : cfg->cert_file;
        if (SSL_CTX_use_certificate_chain_file(ctx, cfg->cert_file) != 1
            || SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1
            || SSL_CTX_check_private_key(ctx) != 1) {
            fp_tls_describe(NULL, "cannot load the client certificate", err, errlen);
            goto fail;
        }
    }
    /* Client-side caching only, in our own slot: OpenSSL's internal store is for servers. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    SSL_CTX_set_app_data(ctx, t);
    if (pthread_mutex_init(&t->lock, NULL) != 0) {
        snprintf(err, errlen, "cannot create a mutex");
        goto fail;
    }
    t->ctx = ctx;
    t->verify = cfg->verify;
    return 0;
fail:
    SSL_CTX_free(ctx);
    return -1;
}

void fp_tls_free(fp_tls *t)
{
    if (t->ctx == NULL)
        return;
    fp_tls_forget(t);
    SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->lock);
    memset(t, 0, sizeof *t);
}

void fp_tls_forget(fp_tls *t)
{
    int i;
    pthread_mutex_lock(&t->lock);
    for (i = 0; i < t->nsessions; i++)
        SSL_SESSION_free(t->sessions[i].session);
    t->nsessions = 0;
    memset(t->sessions, 0, sizeof t->sessions);
    pthread_mutex_unlock(&t->lock);
}

SSL *fp_tls_new_ssl(fp_tls *t, const char *host, BIO *bio, char *err, size_t errlen)
{
    SSL *ssl;
    SSL_SESSION *session;
    int ip = is_ip_literal(host);
    ERR_clear_error();
    ssl = SSL_new(t->ctx);
    if (ssl == NULL) {
        fp_tls_describe(NULL, "cannot create a TLS connection", err, errlen);
        BIO_free(bio);
        return NULL;
    }
    SSL_set_bio(ssl, bio, bio); /* from here SSL_free frees it */
    /* SNI carries host names only: RFC 6066 §3 forbids IP literals in it. */
    if (!ip && SSL_set_tlsext_host_name(ssl, host) != 1)
        goto fail;
    if (t->verify) {
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (ip ? X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) != 1
               : SSL_set1_host(ssl, host) != 1)
            goto fail;
    }
    if (SSL_set_alpn_protos(ssl, ALPN_HTTP11, sizeof ALPN_HTTP11 - 1) != 0)
        goto fail;
    /* Partial writes let the connection count exactly how much of a request left us, which
     * decides NotSent vs MaybeSent; a moving buffer lets a retried write come from a copy. */
    SSL_set_mode(ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_set_app_data(ssl, (void *)host); /* read by on_new_session; outlives the SSL */
    pthread_mutex_lock(&t->lock);
    session = session_for(t, host);
    pthread_mutex_unlock(&t->lock);
    if (session) {
        SSL_set_session(ssl, session); /* takes its own reference */
        SSL_SESSION_free(session);
    }
    SSL_set_connect_state(ssl);
    return ssl;
fail:
    fp_tls_describe(NULL, "cannot configure the TLS connection", err, errlen);
    SSL_free(ssl);
    return NULL;
}
