"""Options (one dataclass → parser, validation, cache key, row) and the named registries."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace

import pytest

from uebench.attacks.base import Attack
from uebench.cli.routing import route_options
from uebench.defenses.base import Defense
from uebench.options import (
    OptionError,
    build_options,
    describe_options,
    option,
    options_dict,
    options_json,
    parse_assignments,
    parse_fraction,
)
from uebench.plugins import get_host
from uebench.protocols import get_protocol
from uebench.registry import Registry, UnknownNameError, natural_key
from uebench.victims.base import Victim


@dataclass
class Opts:
    n: int = option(3, help="an int")
    rate: float = option(0.5, help="a float")
    flag: bool = option(False, help="a bool")
    label: str = option("a", help="a string", choices=("a", "b"))
    maybe_n: int | None = option(None, help="optional int")
    maybe_x: float | None = option(None, help="optional float (PEP 604)")
    text: str | None = option(None, help="optional string")

    def validate(self):
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")


# --- build_options ------------------------------------------------------------------------


def test_defaults_when_no_values():
    o = build_options(Opts, {})
    assert o == Opts()


@pytest.mark.parametrize(
    "key, raw, expected",
    [
        ("n", "7", 7),
        ("n", " 12 ", 12),
        ("n", 5, 5),
        ("n", 4.0, 4),
        ("rate", "8/255", 8 / 255),
        ("rate", "0.031", 0.031),
        ("rate", "1e-2", 0.01),
        ("rate", 2, 2.0),
        ("flag", "true", True),
        ("flag", "Yes", True),
        ("flag", "on", True),
        ("flag", "1", True),
        ("flag", "false", False),
        ("flag", "NO", False),
        ("flag", "0", False),
        ("flag", True, True),
        ("label", "b", "b"),
        ("maybe_n", "3", 3),
        ("maybe_n", "none", None),
        ("maybe_n", "None", None),
        ("maybe_n", "null", None),
        ("maybe_n", "", None),
        ("maybe_n", None, None),
        ("maybe_x", "8/255", 8 / 255),
        ("maybe_x", "none", None),
        ("text", "hello", "hello"),
        ("text", "none", None),
    ],
)
def test_type_conversion(key, raw, expected):
    o = build_options(Opts, {key: raw})
    value = getattr(o, key)
    if isinstance(expected, float):
        assert value == pytest.approx(expected, rel=1e-12)
        assert isinstance(value, float)
    else:
        assert value == expected
        assert type(value) is type(expected)


@pytest.mark.parametrize(
    "key, raw, fragment",
    [
        ("n", "x", "expects int"),
        ("n", "1.5", "expects int"),
        ("n", 2.5, "expects int"),
        ("n", True, "expects int"),
        ("n", "8/255", "expects int"),
        ("rate", "abc", "expects float"),
        ("rate", "1/0", "expects float"),
        ("rate", "1e400", "expects float"),  # overflows a float: OptionError, not OverflowError
        ("flag", "maybe", "expects bool"),
        ("n", None, "may not be empty"),
        ("n", "none", "expects int"),  # not Optional: 'none' is no int
    ],
)
def test_bad_values_name_the_option(key, raw, fragment):
    with pytest.raises(OptionError) as info:
        build_options(Opts, {key: raw}, owner="attack 'x'")
    assert fragment in str(info.value)
    assert repr(key) in str(info.value)


def test_choices_are_validated():
    with pytest.raises(OptionError) as info:
        build_options(Opts, {"label": "c"}, owner="attack 'x'")
    msg = str(info.value)
    assert "'label'" in msg and "a, b" in msg and "'c'" in msg


def test_unknown_key_names_allowed_keys():
    with pytest.raises(OptionError) as info:
        build_options(Opts, {"nn": "1"}, owner="attack 'x'")
    msg = str(info.value)
    assert "'nn'" in msg and "attack 'x'" in msg
    for name in ("n", "rate", "flag", "label", "maybe_n", "maybe_x", "text"):
        assert name in msg


def test_validate_hook_becomes_option_error():
    with pytest.raises(OptionError, match="n must be >= 0"):
        build_options(Opts, {"n": "-1"})


def test_plugin_without_options():
    assert build_options(None, {}) is None
    with pytest.raises(OptionError, match="takes no options, got a, b"):
        build_options(None, {"b": 1, "a": 2}, owner="attack 'none'")
    assert options_dict(None) == {} and options_json(None) == "{}"


def test_options_json_is_canonical():
    o = build_options(Opts, {"rate": "1/4", "n": "2"})
    text = options_json(o)
    assert json.loads(text) == options_dict(o)
    assert list(json.loads(text)) == sorted(options_dict(o))
    assert " " not in text


def test_describe_options():
    rows = {r["name"]: r for r in describe_options(Opts)}
    assert list(rows) == ["n", "rate", "flag", "label", "maybe_n", "maybe_x", "text"]
    assert rows["n"]["type"] == "int" and rows["n"]["default"] == 3 and rows["n"]["help"] == "an int"
    assert rows["label"]["choices"] == ["a", "b"]
    assert rows["maybe_n"]["type"] == "int | None"
    assert rows["maybe_x"]["type"] == "float | None"
    assert rows["n"]["choices"] is None
    assert describe_options(None) == []


@pytest.mark.parametrize("text, value",
                         [("8/255", 8 / 255), ("0.031", 0.031), ("1e-2", 0.01), (" 1 ", 1.0), (0.5, 0.5), (1, 1.0)])
def test_parse_fraction(text, value):
    assert parse_fraction(text) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize("text", ["abc", "8//255", "", "1/0", "1e400", "-1e400", "1e400/3"])
def test_parse_fraction_rejects(text):
    with pytest.raises(OptionError, match="is not a number"):
        parse_fraction(text, "eps")


def test_parse_assignments():
    assert parse_assignments(["form=class", " steps = 3 ", "source=timm:resnet18", "x=a=b", "e="]) == [
        ("form", "class"), ("steps", "3"), ("source", "timm:resnet18"), ("x", "a=b"), ("e", ""),
    ]
    for bad in ("foo", "=3", " =x"):
        with pytest.raises(OptionError, match="malformed option"):
            parse_assignments([bad])


# --- route_options ------------------------------------------------------------------------


def test_route_options_with_builtins():
    host = get_host()
    smoke = get_protocol("smoke")
    a, d, v = route_options(
        [("form", "class"), ("steps", "3"), ("alpha", "0.5"), ("attack.max_iters", "4"), ("quality", "20")],
        host, "errmin-pgd", ["jpeg", "cutmix"], None, smoke,
    )
    assert a == {"form": "class", "steps": "3", "max_iters": "4"}
    assert d == {"jpeg": {"quality": "20"}, "cutmix": {"alpha": "0.5"}}
    assert v == {}
    a, d, v = route_options([("pretrained", "false")], host, "none", ["none"], "timm:resnet18", smoke)
    assert (a, d, v) == ({}, {"none": {}}, {"pretrained": "false"})
    # a defense addressed by name, or as `defense.` when one defense of the cell declares the key
    _, d, _ = route_options([("cutmix.prob", "0.5"), ("defense.quality", "30")], host, "none", ["jpeg", "cutmix"], None, smoke)
    assert d == {"jpeg": {"quality": "30"}, "cutmix": {"prob": "0.5"}}


def test_route_options_same_key_on_two_defenses_needs_their_name():
    host = get_host()
    smoke = get_protocol("smoke")
    with pytest.raises(OptionError, match="declared by mixup and cutmix"):
        route_options([("alpha", "0.5")], host, "none", ["mixup", "cutmix"], None, smoke)
    with pytest.raises(OptionError, match="mixup and cutmix both declare it; write e.g. mixup.alpha"):
        route_options([("defense.alpha", "0.5")], host, "none", ["mixup", "cutmix"], None, smoke)
    _, d, _ = route_options([("mixup.alpha", "0.5"), ("cutmix.alpha", "2")], host, "none", ["mixup", "cutmix"], None, smoke)
    assert d == {"mixup": {"alpha": "0.5"}, "cutmix": {"alpha": "2"}}


def test_route_options_unknown_key_lists_every_component():
    host = get_host()
    with pytest.raises(OptionError) as info:
        route_options([("nope", "1")], host, "errmin-pgd", ["cutmix"], None, get_protocol("smoke"))
    msg = str(info.value)
    assert "'nope'" in msg
    for name in ("errmin-pgd", "cutmix", "cnn-tiny", "form", "steps", "alpha", "prob"):
        assert name in msg


def test_route_options_prefixed_key_must_exist_on_that_component():
    host = get_host()
    with pytest.raises(OptionError) as info:
        route_options([("cutmix.form", "class")], host, "errmin-pgd", ["cutmix"], None, get_protocol("smoke"))
    msg = str(info.value)
    assert "defense 'cutmix' has no option 'form'" in msg and "alpha, prob" in msg
    with pytest.raises(OptionError, match="option 'form': no defense of this cell declares it.*alpha, prob"):
        route_options([("defense.form", "class")], host, "errmin-pgd", ["cutmix"], None, get_protocol("smoke"))


def _fake_host():
    @dataclass
    class Shared:
        size: int = option(1)

    class A(Attack):
        name = "a"
        Options = Shared

    class D(Defense):
        name = "d"
        Options = Shared

    class V(Victim):
        name = "v"

    regs = {k: Registry(k, base) for k, base in (("attack", Attack), ("defense", Defense), ("victim", Victim))}
    regs["attack"].add(A)
    regs["defense"].add(D)
    regs["victim"].add(V)
    return SimpleNamespace(attacks=regs["attack"], defenses=regs["defense"], victims=regs["victim"])


def test_route_options_ambiguous_key_needs_a_prefix():
    host = _fake_host()
    proto = get_protocol("smoke")
    with pytest.raises(OptionError) as info:
        route_options([("size", "2")], host, "a", ["d"], "v", proto)
    assert "attack and d" in str(info.value) and "attack.size" in str(info.value)
    a, d, v = route_options([("attack.size", "2"), ("defense.size", "3")], host, "a", ["d"], "v", proto)
    assert a == {"size": "2"} and d == {"d": {"size": "3"}} and v == {}


# --- registry -----------------------------------------------------------------------------


def _registry(*names, base=Attack, takes_argument=()):
    reg = Registry("attack", base)
    for n in names:
        reg.add(type(n.title().replace("-", ""), (base,), {"name": n, "__doc__": f"The {n} one.\nMore.",
                                                          "takes_argument": n in takes_argument}), plugin="p")
    return reg


def test_did_you_mean_and_known_names():
    reg = get_host().attacks
    with pytest.raises(UnknownNameError) as info:
        reg.get("errmin-pdg")
    msg = str(info.value)
    assert "Did you mean 'errmin-pgd'" in msg
    for name in reg.names():
        assert name in msg
    assert info.value.known == reg.names() and info.value.name == "errmin-pdg"


def test_unknown_name_without_close_match_still_lists_names():
    with pytest.raises(UnknownNameError) as info:
        get_host().defenses.get("zzzzzzzz")
    assert "Did you mean" not in str(info.value)
    assert "cutmix" in str(info.value) and "none" in str(info.value)


def test_natural_sort():
    names = ["resnet101", "resnet18", "vgg11", "resnet50", "vgg2", "a10b2", "a10b10", "a9b1"]
    reg = _registry(*names)
    assert reg.names() == ["a9b1", "a10b2", "a10b10", "resnet18", "resnet50", "resnet101", "vgg2", "vgg11"]
    assert sorted(["x10", "x9", "x100"], key=natural_key) == ["x9", "x10", "x100"]


def test_list_pattern_is_fnmatch_and_sorted():
    reg = _registry("errmin-pgd", "errmax", "random", "err10", "err9")
    assert [e.name for e in reg.list("err*")] == ["err9", "err10", "errmax", "errmin-pgd"]
    assert [e.name for e in reg.list("*pgd")] == ["errmin-pgd"]
    assert reg.list("nothing*") == []
    assert len(reg) == 5
    assert reg.get("random").summary == "The random one."


def test_argument_victims_resolve():
    host = get_host()
    entry, arg = host.victims.resolve("timm:resnet18")
    assert entry.name == "timm" and arg == "resnet18"
    assert host.victims.resolve("timm:vit_tiny_patch16_224")[1] == "vit_tiny_patch16_224"
    assert host.victims.resolve("resnet18") == (host.victims.get("resnet18"), None)
    assert "timm:resnet18" in host.victims
    for bad in ("timm", "timm:", "resnet18:x", "nope:resnet18"):
        assert bad not in host.victims
        with pytest.raises(UnknownNameError) as info:
            host.victims.resolve(bad)
        assert "timm:<name>" in str(info.value)


@pytest.mark.parametrize("bad", ["ErrMin", "err_min", "-err", "err-", "err--min", "", "err min", "é", None, 3])
def test_names_must_be_kebab_case(bad):
    reg = Registry("attack", Attack)
    cls = type("X", (Attack,), {"name": bad})
    with pytest.raises(ValueError, match="kebab-case"):
        reg.add(cls)
    assert len(reg) == 0


@pytest.mark.parametrize("good", ["errmin-pgd", "a", "cnn-tiny", "resnet18", "v1.2", "x9-y"])
def test_kebab_case_names_accepted(good):
    reg = Registry("attack", Attack)
    reg.add(type("X", (Attack,), {"name": good}))
    assert reg.names() == [good]


def test_registry_checks_the_base_class_and_clashes():
    reg = Registry("attack", Attack)
    with pytest.raises(TypeError, match="must subclass Attack"):
        reg.add(type("D", (Defense,), {"name": "d"}))
    first = type("A", (Attack,), {"name": "a"})
    reg.add(first, plugin="one")
    reg.add(first, plugin="one")  # the same class twice is fine
    with pytest.raises(ValueError, match="clashes"):
        reg.add(type("A2", (Attack,), {"name": "a"}), plugin="two")
    assert reg.get("a").cls is first and reg.get("a").plugin == "one"
