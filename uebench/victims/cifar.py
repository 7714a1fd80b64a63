"""The paper's victims with CIFAR-style stems (3×3 stride-1 first conv, no stem max-pool),
built from torchvision's reference implementations, plus ``cnn-small`` for the ``cpu`` protocol."""

from __future__ import annotations

import torchvision
from torch import nn

from uebench.hookspecs import hookimpl
from uebench.victims.base import Victim


def _cifar_resnet(factory, num_classes: int, in_channels: int) -> nn.Module:
    model = factory(num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = nn.Identity()
    return model


class ResNet18(Victim):
    """ResNet-18 (He et al. 2016) with a CIFAR stem — the paper's main victim and source model."""

    name = "resnet18"

    def build(self, num_classes, image_shape):
        return _cifar_resnet(torchvision.models.resnet18, num_classes, image_shape[0])


class ResNet50(Victim):
    """ResNet-50 (He et al. 2016) with a CIFAR stem."""

    name = "resnet50"

    def build(self, num_classes, image_shape):
        return _cifar_resnet(torchvision.models.resnet50, num_classes, image_shape[0])


class Vgg11(Victim):
    """VGG-11 with batch norm (Simonyan & Zisserman 2015), CIFAR head (512 → K)."""

    name = "vgg11"

    def build(self, num_classes, image_shape):
        model = torchvision.models.vgg11_bn(num_classes=num_classes)
        if image_shape[0] != 3:
            model.features[0] = nn.Conv2d(image_shape[0], 64, kernel_size=3, padding=1)
        model.avgpool = nn.AdaptiveAvgPool2d(1)
        model.classifier = nn.Linear(512, num_classes)
        return model


class DenseNet121(Victim):
    """DenseNet-121 (Huang et al. 2017) with a CIFAR stem."""

    name = "densenet121"

    def build(self, num_classes, image_shape):
        model = torchvision.models.densenet121(num_classes=num_classes)
        model.features.conv0 = nn.Conv2d(image_shape[0], 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.features.pool0 = nn.Identity()
        return model


class SmallCNN(Victim):
    """Four conv-BN-ReLU blocks (32-64-128-256, max-pool after the first three), global pool, linear.

    Sized for the ``cpu`` protocol: ≈1,000 training images/s on 2 CPU cores in fp32
    channels_last, yet enough capacity for ~70% CIFAR-10 accuracy on a 10k-image subset.
    """

    name = "cnn-small"
    widths = (32, 64, 128, 256)

    def build(self, num_classes, image_shape):
        layers, c_in = [], image_shape[0]
        for i, c_out in enumerate(self.widths):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]
            if i < len(self.widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes)]
        return nn.Sequential(*layers)


class TinyCNN(Victim):
    """Two conv blocks and a linear head — the ``smoke`` protocol's model, for tests only."""

    name = "cnn-tiny"

    def build(self, num_classes, image_shape):
        return nn.Sequential(
            nn.Conv2d(image_shape[0], 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
            nn.Flatten(), nn.Linear(32, num_classes),
        )


@hookimpl
def register_victims(register):
    for cls in (ResNet18, ResNet50, Vgg11, DenseNet121, SmallCNN, TinyCNN):
        register(cls)


__all__ = ["ResNet18", "ResNet50", "Vgg11", "DenseNet121", "SmallCNN", "TinyCNN"]
