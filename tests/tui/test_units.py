"""Unit tests of the TUI's pure parts: DOM ids, command parsing, the state model, timestamps."""

from __future__ import annotations

import re
from datetime import UTC, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tlschat import protocol
from tlschat.tui import commands
from tlschat.tui.ids import address_pane_id, escape_name, pane_id
from tlschat.tui.state import ChatState, duration_words
from tlschat.tui.widgets.message_log import local_time

TEXTUAL_ID = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
NAMES = st.from_regex(protocol.NAME_RE, fullmatch=True)


def test_pane_id_examples() -> None:
    assert pane_id("dm", "Bob.x") == "dm-bob_2ex"
    assert pane_id("room", "dev-ops") == "room-dev-ops"
    assert pane_id("dm", "a_b") == "dm-a_5fb"
    assert address_pane_id("@Alice") == "dm-alice"
    assert address_pane_id("#Team") == "room-team"


@given(NAMES)
def test_every_valid_name_gives_a_valid_textual_id(name: str) -> None:
    assert TEXTUAL_ID.fullmatch(pane_id("dm", name))


@given(NAMES, NAMES)
def test_ids_are_equal_exactly_when_names_are(a: str, b: str) -> None:
    assert (escape_name(a) == escape_name(b)) == (a.casefold() == b.casefold())


@pytest.mark.parametrize(
    ("line", "command"),
    [
        ("hello", commands.Say("hello")),
        ("//not a command", commands.Say("/not a command")),
        ("/msg alice", commands.Msg("alice")),
        ("/msg @Bob.x  hi  there ", commands.Msg("Bob.x", "hi  there")),
        ("/create team", commands.Create("team")),
        ("/create #team alice @carol", commands.Create("team", ("alice", "carol"))),
        ("/invite carol", commands.InviteUser("carol")),
        ("/join #lobby", commands.Join("lobby")),
        ("/leave", commands.Leave()),
        ("/leave team", commands.Leave("team")),
        ("/image ~/cat.png", commands.Image("~/cat.png")),
        ("/HELP", commands.Help()),
        ("/close", commands.Close()),
        ("/quit", commands.Quit()),
    ],
)
def test_commands_parse(line: str, command: commands.Command) -> None:
    assert commands.parse(line) == command


@pytest.mark.parametrize(
    ("line", "hint"),
    [
        ("/msg", "usage: /msg NICK"),
        ("/msg bad!nick hi", "not a valid nick"),
        ("/create", "usage: /create ROOM"),
        ("/invite", "usage: /invite NICK"),
        ("/invite a b", "usage"),
        ("/join", "usage"),
        ("/nope", "unknown command /nope"),
    ],
)
def test_command_errors_explain_usage(line: str, hint: str) -> None:
    with pytest.raises(commands.CommandError, match=re.escape(hint)):
        commands.parse(line)


def welcome(**kwargs: object) -> protocol.Welcome:
    limits = protocol.Limits(max_frame=65536, max_text=4000, max_upload=1, chunk=1)
    return protocol.Welcome(nick="bob", server="tlschat/test", limits=limits, **kwargs)  # type: ignore[arg-type]


def message(sender: str, to: str) -> protocol.Message:
    return protocol.Message(id=1, ts="2026-11-26T12:00:00.000Z", from_=sender, to=to, text="x")


def test_dm_filed_under_the_other_party() -> None:
    state = ChatState()
    state.apply_welcome(welcome())
    assert state.conversation_of(message("alice", "@bob")) == "@alice"
    assert state.conversation_of(message("BOB", "@alice")) == "@alice"
    assert state.conversation_of(message("bob", "@bob")) == "@bob"
    assert state.conversation_of(message("alice", "#team")) == "#team"


def test_state_invitations_and_candidates() -> None:
    state = ChatState()
    fresh = state.apply_welcome(
        welcome(
            users=(
                protocol.UserInfo(nick="alice", online=True),
                protocol.UserInfo(nick="carol", online=False),
            ),
            rooms=(protocol.RoomInfo(room="team", members=("bob", "alice")),),
            invites=(protocol.InviteInfo(room="x", by="alice"),),
        )
    )
    assert [i.room for i in fresh] == ["x"]
    assert state.invite_candidates("team") == ["carol"]
    # A reconnect's welcome: the same pending invitation is not fresh again.
    again = state.apply_welcome(welcome(invites=(protocol.InviteInfo(room="X", by="alice"),)))
    assert again == []
    assert not state.add_invite("x", "alice")
    state.join("x", ("alice", "bob"), False)
    assert "x" not in state.invites


def test_state_remembers_invitations_we_sent() -> None:
    state = ChatState()
    state.apply_welcome(
        welcome(
            users=(
                protocol.UserInfo(nick="Carol", online=False),
                protocol.UserInfo(nick="dave", online=True),
            ),
            rooms=(protocol.RoomInfo(room="team", members=("bob",)),),
        )
    )
    state.note_invited("Team", "Carol")
    state.note_invited("team", "dave")
    state.note_invited("team", "bob")  # a member already: nothing to wait for
    assert state.invited_to("TEAM") == ["Carol", "dave"]
    assert state.invite_candidates("team") == []
    state.invitation_declined("team", "CAROL")
    assert state.invite_candidates("team") == ["Carol"]
    # A reconnect's welcome keeps what is still unanswered, minus who joined meanwhile.
    state.note_invited("team", "Carol")
    state.apply_welcome(welcome(rooms=(protocol.RoomInfo(room="team", members=("bob", "dave")),)))
    assert state.invited_to("team") == ["Carol"]
    state.set_members("team", ("bob", "dave", "carol"))
    assert state.invited_to("team") == []
    state.note_invited("team", "eve")
    state.leave("team")
    assert state.invited_to("team") == []


def test_unread_counts_are_case_insensitive() -> None:
    state = ChatState()
    state.mark_unread("@Alice")
    state.mark_unread("@alice")
    assert state.unread_for("@ALICE") == 2
    state.clear_unread("@alice")
    assert state.unread_for("@Alice") == 0


def test_local_time() -> None:
    assert local_time("2026-11-26T12:34:56.789Z", UTC) == "12:34"
    assert local_time("2026-11-26T23:30:00.000Z", timezone(timedelta(hours=2))) == "01:30"
    assert local_time("garbage", UTC) == "--:--"


def test_alt_digits_reach_the_app_as_alt_n() -> None:
    """Textual maps ESC 1 to `¡` (macOS Option); `run_tui` undoes that so alt+1..9 work."""
    from textual import _ansi_sequences
    from textual._xterm_parser import XTermParser

    from tlschat.tui.app import alt_digits_as_alt

    saved = dict(_ansi_sequences.ANSI_SEQUENCES_KEYS)
    try:
        alt_digits_as_alt()
        parser = XTermParser()
        events = list(parser.feed("\x1b2")) + list(parser.feed(""))  # "" is the end of input
        assert [getattr(e, "key", None) for e in events] == ["alt+2"]
    finally:
        table = _ansi_sequences.ANSI_SEQUENCES_KEYS
        table.clear()  # type: ignore[attr-defined]
        table.update(saved)  # type: ignore[attr-defined]


def test_fuzzy_score_prefers_starts_and_runs() -> None:
    from tlschat.tui.screens.switcher import fuzzy_score

    assert fuzzy_score("zz", "#team") is None
    assert fuzzy_score("", "#team") == 0
    team = fuzzy_score("te", "#team")
    best = fuzzy_score("te", "#the-best")
    assert team is not None
    assert best is not None
    assert team > best
    assert fuzzy_score("tb", "#the-best") is not None
    assert fuzzy_score("@CAR", "@carol") is not None  # case and sigil do not matter


def test_osc_notifications_are_safe() -> None:
    from tlschat.tui.app import osc_notification

    assert osc_notification("bob", "hi", "osc9", tmux=False) == "\x1b]9;bob: hi\x07"
    assert osc_notification("bob", "a;b", "osc777", tmux=False) == ("\x1b]777;notify;bob;a b\x07")
    hostile = osc_notification("bob", "x\x07\x1b]52;c;evil\x07", "osc9", tmux=False)
    assert hostile.count("\x07") == 1  # a peer's text never ends the sequence early
    assert hostile.count("\x1b") == 1
    assert osc_notification("bob", "hi", "off") == ""
    wrapped = osc_notification("bob", "hi", "osc9", tmux=True)
    assert wrapped.startswith("\x1bPtmux;\x1b\x1b]9;")
    assert wrapped.endswith("\x1b\\")


def test_new_commands_parse() -> None:
    from tlschat.tui import commands

    assert commands.parse("/create lobby --public bob") == commands.Create(
        "lobby", ("bob",), public=True
    )
    assert commands.parse("/create #team carol") == commands.Create("team", ("carol",))
    assert commands.parse("/me waves") == commands.Me("waves")
    assert commands.parse("/whois @bob") == commands.Whois("bob")
    assert commands.parse("/names") == commands.Names()
    assert commands.parse("/list") == commands.ListRooms()
    assert commands.parse("/bell off") == commands.Alerts("bell", "off")
    assert isinstance(commands.parse("/nick zed"), commands.Unsupported)
    assert commands.parse("/topic hello") == commands.Topic("hello")  # issue 12: topics exist


def test_a_guest_client_for_several_addresses_keys_its_token_by_the_first(tmp_path: Path) -> None:
    from tlschat.client.guest_tokens import GuestTokens
    from tlschat.tui.app import guest_aware_client
    from tlschat.tui.screens.connect import ConnectParams

    tokens = GuestTokens(tmp_path / "tokens.json")
    tokens.save("a.example.org", 7700, "gus", "token-a")
    params = ConnectParams("a.example.org", 7700, "gus", other_servers=(("b.example.org", 7701),))
    client = guest_aware_client(params, tokens=tokens)
    assert client.servers == (("a.example.org", 7700), ("b.example.org", 7701))
    assert client.resume == "token-a"


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(None, "a while"), (1, "1 second"), (90, "90 seconds"), (600, "10 minutes"),
     (5400, "90 minutes"), (7200, "2 hours"), (9000, "150 minutes")],
)  # fmt: skip
def test_the_guest_hold_in_words(seconds: int | None, words: str) -> None:
    assert duration_words(seconds) == words
    state = ChatState(guest_hold=seconds)
    assert state.gone_sentence("gus") == f"gus has left: guests are kept {words} after they leave."
