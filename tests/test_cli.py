"""The command line's frame: commands named after their modules, defaults read from the library,
and a `seedzoo --help` that imports no torch."""

import pkgutil
import subprocess
import sys

import seedzoo.cli
from seedzoo.cli import build_parser
from seedzoo.cli._arguments import LibraryDefault


def _subparsers(parser):
    return next(a for a in parser._actions if a.choices and hasattr(a, "_name_parser_map"))


def _actions(parser):
    """Every argument of ``parser`` and of its subcommands, however deep."""
    for action in parser._actions:
        yield action
        if hasattr(action, "_name_parser_map"):
            for sub in action.choices.values():
                yield from _actions(sub)


def test_each_command_is_named_after_its_module():
    modules = {m.name for m in pkgutil.iter_modules(seedzoo.cli.__path__)
               if not m.name.startswith("_")}
    commands = list(_subparsers(build_parser()).choices)
    assert sorted(commands) == sorted(modules)
    assert commands[:2] == ["train", "eval"]


def test_library_defaults_resolve():
    defaults = [action.default for action in _actions(build_parser())
                if isinstance(action.default, LibraryDefault)]
    assert len(defaults) > 15
    for default in defaults:
        assert default.value is not None and str(default), default.where


def test_parsed_arguments_hold_library_values():
    from seedzoo.evaluation.knn import DEFAULT_KS

    args = seedzoo.cli.resolve_defaults(
        build_parser().parse_args(["eval", "--model", "pixels", "--dataset", "digits"]))
    assert tuple(args.knn_k) == DEFAULT_KS and args.knn_temperature == 0.07


def test_top_level_help_imports_no_torch():
    code = ("import sys; from seedzoo.cli import main\n"
            "try: main(['--help'])\nexcept SystemExit: pass\n"
            "assert 'torch' not in sys.modules, 'seedzoo --help imported torch'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_errors_name_the_command_even_where_an_option_is_called_command(tmp_path, capsys):
    from seedzoo.cli import main

    assert main(["catalog", "add", "x", str(tmp_path / "nowhere"), "--eval", "e.json"]) == 2
    assert capsys.readouterr().err.startswith("seedzoo catalog: error: ")


def test_list_with_a_pattern_that_matches_nothing_says_so(capsys):
    from seedzoo.cli import main

    assert main(["list", "no-such-model-*"]) == 1
    assert "No catalog model matches 'no-such-model-*'" in capsys.readouterr().out


def test_export_and_bench_of_the_pixel_baseline_say_what_it_is(tmp_path, capsys):
    from seedzoo.cli import main

    for argv in (["export", "--model", "pixels", "--out", str(tmp_path / "p.onnx")],
                 ["bench", "--model", "pixels"]):
        assert main(argv) == 2
        assert "the raw-pixel baseline of `seedzoo eval`" in capsys.readouterr().err


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, capsys):
    from seedzoo.cli import main

    (tmp_path / "a-folder").mkdir()
    (tmp_path / "a-file").write_text("x")
    for argv, message in [
        (["eval", "--model", "pixels", "--out", str(tmp_path / "a-folder")], "a folder of that"),
        (["eval", "--model", "pixels", "--out", str(tmp_path / "a-file" / "r.json")],
         "a-file is a file, not a folder"),
        (["bench", "--model", "timm:test_resnet", "--out", str(tmp_path / "a-folder")],
         "a folder of that"),
        (["export", "--model", "timm:test_resnet", "--out", str(tmp_path / "a-folder")],
         "a folder of that"),
        (["pull", "hf-hub:org/x", "--out", str(tmp_path / "a-file")], "a file of that"),
        (["train", "--config", "c.yaml", "--out", str(tmp_path / "a-file")], "a file of that"),
        (["catalog", "add", "n", "f", "--eval", "e", "--cards", str(tmp_path / "a-file")],
         "a file of that"),
    ]:
        try:
            main(argv)
        except SystemExit as exit:  # argparse refuses it, before any model is loaded
            assert exit.code == 2
        assert message in capsys.readouterr().err, argv


def test_the_int8_copy_may_not_take_the_fp32_file_s_name(tmp_path, capsys):
    from seedzoo.cli import main

    out = str(tmp_path / "m.onnx")
    assert main(["export", "--model", "timm:test_resnet", "--out", out, "--int8",
                 "--int8-out", out]) == 2
    assert "would overwrite the fp32 file --out" in capsys.readouterr().err
    assert not (tmp_path / "m.onnx").exists()  # refused before the export
