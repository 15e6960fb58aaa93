"""Optimizers and learning-rate schedules, as tables of data.

``create_optimizer("adam", model)`` builds any optimizer in ``OPTIMIZERS`` (torch.optim, schedulefree, and
nnopt's own Lion and Muon+AdamW); ``create_schedule("cosine", optimizer, epochs=..., steps_per_epoch=...)``
wraps torch.optim.lr_scheduler. Schedule-free optimizers need ``set_optimizer_mode(opt, training)`` around
training and evaluation.
"""

from ._lion import Lion
from ._muon import MuonAdamW
from ._schedules import SCHEDULES, Schedule, create_schedule
from ._table import OPTIMIZERS, create_optimizer, optimizer_table, set_optimizer_mode

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "Lion",
    "MuonAdamW",
    "Schedule",
    "create_optimizer",
    "create_schedule",
    "optimizer_table",
    "set_optimizer_mode",
]
