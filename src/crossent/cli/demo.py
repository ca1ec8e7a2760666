"""``crossent demo``: a tour of the lessons of cross-entropy, one scene at a time.

    crossent demo                      # the whole tour: neuron, focal, doors, iris
    crossent demo neuron --out plots   # one scene

The scenes live in :mod:`crossent.demos`; this module only prints their tables and verdicts and
asks them to draw their figures.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from ..demos import SCENES
from ._app import Argument, CliError, Option, command, console

__all__: list[str] = []

TOUR = "tour"
HEADINGS = {
    "neuron": "A saturated sigmoid neuron: squared error against cross-entropy",
    "focal": "Dense detection: focal loss against cross-entropy on the rare class",
    "doors": "Doors and animals: likelihood as a product, cross-entropy as a sum of -ln",
    "iris": "Softmax regression on Iris: cross-entropy, squared error and focal loss",
}


def _play_iris(*, epochs, learning_rate, seed):
    """The Iris scene with a live progress bar per model."""
    from ..demos import iris_scene

    with Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("train CE {task.fields[ce]:.4f}"),
                  console=console(), transient=False) as progress:
        tasks = {}

        def on_epoch(name, epoch, model, train_ce):
            if name not in tasks:
                tasks[name] = progress.add_task(name, total=epochs, ce=float("nan"))
            progress.update(tasks[name], completed=epoch, ce=train_ce)

        return iris_scene(epochs=epochs, learning_rate=learning_rate, seed=seed, on_epoch=on_epoch)


def _print_table(scene_table):
    table = Table(title=scene_table.title)
    for i, column in enumerate(scene_table.columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in scene_table.rows:
        table.add_row(*row)
    console().print(table)


@command("demo")
def demo_cmd(
    scene: str = Argument(TOUR, help="Scene to play: neuron, focal, doors, iris, "
                                           "or tour (all of them, in that order)."),
    out: Path = Option(Path("crossent-demo"), "--out", help="Directory for the PNG plots."),
    epochs: int = Option(100, "--epochs", min=1, max=100_000,
                         help="Iris scene: epochs of full-batch gradient descent per model."),
    seed: int = Option(0, "--seed", help="Seed of the data draws, splits and bootstrap."),
    learning_rate: float = Option(0.5, "--learning-rate", min=1e-6, max=100.0,
                                  help="Iris scene: step size shared by the three models."),
) -> None:
    """Show why cross-entropy is the loss of classifiers, one scene at a time: a saturated neuron,
    dense detection with focal loss, the doors tables, and softmax regression on Iris. Each
    scene prints a table and a two-line verdict and writes its plots to --out."""
    if scene != TOUR and scene not in SCENES:
        raise CliError(f"scene: unknown scene {scene!r}; choose one of "
                       f"{', '.join(SCENES)} or {TOUR}")
    names = list(SCENES) if scene == TOUR else [scene]
    start = time.perf_counter()
    written = []
    for name in names:
        console().rule(f"[bold]{name}[/bold]: {HEADINGS[name]}")
        if name == "iris":
            result = _play_iris(epochs=epochs, learning_rate=learning_rate, seed=seed)
        elif name == "focal":
            result = SCENES[name](seed=seed)
        else:
            result = SCENES[name]()
        _print_table(result.table())
        for line in result.verdict:
            console().print(f"  {line}")
        paths = result.draw(out)
        console().print("Plots: " + ", ".join(str(p) for p in paths))
        written.extend(paths)
    console().print(f"Done in {time.perf_counter() - start:.1f} s: {len(written)} plots in {out}.")
