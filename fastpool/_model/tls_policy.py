"""The TLS offer both engines make: one policy, applied by fp_tls (C) and the pure engine.

RFC 9325 (BCP 195, 2022), §4.2: with TLS 1.2, only cipher suites with forward secrecy (ECDHE)
and authenticated encryption (AES-GCM, ChaCha20-Poly1305); no static RSA key exchange, no
CBC, no SHA-1 MACs, no RC4/3DES/NULL/export. TLS 1.3 suites all qualify (RFC 8446); OpenSSL's
default set is offered. TLS 1.2 is the lowest version accepted (§3.1.1).
"""

#: TLS 1.2 suites, in OpenSSL's names, strongest key exchange first (ECDSA certificates, then
#: RSA ones); AES-128-GCM before AES-256-GCM (both are secure; 128 is faster without AES-NI
#: and what exchange gateways negotiate).
TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
))

#: TLS 1.3 suites (SSL_CTX_set_ciphersuites' names): OpenSSL's defaults, stated explicitly.
TLS13_CIPHERSUITES = ":".join((
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
))

#: Key exchange groups (SSL_CTX_set1_groups_list): X25519 first, then the NIST curves.
GROUPS = "X25519:P-256:P-384"
