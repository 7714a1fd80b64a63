"""A one-off uebench plugin file: load it with ``uebench --plugins-dir plugins/onefile ...``.

``gaussian-blur`` is a simple smoothing defense against high-frequency shortcut noise: each
training batch is blurred (torchvision.transforms.v2's batched Gaussian blur), and the test
images are blurred the same way so the victim is evaluated on what it trained on.  It is here
to show a third-party defense using two of the training loop's events (``augment`` and
``eval_images``); the built-in squeezes (``jpeg``, ``grayscale``, ``bit-depth``) are in
``uebench/defenses/squeeze.py``.

It stays the example; the reference Gaussian defenses are the built-in ``gaussian`` (APBench's
baseline: blur the training images once, test images untouched) and ``gaussian-noise``, in
``uebench/defenses/gaussian.py``.  This one differs on purpose — it blurs each batch and the
test images too, with a ±3σ kernel — and its name, ``gaussian-blur``, does not clash with theirs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torchvision.transforms.v2.functional as TF

from uebench.api import Defense, hookimpl, option


class GaussianBlur(Defense):
    """Blur every training batch and the test images with a Gaussian kernel."""

    name = "gaussian-blur"

    @dataclass
    class Options:
        sigma: float = option(1.0, help="standard deviation of the Gaussian kernel, in pixels")

        def validate(self):
            if self.sigma <= 0:
                raise ValueError(f"sigma must be > 0, got {self.sigma}")

    def _blur(self, x):
        size = 2 * int(3 * self.options.sigma) + 1  # ±3σ
        return TF.gaussian_blur(x, [size, size], [self.options.sigma, self.options.sigma])

    def augment(self, x, target, generator):
        return self._blur(x), target

    def eval_images(self, x):
        return self._blur(x)


@hookimpl
def register_defenses(register):
    register(GaussianBlur)
