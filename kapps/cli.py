"""The `kapps` command: `kapps train`, `kapps models`, `kapps export`, `kapps predict`, `kapps benchmark`.

Every mistake is one line on stderr: a malformed command line exits with status 2, a `KappsError` with status 1
(`kapps --debug ...` shows its traceback); see `OneLineErrors`.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import pkgutil
from pathlib import Path

from kapps.errors import KappsError
from kapps.formats import FORMATS, QUANTIZATIONS

import click

# click >= 8.2 raises this usage error for a bare `kapps`, and shows the help with it: it stays as click prints it.
_NO_ARGS_HELP = getattr(click.exceptions, "NoArgsIsHelpError", ())


class ErrorLine(click.ClickException):
    """A mistake shown as `error: <message>`, alone on stderr, with its own exit status."""

    def __init__(self, message: str, *, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file=None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=True)


class OneLineErrors:
    """Click behaviour shared by `kapps` and every recipe: each mistake is one line on stderr, never a traceback.

    A malformed command line that click finds (an unknown option or command, a bad choice or number, a missing
    argument) prints `error: <click's message>` and exits with status 2, click's and POSIX's status for a usage
    error; a `KappsError`, a mistake kapps finds, prints `error: <its sentence>` and exits with status 1, or
    raises with its traceback when the command's own `--debug` flag is set. `--help` and `--version` are untouched.
    Mix it in before the click class: `class Command(OneLineErrors, click.Command)`.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except _NO_ARGS_HELP:
            raise
        except click.UsageError as err:
            raise ErrorLine(err.format_message(), exit_code=err.exit_code) from None

    def invoke(self, ctx):
        # A group parses its subcommand's arguments in here, so their usage errors are caught here too.
        try:
            return super().invoke(ctx)
        except _NO_ARGS_HELP:
            raise
        except click.UsageError as err:
            raise ErrorLine(err.format_message(), exit_code=err.exit_code) from None
        except KappsError as err:
            if ctx.params.get("debug"):
                raise
            raise ErrorLine(str(err), exit_code=1) from None


class Command(OneLineErrors, click.Command):
    """A click command whose mistakes are one line each (see `OneLineErrors`): what every recipe is."""


class _Group(OneLineErrors, click.Group):
    """The `kapps` group; its subcommands' mistakes are one line each too, since it invokes them."""


def _show_version(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from kapps.provenance import describe

    click.echo(describe())
    ctx.exit()


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_show_version,
    help="Show kapps' version, its git commit when it runs from a checkout, and where it is installed.",
)
def main(debug: bool) -> None:
    """kapps: modern computer-vision architectures as Keras builders, recipes and verified exports."""


RECIPES = "kapps.recipes"  # the package of the recipe scripts; the checkout's recipes/ links to it


def recipe_names() -> list[str]:
    """The recipes `kapps train` runs: the modules of kapps.recipes, found without importing any of them."""
    modules = pkgutil.iter_modules(importlib.util.find_spec(RECIPES).submodule_search_locations)
    return sorted(m.name for m in modules if not m.name.startswith("_"))


def recipe_summary(name: str) -> str:
    """The first paragraph of a recipe's docstring, read from its source: listing the recipes imports none."""
    source = Path(importlib.util.find_spec(f"{RECIPES}.{name}").origin).read_text()
    docstring = ast.get_docstring(ast.parse(source)) or ""
    return " ".join(docstring.split("\n\n")[0].split())


def _write_recipes(formatter: click.HelpFormatter) -> None:
    with formatter.indentation():
        formatter.write_dl([(name, recipe_summary(name)) for name in recipe_names()])


class _Recipes(_Group):
    """`kapps train`: every recipe is a subcommand, imported only when it runs (each imports much of kapps)."""

    def list_commands(self, ctx) -> list[str]:
        return recipe_names()

    def get_command(self, ctx, name: str) -> click.Command | None:
        if name not in recipe_names():
            return None
        return importlib.import_module(f"{RECIPES}.{name}").main

    def resolve_command(self, ctx, args):
        names = recipe_names()
        if args and args[0] not in names:
            raise click.UsageError(f"Unknown recipe {args[0]!r}; the recipes are {', '.join(names)}.")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx, formatter) -> None:
        formatter.write_paragraph()
        formatter.write_text("Recipes:")
        _write_recipes(formatter)


@main.group(cls=_Recipes, invoke_without_command=True, subcommand_metavar="NAME [RECIPE OPTIONS]...")
@click.pass_context
def train(ctx: click.Context) -> None:
    """Train with a recipe: `kapps train NAME [OPTIONS]` runs recipes/NAME.py with its own options.

    `kapps train NAME --help` shows a recipe's options. A run folder goes to saved_models/NAME/ in the working
    directory unless --out says otherwise, and the recipe's last line names it. Alone, `kapps train` lists the
    recipes.
    """
    if ctx.invoked_subcommand is None:
        formatter = ctx.make_formatter()
        formatter.write_text("Recipes (kapps train NAME --help shows a recipe's options):")
        _write_recipes(formatter)
        click.echo(formatter.getvalue(), nl=False)


@main.command()
@click.option("--task", default=None, help="Only the models of this task (classification, detection, ...).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def models(task: str | None, as_json: bool) -> None:
    """List the registered models with their reference parameter counts."""
    from kapps import models as registry

    if task is not None and task not in registry.TASKS:
        raise KappsError(f"Unknown task {task!r}; choose one of {', '.join(registry.TASKS)}.")
    rows = [registry.info(name) for name in registry.list_models(task)]
    if as_json:
        keys = ("name", "task", "input_shape", "num_classes", "param_count", "count_kind", "source")
        entries = [
            {
                **{k: getattr(i, k) for k in keys},
                "feature_maps": [dataclasses.asdict(f) for f in i.feature_maps],
                "imagenet_preprocessing": i.imagenet_preprocessing,
            }
            for i in rows
        ]
        click.echo(json.dumps(entries, indent=2))
        return
    header = ("model", "task", "input", "classes", "parameters", "counted", "source")
    table = [header] + [
        (
            i.name,
            i.task,
            "x".join(str(d) for d in i.input_shape),
            str(i.num_classes),
            f"{i.param_count:,}",
            i.count_kind,
            i.source,
        )
        for i in rows
    ]
    widths = [max(len(r[c]) for r in table) for c in range(len(header) - 1)]
    for r in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + "  " + r[-1])


@main.command()
@click.argument("path", type=click.Path())
@click.option("--format", "formats", type=click.Choice(FORMATS), default="all", show_default=True)
@click.option("--quantize", type=click.Choice(QUANTIZATIONS), default="none", show_default=True, help="TFLite.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--out", default=None, help="Output folder [default: export/<run name>].")
@click.option("--data", default=None, help="Data source for verification and calibration (default: the run's).")
@click.option("--data-dir", default=None, help="tensorflow-datasets data folder.")
def export(path: str, formats: str, quantize: str, opset: int, out: str | None, data, data_dir) -> None:
    """Export PATH (a run folder or a .keras file) and verify every artifact in its own runtime.

    Each stage prints a line with its time on stderr as it ends; the table and the report's path go to stdout.
    """
    from kapps.export import REPORT_FILE
    from kapps.export import export as run_export

    report = run_export(
        path,
        formats=formats,
        quantize=quantize,
        opset=opset,
        out=out,
        data=data,
        data_dir=data_dir,
        progress=lambda line: click.echo(line, err=True),
    )
    click.echo(format_report(report))
    click.echo(f"report: {report['out']}/{REPORT_FILE}")


@main.command()
@click.argument("artifact", type=click.Path())
@click.argument("images", nargs=-1, required=True, type=click.Path())
@click.option("--out", default="predictions", show_default=True, help="Folder for <image>.json and <image>.png.")
@click.option("--top-k", type=int, default=5, show_default=True, help="Classes listed for a classifier.")
@click.option("--score-threshold", type=float, default=0.25, show_default=True, help="Lowest detection score kept.")
def predict(artifact: str, images: tuple[str, ...], out: str, top_k: int, score_threshold: float) -> None:
    """Run ARTIFACT (.keras, run folder, SavedModel folder, .tflite, .onnx) on IMAGE files; write JSON and PNG.

    A generator takes noise, not images: give it .npy files of one noise vector each; the PNG is its image.
    """
    from kapps.kinds import kind_for
    from kapps.predict import predict as run_predict

    for entry in run_predict(artifact, images, out=out, top_k=top_k, score_threshold=score_threshold):
        click.echo(f"{entry['image']}: {kind_for(entry['task']).summary(entry)}")
    click.echo(f"wrote {len(images)} predictions (JSON and PNG) to {out}")


@main.command()
@click.argument("path", type=click.Path())
@click.option("--batch", default="1,8", show_default=True, help="Comma-separated batch sizes.")
@click.option("--runs", type=int, default=20, show_default=True, help="Interleaved rounds per batch size.")
@click.option("--threads", type=int, default=None, help="Intra-op threads of every runtime [default: every CPU].")
@click.option("--out", default=None, help="Where benchmark.json goes [default: in the export folder].")
def benchmark(path: str, batch: str, runs: int, threads: int | None, out: str | None) -> None:
    """Time every artifact of PATH (an export folder, or a run folder's default export) beside Keras."""
    from kapps.export.benchmark import benchmark as run_benchmark
    from kapps.export.benchmark import format_benchmark, parse_batch_sizes

    result = run_benchmark(
        path,
        batch_sizes=parse_batch_sizes(batch),
        runs=runs,
        threads=threads,
        out=out,
        progress=lambda line: click.echo(line, err=True),  # as kapps export: stdout keeps the table alone
    )
    click.echo(format_benchmark(result))
    click.echo(f"wrote {result['out']}")


def format_report(report: dict) -> str:
    """The export report as an aligned text table, one artifact a row; the model's output kind says what "agree"
    counts."""
    from kapps.kinds import kind_for

    kind = kind_for(report["task"])
    keras_ms = report["keras"]["median_latency_ms"]
    header = (
        "format",
        "quantization",
        "path",
        "size",
        "max |diff|",
        "agree",
        "latency ms",
        "vs keras",
        "ok",
    )
    rows = [header]
    for a in report["artifacts"]:
        rows.append(
            (
                a["format"],
                a["quantization"],
                a["path"],
                _size(a["bytes"]),
                f"{a['max_abs_diff']:.2e}",
                _share(kind.agreement(a)),
                f"{a['median_latency_ms']:.3f}",
                f"{keras_ms / a['median_latency_ms']:.1f}x" if a["median_latency_ms"] else "-",
                "yes" if a["passed"] else "NO",
            )
        )
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = []
    metrics = report.get("run_metrics", {})
    if metrics.get("test_accuracy") is not None:
        lines.append(
            f"model: {report['model']}, test accuracy {metrics['test_accuracy'] * 100:.2f}% (the run's metrics.json)"
        )
    elif metrics.get("map50") is not None:
        lines.append(f"model: {report['model']}, test mAP@0.5 {metrics['map50']:.3f} (the run's metrics.json)")
    lines.append(
        f"parity: {report['inputs']['count']} images from {report['inputs']['data']}; agree: {kind.legend}; "
        f"latency: median batch-1 call, Keras model call {keras_ms:.3f} ms"
    )
    lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _share(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


if __name__ == "__main__":
    main()
