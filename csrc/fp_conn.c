#include "fp_conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "fp_clock.h"

enum { ST_IDLE, ST_SENDING, ST_RECEIVING, ST_DONE, ST_BROKEN };

/* The receive buffer a connection keeps between responses, at most. */
#define FP_CONN_KEEP_MAX ((size_t)4 << 20)

static void set_err(fp_cerr *err, int kind, int sys_errno, const char *fmt, ...)
{
    va_list ap;
    err->kind = kind;
    err->sys_errno = sys_errno;
    err->code = 0;
    err->verify = 0;
    err->sent = 0;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
}

int fp_conn_init(fp_conn *c, const fp_limits *lim, size_t bufsize)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->lim = *lim;
    c->rcvtimeo_us = c->sndtimeo_us = -1;
    c->base_cap = c->cap = bufsize < 1024 ? 1024 : bufsize;
    c->buf = malloc(c->cap);
    c->spans = malloc((size_t)lim->max_headers * sizeof(fp_span));
    if (c->buf == NULL || c->spans == NULL) {
        free(c->buf);
        free(c->spans);
        c->buf = NULL;
        c->spans = NULL;
        return -1;
    }
    return 0;
}

void fp_conn_close(fp_conn *c)
{
    if (c->ssl) {
        /* No close_notify: it would cost a write on what may be a dead socket. Marking the
         * shutdown done keeps the session resumable, which OpenSSL otherwise revokes for
         * connections that were not shut down (ssl_clear on TLS <= 1.2). */
        SSL_set_shutdown(c->ssl, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0) {
        close(c->fd);
        c->fd = -1;
    }
    c->state = ST_BROKEN;
    c->len = 0;
    c->end = 0;
}

void fp_conn_free(fp_conn *c)
{
    fp_conn_close(c);
    free(c->buf);
    free(c->spans);
    c->buf = NULL;
    c->spans = NULL;
}

/* Waits until fd is ready for events or deadline_ns passes. 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int64_t deadline_ns)
{
    for (;;) {
        struct pollfd p = {fd, events, 0};
        int timeout_ms = -1, n;
        if (deadline_ns) {
            int64_t left = deadline_ns - fp_now_ns();
            if (left <= 0)
                return 0;
            timeout_ms = (int)((left + 999999) / 1000000); /* round up: never wake early */
        }
        n = poll(&p, 1, timeout_ms);
        if (n > 0)
            return 1;
        if (n == 0) {
            if (deadline_ns && fp_now_ns() >= deadline_ns)
                return 0;
            continue;
        }
        if (errno != EINTR)
            return -1;
    }
}

static int set_blocking(int fd, int blocking)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -1;
    flags = blocking ? (flags & ~O_NONBLOCK) : (flags | O_NONBLOCK);
    return fcntl(fd, F_SETFL, flags);
}

static int tls_handshake(fp_conn *c, fp_tls *tls, int64_t deadline_ns, fp_cerr *err)
{
    char why[256];
    const unsigned char *alpn;
    unsigned alpn_len;
    c->ssl = fp_tls_new_ssl(tls, c->host, c->fd, why, sizeof why);
    if (c->ssl == NULL) {
        set_err(err, FP_CE_TLS, 0, "%s", why);
        return -1;
    }
    for (;;) {
        int rc, e, ready;
        ERR_clear_error();
        rc = SSL_connect(c->ssl);
        if (rc == 1)
            break;
        e = SSL_get_error(c->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            ready = wait_fd(c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_ns);
            if (ready == 1)
                continue;
            set_err(err, FP_CE_CONNECT_TIMEOUT, 0, "TLS handshake with %s timed out", c->host);
            return -1;
        }
        set_err(err, FP_CE_TLS, e == SSL_ERROR_SYSCALL ? errno : 0, "");
        fp_tls_describe(c->ssl, "TLS handshake failed", why, sizeof why);
        snprintf(err->msg, sizeof err->msg, "%.250s (%.120s)", why, c->host);
        err->verify = SSL_get_verify_result(c->ssl);
        if (e == SSL_ERROR_SYSCALL && err->verify == X509_V_OK)
            snprintf(err->msg, sizeof err->msg,
                     "TLS handshake with %s failed: connection closed by the server (%s)",
                     c->host, errno ? strerror(errno) : "EOF");
        return -1;
    }
    /* We only speak HTTP/1.1: a server that picked another protocol would misread us. */
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len && (alpn_len != 8 || memcmp(alpn, "http/1.1", 8) != 0)) {
        set_err(err, FP_CE_TLS, 0, "server %s selected ALPN protocol '%.*s', not http/1.1",
                c->host, (int)alpn_len, alpn);
        return -1;
    }
    c->resumed = SSL_session_reused(c->ssl);
    return 0;
}

int fp_conn_open(fp_conn *c, int family, const char *ip, int port, fp_tls *tls,
                 const char *host, int blocking, int64_t deadline_ns, fp_cerr *err)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    int one = 1, rc, soerr = 0;
    socklen_t soerr_len = sizeof soerr;

    fp_conn_close(c);
    memset(&ss, 0, sizeof ss);
    if (strlen(host) >= sizeof c->host) {
        set_err(err, FP_CE_CONNECT, 0, "host name too long");
        return -1;
    }
    strcpy(c->host, host);
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        rc = inet_pton(AF_INET, ip, &a->sin_addr);
        sl = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        rc = inet_pton(AF_INET6, ip, &a->sin6_addr);
        sl = sizeof *a;
    }
    if (rc != 1) {
        set_err(err, FP_CE_CONNECT, 0, "invalid address %s", ip);
        return -1;
    }
    c->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        set_err(err, FP_CE_CONNECT, errno, "socket: %s", strerror(errno));
        return -1;
    }
    /* Requests are single small writes: Nagle would hold them for the previous ACK. */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    rc = connect(c->fd, (struct sockaddr *)&ss, sl);
    if (rc < 0 && errno != EINPROGRESS) {
        set_err(err, FP_CE_CONNECT, errno, "connect to %s port %d: %s", ip, port, strerror(errno));
        goto fail;
    }
    if (rc < 0) {
        int ready = wait_fd(c->fd, POLLOUT, deadline_ns);
        if (ready == 0) {
            set_err(err, FP_CE_CONNECT_TIMEOUT, 0, "connect to %s port %d timed out", ip, port);
            goto fail;
        }
        if (ready < 0 || getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &soerr_len) < 0)
            soerr = errno;
        if (soerr) {
            set_err(err, FP_CE_CONNECT, soerr, "connect to %s port %d: %s", ip, port,
                    strerror(soerr));
            goto fail;
        }
    }
    if (tls && tls_handshake(c, tls, deadline_ns, err) < 0)
        goto fail;
    if (blocking && set_blocking(c->fd, 1) < 0) {
        set_err(err, FP_CE_CONNECT, errno, "fcntl: %s", strerror(errno));
        goto fail;
    }
    c->blocking = blocking;
    c->rcvtimeo_us = c->sndtimeo_us = 0; /* a new socket has no kernel timeouts */
    c->state = ST_IDLE;
    c->t_idle = fp_now_ns();
    c->len = 0;
    c->end = 0;
    return 0;
fail:
    fp_conn_close(c);
    return -1;
}

int fp_conn_stale(fp_conn *c)
{
    struct pollfd p;
    char byte;
    int rc, e;
    if (c->fd < 0 || c->state != ST_IDLE)
        return 1;
    if (c->ssl && SSL_pending(c->ssl) > 0)
        return 1; /* decrypted bytes nobody asked for */
    p.fd = c->fd;
    p.events = POLLIN | POLLRDHUP;
    p.revents = 0;
    if (poll(&p, 1, 0) == 0 && !(c->ssl && SSL_has_pending(c->ssl)))
        return 0;
    if (p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL))
        return 1;
    if (c->ssl == NULL)
        return 1; /* an idle HTTP/1.1 connection has nothing to say but EOF */
    /* TLS 1.3 servers send session tickets after the handshake; they make the socket
     * readable without making the connection stale. Let OpenSSL process what is there,
     * without blocking, and see whether application data or a close came with it. */
    if (c->blocking && set_blocking(c->fd, 0) < 0)
        return 1;
    ERR_clear_error();
    rc = SSL_peek(c->ssl, &byte, 1);
    e = rc > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rc);
    if (c->blocking && set_blocking(c->fd, 1) < 0)
        return 1;
    return !(rc <= 0 && e == SSL_ERROR_WANT_READ);
}

int fp_conn_stale_after(fp_conn *c, int64_t min_idle_ns)
{
    if (min_idle_ns < 0)
        return 0;
    if (min_idle_ns > 0 && fp_now_ns() - c->t_idle < min_idle_ns)
        return 0;
    return fp_conn_stale(c);
}

uint64_t fp_conn_sent(const fp_conn *c)
{
    if (c->ssl)
        return BIO_number_written(SSL_get_wbio(c->ssl)) - c->wire_before;
    return c->out_done;
}

void fp_conn_begin(fp_conn *c, const char *req, size_t len, int head_request)
{
    c->out = req;
    c->out_len = len;
    c->out_done = 0;
    c->head_request = head_request;
    c->wire_before = c->ssl ? BIO_number_written(SSL_get_wbio(c->ssl)) : 0;
    fp_resp_init(&c->resp, &c->lim, head_request);
    c->len = 0;
    c->end = 0;
    c->received = 0;
    c->t_start = fp_now_ns();
    c->t_written = c->t_first_byte = c->t_complete = 0;
    c->state = ST_SENDING;
}

/* Whether a TLS call that says "retry" was only interrupted by a signal handler. A blocking
 * socket call with a kernel timeout (SO_RCVTIMEO/SO_SNDTIMEO) is never restarted after a
 * handler ran: it fails with EINTR, which OpenSSL's socket BIO reports as WANT_READ/WRITE,
 * the same as the timeout's EAGAIN. errno must be cleared before the call. */
static int interrupted(int ssl_error)
{
    return (ssl_error == SSL_ERROR_WANT_READ || ssl_error == SSL_ERROR_WANT_WRITE)
           && errno == EINTR;
}

/* Writes what the socket accepts. FP_STEP_DONE, FP_STEP_WANT_*, or FP_STEP_ERROR. */
static int send_some(fp_conn *c, fp_cerr *err)
{
    while (c->out_done < c->out_len) {
        if (c->ssl == NULL) {
            ssize_t n = send(c->fd, c->out + c->out_done, c->out_len - c->out_done, MSG_NOSIGNAL);
            if (n >= 0) {
                c->out_done += (size_t)n;
                continue;
            }
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return FP_STEP_WANT_WRITE;
            set_err(err, FP_CE_WRITE, errno, "send: %s", strerror(errno));
            return FP_STEP_ERROR;
        } else {
            int n, e;
            size_t chunk = c->out_len - c->out_done;
            ERR_clear_error();
            errno = 0;
            n = SSL_write(c->ssl, c->out + c->out_done, chunk > 0x7fffffff ? 0x7fffffff : (int)chunk);
            if (n > 0) {
                c->out_done += (size_t)n;
                continue;
            }
            e = SSL_get_error(c->ssl, n);
            if (interrupted(e))
                continue;
            if (e == SSL_ERROR_WANT_WRITE)
                return FP_STEP_WANT_WRITE;
            if (e == SSL_ERROR_WANT_READ)
                return FP_STEP_WANT_READ;
            set_err(err, FP_CE_WRITE, e == SSL_ERROR_SYSCALL ? errno : 0, "");
            fp_tls_describe(NULL, "TLS write failed", err->msg, sizeof err->msg);
            return FP_STEP_ERROR;
        }
    }
    return FP_STEP_DONE;
}

/* The most the receive buffer may need: interim heads, the final head, the body, and the
 * largest undecoded remainder (a chunk-size line or a trailer section). The parser rejects
 * anything larger first; this bound only keeps the buffer bounded if it did not. */
static size_t max_buffer(const fp_limits *lim)
{
    uint64_t heads = ((uint64_t)lim->max_interim + 2) * lim->max_head;
    uint64_t total = heads + lim->max_body + lim->max_line + 64;
    return total > SIZE_MAX / 2 ? SIZE_MAX / 2 : (size_t)total;
}

static int grow(fp_conn *c, fp_cerr *err)
{
    size_t limit = max_buffer(&c->lim), want = c->cap * 2;
    char *grown;
    /* With the head parsed and a Content-Length known, grow once to the exact size. */
    if (c->resp.head_len && c->resp.head.content_length >= 0 && !c->resp.head.chunked) {
        uint64_t exact = c->resp.head_off + c->resp.head_len
                         + (uint64_t)c->resp.head.content_length;
        if (exact > want && exact <= limit)
            want = (size_t)exact;
    }
    if (want > limit)
        want = limit;
    if (want <= c->cap) {
        set_err(err, FP_CE_PROTOCOL, 0, "response larger than the limits allow");
        err->code = FP_E_BODY_TOO_LARGE;
        return -1;
    }
    grown = realloc(c->buf, want);
    if (grown == NULL) {
        set_err(err, FP_CE_NOMEM, ENOMEM, "cannot grow the receive buffer to %zu bytes", want);
        return -1;
    }
    c->buf = grown;
    c->cap = want;
    return 0;
}

/* Reads and parses until the response is complete or reading would block. */
static int recv_some(fp_conn *c, fp_cerr *err)
{
    for (;;) {
        ssize_t n;
        int64_t rc;
        if (c->len == c->cap && grow(c, err) < 0)
            return FP_STEP_ERROR;
        if (c->ssl == NULL) {
            n = recv(c->fd, c->buf + c->len, c->cap - c->len, 0);
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                if (errno == EAGAIN || errno == EWOULDBLOCK)
                    return FP_STEP_WANT_READ;
                set_err(err, FP_CE_READ, errno, "recv: %s", strerror(errno));
                return FP_STEP_ERROR;
            }
        } else {
            size_t room = c->cap - c->len;
            int r, e;
            ERR_clear_error();
            errno = 0;
            r = SSL_read(c->ssl, c->buf + c->len, room > 0x7fffffff ? 0x7fffffff : (int)room);
            if (r > 0) {
                n = r;
            } else {
                e = SSL_get_error(c->ssl, r);
                if (interrupted(e))
                    continue;
                if (e == SSL_ERROR_WANT_READ)
                    return FP_STEP_WANT_READ;
                if (e == SSL_ERROR_WANT_WRITE)
                    return FP_STEP_WANT_WRITE;
                if (e == SSL_ERROR_ZERO_RETURN) {
                    n = 0;
                } else {
                    set_err(err, FP_CE_READ, e == SSL_ERROR_SYSCALL ? errno : 0, "");
                    fp_tls_describe(NULL, "TLS read failed", err->msg, sizeof err->msg);
                    return FP_STEP_ERROR;
                }
            }
        }
        if (n == 0) {
            rc = fp_resp_eof(&c->resp, c->buf, c->len);
            if (rc > 0) {
                c->end = rc;
                return FP_STEP_DONE;
            }
            set_err(err, FP_CE_CLOSED, 0, rc == FP_E_NO_RESPONSE
                    ? "the server closed the connection without responding"
                    : "the server closed the connection before the response was complete");
            err->code = (int)rc;
            return FP_STEP_ERROR;
        }
        if (c->t_first_byte == 0)
            c->t_first_byte = fp_now_ns();
        c->len += (size_t)n;
        c->received += (uint64_t)n;
        rc = fp_resp_parse(&c->resp, c->buf, &c->len, c->spans);
        if (rc > 0) {
            c->end = rc;
            return FP_STEP_DONE;
        }
        if (rc != FP_NEED_MORE) {
            set_err(err, FP_CE_PROTOCOL, 0, "malformed response");
            err->code = (int)rc;
            return FP_STEP_ERROR;
        }
    }
}

/* Arms the kernel timeout for one wait. The need is min(timeout, time left to the deadline)
 * in microseconds (0 = none). The socket's armed value changes (a setsockopt) only when it is
 * longer than the need (it must shrink) or shorter than half of it: a total deadline shrinks
 * on every request, and re-arming exactly each time cost a syscall per request. A wait that
 * ends on a shorter armed value is not over: see woke_early. -1 when the deadline passed. */
static int arm_timeout(fp_conn *c, int opt, int64_t timeout_ns, int64_t deadline_ns,
                       int64_t *current_us, int64_t *need_us)
{
    int64_t us = timeout_ns < 0 ? 0 : (timeout_ns + 999) / 1000;
    if (timeout_ns == 0)
        us = 1; /* 0 means "no timeout" to the kernel; ours means "do not wait" */
    if (deadline_ns) {
        int64_t left = deadline_ns - fp_now_ns();
        if (left <= 0)
            return -1;
        if (us == 0 || (left + 999) / 1000 < us)
            us = (left + 999) / 1000;
    }
    *need_us = us;
    if (us != 0 && *current_us > 0 && *current_us <= us && *current_us >= us / 2)
        return 0; /* short enough to never overrun, long enough to rarely wake early */
    if (us != *current_us) {
        struct timeval tv;
        tv.tv_sec = (time_t)(us / 1000000);
        tv.tv_usec = (suseconds_t)(us % 1000000);
        if (setsockopt(c->fd, SOL_SOCKET, opt, &tv, sizeof tv) < 0)
            return -1;
        *current_us = us;
    }
    return 0;
}

/* After a kernel timeout expired: whether it was one kept shorter than the need (the wait
 * goes on, with timeout_ns reduced by what was waited), rather than the real limit. */
static int woke_early(int64_t armed_us, int64_t need_us, int64_t *timeout_ns)
{
    if (armed_us <= 0 || armed_us >= need_us)
        return 0;
    if (*timeout_ns >= 0) {
        *timeout_ns -= armed_us * 1000;
        if (*timeout_ns <= 0)
            return 0;
    }
    return 1;
}

static int timed_out(fp_conn *c, fp_cerr *err, int kind, int64_t deadline_ns)
{
    const char *what = kind == FP_CE_WRITE_TIMEOUT ? "sending the request" : "the response";
    if (deadline_ns && fp_now_ns() >= deadline_ns)
        set_err(err, kind, 0, "total deadline ran out waiting for %s", what);
    else
        set_err(err, kind, 0, "timed out waiting for %s", what);
    err->sent = fp_conn_sent(c);
    c->state = ST_BROKEN;
    return -1;
}

int fp_conn_exchange(fp_conn *c, const char *req, size_t len, int head_request,
                     int64_t write_timeout_ns, int64_t read_timeout_ns, int64_t deadline_ns,
                     fp_cerr *err)
{
    int r;
    int64_t need_us;
    fp_conn_begin(c, req, len, head_request);
    for (;;) {
        if (arm_timeout(c, SO_SNDTIMEO, write_timeout_ns, deadline_ns, &c->sndtimeo_us,
                        &need_us) < 0)
            return timed_out(c, err, FP_CE_WRITE_TIMEOUT, deadline_ns);
        r = send_some(c, err);
        if (r == FP_STEP_DONE)
            break;
        if (r == FP_STEP_ERROR) {
            err->sent = fp_conn_sent(c);
            c->state = ST_BROKEN;
            return -1;
        }
        /* A blocking socket only says "would block" when its kernel timeout expired. */
        if (woke_early(c->sndtimeo_us, need_us, &write_timeout_ns))
            continue;
        return timed_out(c, err, FP_CE_WRITE_TIMEOUT, deadline_ns);
    }
    c->t_written = fp_now_ns();
    c->state = ST_RECEIVING;
    for (;;) {
        if (arm_timeout(c, SO_RCVTIMEO, read_timeout_ns, deadline_ns, &c->rcvtimeo_us,
                        &need_us) < 0)
            return timed_out(c, err, FP_CE_READ_TIMEOUT, deadline_ns);
        r = recv_some(c, err);
        if (r == FP_STEP_DONE) {
            c->t_complete = fp_now_ns();
            c->state = ST_DONE;
            return 0;
        }
        if (r == FP_STEP_ERROR) {
            err->sent = fp_conn_sent(c);
            c->state = ST_BROKEN;
            return -1;
        }
        if (woke_early(c->rcvtimeo_us, need_us, &read_timeout_ns))
            continue;
        return timed_out(c, err, FP_CE_READ_TIMEOUT, deadline_ns);
    }
}

int fp_conn_step(fp_conn *c, fp_cerr *err)
{
    int r;
    if (c->state == ST_SENDING) {
        r = send_some(c, err);
        if (r != FP_STEP_DONE) {
            if (r == FP_STEP_ERROR) {
                err->sent = fp_conn_sent(c);
                c->state = ST_BROKEN;
            }
            return r;
        }
        c->t_written = fp_now_ns();
        c->state = ST_RECEIVING;
        /* The response cannot be here yet: no round trip has passed since the last byte left,
         * so a read now only costs a syscall that says EAGAIN. Wait for readability first.
         * (Nothing is hidden in OpenSSL either: the previous response was consumed whole, or
         * the connection would not have been reused.) */
        return FP_STEP_WANT_READ;
    }
    if (c->state == ST_RECEIVING) {
        r = recv_some(c, err);
        if (r == FP_STEP_DONE) {
            c->t_complete = fp_now_ns();
            c->state = ST_DONE;
        } else if (r == FP_STEP_ERROR) {
            err->sent = fp_conn_sent(c);
            c->state = ST_BROKEN;
        }
        return r;
    }
    if (c->state == ST_DONE)
        return FP_STEP_DONE;
    set_err(err, FP_CE_READ, 0, "the connection is not in an exchange");
    return FP_STEP_ERROR;
}

int fp_conn_finish(fp_conn *c)
{
    int reusable = c->state == ST_DONE && c->resp.keep_alive && (size_t)c->end == c->len;
    c->len = 0;
    c->end = 0;
    c->out = NULL;
    c->state = reusable ? ST_IDLE : ST_BROKEN;
    c->t_idle = c->t_complete;
    /* A very large response grew the buffer: give the memory back rather than keep it per
     * idle connection (a failed shrink just keeps the bigger buffer). Up to FP_CONN_KEEP_MAX
     * it is kept: shrinking and regrowing 1 MiB on every response cost ~250 page faults. */
    if (c->cap > FP_CONN_KEEP_MAX && c->cap > c->base_cap) {
        char *small = realloc(c->buf, c->base_cap);
        if (small) {
            c->buf = small;
            c->cap = c->base_cap;
        }
    }
    return reusable;
}

const char *fp_conn_tls_version(const fp_conn *c)
{
    return c->ssl ? SSL_get_version(c->ssl) : "";
}
