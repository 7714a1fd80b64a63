"""A one-off victim plugin file: ``uebench --plugins-dir plugins/onefile run --victim mlp ...``.

``mlp`` is a multi-layer perceptron on the flattened pixels, and with ``-o victim.depth=0`` a
linear model.  Shortcut noise is the kind a linear model learns (Yu et al., "Availability
Attacks Create Shortcuts", KDD 2022): a poison a linear victim fits as well as a CNN does is a
shortcut, one it cannot fit needs the depth.  It is here to show a third-party victim with
options; the built-in CNNs are in ``uebench/victims/cifar.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from uebench.api import Victim, hookimpl, option


class Mlp(Victim):
    """Multi-layer perceptron on the flattened pixels (depth 0: a linear model)."""

    name = "mlp"

    @dataclass
    class Options:
        depth: int = option(2, help="hidden layers (0: a linear model on the pixels)")
        width: int = option(512, help="units per hidden layer")

        def validate(self):
            if self.depth < 0 or self.width < 1:
                raise ValueError(f"depth must be >= 0 and width >= 1, got depth={self.depth}, width={self.width}")

    def build(self, num_classes, image_shape):
        o = self.options or self.Options()  # a source model is built without options: the defaults
        c, h, w = image_shape
        layers, features = [nn.Flatten()], c * h * w
        for _ in range(o.depth):
            layers += [nn.Linear(features, o.width), nn.BatchNorm1d(o.width), nn.ReLU(inplace=True)]
            features = o.width
        layers.append(nn.Linear(features, num_classes))
        return nn.Sequential(*layers)


@hookimpl
def register_victims(register):
    register(Mlp)
