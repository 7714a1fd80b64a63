"""Victim training: the loop (``loop``), its events (``events``), its data (``data``), the SGD
step shared with crafting (``step``) and batched on-device augmentation (``augment``)."""

from uebench.train.data import TrainData
from uebench.train.events import TrainControl, TrainState
from uebench.train.loop import Trainer, TrainResult, TrainSettings, evaluate

__all__ = ["TrainControl", "TrainData", "TrainResult", "TrainSettings", "TrainState", "Trainer", "evaluate"]
