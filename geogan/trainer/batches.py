"""Which chips each step of the run reads, and one DataLoader for the whole run.

The order is a pure function of (seed, epoch, rank, world size): epoch ``e`` is the
``DistributedSampler`` permutation seeded with ``seed + e``, this rank's share cut into batches.
A resumed run therefore continues with exactly the batches an uninterrupted run would have
used, whatever the number of loader workers. Each index carries its epoch into the worker
(``(epoch, index)``), because workers keep their own copy of the dataset for the whole run:
the loader is built once, its workers persist, and they read ahead across epoch boundaries.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

Batch = list[tuple[int, int]]


@dataclass(frozen=True)
class BatchPlan:
    """The run's batches: ``length`` items per epoch split between ``world`` processes."""

    length: int
    batch_size: int
    seed: int
    world: int = 1
    rank: int = 0

    def epoch(self, epoch: int) -> list[list[int]]:
        """This rank's batches of ``epoch`` (dataset indices)."""
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(self.length), num_replicas=self.world, rank=self.rank,
                                     shuffle=True, seed=self.seed, drop_last=False)
        sampler.set_epoch(epoch)
        order = list(sampler)
        bs = self.batch_size
        return [order[i:i + bs] for i in range(0, len(order), bs)]

    def steps(self, start_epoch: int, start_batch: int, end_epoch: int) -> Iterator[tuple[int, int, int, list[int]]]:
        """``(epoch, batch number in the epoch (1-based), batches in the epoch, indices)`` from a position on."""
        for epoch in range(start_epoch, end_epoch):
            batches = self.epoch(epoch)
            first = start_batch if epoch == start_epoch else 0
            for k in range(first, len(batches)):
                yield epoch, k + 1, len(batches), batches[k]


class PlanSampler:
    """A DataLoader ``batch_sampler`` yielding ``[(epoch, index), ...]`` along a :class:`BatchPlan`."""

    def __init__(self, plan: BatchPlan, start_epoch: int, start_batch: int, end_epoch: int) -> None:
        self.plan, self.start_epoch, self.start_batch, self.end_epoch = plan, start_epoch, start_batch, end_epoch

    def __iter__(self) -> Iterator[Batch]:
        for epoch, _, _, indices in self.plan.steps(self.start_epoch, self.start_batch, self.end_epoch):
            yield [(epoch, i) for i in indices]

    def __len__(self) -> int:
        return sum(1 for _ in self.plan.steps(self.start_epoch, self.start_batch, self.end_epoch))


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
