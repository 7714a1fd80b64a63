"""The one SGD step shared by crafting's source model and victim training.

Both follow the seed paper's reference code: SGD with momentum 0.9 and weight decay 5e-4 on
*every* parameter (``torch.optim.SGD(model.parameters(), ...)``, BatchNorm weights and biases
included).  Before protocol versions cpu v3 / paper v2 the victim exempted BN and biases while
the source decayed everything; one rule in one place keeps them from drifting apart again.
"""

from __future__ import annotations

import torch


class SGDStep:
    """zero_grad → backward → optimizer step → scheduler step, with fp16 loss scaling when asked.

    ``steps_total`` > 0 adds the protocol's cosine schedule without restart (to 0 after that
    many steps); 0 keeps the learning rate constant (crafting).
    """

    def __init__(self, model: torch.nn.Module, lr: float, *, momentum: float = 0.9, weight_decay: float = 5e-4,
                 device_type: str = "cpu", precision: str = "fp32", steps_total: int = 0):
        self.optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=steps_total) if steps_total > 0
                          else None)
        # fp16 needs loss scaling so small gradients do not flush to zero; bf16 and fp32 do not
        self.scaler = torch.amp.GradScaler(device_type, enabled=precision == "fp16")

    def __call__(self, loss: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]
