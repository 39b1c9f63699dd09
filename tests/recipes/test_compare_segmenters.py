"""The segmenters' comparison: a run of recipes/segment.py at a tiny budget beside a run folder written here, their
table read from each metrics.json, their picture drawn from the runs' own test split; and the refusals."""

import json

import kapps.data
import kapps.models
import kapps.train

import numpy as np
import pytest
from PIL import Image

from tests.recipes.conftest import assert_refused, invoke_recipe, load_recipe

SCENES = (8, 4, 4)
CLASSES = ["background", "circle", "square", "triangle", "cross"]
# The scores of the run written here: every class's boundary F-score differs, so the outline F column can only be
# the background's.
WRITTEN = {
    "pixel_accuracy": 0.8131,
    "mean_iou": 0.4372,
    "boundary_f_score": 0.41,  # per image, then over images: not the classes' mean (0.35)
    "class_boundary_f_score": [0.75, 0.25, 0.125, 0.5, 0.125],
    "boundary_tolerance": 2.0,
    "class_names": CLASSES,
    "ms_per_image": 3.26,
    "parameters": 0,  # set to the model's count when written
    "epochs_run": 7,
    "train_seconds_this_session": 125.4,
}


def write_run(folder, *, model="unet", kwargs=None, image_size=32, seed=3, metrics=None):
    """A run folder as recipes/segment.py writes it, without the training: the model built and saved untrained,
    config.json from `kapps.train.run_config` on the shapes scenes of `SCENES`, and `WRITTEN`'s metrics.json."""
    kwargs = {"base_filters": 2, "padding": "same"} if kwargs is None else kwargs
    data = kapps.data.load_segmentation("shapes", image_size=(image_size, image_size), seed=seed, sizes=SCENES)
    kwargs = {"input_shape": list(data.input_shape), "num_classes": len(data.class_names), **kwargs}
    built = kapps.models.build(model, **kwargs)
    folder.mkdir(parents=True)
    built.save(folder / "model.keras")
    config = {"options": {"seed": seed, "data": "shapes", "data_dir": None}}
    config.update(kapps.train.run_config(model, kwargs=kwargs, data=data, border_weights=None))
    (folder / "config.json").write_text(json.dumps(config))
    numbers = {**WRITTEN, "parameters": built.count_params()} if metrics is None else metrics
    (folder / "metrics.json").write_text(json.dumps(numbers))
    return folder


def test_two_runs_side_by_side(tmp_path, monkeypatch):
    """An fcn8s trained by recipes/segment.py (seed 3, 32 pixels, 8/4/4 scenes) and a U-Net written here: the
    table has their rows with the numbers of their metrics.json (outline F the background's boundary F), the
    picture four columns of two rows, drawn from the first two test images of the runs' own split."""
    trained = tmp_path / "fcn8s"
    budget = ["--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "4", "--seed", "3"]
    result = invoke_recipe(
        "segment", "--model", "fcn8s", "--image-size", "32", "--scenes", "8,4,4", *budget, "--out", trained
    )
    assert result.exit_code == 0, (result.output, result.exception)
    written = write_run(tmp_path / "unet")
    drawn = {}
    recipe = load_recipe("compare_segmenters")
    real_plot = recipe.plot_segmentation_comparison

    def plot(models, dataset, path, **kwargs):
        drawn.update(names=list(models), images=np.concatenate([images for images, _ in dataset]), **kwargs)
        return real_plot(models, dataset, path, **kwargs)

    monkeypatch.setattr(recipe, "plot_segmentation_comparison", plot)
    out = tmp_path / "comparison"
    result = invoke_recipe("compare_segmenters", trained, written, "--images", "2", "--out", out)
    assert result.exit_code == 0, (result.output, result.exception)

    lines = (out / "comparison.md").read_text().splitlines()
    assert lines[0] == (
        "| model | parameters | mean IoU | boundary F | outline F | pixel accuracy | ms/image | epochs "
        "| training time |"
    )
    trained_metrics = json.loads((trained / "metrics.json").read_text())
    minutes, seconds = divmod(round(trained_metrics["train_seconds_this_session"]), 60)
    expected_trained = [
        "fcn8s (width 1/16)",
        f"{trained_metrics['parameters']:,}",
        f"{trained_metrics['mean_iou']:.3f}",
        f"{trained_metrics['boundary_f_score']:.3f}",
        f"{trained_metrics['class_boundary_f_score'][0]:.3f}",
        f"{trained_metrics['pixel_accuracy']:.3f}",
        f"{trained_metrics['ms_per_image']:.1f}",
        "1",
        f"{minutes} min {seconds} s" if minutes else f"{seconds} s",
    ]
    parameters = kapps.models.build("unet", input_shape=(32, 32, 3), num_classes=5, base_filters=2, padding="same")
    parameters = parameters.count_params()
    expected_written = ["unet (2 filters)", f"{parameters:,}", "0.437", "0.410", "0.750", "0.813", "3.3", "7"]
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:4]]
    assert rows == [expected_trained, [*expected_written, "2 min 5 s"]]
    assert lines[4] == "" and lines[5].startswith("Test scores of each run's metrics.json on 4 test images of shapes")
    assert len(lines) == 6
    assert "| unet (2 filters) |" in result.stdout and f"wrote {out / 'comparison.md'}" in result.stdout

    # the picture: the first two test images of the split the runs were tested on, one column a model
    test = kapps.data.load_segmentation("shapes", image_size=(32, 32), seed=3, sizes=SCENES).test
    first = np.stack([image for image, _ in test.take(2).as_numpy_iterator()])
    np.testing.assert_array_equal(drawn["images"], first)
    assert drawn["names"] == ["fcn8s (width 1/16)", "unet (2 filters)"]
    assert drawn["count"] == 2 and drawn["class_names"] == CLASSES
    assert Image.open(out / "comparison.png").size == (250 * 4, 250 * 2 + 60)  # image, truth, two models


def test_two_runs_of_one_model_are_told_apart_by_their_folders(tmp_path):
    first, second = write_run(tmp_path / "a"), write_run(tmp_path / "b")
    result = invoke_recipe("compare_segmenters", first, second, "--images", "1", "--out", tmp_path / "out")
    assert result.exit_code == 0, (result.output, result.exception)
    table = (tmp_path / "out" / "comparison.md").read_text()
    assert "| unet (2 filters) [a] |" in table and "| unet (2 filters) [b] |" in table


def test_a_table_without_a_background_class_has_no_outline(tmp_path):
    names = ["sky", "circle", "square", "triangle", "cross"]
    run = write_run(tmp_path / "run", metrics={**WRITTEN, "class_names": names})
    result = invoke_recipe("compare_segmenters", run, "--images", "1", "--out", tmp_path / "out")
    assert result.exit_code == 0, (result.output, result.exception)
    (row,) = [line for line in (tmp_path / "out" / "comparison.md").read_text().splitlines() if "unet" in line]
    assert row.split("|")[5].strip() == "-"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Written run folders for the refusals: two on the same scenes, and one on each kind of other data."""
    root = tmp_path_factory.mktemp("runs")
    return {
        "unet": write_run(root / "unet"),
        "fcn": write_run(root / "fcn", model="fcn32s", kwargs={"width": 1 / 32}),
        "bigger": write_run(root / "bigger", image_size=48),
        "seed": write_run(root / "seed", seed=4),
        "classifier": write_run(root / "classifier", model="lenet5", kwargs={}),  # the registry's task
        "untested": write_run(root / "untested", metrics={k: v for k, v in WRITTEN.items() if k != "mean_iou"}),
        "empty": root / "empty",
    }


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["unet", "empty"], "error: '{empty}' is not a run folder of recipes/segment.py: no such folder."),
        (
            ["unet", "bigger"],
            "error: '{unet}' and '{bigger}' were not tested on the same data: image size 32x32 against 48x48.",
        ),
        (["unet", "fcn", "seed"], "error: '{unet}' and '{seed}' were not tested on the same data: seed 3 against 4."),
        (
            ["classifier", "unet"],
            "error: '{classifier}' is a run of lenet5 for classification, not a semantic "
            "segmentation run of recipes/segment.py.",
        ),
        (
            ["untested"],
            "error: The metrics.json of '{untested}' has no mean_iou: the run stopped before its test, or an older "
            "recipe wrote it; train it again with recipes/segment.py.",
        ),
        (["unet", "fcn", "unet"], "error: '{unet}' is given twice; name each run folder once."),
    ],
)
def test_refusals_are_one_sentence_and_write_nothing(empty_cwd, runs, names, message):
    result = invoke_recipe("compare_segmenters", *(runs[name] for name in names))
    assert_refused(result, message.format(**runs), cwd=empty_cwd)


def test_a_folder_without_config_is_not_a_run(empty_cwd, tmp_path):
    (tmp_path / "notes").mkdir()
    result = invoke_recipe("compare_segmenters", tmp_path / "notes")
    message = f"error: '{tmp_path / 'notes'}' is not a run folder of recipes/segment.py: it has no config.json."
    assert_refused(result, message, cwd=empty_cwd)


def test_bad_options_are_one_sentence(empty_cwd, runs):
    result = invoke_recipe("compare_segmenters", runs["unet"], "--images", "0")
    assert_refused(result, "error: --images must be a positive whole number, not 0.", cwd=empty_cwd)
    assert_refused(invoke_recipe("compare_segmenters"), "error: Missing argument 'RUN...'.", cwd=empty_cwd, exit_code=2)
