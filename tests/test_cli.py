"""The ``uebench`` command line as a black box (``--json`` output, exit codes, messages).

Everything here fails or finishes before any training starts; the end-to-end runs are in
``test_e2e.py``.
"""

from __future__ import annotations

import textwrap

import pytest

from conftest import assert_clean_error, json_out
from uebench import __version__
from uebench.datasets.cifar10 import Cifar10
from uebench.plugins import get_host
from uebench.registry import natural_key

SMOKE = ("run", "--protocol", "smoke", "--json")


# --- listings -----------------------------------------------------------------------------


def test_attacks_list_json(invoke):
    rows = json_out(invoke("attacks", "list", "--json"))
    by_name = {r["name"]: r for r in rows}
    assert {"none", "random", "errmin-pgd"} <= set(by_name)
    assert [r["name"] for r in rows] == sorted(by_name, key=natural_key)
    errmin = by_name["errmin-pgd"]
    assert errmin["plugin"] == "uebench.attacks.errmin_pgd"
    assert "Error-minimizing" in errmin["summary"]
    options = {o["name"]: o for o in errmin["options"]}
    assert options["form"]["choices"] == ["sample", "class"] and options["form"]["default"] == "sample"
    assert options["steps"]["type"] == "int | None" and options["steps"]["help"]
    assert by_name["none"]["options"] == []


@pytest.mark.parametrize(
    "pattern, expected",
    [("err*", ["errmax-pgd", "errmax-universal", "errmin-adam", "errmin-pgd"]), ("*", None), ("r?ndom", ["random"]),
     ("nothing*", [])],
)
def test_attacks_list_pattern(invoke, pattern, expected):
    names = [r["name"] for r in json_out(invoke("attacks", "list", pattern, "--json"))]
    if expected is None:
        assert names == get_host().attacks.names()
    else:
        assert names == expected


def test_attacks_list_human_readable(invoke):
    result = invoke("attacks", "list", "err*")
    assert result.exit_code == 0
    assert "errmin-pgd" in result.stdout and "random" not in result.stdout


def test_victims_list_is_naturally_sorted(invoke, tmp_path):
    """Extra victims from a plugin folder make natural and plain sorting disagree."""
    (tmp_path / "more_victims.py").write_text(textwrap.dedent('''
        from uebench.hookspecs import hookimpl
        from uebench.victims.cifar import ResNet18, TinyCNN

        class ResNet101(ResNet18):
            """Stand-in, never built."""
            name = "resnet101"

        class Vgg2(TinyCNN):
            """Stand-in, never built."""
            name = "vgg2"

        @hookimpl
        def register_victims(register):
            register(ResNet101)
            register(Vgg2)
    '''))
    rows = json_out(invoke("--plugins-dir", tmp_path, "victims", "list", "--json"))
    names = [r["name"] for r in rows]
    assert names.index("resnet18") < names.index("resnet50") < names.index("resnet101")
    assert names.index("vgg2") < names.index("vgg11")
    assert names == sorted(names, key=lambda n: natural_key(n.split(":")[0]))
    assert "timm:<name>" in names
    assert {r["name"]: r["plugin"] for r in rows}["resnet101"] == "more_victims"


def test_other_listings(invoke):
    defenses = json_out(invoke("defenses", "list", "--json"))
    assert {d["name"] for d in defenses} >= {"none", "cutmix"}
    cutmix = next(d for d in defenses if d["name"] == "cutmix")
    assert [o["name"] for o in cutmix["options"]] == ["alpha", "prob"]
    datasets = json_out(invoke("datasets", "list", "--json"))
    assert [d["name"] for d in datasets] == ["cifar10", "cifar100", "imagenet-subset", "svhn"]
    protocols = json_out(invoke("protocols", "list", "--json"))
    smoke = next(p for p in protocols if p["name"] == "smoke")
    assert smoke["victim"] == "cnn-tiny" and smoke["epochs"] >= 1


def test_plugins_json_lists_builtins(invoke):
    rows = json_out(invoke("plugins", "--json"))
    builtins = [r for r in rows if r["source"] == "builtin"]
    assert {r["name"] for r in builtins} >= {"uebench.attacks.errmin_pgd", "uebench.victims.cifar"}
    for r in builtins:
        assert r["error"] is None and r["version"] == __version__
        assert set(r) >= {"name", "source", "module", "version", "path", "error", "provides"}
    errmin = next(r for r in rows if r["name"] == "uebench.attacks.errmin_pgd")
    assert errmin["provides"] == {"attack": ["errmin-pgd"]}


def test_help_and_version(invoke):
    result = invoke("--help")
    assert result.exit_code == 0
    for cmd in ("run", "attacks", "defenses", "victims", "datasets", "plugins", "protocols"):
        assert cmd in result.stdout
    assert __version__ in invoke("--version").stdout
    assert "--poison-rate" in invoke("run", "--help").stdout


def test_unknown_command(invoke):
    result = invoke("atacks")
    assert result.exit_code == 2
    assert "Traceback" not in result.output


# --- run: bad input → exit 2, one message, no traceback ------------------------------------
# (the catalogue of bad inputs, each checked to write nothing, is test_faults_catalogue.py)


@pytest.mark.faults
def test_unknown_attack_suggests_and_lists(invoke):
    out = assert_clean_error(invoke(*SMOKE, "--attack", "errmin-pdg"), 2)
    assert "did you mean" in out.lower() and "'errmin-pgd'" in out
    for name in get_host().attacks.names():
        assert name in out


@pytest.mark.faults
def test_unknown_option_key_names_allowed_keys(invoke):
    out = assert_clean_error(invoke(*SMOKE, "--defense", "cutmix", "-o", "foo=1"), 2)
    assert "'foo'" in out
    for key in ("form", "steps", "step_size", "stop_error", "max_iters", "alpha", "prob"):
        assert key in out


@pytest.mark.faults
def test_unknown_prefixed_option_key(invoke):
    out = assert_clean_error(invoke(*SMOKE, "-o", "attack.alpha=1"), 2)
    assert "attack 'errmin-pgd' has no option 'alpha'" in out and "form" in out


def test_eps_not_a_number(invoke):
    out = assert_clean_error(invoke(*SMOKE, "--eps", "eight"), 2)
    assert "'eight' is not a number" in out


def test_an_unknown_compile_mode_lists_the_modes(invoke):
    out = assert_clean_error(invoke(*SMOKE, "--compile", "fast"), 2)
    assert "'fast' is not one of" in out and "reduce-overhead" in out


@pytest.mark.faults
@pytest.mark.parametrize(
    "args, fragment",
    [
        (("--eps", "1e400"), "eps '1e400' is not a number"),
        (("--poison-rate", "1e400"), "'1e400' is not a number"),
        (("-o", "step_size=1e400"), "option 'step_size' expects float, got '1e400'"),
    ],
    ids=["eps", "poison-rate", "float-option"],
)
def test_overflowing_numbers_are_bad_input(invoke, args, fragment):
    """A number too large for a float is bad input (exit 2, one message), not an OverflowError."""
    out = assert_clean_error(invoke(*SMOKE, *args), 2)
    assert fragment in out
    assert "OverflowError" not in out


def test_message_ending_in_a_repr_keeps_its_closing_quote(invoke):
    out = assert_clean_error(invoke(*SMOKE, "-o", "form=Sample"), 2)
    assert "got 'Sample'" in out
    assert out.rstrip().endswith("must be one of sample, class; got 'Sample'")


def test_eps_fraction_is_parsed():
    from uebench.cli.run import FractionType

    assert FractionType().convert("8/255", None, None) == pytest.approx(8 / 255)
    assert FractionType().convert("0.5", None, None) == 0.5


@pytest.mark.faults
def test_missing_plugins_dir(invoke, tmp_path):
    out = assert_clean_error(invoke("--plugins-dir", tmp_path / "nope", "attacks", "list"), 1)
    assert "does not exist" in out and "nope" in out


# --- run: runtime failures → exit 1 with a message ----------------------------------------


@pytest.mark.faults
def test_missing_data_offline_lists_every_folder(invoke, tmp_path, monkeypatch):
    data_dir, env_dir, xdg = (tmp_path / n for n in ("given", "env", "xdg"))
    for d in (data_dir, env_dir, xdg):
        d.mkdir()
    monkeypatch.setenv("UEBENCH_DATA", str(env_dir))
    monkeypatch.setenv("XDG_CACHE_HOME", str(xdg))
    tried = []

    def offline(self, folder):
        tried.append(folder)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(Cifar10, "download", offline)
    result = invoke(*SMOKE, "--attack", "none", "--data-dir", data_dir, "--out", tmp_path / "out")
    out = assert_clean_error(result, 1)
    looked = [data_dir / "cifar10", env_dir / "cifar10", xdg / "uebench" / "cifar10"]
    for folder in looked:
        assert str(folder) in out
    assert tried == looked  # every root was tried, in order
    assert "network is unreachable" in out
    assert "--data-dir" in out and "UEBENCH_DATA" in out
    assert not (tmp_path / "out" / "results.csv").exists()
    for d in (data_dir, env_dir, xdg):
        assert list(d.iterdir()) == []  # nothing written on failure


def test_an_empty_listing_says_what_is_registered(invoke):
    out = assert_clean_error(invoke("victims", "list", "zzz*"), 1)
    assert "no victim matches 'zzz*'" in out and "resnet18" in out
    assert json_out(invoke("victims", "list", "zzz*", "--json")) == []  # machine-readable stays a list


def test_leaderboard_show_prints_the_committed_tables(invoke):
    from conftest import REPO

    records = json_out(invoke("leaderboard", "show", "cifar10", "--protocol", "cpu", "--root", REPO / "leaderboards", "--json"))
    cell = next(r for r in records if r["attack"] == "none" and r["defense"] == "none")
    assert cell["protocol"] == "cpu" and cell["n"] >= 1 and 0 < cell["mean"] <= 100
    human = invoke("leaderboard", "show", "cifar10", "--protocol", "cpu", "--root", REPO / "leaderboards")
    assert human.exit_code == 0 and "errmin-pgd form=class" in human.stdout
    assert "no rows for dataset 'svhn'" in assert_clean_error(
        invoke("leaderboard", "show", "svhn", "--root", REPO / "leaderboards"), 1)


def test_help_lists_protocols_from_the_registry(invoke):
    assert "smoke | cpu | paper" not in invoke("run", "--help").stdout
