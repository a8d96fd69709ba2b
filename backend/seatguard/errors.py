"""Seatguard's exceptions, and the one place that maps them to close codes.

SeatguardError
 ├── ProtocolError            a frame the server cannot accept
 │    ├── BadMessage          4000 invalid JSON or schema
 │    ├── OutOfOrder          4001 frame out of order
 │    ├── UnsupportedVersion  4002 protocol version not spoken
 │    ├── UnsupportedData     1003 binary frame
 │    └── TooBig              1009 frame over the size limit
 ├── SiteRefused              the site does not accept this page
 │    ├── UnknownSite         4003 no site with this key
 │    └── OriginNotAllowed    4004 page origin not allowed
 ├── SessionRefused           the browser session may not re-attach
 │    ├── SessionRevoked      4010 it was revoked
 │    ├── SessionSuspended    4015 its user is suspended (until lifted or re-authenticated)
 │    └── SessionExpired      4011 it expired (idle or absolute timeout)
 ├── StoreUnavailable         1013 the shared presence store cannot be reached (HTTP 503)
 │    └── UnreadableSnapshot  1013 a user's snapshot there is in a format this node cannot read
 ├── ConfigError              invalid site or server configuration (CLI exit 2)
 │    └── InvalidPolicy       a policy or risk setting refused, its path named (HTTP 422)
 └── IdentityError            a signed token Seatguard cannot accept
      ├── IdentityRequired    4012 the site requires an identity token and none came
      ├── InvalidIdentity     4013 identity token refused (bad signature, expired, bad claim)
      ├── InvalidLogoutToken  back-channel logout token refused (HTTP 400)
      ├── InvalidSeatToken    seat token refused by a site backend (`verify.py`: HTTP 401)
      │    └── SeatTokenExpired    past its `exp`, and otherwise good
      └── KeysUnavailable     4013 the signing keys at a jwks_uri could not be had (logout,
                              seat token: 503)
"""

from __future__ import annotations

from .protocol import CloseCode

__all__ = [
    "BadMessage",
    "ConfigError",
    "DeviceProofInvalid",
    "IdentityError",
    "IdentityRequired",
    "InvalidIdentity",
    "InvalidLogoutToken",
    "InvalidPolicy",
    "InvalidSeatToken",
    "KeysUnavailable",
    "OriginNotAllowed",
    "OutOfOrder",
    "ProtocolError",
    "SeatTokenExpired",
    "SeatguardError",
    "SessionExpired",
    "SessionRefused",
    "SessionRevoked",
    "SessionSuspended",
    "SiteRefused",
    "StoreUnavailable",
    "TooBig",
    "UnknownSite",
    "UnreadableSnapshot",
    "UnsupportedData",
    "UnsupportedVersion",
    "close_code",
]


class SeatguardError(Exception):
    """Base of every error Seatguard raises on purpose."""


class ProtocolError(SeatguardError):
    """A frame the server cannot accept."""


class BadMessage(ProtocolError):
    pass


class OutOfOrder(ProtocolError):
    pass


class UnsupportedVersion(ProtocolError):
    pass


class UnsupportedData(ProtocolError):
    pass


class TooBig(ProtocolError):
    pass


class DeviceProofInvalid(ProtocolError):
    """A hello's device key or proof: missing its other half, malformed, or failing."""


class SiteRefused(SeatguardError):
    """The site does not accept this page."""


class UnknownSite(SiteRefused):
    pass


class OriginNotAllowed(SiteRefused):
    pass


class SessionRefused(SeatguardError):
    """The browser session may not re-attach."""


class SessionRevoked(SessionRefused):
    pass


class SessionSuspended(SessionRefused):
    pass


class SessionExpired(SessionRefused):
    pass


class StoreUnavailable(SeatguardError):
    """The shared presence store cannot be reached; a site failing closed takes no one."""


class UnreadableSnapshot(StoreUnavailable):
    """A user's snapshot in the shared store is in a format this node cannot read (a newer
    node wrote it): that user is unavailable here, and the snapshot is left as it is."""


class ConfigError(SeatguardError):
    """Invalid site or server configuration."""


class InvalidPolicy(ConfigError):
    """A policy or risk setting that cannot be used; the message starts with the path of
    the bad part (`rules[2].when.all[0].check: unknown check 'foo'`)."""


class IdentityError(SeatguardError):
    """A signed token Seatguard cannot accept."""


class IdentityRequired(IdentityError):
    pass


class InvalidIdentity(IdentityError):
    pass


class InvalidLogoutToken(IdentityError):
    pass


class InvalidSeatToken(IdentityError):
    pass


class SeatTokenExpired(InvalidSeatToken):
    """A seat token that would be good but for its expiry."""


class KeysUnavailable(IdentityError):
    """No good key set could be fetched from a `jwks_uri` (or the one held has no usable
    key): the token cannot be checked now, though it may be good."""

    def __init__(self, message: str, *, reason: str, retry_after: float) -> None:
        super().__init__(message)
        self.reason = reason  # why, without the URL
        self.retry_after = retry_after  # seconds until the URL is fetched again


_CLOSE_CODES: dict[type[SeatguardError], CloseCode] = {
    BadMessage: CloseCode.bad_message,
    OutOfOrder: CloseCode.protocol_order,
    UnsupportedVersion: CloseCode.unsupported_version,
    UnsupportedData: CloseCode.unsupported_data,
    TooBig: CloseCode.too_big,
    DeviceProofInvalid: CloseCode.device_proof_invalid,
    UnknownSite: CloseCode.unknown_site,
    OriginNotAllowed: CloseCode.origin_not_allowed,
    SessionRevoked: CloseCode.revoked,
    SessionExpired: CloseCode.expired,
    SessionSuspended: CloseCode.suspended,
    StoreUnavailable: CloseCode.try_again_later,
    IdentityRequired: CloseCode.identity_required,
    InvalidIdentity: CloseCode.identity_invalid,
    KeysUnavailable: CloseCode.identity_invalid,
}


def close_code(exc: BaseException) -> CloseCode:
    """The close code a socket ends with after `exc`; anything unplanned is 1011."""
    for cls in type(exc).__mro__:
        if cls in _CLOSE_CODES:
            return _CLOSE_CODES[cls]
    return CloseCode.internal_error
