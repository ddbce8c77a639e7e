# Declarations of csrc/fp_http.h
# for the Cython binding (the header is the specification).

from libc.stdint cimport int64_t, uint32_t, uint64_t

cdef extern from "fp_http.h" nogil:
    enum:
        FP_NEED_MORE
        FP_E_BUFFER

    ctypedef struct fp_limits:
        uint32_t max_headers
        uint32_t max_line
        uint32_t max_head
        uint32_t max_interim
        uint64_t max_body

    ctypedef struct fp_span:
        uint32_t name_off, name_len, value_off, value_len

    ctypedef struct fp_head:
        int status
        int minor_version
        uint32_t reason_off, reason_len
        uint32_t num_headers

    ctypedef struct fp_resp:
        fp_limits lim
        fp_head head
        uint64_t head_off, head_len, body_off, body_len
        int keep_alive
        uint32_t interim

    ctypedef struct fp_field:
        const char *name
        size_t name_len
        const char *value
        size_t value_len

    void fp_limits_default(fp_limits *lim)
    void fp_resp_init(fp_resp *r, const fp_limits *lim, int head_request)
    int64_t fp_resp_parse(fp_resp *r, char *buf, size_t *len, fp_span *spans)
    int64_t fp_resp_eof(fp_resp *r, const char *buf, size_t len)
    int fp_check_field(const fp_field *field)
    size_t fp_request_size(size_t method_len, size_t target_len, size_t block_len,
                           const fp_field *fields, size_t nfields, int64_t content_length)
    int64_t fp_write_request(char *out, size_t cap, const char *method, size_t method_len,
                             const char *target, size_t target_len, const char *block,
                             size_t block_len, const fp_field *fields, size_t nfields,
                             const char *body, int64_t content_length)
    int64_t fp_write_fields(char *out, size_t cap, const fp_field *fields, size_t nfields)
