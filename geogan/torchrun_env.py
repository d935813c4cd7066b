"""This process's place in a ``torchrun`` job, read from the environment once, for every command.

torchrun (or any launcher speaking its protocol) sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE`` and ``GROUP_RANK`` (the node); outside a launcher none is set and the process
is the whole job: world 1, rank 0, local rank 0, one local process, node 0. A value that is not a
non-negative integer, or a rank outside the world, is one :class:`ConfigError` naming the variable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional

from .errors import ConfigError


@dataclass(frozen=True)
class JobPlace:
    """World size, global rank, local rank, processes on this node, and this node's index."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world: int = 1
    node: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes the job's files and prints its summary."""
        return self.rank == 0


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    text = env.get(name)
    if text is None or text.strip() == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"environment: {name}={text!r} is not an integer (set by torchrun or your "
                          "launcher)") from None
    if value < 0:
        raise ConfigError(f"environment: {name}={text!r} must be >= 0")
    return value


def job_place(env: Optional[Mapping[str, str]] = None) -> JobPlace:
    """The torchrun environment of this process (``os.environ`` unless ``env`` is given)."""
    env = os.environ if env is None else env
    world = max(1, _env_int(env, "WORLD_SIZE", 1))
    rank = _env_int(env, "RANK", 0)
    if rank >= world:
        raise ConfigError(f"environment: RANK={rank} is not below WORLD_SIZE={world}")
    local_world = max(1, _env_int(env, "LOCAL_WORLD_SIZE", 1)) if world > 1 else 1
    local_rank = _env_int(env, "LOCAL_RANK", 0) if world > 1 else 0
    if local_rank >= local_world and "LOCAL_WORLD_SIZE" in env:
        raise ConfigError(f"environment: LOCAL_RANK={local_rank} is not below LOCAL_WORLD_SIZE={local_world}")
    return JobPlace(world, rank, local_rank, local_world, _env_int(env, "GROUP_RANK", 0) if world > 1 else 0)
