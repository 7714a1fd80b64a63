"""The training side's surface after issue 17's review: the global torch seed is set through one
documented helper (``seeds.seed_global``), and what nothing called is gone."""

from __future__ import annotations

import dataclasses
import inspect

import pytest
import torch
from torch import nn

from conftest import make_ctx
from uebench import compute
from uebench.craft import source_models
from uebench.defenses.early_stop import EarlyStop
from uebench.seeds import seed_global
from uebench.train import Trainer


def _weights(seed_with, seed):
    seed_with(seed)
    return nn.Linear(6, 3).weight.detach().clone()


def test_seed_global_is_what_torch_modules_initialise_from():
    # exactly torch.manual_seed: committed rows' victims start from the same weights
    assert torch.equal(_weights(seed_global, 11), _weights(torch.manual_seed, 11))
    assert torch.equal(_weights(seed_global, 11), _weights(seed_global, 11))
    assert not torch.equal(_weights(seed_global, 11), _weights(seed_global, 12))
    assert torch.initial_seed() == 12


def test_a_source_model_is_built_under_seed_global_with_a_seed_of_the_craft_stream(monkeypatch, tmp_path):
    class Built(Exception):
        pass

    calls, at_build = [], []

    def build(name):
        at_build.append(torch.initial_seed())
        raise Built  # the seeding is what this test is about, not the training

    monkeypatch.setattr(source_models, "seed_global", lambda seed: (calls.append(seed), seed_global(seed)))
    ctx = dataclasses.replace(make_ctx(), build_model=build, cache_dir=tmp_path)
    expected = torch.randint(0, 2**62, (3,), generator=torch.Generator().set_state(ctx.generator.get_state())).tolist()[0]
    with pytest.raises(Built):
        source_models.clean_source(ctx, "cnn-small")
    assert calls == at_build == [expected]


def test_what_nothing_called_is_gone():
    assert not hasattr(compute, "seed_everything")  # the runner seeds per stream (seeds.py)
    assert not hasattr(EarlyStop, "state_dict") and not hasattr(EarlyStop, "load_state_dict")  # no run resumes
    assert "crop_flip" not in inspect.signature(Trainer).parameters  # every run crops and flips
