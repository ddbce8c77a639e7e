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

/* Linux has ppoll(2), socket(2)'s SOCK_NONBLOCK / SOCK_CLOEXEC and send(2)'s MSG_NOSIGNAL;
 * macOS lacks all three, so other systems get POSIX equivalents: poll(2) with the timeout
 * rounded up to a millisecond, fcntl(2) after socket(2), and SO_NOSIGPIPE where it exists
 * (else the process's SIGPIPE disposition applies: CPython ignores SIGPIPE at start-up).
 * FP_POSIX_ONLY builds the equivalents on Linux too, to test them there. */
#if defined(__linux__) && !defined(FP_POSIX_ONLY)
#define FP_LINUX_IO 1
#define FP_SEND_FLAGS (MSG_DONTWAIT | MSG_NOSIGNAL)
#else
#define FP_SEND_FLAGS MSG_DONTWAIT
#endif

/* ST_BEGUN: an exchange started; the check that the peer is silent is not made yet.
 * ST_PIPE_FAILED: fp_conn_next found the pipeline cannot go on; the next step reports why. */
enum { ST_IDLE, ST_BEGUN, ST_SENDING, ST_RECEIVING, ST_DONE, ST_BROKEN, ST_PIPE_FAILED };

/* io_status: why a blocking-mode socket call returned without moving a byte. */
enum { IO_OK = 0, IO_TIMEOUT, IO_INTERRUPTED };

/* Results of send_some / recv_some beyond FP_STEP_*, in blocking mode only: the phase's
 * limit ran out, a signal handler must run, or OpenSSL asked for a retry on its own. */
enum { STEP_TIMEOUT = 3, STEP_INTERRUPTED = 4, STEP_AGAIN = 5 };

/* What the peer did while it had nothing to say (peer_state). */
enum { PEER_QUIET = 0, PEER_SPOKE, PEER_CLOSED };

/* The receive buffer a connection keeps between responses, at most. */
#define FP_CONN_KEEP_MAX ((size_t)4 << 20)

#define NO_LIMIT INT64_MAX

/* Our BIO's type: in the range BIO_get_new_index() hands out, without taking an index (there
 * are 127 per process, and a connection makes a method of its own). */
#define FP_BIO_TYPE ((BIO_TYPE_START + 42) | BIO_TYPE_SOURCE_SINK | BIO_TYPE_DESCRIPTOR)

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


/* ---- socket calls under the exchange's limits ---------------------------------------------
 * Every byte a connection moves goes through io_send / io_recv, plain TCP directly and TLS
 * through our BIO, so OpenSSL's own loops (a record read in pieces, a record written in
 * pieces) obey the limits too. In step mode they are plain non-blocking calls. */

/* How long the current wait may last: the phase's limit (write stall, read silence) counted
 * from the last progress, and the deadline. NO_LIMIT when there is neither. */
static int64_t time_left(const fp_conn *c, int64_t now)
{
    int64_t limit = c->state == ST_RECEIVING ? c->read_ns : c->write_ns;
    int64_t left = NO_LIMIT;
    if (limit >= 0)
        left = c->t_progress + limit - now;
    if (c->deadline_ns && c->deadline_ns - now < left)
        left = c->deadline_ns - now;
    return left;
}

/* The clock for a wait about to start. Bytes that moved since the last wait restart the
 * stall / silence clock here: the clock is read only when a wait follows, never on the path
 * where the request and the response each move in one call. */
static int64_t wait_clock(fp_conn *c)
{
    int64_t now = c->t_hint ? c->t_hint : fp_now_ns();
    c->t_hint = 0;
    if (c->progressed) {
        c->t_progress = now;
        c->progressed = 0;
    }
    return now;
}

/* Arms SO_RCVTIMEO for a wait of at most left ns (NO_LIMIT: none). The armed value changes
 * (a setsockopt) only when it is longer than the need (it must shrink) or shorter than half
 * of it: a deadline shrinks on every request, and re-arming exactly each time cost a syscall
 * per request. A wait that ends on a shorter armed value is not over: io_recv waits again. */
static int arm_rcvtimeo(fp_conn *c, int64_t left)
{
    int64_t us = left == NO_LIMIT ? 0 : (left + 999) / 1000;
    struct timeval tv;
    if (us != 0 && c->rcvtimeo_us > 0 && c->rcvtimeo_us <= us && c->rcvtimeo_us >= us / 2)
        return 0;
    if (us == c->rcvtimeo_us)
        return 0;
    tv.tv_sec = (time_t)(us / 1000000);
    tv.tv_usec = (suseconds_t)(us % 1000000);
    if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0)
        return -1;
    c->rcvtimeo_us = us;
    return 0;
}

/* spin_recv: nothing arrived during the spin; the caller sleeps for the time left. */
#define SPIN_OVER (-2)
/* How often a spin returns to let Python's signal handlers run (see fp_conn.h). */
#define SPIN_CHECK_NS 1000000

/* Ends a stretch of spin as an interrupted call would: the caller runs the handlers, then
 * resumes the exchange, and the spin goes on (c->spin_until) where it was. */
static ssize_t spin_interrupt(fp_conn *c)
{
    c->io_errno = EINTR;
    c->io_status = IO_INTERRUPTED;
    return -1;
}

/* Busy-poll (fp_conn_set_busy_poll): non-blocking recv() until bytes come or busy_ns (or the
 * time left, if less) has passed. The bytes read (0: EOF), -1 as io_recv, or SPIN_OVER with
 * the last clock reading left in t_hint for the sleep that follows. A non-blocking recv()
 * costs a syscall per turn either way, so the loop needs no pause instruction to yield. */
static ssize_t spin_recv(fp_conn *c, char *buf, size_t len)
{
    int64_t now, left;
    if (c->spin_until < 0) { /* it ended and the handlers ran: now the sleep */
        c->spin_until = 0;
        return SPIN_OVER;
    }
    now = wait_clock(c);
    left = time_left(c, now);
    if (left <= 0) {
        c->spin_until = 0;
        return SPIN_OVER; /* io_recv takes what is there and times out */
    }
    if (c->spin_until == 0) { /* a new spin (else one resumed after the handlers ran) */
        c->spin_until = now + (c->busy_ns < left ? c->busy_ns : left);
        c->spin_check = now + SPIN_CHECK_NS;
    }
    for (;;) {
        ssize_t n = recv(c->fd, buf, len, MSG_DONTWAIT);
        if (n >= 0) {
            c->spin_until = 0;
            c->progressed |= n > 0;
            return n;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            c->spin_until = 0;
            c->io_errno = errno;
            if (errno == EINTR)
                c->io_status = IO_INTERRUPTED;
            return -1;
        }
        now = fp_now_ns();
        if (now >= c->spin_until) {
            if (c->busy_ns < SPIN_CHECK_NS) {
                c->spin_until = 0;
                c->t_hint = now;
                return SPIN_OVER;
            }
            c->spin_until = -1; /* the handlers, then the sleep */
            return spin_interrupt(c);
        }
        if (now >= c->spin_check) {
            c->spin_check = now + SPIN_CHECK_NS;
            return spin_interrupt(c);
        }
    }
}

/* recv(): in blocking mode one kernel wait bounded by the time left (a limit that ran out
 * still takes what is already there), after a busy-poll spin when one is set; -1 with
 * io_status IO_TIMEOUT when the limit is reached or IO_INTERRUPTED when a signal handler must
 * run. io_errno holds a failure's errno. */
static ssize_t io_recv(fp_conn *c, char *buf, size_t len)
{
    c->io_status = IO_OK;
    if (!c->blocking || c->nowait) {
        ssize_t n = recv(c->fd, buf, len, c->nowait ? MSG_DONTWAIT : 0);
        if (n < 0)
            c->io_errno = errno;
        return n;
    }
    if (c->busy_ns > 0) {
        ssize_t n = spin_recv(c, buf, len);
        if (n != SPIN_OVER)
            return n;
    }
    for (;;) {
        int64_t left = time_left(c, wait_clock(c));
        ssize_t n;
        if (left > 0 && arm_rcvtimeo(c, left) < 0) {
            c->io_errno = errno;
            return -1;
        }
        n = recv(c->fd, buf, len, left > 0 ? 0 : MSG_DONTWAIT);
        if (n >= 0) {
            c->progressed |= n > 0;
            return n;
        }
        c->io_errno = errno;
        if (errno == EINTR) {
            c->io_status = IO_INTERRUPTED;
            return -1;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        if (left <= 0 || time_left(c, fp_now_ns()) <= 0) {
            c->io_status = IO_TIMEOUT;
            return -1;
        }
        /* woke on an armed timeout shorter than the need (see arm_rcvtimeo): wait again */
    }
}

void fp_conn_set_busy_poll(fp_conn *c, int64_t busy_ns)
{
    c->busy_ns = busy_ns > 0 ? busy_ns : 0;
}

/* Waits until fd is writable, at most left_ns. 1 ready, 0 timeout, -1 with errno (EINTR). */
static int wait_writable(int fd, int64_t left_ns)
{
    struct pollfd p = {fd, POLLOUT, 0};
#ifdef FP_LINUX_IO
    struct timespec ts;
    ts.tv_sec = (time_t)(left_ns / 1000000000);
    ts.tv_nsec = (long)(left_ns % 1000000000);
    return ppoll(&p, 1, left_ns == NO_LIMIT ? NULL : &ts, NULL);
#else
    int64_t ms = left_ns == NO_LIMIT ? -1 : (left_ns + 999999) / 1000000; /* never early */
    return poll(&p, 1, ms > 0x7fffffff ? 0x7fffffff : (int)ms);
#endif
}

/* send() that never blocks in the kernel: a blocking socket's send timeout (SO_SNDTIMEO)
 * restarts in full after each partial send, so a slow reader could stretch the write limit
 * many times over. In blocking mode a full buffer is waited out in ppoll(), for exactly the
 * time left since the last byte the socket accepted; -1 with io_status as io_recv. */
static ssize_t io_send(fp_conn *c, const char *buf, size_t len)
{
    c->io_status = IO_OK;
    for (;;) {
        ssize_t n = send(c->fd, buf, len, FP_SEND_FLAGS);
        int64_t left;
        if (n >= 0) {
            c->progressed |= n > 0;
            return n;
        }
        c->io_errno = errno;
        if (errno == EINTR)
            continue;
        if ((errno != EAGAIN && errno != EWOULDBLOCK) || !c->blocking || c->nowait)
            return -1;
        left = time_left(c, wait_clock(c));
        if (left <= 0) {
            c->io_status = IO_TIMEOUT;
            return -1;
        }
        if (wait_writable(c->fd, left) < 0) {
            c->io_errno = errno;
            if (errno == EINTR)
                c->io_status = IO_INTERRUPTED;
            return -1;
        }
        /* ready (or the wait ended): the next send says which, or the clock does */
    }
}

static int io_should_retry(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

/* ---- the BIO OpenSSL reads and writes through -------------------------------------------- */

static int bio_write(BIO *b, const char *buf, int len)
{
    fp_conn *c = BIO_get_data(b);
    ssize_t n;
    BIO_clear_retry_flags(b);
    n = io_send(c, buf, (size_t)len);
    if (n < 0 && io_should_retry(c->io_errno))
        BIO_set_retry_write(b);
    return (int)n;
}

static int bio_read(BIO *b, char *buf, int len)
{
    fp_conn *c = BIO_get_data(b);
    ssize_t n;
    BIO_clear_retry_flags(b);
    n = io_recv(c, buf, (size_t)len);
    if (n < 0 && io_should_retry(c->io_errno))
        BIO_set_retry_read(b);
    if (n == 0)
        BIO_set_flags(b, BIO_FLAGS_IN_EOF); /* OpenSSL asks BIO_eof() whether 0 meant EOF */
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    fp_conn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1; /* nothing is buffered here */
    case BIO_CTRL_EOF:
        return BIO_test_flags(b, BIO_FLAGS_IN_EOF) != 0;
    case BIO_C_GET_FD:
        if (ptr)
            *(int *)ptr = c->fd;
        return c->fd;
    default:
        return 0;
    }
}

static BIO_METHOD *new_bio_method(void)
{
    BIO_METHOD *m = BIO_meth_new(FP_BIO_TYPE, "fastpool socket");
    if (m == NULL || !BIO_meth_set_write(m, bio_write) || !BIO_meth_set_read(m, bio_read)
        || !BIO_meth_set_ctrl(m, bio_ctrl)) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

int fp_conn_init(fp_conn *c, const fp_limits *lim, size_t bufsize)
{
    memset(c, 0, sizeof *c);
    c->fd = -1;
    c->lim = *lim;
    c->rcvtimeo_us = -1;
    c->base_cap = c->cap = bufsize < 1024 ? 1024 : bufsize;
    c->buf = malloc(c->cap);
    c->spans = malloc((size_t)lim->max_headers * sizeof(fp_span));
    c->bio_method = new_bio_method();
    if (c->buf == NULL || c->spans == NULL || c->bio_method == NULL) {
        free(c->buf);
        free(c->spans);
        BIO_meth_free(c->bio_method);
        c->buf = NULL;
        c->spans = NULL;
        c->bio_method = NULL;
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
        SSL_free(c->ssl); /* and our BIO */
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
    BIO_meth_free(c->bio_method);
    c->buf = NULL;
    c->spans = NULL;
    c->bio_method = NULL;
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
    BIO *bio = BIO_new(c->bio_method);
    if (bio == NULL) {
        set_err(err, FP_CE_TLS, 0, "cannot create the connection's BIO");
        return -1;
    }
    BIO_set_data(bio, c);
    BIO_set_init(bio, 1);
    c->ssl = fp_tls_new_ssl(tls, c->host, bio, why, sizeof why);
    if (c->ssl == NULL) {
        set_err(err, FP_CE_TLS, 0, "%s", why);
        return -1;
    }
    for (;;) {
        int rc, e, ready;
        ERR_clear_error();
        c->io_errno = 0;
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
        set_err(err, FP_CE_TLS, e == SSL_ERROR_SYSCALL ? c->io_errno : 0, "");
        fp_tls_describe(c->ssl, "TLS handshake failed", why, sizeof why);
        snprintf(err->msg, sizeof err->msg, "%.250s (%.120s)", why, c->host);
        err->verify = SSL_get_verify_result(c->ssl);
        if (e == SSL_ERROR_SYSCALL && err->verify == X509_V_OK)
            snprintf(err->msg, sizeof err->msg,
                     "TLS handshake with %s failed: connection closed by the server (%s)",
                     c->host, c->io_errno ? strerror(c->io_errno) : "EOF");
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
    c->blocking = 0; /* the handshake's I/O is non-blocking (io_recv / io_send) */
    c->exchanges = 0;
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
#ifdef FP_LINUX_IO
    c->fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        set_err(err, FP_CE_CONNECT, errno, "socket: %s", strerror(errno));
        return -1;
    }
#else
    c->fd = socket(family, SOCK_STREAM, 0);
    if (c->fd < 0) {
        set_err(err, FP_CE_CONNECT, errno, "socket: %s", strerror(errno));
        return -1;
    }
    if (fcntl(c->fd, F_SETFD, FD_CLOEXEC) < 0 || set_blocking(c->fd, 0) < 0) {
        set_err(err, FP_CE_CONNECT, errno, "fcntl: %s", strerror(errno));
        goto fail;
    }
#ifdef SO_NOSIGPIPE
    setsockopt(c->fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
#endif
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
    c->rcvtimeo_us = 0; /* a new socket has no kernel timeout */
    c->state = ST_IDLE;
    c->t_idle = fp_now_ns();
    c->len = 0;
    c->end = 0;
    return 0;
fail:
    fp_conn_close(c);
    return -1;
}

/* TLS: whether what OpenSSL holds, or the socket shows, is application data (or a close),
 * processing the rest without blocking: TLS 1.3 session tickets make the socket readable and
 * may sit in the read-ahead buffer without the peer having said anything. */
static int tls_peer_state(fp_conn *c)
{
    char byte;
    int rc, e;
    c->nowait = 1;
    ERR_clear_error();
    rc = SSL_peek(c->ssl, &byte, 1);
    e = rc > 0 ? SSL_ERROR_NONE : SSL_get_error(c->ssl, rc);
    c->nowait = 0;
    ERR_clear_error();
    if (rc > 0)
        return PEER_SPOKE;
    if (e == SSL_ERROR_WANT_READ)
        return PEER_QUIET;
    return e == SSL_ERROR_WANT_WRITE ? PEER_SPOKE : PEER_CLOSED;
}

/* What the peer did on a connection where it had nothing to say (RFC 9112 §9.3: an HTTP/1.1
 * server speaks only in answer): PEER_QUIET, PEER_SPOKE or PEER_CLOSED (FIN, RST, TLS close or
 * alert). Never blocks. OpenSSL's buffers first (read ahead may already hold a record the
 * socket no longer shows), then one poll(0). */
static int peer_state(fp_conn *c)
{
    struct pollfd p;
    int n;
    if (c->ssl && SSL_has_pending(c->ssl))
        return tls_peer_state(c);
    p.fd = c->fd;
    p.events = POLLIN | POLLRDHUP;
    p.revents = 0;
    n = poll(&p, 1, 0);
    if (n == 0)
        return PEER_QUIET;
    if (n < 0 || (p.revents & (POLLERR | POLLHUP | POLLRDHUP | POLLNVAL)))
        return PEER_CLOSED;
    return c->ssl ? tls_peer_state(c) : PEER_SPOKE;
}

int fp_conn_stale(fp_conn *c)
{
    if (c->fd < 0 || c->state != ST_IDLE)
        return 1;
    return peer_state(c) != PEER_QUIET;
}

/* Before a request is written: the peer must have said nothing. Bytes there would be taken
 * for this request's response (a desync that lasts as long as the connection), so they fail
 * the exchange with nothing written: FP_CE_WRITE with sent 0, a NotSent error. */
static int check_quiet(fp_conn *c, fp_cerr *err)
{
    int peer = peer_state(c);
    int reused = c->exchanges > 1;
    if (peer == PEER_QUIET)
        return 0;
    if (peer == PEER_CLOSED)
        set_err(err, FP_CE_WRITE, 0, reused ? "the server closed the idle connection"
                                            : "the server closed the connection before the request");
    else
        set_err(err, FP_CE_WRITE, 0, reused ? "the server sent bytes nobody asked for on the idle connection"
                                            : "the server sent bytes before the request");
    c->state = ST_BROKEN;
    return -1;
}

uint64_t fp_conn_sent(const fp_conn *c)
{
    if (c->ssl)
        return BIO_number_written(SSL_get_wbio(c->ssl)) - c->wire_before;
    return c->out_done;
}

int fp_conn_set_blocking(fp_conn *c, int blocking)
{
    blocking = blocking != 0;
    if (c->fd < 0) {
        errno = EBADF;
        return -1;
    }
    if (c->state != ST_IDLE && c->state != ST_DONE) {
        errno = EBUSY;
        return -1;
    }
    if (c->blocking == blocking)
        return 0;
    if (set_blocking(c->fd, blocking) < 0)
        return -1;
    c->blocking = blocking;
    return 0;
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
    c->exchanges++;
    c->t_start = fp_now_ns();
    c->t_written = c->t_first_byte = c->t_complete = 0;
    c->t_progress = c->t_start;
    c->t_hint = 0;
    c->spin_until = 0;
    c->progressed = 0;
    c->write_ns = c->read_ns = -1;
    c->deadline_ns = 0;
    c->state = ST_BEGUN;
}

/* A socket call that moved nothing. Step mode: what to wait for. Blocking mode: why (the
 * limit ran out, a signal), or STEP_AGAIN when neither (OpenSSL retries on its own, e.g.
 * after a record that was not application data): the next call waits properly. */
static int retry_result(const fp_conn *c, int want)
{
    if (!c->blocking)
        return want;
    if (c->io_status == IO_TIMEOUT)
        return STEP_TIMEOUT;
    if (c->io_status == IO_INTERRUPTED)
        return STEP_INTERRUPTED;
    return STEP_AGAIN;
}

/* Writes what the socket accepts. FP_STEP_DONE, FP_STEP_WANT_*, FP_STEP_ERROR, or in
 * blocking mode STEP_TIMEOUT / STEP_INTERRUPTED. */
static int send_some(fp_conn *c, fp_cerr *err)
{
    while (c->out_done < c->out_len) {
        int r;
        c->io_errno = 0;
        if (c->ssl == NULL) {
            ssize_t n = io_send(c, c->out + c->out_done, c->out_len - c->out_done);
            if (n >= 0) {
                c->out_done += (size_t)n;
                continue;
            }
            if (!io_should_retry(c->io_errno)) {
                set_err(err, FP_CE_WRITE, c->io_errno, "send: %s", strerror(c->io_errno));
                return FP_STEP_ERROR;
            }
            r = retry_result(c, FP_STEP_WANT_WRITE);
        } else {
            int n, e;
            size_t chunk = c->out_len - c->out_done;
            ERR_clear_error();
            n = SSL_write(c->ssl, c->out + c->out_done, chunk > 0x7fffffff ? 0x7fffffff : (int)chunk);
            if (n > 0) {
                c->out_done += (size_t)n;
                continue;
            }
            e = SSL_get_error(c->ssl, n);
            if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ) {
                set_err(err, FP_CE_WRITE, e == SSL_ERROR_SYSCALL ? c->io_errno : 0, "");
                fp_tls_describe(NULL, "TLS write failed", err->msg, sizeof err->msg);
                return FP_STEP_ERROR;
            }
            r = retry_result(c, e == SSL_ERROR_WANT_WRITE ? FP_STEP_WANT_WRITE : FP_STEP_WANT_READ);
        }
        if (r != STEP_AGAIN)
            return r;
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

/* The peer reset (or aborted) the connection after the request was written: for the
 * request, the same as a close before the response was complete (a server that resets
 * instead of closing discards what it had not read; the outcome for the caller is the same). */
static int is_reset(int e)
{
    return e == ECONNRESET || e == ECONNABORTED || e == EPIPE;
}

static int read_failed(fp_conn *c, fp_cerr *err, int e, const char *what)
{
    if (is_reset(e)) {
        set_err(err, FP_CE_CLOSED, e, c->received
                ? "the server reset the connection before the response was complete"
                : "the server reset the connection without responding");
        err->code = c->received ? FP_E_TRUNCATED : FP_E_NO_RESPONSE;
    } else if (c->ssl) {
        set_err(err, FP_CE_READ, e, "");
        fp_tls_describe(NULL, what, err->msg, sizeof err->msg);
    } else {
        set_err(err, FP_CE_READ, e, "%s: %s", what, strerror(e));
    }
    return FP_STEP_ERROR;
}

/* Reads and parses until the response is complete or reading would block (step mode), or the
 * limit ran out / a signal came (blocking mode: STEP_TIMEOUT / STEP_INTERRUPTED). */
static int recv_some(fp_conn *c, fp_cerr *err)
{
    for (;;) {
        ssize_t n;
        int64_t rc;
        if (c->len == c->cap && grow(c, err) < 0)
            return FP_STEP_ERROR;
        c->io_errno = 0;
        if (c->ssl == NULL) {
            n = io_recv(c, c->buf + c->len, c->cap - c->len);
            if (n < 0) {
                int r;
                if (!io_should_retry(c->io_errno))
                    return read_failed(c, err, c->io_errno, "recv");
                r = retry_result(c, FP_STEP_WANT_READ);
                if (r == STEP_AGAIN)
                    continue;
                return r;
            }
        } else {
            size_t room = c->cap - c->len;
            int r, e;
            ERR_clear_error();
            r = SSL_read(c->ssl, c->buf + c->len, room > 0x7fffffff ? 0x7fffffff : (int)room);
            if (r > 0) {
                n = r;
            } else {
                e = SSL_get_error(c->ssl, r);
                if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                    r = retry_result(c, e == SSL_ERROR_WANT_READ ? FP_STEP_WANT_READ
                                                                 : FP_STEP_WANT_WRITE);
                    if (r == STEP_AGAIN)
                        continue;
                    return r;
                }
                if (e == SSL_ERROR_ZERO_RETURN)
                    n = 0;
                else
                    return read_failed(c, err, e == SSL_ERROR_SYSCALL ? c->io_errno : 0,
                                       "TLS read failed");
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

static int timed_out(fp_conn *c, fp_cerr *err, int kind)
{
    const char *what = kind == FP_CE_WRITE_TIMEOUT ? "sending the request" : "the response";
    if (c->deadline_ns && fp_now_ns() >= c->deadline_ns)
        set_err(err, kind, 0, "total deadline ran out waiting for %s", what);
    else
        set_err(err, kind, 0, "timed out waiting for %s", what);
    err->sent = fp_conn_sent(c);
    c->state = ST_BROKEN;
    return -1;
}

/* A blocking phase that did not finish: failed, out of time, or interrupted (resumable). */
static int stopped(fp_conn *c, fp_cerr *err, int r, int timeout_kind)
{
    if (r == STEP_INTERRUPTED)
        return FP_INTERRUPTED;
    if (r == FP_STEP_ERROR) {
        err->sent = fp_conn_sent(c);
        c->state = ST_BROKEN;
        return -1;
    }
    return timed_out(c, err, timeout_kind); /* STEP_TIMEOUT */
}

static int pipe_settled(fp_conn *c, fp_cerr *err);

int fp_conn_exchange(fp_conn *c, const char *req, size_t len, int head_request,
                     int64_t write_timeout_ns, int64_t read_timeout_ns, int64_t deadline_ns,
                     fp_cerr *err)
{
    fp_conn_begin(c, req, len, head_request);
    c->write_ns = write_timeout_ns;
    c->read_ns = read_timeout_ns;
    c->deadline_ns = deadline_ns;
    return fp_conn_resume(c, err);
}

int fp_conn_resume(fp_conn *c, fp_cerr *err)
{
    int r;
    if (c->state == ST_BEGUN) {
        if (c->deadline_ns && c->t_start >= c->deadline_ns)
            return timed_out(c, err, FP_CE_WRITE_TIMEOUT);
        if (check_quiet(c, err) < 0)
            return -1;
        c->state = ST_SENDING;
    }
    if (c->state == ST_SENDING) {
        r = send_some(c, err);
        if (r != FP_STEP_DONE)
            return stopped(c, err, r, FP_CE_WRITE_TIMEOUT);
        c->t_written = c->t_progress = c->t_hint = fp_now_ns();
        c->progressed = 0;
        c->state = ST_RECEIVING;
    }
    if (c->state != ST_RECEIVING) {
        if (c->state == ST_DONE || c->state == ST_PIPE_FAILED)  /* after fp_conn_next */
            return pipe_settled(c, err) < 0 ? -1 : 0;
        set_err(err, FP_CE_READ, 0, "the connection is not in an exchange");
        return -1;
    }
    r = recv_some(c, err);
    if (r != FP_STEP_DONE)
        return stopped(c, err, r, FP_CE_READ_TIMEOUT);
    c->t_complete = fp_now_ns();
    c->state = ST_DONE;
    return 0;
}

int fp_conn_step(fp_conn *c, fp_cerr *err)
{
    int r;
    if (c->state == ST_BEGUN) {
        if (check_quiet(c, err) < 0)
            return FP_STEP_ERROR;
        c->state = ST_SENDING;
    }
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
         * (Nothing is hidden in OpenSSL either: check_quiet looked before the write.) */
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
    if (c->state == ST_PIPE_FAILED)
        return pipe_settled(c, err);
    set_err(err, FP_CE_READ, 0, "the connection is not in an exchange");
    return FP_STEP_ERROR;
}

int fp_conn_finish(fp_conn *c)
{
    int reusable = c->state == ST_DONE && c->resp.keep_alive && (size_t)c->end == c->len;
    /* Bytes after the response may also wait in OpenSSL, decrypted or read ahead: the socket
     * will not show them to the next request's check, so look here (no syscall unless there
     * is something; a session ticket is processed and does not count). */
    if (reusable && c->ssl && SSL_has_pending(c->ssl))
        reusable = tls_peer_state(c) == PEER_QUIET;
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

/* ---- pipelining (RFC 9112 §9.3.2) ------------------------------------------------------------
 * A burst of requests goes out as one exchange (fp_conn_exchange / fp_conn_begin with the
 * requests concatenated); fp_conn_next moves on from each complete response to the next. The
 * bytes received past a response are the start of the next one (a server may answer several
 * requests in one segment, and OpenSSL may have decrypted them together), so they move to the
 * front of the buffer and are parsed before anything more is read. The framing is the only
 * thing that tells responses apart: whatever makes it doubtful ends the pipeline, and the
 * connection is never reused after that (fp_conn_finish keeps its rule for the last one). */

/* The failure fp_conn_next recorded, reported by the step (or resume) after it. A response
 * that fp_conn_next found already complete in the buffer is reported done. */
static int pipe_settled(fp_conn *c, fp_cerr *err)
{
    if (c->state == ST_DONE)
        return FP_STEP_DONE;
    *err = c->pipe_err;
    c->state = ST_BROKEN;
    return FP_STEP_ERROR;
}

static int pipe_failed(fp_conn *c, fp_cerr *err)
{
    err->sent = fp_conn_sent(c);
    c->pipe_err = *err;
    c->state = ST_PIPE_FAILED;
    return FP_STEP_ERROR;
}

int fp_conn_next(fp_conn *c, int head_request, fp_cerr *err)
{
    size_t rest;
    int64_t rc;
    if (c->state != ST_DONE) {
        set_err(err, FP_CE_READ, 0, "no complete response to go on from");
        return pipe_failed(c, err);
    }
    if (!c->resp.keep_alive) {
        /* Connection: close, HTTP/1.0 without keep-alive, or a body delimited by the close:
         * the server answers nothing after this response (RFC 9112 §9.6). */
        set_err(err, FP_CE_CLOSED, 0, "the server closed the connection after an earlier "
                                      "response of the pipeline");
        err->code = FP_E_NO_RESPONSE;
        return pipe_failed(c, err);
    }
    rest = c->len - (size_t)c->end;
    if (rest)
        memmove(c->buf, c->buf + c->end, rest);
    c->len = rest;
    c->end = 0;
    c->head_request = head_request;
    fp_resp_init(&c->resp, &c->lim, head_request);
    c->t_first_byte = rest ? fp_now_ns() : 0;
    c->t_complete = 0;
    c->state = ST_RECEIVING;
    if (rest == 0)
        return FP_STEP_WANT_READ;
    rc = fp_resp_parse(&c->resp, c->buf, &c->len, c->spans);
    if (rc > 0) {
        c->end = rc;
        c->t_complete = c->t_first_byte;
        c->state = ST_DONE;
        return FP_STEP_DONE;
    }
    if (rc == FP_NEED_MORE)
        return FP_STEP_WANT_READ;
    set_err(err, FP_CE_PROTOCOL, 0, "malformed response");
    err->code = (int)rc;
    return pipe_failed(c, err);
}

const char *fp_conn_tls_version(const fp_conn *c)
{
    return c->ssl ? SSL_get_version(c->ssl) : "";
}
