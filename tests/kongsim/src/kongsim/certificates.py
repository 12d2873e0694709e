"""The ``certificates``, ``snis`` and ``ca_certificates`` entities of Kong 3.9.3
(``kong/db/schema/entities/{certificates,snis,ca_certificates}.lua`` and their DAOs): schemas,
PEM and key-pair checks, and the ``snis`` shorthand of a certificate."""

from __future__ import annotations

from typing import Any

from kongsim import tls
from kongsim.schema import EntitySchema, Errors, Field, t_tags, t_ts, t_uuid


def _pair_check(cert: str, key: str, message: str) -> Any:
    def check(data: dict[str, Any]) -> Errors | None:
        if data.get(cert) is None or data.get(key) is None:
            return None
        if not tls.pair_matches(data[cert], data[key]):
            return {"@entity": [message]}
        return None

    return check


def _alt_checks(data: dict[str, Any]) -> Errors | None:
    if (data.get("cert_alt") is None) != (data.get("key_alt") is None):
        return {"@entity": ["all or none of these fields must be set: 'cert_alt', 'key_alt'"]}
    return None


def _alt_type(data: dict[str, Any]) -> Errors | None:
    if data.get("cert") is None or data.get("cert_alt") is None:
        return None
    if tls.key_type(data["cert"]) == tls.key_type(data["cert_alt"]):
        return {
            "@entity": [
                "certificate and alternative certificate need to have different type (e.g. RSA "
                "and ECDSA), the provided certificates were both of the same type"
            ]
        }
    return None


CERTIFICATES = EntitySchema(
    name="certificates",
    admin_name="certificates",
    endpoint_key=None,
    fields=[
        ("id", t_uuid()),
        ("created_at", t_ts()),
        ("updated_at", t_ts()),
        ("cert", Field("string", required=True, validators=[tls.validate_cert])),
        ("key", Field("string", required=True, validators=[tls.validate_key])),
        ("cert_alt", Field("string", validators=[tls.validate_cert])),
        ("key_alt", Field("string", validators=[tls.validate_key])),
        ("tags", t_tags()),
        # transient in Kong (not stored on the row); the simulator keeps the sorted names on
        # the row, in step with the snis rows (DAO.sync_certificate_snis)
        ("snis", Field("array", elements=Field("string", validators=[tls.sni_problem]))),
    ],
    checks=[
        _alt_checks,
        _pair_check("cert", "key", "certificate does not match key"),
        _pair_check("cert_alt", "key_alt", "alternative certificate does not match key"),
        _alt_type,
    ],
)

SNIS = EntitySchema(
    name="snis",
    admin_name="snis",
    endpoint_key="name",
    fields=[
        ("id", t_uuid()),
        ("name", Field("string", required=True, unique=True, validators=[tls.sni_problem])),
        ("created_at", t_ts()),
        ("updated_at", t_ts()),
        ("tags", t_tags()),
        ("certificate", Field("foreign", reference="certificates", required=True)),
    ],
)


def _ca_check(data: dict[str, Any]) -> Errors | None:
    problem = tls.ca_problem(data["cert"]) if data.get("cert") else None
    return {"@entity": [problem]} if problem else None


CA_CERTIFICATES = EntitySchema(
    name="ca_certificates",
    admin_name="ca_certificates",
    endpoint_key=None,
    fields=[
        ("id", t_uuid()),
        ("created_at", t_ts()),
        ("updated_at", t_ts()),
        ("cert", Field("string", required=True, validators=[tls.validate_cert])),
        ("cert_digest", Field("string", unique=True)),
        ("tags", t_tags()),
    ],
    checks=[_ca_check],
)


def snis_input(data: dict[str, Any]) -> Errors | None:
    """The certificate's ``snis`` shorthand (dao/certificates.lua): a repeated name is an
    error; names are stored sorted. Returns a schema error or ``None``."""
    names = data.get("snis")
    if not isinstance(names, list):
        return None
    seen: set[str] = set()
    for name in names:
        if isinstance(name, str) and name in seen:
            return {"snis": f"{name} is duplicated"}
        seen.add(name)
    data["snis"] = (
        sorted(n for n in names if isinstance(n, str))
        if all(isinstance(n, str) for n in names)
        else names
    )
    return None


def set_digest(data: dict[str, Any]) -> None:
    """``ca_certificates.cert_digest`` is computed on every write."""
    cert = data.get("cert")
    if isinstance(cert, str) and tls.validate_cert(cert) is None:
        data["cert_digest"] = tls.cert_digest(cert)
