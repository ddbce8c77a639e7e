# Declarations of csrc/fp_server.h for the Cython binding (the header is the specification).

from libc.stdint cimport uint16_t, uint32_t, uint64_t


cdef extern from "fp_server.h" nogil:
    enum:
        FP_SRV_E_CONFIG
        FP_SRV_E_NOMEM
        FP_SRV_E_SOCKET
        FP_SRV_E_TLS
        FP_SRV_E_CLIENT_CA
        FP_SRV_E_THREAD
        FP_SRV_E_STATE
        FP_SRV_E_SYS
    enum:
        FP_SRV_TLS_DEFAULT
        FP_SRV_TLS_1_2
        FP_SRV_TLS_1_3
    size_t FP_SRV_MAX_BODY
    size_t FP_SRV_MAX_HEADERS_BLOCK
    size_t FP_SRV_MAX_CLIENT_CA
    unsigned int FP_SRV_MAX_TIME_MS

    ctypedef struct fp_server_config:
        int ipv6
        uint16_t port
        int tls
        int tls_min
        int tls_max
        int status
        const char *headers
        size_t headers_len
        const char *body
        size_t body_size
        int chunked
        size_t chunk_size
        int echo
        uint32_t close_after
        int close_silently
        uint32_t idle_timeout_ms
        uint32_t delay_ms
        const char *client_ca_pem
        size_t client_ca_pem_len

    ctypedef struct fp_server_stats:
        uint64_t accepted
        uint64_t open
        uint64_t requests
        uint64_t bad_requests
        uint64_t tls_handshakes
        uint64_t tls_resumed
        uint64_t bytes_in
        uint64_t bytes_out

    ctypedef struct fp_server:
        pass

    void fp_server_config_init(fp_server_config *cfg)
    int fp_server_create(const fp_server_config *cfg, fp_server **out, int *err_no)
    int fp_server_start(fp_server *srv)
    int fp_server_stop(fp_server *srv)
    void fp_server_destroy(fp_server *srv)
    int fp_server_port(const fp_server *srv)
    const char *fp_server_ca_pem(const fp_server *srv, size_t *len)
    void fp_server_get_stats(const fp_server *srv, fp_server_stats *out)
