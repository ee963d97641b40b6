"""The model of every stage: ResNet18 for one-channel 28x28 images and 10 classes.

torchvision's ResNet18 with a one-channel first convolution, as in the walkthrough, and 10
outputs, one per class (the walkthrough keeps ImageNet's 1000).
"""

from __future__ import annotations

import torch
from torchvision.models import resnet18

from jobs.core.idx import NUM_CLASSES


def build_model(num_classes: int = NUM_CLASSES) -> torch.nn.Module:
    """ResNet18 (random init) whose conv1 takes 1-channel 28x28 images, as in the walkthrough,
    with `num_classes` outputs."""
    model = resnet18(num_classes=num_classes)
    model.conv1 = torch.nn.Conv2d(
        1, 64, kernel_size=(7, 7), stride=(2, 2), padding=(3, 3), bias=False
    )
    return model
