"""TLS: PEM checks for the certificate entities, the listeners' certificates (configured or
Kong's generated defaults), the proxy's certificate selection by SNI, and the client contexts
for ``https`` Services.

Facts from Kong 3.9.3: ``kong/cmd/utils/prefix_handler.lua`` (default certificates),
``kong/conf_loader/parse.lua`` (``ssl_cert`` checks), ``kong/runloop/certificate.lua`` (SNI
lookup order), ``kong/runloop/upstream_ssl.lua`` (Service TLS). Serving uses the standard
library's ``ssl``; ``cryptography`` (Debian's ``python3-cryptography``) parses and generates.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import hashlib
import ipaddress
import os
import re
import ssl
import stat
import tempfile
import threading
from collections.abc import Callable, Mapping
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PEM_CERT = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)

# conf prefix -> (kong.conf key prefix, default file stem), constants.lua PREFIX_PATHS.
FAMILIES = {
    "proxy_listeners": ("", "kong-default", "proxy"),
    "admin_listeners": ("admin_", "admin-kong-default", "admin"),
    "status_listeners": ("status_", "status-kong-default", "status"),
}


# --- PEM parsing (the entities' validators) -------------------------------------------------


def _openssl_tail(exc: Exception) -> str:
    """OpenSSL's error string is build-specific (the reference leaves it open); the
    simulator reports cryptography's reason in its place."""
    return str(exc).strip() or exc.__class__.__name__


def load_cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def load_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def validate_cert(value: str) -> str | None:
    """``typedefs.certificate``: ``invalid certificate: x509.new: <OpenSSL error>``."""
    try:
        load_cert(value)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"invalid certificate: x509.new: {_openssl_tail(exc)}"
    return None


def validate_key(value: str) -> str | None:
    """``typedefs.key``: ``invalid key: pkey.new:load_key: <OpenSSL error>``."""
    try:
        load_key(value)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        return f"invalid key: pkey.new:load_key: {_openssl_tail(exc)}"
    return None


def _spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def pair_matches(cert_pem: str, key_pem: str) -> bool:
    return _spki(load_cert(cert_pem).public_key()) == _spki(load_key(key_pem).public_key())


def key_type(cert_pem: str) -> str:
    """``rsa``, ``ec`` or another key class name: cert and cert_alt must differ."""
    key = load_cert(cert_pem).public_key()
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec"
    return type(key).__name__


def cert_digest(pem: str) -> str:
    """``ca_certificates.cert_digest``: sha256 hex of the DER."""
    der = load_cert(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def ca_problem(pem: str, now: datetime.datetime | None = None) -> str | None:
    """``ca_certificates.lua`` entity check, in Kong's order."""
    if len(PEM_CERT.findall(pem)) > 1:
        return "please submit only one certificate at a time"
    cert = load_cert(pem)
    now = now or datetime.datetime.now(datetime.UTC)
    # not_valid_after_utc from cryptography 42; Debian 12's 38 has only the naive one
    not_after = getattr(cert, "not_valid_after_utc", None)
    if not_after is None:
        not_after = cert.not_valid_after.replace(tzinfo=datetime.UTC)
    if not_after < now:
        return 'certificate expired, "Not After" time is in the past'
    try:
        is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        return (
            'certificate does not appear to be a CA because it is missing the "CA" basic constraint'
        )
    return None


def sni_problem(name: str) -> str | None:
    """``typedefs.wildcard_host`` as the snis entity uses it (kong/db/schema/typedefs.lua)."""
    star = name.find("*")
    host = name
    if star != -1:
        if star not in (0, len(name) - 1):
            return "wildcard must be leftmost or rightmost character"
        if name.count("*") > 1:
            return "only one wildcard must be specified"
        host = name.replace("*", "wildcard")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        pass
    else:
        return "must not be an IP"
    base, sep, port = host.rpartition(":")
    if sep and port.isdigit() and base:
        return "must not have a port"
    if not re.fullmatch(r"[A-Za-z0-9_\-.]+", host) or host.startswith(".") or ".." in host:
        return f"invalid value: {host}"
    return None


# --- listeners ----------------------------------------------------------------------------


class ConfError(Exception):
    """A kong.conf TLS error; the message is Kong's."""


def _write(path: str, data: bytes, mode: int = 0o644) -> None:
    """Writes the file whole, or leaves it as it was: ``.ca_combined`` is rewritten each time a
    connection is set up (PostgreSQL, Redis, health checks) while another may be reading it, so
    a reader must never see it half-written. An unchanged file is not rewritten. ``mode`` applies
    to a new file; a rewritten one keeps its mode and owner, as when it was rewritten in place
    (a root ``kong`` command must not take a key away from the user Kong runs as)."""
    try:
        with open(path, "rb") as fh:
            if fh.read() == data:
                return
            existing: os.stat_result | None = os.fstat(fh.fileno())
    except OSError:
        existing = None
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            if existing is not None:
                os.fchmod(fh.fileno(), stat.S_IMODE(existing.st_mode))
                if (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
                    # only root may give a file away; others could not have written it in place
                    # either, unless it was writable to them
                    with contextlib.suppress(PermissionError):
                        os.fchown(fh.fileno(), existing.st_uid, existing.st_gid)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def default_subject() -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "California"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "San Francisco"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Kong"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "IT Department"),
            x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        ]
    )


def _default_pair(key: Any) -> bytes:
    """prefix_handler.lua gen_default_ssl_cert: self-signed, 7300 days, CA:FALSE critical,
    serverAuth+clientAuth, a subject key identifier, no subjectAltName."""
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    name = default_subject()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(int.from_bytes(os.urandom(16), "big") >> 1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(seconds=86400 * 20 * 365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )


def default_certificates(prefix: str, stem: str) -> list[tuple[str, str]]:
    """The RSA 2048 and EC prime256v1 pairs under ``<prefix>/ssl``, generated once (a pair is
    made only when neither of its files exists, as Kong does)."""
    ssl_dir = os.path.join(prefix, "ssl")
    os.makedirs(ssl_dir, exist_ok=True)
    pairs = []
    for suffix, make in (
        ("", lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048)),
        ("-ecdsa", lambda: ec.generate_private_key(ec.SECP256R1())),
    ):
        crt = os.path.join(ssl_dir, f"{stem}{suffix}.crt")
        key_path = os.path.join(ssl_dir, f"{stem}{suffix}.key")
        if not os.path.exists(crt) and not os.path.exists(key_path):
            key = make()
            _write(key_path, _private_pem(key), 0o600)
            _write(crt, _default_pair(key))
        pairs.append((crt, key_path))
    return pairs


def _entry_text(entry: str) -> str | None:
    """A kong.conf certificate entry: a path, PEM text, or base64 of PEM."""
    if os.path.isfile(entry):
        with open(entry, encoding="utf-8", errors="replace") as fh:
            return fh.read()
    if "-----BEGIN" in entry:
        return entry
    try:
        decoded = base64.b64decode(entry, validate=True).decode()
    except (binascii.Error, ValueError):
        return None
    return decoded if "-----BEGIN" in decoded else None


def _as_list(value: Any) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def listener_certificates(conf: Mapping[str, Any], listeners_key: str) -> list[tuple[str, str]]:
    """The (cert file, key file) pairs of one listener family (parse.lua checks, then
    prefix_handler.lua: inline PEM written to ``ssl/<kind>-<i>.crt|.key``, defaults when both
    lists are empty). Raises :class:`ConfError` with Kong's message."""
    key_prefix, stem, kind = FAMILIES[listeners_key]
    certs = _as_list(conf.get(f"{key_prefix}ssl_cert"))
    keys = _as_list(conf.get(f"{key_prefix}ssl_cert_key"))
    problem = listener_conf_problem(conf, listeners_key)
    if problem:
        raise ConfError(problem)
    if not certs:
        return default_certificates(conf["prefix"], stem)
    ssl_dir = os.path.join(conf["prefix"], "ssl")
    pairs = []
    for i, (cert, key) in enumerate(zip(certs, keys, strict=True), start=1):
        paths = []
        for entry, ext, mode in ((cert, "crt", 0o644), (key, "key", 0o600)):
            if os.path.isfile(entry):
                paths.append(entry)
                continue
            os.makedirs(ssl_dir, exist_ok=True)
            path = os.path.join(ssl_dir, f"{kind}-{i}.{ext}")
            _write(path, (_entry_text(entry) or "").encode(), mode)
            paths.append(path)
        pairs.append((paths[0], paths[1]))
    return pairs


def listener_conf_problem(conf: Mapping[str, Any], listeners_key: str) -> str | None:
    """parse.lua's ``ssl_cert`` checks for a family that has an ``ssl`` listener."""
    if not any(e.get("ssl") for e in conf.get(listeners_key) or []):
        return None
    p = FAMILIES[listeners_key][0]
    certs = _as_list(conf.get(f"{p}ssl_cert"))
    keys = _as_list(conf.get(f"{p}ssl_cert_key"))
    if certs and not keys:
        return f"{p}ssl_cert_key must be specified"
    if keys and not certs:
        return f"{p}ssl_cert must be specified"
    if len(certs) != len(keys):
        return (
            f"{p}ssl_cert was specified {len(certs)} times while {p}ssl_cert_key was "
            f"specified {len(keys)} times"
        )
    for cert in certs:
        text = _entry_text(cert)
        if text is None or validate_cert(text):
            return f"{p}ssl_cert: failed loading certificate from {cert}"
    for key in keys:
        text = _entry_text(key)
        if text is None or validate_key(text):
            return f"{p}ssl_cert_key: failed loading key from {key}"
    return None


# nginx's own page when ``ssl_verify_client on`` finds no client certificate (its 496,
# NGX_HTTPS_NO_CERT, answered as 400; the Admin API server block has no error_page for it).
NO_CLIENT_CERT_PAGE = (
    "<html>\r\n<head><title>400 No required SSL certificate was sent</title></head>\r\n"
    "<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n"
    "<center>No required SSL certificate was sent</center>\r\n"
    "<hr><center>openresty</center>\r\n</body>\r\n</html>\r\n"
)


def admin_client_verification(conf: Mapping[str, Any]) -> tuple[str, str] | None:
    """The injected ``nginx_admin_ssl_verify_client`` (``on``/``optional``) and
    ``nginx_admin_ssl_client_certificate`` of the Admin API's server block, or None when off.
    nginx refuses to start with verification on and no CA file (``[emerg] no
    ssl_client_certificate for ssl_verify_client``) or a CA file it cannot load."""
    mode = str(conf.get("nginx_admin_ssl_verify_client") or "off").strip()
    if mode == "off":
        return None
    if mode not in ("on", "optional"):
        raise ConfError(f'invalid value "{mode}" in "ssl_verify_client" directive')
    ca = str(conf.get("nginx_admin_ssl_client_certificate") or "").strip()
    if not ca:
        raise ConfError("no ssl_client_certificate for ssl_verify_client")
    if not os.path.isfile(ca):
        raise ConfError(f'SSL_CTX_load_verify_locations("{ca}") failed')
    return mode, ca


def require_client_certificates(context: ssl.SSLContext, ca_file: str) -> None:
    """Ask every client for a certificate and verify it against ``ca_file``. The handshake
    succeeds without one (nginx then answers 400 at the HTTP level, see
    :data:`NO_CLIENT_CERT_PAGE`); a certificate that fails verification ends the handshake here,
    where nginx would complete it and answer 400 ``The SSL certificate error``."""
    try:
        context.load_verify_locations(cafile=ca_file)
    except (ssl.SSLError, OSError):
        raise ConfError(f'SSL_CTX_load_verify_locations("{ca_file}") failed') from None
    context.verify_mode = ssl.CERT_OPTIONAL


def _server_base() -> ssl.SSLContext:
    """TLSv1.2+ as Kong's ``intermediate`` suite, HTTP/1.1 only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


def server_context(pairs: list[tuple[str, str]]) -> ssl.SSLContext:
    """A server context with every pair's files loaded (OpenSSL keeps one certificate per
    key type and picks by what the client supports)."""
    context = _server_base()
    for cert, key in pairs:
        context.load_cert_chain(cert, key)
    return context


def _load_pair(context: ssl.SSLContext, cert: str, key: str) -> bool:
    """Load PEM text through private temporary files (``ssl`` loads only files)."""
    paths = []
    try:
        for text in (cert, key):
            fd, path = tempfile.mkstemp(prefix="kongsim-", suffix=".pem")
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1])
        return True
    except (ssl.SSLError, OSError):
        return False
    finally:
        for path in paths:
            os.unlink(path)


def context_from_pem(pairs: list[tuple[str | None, str | None]]) -> ssl.SSLContext | None:
    """A server context from a certificate entity's PEM (cert+key, and cert_alt+key_alt)."""
    context = _server_base()
    for cert, key in pairs:
        if cert and key and not _load_pair(context, cert, key):
            return None
    return context


# --- SNI selection (kong/runloop/certificate.lua find_certificate) -----------------------


def sni_candidates(name: str) -> list[str]:
    """Exact, then the prefix wildcard (first label, only when two labels follow), then the
    suffix wildcard (last label), then ``*``."""
    out = [name]
    labels = name.split(".")
    if len(labels) > 2:
        out.append("*." + ".".join(labels[1:]))
    if len(labels) > 1:
        out.append(".".join(labels[:-1]) + ".*")
    out.append("*")
    return out


class SNIMap:
    """The proxy listener's certificates by SNI, rebuilt with each configuration snapshot;
    server contexts are cached per certificate content."""

    def __init__(self) -> None:
        self.by_name: dict[str, dict[str, Any]] = {}
        self._contexts: dict[tuple[str, str, str | None, str | None], ssl.SSLContext | None] = {}

    def update(
        self, certificates: Mapping[str, dict[str, Any]], snis: list[dict[str, Any]]
    ) -> None:
        by_name = {}
        for sni in snis:
            cert = certificates.get((sni.get("certificate") or {}).get("id"))
            if cert is not None:
                by_name[sni["name"].lower()] = cert
        self.by_name = by_name
        live = {
            (c["cert"], c["key"], c.get("cert_alt"), c.get("key_alt"))
            for c in certificates.values()
        }
        self._contexts = {k: v for k, v in self._contexts.items() if k in live}

    def context_for(self, server_name: str | None) -> ssl.SSLContext | None:
        """The context to switch to, or ``None`` for the listener's default certificates
        (no SNI, an invalid SNI, or no match)."""
        if not server_name or sni_problem(server_name):
            return None
        for candidate in sni_candidates(server_name.lower()):
            cert = self.by_name.get(candidate)
            if cert is not None:
                key = (cert["cert"], cert["key"], cert.get("cert_alt"), cert.get("key_alt"))
                if key not in self._contexts:
                    self._contexts[key] = context_from_pem([key[:2], key[2:]])
                return self._contexts[key]
        return None

    def callback(self) -> Callable[[ssl.SSLObject, str | None, ssl.SSLContext], None]:
        def choose(sslobj: ssl.SSLObject, server_name: str | None, _ctx: ssl.SSLContext) -> None:
            context = self.context_for(server_name)
            if context is not None:
                sslobj.context = context

        return choose


# --- lua_ssl_trusted_certificate (prefix_handler.lua gen_trusted_certs_combined_file) ------

SYSTEM_BUNDLES = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/pki/tls/cacert.pem",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/cert.pem",
)


def trusted_bundle(conf: Mapping[str, Any]) -> str:
    """Every ``lua_ssl_trusted_certificate`` entry (``system`` is the first system bundle
    that exists, dropped when none does; paths; PEM or base64 of PEM) concatenated into
    ``<prefix>/.ca_combined``, the file the cosockets (PostgreSQL, Redis) verify against.
    Returns its path."""
    parts = []
    for entry in _as_list(conf.get("lua_ssl_trusted_certificate")):
        if entry == "system":
            entry = next((p for p in SYSTEM_BUNDLES if os.path.isfile(p)), "")
            if not entry:
                continue
        text = _entry_text(entry)
        if text:
            parts.append(text if text.endswith("\n") else text + "\n")
    path = os.path.join(conf["prefix"], ".ca_combined")
    os.makedirs(conf["prefix"], exist_ok=True)
    _write(path, "".join(parts).encode())
    return path


# --- upstream (client) contexts ----------------------------------------------------------


class UpstreamTLS:
    """One Service's upstream TLS settings (``set_service_ssl``): the context, plus the
    verify depth, which the standard library cannot hand to OpenSSL and is checked after the
    handshake instead (:meth:`depth_ok`)."""

    def __init__(
        self,
        verify: bool,
        depth: int | None,
        ca_pems: list[str],
        client_cert: tuple[str, str] | None,
    ):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        self.verify = verify
        # nginx's proxy_ssl_verify_depth default is 1
        self.depth = 1 if depth is None else depth
        self._subjects: dict[bytes, bytes] = {}
        if verify:
            # Kong's template sets no proxy_ssl_trusted_certificate: only the Service's CA
            # certificates are trusted; the name checked is the SNI (the upstream Host),
            # none for an IP address (nginx's proxy_ssl_name).
            context.verify_mode = ssl.CERT_REQUIRED
            context.check_hostname = True
            if ca_pems:
                context.load_verify_locations(cadata="\n".join(ca_pems))
            for pem in ca_pems:
                cert = load_cert(pem)
                self._subjects[cert.subject.public_bytes()] = cert.public_bytes(
                    serialization.Encoding.DER
                )
        if client_cert is not None:
            # a client certificate that cannot be loaded is only logged by Kong
            _load_pair(context, *client_cert)
        self.context = context

    def depth_ok(self, leaf_der: bytes | None) -> bool:
        """OpenSSL's verify depth: 0 allows only a trusted leaf itself, 1 a leaf issued by a
        trusted CA, more for intermediates."""
        if not self.verify or leaf_der is None:
            return True
        if leaf_der in self._subjects.values():
            needed = 0
        elif x509.load_der_x509_certificate(leaf_der).issuer.public_bytes() in self._subjects:
            needed = 1
        else:
            needed = 2
        return needed <= self.depth
