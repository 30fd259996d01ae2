"""docs/parameters.md is the generated copy of `painpath parameters`: it must never go stale.

Fails when clinical.yaml or drugs.yaml changed without regenerating the page; the fix is in the message."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from simulator.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "parameters.md"


def test_docs_parameters_md_is_what_painpath_parameters_writes(tmp_path):
    out = tmp_path / "parameters.md"
    res = CliRunner().invoke(main, ["parameters", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_text(encoding="utf-8") == DOC.read_text(encoding="utf-8"), (
        "docs/parameters.md is out of date: run `painpath parameters --out docs/parameters.md` and commit it")
