"""The download ledger's journal survives an interrupted write."""

from __future__ import annotations

from pathlib import Path

from byol_discovery.sources.download.settings import Task


def test_a_journal_cut_mid_row_does_not_swallow_the_next_row(tmp_path: Path) -> None:
    from byol_discovery.sources.download.ledger import Ledger, ledger_row

    path = tmp_path / "ledger.csv"
    with Ledger(path) as journal:
        journal.record(ledger_row(Task("a", "u", "a.fits", "fits"), "ok", 1))
    journal_path = path.with_name("ledger.journal.csv")
    journal_path.write_text(journal_path.read_text() + "b,u,b.fits,o")  # killed while writing b's row
    with Ledger(path) as journal:
        journal.record(ledger_row(Task("c", "u", "c.fits", "fits"), "ok", 1))
    assert {row_id: row["status"] for row_id, row in Ledger(path).previous.items()} == {"a": "ok", "c": "ok"}
