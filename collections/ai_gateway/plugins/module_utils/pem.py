# -*- coding: utf-8 -*-
# Copyright: ai-gateway project
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""PEM text compared by content, not formatting: line length, line endings, blank lines and text
around the blocks do not count, the DER bytes inside do (what Kong parses and, for CA
certificates, digests into `cert_digest`: sha256 of the DER, kong/db/dao/ca_certificates.lua)."""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import base64
import binascii
import hashlib
import re

from ansible.module_utils.common.text.converters import to_text

BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----(.*?)-----END \1-----", re.DOTALL)


class PemError(ValueError):
    """Text that is not PEM, or not the PEM that was expected."""


def blocks(text):
    """[(label, der)] of every PEM block of `text`; PemError when there is none or one is bad."""
    found = []
    for label, body in BLOCK.findall(to_text(text or "")):
        # Header lines such as `Proc-Type:` (encrypted keys) are part of the content.
        lines = [line.strip() for line in body.strip().splitlines() if line.strip()]
        headers = [line for line in lines if ":" in line]
        data = "".join(line for line in lines if ":" not in line)
        try:
            der = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise PemError("the %s block is not valid base64" % label) from None
        found.append((label, "\n".join(headers).encode() + der))
    if not found:
        raise PemError("not PEM (no -----BEGIN ...----- block)")
    return found


def canonical(text):
    """A comparable form of PEM text: its blocks' labels and content, formatting left out."""
    if text in (None, ""):
        return None
    return tuple((label, hashlib.sha256(der).hexdigest()) for label, der in blocks(text))


def certificates(text, what="cert"):
    """The DER of each certificate in `text` (a leaf and its chain); PemError naming `what` when
    there is none or the text is not PEM certificates."""
    try:
        found = blocks(text)
    except PemError as e:
        raise PemError("%s: %s" % (what, e)) from None
    labels = sorted(set(label for label, _der in found if label != "CERTIFICATE"))
    if labels:
        raise PemError("%s: expected certificates, found %s" % (what, ", ".join(labels)))
    return [der for _label, der in found]


def certificate_digest(text, what="cert"):
    """sha256 hex of the DER of the one certificate in `text`, as Kong's `cert_digest`."""
    ders = certificates(text, what)
    if len(ders) != 1:
        raise PemError("%s: expected one certificate, found %d" % (what, len(ders)))
    return hashlib.sha256(ders[0]).hexdigest()


def chain_digest(text, what="cert"):
    """`sha256:<leaf>` followed by `+sha256:<next>` for each chain certificate: a certificate in
    a diff, readable and independent of formatting."""
    return "+".join(
        "sha256:%s" % hashlib.sha256(der).hexdigest() for der in certificates(text, what)
    )


def check_private_key(text, what="key"):
    """PemError when `text` is not one PEM private key."""
    try:
        labels = [label for label, _der in blocks(text)]
    except PemError as e:
        raise PemError("%s: %s" % (what, e)) from None
    if len(labels) != 1 or "PRIVATE KEY" not in labels[0]:
        raise PemError("%s: expected one PEM private key block, found %s" % (what, labels))
