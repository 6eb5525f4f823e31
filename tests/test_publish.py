"""Publishing a finished file: an earlier file is replaced only when it is the package's own, even when someone
else's file appears or is swapped in between the check and the write (``ood_core.publish``)."""

import os

import pytest

from ood_core.errors import OODInputError
from ood_core.publish import publish_file

OURS = b"<!-- ours -->"


def _is_ours(path):
    with open(path, "rb") as f:
        return f.read(len(OURS)) == OURS


def _tmp(folder, text):
    tmp = folder / "report.html.tmp"
    tmp.write_bytes(OURS + text)
    return tmp


def _listing(folder):
    return sorted(os.listdir(folder))


def test_publishes_a_new_file_and_replaces_only_its_own(tmp_path):
    path = tmp_path / "report.html"
    publish_file(_tmp(tmp_path, b"one"), path, _is_ours, "refused")
    assert path.read_bytes() == OURS + b"one" and _listing(tmp_path) == ["report.html"]
    publish_file(_tmp(tmp_path, b"two"), path, _is_ours, "refused")  # an earlier file of ours: replaced
    assert path.read_bytes() == OURS + b"two" and _listing(tmp_path) == ["report.html"]


@pytest.mark.parametrize("kind", ["file", "folder", "symlink"])
def test_a_users_file_folder_or_link_at_the_destination_is_left_as_it_is(tmp_path, kind):
    path, target = tmp_path / "report.html", tmp_path / "elsewhere.html"
    target.write_bytes(OURS + b"a report the user keeps")  # even a link to a file of ours is the user's link
    if kind == "file":
        path.write_text("my notes")
    elif kind == "folder":
        path.mkdir()
        (path / "inside.txt").write_text("mine")
    else:
        path.symlink_to(target)
    before = _listing(tmp_path)
    with pytest.raises(OODInputError, match="not ours"):
        publish_file(_tmp(tmp_path, b"new"), path, _is_ours, "not ours")
    assert _listing(tmp_path) == sorted(set(before) - {"report.html.tmp"})  # nothing moved aside, tmp gone
    if kind == "file":
        assert path.read_text() == "my notes"
    elif kind == "folder":
        assert (path / "inside.txt").read_text() == "mine"
    else:
        assert path.is_symlink() and os.readlink(path) == str(target)


def test_a_users_file_swapped_in_after_the_check_is_not_replaced(tmp_path):
    """The caller checked an earlier report of its own; before the write, the user's file took its name: it is
    judged after it is moved aside (atomically), found not ours, and put back."""
    path = tmp_path / "report.html"
    path.write_bytes(OURS + b"old")
    assert _is_ours(path)  # the caller's check passes ...
    path.unlink()
    path.write_text("the user's file, written after the check")  # ... then the name changes hands
    with pytest.raises(OODInputError, match="not ours"):
        publish_file(_tmp(tmp_path, b"new"), path, _is_ours, "not ours")
    assert path.read_text() == "the user's file, written after the check" and _listing(tmp_path) == ["report.html"]


def test_a_file_created_while_publishing_is_not_replaced(tmp_path):
    """A file that appears at the destination after the old one was moved aside (the last window) makes the hard
    link fail: the user's file stays; the earlier report of ours stays beside it under a private name."""
    path = tmp_path / "report.html"
    path.write_bytes(OURS + b"old")

    def judge_then_race(p):
        ours = _is_ours(p)
        path.write_text("created meanwhile")  # someone writes the destination right after it was moved aside
        return ours

    with pytest.raises(OODInputError, match="not ours"):
        publish_file(_tmp(tmp_path, b"new"), path, judge_then_race, "not ours")
    assert path.read_text() == "created meanwhile"
    aside = [name for name in _listing(tmp_path) if name != "report.html"]
    assert len(aside) == 1 and aside[0].startswith("report.html.old-")
    assert (tmp_path / aside[0]).read_bytes() == OURS + b"old"
