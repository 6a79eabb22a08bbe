"""The command line: list and info print tables; bad input exits 2 with a message."""

from __future__ import annotations

from harness.cli import main


def test_list_prints_every_variant(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("msa", "swin", "lsla", "lsa_ds"):
        assert name in out
    assert "form" in out and "outer_bias" in out


def test_list_with_unmatched_pattern_fails(capsys):
    assert main(["list", "zzz*"]) == 2
    assert "no variant matches 'zzz*'" in capsys.readouterr().err


def test_info_prints_params_and_gmacs(capsys):
    assert main(["info", "vit_lsla_micro", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "params" in out and "GMACs" in out and "vit_lsla_micro" in out


def test_info_unknown_model_is_a_clear_error(capsys):
    assert main(["info", "vit_lsla_q"]) == 2
    err = capsys.readouterr().err
    assert "unknown model preset 'vit_lsla_q'" in err and "vit_lsla_t" in err
