"""``ulcerseg review``: blinded assessor review (serve, disagreements, decisions, exports)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ulcerseg.cli.options import (
    healing_config_option,
    out_dir_option,
    out_file_option,
    progress_option,
    study_dir_argument,
)

if TYPE_CHECKING:
    from ulcerseg.healing import HealingConfig

__all__ = ["review"]

_out_arg = study_dir_argument()
_config_opt = healing_config_option()
_allow_pending = click.option(
    "--allow-pending",
    is_flag=True,
    help="Exit 0 even while flagged photos wait for review (they have no final value).",
)


def _default_dest(output: Path | None, default: Path) -> Path:
    """The file written when -o/--out is left out (deprecated: give it)."""
    if output is not None:
        return output
    click.echo(f"warning: writing {default} without -o/--out is deprecated; give -o/--out FILE", err=True)
    return default


def _bar(progress: bool, unit: str):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    def bar(items, total):  # type: ignore[no-untyped-def]
        return tqdm(items, total=total, unit=unit, disable=not progress, file=sys.stderr, leave=False)

    return bar


def _config(path: Path | None) -> HealingConfig:
    from ulcerseg.healing import load_healing_config

    return load_healing_config(path)


def _write_table(rows: list[dict[str, Any]], cols: list[str], output: Path | None) -> None:
    """Rounded, formula-escaped CSV to ``output`` (atomically) or to standard output."""
    from ulcerseg import tables
    from ulcerseg.rounding import round_rows

    if output:
        tables.write_csv(output, round_rows(rows), cols)
    else:
        tables.write_csv_rows(sys.stdout, round_rows(rows), cols)


@click.group("review")
def review() -> None:
    """Blinded assessor review: web app, disagreements and exports."""


@review.command("serve")
@_out_arg
@_config_opt
@click.option(
    "--port", type=click.IntRange(0, 65535), default=0, show_default=True, help="0 picks a free port."
)
@click.option("--all", "review_all", is_flag=True, help="Review every photo, not only flagged.")
@click.option(
    "--adjudicate",
    is_flag=True,
    help="Adjudication: only photos where readers disagree, with their readings shown; "
    "decisions are recorded as the adjudicator's and override the readers'.",
)
@click.option(
    "--reader",
    default=None,
    help="Register this reader (adjudicator with --adjudicate) if new and print their login URL. "
    "Without it, a study with no reader gets 'reader1' (or 'adjudicator1').",
)
def serve_cmd(
    out_dir: Path, config_path: Path | None, port: int, review_all: bool, adjudicate: bool, reader: str | None
) -> None:
    """Serve the review web app on 127.0.0.1; readers log in with their personal link."""
    from dataclasses import replace

    from ulcerseg.review.server import serve

    cfg = _config(config_path)
    if review_all:
        cfg = replace(cfg, review=replace(cfg.review, review_all=True))
    serve(out_dir, cfg, port=port, adjudicate=adjudicate, reader=reader, announce=click.echo)


@review.group("readers")
def readers() -> None:
    """Readers and adjudicators: personal tokens (stored hashed in the study)."""


@readers.command("add")
@_out_arg
@click.argument("name")
@click.option("--adjudicator", is_flag=True, help="An adjudicator (for `review serve --adjudicate`).")
def readers_add(out_dir: Path, name: str, adjudicator: bool) -> None:
    """Register NAME and print their personal token (shown once; only its SHA-256 is kept)."""
    from ulcerseg.review.decisions import open_study
    from ulcerseg.store.review import add_reader

    with open_study(out_dir) as (conn, _rows):
        token = add_reader(conn, name, "adjudicator" if adjudicator else "reader")
    role = "adjudicator" if adjudicator else "reader"
    click.echo(f"{role} {name}: token {token}")
    click.echo(f"login: http://127.0.0.1:PORT/?token={token}  (PORT: the one `review serve` prints)")
    click.echo("the token is shown only this once; give it to the reader privately", err=True)


@readers.command("list")
@_out_arg
def readers_list(out_dir: Path) -> None:
    """Every reader: name, role, created, revoked."""
    from ulcerseg.review.decisions import open_study
    from ulcerseg.store.review import list_readers

    with open_study(out_dir, for_reading=True) as (conn, _rows):
        rows = list_readers(conn)
    for r in rows:
        state = f"revoked {r.revoked_at}" if r.revoked_at else "active"
        click.echo(f"{r.name}\t{r.role}\tcreated {r.created_at}\t{state}")
    click.echo(f"{len(rows)} readers", err=True)


@readers.command("revoke")
@_out_arg
@click.argument("name")
def readers_revoke(out_dir: Path, name: str) -> None:
    """Revoke NAME's token (their decisions stay in the audit trail)."""
    from ulcerseg.review.decisions import open_study
    from ulcerseg.store.review import revoke_reader

    with open_study(out_dir) as (conn, _rows):
        revoke_reader(conn, name)
    click.echo(f"revoked {name}")


@review.command("verify")
@_out_arg
def verify_cmd(out_dir: Path) -> None:
    """Check the audit trail: hash chain, deleted rows, append-only triggers; names what is
    broken (exit 1), OK exits 0."""
    from ulcerseg.review.decisions import verify_study

    audit = verify_study(out_dir)
    check = audit.chain
    if audit.ok:
        click.echo(f"OK: {check.n_rows} decisions, chain intact; head {check.head}")
        return
    for problem in (*check.problems, *audit.mask_problems):
        click.echo(f"BROKEN: {problem}", err=True)
    if check.broken_seq is not None:
        click.echo(
            f"BROKEN: decision seq {check.broken_seq} (decision_id {check.broken_decision_id}) does not "
            f"match the hash chain: it, or a row before it, was edited, inserted or deleted",
            err=True,
        )
    sys.exit(1)


def _pending_exit(n: int, allow_pending: bool) -> None:
    """Print the pending count; exit 1 while any are pending unless allowed."""
    if n:
        click.echo(
            f"{n} flagged visit(s) pending review (final_source pending_review, unresolved_disagreement "
            "or duplicate_photo, no value)",
            err=True,
        )
        if not allow_pending:
            click.echo("not final: review them, or pass --allow-pending", err=True)
            sys.exit(1)


@review.command("disagreements")
@_out_arg
@_config_opt
@out_file_option("CSV file (default: standard output).", required=False)
def disagreements_cmd(out_dir: Path, config_path: Path | None, output: Path | None) -> None:
    """List photos where two readers' latest decisions differ (CSV to stdout or -o).

    The ``adjudicated`` column says whether an adjudicator has settled it (`review serve
    --adjudicate`); until then the photo has no final value in `review export-final`.
    """
    from ulcerseg.review.decisions import DISAGREEMENT_COLUMNS, disagreements, open_study

    cfg = _config(config_path)
    with open_study(out_dir, for_reading=True) as (conn, _rows):
        rows = disagreements(conn, cfg)
    _write_table(rows, list(DISAGREEMENT_COLUMNS), output)
    click.echo(f"{len(rows)} disagreements", err=True)


_LIST_PENDING = 20  # visits named on stderr; the CSV has them all


@review.command("export-final")
@_out_arg
@_config_opt
@out_file_option("CSV file to write (without it: OUT_DIR/final_visits.csv, deprecated).", required=False)
@_allow_pending
def export_final_cmd(
    out_dir: Path, config_path: Path | None, output: Path | None, allow_pending: bool
) -> None:
    """Final per-visit CSV (automated, reviewed, final value, status, flags, reviewer).

    Exits 1 while any visit waits for a reader (written anyway, with final_source
    pending_review, unresolved_disagreement or duplicate_photo and no value; the visits are listed), unless
    --allow-pending.
    """
    from ulcerseg.review.final import export_final, pending_in_table

    dest = _default_dest(output, out_dir / "final_visits.csv")
    path = export_final(out_dir, _config(config_path), dest)
    click.echo(str(path))
    pending = pending_in_table(path)
    if not pending:
        return
    click.echo(
        f"{len(pending)} flagged visit(s) pending review "
        "(final_source pending_review, unresolved_disagreement or duplicate_photo, no value):",
        err=True,
    )
    for r in pending[:_LIST_PENDING]:
        click.echo(f"  {r['subject_id']} {r['ulcer_id']} {r['visit']}: {r['final_source']}", err=True)
    if len(pending) > _LIST_PENDING:
        click.echo(f"  ... and {len(pending) - _LIST_PENDING} more (see the CSV)", err=True)
    if not allow_pending:
        click.echo("not final: review them, or pass --allow-pending", err=True)
        sys.exit(1)


@review.command("report")
@_out_arg
@_config_opt
@out_file_option("HTML file to write (without it: OUT_DIR/report/report.html, deprecated).", required=False)
@progress_option()
@_allow_pending
def report_cmd(
    out_dir: Path, config_path: Path | None, output: Path | None, progress: bool, allow_pending: bool
) -> None:
    """HTML report per subject/ulcer with photo series, contours and area plot (not blinded).

    Exits 1 while any visit waits for a reader (final_source pending_review,
    unresolved_disagreement or duplicate_photo: no value), unless --allow-pending.
    """
    from ulcerseg.review.report import write_report

    dest = _default_dest(output, out_dir / "report" / "report.html")
    path, n_pending = write_report(
        out_dir, _config(config_path), dest, return_pending=True, progress=_bar(progress, "ulcer")
    )
    click.echo(str(path))
    _pending_exit(n_pending, allow_pending)


@review.command("export-blinded")
@_out_arg
@_config_opt
@out_dir_option("Blinded package folder (new or empty).", dest="output", legacy_output=True)
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Key file mapping pseudonyms back to photos and IDs, outside the package "
    "(default: <package folder>_key.csv next to it).",
)
@progress_option()
def export_blinded_cmd(
    out_dir: Path, config_path: Path | None, output: Path, key_file: Path | None, progress: bool
) -> None:
    """Blinded package (pseudonyms, no metadata) plus a separate key file."""
    from ulcerseg.review.blinded import export_blinded

    bar = _bar(progress, "photo")
    pkg, key = export_blinded(out_dir, output, _config(config_path), key_file, progress=bar)
    click.echo(f"package {pkg}\nkey file {key} (keep it away from assessors)")


@review.command("export-training")
@_out_arg
@_config_opt
@out_dir_option("Dataset folder to create (new or empty).", dest="output", legacy_output=True)
@click.option("--corrected-only", is_flag=True, help="Leave out accepted automated masks.")
@progress_option()
def export_training_cmd(
    out_dir: Path, config_path: Path | None, output: Path, corrected_only: bool, progress: bool
) -> None:
    """Reviewed photos and final masks as a training dataset (images/, masks/, dataset.yaml)."""
    from ulcerseg.review.training_export import export_training

    cfg = _config(config_path)
    dest = export_training(
        out_dir, output, include_accepted=not corrected_only, config=cfg, progress=_bar(progress, "photo")
    )
    n_images = len(list((dest / "images").glob("*.png")))
    click.echo(f"{dest}: {n_images} reviewed photo(s) (photos left out are named above)")


@review.command("decisions")
@_out_arg
@out_file_option("CSV file (default: standard output).", required=False)
def decisions_cmd(out_dir: Path, output: Path | None) -> None:
    """The audit trail: every decision in order (CSV to stdout or -o).

    ``undo`` rows name the decision they withdraw (``undoes``); ``row_hash`` is the hash chain
    checked by `review verify`.
    """
    from ulcerseg.review.decisions import AUDIT_TRAIL_COLUMNS, audit_trail_rows

    _write_table(audit_trail_rows(out_dir), list(AUDIT_TRAIL_COLUMNS), output)
