"""Noise made by other tools, read from a file: score it under uebench's protocols.

``from-file`` crafts nothing.  It reads δ — or the poisoned images it made — from ``path``,
checks it against the protocol's training set and hands it on like any attack's noise, so noise
from other code is released, defended against, trained on and scored exactly as uebench's own.

What it reads, by ``path``'s kind:

- ``.pt`` / ``.pth``: a float tensor δ on the [0, 1] pixel scale, N×C×H×W (sample-wise) or
  K×C×H×W (class-wise).  This is the official Unlearnable-Examples code's ``perturbation.pt``
  (``torch.save(noise, ...)``, possibly saved from a GPU).  A dict is read too, holding δ under
  ``key``, as its only tensor, or under one of the usual names (``perturbation``, ``noise``,
  ``delta``, …), so uebench's own noise-cache files can be read back.  A uint8 tensor counts as
  poisoned images, as below.  The file is read with ``torch.load(weights_only=True)``: one that
  would need Python objects unpickled is refused and nothing in it ever runs.
- ``.npy`` / ``.npz``, read with ``allow_pickle=False``.  For an .npz, the array is its only one
  or the one named by ``key``.  The array is either float δ as above, N×C×H×W or N×H×W×C (the
  channel axis is found from the training images' shape), or poisoned uint8 images, N×H×W×C or
  N×C×H×W.  From images, δ = poisoned/255 − clean/255 of the matching training images.
- a folder of poisoned images, one per training image and named by its index (``0.png``,
  ``00017.png``, ``img_17.png``: the last number in the stem), as APBench writes them.  They are
  sorted by that number and read one by one with ``torchvision.io`` (PNG, JPEG, GIF, WebP; other
  files in the folder are ignored).  δ comes from the images as above.

Options (``-o key=value``):

- ``path`` (required): the file or folder.
- ``key`` (``""``): the array in an .npz, or the dict key in a .pt; ``""`` means its only one,
  or the usual name.
- ``form`` (``auto``): ``sample`` or ``class``.  ``auto`` reads K = number-of-classes rows as
  class-wise when there are more training images than classes, and any other count as
  sample-wise.  Poisoned images are always sample-wise, and so is a folder; a ``class_map``
  makes δ class-wise.  ``resolve`` records the form it stands for wherever it can tell before
  crafting (see *Resolving*), so the cell's key and its row's label name it.
- ``indices`` (``""``): the training-set indices of the file's rows.  ``""`` means 0, 1, 2, …
  (for a folder, the number in each name); ``a:b`` (or ``:b``) means rows a … b−1; a ``.npy``
  path means one int per row.  Only for sample-wise noise.
- ``allow_prefix`` (``false``): for a context that does not say which images the subset holds
  (no ``ctx.train_index``), accept a file with more rows than the subset and use its first N.

Index mapping: which file row goes with which training image.  The runner passes the dataset
indices of the subset's rows (``ctx.train_index``, from ``runner.load_cell``), and each one is
looked up among the file's ``indices``: a file that covers the first k training images serves
every protocol whose subset lies inside them (``cpu`` and ``smoke`` draw stratified subsets of
the whole set: ``uebench protocols indices`` prints them), in any order.  A context without
``train_index`` (one built outside the runner, e.g. by a plugin's own test) falls back to
position: row i goes with the subset's i-th image, the file must have exactly N rows (at least
N with ``allow_prefix=true``), and ``indices`` is refused, not ignored.  That rule is right only
for a file made for that exact subset, in that order.  Poisoned images expose a mismatch, because
their difference from the wrong clean image is far beyond ε; a δ file cannot.

Resolving.  ``resolve`` reads only the file's header (a .npy/.npz array header, a .pt through
``torch.load(weights_only=True, mmap=True)``, which maps the tensor without reading it; no
values, nothing unpickled beyond tensors) and makes ``form=auto`` concrete where that decides
it: ``sample`` for poisoned images and folders, ``class`` with a ``class_map``, and for a δ of
K rows ``class`` or ``sample`` once it is told the dataset (``resolve(..., dataset=)``: its
class count K, and the protocol's training-set size).  Where it cannot tell (a δ without the
dataset, a file it cannot read; ``craft`` then reads it and says what is wrong) ``auto`` stays,
and the noise's ``form`` records what ``craft`` found.

Checks.  Every failure raises ``OptionError``, naming the file, what was found and what was
expected.  The checks cover the row count (N sample-wise, K class-wise), the image shape, the
dtype (float for δ, uint8 for images), finite values and the budget:

- δ files: |δ| ≤ ε + 1e-6, or one float16/bfloat16 unit in the last place at ε for such files.
- images: |poisoned − clean| ≤ 255·ε + ½ grey level, ties excluded.  A δ crafted at ε and then
  rounded to 8 bits lands on the grey level nearest to 255·ε.  That level lies above ε whenever
  255·ε is not an integer (for ε = k/255, nothing beyond ε passes).

The pixel range is that of uint8 for images.  For δ, x + δ is clamped at release, as for every
attack.  After the checks, δ is clipped to [−ε, ε].  uebench's quantized release then rounds it
back to exactly the file's images, so a uint8 source is reproduced bit for bit; ``--float-noise``
trains on the clipped δ instead.  One difference remains: the official code poisons with
``astype(np.uint8)``, which truncates, while uebench rounds, so its release of a float δ can
differ from the official code's by one grey level.

Examples: ``uebench run --attack from-file -o path=perturbation.pt --protocol paper`` and
``uebench run --attack from-file -o path=poisons.npz -o key=x_poison -o allow_prefix=true``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from uebench.attacks.base import Attack, CraftContext
from uebench.hookspecs import hookimpl
from uebench.noise import FORMS, Noise
from uebench.options import OptionError, option

TENSOR_SUFFIXES = (".pt", ".pth")
ARRAY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")  # what torchvision.io decodes
USUAL_KEYS = ("perturbation", "perturbations", "noise", "delta", "poison", "poisons", "x_poison", "data")
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
FLOAT_TOL = 1e-6  # |δ| beyond ε allowed in a float δ file (the registry contract's tolerance)
# Quantized images: |poisoned − clean| may reach the grey level nearest to 255·ε.  The margin
# keeps exact ties out, and so keeps the cases where release's float rounding could go either
# way (c + 255·ε at k + 0.5) out too.
TIE_MARGIN = 1e-3


@dataclass
class _Found:
    """What a file held, before any check against the training set."""

    data: torch.Tensor  # as stored (any layout), on the CPU
    fmt: str  # pt | npy | npz | image-folder
    key: str = ""  # the dict key / npz array used
    index: torch.Tensor | None = None  # dataset indices the file itself states (a folder's names)


# The seed paper's ImageNet → CIFAR-10 transfer (PAPER.md): CIFAR-10 class (in its label order)
# ← ImageNet-1k class index: airplane ← airliner, automobile ← beach wagon, bird ← hummingbird,
# cat ← Siamese cat, deer ← ox, dog ← golden retriever, frog ← tailed frog, horse ← zebra,
# ship ← container ship, truck ← trailer truck.
CLASS_MAPS = {"imagenet-cifar10": {0: 404, 1: 436, 2: 94, 3: 284, 4: 345, 5: 207, 6: 32, 7: 340, 8: 510, 9: 867}}


def parse_class_map(text: str) -> dict[int, int]:
    """``"0=404,1=436"`` or a preset name → {target class: source row}; a clear error otherwise."""
    text = text.strip()
    if text in CLASS_MAPS:
        return dict(CLASS_MAPS[text])
    pairs = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        target, sep, source = item.partition("=")
        if not sep or not target.strip().isdigit() or not source.strip().isdigit():
            raise ValueError(f"class_map item {item!r} is not TARGET=SOURCE (two class indices); "
                             f"presets: {', '.join(CLASS_MAPS)}")
        if int(target) in pairs:
            raise ValueError(f"class_map maps target class {int(target)} twice")
        pairs[int(target)] = int(source)
    if not pairs:
        raise ValueError(f"class_map {text!r} maps nothing; write 0=404,1=436,... or a preset: {', '.join(CLASS_MAPS)}")
    return pairs


def map_classes(pairs: dict[int, int], num_classes: int, rows: int, where: str) -> torch.Tensor:
    """The file row for each of the ``num_classes`` target classes; every class must be mapped."""
    missing = [k for k in range(num_classes) if k not in pairs]
    extra = sorted(k for k in pairs if not 0 <= k < num_classes)
    if missing or extra:
        raise OptionError(f"{where}: class_map must map each target class 0..{num_classes - 1} once"
                          + (f"; unmapped: {missing}" if missing else "") + (f"; not a class here: {extra}" if extra else ""))
    beyond = sorted({s for s in pairs.values() if s >= rows})
    if beyond:
        raise OptionError(f"{where}: class_map names source rows {beyond}, but the file has {rows} rows")
    return torch.tensor([pairs[k] for k in range(num_classes)])


def _describe(t) -> str:
    return f"shape {tuple(t.shape)}, dtype {str(t.dtype).replace('torch.', '')}"


def _grey(v: float) -> str:
    return f"{v:.6g} (= {v * 255:.4g}/255)"


def parse_indices(text: str) -> tuple[int, int | None] | Path | None:
    """``""`` → None; ``a:b`` / ``:b`` → (a, b); anything else is a .npy path.  Raises ValueError."""
    text = text.strip()
    if not text:
        return None
    if text.lower().endswith(".npy"):
        return Path(text).expanduser()
    start, sep, stop = text.partition(":")
    try:
        a, b = int(start or 0), int(stop)
    except ValueError:
        a = b = None
    if not sep or a is None or a < 0 or b <= a:
        raise ValueError(f"indices {text!r}: write a:b with 0 <= a < b (e.g. 0:5000 or :5000), or a .npy of int indices")
    return a, b


class FromFile(Attack):
    """Noise made elsewhere, read from a .pt/.npy/.npz file or a folder of poisoned images."""

    name = "from-file"
    cacheable = False  # reading a file is cheaper than caching a copy of it

    @dataclass
    class Options:
        path: str = option("", help="required: a .pt/.pth (δ tensor), .npy/.npz (float δ or poisoned uint8 images) "
                                    "or a folder of poisoned images named by training index")
        key: str = option("", help="array in an .npz / dict key in a .pt; '' = its only one, or a usual name "
                                   "(perturbation, noise, delta, ...)")
        form: str = option("auto", help="sample | class | auto (K rows with more training images than classes = class)",
                           choices=("auto", *FORMS))
        indices: str = option("", help="training-set indices of the file's rows: '' = 0,1,2,... (a folder: its file numbers), "
                                       "a:b, or a .npy of ints; looked up by the subset's ctx.train_index (the runner passes it)")
        allow_prefix: bool = option(False, help="only for a context without ctx.train_index (not the runner's): use the first N "
                                                "rows of a file with more rows than the subset")
        class_map: str = option("", help="transfer class-wise noise crafted on another dataset: 'T=S,...' gives target "
                                         "class T the file's row S (indices), or a preset: " + ", ".join(CLASS_MAPS))

        def validate(self):
            if not self.path.strip():
                raise ValueError("path is required: -o path=FILE_OR_FOLDER "
                                 "(a .pt, .pth, .npy or .npz file, or a folder of images)")
            path = Path(self.path).expanduser()
            if not path.exists():
                raise ValueError(f"path {self.path!r}: no such file or folder")
            if self.class_map.strip():
                parse_class_map(self.class_map)
                if self.form == "sample":  # the key and the label would say sample of a class-wise noise
                    raise ValueError("class_map makes class-wise noise (one row per target class): drop form=sample")
            parsed = parse_indices(self.indices)
            if isinstance(parsed, Path) and not parsed.is_file():
                raise ValueError(f"indices {self.indices!r}: no such file")

    def resolve(self, protocol, eps: float, dataset=None):
        """The options with ``form=auto`` made concrete where the file's header decides it (see
        *Resolving* in the module docstring); ``dataset`` (its ``classes``, and ``train_images``
        for a protocol that trains on the whole set) lets it decide a δ's form too."""
        resolved = replace(self.options)
        if resolved.form == "auto":
            resolved.form = _resolve_form(resolved, protocol, dataset)
        return resolved

    def input_files(self, resolved) -> dict[str, Path]:
        files = {"path": Path(resolved.path).expanduser()}
        if isinstance(parse_indices(resolved.indices), Path):
            files["indices"] = Path(resolved.indices).expanduser()
        return files

    # --- craft ---------------------------------------------------------------------------------
    def craft(self, ctx: CraftContext) -> Noise:
        o = self.options
        try:
            o.validate()  # also when built directly, not through build_options
        except ValueError as exc:
            raise OptionError(f"attack 'from-file': {exc}") from None
        resolved = getattr(ctx, "options", None)  # the cell's resolved options, where the runner passes them
        form_option = resolved.form if isinstance(resolved, FromFile.Options) else o.form
        path = Path(o.path).expanduser()
        chw = tuple(ctx.x.shape[1:])
        found = self._read(path, chw)
        where = f"{path}" + (f" [{found.key}]" if found.key else "")
        data, layout = _to_nchw(found.data, chw, where)
        is_images = data.dtype == torch.uint8
        if not is_images and data.dtype not in FLOAT_DTYPES:
            raise OptionError(f"{where}: {_describe(data)}; expected float (δ on the [0, 1] pixel scale) "
                              "or uint8 (poisoned images)")
        mapped = None
        if o.class_map.strip():  # transfer: each target class takes the source class's row
            if is_images:
                raise OptionError(f"{where}: class_map maps class-wise δ rows; this file holds poisoned images")
            mapped = map_classes(parse_class_map(o.class_map), ctx.num_classes, len(data), where)
            data = data[mapped]
        form = "class" if mapped is not None else self._form(form_option, len(data), ctx, is_images, where)
        meta = {"attack": self.name, "path": str(path.resolve()), "format": found.fmt, "key": found.key,
                "content": "images" if is_images else "delta", "layout": layout, "file_rows": len(data),
                "file_dtype": str(data.dtype).replace("torch.", "")}
        if mapped is not None:
            meta["class_map"] = mapped.tolist()
        if form == "class":
            if o.indices.strip():
                raise OptionError(f"{where}: indices={o.indices!r} applies to sample-wise noise; "
                                  f"this file is class-wise ({len(data)} rows)")
            rows, meta["mapping"] = None, "class"
        else:
            rows, meta["mapping"] = self._rows(len(data), found.index, ctx, where)
        picked = data if rows is None else data[rows]
        if is_images:
            delta, excess = _delta_from_images(picked, ctx.x.cpu(), ctx.eps, where, rows)
        else:
            delta, excess = _check_delta(picked, ctx.eps, where, rows)
        meta["beyond_eps"] = excess  # values beyond ε within the tolerance, clipped to ε
        delta = delta.clamp_(-ctx.eps, ctx.eps)
        return Noise(delta.contiguous().to(ctx.device), form, ctx.eps, meta)

    @staticmethod
    def _form(form: str, rows: int, ctx: CraftContext, is_images: bool, where: str) -> str:
        n, k = len(ctx.y), ctx.num_classes
        if is_images:
            if form == "class":
                raise OptionError(f"{where}: poisoned images are one per training image (sample-wise); "
                                  "form=class needs a K×C×H×W δ")
            return "sample"
        if form == "class" and rows != k:
            raise OptionError(f"{where}: {rows} rows, but class-wise noise has one per class: expected {k} (K×C×H×W)")
        if form != "auto":
            return form
        if rows == k and n > k:
            return "class"
        if rows == k:
            raise OptionError(f"{where}: {rows} rows fit both one per class (K={k}) and the {n} training images: "
                              "set -o form=sample or -o form=class")
        return "sample"

    def _rows(self, m: int, named: torch.Tensor | None, ctx: CraftContext, where: str) -> tuple[torch.Tensor, str]:
        """File row for each of ctx's rows (length N), and how the mapping was made."""
        o, n = self.options, len(ctx.y)
        parsed = parse_indices(o.indices)
        train_index = getattr(ctx, "train_index", None)
        if train_index is None:
            if parsed is not None:
                raise OptionError(
                    f"{where}: indices={o.indices!r} needs to know which training images this protocol's subset holds, and "
                    "this context does not say (CraftContext.train_index, which the runner passes); without it file row i "
                    "goes with the subset's i-th image: drop indices, and give a file of exactly the subset's rows (or "
                    "allow_prefix=true)")
            if m == n:
                return torch.arange(n), "positional"
            if m > n and o.allow_prefix:
                return torch.arange(n), "positional-prefix"
            protocol = getattr(ctx.protocol, "name", "?")
            hint = (" (-o allow_prefix=true uses its first rows, right only if they are this subset's images in order)"
                    if m > n else "")
            raise OptionError(
                f"{where}: {m} rows of sample-wise noise, but protocol {protocol!r} trains on {n} images: expected exactly "
                f"{n} rows, file row i going with the subset's i-th image{hint}")
        file_index = self._file_index(parsed, named, m, where)
        sorted_index, order = torch.sort(file_index)
        if len(sorted_index) > 1 and bool((sorted_index[1:] == sorted_index[:-1]).any()):
            dup = sorted_index[1:][sorted_index[1:] == sorted_index[:-1]][:5].tolist()
            raise OptionError(f"{where}: the file's row indices repeat (e.g. {dup}); each training image may have one row")
        want = torch.as_tensor(train_index).cpu().long().flatten()
        if len(want) != n:
            raise OptionError(f"ctx.train_index has {len(want)} entries for {n} training images")
        pos = torch.searchsorted(sorted_index, want).clamp_(max=max(m - 1, 0))
        hit = sorted_index[pos] == want if m else torch.zeros(n, dtype=torch.bool)
        if not bool(hit.all()):
            missing = want[~hit]
            lo, hi = (int(sorted_index[0]), int(sorted_index[-1])) if m else (0, -1)
            raise OptionError(
                f"{where}: the file has no row for {len(missing)} of the subset's {n} training images (dataset indices "
                f"e.g. {missing[:5].tolist()}); its {m} rows hold training images {lo}..{hi}"
                + ("" if o.indices.strip() else " (-o indices=… says which, if they are not 0, 1, 2, …)"))
        return order[pos], "train_index"

    @staticmethod
    def _file_index(parsed, named: torch.Tensor | None, m: int, where: str) -> torch.Tensor:
        if parsed is None:
            return named if named is not None else torch.arange(m)
        if isinstance(parsed, tuple):
            a, b = parsed
            if b - a != m:
                raise OptionError(f"{where}: indices {a}:{b} names {b - a} training images, but the file has {m} rows")
            return torch.arange(a, b)
        try:
            arr = np.load(parsed, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise OptionError(f"indices file {parsed}: cannot be read as a plain .npy ({exc})") from None
        if arr.ndim != 1 or arr.dtype.kind not in "iu" or len(arr) != m or (len(arr) and arr.min() < 0):
            raise OptionError(f"indices file {parsed}: shape {arr.shape}, dtype {arr.dtype}; expected {m} non-negative "
                              f"ints, one per row of {where}")
        return torch.from_numpy(arr.astype(np.int64))

    # --- reading -------------------------------------------------------------------------------
    def _read(self, path: Path, chw: tuple) -> _Found:
        if path.is_dir():
            return _read_folder(path, chw)
        suffix = path.suffix.lower()
        if suffix in TENSOR_SUFFIXES:
            return _read_tensor_file(path, self.options.key)
        if suffix in ARRAY_SUFFIXES:
            return _read_array_file(path, self.options.key)
        raise OptionError(f"{path}: unknown kind of file {suffix or '(no suffix)'!r}; from-file reads "
                          f"{', '.join(TENSOR_SUFFIXES + ARRAY_SUFFIXES)} files and folders of images")


# --- resolving: the form from the file's header ------------------------------------------------
def _resolve_form(o, protocol, dataset) -> str:
    """``form=auto`` made concrete where the options and the file's header decide it; ``auto``
    where they do not (``craft`` then decides, with the context's class and image counts)."""
    if o.class_map.strip():  # a map picks one source row per target class
        return "class"
    head = _peek(Path(o.path).expanduser(), o.key)
    if head is None:
        return "auto"
    content, rows = head
    if content == "images":
        return "sample"
    k = len(getattr(dataset, "classes", None) or ()) if dataset is not None else 0
    if not k:
        return "auto"
    if rows != k:
        return "sample"
    per_class = getattr(protocol, "train_per_class", None)
    # the whole training set: its declared size, else taken to hold more images than classes
    n = per_class * k if per_class is not None else getattr(dataset, "train_images", None) or k + 1
    return "class" if n > k else "auto"  # n == k fits both: craft asks for form


def _peek(path: Path, key: str) -> tuple[str, int | None] | None:
    """(``images`` or ``delta``, rows) of what ``craft`` would read from ``path``, from its header
    alone; None when the header does not say (or cannot be read: ``craft`` reports that)."""
    if path.is_dir():
        return "images", None
    suffix = path.suffix.lower()
    try:
        if suffix in TENSOR_SUFFIXES:
            return _peek_tensor(path, key)
        if suffix == ".npy":
            with path.open("rb") as f:
                return _peek_npy(f)
        if suffix == ".npz":
            return _peek_npz(path, key)
    except Exception:  # a header that cannot be read decides nothing: craft reads the file and says why
        return None
    return None


def _peek_tensor(path: Path, key: str):
    # mmap: the tensors are mapped, not read; weights_only: nothing but tensors is unpickled
    payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    if isinstance(payload, dict):
        tensors = {str(k): v for k, v in payload.items() if isinstance(v, torch.Tensor)}
        payload = _pick(tensors, key, str(path), "tensor")[1] if tensors else None
    if not isinstance(payload, torch.Tensor) or payload.dim() < 1:
        return None
    kind = "images" if payload.dtype == torch.uint8 else "delta" if payload.dtype in FLOAT_DTYPES else None
    return (kind, int(payload.shape[0])) if kind else None


def _peek_npy(f):
    """(kind, rows) from an open .npy stream's header; its data is never read."""
    from numpy.lib import format as npy

    version = npy.read_magic(f)
    readers = {(1, 0): npy.read_array_header_1_0, (2, 0): npy.read_array_header_2_0}
    if version not in readers:
        return None
    shape, _, dtype = readers[version](f)
    kind = "images" if dtype == np.uint8 else "delta" if dtype.kind == "f" else None
    return (kind, int(shape[0])) if kind and shape else None


def _peek_npz(path: Path, key: str):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = [n[: -len(".npy")] for n in archive.namelist() if n.endswith(".npy")]
        if key:
            name = key if key in names else None
        elif len(names) == 1:
            name = names[0]
        else:
            usual = [k for k in USUAL_KEYS if k in names]
            name = usual[0] if len(usual) == 1 else None
        if name is None:
            return None
        with archive.open(f"{name}.npy") as f:  # decompresses the header's bytes only
            return _peek_npy(f)


def _pick(items: dict, key: str, where: str, what: str):
    """The entry ``key`` of ``items``, else the only one, else the only usual name present."""
    listing = "; ".join(f"{k!r}: {_describe(v)}" for k, v in items.items()) or "nothing"
    if key:
        if key not in items:
            raise OptionError(f"{where}: no {what} {key!r}; it holds {listing}")
        return key, items[key]
    if len(items) == 1:
        return next(iter(items.items()))
    usual = [k for k in USUAL_KEYS if k in items]
    if len(usual) == 1:
        return usual[0], items[usual[0]]
    raise OptionError(f"{where}: holds {len(items)} {what}s ({listing}); name the one to use with -o key=NAME")


def _read_tensor_file(path: Path, key: str) -> _Found:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read is the file's fault
        text = str(exc)
        unsafe = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if unsafe:
            raise OptionError(
                f"{path}: holds Python objects ({unsafe.group(1)}) that loading would have to unpickle; from-file reads plain "
                "tensor files only (torch.load weights_only=True) and never runs code from a file: save the tensor alone "
                "(torch.save(delta.cpu(), path)) or as .npy") from None
        detail = re.search(r"WeightsUnpickler error:\s*([^\n]+)", text)  # torch's long advice around it says nothing here
        why = detail.group(1) if detail else (text.splitlines() or [""])[0]
        raise OptionError(f"{path}: not a readable torch file ({type(exc).__name__}: {why})") from None
    if isinstance(payload, torch.Tensor):
        return _Found(payload, "pt")
    if isinstance(payload, dict):
        tensors = {str(k): v for k, v in payload.items() if isinstance(v, torch.Tensor)}
        if not tensors:
            raise OptionError(f"{path}: a dict with keys {sorted(map(str, payload))} and no tensor; expected δ as a tensor")
        name, tensor = _pick(tensors, key, str(path), "tensor")
        return _Found(tensor, "pt", name)
    kind = type(payload).__name__ + (f" of {len(payload)} items" if isinstance(payload, (list, tuple)) else "")
    raise OptionError(f"{path}: holds a {kind}; expected a tensor δ, or a dict holding one")


def _read_array_file(path: Path, key: str) -> _Found:
    fmt = path.suffix.lower().lstrip(".")
    try:
        if fmt == "npy":
            arr, name = np.load(path, allow_pickle=False), ""
        else:
            with np.load(path, allow_pickle=False) as archive:
                if key and key not in archive.files:
                    raise OptionError(f"{path}: no array {key!r}; it holds {', '.join(archive.files) or 'nothing'}")
                if not key and len(archive.files) != 1:
                    usual = [k for k in USUAL_KEYS if k in archive.files]
                    if len(usual) != 1:
                        listing = "; ".join(f"{k!r}: shape {archive[k].shape}, dtype {archive[k].dtype}" for k in archive.files)
                        raise OptionError(f"{path}: holds {len(archive.files)} arrays ({listing or 'none'}); "
                                          "name the one to use with -o key=NAME")
                    key = usual[0]
                name = key or archive.files[0]
                arr = archive[name]
    except OptionError:
        raise
    except ValueError as exc:  # numpy refuses what it would have to unpickle
        if "Object arrays" in str(exc):
            raise OptionError(f"{path}: holds Python objects (a pickled object array); from-file never unpickles: "
                              "save a plain float or uint8 array") from None
        if "pickled data" in str(exc):  # no numpy header: numpy would read the file as a pickle
            raise OptionError(f"{path}: not a readable .{fmt} file (no numpy header; read as a pickle it could run code, "
                              "and from-file never unpickles)") from None
        raise OptionError(f"{path}: not a readable .{fmt} file ({exc})") from None
    except Exception as exc:  # truncated file, not numpy's format, a bad zip...
        raise OptionError(f"{path}: not a readable .{fmt} file ({type(exc).__name__}: {exc})") from None
    where = f"{path}" + (f" [{name}]" if name else "")
    if arr.dtype.kind == "f" and arr.dtype.itemsize <= 8:
        arr = arr.astype(arr.dtype.newbyteorder("="), copy=False)
    elif arr.dtype != np.uint8:
        raise OptionError(f"{where}: shape {arr.shape}, dtype {arr.dtype}; expected float16/32/64 (δ on the [0, 1] pixel scale) "
                          "or uint8 (poisoned images)")
    return _Found(torch.from_numpy(np.ascontiguousarray(arr)), fmt, name)


def _read_folder(folder: Path, chw: tuple) -> _Found:
    from torchvision.io import ImageReadMode, decode_image, read_file

    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        subdirs = [p.name for p in entries if p.is_dir()]
        found = f"{len(entries)} other entries" + (f", folders {sorted(subdirs)[:5]}" if subdirs else "")
        raise OptionError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)}) in it ({found}); expected one image per "
                          "training image, named by its index (0.png, 1.png, …)")
    numbered = {}
    for p in files:
        digits = re.findall(r"\d+", p.stem)
        if not digits:
            raise OptionError(f"{folder}: image {p.name!r} has no number in its name; each image is named by its training index")
        i = int(digits[-1])
        if i in numbered:
            raise OptionError(f"{folder}: {numbered[i].name!r} and {p.name!r} both stand for training image {i}")
        numbered[i] = p
    order = sorted(numbered)
    c = chw[0]
    mode = ImageReadMode.RGB if c == 3 else ImageReadMode.GRAY if c == 1 else ImageReadMode.UNCHANGED
    images = torch.empty((len(order), *chw), dtype=torch.uint8)
    for row, i in enumerate(order):
        p = numbered[i]
        try:
            img = decode_image(read_file(str(p)), mode=mode)
        except Exception as exc:
            raise OptionError(f"{p}: cannot be decoded as an image ({type(exc).__name__}: {exc})") from None
        if tuple(img.shape) != chw or img.dtype != torch.uint8:
            raise OptionError(f"{p}: a {'×'.join(map(str, img.shape))} {str(img.dtype).replace('torch.', '')} image; "
                              f"expected {'×'.join(map(str, chw))} uint8 like the training images")
        images[row] = img
    return _Found(images, "image-folder", index=torch.tensor(order, dtype=torch.long))


# --- checks ------------------------------------------------------------------------------------
def _to_nchw(t: torch.Tensor, chw: tuple, where: str) -> tuple[torch.Tensor, str]:
    c, h, w = chw
    if t.dim() == 3 and c == 1 and tuple(t.shape[1:]) == (h, w):
        return t.unsqueeze(1), "NHW"
    if t.dim() == 4 and tuple(t.shape[1:]) == (c, h, w):
        return t, "NCHW"  # checked first: wins when C == H == W
    if t.dim() == 4 and tuple(t.shape[1:]) == (h, w, c):
        return t.permute(0, 3, 1, 2), "NHWC"
    raise OptionError(f"{where}: {_describe(t)}; expected rows of {c}×{h}×{w} like the training images "
                      f"(N×{c}×{h}×{w} or N×{h}×{w}×{c}; K×{c}×{h}×{w} for class-wise δ)")


def _file_row(rows: torch.Tensor | None, i: int) -> int:
    return int(rows[i]) if rows is not None else i


def _check_delta(delta: torch.Tensor, eps: float, where: str, rows) -> tuple[torch.Tensor, int]:
    source = delta.dtype
    delta = delta.to(torch.float32)
    finite = torch.isfinite(delta).flatten(1).all(1)
    if not bool(finite.all()):
        bad = torch.nonzero(~finite).flatten()
        raise OptionError(f"{where}: {len(bad)} rows hold NaN or infinite values (file row {_file_row(rows, int(bad[0]))} first)")
    top = delta.abs().amax().item() if delta.numel() else 0.0
    tol = max(FLOAT_TOL, torch.finfo(source).eps * eps)
    if top > eps + tol:
        row = _file_row(rows, int(delta.abs().flatten(1).amax(1).argmax()))
        lo, hi = delta.min().item(), delta.max().item()
        if top > 1:
            hint = "; the values look like the [0, 255] scale: δ is on the [0, 1] pixel scale (divide by 255)"
        elif lo >= 0:
            hint = ("; the values look like images in [0, 1], not δ: store poisoned images as uint8 "
                    "(np.round(x * 255).astype(np.uint8)), from which δ is computed")
        else:
            hint = f"; if it was crafted at a larger budget, run with --eps {math.ceil(top * 255 - 1e-6)}/255"
        raise OptionError(f"{where}: max |δ| = {_grey(top)} (file row {row}; values in [{lo:.4g}, {hi:.4g}]) exceeds "
                          f"ε = {_grey(eps)} + {tol:.1g}{hint}")
    return delta, int((delta.abs() > eps).sum())


def _delta_from_images(poisoned: torch.Tensor, clean: torch.Tensor, eps: float, where: str, rows) -> tuple[torch.Tensor, int]:
    diff = poisoned.to(torch.int16) - clean.to(torch.int16)
    limit = math.floor(255 * eps + 0.5 - TIE_MARGIN)  # the grey level nearest to 255·ε, ties excluded
    size = diff.abs().flatten(1).amax(1)
    if diff.numel() and int(size.max()) > limit:
        bad = torch.nonzero(size > limit).flatten()
        first = int(bad[0])
        far = int(size.max()) > 4 * 255 * eps + 1
        hint = (": the images do not seem to be those of the training set at these rows (check the file's order, "
                "-o indices / allow_prefix, and the protocol)" if far else
                f"; if they were made at a larger budget, run with --eps {int(size.max())}/255")
        raise OptionError(
            f"{where}: {len(bad)} of {len(diff)} poisoned images differ from their clean training image by more than "
            f"ε = {_grey(eps)} (+ the half grey level 8-bit rounding adds): up to {int(size.max())}/255, file row "
            f"{_file_row(rows, first)} by {int(size[first])}/255{hint}")
    return diff.to(torch.float32).div_(255.0), int((diff.abs() > 255 * eps + 1e-6).sum())


@hookimpl
def register_attacks(register):
    register(FromFile)
