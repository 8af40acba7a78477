"""The dashboard's session cookie and its CSRF token, both stateless.

A session is `<expires>.<nonce>.<mac>`: the Unix time it ends, 16 random bytes in hex,
and an HMAC-SHA256 of the first two under a key derived from one configured API token:

    key = HMAC-SHA256(token, "taskyard ui session v1")
    mac = HMAC-SHA256(key, "<expires>.<nonce>")            (URL-safe base64, unpadded)

The raw token is never in the cookie, and nothing is kept on the server: any API process
that knows the tokens can check any session, and taking a token out of
`TASKYARD_API_TOKENS` ends every session it signed. A session cannot be revoked alone
before it expires (`SESSION_S`); logging out deletes the cookie in that browser.

The CSRF token of a session is `HMAC-SHA256(key, "csrf.<nonce>")` in hex: forms carry it
in a hidden field, the server recomputes it from the cookie and compares in constant time.
A page on another site can neither read the cookie nor compute the token.

With no tokens configured the dashboard is open (as the API is), but its forms are still
protected: the key is then a fixed public one, so the session proves nothing about who
you are, and the CSRF check is the double-submit cookie pattern. The cookie is
`SameSite=Strict` (a cross-site form never carries it) and `HttpOnly`.

>>> keys = SessionKeys(("s3cret",))
>>> cookie = keys.issue(now_s=1_000, token="s3cret", nonce="00" * 16)
>>> session = keys.verify(cookie, now_s=1_001)
>>> session is not None and session.nonce == "00" * 16
True
>>> keys.verify(cookie, now_s=1_000 + SESSION_S) is None      # expired
True
>>> SessionKeys(("other",)).verify(cookie, now_s=1_001) is None  # another token's key
True
>>> session.csrf_ok(session.csrf_token) and not session.csrf_ok("0" * 64)
True
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence

import attrs
import falcon

from taskyard.domain.ports import Clock
from taskyard.domain.timefmt import to_epoch_s
from taskyard.entrypoints.api.access import Verdict

COOKIE_NAME = "taskyard_ui"
COOKIE_PATH = "/ui"
SESSION_S = 8 * 3600
"""How long a session lasts from its login (not sliding)."""
CSRF_FIELD = "csrf_token"
OPEN_KEY = b"taskyard ui: no tokens configured"
"""The key when no token is configured: public on purpose (see the module's text)."""

_COOKIE = re.compile(r"^([0-9]{1,12})\.([0-9a-f]{32})\.([A-Za-z0-9_-]{43})$")
_PURPOSE = b"taskyard ui session v1"


def _key_of(token: str) -> bytes:
    return hmac.new(token.encode(), _PURPOSE, hashlib.sha256).digest()


def _mac(key: bytes, text: str) -> str:
    digest = hmac.new(key, text.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


@attrs.frozen(kw_only=True)
class Session:
    nonce: str
    expires_s: int
    key: bytes = attrs.field(repr=False)

    @property
    def csrf_token(self) -> str:
        return hmac.new(self.key, f"csrf.{self.nonce}".encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, given: str | None) -> bool:
        if given is None:
            return False
        return hmac.compare_digest(given.encode(), self.csrf_token.encode())


class SessionKeys:
    """Issues and checks sessions for a set of API tokens (none: the open dashboard)."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self.protected = bool(tokens)
        self._keys = [_key_of(t) for t in tokens] if tokens else [OPEN_KEY]

    def issue(self, *, now_s: int, token: str | None = None, nonce: str | None = None) -> str:
        """A session signed under `token`'s key: a token the caller has checked is one of
        ours (`BearerToken.matches`); None only for the open dashboard."""
        assert (token is None) != self.protected, "a token exactly when tokens are configured"
        key = _key_of(token) if token is not None else OPEN_KEY
        nonce = nonce if nonce is not None else secrets.token_hex(16)
        expires = now_s + SESSION_S
        text = f"{expires}.{nonce}"
        return f"{text}.{_mac(key, text)}"

    def verify(self, cookie: str | None, *, now_s: int) -> Session | None:
        """The session a cookie holds, if one of our keys signed it and it has not expired."""
        if cookie is None:
            return None
        match = _COOKIE.match(cookie)
        if match is None:
            return None
        expires_text, nonce, mac = match.groups()
        text = f"{expires_text}.{nonce}"
        found: bytes | None = None
        for key in self._keys:  # every key, always: the time taken tells nothing
            if hmac.compare_digest(_mac(key, text).encode(), mac.encode()) and found is None:
                found = key
        expires = int(expires_text)
        if found is None or expires <= now_s:
            return None
        return Session(nonce=nonce, expires_s=expires, key=found)


class SessionCookie:
    """The dashboard's session as a credential of the API's `Guard` (`api/access.py`),
    beside the bearer token: a protected route lets a request through with either."""

    def __init__(self, keys: SessionKeys, clock: Clock) -> None:
        self.keys = keys
        self.clock = clock

    @property
    def configured(self) -> bool:
        return self.keys.protected

    def verify(self, req: falcon.Request) -> Verdict:
        cookie = req.cookies.get(COOKIE_NAME)
        if cookie is None:
            return Verdict.ABSENT
        session = self.keys.verify(cookie, now_s=int(to_epoch_s(self.clock.now())))
        return Verdict.VALID if session is not None else Verdict.INVALID
