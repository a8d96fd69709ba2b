"""Sharing signals: where an address is (`geo`, `places`), the checks computed over a
user's sessions and history (`checks`), the checks policies read (`catalog`), the
`account_sharing` risk (`risk`), and policies over both (`policies`); all pure but `geo`'s
file reads and `routes`."""
