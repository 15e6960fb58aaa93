"""Muon for the hidden weight matrices, AdamW for everything else, behind one optimizer.

Muon (Jordan et al. 2024) orthogonalizes the momentum of a 2-D weight matrix; its authors advise it only for
hidden-layer matrices, with biases, norms, embeddings and the output layer left to AdamW. With
``adjust_lr_fn="match_rms_adamw"`` (Moonshot, "Muon is Scalable for LLM Training", 2025) Muon's update has
AdamW's RMS, so one lr and one weight decay serve both halves.
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn


def split_muon_params(model_or_params: nn.Module | Iterable[torch.Tensor]) -> tuple[list, list]:
    """Return ``(muon_params, adamw_params)``.

    For a module: the weights of every ``nn.Linear`` except the last one (the output layer) go to Muon; all
    other trainable parameters (biases, norms, embeddings, convolutions, the output layer) go to AdamW.
    For a plain iterable of tensors: every 2-D tensor except the last 2-D one (assumed to be the output layer).
    """
    if isinstance(model_or_params, nn.Module):
        params = [p for p in model_or_params.parameters() if p.requires_grad]
        hidden = [m.weight for m in model_or_params.modules() if isinstance(m, nn.Linear)][:-1]
    else:
        params = list(model_or_params)
        if not all(isinstance(p, torch.Tensor) for p in params):
            raise ValueError("muon needs a model or a list of tensors, not parameter-group dicts")
        hidden = [p for p in params if p.ndim == 2][:-1]
    hidden_ids = {id(p) for p in hidden if p.requires_grad and p.ndim == 2}
    muon = [p for p in params if id(p) in hidden_ids]
    adamw = [p for p in params if id(p) not in hidden_ids]
    return muon, adamw


class MuonAdamW(torch.optim.Optimizer):
    """One optimizer over two: ``torch.optim.Muon`` (hidden matrices) and ``torch.optim.AdamW`` (the rest).

    ``param_groups`` is the concatenation of the inner optimizers' group dicts (the same objects), so torch LR
    schedulers, which write ``group["lr"]``, drive both halves. ``Optimizer.__init__`` is bypassed on purpose:
    it would build a third set of groups and state that nothing steps.
    """

    def __init__(
        self,
        muon_params: Iterable[torch.Tensor],
        adamw_params: Iterable[torch.Tensor],
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        adjust_lr_fn: str | None = "match_rms_adamw",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        adamw_impl: dict[str, bool] | None = None,
    ) -> None:
        muon_params, adamw_params = list(muon_params), list(adamw_params)
        if not muon_params and not adamw_params:
            raise ValueError("optimizer got an empty parameter list")
        self.muon = (
            torch.optim.Muon(
                muon_params, lr=lr, weight_decay=weight_decay, momentum=momentum, nesterov=nesterov,
                ns_steps=ns_steps, adjust_lr_fn=adjust_lr_fn,
            )
            if muon_params
            else None
        )
        self.adamw = (
            torch.optim.AdamW(
                adamw_params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, **(adamw_impl or {})
            )
            if adamw_params
            else None
        )
        self.defaults = {
            "lr": lr, "weight_decay": weight_decay, "momentum": momentum, "nesterov": nesterov,
            "ns_steps": ns_steps, "adjust_lr_fn": adjust_lr_fn, "betas": betas, "eps": eps,
            "differentiable": False,
        }
        self._init_hooks()

    def _init_hooks(self) -> None:
        # What Optimizer.__init__ would set up, so step hooks and profiling work as on any optimizer.
        for name in (
            "_optimizer_step_pre_hooks", "_optimizer_step_post_hooks",
            "_optimizer_state_dict_pre_hooks", "_optimizer_state_dict_post_hooks",
            "_optimizer_load_state_dict_pre_hooks", "_optimizer_load_state_dict_post_hooks",
        ):
            if name not in self.__dict__:
                setattr(self, name, OrderedDict())
        self._patch_step_function()

    @property
    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [opt for opt in (self.muon, self.adamw) if opt is not None]

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        # Rebuilt on each read: load_state_dict replaces the inner group dicts.
        return [group for opt in self.optimizers for group in opt.param_groups]

    @property
    def state(self) -> defaultdict:  # type: ignore[override]
        """Both inner states merged (param -> the inner optimizer's live per-parameter dict)."""
        merged: defaultdict = defaultdict(dict)
        for opt in self.optimizers:
            merged.update(opt.state)
        return merged

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        raise NotImplementedError("MuonAdamW splits parameters itself; build a new one instead")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for opt in self.optimizers:
            opt.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self.optimizers:
            opt.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {
            "muon": self.muon.state_dict() if self.muon is not None else None,
            "adamw": self.adamw.state_dict() if self.adamw is not None else None,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for key, opt in (("muon", self.muon), ("adamw", self.adamw)):
            saved = state_dict.get(key) if isinstance(state_dict, dict) else None
            if (saved is None) != (opt is None):
                raise ValueError(
                    f"loaded state dict does not match this MuonAdamW: its '{key}' part is "
                    f"{'missing' if saved is None else 'present'} but this optimizer "
                    f"{'has' if opt is not None else 'has no'} {key} parameters"
                )
            if opt is not None:
                opt.load_state_dict(saved)

    def __getstate__(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_hooks()

    def __repr__(self) -> str:
        return f"MuonAdamW(muon={self.muon!r}, adamw={self.adamw!r})"
