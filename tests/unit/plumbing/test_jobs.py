"""The typed job options (semheat_widgets.jobs): defaults in one place, checked once, errors
that name the option, flags only at the command line."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from semheat_widgets import cli
from semheat_widgets.errors import SemheatError
from semheat_widgets.jobs import AnalysisJob, FamilyJob, ToyWorldJob, defaults, mentioning


def _parsed(*argv):
    return cli.build_parser().parse_args(list(argv))


def test_the_command_line_takes_its_defaults_from_the_job():
    args = _parsed("analyze", "--data", "rival10:/d", "--vlm", "toy", "--out", "b")
    job = cli.job_from(args)
    assert job == AnalysisJob(data="rival10:/d", vlm="toy", out="b")
    toy = cli.job_from(_parsed("toy", "build", "w"))
    assert toy == ToyWorldJob()
    help_text = cli.build_parser()._subparsers._group_actions[0].choices["analyze"].format_help()
    for flag, value in (("--attack-limit", 500), ("--workers", 2), ("--image-size", 224)):
        assert f"default {value}" in " ".join(help_text.split()), flag  # argparse shows them


def test_every_flag_lands_on_its_option():
    args = _parsed("analyze", "--data", "folder:/d", "--vlm", "toy", "--out", "b",
                   "--attributes", "a.csv", "--concepts", "wet, striped,", "--workers", "0",
                   "--force", "--quiet", "--image-size", "64", "--monitor", "heatmap")
    job = cli.job_from(args)
    assert (job.attributes_csv, job.concepts, job.num_workers) == ("a.csv", ("wet", "striped"), 0)
    assert (job.overwrite, job.progress, job.image_size, job.monitor) == (True, False, 64,
                                                                          "heatmap")
    assert {f.name for f in fields(AnalysisJob)} <= set(vars(args))  # no option left behind
    toy = cli.job_from(_parsed("toy", "build", "w", "--reference", "40", "--shift", "0",
                               "--similarity", "euclidean"))
    assert (toy.n_reference, toy.n_shift, toy.similarity) == (40, 0, "euclidean")


@pytest.mark.parametrize("options, option", [
    ({"reference_fraction": 1.5}, "reference_fraction"),
    ({"reference_fraction": True}, "reference_fraction"),
    ({"image_size": 0}, "image_size"), ({"batch_size": "8"}, "batch_size"),
    ({"engine": "spark"}, "engine"), ({"monitor": "oracle"}, "monitor"),
    ({"classifier": "vgg11"}, "classifier"), ({"vlm": "clip"}, "vlm"),
    ({"concepts": "wet,striped"}, "concepts"), ({"ray_actors": 0}, "ray_actors"),
])
def test_a_bad_option_is_one_error_naming_it(options, option):
    job = AnalysisJob(**{"data": "rival10:/d", "vlm": "toy", "out": "b", **options})
    with pytest.raises(SemheatError) as caught:
        job.checked()
    assert caught.value.option == option
    assert len(str(caught.value).splitlines()) == 1
    flags = {option: "--" + option.replace("_", "-")}
    assert cli.in_flags(caught.value, flags).startswith(flags[option])


def test_a_message_naming_several_options_shows_each_as_its_flag():
    """From Python a message names options as Python spells them; the command line shows the
    flags (a switch's ``name=True`` as the bare flag); other words are left alone."""
    flags = cli._option_flags(cli.build_parser()._subparsers._group_actions[0].choices[
        "analyze"])
    exc = mentioning("folder data needs concept names: give attributes_csv (a CSV whose "
                     "columns name them) or concepts", "attributes_csv", "concepts")
    assert cli.in_flags(exc, flags) == ("folder data needs concept names: give --attributes "
                                        "(a CSV whose columns name them) or --concepts")
    exc = mentioning("b exists; pass overwrite=True to replace it", "overwrite")
    assert str(exc) == "b exists; pass overwrite=True to replace it"
    assert cli.in_flags(exc, flags) == "b exists; pass --force to replace it"
    assert exc.option == "overwrite" and exc.options == ("overwrite",)


def test_the_family_is_one_typed_job_checked_before_any_work(tmp_path):
    from semheat_widgets.zoo.family_build import build_family

    job = FamilyJob(ties=["wet-ship", "wet-ship", "text-truck"]).checked()
    assert job.ties == ("wet-ship", "text-truck") and job.sizes()["n_natural"] == 1500
    assert cli.job_from(_parsed("toy", "family", "d", "--ties", "wet-ship", "--epochs", "2")
                        ) == FamilyJob(ties=("wet-ship",), epochs=2)
    assert FamilyJob(round=2).checked().round == 2
    for options, option in (({"n_natural": 5}, "n_natural"), ({"ties": "wet-ship"}, "ties"),
                            ({"round": 3}, "round"),
                            ({"ties": ["nope"]}, "ties"), ({"epochs": 0}, "epochs")):
        with pytest.raises(SemheatError) as caught:
            build_family(tmp_path / "f", **options)
        assert caught.value.option == option and len(str(caught.value).splitlines()) == 1
    with pytest.raises(SemheatError, match="unexpected keyword"):
        build_family(tmp_path / "f", n_tests=3)
    assert not (tmp_path / "f").exists()  # nothing written before the options were checked
    done = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", "toy", "family",
                           str(tmp_path / "f"), "--ties", "wet-unicorn"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stderr.startswith("semheat: error: --ties names")


def test_checked_normalises_and_keeps_what_is_valid():
    job = AnalysisJob(data="rival10:/d", vlm="toy", out="b", concepts=["wet"],
                      attack_limit=None).checked()
    assert job.concepts == ("wet",) and job.attack_limit is None and str(job.out) == "b"
    assert job.checked() == job  # checking twice changes nothing
    assert defaults(ToyWorldJob) == ToyWorldJob().settings()


def test_the_toy_world_refuses_too_few_inputs_naming_the_flag(tmp_path):
    done = subprocess.run([sys.executable, "-m", "semheat_widgets.cli", "toy", "build",
                           str(tmp_path / "w"), "--natural", "5", "--quiet"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip() == "semheat: error: --natural must be at least 20, got 5"
    assert not (tmp_path / "w").exists()  # nothing written before the check
