"""Sharing signals: where an address is (`geo`, `places`) and the checks computed over a
user's sessions and history (`checks`)."""
