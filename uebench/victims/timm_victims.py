"""Any timm model as a victim: ``--victim timm:<model-name>`` (see ``timm.list_models()``)."""

from __future__ import annotations

from dataclasses import dataclass

from uebench.hookspecs import hookimpl
from uebench.options import option
from uebench.victims.base import Victim


class TimmVictim(Victim):
    """A model from timm by name, e.g. ``timm:resnet18`` or ``timm:vit_tiny_patch16_224``."""

    name = "timm"
    takes_argument = True

    @dataclass
    class Options:
        pretrained: bool = option(False, help="load timm's pretrained weights (needs internet or a local hub cache)")

    def check(self):
        import timm

        if not timm.is_model(self.argument):
            import difflib

            from uebench.options import OptionError

            close = difflib.get_close_matches(self.argument, timm.list_models(), n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise OptionError(f"timm has no model {self.argument!r}.{hint} See timm.list_models().")

    def build(self, num_classes, image_shape):
        import timm

        self.check()
        pretrained = bool(self.options and self.options.pretrained)
        kwargs = {"img_size": image_shape[1:]} if "vit" in self.argument or "deit" in self.argument else {}
        return timm.create_model(
            self.argument, pretrained=pretrained, num_classes=num_classes, in_chans=image_shape[0], **kwargs
        )


@hookimpl
def register_victims(register):
    register(TimmVictim)
