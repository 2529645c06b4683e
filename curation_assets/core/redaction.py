"""Secrets never leave the process: redaction of credentials from any text we show or store.

Storage errors, per-video and per-clip error messages, log lines and documents all pass through
:func:`redact` before anything sees them (a backend error may quote a signed URL or a key).
"""

from __future__ import annotations

import os
import re
from typing import Any

# Values removed wherever they appear. Access key *ids* are identifiers, not secrets, and are
# not listed (a short fake id such as "testing" would otherwise mangle unrelated text); real
# ones (AKIA.../ASIA...) are still removed by pattern.
_SECRET_ENV_VARS = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
)
_registered_secrets: set[str] = set()
# shorter values are not treated as secrets (real ones are far longer; fake test values
# like "testing" would otherwise be cut out of every message)
_MIN_SECRET_LEN = 8

_SECRET_NAMES_RE = (
    r"(?:aws_)?(?:secret_access_key|access_key_id|session_token|security_token|"
    r"secret_key|access_key|account_key|sas_token|client_secret|api_key|apikey|"
    r"secret|password|passwd|token|key)"
)
_REDACT_PATTERNS = [
    # name=value (query strings, CLI flags, repr of kwargs)
    re.compile(r"(?i)(\b" + _SECRET_NAMES_RE + r"\s*=\s*)(['\"]?)([^\s'\",&;)}\]]+)"),
    # 'name': 'value' / "name": "value" (dict / JSON repr)
    re.compile(r"(?i)(['\"]" + _SECRET_NAMES_RE + r"['\"]\s*:\s*)(['\"]?)([^\s'\",}\]]+)"),
    # presigned-URL parameters
    re.compile(r"(?i)(X-Amz-(?:Signature|Credential|Security-Token)=)()([^&\s'\"]+)"),
    # HTTP Authorization header
    re.compile(r"(?i)(Authorization\s*[:=]\s*)(['\"]?)([^'\"\n]+)"),
    # user:password@ in URLs
    re.compile(r"(://[^/\s:@]*:)()([^@/\s]+)(?=@)"),
]
# AWS access key ids (AKIA... long-term, ASIA... temporary)
_AWS_KEY_ID_RE = re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b")


def register_secret(value: str | None) -> None:
    """Register an extra secret value (e.g. a caption endpoint key) for :func:`redact`."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _registered_secrets.add(value)


def redact(text: Any) -> str:
    """Return ``str(text)`` with known secret values and ``key=``/``secret=``-style values
    replaced by ``***``.

    Known secrets: the AWS credential environment variables and values given to
    :func:`register_secret`.
    """
    s = str(text)
    secrets = set(_registered_secrets)
    for name in _SECRET_ENV_VARS:
        v = os.environ.get(name)
        if v and len(v) >= _MIN_SECRET_LEN:
            secrets.add(v)
    # longest first, so a secret that contains another is removed whole
    for v in sorted(secrets, key=len, reverse=True):
        s = s.replace(v, "***")
    for pat in _REDACT_PATTERNS:
        s = pat.sub(lambda m: m.group(1) + m.group(2) + "***", s)
    s = _AWS_KEY_ID_RE.sub("***", s)
    return s
