"""Sharing signals: the checks policies read (`catalog`), the `account_sharing` risk
(`risk`), and policies over both (`policies`); all pure."""
