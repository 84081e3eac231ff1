"""The ``simviz`` command line: end to end, listings, and every error path (exit code 2)."""

import os

import numpy as np
import pytest
from PIL import Image
from privileges import rerun_unprivileged

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


# ---------------------------------------------------------------------------------------------
# Hardening: every bad input is one line on stderr and exit code 2, found before the computation
# where it can be; options parsed by the type each method declares; the chosen method runs.


def _one_error_line(captured):
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert "Traceback" not in captured.err
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Fails the test if the command gets as far as loading a model (the costly part)."""
    import simviz_widgets.models

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded: the error was not found before the computation")

    monkeypatch.setattr(simviz_widgets.models, "load", refuse)


TINY = ["--model", "tiny_test"]


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--method", "rise", "-o", "masks=-1"], ["--option", "masks=-1", ">= 1"]),
        (["--method", "sliding_window", "-o", "stride=0"], ["--option", "stride=0", ">= 1"]),
        (["--method", "rise", "-o", "masks=ten"], ["--option", "masks='ten'", "integer"]),
        (["--method", "rise", "-o", "masks=2.5"], ["--option", "masks='2.5'", "integer"]),
        (["--method", "rise", "-o", "keep=nan"], ["--option", "keep", "finite"]),
        (["--method", "rise", "-o", "keep=1.5"], ["--option", "keep=1.5"]),
        (["--method", "rise", "-o", "similarity=cos"], ["--option", "similarity", "'cosine'"]),
        (["-o", "bias=maybe"], ["--option", "bias='maybe'", "true", "false"]),
        (["-o", "bias=2"], ["--option", "bias='2'", "true"]),
        (["-o", "bias="], ["--option", "bias=''"]),
        (["--method", "gradcam", "-o", "bias=false"], ["--option", "'gradcam'", "bias", "relu"]),
        (["--method", "similarity_map", "-o", "x=1"], ["--option", "'x'", "no options"]),
        (["-o", "bias"], ["--option", "'bias' is not KEY=VALUE"]),
        (["--dpi", "0"], ["--dpi", "0", "[10, 1200]"]),
        (["--dpi", "100000"], ["--dpi", "100000", "[10, 1200]"]),
        (["--dpi", "1200", "--points", "40"], ["--dpi", "--points", "px"]),
        (["--alpha", "nan"], ["--alpha", "nan"]),
        (["--out", ""], ["--out", "empty", ".png"]),
        (["--out", "   "], ["--out", "empty", ".png"]),
    ],
)
def test_bad_input_is_one_line_exit_2_before_computing(argv, expected, tmp_path, capsys, monkeypatch, no_model):
    monkeypatch.chdir(tmp_path)
    assert main(["explain", *TINY, *argv]) == 2
    line = _one_error_line(capsys.readouterr())
    assert line.startswith("simviz explain: error: ")
    for fragment in expected:
        assert fragment in line, (fragment, line)
    assert not any(tmp_path.iterdir())


def test_option_that_does_not_fit_the_image_is_one_line_exit_2(tmp_path, capsys, monkeypatch):
    """window=9999 is only wrong for the image size: found when the method meets the images."""
    monkeypatch.chdir(tmp_path)
    assert main(["explain", *TINY, "--method", "sliding_window", "-o", "window=9999"]) == 2
    line = _one_error_line(capsys.readouterr())
    assert "window=9999" in line and "larger than" in line
    assert not any(tmp_path.iterdir())


def test_out_in_a_file_instead_of_a_folder(tmp_path, capsys, no_model):
    parent = tmp_path / "notes.txt"
    parent.write_text("a file")
    assert main(["explain", *TINY, "--out", parent / "x.png"]) == 2
    line = _one_error_line(capsys.readouterr())
    assert "--out" in line and "notes.txt" in line and "not a folder" in line


def test_out_in_a_read_only_folder(tmp_path, capsys, no_model, request):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root: run again with the permission bypass dropped
            return rerun_unprivileged(request)
        assert main(["explain", *TINY, "--out", folder / "x.png"]) == 2
        line = _one_error_line(capsys.readouterr())
        assert "--out" in line and "cannot write" in line and "permission denied" in line
        assert not any(folder.iterdir())
    finally:
        folder.chmod(0o755)


def test_unwritable_out_is_found_before_computing(tmp_path, capsys, monkeypatch, no_model):
    import simviz_widgets.cli as cli

    target = tmp_path / "x.png"

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli, "open", refuse, raising=False)  # as a read-only folder does to non-root
    assert main(["explain", *TINY, "--out", target]) == 2
    line = _one_error_line(capsys.readouterr())
    assert f"cannot write {str(target)!r}: permission denied" in line


def test_checking_out_leaves_an_existing_file_and_no_new_one(tmp_path, capsys, monkeypatch, no_model):
    existing = tmp_path / "old.png"
    existing.write_bytes(b"keep me")
    assert main(["explain", *TINY, "--out", existing, "--method", "rise", "-o", "masks=0"]) == 2
    assert existing.read_bytes() == b"keep me"
    assert main(["explain", *TINY, "--out", tmp_path / "new.png", "--method", "rise", "-o", "masks=0"]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.png"]


def _bomb(path):
    import struct
    import zlib

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_image_is_one_line_exit_2(tmp_path, capsys, no_model):
    bomb = _bomb(tmp_path / "bomb.png")
    assert main(["explain", bomb, "chelsea", "--out", tmp_path / "x.png"]) == 2
    line = _one_error_line(capsys.readouterr())
    assert "query" in line and "bomb.png" in line and "10,000,000,000 pixels" in line


def test_unreadable_image_is_one_line_exit_2(tmp_path, capsys, monkeypatch, no_model):
    path = tmp_path / "locked.png"
    Image.fromarray(load_photo("coffee")).save(path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads it anyway: simulate what a normal user gets
            def refuse(*args, **kwargs):
                raise PermissionError(13, "Permission denied", str(path))

            monkeypatch.setattr(Image, "open", refuse)
        assert main(["explain", "chelsea", path, "--out", tmp_path / "x.png"]) == 2
    finally:
        path.chmod(0o644)
    line = _one_error_line(capsys.readouterr())
    assert "reference" in line and "locked.png" in line and "cannot be read: permission denied" in line


def _printed(out: str) -> dict:
    score_line, error_line = out.splitlines()[:2]
    method = score_line.split("method ")[1].rstrip(")")
    error = error_line.split("completeness error: ")[1]
    return {"method": method, "error": None if error.startswith("n/a") else float(error)}


@pytest.mark.parametrize("word, bias", [("false", False), ("False", False), ("no", False), ("0", False),
                                        ("TRUE", True), ("yes", True), ("1", True)])
def test_flag_options_parse_true_and_false_words(word, bias, tmp_path, capsys):
    """-o bias=false runs with the bias off: the tiny model's head bias is then left out of the
    decomposition, which misses the score by ~6e-3 (vs ~1e-8 with it)."""
    assert main(["explain", *TINY, "--points", "0", "-o", f"bias={word}", "--out", tmp_path / "x.png"]) == 0
    printed = _printed(capsys.readouterr().out)
    assert printed["method"] == "decomposition"
    if bias:
        assert printed["error"] < 1e-6
    else:
        assert 1e-3 < printed["error"] < 3e-2


def test_typed_options_of_every_kind_reach_the_method(tmp_path, capsys):
    out = tmp_path / "rise.png"
    argv = ["explain", *TINY, "--points", "0", "--method", "rise", "--out", out,
            "-o", "masks=6,grid=2", "-o", "keep=0.25", "-o", "seed=3", "-o", "similarity=model",
            "-o", "show_progress=no", "-o", "both=yes"]
    assert main(argv) == 0
    assert _printed(capsys.readouterr().out) == {"method": "rise", "error": None}
    _check_png(out)
    argv = ["explain", *TINY, "--points", "0", "--method", "sliding_window", "--out", out,
            "-o", "window=24,stride=20,fill=(0.1, 0.2, 0.3)", "-o", "show_progress=false"]
    assert main(argv) == 0


@pytest.mark.parametrize("method", ["gradcam", "similarity_map", "sfam"])
def test_the_chosen_method_is_the_one_that_runs(method, tmp_path, capsys):
    """Replacing --method by a fixed 'decomposition' must fail here: the printed method, the
    completeness line and the figure all follow the method."""
    figures = {}
    for name in ("decomposition", method):
        out = tmp_path / f"{name}.png"
        assert main(["explain", *TINY, "--points", "0", "--method", name, "--out", out]) == 0
        printed = _printed(capsys.readouterr().out)
        assert printed["method"] == name
        assert (printed["error"] is None) == (name != "decomposition")
        with Image.open(out) as img:
            figures[name] = np.asarray(img.convert("RGB"))
    a, b = figures.values()
    assert a.shape != b.shape or np.any(a != b)


def test_animated_gif_runs_with_a_one_line_warning(tmp_path, capsys):
    path = tmp_path / "anim.gif"
    frames = [Image.fromarray(load_photo("coffee")[::4, ::4]), Image.fromarray(load_photo("rocket")[::4, ::4])]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50)
    assert main(["explain", path, *TINY, "--points", "0", "--out", tmp_path / "x.png"]) == 0
    err = capsys.readouterr().err
    warning_lines = [line for line in err.splitlines() if "frames" in line]
    assert len(warning_lines) == 1 and "anim.gif" in warning_lines[0] and "2 frames" in warning_lines[0]
    assert warning_lines[0].startswith("simviz explain: warning: ")


def _page_payload(path):
    import json

    page = path.read_text(encoding="utf-8")
    text = page.split('<script type="application/json" id="simviz-payload">')[1].split("</script>")[0]
    return json.loads(text)


def test_explain_writes_a_standalone_page(tmp_path, capsys):
    import base64

    out = tmp_path / "pair.html"
    argv = ["explain", "chelsea", "chelsea:mirror", *TINY, "--reading", "correspondence", "--cmap", "viridis",
            "--out", out]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert f"page: {out.resolve()}" in printed
    payload = _page_payload(out)
    score = float(printed.split("score:")[1].split()[0])
    assert payload["score"] == pytest.approx(score, abs=1e-6) and payload["reading"] == "correspondence"
    assert payload["cmap"] == "viridis" and payload["alpha"] == 0.8  # a page's default peak opacity
    assert payload["point"] is not None and base64.b64decode(payload["sides"]["query"]["photo"])[:4] == b"\x89PNG"


def test_explain_page_alpha_is_checked_and_used(tmp_path, capsys):
    out = tmp_path / "pair.htm"
    assert main(["explain", *TINY, "--alpha", "0.3", "--out", out]) == 0
    assert _page_payload(out)["alpha"] == 0.3
    assert main(["explain", *TINY, "--alpha", "1.3", "--out", out]) == 2


# -- your own model: --model timm:NAME / torchvision:NAME / a TorchScript file, --weights ---------


def _tiny_timm_weights(path, seed=0):
    import timm
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = timm.create_model("test_resnet", pretrained=False).eval()
    torch.save(net.state_dict(), path)
    return net


def test_explain_with_a_timm_architecture_and_weights_file(tmp_path, capsys):
    import simviz_widgets as sv
    from simviz_widgets.datasets import views

    weights, out = tmp_path / "w.pth", tmp_path / "own.png"
    net = _tiny_timm_weights(weights)
    argv = ["explain", "coffee", "coffee:rotation:angle=10", "--model", "timm:test_resnet", "--weights", weights,
            "--points", "0", "--out", out]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "warning" not in captured.err  # weights given: no random-weights warning
    _check_png(out)
    model = sv.SimilarityModel.wrap(net)  # the network itself, wrapped in Python
    coffee = load_photo("coffee")
    expected = model.similarity(model.prepare(coffee), model.prepare(views(coffee, "rotation", angle=10).image))
    score = float(captured.out.split("score:")[1].split()[0])
    assert score == pytest.approx(expected, abs=2e-6) and "model timm:test_resnet" in captured.out


def test_explain_without_weights_warns_in_one_line(tmp_path, capsys):
    out = tmp_path / "random.png"
    assert main(["explain", "--model", "timm:test_resnet", "--points", "0", "--out", out]) == 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == [line for line in lines if line.startswith("simviz explain: warning: ")]
    assert any("timm:test_resnet has random weights" in line for line in lines)


def test_explain_with_a_torchscript_file(tmp_path, capsys):
    import torch

    import simviz_widgets as sv
    from simviz_widgets.models import TinyEmbeddingNet

    path, out = tmp_path / "tiny.pt", tmp_path / "ts.png"
    net = TinyEmbeddingNet(seed=1)
    torch.jit.save(torch.jit.script(net), str(path))
    assert main(["explain", "chelsea", "--model", path, "--points", "0", "--out", out]) == 0
    model = sv.SimilarityModel.wrap(net)  # the default preprocessing, as the command line's
    chelsea = load_photo("chelsea")
    expected = model.similarity(model.prepare(chelsea), model.prepare(chelsea[:, ::-1]))
    score = float(capsys.readouterr().out.split("score:")[1].split()[0])
    assert score == pytest.approx(expected, abs=2e-6)


def test_own_model_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    net = _tiny_timm_weights(tmp_path / "w.pth")
    state = net.state_dict()
    state["fc.weights"] = state.pop("fc.weight")
    torch.save(state, tmp_path / "renamed.pth")
    cases = [
        (["--model", "timm:resnet5"], ["--model", "timm has no architecture 'resnet5'", "'resnet50'"]),
        (["--model", "torchvision:resnet5"], ["--model", "'resnet50'"]),
        (["--model", "timm:test_resnet", "--weights", "renamed.pth"],
         ["--weights", "'fc.weight' (nearest in the file: 'fc.weights')"]),
        (["--model", "w.pth"], ["--model", "not a TorchScript file", "--model timm:NAME --weights w.pth"]),
        (["--model", "missing.pt"], ["--model", "'missing.pt' does not exist"]),
        (["--model", "timm:test_resnet", "--weights", "missing.pth"], ["--weights", "'missing.pth' does not exist"]),
        (["--model", "tiny_test", "--weights", "w.pth"], ["--model", "does not accept --weights"]),
    ]
    for extra, expected in cases:
        code = main(["explain", "chelsea", *extra, "--points", "0", "--out", "x.png"])
        captured = capsys.readouterr()
        assert code == 2, (extra, captured.err)
        line = _one_error_line(captured)
        assert line.startswith("simviz explain: error: "), line
        for fragment in expected:
            assert fragment in line, (fragment, line)
    assert not (tmp_path / "x.png").exists()
    assert main(["explain", "--model", "timm:test_resnet", "--head", "mlp"]) == 2  # argparse: usage, then the error
    assert "argument --head: invalid choice: 'mlp'" in capsys.readouterr().err


def test_models_listing_names_the_other_forms_on_stderr(capsys):
    import simviz_widgets as sv

    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert [line.split()[0] for line in captured.out.splitlines()] == sv.list_models()
    for form in ("timm:NAME", "torchvision:NAME", "PATH.pt"):
        assert form in captured.err
