/*
 * fp_http — HTTP/1.1 response parser, chunked decoder and request writer.
 *
 * Stateless in the sense that matters: no allocation, no globals, no copies of the input.
 * Results are offsets into the caller's buffer. Parsing state that must survive between calls
 * (so that a call with more bytes does not rescan what was already scanned) lives in
 * caller-owned structs.
 *
 * This header is the specification of both engines: fastpool/_engine/_pure/_http.py
 * implements the same rules, in the same order, with the same codes (fastpool/_model/codes.py).
 *
 * ---- Lines (RFC 9112 §2.2) -------------------------------------------------------------
 * A line ends at LF. Its *content* is the bytes before the LF, minus one CR directly before
 * the LF. (A bare LF is accepted as RFC 9112 §2.2 allows; a CR anywhere else stays in the
 * content and is rejected by the content rules as a control character.)
 * Only complete lines are validated. For an incomplete line (no LF yet) the only check is
 *     bytes since the line start > max_line + 1   ->  FP_E_LINE_TOO_LONG
 * (+1 because the last byte may be the CR of the coming CR LF). For a complete line the
 * checks run in this order, and the first failure is the result:
 *     1. content length > max_line                                 -> FP_E_LINE_TOO_LONG
 *     2. bytes from the head (or trailer section) start through
 *        this line's LF > max_head                                 -> FP_E_HEAD_TOO_LARGE
 *     3. the syntax rules of the line (below)
 *     4. for a field line: it would be field line number max_headers+1 -> FP_E_TOO_MANY_HEADERS
 *     5. the semantic rules of the field (below)
 * This order makes the result independent of how the bytes were split across calls.
 *
 * ---- Status line --------------------------------------------------------------------------
 *   content[0..8) must be "HTTP/1.0" or "HTTP/1.1" and content[8] a SP   else FP_E_VERSION
 *   content[9..12) three DIGITs with value >= 100                        else FP_E_STATUS
 *   content[12] absent (end of content) or SP                            else FP_E_STATUS
 *   reason = content[13..): only HTAB, SP, 0x21-0x7E, 0x80-0xFF          else FP_E_REASON
 *   (the reason is not trimmed; it is empty when content[12] is absent or the last byte)
 * A response whose head starts with an empty line is FP_E_VERSION (so is a stray empty line
 * between an interim response and the next head).
 *
 * ---- Field lines (header and trailer) ----------------------------------------------------
 *   the empty line ends the head (or the trailer section).
 *   content[0] is SP or HTAB                                             -> FP_E_OBS_FOLD
 *   scan the name while bytes are tchar (RFC 9110 §5.6.2); at the first other byte:
 *     ':'  with an empty name                                            -> FP_E_HEADER_NAME
 *     ':'  otherwise: the name is done
 *     SP or HTAB                                                         -> FP_E_HEADER_WS
 *     end of content                                                     -> FP_E_HEADER_NO_COLON
 *     anything else                                                      -> FP_E_HEADER_NAME
 *   value = rest after ':', with leading and trailing SP/HTAB excluded from its span
 *     (value_len 0 when the rest is empty or all SP/HTAB);
 *     any byte of the rest other than HTAB, SP, 0x21-0x7E, 0x80-0xFF     -> FP_E_HEADER_VALUE
 *
 * ---- Semantic rules of a head's fields (names compared case-insensitively) ---------------
 *   Content-Length: the value must be 1*DIGIT (no sign, no list, no inner space) with value
 *     <= 2^63-1, else FP_E_CL_INVALID; a second Content-Length (equal or not) is
 *     FP_E_CL_MULTIPLE (checked after CL_INVALID).
 *   Transfer-Encoding: the value must be exactly "chunked" (case-insensitive); any other
 *     value, a second Transfer-Encoding line, or any Transfer-Encoding in an HTTP/1.0
 *     response (RFC 9112 §6.1) is FP_E_TE_UNSUPPORTED.
 *   Connection: comma-separated tokens (OWS around each); "close" and "keep-alive" are noted
 *     (case-insensitive, the whole trimmed element must match), empty elements and others are
 *     ignored; never an error. Several Connection lines accumulate.
 * These rules, and all of the above, apply to every head, interim 1xx heads included.
 * When the blank line ending a head is reached, in this order:
 *     Content-Length and Transfer-Encoding both present                  -> FP_E_CL_AND_TE
 *     status 101                                                          -> FP_E_UNSOLICITED_101
 *     status 1xx: an interim response; it is skipped; the (max_interim+1)th -> FP_E_TOO_MANY_INTERIM
 * (fp_head_parse makes the first check; the other two are fp_resp_parse's. CL_AND_TE holds even
 * when the framing would use neither: HEAD, 204, 304.)
 *
 * ---- Body framing of the final response (RFC 9112 §6.3) ----------------------------------
 *   request was HEAD, or status 204 or 304   -> no body (whatever CL / TE say)
 *   Transfer-Encoding: chunked               -> chunked body
 *   Content-Length: n                        -> n bytes; n > max_body -> FP_E_BODY_TOO_LARGE
 *                                               (reported as soon as the head is complete)
 *   otherwise                                -> body runs to end of connection (close-delimited);
 *                                               more than max_body bytes -> FP_E_BODY_TOO_LARGE
 * keep_alive = (HTTP/1.1 and no "close" token, or HTTP/1.0 with a "keep-alive" token and no
 *              "close" token) and the body is not close-delimited.
 *
 * ---- Chunked body (RFC 9112 §7.1) ----------------------------------------------------------
 * The chunk-size line is a line (rules above; the "head start" of check 2 does not apply to
 * it). Its content:
 *   1 to 16 HEXDIGs (leading zeros count), value <= 2^63-1                else FP_E_CHUNK_SIZE
 *   then any SP/HTAB; then end of content, or ';' followed by the extension bytes, which
 *   must all be HTAB, SP, 0x21-0x7E or 0x80-0xFF                          else FP_E_CHUNK_EXT
 *   any other byte after the digits and whitespace                        -> FP_E_CHUNK_SIZE
 *   decoded bytes so far + size > max_body                                -> FP_E_BODY_TOO_LARGE
 * After size bytes of data: exactly CR LF (checked byte by byte as the bytes arrive: the
 * first byte that does not match; a bare LF is refused here, unlike at line ends)
 *                                                                         -> FP_E_CHUNK_CRLF
 * Size 0 starts the trailer section: field lines (checks 1-4 as above: syntax rules and
 * max_headers, counted per trailer section; check 2 counts the bytes from the start of the
 * first trailer line, i.e. just after the last-chunk line, through this line's LF, the final
 * empty line included) until an empty line; trailers are skipped, never interpreted (no
 * semantic rules: a Content-Length trailer is just a field).
 * The decoder is in place: decoded data is moved down over the framing, so after each call
 * the body region holds [decoded data][not yet decoded input].
 *
 * ---- End of input (fp_resp_eof) ------------------------------------------------------------
 *   the parse already failed                  -> that error, again
 *   no byte received at all                   -> FP_E_NO_RESPONSE
 *   close-delimited body                      -> complete (FP_E_BODY_TOO_LARGE if len holds
 *                                                more than max_body body bytes, which only
 *                                                happens when they were not given to
 *                                                fp_resp_parse first)
 *   already complete                          -> complete
 *   anywhere else (in a head, in a body)      -> FP_E_TRUNCATED
 *
 * ---- Errors are final ----------------------------------------------------------------------
 * Once fp_resp_parse, fp_resp_eof or fp_chunked_decode returned an FP_E_* code, every later
 * call on the same state returns that code again (the framing is lost; nothing after it can be
 * trusted). Once complete, fp_resp_parse keeps returning the same length and touches nothing.
 * After an error from fp_head_parse its state is unspecified: fp_head_init before reuse.
 */
#ifndef FP_HTTP_H
#define FP_HTTP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Return codes. Non-negative values are byte counts; FP_NEED_MORE asks for more input. */
enum {
    FP_NEED_MORE = -1,
    /* response parsing: fastpool/_model/codes.py PARSE_ERRORS */
    FP_E_VERSION = -2,
    FP_E_STATUS = -3,
    FP_E_REASON = -4,
    FP_E_HEADER_NAME = -5,
    FP_E_HEADER_NO_COLON = -6,
    FP_E_HEADER_WS = -7,
    FP_E_HEADER_VALUE = -8,
    FP_E_OBS_FOLD = -9,
    FP_E_TOO_MANY_HEADERS = -10,
    FP_E_LINE_TOO_LONG = -11,
    FP_E_HEAD_TOO_LARGE = -12,
    FP_E_CL_INVALID = -13,
    FP_E_CL_MULTIPLE = -14,
    FP_E_CL_AND_TE = -15,
    FP_E_TE_UNSUPPORTED = -16,
    FP_E_CHUNK_SIZE = -17,
    FP_E_CHUNK_EXT = -18,
    FP_E_CHUNK_CRLF = -19,
    FP_E_BODY_TOO_LARGE = -20,
    FP_E_UNSOLICITED_101 = -21,
    FP_E_TOO_MANY_INTERIM = -22,
    FP_E_TRUNCATED = -23,
    FP_E_NO_RESPONSE = -24,
    /* request writing: fastpool/_model/codes.py WRITE_ERRORS */
    FP_E_METHOD = -64,
    FP_E_TARGET = -65,
    FP_E_FIELD_NAME = -66,
    FP_E_FIELD_VALUE = -67,
    FP_E_FIELD_FORBIDDEN = -68,
    FP_E_CL_MISMATCH = -69,
    FP_E_BUFFER = -70
};

typedef struct fp_limits {
    uint32_t max_headers; /* field lines per head / trailer section (>= 1) */
    uint32_t max_line;    /* bytes of line content, excluding the line ending */
    uint32_t max_head;    /* bytes per head (and per trailer section), line endings included */
    uint32_t max_interim; /* 1xx responses skipped before the final response */
    uint64_t max_body;    /* decoded body bytes */
} fp_limits;

/* Fills in the defaults (the same as fastpool._model.limits.Limits()). */
void fp_limits_default(fp_limits *lim);

/* A header field: offsets relative to the start of the head it belongs to. */
typedef struct fp_span {
    uint32_t name_off, name_len, value_off, value_len;
} fp_span;

/* ---- one head (status line + fields + blank line) --------------------------------------- */

typedef struct fp_head {
    /* results, complete when fp_head_parse returned > 0 */
    int status;             /* 100..999 */
    int minor_version;      /* 0 or 1 */
    uint32_t reason_off, reason_len;
    uint32_t num_headers;   /* spans filled */
    int64_t content_length; /* -1 when absent */
    int chunked;            /* Transfer-Encoding: chunked seen */
    int conn_close;         /* "close" token in Connection */
    int conn_keep_alive;    /* "keep-alive" token in Connection */
    /* private: resume state */
    uint32_t pos;           /* start of the first line not yet parsed, relative to the head */
    uint32_t scan;          /* bytes of that line already searched for LF */
    int in_fields;          /* the status line is done */
} fp_head;

/* Prepares h for a new head. */
void fp_head_init(fp_head *h);

/* Parses the head at buf[0..len) (len = all bytes received so far; the call resumes where the
 * previous one stopped). spans must have room for lim->max_headers entries and be the same
 * array on every call for this head. Returns the head's length in bytes (> 0) when complete,
 * FP_NEED_MORE, or an FP_E_* code (FP_E_CL_AND_TE included; 101 and 1xx are not judged here:
 * status tells). */
int64_t fp_head_parse(fp_head *h, const char *buf, size_t len, const fp_limits *lim,
                      fp_span *spans);

/* ---- chunked body ------------------------------------------------------------------------ */

typedef struct fp_chunked {
    uint64_t decoded;  /* bytes of decoded data at the start of the body region */
    /* private */
    uint64_t pos;      /* next undecoded input byte, relative to the body region */
    uint64_t left;     /* bytes left in the current chunk's data */
    uint64_t scan;     /* bytes of the current line already searched for LF */
    uint64_t trailer_start; /* trailer-section bytes consumed so far (check 2); validated
                               trailer lines are removed from the buffer like other framing */
    uint32_t trailers;
    int state;
} fp_chunked;

/* Prepares d for a new chunked body. */
void fp_chunked_init(fp_chunked *d);

/* Decodes in place the chunked body at buf[0..*len) (all body bytes received so far; resumes
 * where the previous call stopped). On return buf[0..d->decoded) is decoded data followed by
 * the input not yet decoded, and *len is reduced by the framing removed. Returns the decoded
 * length (>= 0) when the body is complete (buf[returned..*len) is then whatever followed the
 * body), FP_NEED_MORE, or an FP_E_* code. */
int64_t fp_chunked_decode(fp_chunked *d, char *buf, size_t *len, const fp_limits *lim);

/* ---- a whole response (interim responses, final head, body) ------------------------------- */

typedef struct fp_resp {
    fp_limits lim;
    int head_request;
    /* results, complete when fp_resp_parse / fp_resp_eof returned > 0 */
    fp_head head;           /* the final head */
    uint64_t head_off;      /* offset of the final head in the buffer */
    uint64_t head_len;
    uint64_t body_off;      /* the body (decoded) is buf[body_off .. body_off + body_len) */
    uint64_t body_len;
    int keep_alive;
    uint32_t interim;       /* 1xx responses skipped */
    /* private */
    int state;
    int close_delimited;
    fp_chunked chunked;
} fp_resp;

/* Prepares r for a new response; head_request is nonzero when the request was HEAD. */
void fp_resp_init(fp_resp *r, const fp_limits *lim, int head_request);

/* Parses the response at buf[0..*len) (all bytes received since the response began; resumes
 * where the previous call stopped). May move bytes within buf and reduce *len (chunked).
 * spans: room for lim.max_headers; filled for the final head. Returns the length of the
 * response in the buffer (> 0, bytes after it are not part of it), FP_NEED_MORE, or FP_E_*. */
int64_t fp_resp_parse(fp_resp *r, char *buf, size_t *len, fp_span *spans);

/* The connection reached end of input after buf[0..len); len is the *len the last
 * fp_resp_parse call left (all received bytes parsed first). Returns the response length (> 0)
 * when that completes it (close-delimited, or already complete), or FP_E_TRUNCATED /
 * FP_E_NO_RESPONSE (or the error the parse already failed with). */
int64_t fp_resp_eof(fp_resp *r, const char *buf, size_t len);

/* ---- request writer ------------------------------------------------------------------------ */

typedef struct fp_field {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} fp_field;

/* Returns 0 when the method is a non-empty token (RFC 9110 §9.1), else FP_E_METHOD. */
int fp_check_method(const char *method, size_t len);

/* Returns 0 when target is "*" or starts with '/' and holds only 0x21-0x7E, else FP_E_TARGET.
 * (Percent-encoding is the caller's job; raw non-ASCII, spaces and controls are refused.) */
int fp_check_target(const char *target, size_t len);

/* Returns 0 when the field may be written: the name a non-empty token, the value free of
 * controls other than HTAB (so no CR, LF, NUL) and DEL (obs-text 0x80-0xFF is allowed).
 * Otherwise FP_E_FIELD_NAME / FP_E_FIELD_VALUE. Host, Connection and Transfer-Encoding
 * (case-insensitive) are FP_E_FIELD_FORBIDDEN: the pool owns them (one host per pool;
 * persistence is the pool's decision; bodies are sent with Content-Length only). Checked in
 * this order: name, forbidden name, value. Content-Length is allowed here; fp_write_request
 * checks its value. */
int fp_check_field(const fp_field *field);

/* Bytes fp_write_request will need (an upper bound, exact unless caller Content-Length
 * fields are dropped). content_length < 0 means no body and no Content-Length field. */
size_t fp_request_size(size_t method_len, size_t target_len, size_t block_len,
                       const fp_field *fields, size_t nfields, int64_t content_length);

/* Writes "METHOD SP target SP HTTP/1.1 CRLF" + block (pre-encoded, pre-validated field lines
 * ending in CRLF, from fp_write_fields; not checked again) + each field as "name: value CRLF"
 * + "Content-Length: n CRLF" when content_length >= 0 + CRLF + body (content_length bytes)
 * into out. Every input is validated before the first byte is written, in this order: method
 * (FP_E_METHOD), target (FP_E_TARGET), each field in order (fp_check_field, then its
 * Content-Length value), body (NULL with content_length > 0 is FP_E_CL_MISMATCH; body may be
 * NULL when content_length <= 0), then the size (FP_E_BUFFER when cap is too small). A caller
 * field named Content-Length whose value (OWS-trimmed, 1*DIGIT) equals content_length is
 * dropped (the writer writes its own); any other value, or one when content_length < 0, is
 * FP_E_CL_MISMATCH. On any error out is untouched. Returns bytes written, or an FP_E_* code. */
int64_t fp_write_request(char *out, size_t cap, const char *method, size_t method_len,
                         const char *target, size_t target_len, const char *block,
                         size_t block_len, const fp_field *fields, size_t nfields,
                         const char *body, int64_t content_length);

/* Writes the fields as "name: value CRLF" lines into out after validating all of them with
 * fp_check_field (the pool's constant header block). Content-Length is FP_E_FIELD_FORBIDDEN
 * here too: the block goes on every request, bodiless ones included, and fp_write_request adds
 * its own. On any error (FP_E_BUFFER included) out is untouched. Returns bytes written or
 * FP_E_*. */
int64_t fp_write_fields(char *out, size_t cap, const fp_field *fields, size_t nfields);

#ifdef __cplusplus
}
#endif
#endif /* FP_HTTP_H */
