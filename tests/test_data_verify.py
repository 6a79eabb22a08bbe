"""Dataset problems surface before training: at --dry-run, at the start of a sweep, and with
``harness data verify`` (``--decode`` opens every image)."""

from __future__ import annotations

from harness.cli import main
from tests.fakedata import make_ip102
from tests.test_train import TINY


def _exp(tmp_path, root) -> str:
    exp = tmp_path / "exp.toml"
    text = TINY.replace('name = "digits"', f"name = 'ip102'\nroot = '{root}'")
    exp.write_text(f"out_dir = '{tmp_path / 'runs'}'\n" + text)
    return str(exp)


def test_missing_root_fails_the_dry_run_in_one_line(tmp_path, capsys):
    assert main(["sweep", _exp(tmp_path, tmp_path / "nowhere"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nowhere" in err and "does not exist" in err


def test_an_archive_where_images_belong_gets_a_hint(tmp_path, capsys):
    root = make_ip102(tmp_path / "ip")
    (root / "images").rename(root / "Images")
    assert main(["sweep", _exp(tmp_path, root), "--dry-run"]) == 2
    assert "rename 'Images' to 'images'" in capsys.readouterr().err
    (root / "Images").rename(root / "x")
    (root / "images.tar").write_bytes(b"")
    assert main(["data", "verify", _exp(tmp_path, root)]) == 2
    assert f"extract images.tar into {root / 'images'}" in capsys.readouterr().err


def test_verify_counts_splits_and_decode_lists_bad_images(tmp_path, capsys):
    root = make_ip102(tmp_path / "ip")
    exp = _exp(tmp_path, root)
    assert main(["data", "verify", exp]) == 0
    out = capsys.readouterr().out
    assert f"ip102 ({root}): train 6, val 3, test 4" in out
    bad = root / "images" / "00007.jpg"
    bad.write_bytes(bad.read_bytes()[:40])
    assert main(["data", "verify", exp]) == 0  # without --decode files only need to exist
    assert main(["data", "verify", exp, "--decode"]) == 1
    out = capsys.readouterr().out
    assert f"bad image: {bad}" in out and "1 image(s) do not decode" in out
