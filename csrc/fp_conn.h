/*
 * fp_conn — one keep-alive HTTP/1.1 connection over TCP or TLS.
 *
 * Two ways to drive an exchange (write one request, read one response):
 *  - blocking (sync pools): the socket stays blocking and a read waits in the kernel under a
 *    receive timeout (SO_RCVTIMEO); writes never block in the kernel (MSG_DONTWAIT) and wait
 *    in poll() only when the socket buffer is full. So the common case is one check, one
 *    write and one read syscall, like a hand-written client. The caller releases the GIL
 *    around it.
 *  - steps (async pools): the socket is non-blocking; fp_conn_step makes all the progress
 *    it can and says what to wait for. TLS bytes OpenSSL already decrypted are consumed
 *    before it ever answers "want read", so the caller may park on the fd safely.
 *
 * Limits of a blocking exchange, exactly:
 *  - write: the longest stall while the request is written, counted from the last byte the
 *    socket accepted;
 *  - read: the longest silence between response bytes (from the end of the write, then from
 *    the last byte received), TLS record fragments included;
 *  - deadline: a hard end for the whole exchange; it holds however the bytes trickle.
 * TLS goes through a BIO of ours (fp_tls's method) so that OpenSSL's own retries of a partial
 * record obey the same limits: each socket call it makes is bounded by the time left.
 *
 * Busy-poll (fp_conn_set_busy_poll, off by default; blocking mode only): each time a blocking
 * read would sleep in the kernel, it first repeats non-blocking reads for at most busy_ns,
 * then sleeps for whatever the limits leave. The spin counts against the read limit and the
 * deadline like any wait, so they end the exchange at the same moment with or without it.
 * It buys the wake-up (the scheduler's latency to run a sleeping thread again) for a core
 * kept busy; it costs that core, and on a machine with fewer cores than busy threads it
 * delays the very peer it waits for. A signal that arrives during the spin itself finds no
 * syscall asleep to return EINTR; so a spin returns FP_INTERRUPTED every millisecond (and
 * once more when a spin of a millisecond or more ends) for the caller to run the handlers,
 * then resumes. A spin shorter than that never leaves C (its end would wait for the GIL on
 * the path to the sleep): a signal landing in it is handled when the exchange returns.
 *
 * Signals: Python's handlers are installed without SA_RESTART, so a blocking call returns
 * EINTR when one arrives. A blocking exchange then returns FP_INTERRUPTED with its state kept:
 * the caller runs the handlers and either resumes (fp_conn_resume: the limits go on from
 * where they were, they do not restart) or abandons it (fp_conn_close).
 *
 * Unsolicited bytes: a connection never carries a request while bytes from its peer are
 * pending (RFC 9112 §9.3 gives an HTTP/1.1 server nothing to say between exchanges). Before
 * each request, fresh or reused, one poll(0) and OpenSSL's buffers are checked; bytes there
 * (or a close) fail the exchange with nothing written. A response followed by more bytes,
 * already in our buffer or in OpenSSL's, makes the connection not reusable at fp_conn_finish.
 *
 * The receive buffer is allocated once per connection, grown only for responses that need
 * it (bounded by the parser limits) and shrunk back afterwards.
 */
#ifndef FP_CONN_H
#define FP_CONN_H

#include <stddef.h>
#include <stdint.h>

#include "fp_http.h"
#include "fp_tls.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What failed. The Python layer turns (kind, sent) into NotSent / MaybeSent errors. */
enum {
    FP_CE_NONE = 0,
    FP_CE_CONNECT,         /* socket / connect failed: refused, unreachable */
    FP_CE_CONNECT_TIMEOUT, /* connect or TLS handshake ran out of time */
    FP_CE_TLS,             /* TLS handshake failed (verify holds the X509 result) */
    FP_CE_WRITE,           /* sending failed; sent says whether any byte left (0 also when
                            * the peer spoke or closed before the request: nothing written) */
    FP_CE_WRITE_TIMEOUT,
    FP_CE_READ,            /* receiving failed otherwise (TLS alert, decryption error) */
    FP_CE_READ_TIMEOUT,
    FP_CE_CLOSED,          /* the peer closed or reset the connection after the request was
                            * written, before the response completed; code says how */
    FP_CE_PROTOCOL,        /* the response is malformed; code is the parser's */
    FP_CE_NOMEM
};

typedef struct fp_cerr {
    int kind;
    int sys_errno;
    int code;        /* fp_http code for FP_CE_CLOSED / FP_CE_PROTOCOL */
    long verify;     /* X509_V_* for FP_CE_TLS */
    uint64_t sent;   /* bytes of the request that reached the socket (wire bytes for TLS) */
    char msg[384];
} fp_cerr;

/* Step results. */
enum { FP_STEP_DONE = 0, FP_STEP_WANT_READ = 1, FP_STEP_WANT_WRITE = 2, FP_STEP_ERROR = -1 };

/* fp_conn_exchange / fp_conn_resume: a signal handler must run; the exchange is resumable. */
enum { FP_INTERRUPTED = 1 };

typedef struct fp_conn {
    int fd;
    SSL *ssl;
    BIO_METHOD *bio_method;  /* the BIO SSL does its I/O through (see above), per connection */
    int blocking;
    int resumed;             /* the TLS handshake resumed a session */
    char host[256];          /* server name; outlives ssl (read by fp_tls's session hook) */
    fp_limits lim;
    fp_span *spans;          /* lim.max_headers */
    char *buf;               /* receive buffer */
    size_t cap, len, base_cap;
    fp_resp resp;
    int64_t end;             /* response length in buf once complete */
    /* the request being sent (owned by the caller until the exchange is done) */
    const char *out;
    size_t out_len, out_done;
    uint64_t wire_before;    /* BIO_number_written at the start of the request (TLS) */
    uint64_t received;       /* response bytes received in the current exchange */
    uint64_t exchanges;      /* exchanges begun since the connection opened */
    int head_request;
    int state;
    /* the limits of the current blocking exchange (see above; -1 / 0 = none) */
    int64_t write_ns, read_ns, deadline_ns;
    int64_t t_progress;      /* when bytes last moved (the stall / silence clock) */
    int64_t t_hint;          /* a clock reading just taken, reused by the next wait (0: none) */
    int progressed;          /* bytes moved since t_progress: the next wait reads the clock */
    int nowait;              /* reads must not block (a pending-bytes check in blocking mode) */
    int io_status;           /* why the last blocking socket call moved nothing (fp_conn.c) */
    int io_errno;            /* errno of the last failed socket call */
    int64_t rcvtimeo_us;     /* SO_RCVTIMEO on the fd, in microseconds (0 = none, -1 = unknown) */
    int64_t busy_ns;         /* busy-poll before each blocking read (see above; 0 = off) */
    int64_t spin_until;      /* the spin under way ends then (0: none; -1: it ended, sleep) */
    int64_t spin_check;      /* when the spin under way next returns for signal handlers */
    /* CLOCK_MONOTONIC nanoseconds of the current exchange */
    int64_t t_start, t_written, t_first_byte, t_complete;
    int64_t t_idle;          /* when the connection last became idle (opened or finished) */
    fp_cerr pipe_err;        /* why a pipeline cannot go on (fp_conn_next), reported next */
} fp_conn;

/* Prepares c (no socket yet): allocates the receive buffer (bufsize bytes) and spans. 0 or -1. */
int fp_conn_init(fp_conn *c, const fp_limits *lim, size_t bufsize);

/* Closes the socket (if any) and frees the buffers. */
void fp_conn_free(fp_conn *c);

/* Closes the socket, keeping the buffers (the connection can be opened again). */
void fp_conn_close(fp_conn *c);

/* Connects to ip:port (family AF_INET / AF_INET6) with TCP_NODELAY, then TLS-handshakes when
 * tls is given (host is the SNI / verification name), all by deadline_ns (CLOCK_MONOTONIC,
 * 0 = none). blocking selects the mode of the exchange that follows. 0, or -1 with err. */
int fp_conn_open(fp_conn *c, int family, const char *ip, int port, fp_tls *tls,
                 const char *host, int blocking, int64_t deadline_ns, fp_cerr *err);

/* Blocking mode: spin on non-blocking reads for at most busy_ns before each read would sleep
 * (0 = off, the default; see above). Kept across fp_conn_open; step mode ignores it. */
void fp_conn_set_busy_poll(fp_conn *c, int64_t busy_ns);

/* Whether an idle connection is unusable: the peer closed it, reset it, or sent bytes nobody
 * asked for. TLS records that are not application data (TLS 1.3 session tickets) are
 * processed and do not make it stale. 1 stale, 0 usable. Never blocks. */
int fp_conn_stale(fp_conn *c);

/* Blocking mode: sends req and reads the complete response. write_timeout_ns bounds a stall
 * of the write and read_timeout_ns a silence of the response (-1 = none, 0 = take only what
 * is already there); deadline_ns (CLOCK_MONOTONIC, 0 = none) ends the whole exchange. First
 * checks the peer sent nothing (FP_CE_WRITE, sent 0, nothing written). 0 on success (the
 * response is in c->resp / c->buf), -1 with err, FP_INTERRUPTED (see above). */
int fp_conn_exchange(fp_conn *c, const char *req, size_t len, int head_request,
                     int64_t write_timeout_ns, int64_t read_timeout_ns, int64_t deadline_ns,
                     fp_cerr *err);

/* Blocking mode: goes on with an exchange that returned FP_INTERRUPTED, under the limits it
 * started with (req must still be valid). Same results as fp_conn_exchange. */
int fp_conn_resume(fp_conn *c, fp_cerr *err);

/* Step mode: starts an exchange; req must stay valid until it is done. */
void fp_conn_begin(fp_conn *c, const char *req, size_t len, int head_request);

/* Step mode: makes all the progress possible without blocking. FP_STEP_DONE,
 * FP_STEP_WANT_READ, FP_STEP_WANT_WRITE, or FP_STEP_ERROR with err. The first call checks
 * the peer sent nothing, as fp_conn_exchange does. Once the request is written it answers
 * FP_STEP_WANT_READ without trying to read (the response cannot be there yet); every later
 * call reads until OpenSSL and the socket are drained. */
int fp_conn_step(fp_conn *c, fp_cerr *err);

/* Between exchanges: switches the mode of the exchanges that follow (1 blocking, 0 steps).
 * A sync pool steps the connections of a hedged request (two exchanges raced in one thread:
 * fastpool/_drivers/sync_race.py) and switches them back before they are reused. The kernel
 * receive timeout armed for blocking mode is kept (a non-blocking socket ignores it). 0, or
 * -1 with errno (EBADF when closed, EBUSY inside an exchange). */
int fp_conn_set_blocking(fp_conn *c, int blocking);

/* Bytes of the request that reached the socket so far (wire bytes for TLS). */
uint64_t fp_conn_sent(const fp_conn *c);

/* After a response was taken: whether the connection may carry another request (keep-alive
 * and no unsolicited bytes after the response, in our buffer or in OpenSSL's). Also resets
 * the receive state. Never blocks. */
int fp_conn_finish(fp_conn *c);

/* Pipelining (RFC 9112 §9.3.2): the exchange wrote several requests at once (one buffer) and
 * its response is complete (fp_conn_exchange returned 0, or a step FP_STEP_DONE; the caller
 * took it from c->resp / c->buf). Goes on to the response of the next request (head_request:
 * it is a HEAD), starting from the bytes already received after the one just taken:
 * FP_STEP_DONE when they hold it whole, FP_STEP_WANT_READ when more must be read (blocking
 * mode: fp_conn_resume; step mode: fp_conn_step, which reads OpenSSL's buffers first), or
 * FP_STEP_ERROR with err when the pipeline cannot go on: the response just taken ends the
 * connection (not keep-alive: FP_CE_CLOSED, code FP_E_NO_RESPONSE), or the next one is
 * malformed (FP_CE_PROTOCOL). The error is also kept and reported by the next fp_conn_step or
 * fp_conn_resume (so a step-mode caller may take the response first and learn it there); the
 * connection is then broken. Never blocks, never reads the socket. */
int fp_conn_next(fp_conn *c, int head_request, fp_cerr *err);

/* TLS protocol version name ("TLSv1.3") or "" for plain TCP. */
const char *fp_conn_tls_version(const fp_conn *c);

#ifdef __cplusplus
}
#endif
#endif /* FP_CONN_H */
