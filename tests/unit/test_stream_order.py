"""The ordered stream of several writers (server/stream_order.py) with plain calls."""

from __future__ import annotations

from tlschat.server.stream_order import StreamOrder, WriterPosition


def ids(order: StreamOrder[str]) -> list[int]:
    return [msg_id for msg_id, _ in order.release().items]


def test_ids_10_and_11_published_in_reverse_are_released_as_10_then_11() -> None:
    order: StreamOrder[str] = StreamOrder(start=9)
    order.expect("a")
    order.expect("b")
    # Node b committed 11 while a's write 10 was still in flight (a's position stays 9).
    order.message("b", 11, "m11", position=11)
    order.position("a", 9)
    assert ids(order) == []
    assert order.held() == 1
    order.message("a", 10, "m10", position=11)
    release = order.release()
    assert [item for _, item in release.items] == ["m10", "m11"]
    assert release.complete
    assert order.released == 11


def test_a_writer_that_never_spoke_holds_everything_new() -> None:
    order: StreamOrder[str] = StreamOrder(start=5)
    order.expect("a")
    order.expect("quiet")
    order.message("a", 6, "m6", position=6)
    assert ids(order) == []
    order.position("quiet", 6)
    assert ids(order) == [6]


def test_a_dead_writer_stops_holding_the_stream_and_its_lost_ids_are_reported() -> None:
    order: StreamOrder[str] = StreamOrder(start=0)
    for writer in ("a", "b", "dead"):
        order.expect(writer)
    order.position("dead", 1)
    order.message("a", 2, "m2", position=4)
    order.message("b", 4, "m4", position=4)
    # "dead" committed 3 and died before publishing it: nothing passes 1 while it is alive.
    first = order.release()
    assert (first.upto, first.items) == (1, [])
    assert not first.complete
    assert first.missing() == [1]
    order.writer_gone("dead")
    release = order.release()
    assert [i for i, _ in release.items] == [2, 4]
    assert (release.after, release.upto) == (1, 4)
    assert release.missing() == [3]


def test_the_smallest_live_position_is_the_limit() -> None:
    order: StreamOrder[str] = StreamOrder()
    order.position("a", 7)
    order.position("b", 3)
    for i in range(1, 8):
        order.message("a", i, f"m{i}", position=7)
    assert ids(order) == [1, 2, 3]
    order.position("b", 5)
    assert ids(order) == [4, 5]
    order.position("b", 100)
    assert ids(order) == [6, 7]


def test_positions_never_go_back() -> None:
    order: StreamOrder[str] = StreamOrder()
    order.position("a", 5)
    order.position("a", 3)
    assert order.positions["a"] == 5


def test_duplicates_and_late_messages_are_dropped() -> None:
    order: StreamOrder[str] = StreamOrder()
    order.position("b", 10)
    order.message("a", 2, "m2", position=2)
    order.message("a", 2, "again", position=2)
    assert [item for _, item in order.release().items] == ["m2"]
    order.message("a", 1, "late", position=2)
    assert ids(order) == []
    assert order.dropped == 1


def test_a_message_does_not_raise_its_writers_position_past_a_write_in_flight() -> None:
    order: StreamOrder[str] = StreamOrder(start=9)
    order.expect("a")
    # a committed 12 while its own 11 was still in flight: its position says 10.
    order.message("a", 12, "m12", position=10)
    assert ids(order) == []
    assert order.released == 10
    order.message("a", 11, "m11", position=12)
    assert ids(order) == [11, 12]


def test_nothing_is_released_without_a_writer() -> None:
    order: StreamOrder[str] = StreamOrder(start=3)
    assert order.release().items == []
    assert order.released == 3


def test_writer_position_is_bounded_by_the_oldest_write_in_flight() -> None:
    writer = WriterPosition(known=9)
    first = writer.begin()  # will get an id above 9
    writer.saw(11)  # another node's 11 arrives meanwhile
    second = writer.begin()  # will get an id above 11
    assert writer.position == 9
    writer.saw(12)
    writer.end(second)
    assert writer.position == 9
    writer.saw(10)
    writer.end(first)
    assert writer.position == 12
    assert not writer.busy()


def test_writer_position_idle_follows_what_it_knows() -> None:
    writer = WriterPosition()
    writer.saw(4)
    writer.saw(2)
    assert writer.position == 4
    ticket = writer.begin()
    ticket_again = writer.begin()
    writer.end(ticket)
    assert writer.position == 4
    writer.saw(6)
    assert writer.position == 4  # the other write begun at 4 is still in flight
    writer.end(ticket_again)
    assert writer.position == 6


def test_two_writers_and_two_readers_agree_on_the_order() -> None:
    """The whole loop on plain data: two nodes, each a writer and a reader, notifications
    arriving in one shared order that publishes 11 before 10."""
    writers = {"a": WriterPosition(9), "b": WriterPosition(9)}
    readers = {name: StreamOrder[str](start=9) for name in writers}
    for reader in readers.values():
        reader.expect("a")
        reader.expect("b")
    seen: dict[str, list[int]] = {name: [] for name in writers}

    def publish(kind: str, writer: str, *args: object) -> None:
        for name, reader in readers.items():
            if kind == "message":
                msg_id, position = args
                assert isinstance(msg_id, int)
                assert isinstance(position, int)
                reader.message(writer, msg_id, f"m{msg_id}", position)
                writers[name].saw(msg_id)
            else:
                (position,) = args
                assert isinstance(position, int)
                reader.position(writer, position)
                writers[name].saw(position)
            seen[name] += [i for i, _ in reader.release().items]

    ticket_a = writers["a"].begin()  # a's write gets 10
    ticket_b = writers["b"].begin()  # b's write gets 11 and commits first
    writers["b"].saw(11)
    writers["b"].end(ticket_b)
    publish("message", "b", 11, writers["b"].position)
    publish("position", "b", writers["b"].position)
    assert seen == {"a": [], "b": []}
    writers["a"].saw(10)
    writers["a"].end(ticket_a)
    publish("message", "a", 10, writers["a"].position)
    assert seen == {"a": [10, 11], "b": [10, 11]}
