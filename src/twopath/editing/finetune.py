"""Localized fine-tuning: train only the parameters a component mask names.

:class:`LocalizedFineTuning` is the verb (settings in ``__init__``, one call: :meth:`edit`).
Every parameter outside the mask has ``requires_grad`` off; inside a masked parameter, the
gradient is multiplied by the mask after every backward pass, and Adam without weight decay
turns a zero gradient into a zero update, so entries outside the mask never move. That is
**checked** after training, bit for bit, and the edit fails loudly if it does not hold.

The model is trained in eval mode (no dropout), from a seeded batch order, so the same seed
gives the same edit. Training stops early once the forget loss on the training groups is below
``tol``. The adapter's model is left exactly as it was: the edit is returned as the new values of
the masked parameters (:class:`EditResult`), applied temporarily with
:meth:`EditResult.applied` (or saved with :func:`twopath.editing.save_edited`).

The objective on a batch of groups (:mod:`twopath.editing.tasks`)::

    forget   = mean over groups of the variance of the target log-odds across the group's members,
               divided by the original model's (so it starts at 1; ``tol`` is relative)
    maintain = mean KL(q || p_edited) over members, q = the original model's probabilities
               averaged over the group (an unrelated input is a group of one)
    loss     = forget_weight * forget + maintain_weight * maintain
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from twopath.editing.mask import ParameterMask
from twopath.editing.tasks import EditTask, Group
from twopath.runtime.adapter import Inputs, target_output
from twopath.runtime.trace import forget as forget_caches
from twopath.types import TwopathError

#: inside :func:`reuse_encodings`: (anchor ids) -> (anchors, adapter, encoded value)
_REUSE: ContextVar[dict[tuple[Any, ...], tuple[tuple[Any, ...], Any, Any]] | None] = ContextVar("_REUSE", default=None)


@contextmanager
def reuse_encodings() -> Iterator[None]:
    """Inside the block, encoding the same input lists again (by identity: the task's groups and
    inputs, which a comparison measures after every edit) returns the first encoding, and every
    edit of the same task reuses the original model's outputs it starts from. Encoding does not
    depend on the weights (tokenization; the tabular preprocessing) and every edit of a comparison
    starts from the original weights, so the numbers are the same; a comparison of ten loan edits
    encoded its held-out groups about 150 times without it."""
    token = _REUSE.set({})
    try:
        yield
    finally:
        _REUSE.reset(token)


def reused(adapter: Any, anchors: tuple[Any, ...], make: Callable[[], Any]) -> Any:
    """``make()``, or the value made for the same ``anchors`` (objects, by identity) inside
    :func:`reuse_encodings`; the anchors are kept alive with the value, so ids are never reused."""
    cache = _REUSE.get()
    if cache is None:
        return make()
    key = tuple(id(a) for a in anchors)
    hit = cache.get(key)
    if hit is not None and hit[1] is adapter and all(a is b for a, b in zip(hit[0], anchors, strict=True)):
        return hit[2]
    value = make()
    cache[key] = (anchors, adapter, value)
    return value


def encode(adapter: Any, raws: Sequence[Any], batch_size: int = 512) -> Inputs:
    """Model inputs of many raw inputs, encoded once (text: padded to the longest); the same list
    object again inside :func:`reuse_encodings` is not encoded again."""
    return reused(adapter, ("encode", raws), lambda: _encode(adapter, raws, batch_size))  # type: ignore[no-any-return]


def _encode(adapter: Any, raws: Sequence[Any], batch_size: int) -> Inputs:
    if not raws:
        raise TwopathError("no inputs to encode")
    if adapter.positional:
        return adapter.batch_inputs(list(raws))
    parts = [adapter.batch_inputs(list(raws[i : i + batch_size])) for i in range(0, len(raws), batch_size)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def rows_of(adapter: Any, inputs: Inputs, index: torch.Tensor) -> Inputs:
    """Rows ``index`` of encoded inputs, with padding columns no selected row uses trimmed."""
    index = index.to(next(iter(inputs.values())).device)
    picked = {k: v[index] for k, v in inputs.items()}
    weights = adapter.position_mask(picked)
    if weights is not None and weights.dim() == 2 and weights.shape[1] > 1:
        used = int((weights > 0).any(0).nonzero().max()) + 1
        picked = {k: (v[:, :used] if v.dim() >= 2 and v.shape[1] == weights.shape[1] else v) for k, v in picked.items()}
    return picked


@dataclass
class GroupBatch:
    """Groups flattened into one encoded batch, with each member's group index."""

    inputs: Inputs
    owner: torch.Tensor  # (n,) group index of each member
    n_groups: int

    @property
    def n(self) -> int:
        return int(self.owner.shape[0])

    @classmethod
    def of(cls, adapter: Any, *parts: Sequence[Group]) -> GroupBatch:
        """The groups of ``parts`` (one or more lists of groups) in one batch; the same lists
        again inside :func:`reuse_encodings` give the first batch."""

        def make() -> GroupBatch:
            groups = [g for part in parts for g in part]
            raws = [member for group in groups for member in group]
            owner = [g for g, group in enumerate(groups) for _ in group]
            return cls(_encode(adapter, raws, 512), torch.as_tensor(owner, dtype=torch.long), len(groups))

        return reused(adapter, ("groups", *parts), make)  # type: ignore[no-any-return]

    def select(self, adapter: Any, groups: Sequence[int]) -> tuple[GroupBatch, torch.Tensor]:
        """The sub-batch of some groups (renumbered) and the member rows it took."""
        picks = torch.as_tensor(list(groups), dtype=torch.long)
        lookup = torch.full((self.n_groups,), -1, dtype=torch.long)
        lookup[picks] = torch.arange(len(picks))
        rows = (lookup[self.owner] >= 0).nonzero()[:, 0]
        return GroupBatch(rows_of(adapter, self.inputs, rows), lookup[self.owner[rows]], len(picks)), rows


def group_mean(values: torch.Tensor, owner: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Mean of ``values`` (n, ...) per group."""
    owner = owner.to(values.device)
    total = torch.zeros((n_groups, *values.shape[1:]), dtype=values.dtype, device=values.device)
    total.index_add_(0, owner, values)
    count = torch.bincount(owner, minlength=n_groups).to(values.dtype).reshape(-1, *[1] * (values.dim() - 1))
    return total / count


def logits_of(adapter: Any, inputs: Inputs | Sequence[Any], grad: bool = False, batch_size: int = 256) -> torch.Tensor:
    """Logits of encoded inputs (or raw inputs, encoded first) in chunks; gradients if ``grad``."""
    if not isinstance(inputs, dict):
        if len(inputs) == 0:
            return torch.zeros(0, len(adapter.labels))
        inputs = encode(adapter, inputs)
    n = int(next(iter(inputs.values())).shape[0])
    order = _by_length(adapter, inputs) if n > batch_size else torch.arange(n)
    chunks = []
    with torch.set_grad_enabled(grad):
        for start in range(0, n, batch_size):
            chunks.append(adapter.run(rows_of(adapter, inputs, order[start : start + batch_size])).float())
    out = torch.cat(chunks)
    return out if n <= batch_size else out[torch.argsort(order.to(out.device))]


def _by_length(adapter: Any, inputs: Inputs) -> torch.Tensor:
    """Row order shortest first (text), so each chunk pads only to its own longest row; rows in
    input order for inputs without positions."""
    weights = adapter.position_mask(inputs)
    n = int(next(iter(inputs.values())).shape[0])
    if weights is None or weights.dim() != 2:
        return torch.arange(n)
    return torch.argsort((weights > 0).sum(1).cpu(), stable=True)


def group_loss(adapter: Any, batch: GroupBatch, reference: torch.Tensor, target: int,
               forget_weight: float, maintain_weight: float, grad: bool = True,
               scale: float = 1.0) -> tuple[torch.Tensor, float, float]:
    """(loss, forget term, maintain term) on one batch; ``reference`` holds the original model's
    probabilities of the batch's members; the forget term is divided by ``scale`` (the original
    model's forget term, so it starts near 1 whatever the units)."""
    logits = logits_of(adapter, batch.inputs, grad=grad, batch_size=max(1, batch.n))
    score = target_output(logits, target)
    owner = batch.owner.to(score.device)
    centre = group_mean(score[:, None], owner, batch.n_groups)[owner, 0]
    sizes = torch.bincount(owner, minlength=batch.n_groups)
    multi = (sizes[owner] > 1).float()
    forget = ((score - centre) ** 2 * multi).sum() / multi.sum().clamp(min=1) / scale
    q = group_mean(reference, owner, batch.n_groups)[owner]
    log_p = torch.log_softmax(logits, -1)
    maintain = (q * (torch.log(q.clamp(min=1e-12)) - log_p)).sum(-1).mean()
    loss = forget_weight * forget + maintain_weight * maintain
    return loss, float(forget.detach()), float(maintain.detach())


def counterfactual_gap(adapter: Any, groups: Sequence[Group], target: int) -> dict[str, float]:
    """Mean within-group spread (max - min) of the target probability, and the share of groups
    whose members get different decisions."""
    if not groups:
        return {"gap": float("nan"), "flip_share": float("nan")}
    batch = GroupBatch.of(adapter, groups)
    probs = torch.softmax(logits_of(adapter, batch.inputs), -1)
    p = probs[:, target].double().cpu().numpy()
    decision = probs.argmax(-1).cpu().numpy()
    owner = batch.owner.numpy()
    spread, flips = np.zeros(batch.n_groups), np.zeros(batch.n_groups)
    for g in range(batch.n_groups):
        members = owner == g
        spread[g] = p[members].max() - p[members].min()
        flips[g] = float(len(set(decision[members].tolist())) > 1)
    return {"gap": float(spread.mean()), "flip_share": float(flips.mean())}


@dataclass
class EditResult:
    """A finished edit: the new values of the masked parameters and what it cost."""

    mask: ParameterMask
    values: dict[str, torch.Tensor]
    settings: dict[str, Any]
    steps: int
    seconds: float
    #: entries that actually changed (at most ``mask.count``)
    n_changed: int
    #: verified: every entry outside the mask is bit-identical to the original
    outside_unchanged: bool
    history: list[dict[str, float]] = field(default_factory=list)

    @contextmanager
    def applied(self, adapter: Any) -> Iterator[Any]:
        """The adapter with the edit in place for the block; the original weights come back after."""
        params = dict(adapter.model.named_parameters())
        saved = {name: params[name].detach().clone() for name in self.values}
        try:
            with torch.no_grad():
                for name, value in self.values.items():
                    params[name].copy_(value)
            forget_caches(adapter)
            yield adapter
        finally:
            with torch.no_grad():
                for name, value in saved.items():
                    params[name].copy_(value)
            forget_caches(adapter)

    def to_dict(self) -> dict[str, Any]:
        return {**self.mask.describe(), "settings": self.settings, "steps": self.steps,
                "seconds": round(self.seconds, 4), "n_changed": self.n_changed,
                "outside_unchanged": self.outside_unchanged}


@contextmanager
def training_only(adapter: Any, names: Sequence[str]) -> Iterator[dict[str, torch.nn.Parameter]]:
    """``requires_grad`` on exactly ``names`` (eval mode kept); flags, mode and weights restored
    afterwards, also after an exception."""
    model = adapter.model
    params = dict(model.named_parameters())
    unknown = sorted(set(names) - set(params))
    if unknown:
        raise TwopathError(f"the model has no parameter {unknown[0]!r}")
    flags = {name: p.requires_grad for name, p in params.items()}
    original = {name: params[name].detach().clone() for name in names}
    was_training = model.training
    try:
        model.eval()
        for name, p in params.items():
            p.requires_grad_(name in original)
        yield {name: params[name] for name in names}
    finally:
        with torch.no_grad():
            for name, value in original.items():
                params[name].copy_(value)
        for name, p in params.items():
            p.requires_grad_(flags[name])
        model.train(was_training)
        model.zero_grad(set_to_none=True)
        forget_caches(adapter)


def train_masked(adapter: Any, mask: ParameterMask, loss_fn: Callable[[int], torch.Tensor], steps: int, lr: float,
                 stop: Callable[[int], bool] | None = None) -> tuple[dict[str, torch.Tensor], int, bool, int]:
    """Adam on the masked entries; returns (new values, steps run, outside unchanged, n changed).
    The model's weights are restored before returning."""
    names = sorted(mask.masks)
    run = 0
    with training_only(adapter, names) as params:
        before = {name: p.detach().clone() for name, p in params.items()}
        others = {name: p.detach().clone() for name, p in adapter.model.named_parameters() if name not in params}
        optim = torch.optim.Adam(list(params.values()), lr=lr, weight_decay=0.0)
        masks = {name: mask.masks[name].to(p.device) for name, p in params.items()}
        for step in range(steps):
            optim.zero_grad(set_to_none=True)
            loss_fn(step).backward()
            for name, p in params.items():
                if p.grad is not None:
                    p.grad.mul_(masks[name])
            optim.step()
            run = step + 1
            if stop is not None and stop(run):
                break
        values = {name: p.detach().clone() for name, p in params.items()}
        outside = all(torch.equal(values[n][~masks[n]], before[n][~masks[n]]) for n in names)
        outside = outside and all(torch.equal(p.detach(), others[n]) for n, p in adapter.model.named_parameters()
                                  if n in others)
        changed = int(sum(int((values[n] != before[n]).sum()) for n in names))
    return values, run, outside, changed


class LocalizedFineTuning:
    """Fine-tune only a component mask's parameters to forget what a task names.

    Settings: ``steps`` (most Adam steps), ``lr``, ``forget_weight`` and ``maintain_weight``,
    ``batch_groups`` (groups per step; ``None``: all), ``tol`` (early stop: the relative forget
    loss on the training groups below it, checked every ``check_every`` steps on the first
    ``check_groups`` of them, ``None``: all) and ``seed``.
    The defaults (Adam lr 0.01, up to 200 steps, maintain weight 5) were chosen on the loan MLP's
    credit-score edit: with maintain weight 1 the 4-neuron edits collapsed towards one decision.
    """

    def __init__(self, steps: int = 200, lr: float = 1e-2, forget_weight: float = 1.0, maintain_weight: float = 5.0,
                 batch_groups: int | None = None, tol: float = 1e-3, check_every: int = 10,
                 check_groups: int | None = None, seed: int = 0):
        self.steps = steps
        self.lr = lr
        self.forget_weight = forget_weight
        self.maintain_weight = maintain_weight
        self.batch_groups = batch_groups
        self.tol = tol
        self.check_every = check_every
        self.check_groups = check_groups
        self.seed = seed

    def settings(self) -> dict[str, Any]:
        return dict(vars(self))

    def _check(self, task: EditTask, mask: ParameterMask) -> None:
        if self.steps < 1 or self.lr <= 0 or self.check_every < 1:
            raise TwopathError("steps and check_every must be at least 1 and lr positive")
        if not task.train_groups:
            raise TwopathError(f"{task.name}: no training groups to edit on")
        if mask.count == 0:
            raise TwopathError("the edit mask is empty: no parameter to train")

    def edit(self, adapter: Any, task: EditTask, mask: ParameterMask) -> EditResult:
        self._check(task, mask)
        groups, whole, reference, train, train_ref, initial = reused(adapter, ("edit-start", task),
                                                                      lambda: _start(adapter, task))
        n_check = min(len(task.train_groups), self.check_groups or len(task.train_groups))
        check, check_ref = train, train_ref
        if n_check < len(task.train_groups):
            check, check_rows = whole.select(adapter, range(n_check))
            check_ref = reference[check_rows.to(reference.device)]
        scale = max(initial, 1e-8)
        check_scale = scale if check is train else max(
            group_loss(adapter, check, check_ref, task.target, 1.0, 0.0, grad=False)[1], 1e-8)
        order = np.random.default_rng(self.seed).permutation
        size = self.batch_groups or len(groups)
        per_epoch = -(-len(groups) // size)
        history: list[dict[str, float]] = []
        schedule: list[np.ndarray] = []

        def loss_fn(step: int) -> torch.Tensor:
            if size >= len(groups):
                batch, ref = whole, reference
            else:
                while len(schedule) <= step // per_epoch:
                    schedule.append(order(len(groups)))
                picks = schedule[step // per_epoch][(step % per_epoch) * size : (step % per_epoch + 1) * size]
                batch, rows = whole.select(adapter, sorted(int(g) for g in picks))
                ref = reference[rows.to(reference.device)]
            loss, f, m = group_loss(adapter, batch, ref, task.target, self.forget_weight, self.maintain_weight,
                                    scale=scale)
            history.append({"step": step, "forget": f, "maintain": m})
            return loss

        def stop(run: int) -> bool:
            if run % self.check_every:
                return False
            _, f, _ = group_loss(adapter, check, check_ref, task.target, 1.0, 0.0, grad=False, scale=check_scale)
            return f < self.tol

        start = time.perf_counter()
        values, steps, outside, changed = train_masked(adapter, mask, loss_fn, self.steps, self.lr, stop)
        seconds = time.perf_counter() - start
        if not outside:
            raise RuntimeError("localized fine-tuning changed a parameter outside its mask (a bug in twopath)")
        return EditResult(mask, values, self.settings(), steps, seconds, changed, outside, history)


def _start(adapter: Any, task: EditTask) -> tuple[list[Group], GroupBatch, torch.Tensor, GroupBatch, torch.Tensor, float]:
    """What every edit of ``task`` starts from: the groups (training groups, then each maintain
    input as a group of one), their batch, the original model's probabilities, the training
    groups' sub-batch with its probabilities, and the original forget term."""
    singles = [[m] for m in task.maintain]
    groups = [*task.train_groups, *singles]
    whole = GroupBatch.of(adapter, groups)
    reference = torch.softmax(logits_of(adapter, whole.inputs), -1).detach()
    train, train_rows = whole.select(adapter, range(len(task.train_groups)))
    train_ref = reference[train_rows.to(reference.device)]
    _, initial, _ = group_loss(adapter, train, train_ref, task.target, 1.0, 0.0, grad=False)
    return groups, whole, reference, train, train_ref, initial


def relearn(adapter: Any, result: EditResult | None, inputs: Sequence[Any], labels: np.ndarray, steps: int = 20,
            lr: float = 1e-3, batch_size: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """Fine-tune the **whole** (edited) model for ``steps`` Adam steps on ``inputs`` with their
    original labels (cross-entropy, seeded batches); returns the relearned weights of every
    parameter. The adapter is left as it was."""
    from contextlib import nullcontext

    from twopath.editing.mask import all_parameters

    if len(inputs) == 0 or len(inputs) != len(labels):
        raise TwopathError("relearning needs inputs and as many labels")
    y = torch.as_tensor(np.asarray(labels, dtype=np.int64), device=adapter.device)
    encoded = encode(adapter, inputs)
    rng = np.random.default_rng(seed)
    order: list[int] = []

    def loss_fn(step: int) -> torch.Tensor:
        while len(order) < (step + 1) * batch_size:
            order.extend(rng.permutation(len(inputs)).tolist())
        idx = order[step * batch_size : (step + 1) * batch_size]
        logits = logits_of(adapter, rows_of(adapter, encoded, torch.as_tensor(idx)), grad=True, batch_size=batch_size)
        return torch.nn.functional.cross_entropy(logits, y[idx])

    with result.applied(adapter) if result is not None else nullcontext():
        values, _, _, _ = train_masked(adapter, all_parameters(adapter), loss_fn, steps, lr)
    return values


@contextmanager
def with_values(adapter: Any, values: dict[str, torch.Tensor]) -> Iterator[Any]:
    """The adapter with ``values`` loaded into its parameters for the block."""
    mask = ParameterMask({name: torch.ones_like(v, dtype=torch.bool) for name, v in values.items()})
    with EditResult(mask, values, {}, 0, 0.0, 0, True).applied(adapter):
        yield adapter
