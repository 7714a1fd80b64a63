"""Published numbers (``leaderboards/reported.toml``, ``uebench.reported``): the committed file is
valid and transcribes the papers' tables exactly; a record matches exactly its configuration —
never a variant (a patch, another ε, M, poison rate, dropped samples, victim, defense option or
protocol); a record of the ``paper`` scale is never measured by ``cpu`` rows, only shown beside
them as another scale; a bad file is an error naming the record.
"""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from conftest import REPO
from uebench.cellkey import config_key
from uebench.imperceptibility import COLUMNS as IMPERCEPTIBILITY
from uebench.options import build_options, options_dict
from uebench.plugins import get_host
from uebench.protocols import PROTOCOLS
from uebench.reported import Reported, ReportedError, load, most_reported, resolved_options
from uebench.results import COLUMNS
from uebench.stats import cell_stats, current_version, labelled

COMMITTED = REPO / "leaderboards" / "reported.toml"
SHARED = REPO.parent / "shared"
HUANG = "Huang et al. 2021"


@pytest.fixture(scope="module")
def reported() -> Reported:
    return Reported.load(COMMITTED)  # every name checked against the registry, every option built and resolved


def _row(i, attack="none", options=None, defense="none", defense_options=None, *, protocol="paper", victim="resnet18",
         dataset="cifar10", eps=8 / 255, rate=1.0, drop=False, quantized=True, seed=0, acc=0.5) -> dict:
    """A full results row of ``attack -o options`` as ``uebench run`` would write it at ``protocol``:
    its options resolved there (``resolved_options``), the defense's with its defaults, nested
    under its name."""
    attack_options = resolved_options(attack, options or {}, protocol, dataset, eps) if attack != "none" else {}
    cls = get_host().defenses.get(defense).cls
    defense_options = options_dict(build_options(cls.Options, defense_options or {}, defense))
    values = {
        "run_id": f"run-{i}", "cell_key": "", "timestamp": "2026-01-01T00:00:00+00:00", "uebench_version": "0.1.0",
        "git_sha": "0123456789ab", "protocol": protocol, "protocol_version": PROTOCOLS[protocol].version, "dataset": dataset,
        "attack": attack, "attack_options": json.dumps(attack_options, sort_keys=True), "eps": eps, "norm": "linf",
        "poison_rate": rate, "poison_classes": "", "drop_poisoned": drop, "quantized": quantized, "defense": defense,
        "defense_options": json.dumps({defense: defense_options}), "victim": victim, "victim_options": "{}",
        "epochs": 2, "seed": seed, "final_test_acc": acc, "selected_epoch": 2, "oracle_best_test_acc": acc,
        "oracle_best_epoch": 2, "final_train_acc": 0.99, "train_size": 1000, "test_size": 500, "craft_seconds": 1.5,
        "train_seconds": 3.25, "device": "cpu:1threads", "precision": "fp32", "noise_key": "", "noise_cached": False,
        "craft_stop_reason": "", "craft_iterations": "", "craft_final_error": "", "compile": "",
        "data_digest": "0123456789abcdef", "torch_version": "2.14.1", "threads": 1, "l0_max_delta": "", "inputs": "",
        **{column: "" for column in IMPERCEPTIBILITY},
    }
    values["config_key"] = config_key(values)
    return {column: values[column] for column in COLUMNS}


def _shown(reported, row) -> float | None:
    """The published number a table cell of ``row`` shows (None: none)."""
    record = reported.for_cell(row["protocol"], row["dataset"], row["victim"], None, row)
    return None if record is None else record.value


# --- the committed file ---------------------------------------------------------------------------


def test_the_committed_file_loads_and_every_record_is_valid(reported):
    assert len(reported) == len(load(COMMITTED, check_names=False)) == 144
    by_source = pd.Series([r.source for r in reported]).value_counts().to_dict()
    assert by_source == {f"{HUANG}, Table 1": 64, f"{HUANG}, Table 2": 20, f"{HUANG}, Table 3": 9, f"{HUANG}, Table 5": 12,
                         "Liu et al. 2023 (ISS), results table": 39}
    for record in reported:
        assert record.protocol == "paper" and record.url.startswith("https://arxiv.org/abs/"), record.where
        assert 0 <= record.value <= 100 and record.published_as, record.where
        if not record.matchable:
            assert record.why_unmatched, record.where
    # what uebench cannot measure is marked, never matched: Fast AutoAugment, and four poisons it has no attack for
    assert {r.attack for r in reported if r.via == "from-file"} == {"deepconfuse", "ntga", "shortcutgen", "tensorclog"}
    assert {r.defense for r in reported if r.unmatched} == {"fast-autoaugment"}
    assert all("Fast AutoAugment" in r.unmatched for r in reported if r.defense == "fast-autoaugment")


def test_the_numbers_of_the_old_hard_coded_dict_are_in_the_file_unchanged(reported):
    """``uebench.leaderboard.PAPER_REPORTED`` held these (PAPER.md Tables 1 and 3)."""
    old = {("none", None, "none"): 94.95,
           ("errmin-pgd", "sample", "none"): 19.93, ("errmin-pgd", "class", "none"): 16.42,
           ("errmin-pgd", "sample", "cutmix"): 22.40, ("errmin-pgd", "class", "cutmix"): 16.19,
           ("errmin-pgd", "sample", "cutout"): 19.30, ("errmin-pgd", "class", "cutout"): 14.62,
           ("errmin-pgd", "sample", "mixup"): 58.51, ("errmin-pgd", "class", "mixup"): 17.63}
    for (attack, form, defense), value in old.items():
        found = [r for r in reported if r.source.startswith(HUANG) and r.attack == attack and r.defense == defense
                 and r.options.get("form") == form and len(r.options) == (1 if form else 0) and r.victim == "resnet18"
                 and r.dataset == "cifar10" and r.scope == (1.0, "", False)]
        assert value in [r.value for r in found], (attack, form, defense)
        assert most_reported(found).value == value
        if defense != "none":  # Table 3's cell, matched exactly by a row of that configuration
            options = {"size": 16} if defense == "cutout" else {}
            row = _row(0, attack, {"form": form}, defense, options)
            assert _shown(reported, row) == value


def _table(text: str, heading: str) -> list[list[str]]:
    """The body rows of the first markdown table after ``heading``, split into cells."""
    after = text[text.index(heading):]
    rows = []
    for line in after.splitlines()[1:]:
        if line.startswith("|"):
            if not set(line) <= set("|-: "):
                rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[1:]  # without the header


def _published(reported, source: str) -> dict[str, str]:
    return {r.published_as: f"{r.value:.2f}" for r in reported if r.source == source}


@pytest.mark.skipif(not (SHARED / "PAPER.md").is_file(), reason="../shared/PAPER.md is not here")
def test_every_number_of_the_seed_papers_tables_is_transcribed_exactly(reported):
    text = (SHARED / "PAPER.md").read_text()
    expected = {}
    for noise, model, *values in _table(text, "## Table 1"):
        for k, dataset in enumerate(("SVHN", "C10", "C100", "IN-sub")):
            expected[f"{noise} · {model} · {dataset} Dc"] = values[2 * k]
            expected[f"{noise} · {model} · {dataset} Du"] = values[2 * k + 1]
    assert _published(reported, f"{HUANG}, Table 1") == expected

    expected = {}
    for noise, zero, *mixed, full in _table(text, "## Table 2"):
        expected[f"{noise} · 0%"], expected[f"{noise} · 100%"] = zero, full
        for pct, cell in zip(("20%", "40%", "60%", "80%"), mixed, strict=True):
            expected[f"{noise} · {pct} Du+Dc"], expected[f"{noise} · {pct} Dc"] = (v.strip() for v in cell.split("/"))
    assert _published(reported, f"{HUANG}, Table 2") == expected

    expected = {"clean baseline": re.search(r"clean baseline (\d+\.\d\d)", text).group(1)}
    for noise, *values in _table(text, "## Table 3"):
        for name, value in zip(("Cutout (16px)", "Mixup", "CutMix", "Fast AutoAugment"), values, strict=True):
            expected[f"{noise} · {name}"] = value
    assert _published(reported, f"{HUANG}, Table 3") == expected

    expected = {}
    for training, *values in _table(text, "## Table 5"):
        for name, value in zip(("patch 8×8", "patch 16×16", "patch 24×24", "patch 32×32", "Δc1 ∨ Δc2", "Δc1 + Δu"), values,
                               strict=True):
            expected[f"{name} · {training}"] = value
    assert _published(reported, f"{HUANG}, Table 5") == expected


@pytest.mark.skipif(not (SHARED / "FIELD.md").is_file(), reason="../shared/FIELD.md is not here")
def test_every_number_of_the_iss_table_is_transcribed_exactly(reported):
    expected = {}
    for poison, *values in _table((SHARED / "FIELD.md").read_text(), "ISS table"):
        for defense, value in zip(("none", "grayscale", "JPEG-10"), values, strict=True):
            expected[f"{poison} · {defense}"] = value
    assert _published(reported, "Liu et al. 2023 (ISS), results table") == expected


def test_records_name_uebench_configurations(reported):
    """Spot checks of how the tables map onto uebench's names and options."""
    def one(source, published_as):
        (record,) = [r for r in reported if r.source.endswith(source) and r.published_as == published_as]
        return record

    assert one("Table 1", "Δc · DN-121 · IN-sub Du").eps == pytest.approx(16 / 255)  # ε = 16/255 on the ImageNet subset
    assert one("Table 1", "Δc · DN-121 · IN-sub Du").victim == "densenet121"
    dc = one("Table 2", "Δs · 60% Dc")
    assert (dc.attack, dc.options, dc.scope) == ("errmin-pgd", {"form": "sample"}, (0.6, "", True))
    assert one("Table 5", "patch 24×24 · standard training").options == {"form": "class", "patch": 24}
    assert one("Table 5", "Δc1 ∨ Δc2 · standard training").attack == "mix-or"
    em = one("results table", "EM · JPEG-10")
    assert (em.attack, em.options, em.defense, em.defense_options) == ("errmin-pgd", {"form": "sample"}, "jpeg", {"quality": 10})
    assert one("results table", "LSP (L2 = 1.0) · none").options == {"radius": 1.0}
    assert one("results table", "OPS (L0 = 1) · none").plugin == "uebench-ops"


# --- matching -----------------------------------------------------------------------------------


def test_a_record_matches_exactly_its_configuration_and_no_variant(reported):
    exact = _row(0, "errmin-pgd", {"form": "class"})
    assert _shown(reported, exact) == 16.42  # Table 1 (and Table 2's 100%)
    assert _shown(reported, _row(1, "errmin-pgd", {"form": "class", "patch": 8})) == 87.23  # Table 5, not 16.42
    assert _shown(reported, _row(2, "errmin-pgd", {"form": "class", "patch": 12})) is None
    assert _shown(reported, _row(3, "errmin-pgd", {"form": "class", "model_steps": 20})) is None  # another M
    assert _shown(reported, _row(4, "errmin-pgd", {"form": "class", "max_iters": 50})) is None
    assert _shown(reported, _row(5, "errmin-pgd", {"form": "class"}, eps=16 / 255)) is None  # another ε
    assert _shown(reported, _row(6, "errmin-pgd", {"form": "class"}, quantized=False)) is None  # float noise
    assert _shown(reported, _row(7, "errmin-pgd", {"form": "class"}, rate=0.8)) == 87.23  # Table 2, 80% Du+Dc
    assert _shown(reported, _row(8, "errmin-pgd", {"form": "class"}, rate=0.8, drop=True)) == 84.30  # Table 2, Dc
    assert _shown(reported, _row(9, "errmin-pgd", {"form": "class"}, rate=0.5)) is None  # a rate the paper has not
    assert _shown(reported, _row(10, "errmin-pgd", {"form": "class"}, victim="vgg11")) == 16.93
    assert _shown(reported, _row(11, "errmin-pgd", {"form": "class"}, victim="cnn-small")) is None
    assert _shown(reported, _row(12, "errmin-pgd", {"form": "class"}, dataset="cifar100")) == 3.95
    assert _shown(reported, _row(13, "errmin-pgd", {"form": "class"}, "cutmix", {"alpha": 1.0, "prob": 1.0})) == 16.19
    assert _shown(reported, _row(14, "errmin-pgd", {"form": "class"}, "cutmix", {"alpha": 0.5, "prob": 1.0})) is None
    assert _shown(reported, _row(15, "errmin-pgd", {"form": "sample"}, "jpeg", {"quality": 10})) == 81.50  # ISS
    assert _shown(reported, _row(16, "errmin-pgd", {"form": "sample"}, "jpeg", {"quality": 20})) is None
    # Fast AutoAugment is not uebench's autoaugment: never matched
    assert _shown(reported, _row(17, "errmin-pgd", {"form": "class"}, "autoaugment", {"policy": "cifar10"})) is None
    # ISS's LSP is L2 = 1.0: uebench's default radius (1.304) is another configuration
    assert _shown(reported, _row(18, "lsp", {"radius": 1.0})) == 19.07
    assert _shown(reported, _row(19, "lsp")) is None
    # the same configuration at another protocol is not the published number's measurement
    cpu = _row(20, "errmin-pgd", {"form": "class"}, protocol="cpu", victim="cnn-small")
    assert _shown(reported, cpu) is None
    assert reported.matches("cpu", "cifar10", "cnn-small", None, cpu) == ()


def test_several_records_of_one_cell_show_the_value_published_most_often(reported):
    clean = _row(0)
    values = sorted(r.value for r in reported.matches("paper", "cifar10", "resnet18", None, clean))
    assert values == [94.68, 94.77, 94.95, 94.95, 94.95, 94.95]  # ISS; Table 1 twice, Table 2 twice, Table 3
    assert _shown(reported, clean) == 94.95
    # ε does not shape a clean run: the clean record matches a clean row of any ε
    assert _shown(reported, _row(1, eps=16 / 255)) == 94.95


def test_the_table_group_key_gives_the_scope(reported):
    row = _row(0, "errmin-pgd", {"form": "sample"})
    assert reported.for_cell("paper", "cifar10", "resnet18", ("cifar10", "resnet18", 0.2, "", False), row).value == 94.38
    assert reported.for_cell("paper", "cifar10", "resnet18", ("cifar10", "resnet18", 0.2, "", True), row).value == 93.75


def test_a_paper_record_is_never_measured_by_cpu_rows_only_shown_as_another_scale(reported):
    frame = pd.DataFrame([
        _row(0, "errmin-pgd", {"form": "class"}, protocol="cpu", victim="cnn-small", acc=0.20, seed=0),
        _row(1, "errmin-pgd", {"form": "class"}, protocol="cpu", victim="cnn-small", acc=0.26, seed=1),
        _row(2, "errmin-pgd", {"form": "class", "patch": 8}, protocol="cpu", victim="cnn-small", acc=0.6),
        _row(3, protocol="cpu", victim="cnn-small", acc=0.66),
    ])
    rows = labelled(current_version(frame))
    comparisons = reported.comparison(rows)
    assert len(comparisons) == len(reported)
    assert all(c.measured == () for c in comparisons)  # nothing measured at the paper scale
    (table1,) = [c for c in comparisons if c.record.source.endswith("Table 1") and c.record.published_as == "Δc · RN-18 · C10 Du"]
    (other,) = table1.other_scales
    stats = cell_stats(rows[(rows["attack_label"] == other.label) & (rows["defense"] == "none")]).iloc[0]
    assert (other.protocol, other.victim, other.n) == ("cpu", "cnn-small", 2)
    assert (other.mean, other.sd, other.ci_low, other.ci_high) == pytest.approx(
        (stats["mean"], stats["sd"], stats["ci_low"], stats["ci_high"]))
    assert other.mean == pytest.approx(23.0)
    assert table1.text.startswith("published 16.42 (Huang et al. 2021, Table 1; resnet18, paper) · not measured at this "
                                  "scale yet · at the cpu scale (cnn-small): 23.00 ± 4.24 (n=2")
    (patch8,) = [c for c in comparisons if c.record.published_as == "patch 8×8 · standard training"]
    assert [m.mean for m in patch8.other_scales] == pytest.approx([60.0])  # the patch row, not the full-image one
    (faa,) = [c for c in comparisons if c.record.published_as == "patch 8×8 · Fast AutoAugment"]
    assert faa.other_scales == () and "cannot measure" in faa.text
    # the victim at another scale: the record's or that protocol's own, never a third
    vgg = reported.comparison(labelled(pd.DataFrame([_row(0, "errmin-pgd", {"form": "class"}, protocol="cpu",
                                                            victim="resnet18")])))
    assert [c.record.victim for c in vgg if c.other_scales] == ["resnet18", "resnet18"]  # Tables 1 and 2, not VGG-11's


def test_comparison_at_the_records_own_scale(reported):
    frame = pd.DataFrame([_row(0, "errmin-pgd", {"form": "sample"}, acc=0.20), _row(1, "errmin-pgd", {"form": "sample"},
                                                                                    acc=0.22, seed=1)])
    (table1,) = [c for c in reported.comparison(frame) if c.record.published_as == "Δs · RN-18 · C10 Du"]
    (measured,) = table1.measured
    assert (measured.protocol, measured.victim, measured.n, measured.mean) == ("paper", "resnet18", 2, pytest.approx(21.0))
    assert table1.other_scales == ()
    assert table1.text.startswith("published 19.93 (Huang et al. 2021, Table 1; resnet18, paper) · measured 21.00 ± 1.41")


# --- bad files ------------------------------------------------------------------------------------

GOOD = """
[[reported]]
source = "Huang et al. 2021, Table 1"
value = 16.42
dataset = "cifar10"
victim = "resnet18"
protocol = "paper"
attack = "errmin-pgd"
options = {form = "class"}
"""


@pytest.mark.parametrize(("second", "message"), [
    ('source = "X"\nvalue = 1.0\ndataset = "cifar10"\nvictim = "resnet18"\nprotocol = "paper"\nattack = "none"\ncolour = "red"',
     "unknown key(s) 'colour'"),
    ('source = "X"\nvalue = 1.0\ndataset = "cifar10"\nvictim = "resnet18"\nattack = "none"', "missing protocol"),
    ('source = "X"\nvalue = "16.42"\ndataset = "cifar10"\nvictim = "resnet18"\nprotocol = "paper"\nattack = "none"',
     "value must be a number"),
    ('source = "X"\nvalue = true\ndataset = "cifar10"\nvictim = "resnet18"\nprotocol = "paper"\nattack = "none"',
     "value must be a number"),
    ('source = "X"\nvalue = 160.0\ndataset = "cifar10"\nvictim = "resnet18"\nprotocol = "paper"\nattack = "none"',
     "value must be a number of percent in [0, 100]"),
    ('source = "X"\nvalue = 1.0\ndataset = "cifar10"\nvictim = "resnet18"\nprotocol = "paper"\nattack = "none"\n'
     'poison_rate = 2.0', "poison_rate must be a number in [0, 1]"),
    ('source = "X"\nvalue = 1.0\ndataset = "cifar10"\nvictim = "resnet18"\nprotocol = "paper"\nattack = "none"\n'
     'eps = "eight"', "eps must be in (0, 1]"),
    ('source = "X"\nvalue = 1.0\ndataset = "cifar10"\nvictim = "resnet18"\nprotocol = "paper"\nattack = "none"\n'
     'options = "form=class"', "options must be a table"),
    ('source = "X"\nvalue = 1.0\ndataset = "cifar10"\nvictim = "resnet18"\nprotocol = "paper"\nattack = "none"\n'
     'via = "ftp"', "via must be one of from-file"),
])
def test_a_malformed_record_is_an_error_naming_it(tmp_path, second, message):
    path = tmp_path / "reported.toml"
    path.write_text(GOOD + "\n[[reported]]\n" + second + "\n")
    with pytest.raises(ReportedError) as caught:
        load(path, check_names=False)
    assert f"{path}: record 2 (X)" in str(caught.value) and message in str(caught.value)


@pytest.mark.parametrize(("fields", "message"), [
    ('attack = "errmin-pdg"', "unknown attack 'errmin-pdg'. Did you mean 'errmin-pgd'"),
    ('attack = "errmin-pgd"\ndefense = "cutmx"', "unknown defense 'cutmx'"),
    ('attack = "errmin-pgd"\noptions = {form = "class", pach = 8}', "has no option 'pach'"),
    ('attack = "errmin-pgd"\noptions = {form = "diagonal"}', "option 'form' of attack 'errmin-pgd' must be one of"),
    ('attack = "errmin-pgd"\ndefense = "jpeg"\ndefense_options = {quality = "high"}', "option 'quality' expects int"),
    ('attack = "none"\nvictim = "resnet19"', "unknown victim 'resnet19'"),
    ('attack = "none"\nprotocol = "gpu"', "unknown protocol 'gpu'"),
    ('attack = "none"\ndataset = "cifar11"', "unknown dataset 'cifar11'"),
    ('attack = "rem"\nvia = "from-file"', "via = 'from-file', but uebench has attack 'rem'"),
])
def test_an_unknown_name_or_option_is_an_error_naming_the_record(tmp_path, fields, message):
    base = {"source": '"Y, Table 9"', "value": "1.0", "dataset": '"cifar10"', "victim": '"resnet18"', "protocol": '"paper"'}
    for line in fields.splitlines():
        key, _, value = line.partition(" = ")
        base[key] = value
    path = tmp_path / "reported.toml"
    path.write_text(GOOD + "\n[[reported]]\n" + "\n".join(f"{k} = {v}" for k, v in base.items()) + "\n")
    assert len(load(path, check_names=False)) == 2  # the structure is fine: only the registry knows
    with pytest.raises(ReportedError) as caught:
        load(path)
    assert f"{path}: record 2 (Y, Table 9)" in str(caught.value) and message in str(caught.value)


def test_what_uebench_cannot_measure_is_allowed_when_marked(tmp_path):
    path = tmp_path / "reported.toml"
    path.write_text(GOOD + """
[[reported]]
source = "Z"
value = 16.30
dataset = "cifar10"
victim = "resnet18"
protocol = "paper"
attack = "deepconfuse"
via = "from-file"
defense = "grayscale"

[[reported]]
source = "Z"
value = 22.89
dataset = "cifar10"
victim = "resnet18"
protocol = "paper"
attack = "errmin-pgd"
options = {form = "class"}
defense = "fast-autoaugment"
unmatched = "not uebench's autoaugment"

[[reported]]
source = "Z"
value = 1.0
dataset = "cifar10"
victim = "resnet18"
protocol = "paper"
attack = "some-plugin-attack"
plugin = "uebench-some-plugin"
""")
    records = Reported.load(path)
    assert [r.matchable for r in records] == [True, False, False, True]
    assert "from-file" in records.records[1].why_unmatched
    row = _row(0, "errmin-pgd", {"form": "class"}, "autoaugment", {"policy": "cifar10"})
    assert records.for_cell("paper", "cifar10", "resnet18", None, row) is None


def test_a_file_that_is_not_toml_or_not_records_is_an_error(tmp_path):
    path = tmp_path / "reported.toml"
    path.write_text("[[reported]\n")
    with pytest.raises(ReportedError, match="not valid TOML"):
        load(path)
    path.write_text("records = 1\n")
    with pytest.raises(ReportedError, match="unknown top-level key"):
        load(path)
    with pytest.raises(ReportedError, match="does not exist"):
        load(tmp_path / "missing.toml")
