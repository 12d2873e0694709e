#!/usr/bin/env python3
"""Print the certificate each TLS listener serves, as PEM, for playbooks/verify.yml.

Usage: tls_listener_certs.py NAME=HOST:PORT ...
Prints one JSON object {NAME: {"pem": "..."} or {"error": "..."}}. The certificate is only read
(no SNI, so the listener's default certificate, the one kong.conf configures), not trusted:
verify.yml parses it on the controller for its dates. Standard library only.
"""

import json
import socket
import ssl
import sys


def read(host: str, port: int) -> dict[str, str]:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, port), timeout=5) as raw,
            context.wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except OSError as exc:
        return {"error": str(exc)}
    if not der:
        return {"error": "no certificate"}
    return {"pem": ssl.DER_cert_to_PEM_cert(der)}


def main() -> int:
    result = {}
    for arg in sys.argv[1:]:
        name, _, address = arg.partition("=")
        host, _, port = address.rpartition(":")
        result[name] = read(host.strip("[]"), int(port))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
