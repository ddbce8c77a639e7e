# Declarations of csrc/fp_tls.h (and the OpenSSL version constants it takes) for the Cython
# binding (the header is the specification).

cdef extern from "openssl/ssl.h":
    int TLS1_2_VERSION
    int TLS1_3_VERSION


cdef extern from "fp_tls.h" nogil:
    ctypedef struct fp_tls_config:
        int verify
        const char *ca_file
        const char *ca_pem
        size_t ca_pem_len
        const char *cert_file
        const char *key_file
        int min_version
        int max_version
        const char *ciphers
        const char *ciphersuites
        const char *groups

    ctypedef struct fp_tls:
        pass

    int fp_tls_init(fp_tls *t, const fp_tls_config *cfg, char *err, size_t errlen)
    void fp_tls_free(fp_tls *t)
    void fp_tls_forget(fp_tls *t)
