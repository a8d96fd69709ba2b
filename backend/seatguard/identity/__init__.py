"""Who a browser is, proved by tokens signed elsewhere.

Modules: `tokens` (the identity tokens a site's backend signs for its pages), `jws` (the
strict parsing and signature checks every signed token goes through, RFC 8725), `jwks` (key
sets fetched from a `jwks_uri`, cached and refreshed), `backchannel` (OpenID Connect
back-channel logout tokens). The identity token API is re-exported here.
"""

from .tokens import Identity, IdentityConfig, issued_before, verify_identity

__all__ = ["Identity", "IdentityConfig", "issued_before", "verify_identity"]
