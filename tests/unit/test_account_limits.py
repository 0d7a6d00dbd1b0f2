"""The local counter behind the account limits (server/account_limits.py)."""

from __future__ import annotations

from tlschat.server.account_limits import LocalEventWindow
from tlschat.server.auth import RegistrationLimit
from tlschat.server.hub import LocalHub


async def test_the_local_window_counts_per_key() -> None:
    window = LocalEventWindow(limit=2, window=60.0)
    await window.record("ip1")
    assert await window.blocked_for("ip1") == 0.0
    await window.record("ip1")
    assert 59.0 < await window.blocked_for("ip1") <= 60.0
    assert await window.blocked_for("ip2") == 0.0


async def test_the_local_hub_gives_local_windows_to_the_registration_limit() -> None:
    limit = RegistrationLimit(LocalHub().event_window("registrations", 1, 3600.0))
    await limit.registered("ip")
    assert await limit.blocked_for("ip") > 3599.0
