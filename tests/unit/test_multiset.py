"""multiset_argument: one ``multiset`` instead of several ``set``s, only when it is exact."""

from fsrouter.calls.call import multiset_argument


def test_plain_values_go_space_separated() -> None:
    assert multiset_argument({"fifo_caller_exit_key": "#", "fifo_orbit_exten": "_continue_:600"}
                             ) == "fifo_caller_exit_key=# fifo_orbit_exten=_continue_:600"


def test_a_value_with_a_space_takes_another_delimiter() -> None:
    arg = multiset_argument({"ringback": "tone_stream://%(2000,4000,440,480);loops=-1",
                             "x": "a b"})
    assert arg == "^^|ringback=tone_stream://%(2000,4000,440,480);loops=-1|x=a b"


def test_values_it_cannot_carry_exactly_are_refused() -> None:
    # switch_separate_string reads quotes and backslashes: such values go by `set`.
    for value in ("it's", 'say "hi"', "a\\b", "two\nlines", " |~!"):
        assert multiset_argument({"v": value}) is None, value
    assert multiset_argument({}) is None
    assert multiset_argument({"bad name": "1"}) is None
