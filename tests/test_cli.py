"""The ``simviz`` command line: end to end, listings, and every error path (exit code 2)."""

import numpy as np
import pytest
from PIL import Image

from simviz_widgets.cli import CliError, main, resolve_image
from simviz_widgets.datasets import list_photos, load_photo


def _check_png(path):
    assert path.stat().st_size > 0
    with Image.open(path) as img:
        assert img.format == "PNG"
        assert img.size[0] > 200 and img.size[1] > 100


def test_explain_default_pair_writes_png(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main(["explain", "--out", out]) == 0
    _check_png(out)
    printed = capsys.readouterr().out
    assert "score:" in printed and "completeness error:" in printed and str(out) in printed


def test_explain_prints_the_models_own_score(tmp_path, capsys):
    import simviz_widgets as sv
    from simviz_widgets.datasets import views

    out = tmp_path / "tiny.png"
    code = main(["explain", "coffee", "coffee:rotation:angle=10", "--model", "tiny_test",
                 "--points", "2", "--reading", "correspondence", "--out", out])
    assert code == 0
    _check_png(out)
    coffee = load_photo("coffee")
    model = sv.load_model("tiny_test")
    expected = model.similarity(model.prepare(coffee), model.prepare(views(coffee, "rotation", angle=10).image))
    printed = capsys.readouterr().out
    score = float(printed.split("score:")[1].split()[0])
    assert score == pytest.approx(expected, abs=2e-6)


def test_explain_reads_image_files(tmp_path, capsys):
    query = tmp_path / "q.png"
    Image.fromarray(load_photo("astronaut")).save(query)
    out = tmp_path / "files.png"
    assert main(["explain", query, "rocket", "--model", "tiny_test", "--out", out, "--points", "0"]) == 0
    _check_png(out)


def test_resolve_image_file_photo_and_view(tmp_path):
    path = tmp_path / "c.png"
    chelsea = load_photo("chelsea")
    Image.fromarray(chelsea).save(path)
    np.testing.assert_array_equal(resolve_image(str(path), "query"), chelsea)
    np.testing.assert_array_equal(resolve_image("chelsea", "query"), chelsea)
    np.testing.assert_array_equal(resolve_image("chelsea:mirror", "query"), chelsea[:, ::-1])
    cropped = resolve_image("chelsea:crop_scale:box=(0,0,100,200),size=(50,100)", "query")
    assert cropped.shape == (50, 100, 3)


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["explain", "/no/such/dir/q.png", "chelsea"], ["query", "/no/such/dir/q.png", "does not exist"]),
        (["explain", "chelsea", "missing_ref.jpg"], ["reference", "missing_ref.jpg"]),
        (["explain", "chelsa", "chelsea"], ["query", "'chelsa'", "Did you mean 'chelsea'"]),
        (["explain", "chelsea:rotate"], ["query", "'rotate'", "rotation"]),
        (["explain", "chelsea:rotation:degrees=3"], ["query", "degrees", "angle"]),
        (["explain", "--method", "decompose"], ["--method", "'decompose'", "decomposition"]),
        (["explain", "--model", "no_such_model"], ["--model", "'no_such_model'", "efficientnet_lite0"]),
        (["explain", "--model", "mean_color", "--layer", "x"], ["--model", "--layer"]),
        (["explain", "--out", "/no/such/dir/x.png"], ["--out", "/no/such/dir"]),
        (["explain", "--out", "figure.xyz"], ["--out", "figure.xyz", ".png"]),
        (["explain", "--points", "-1"], ["--points", "-1"]),
        (["explain", "--cmap", "infernal"], ["--cmap", "infernal"]),
        (["explain", "--model", "tiny_test", "-o", "bogus=1"], ["--option", "bogus"]),
        (["explain", "--metric", "manhattan"], ["--metric", "manhattan"]),
        (["frobnicate"], ["frobnicate"]),
        ([], ["COMMAND"]),
    ],
)
def test_errors_exit_2_name_the_input_without_traceback(argv, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing may be written; a default --out would land here
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    for fragment in expected:
        assert fragment in captured.err, (fragment, captured.err)
    assert not any(tmp_path.iterdir())


def test_cli_error_is_an_exception_with_the_message():
    with pytest.raises(CliError, match="reference"):
        resolve_image("no_such_photo_or_file", "reference")


def test_listings(capsys):
    import simviz_widgets as sv

    assert main(["photos"]) == 0
    assert capsys.readouterr().out.split() == list_photos()
    assert main(["methods"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sv.list_methods()
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sv.list_models()


def test_help_exits_zero(capsys):
    assert main(["explain", "--help"]) == 0
    assert "--reading" in capsys.readouterr().out


def test_package_loads_widgets_only_when_asked():
    """`import simviz_widgets` stays free of the Jupyter widget stack (the CLI's start-up), and
    `sv.widgets.PairExplorer` still works, as the README writes it. A fresh interpreter, so
    nothing imported by other tests hides the difference."""
    import subprocess
    import sys

    code = (
        "import sys, simviz_widgets as sv\n"
        "assert 'simviz_widgets.widgets' not in sys.modules and 'ipycanvas' not in sys.modules\n"
        "assert sv.widgets.PairExplorer.__name__ == 'PairExplorer'\n"
        "assert 'ipycanvas' in sys.modules\n"
        "assert sv.datasets.load_photo('chelsea').shape[-1] == 3\n"
        "try:\n    sv.no_such_name\nexcept AttributeError as error:\n    print(error)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "has no attribute 'no_such_name'" in done.stdout
