"""Which chips each step of the run reads, and one DataLoader for the whole run.

The order is a pure function of (seed, epoch, world size, rank): epoch ``e`` is the
``DistributedSampler`` permutation seeded with ``seed + e`` (the same permutation whatever the
world size), padded to a multiple of the world by wrapping around, rank ``r`` taking every
``world``-th item from ``r`` on, cut into batches. Because the ranks interleave, the chips the
whole job has read after ``k`` steps are a *prefix* of the epoch's order: the position in an
epoch is one number, the samples seen by all ranks together. A resumed run continues from that
sample — with exactly the batches of an uninterrupted run when the world size is the same, and
with the rest of the epoch split between the new ranks when it is not (the epoch still covers
every chip once, and the learning-rate schedule, which counts epochs, is unchanged).

Each index carries its epoch into the worker (``(epoch, index)``), because workers keep their own
copy of the dataset for the whole run: the loader is built once, its workers persist, and they
read ahead across epoch boundaries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

Batch = list[tuple[int, int]]


def epoch_order(length: int, seed: int, epoch: int) -> list[int]:
    """The whole job's order of epoch ``epoch``: ``DistributedSampler``'s permutation (independent of the world)."""
    from torch.utils.data import DistributedSampler

    sampler = DistributedSampler(range(length), num_replicas=1, rank=0, shuffle=True, seed=seed, drop_last=False)
    sampler.set_epoch(epoch)
    return list(sampler)


@dataclass(frozen=True)
class BatchPlan:
    """The run's batches: ``length`` items per epoch split between ``world`` processes."""

    length: int
    batch_size: int
    seed: int
    world: int = 1
    rank: int = 0

    def epoch(self, epoch: int, start_sample: int = 0) -> list[list[int]]:
        """This rank's batches of ``epoch`` from the job's ``start_sample``-th sample on (dataset indices).

        From sample 0 this is exactly ``DistributedSampler(num_replicas=world, rank=rank)``'s share.
        """
        order = epoch_order(self.length, self.seed, epoch)[start_sample:]
        if order and len(order) % self.world:
            pad = self.world - len(order) % self.world
            order += (order * (pad // len(order) + 1))[:pad]
        share = order[self.rank::self.world]
        bs = self.batch_size
        return [share[i:i + bs] for i in range(0, len(share), bs)]

    def steps(self, start_epoch: int, start_sample: int, end_epoch: int) -> Iterator[tuple[int, int, int, list[int]]]:
        """``(epoch, batch number in the epoch (1-based), batches in the epoch, indices)`` from a position on.

        ``start_sample`` is the job's samples seen in ``start_epoch`` (all ranks together).
        """
        for epoch in range(start_epoch, end_epoch):
            first = start_sample if epoch == start_epoch else 0
            batches = self.epoch(epoch, first)
            done = -(-first // (self.batch_size * self.world))  # steps of this world that sample count is
            for k, indices in enumerate(batches):
                yield epoch, done + k + 1, done + len(batches), indices

    def samples_per_step(self, indices: list[int]) -> int:
        """Samples the whole job reads in a step where this rank reads ``indices`` (every rank reads as many)."""
        return len(indices) * self.world


class PlanSampler:
    """A DataLoader ``batch_sampler`` yielding ``[(epoch, index), ...]`` along a :class:`BatchPlan`."""

    def __init__(self, plan: BatchPlan, start_epoch: int, start_sample: int, end_epoch: int) -> None:
        self.plan, self.start_epoch, self.start_sample, self.end_epoch = plan, start_epoch, start_sample, end_epoch

    def __iter__(self) -> Iterator[Batch]:
        for epoch, _, _, indices in self.plan.steps(self.start_epoch, self.start_sample, self.end_epoch):
            yield [(epoch, i) for i in indices]

    def __len__(self) -> int:
        return sum(1 for _ in self.plan.steps(self.start_epoch, self.start_sample, self.end_epoch))


class EpochItems:
    """A dataset answering ``(epoch, index)``: sets the epoch on its own copy, then reads the item."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        self.dataset.set_epoch(epoch)
        return self.dataset[index]


def run_loader(dataset: Any, sampler: PlanSampler, num_workers: int, pin_memory: bool,
               worker_init: Optional[Callable[[int], None]] = None) -> Any:
    """One DataLoader for the rest of the run (workers persist and prefetch across epochs)."""
    import torch
    from torch.utils.data import DataLoader

    kwargs: dict = {}
    if num_workers > 0:
        kwargs = {"persistent_workers": True, "prefetch_factor": 4, "worker_init_fn": worker_init}
    return DataLoader(EpochItems(dataset), batch_sampler=sampler, num_workers=num_workers,
                      pin_memory=pin_memory, generator=torch.Generator(), **kwargs)
