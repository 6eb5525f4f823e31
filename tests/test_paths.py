"""App file parameters: only files inside the allowed folders, and refusals that leak nothing."""

import os

import pytest

from ood_core.errors import OODInputError
from ood_core.paths import ENV_ALLOWED_DIRS, check_allowed_path


@pytest.fixture
def tree(tmp_path):
    allowed = tmp_path / "allowed"
    (allowed / "sub").mkdir(parents=True)
    (allowed / "sub" / "words.txt").write_text("dog\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOPSECRET\n")
    return allowed, outside


def test_a_file_inside_an_allowed_folder_is_returned_resolved(tree):
    allowed, _ = tree
    got = check_allowed_path(str(allowed / "sub" / ".." / "sub" / "words.txt"), "word_list",
                             allowed_dirs=[str(allowed)])
    assert got == os.path.realpath(allowed / "sub" / "words.txt")
    # A file that does not exist yet, inside: allowed (the caller reports it missing).
    assert check_allowed_path(allowed / "new.txt", "word_list", allowed_dirs=[allowed]).endswith("new.txt")


def test_dotdot_and_symlinks_do_not_lead_out(tree):
    allowed, outside = tree
    with pytest.raises(OODInputError, match="not inside the allowed folders"):
        check_allowed_path(str(allowed / ".." / "outside" / "secret.txt"), "word_list", allowed_dirs=[allowed])
    link = allowed / "link.txt"
    link.symlink_to(outside / "secret.txt")
    with pytest.raises(OODInputError, match="not inside the allowed folders"):
        check_allowed_path(str(link), "word_list", allowed_dirs=[allowed])
    dir_link = allowed / "elsewhere"
    dir_link.symlink_to(outside, target_is_directory=True)
    with pytest.raises(OODInputError, match="not inside the allowed folders"):
        check_allowed_path(str(dir_link / "secret.txt"), "weights", allowed_dirs=[allowed])
    # A symlink to a file inside stays allowed, and resolves to it.
    inner = allowed / "inner.txt"
    inner.symlink_to(allowed / "sub" / "words.txt")
    assert check_allowed_path(str(inner), "word_list", allowed_dirs=[allowed]) == os.path.realpath(
        allowed / "sub" / "words.txt")
    # A prefix of the folder's name is not the folder.
    (allowed.parent / "allowed-not").mkdir()
    with pytest.raises(OODInputError):
        check_allowed_path(str(allowed.parent / "allowed-not" / "x"), "word_list", allowed_dirs=[allowed])


def test_refusal_is_the_same_for_existing_and_missing_files_and_quotes_no_content(tree):
    allowed, outside = tree
    messages = []
    for name in ("secret.txt", "missing.txt"):
        with pytest.raises(OODInputError) as e:
            check_allowed_path(str(outside / name), "word_list", allowed_dirs=[allowed])
        messages.append(str(e.value).replace(name, "NAME"))
    assert messages[0] == messages[1]
    msg = messages[0]
    assert "TOPSECRET" not in msg
    assert str(allowed) in msg and ENV_ALLOWED_DIRS in msg  # which folders, and how to add one


def test_allowed_folders_from_the_environment_else_cache_and_fiftyone_home(tree, tmp_path, monkeypatch):
    allowed, outside = tree
    monkeypatch.setenv(ENV_ALLOWED_DIRS, os.pathsep.join([str(tmp_path / "nowhere"), str(outside)]))
    assert check_allowed_path(str(outside / "secret.txt"), "weights") == os.path.realpath(outside / "secret.txt")
    with pytest.raises(OODInputError, match="nowhere"):
        check_allowed_path(str(allowed / "sub" / "words.txt"), "weights")

    monkeypatch.delenv(ENV_ALLOWED_DIRS)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("FIFTYONE_OOD_CACHE_DIR", str(tmp_path / "cache"))
    for ok in (tmp_path / "home" / "fiftyone" / "w.safetensors", tmp_path / "cache" / "words.txt"):
        assert check_allowed_path(str(ok), "weights") == os.path.realpath(ok)
    with pytest.raises(OODInputError) as e:
        check_allowed_path(str(tmp_path / "home" / ".ssh" / "id_rsa"), "weights")
    assert str(tmp_path / "home" / "fiftyone") in str(e.value) and str(tmp_path / "cache") in str(e.value)


@pytest.mark.parametrize("bad", [None, "", "   ", 3, "a\0b"])
def test_non_paths_are_refused(bad, tree):
    allowed, _ = tree
    with pytest.raises(OODInputError, match="word_list must be a file path"):
        check_allowed_path(bad, "word_list", allowed_dirs=[allowed])


def test_app_file_parameters_keep_tags_and_check_paths(tmp_path, monkeypatch):
    from ood_core.paths import check_app_file

    monkeypatch.setenv("FIFTYONE_OOD_ALLOWED_DIRS", str(tmp_path))
    assert check_app_file("", "weights", may_be_tag=True) is None
    assert check_app_file("openai", "weights", may_be_tag=True) == "openai"  # an open_clip tag, not a path
    inside = tmp_path / "w.safetensors"
    assert check_app_file(str(inside), "weights", may_be_tag=True) == str(inside)
    for outside in ("/etc/passwd", "/etc/shadow.txt", "model.safetensors", "~/secret.pt"):
        with pytest.raises(OODInputError, match="allowed folders"):
            check_app_file(outside, "weights", may_be_tag=True)
    with pytest.raises(OODInputError, match="word_list"):
        check_app_file("/etc/hostname", "word_list")
