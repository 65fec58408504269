import pytest

from sisock_core.hub import Registry


def test_add_refuses_duplicate_name_from_another_session():
    r = Registry()
    assert r.add("a", "first", 1) is True
    assert r.add("a", "second", 2) is False
    assert r.listing() == [{"name": "a", "description": "first"}]


def test_same_session_may_add_again():
    r = Registry()
    assert r.add("a", "d", 1) and r.add("a", "d", 1)


def test_subtract_only_by_owner_and_session_leave():
    r = Registry()
    r.add("a", "d", 1)
    r.add("b", "d", 1)
    r.add("c", "d", 2)
    assert r.subtract("a", 2) is None
    assert r.subtract("a", 1).name == "a"
    assert [e.name for e in r.session_left(1)] == ["b"]
    assert r.listing() == [{"name": "c", "description": "d"}]


@pytest.mark.parametrize("args", [(None, "d", 1), ("", "d", 1), ("a", "d", "1"), ("a", "d", True)])
def test_bad_arguments_are_errors(args):
    with pytest.raises(ValueError):
        Registry().add(*args)
