"""``ulcerseg heal``: healing status per subject, ulcer and visit of a measured study."""

from __future__ import annotations

from pathlib import Path

import click

from ulcerseg.cli.options import healing_config_option, study_dir_argument

__all__ = ["heal"]


@click.command("heal")
@study_dir_argument()
@healing_config_option()
def heal(out_dir: Path, config_path: Path | None) -> None:
    """Healing status per subject, ulcer and visit -> table `healing` and OUT/healing.csv."""
    from ulcerseg.healing import heal_study, load_healing_config

    results = heal_study(out_dir, load_healing_config(config_path))
    n_visits = sum(len(u.visits) for u in results)
    counts: dict[str, int] = {}
    for u in results:
        for v in u.visits:
            counts[v.status] = counts.get(v.status, 0) + 1
    summary = ", ".join(f"{k} {n}" for k, n in sorted(counts.items()))
    click.echo(f"{len(results)} ulcers, {n_visits} visits ({summary}) -> {out_dir / 'healing.csv'}")
