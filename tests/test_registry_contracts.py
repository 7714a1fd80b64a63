"""Built-ins register through the hooks, and every registered plugin honours its kind's contract.

The contract tests are parametrised over the registries themselves, so a newly registered
attack/defense/victim/dataset is checked without touching this file.
"""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

from conftest import make_ctx, synthetic_batch
from uebench import hookspecs, plugins
from uebench.attacks.base import Attack
from uebench.datasets.base import Dataset, ImageData, read_layout, write_layout
from uebench.defenses.base import Defense
from uebench.noise import FORMS, NORMS, Noise, budget_violation
from uebench.options import describe_options
from uebench.plugins import BUILTIN_PLUGINS, KINDS, get_host
from uebench.protocols import get_protocol
from uebench.registry import NAME_RE
from uebench.victims.base import Victim

# too slow to build and run on 2 CPU cores in a unit test (or needs timm model names)
# a victim that takes an argument is built with this one (timm: a small model timm always has)
VICTIM_ARGUMENTS = {"timm": "timm:resnet18"}

EXPECTED_BUILTINS = {
    "attack": {"none": "uebench.attacks.baselines", "random": "uebench.attacks.baselines",
               "errmin-pgd": "uebench.attacks.errmin_pgd", "errmin-adam": "uebench.attacks.errmin_adam",
               "from-file": "uebench.attacks.from_file", "errmax-pgd": "uebench.attacks.errmax",
               "errmax-universal": "uebench.attacks.errmax", "mix-or": "uebench.attacks.mixtures",
               "mix-add": "uebench.attacks.mixtures", "lsp": "uebench.attacks.synthetic", "ar": "uebench.attacks.synthetic",
               "cuda": "uebench.attacks.cuda", "hypo": "uebench.attacks.source_poisons", "tap": "uebench.attacks.source_poisons",
               "sep": "uebench.attacks.source_poisons", "rem": "uebench.attacks.rem"},
    "defense": {"none": "uebench.defenses.standard", "cutmix": "uebench.defenses.cutmix", "mixup": "uebench.defenses.mixup",
                "cutout": "uebench.defenses.cutout", "autoaugment": "uebench.defenses.autoaugment",
                "adv-train": "uebench.defenses.adversarial", "early-stop": "uebench.defenses.early_stop",
                "jpeg": "uebench.defenses.squeeze", "grayscale": "uebench.defenses.squeeze",
                "bit-depth": "uebench.defenses.squeeze", "ueraser": "uebench.defenses.ueraser",
                "orthogonal-projection": "uebench.defenses.orthogonal_projection", "gaussian": "uebench.defenses.gaussian",
                "gaussian-noise": "uebench.defenses.gaussian"},
    "victim": {"resnet18": "uebench.victims.cifar", "resnet50": "uebench.victims.cifar",
               "vgg11": "uebench.victims.cifar", "densenet121": "uebench.victims.cifar",
               "cnn-small": "uebench.victims.cifar", "cnn-tiny": "uebench.victims.cifar",
               "timm": "uebench.victims.timm_victims"},
    "dataset": {"cifar10": "uebench.datasets.cifar10", "cifar100": "uebench.datasets.cifar100",
                "svhn": "uebench.datasets.svhn", "imagenet-subset": "uebench.datasets.imagenet_subset"},
}


def _names(kind: str) -> list[str]:
    """Registry names at collection time (the host is reset again right after)."""
    plugins.reset()
    try:
        return get_host().registries[kind].names()
    finally:
        plugins.reset()


ATTACKS, DEFENSES, VICTIMS, DATASETS = (_names(k) for k in ("attack", "defense", "victim", "dataset"))


# --- hooks --------------------------------------------------------------------------------


def _hookspecs():
    return {
        name: fn for name, fn in vars(hookspecs).items()
        if inspect.isfunction(fn) and hasattr(fn, f"{hookspecs.PROJECT}_spec")
    }


def test_every_hookspec_has_a_docstring():
    specs = _hookspecs()
    assert set(KINDS) | {"register_commands"} <= set(specs)
    for name, fn in specs.items():
        doc = inspect.getdoc(fn)
        assert doc and len(doc.strip()) > 20, f"hook {name} has no docstring"


def test_every_hookspec_takes_one_argument():
    for name, fn in _hookspecs().items():
        assert len(inspect.signature(fn).parameters) == 1, name


def test_registry_kind_hooks_are_known_to_the_plugin_manager():
    host = get_host()
    for hook in KINDS:
        assert hasattr(host.pm.hook, hook)
        assert host.pm.hook.__dict__[hook].spec is not None


# --- built-ins ----------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(EXPECTED_BUILTINS))
def test_builtins_are_registered_with_their_plugin_name(kind):
    registry = get_host().registries[kind]
    for name, module in EXPECTED_BUILTINS[kind].items():
        entry = registry.get(name) if name != "timm" else registry.resolve("timm:resnet18")[0]
        assert entry.name == name
        assert entry.plugin == module
        assert module in BUILTIN_PLUGINS


def test_builtin_plugins_load_without_errors_and_say_what_they_provide():
    host = get_host()
    infos = {i.name: i for i in host.infos}
    for module in BUILTIN_PLUGINS:
        info = infos[module]
        assert info.source == "builtin"
        assert info.error is None
        assert info.module == module
        assert info.provides, f"{module} registered nothing"
    provided = {}
    for module in BUILTIN_PLUGINS:
        for kind, names in infos[module].provides.items():
            for name in names:
                provided.setdefault(kind, {})[name] = module
    for kind, expected in EXPECTED_BUILTINS.items():
        for name, module in expected.items():
            assert provided[kind][name] == module


def test_every_registry_entry_names_a_loaded_plugin():
    host = get_host()
    loaded = {i.name for i in host.infos if not i.error}
    for registry in host.registries.values():
        for entry in registry.list():
            assert entry.plugin in loaded


def test_get_host_is_lazy_and_cached_until_reset():
    a = get_host()
    assert get_host() is a
    plugins.reset()
    assert get_host() is not a


# --- attacks ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_contract_declaration(name):
    entry = get_host().attacks.get(name)
    cls = entry.cls
    assert issubclass(cls, Attack)
    assert NAME_RE.match(cls.name) and cls.name == name
    assert entry.summary, f"attack {name} needs a docstring (its summary line)"
    assert cls.Options is None or (isinstance(cls.Options, type) and dataclasses.is_dataclass(cls.Options))
    assert isinstance(cls.cacheable, bool)
    describe_options(cls.Options)  # every option is describable (types resolve)
    attack = cls()
    resolved = attack.resolve(get_protocol("smoke"), 8 / 255)
    if cls.Options is None:
        assert resolved is None
    else:
        assert isinstance(resolved, cls.Options)
        assert resolved is not attack.options  # resolve returns a copy
        for f in dataclasses.fields(resolved):
            if f.name not in cls.inapplicable_when_none:
                assert getattr(resolved, f.name) is not None, f"{name}: option {f.name} left unresolved"


@pytest.mark.parametrize("name", ATTACKS)
def test_attack_contract_craft(name, tmp_path):
    """Every attack crafts noise of the right shape inside the ε-ball (or None = clean), poisoned
    pixels stay in [0, 1], and the same seed gives the same noise bytes on CPU."""
    from uebench.poison import release

    cls = get_host().attacks.get(name).cls

    def craft():
        ctx = make_ctx(n_per_class=2)
        attack = cls()
        if name == "from-file":  # reads noise made elsewhere: give it a file (tests/test_from_file.py covers its formats)
            delta = torch.empty(len(ctx.y), *ctx.x.shape[1:]).uniform_(-ctx.eps, ctx.eps,
                                                                       generator=torch.Generator().manual_seed(0))
            torch.save(delta, tmp_path / "perturbation.pt")
            attack = cls(cls.Options(path=str(tmp_path / "perturbation.pt")))
        return ctx, attack.craft(ctx)

    ctx, noise = craft()
    if noise is None:
        return
    assert isinstance(noise, Noise)
    assert noise.form in FORMS
    rows = len(ctx.y) if noise.form == "sample" else ctx.num_classes
    assert tuple(noise.delta.shape) == (rows, *ctx.x.shape[1:])
    assert noise.delta.dtype == torch.float32
    assert torch.isfinite(noise.delta).all()
    assert noise.norm in NORMS
    assert budget_violation(noise.delta, noise.eps, noise.norm, noise.pixels, noise.radius) is None
    if noise.norm == "linf":  # an L∞ attack spends the cell's ε, no more
        assert noise.delta.abs().max().item() <= ctx.eps + 1e-6
        assert noise.eps == pytest.approx(ctx.eps)
    else:  # an L0, L2 or transform attack ignores ε: its own budget, values bounded by the pixel range
        assert noise.eps <= 1 and noise.delta.abs().max().item() <= noise.eps + 1e-6
        assert (noise.pixels or 0) >= (noise.norm == "l0") and (noise.radius or 0) >= 0
    poisoned = release(ctx.x, ctx.y, noise, quantize=False)
    assert 0 <= poisoned.min() and poisoned.max() <= 1
    _, again = craft()
    assert torch.equal(noise.delta, again.delta)  # same seed, same bytes


# --- defenses -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DEFENSES)
def test_defense_contract(name):
    """Every image transform keeps shape, dtype and the [0, 1] range; targets stay distributions;
    the loss is a finite scalar the model can learn from; ``prepare`` keeps the data's form."""
    from uebench.train import TrainData

    entry = get_host().defenses.get(name)
    cls = entry.cls
    assert issubclass(cls, Defense) and cls.name == name
    assert entry.summary
    assert cls.Options is None or dataclasses.is_dataclass(cls.Options)
    defense = cls(cls.Options() if cls.Options else None)
    x = torch.rand(8, 3, 32, 32)
    y = torch.arange(8) % 10
    target = torch.nn.functional.one_hot(y, 10).float()
    for seed in range(5):
        xa, ta = defense.augment(x, target, torch.Generator().manual_seed(seed))
        assert xa.shape == x.shape and ta.shape == target.shape
        assert xa.dtype == x.dtype
        assert 0 <= xa.min() and xa.max() <= 1
        assert (ta >= 0).all()
        assert torch.allclose(ta.sum(1), torch.ones(8), atol=1e-6)
    test = defense.eval_images(x)
    assert test.shape == x.shape and test.dtype == x.dtype and 0 <= test.min() and test.max() <= 1
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 10))
    loss, logits = defense.loss(model, xa, ta, torch.Generator().manual_seed(0))
    assert logits.shape == (8, 10)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()  # differentiable w.r.t. the model
    images, labels = synthetic_batch(n_per_class=4, num_classes=10)
    for released in (images, images.float() / 255):
        data = defense.prepare(TrainData(released, labels, 10, x_clean=images), torch.Generator().manual_seed(0))
        assert isinstance(data, TrainData) and data.x.shape[1:] == images.shape[1:] and len(data.x) == len(data.y) > 0
        assert data.x.dtype in (torch.uint8, torch.float32)
        assert torch.isfinite(data.x.float()).all()
        # a defense may declare that its prepare leaves the pixel range (orthogonal-projection's x - QQᵀx)
        assert data.x.dtype == torch.uint8 or not cls.keeps_pixel_range or (0 <= data.x.min() and data.x.max() <= 1)


def test_cutmix_mixes_pixels_and_labels_consistently():
    """The label weight of the partner equals the pasted area: check it pixel by pixel."""
    cls = get_host().defenses.get("cutmix").cls
    defense = cls(cls.Options(alpha=1.0, prob=1.0))
    n = 6
    x = torch.arange(n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 3, 32, 32).clone()
    target = torch.nn.functional.one_hot(torch.arange(n), 10).float()
    mixed_any = False
    for seed in range(10):
        xa, ta = defense.augment(x, target, torch.Generator().manual_seed(seed))
        for i in range(n):
            own = (xa[i] == i).float().mean().item()  # fraction of pixels still the image's own
            assert ta[i, i].item() == pytest.approx(own, abs=1e-6)
            assert ta[i].sum().item() == pytest.approx(1.0)
            mixed_any |= own < 1.0
    assert mixed_any


# --- victims ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", VICTIMS)
def test_victim_declaration(name):
    entry = get_host().victims._entries[name]
    assert issubclass(entry.cls, Victim) and entry.cls.name == name
    assert entry.summary
    assert entry.cls.build is not Victim.build, f"victim {name} does not implement build"
    assert entry.cls.Options is None or dataclasses.is_dataclass(entry.cls.Options)


@pytest.mark.parametrize("name", VICTIMS)
def test_every_victim_builds_and_runs_forward_and_backward_at_32px(name):
    """Every registered victim (timm through one of its models): a 32×32 batch goes forward in
    train mode (batch norm included) and backward; logits and gradients are finite."""
    entry, arg = get_host().victims.resolve(VICTIM_ARGUMENTS.get(name, name))
    victim = entry.cls(entry.cls.Options() if entry.cls.Options else None, arg)
    torch.manual_seed(0)
    model = victim.build(10, (3, 32, 32))
    assert isinstance(model, nn.Module)
    model.train()
    x = torch.rand(2, 3, 32, 32, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    nn.functional.cross_entropy(out, torch.tensor([1, 7])).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert x.grad is not None and x.grad.abs().sum() > 0  # what crafting differentiates
    assert victim.label == VICTIM_ARGUMENTS.get(name, name)


def test_timm_victim_rejects_an_unknown_model_with_suggestions():
    entry, arg = get_host().victims.resolve("timm:resnet1")
    assert arg == "resnet1"
    with pytest.raises(ValueError, match="timm has no model 'resnet1'"):
        entry.cls(None, arg).build(10, (3, 32, 32))
    with pytest.raises(ValueError, match="timm has no model 'resnet1'. Did you mean"):
        entry.cls(None, arg).check()  # what prepare calls, before any work
    assert entry.cls(None, arg).label == "timm:resnet1"


# --- datasets -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_declaration(name):
    entry = get_host().datasets.get(name)
    cls = entry.cls
    assert issubclass(cls, Dataset) and cls.name == name
    assert entry.summary
    assert len(cls.image_shape) == 3 and all(isinstance(s, int) and s > 0 for s in cls.image_shape)
    assert len(cls.classes) >= 2 and len(set(cls.classes)) == len(cls.classes)


@pytest.mark.parametrize("name", DATASETS)
def test_dataset_loads_from_the_cache_layout(name, tmp_path, monkeypatch):
    """A dataset reads uebench's layout from --data-dir before looking anywhere else."""
    cls = get_host().datasets.get(name).cls
    c, h, w = cls.image_shape
    k = len(cls.classes)
    x, y = synthetic_batch(n_per_class=3, num_classes=k, size=h)
    x = x[:, :c]
    xt, yt = synthetic_batch(n_per_class=1, num_classes=k, size=h, seed=1)
    xt = xt[:, :c]
    hwc = lambda t: t.permute(0, 2, 3, 1).numpy()  # noqa: E731
    write_layout(tmp_path / name, hwc(x), y.numpy(), hwc(xt), yt.numpy(), shard=7)
    assert sorted(p.name for p in (tmp_path / name).glob("train-*.npz")) == [
        f"train-{i:02d}.npz" for i in range(-(-len(y) // 7))
    ]
    monkeypatch.setattr(cls, "download", lambda self, folder: pytest.fail("must not download"))
    data = cls().load(tmp_path)
    assert isinstance(data, ImageData)
    assert data.x_train.dtype == torch.uint8 and data.x_train.shape == (len(y), c, h, w)
    assert torch.equal(data.x_train, x) and torch.equal(data.y_train, y)
    assert torch.equal(data.x_test, xt) and torch.equal(data.y_test, yt)
    assert data.num_classes == k
    x2, *_ = read_layout(tmp_path / name)
    assert x2.shape == (len(y), h, w, c)
