"""Pure parts of the trainer: runtime defaults per device, the batch plan, wrapping networks for DDP."""
from __future__ import annotations

import pytest

from conftest import make_spec

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class FakeCuda:
    """A CUDA device of a given compute capability, for the choices alone (nothing runs on it)."""

    type = "cuda"
    index = 0

    def __init__(self, major: int) -> None:
        self.major = major


@pytest.fixture
def capability(monkeypatch):
    def install(major: int) -> FakeCuda:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, 0))
        return FakeCuda(major)

    return install


# --------------------------------------------------------------------------------------------
# runtime defaults
# --------------------------------------------------------------------------------------------
def test_cpu_defaults_are_fp32_contiguous_eager_without_workers():
    from geogan.config import TrainConfig
    from geogan.trainer.runtime import resolve_runtime

    rt = resolve_runtime(TrainConfig(), torch.device("cpu"), cores=16)
    assert (rt.precision, rt.channels_last, rt.compile, rt.num_workers, rt.cudnn_benchmark) == \
        (None, False, False, 0, False)
    assert rt.amp_dtype is None and rt.amp_mode == "off"


@pytest.mark.parametrize("major,precision", [(9, "bf16"), (8, "bf16"), (7, "fp16"), (6, "fp16")])
def test_cuda_defaults_follow_native_bf16(capability, major, precision):
    from geogan.config import TrainConfig
    from geogan.trainer.runtime import resolve_runtime

    rt = resolve_runtime(TrainConfig(), capability(major), local_world=1, cores=16)
    assert rt.precision == precision and rt.compile and not rt.channels_last and rt.cudnn_benchmark
    assert rt.num_workers == 4  # capped; the cores are plenty
    assert resolve_runtime(TrainConfig(), capability(major), local_world=8, cores=16).num_workers == 1
    assert resolve_runtime(TrainConfig(num_workers=0), capability(major), cores=16).num_workers == 0


def test_explicit_settings_win_and_bad_ones_are_one_line(capability):
    from geogan.config import TrainConfig
    from geogan.errors import ConfigError
    from geogan.trainer.runtime import resolve_runtime

    rt = resolve_runtime(TrainConfig(amp="off", compile=False, channels_last="on"), capability(9))
    assert (rt.precision, rt.compile, rt.channels_last) == (None, False, True)
    assert resolve_runtime(TrainConfig(compile="on"), torch.device("cpu")).compile is True
    with pytest.raises(ConfigError, match="fp16"):
        resolve_runtime(TrainConfig(amp="fp16"), torch.device("cpu"))
    with pytest.raises(ConfigError, match="bf16 is not native"):
        resolve_runtime(TrainConfig(amp="bf16"), capability(7))
    with pytest.raises(ConfigError, match="device"):
        TrainConfig(device="gpu0")
    with pytest.raises(ConfigError, match="num_workers"):
        TrainConfig(num_workers=-1)
    assert TrainConfig(device="cuda:3").device == "cuda:3"


def test_cudnn_benchmark_is_restored_after_the_run():
    from geogan.trainer.runtime import Runtime, cudnn_settings

    before = torch.backends.cudnn.benchmark
    with cudnn_settings(Runtime("bf16", False, True, 4, cudnn_benchmark=True)):
        assert torch.backends.cudnn.benchmark is True
    assert torch.backends.cudnn.benchmark == before


# --------------------------------------------------------------------------------------------
# the batch plan: a pure function of seed, epoch, rank and world size
# --------------------------------------------------------------------------------------------
def test_plan_resumes_exactly_and_ranks_partition_each_epoch():
    from geogan.trainer.batches import BatchPlan, PlanSampler

    plan = BatchPlan(length=7, batch_size=2, seed=3)
    full = list(plan.steps(0, 0, 3))
    assert [s[:3] for s in full[:5]] == [(0, 1, 4), (0, 2, 4), (0, 3, 4), (0, 4, 4), (1, 1, 4)]
    assert sorted(i for s in full[:4] for i in s[3]) == list(range(7))  # each epoch sees every item once
    assert full[4][3] != full[0][3]  # and another order the next epoch
    assert list(plan.steps(1, 4, 3)) == full[6:]  # resuming at epoch 1 after 4 samples continues the same way
    assert list(PlanSampler(plan, 1, 4, 3)) == [[(e, i) for i in idx] for e, _, _, idx in full[6:]]
    assert len(PlanSampler(plan, 1, 4, 3)) == len(full) - 6

    ranks = [BatchPlan(length=8, batch_size=1, seed=3, world=2, rank=r).epoch(0) for r in range(2)]
    single = BatchPlan(length=8, batch_size=2, seed=3).epoch(0)
    assert [a + b for a, b in zip(*ranks)] == single  # rank r takes the r-th item of each batch of 2


@pytest.mark.parametrize("length", [7, 8, 12])
def test_the_plan_is_distributed_samplers_and_a_resume_on_another_world_covers_the_epoch_once(length):
    """The job's reads after k steps are a prefix of the epoch's order, so the rest of the epoch can be
    split between any number of ranks: every chip once per epoch (padding as DistributedSampler's)."""
    from torch.utils.data import DistributedSampler

    from geogan.trainer.batches import BatchPlan

    for world in (1, 2, 3):
        for rank in range(world):
            sampler = DistributedSampler(range(length), num_replicas=world, rank=rank, seed=5)
            sampler.set_epoch(2)
            flat = [i for b in BatchPlan(length, 2, 5, world, rank).epoch(2) for i in b]
            assert flat == list(sampler)  # from sample 0: exactly DistributedSampler's share
    before = [BatchPlan(length, 1, 5, 2, r).epoch(0)[:2] for r in range(2)]  # 2 steps on 2 ranks: 4 samples
    seen = [i for r in before for b in r for i in b]
    for new_world in (1, 2, 3):
        after = [i for r in range(new_world) for _, _, _, b in BatchPlan(length, 1, 5, new_world, r).steps(0, 4, 1)
                 for i in b]
        covered = seen + after
        assert set(covered) == set(range(length))  # every chip of the epoch is read
        assert len(covered) - length < new_world  # only DistributedSampler-style padding repeats one


def test_epoch_items_carry_their_epoch_into_the_worker():
    from geogan.trainer.batches import EpochItems

    class Recorder:
        epoch = None

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __len__(self):
            return 5

        def __getitem__(self, index):
            return (self.epoch, index)

    items = EpochItems(Recorder())
    assert len(items) == 5 and items[(3, 4)] == (3, 4) and items[(0, 1)] == (0, 1)


# --------------------------------------------------------------------------------------------
# networks in their own DDP (a world of one process, in this process)
# --------------------------------------------------------------------------------------------
@pytest.fixture
def world_of_one():
    import torch.distributed as dist

    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _batch(ca: int, cb: int, n: int = 2) -> dict:
    g = torch.Generator().manual_seed(0)
    return {"a": torch.rand(n, ca, 32, 32, generator=g) * 2 - 1, "b": torch.rand(n, cb, 32, 32, generator=g) * 2 - 1,
            "a_valid": torch.ones(n, 1, 32, 32, dtype=torch.bool), "b_valid": torch.ones(n, 1, 32, 32, dtype=torch.bool)}


@pytest.mark.parametrize("model", ["cyclegan", "pix2pix"])
def test_ddp_wrapped_step_equals_the_bare_step(world_of_one, model):
    """Freezing a DDP network (the discriminators in the generator step) takes it out of its
    reducer: three steps run without DDP waiting for gradients, and end bit-identical."""
    from geogan.config import TrainConfig
    from geogan.models.cyclegan import CycleGAN
    from geogan.models.pix2pix import Pix2Pix
    from torch.nn.parallel import DistributedDataParallel

    from geogan.models.wrapping import wrap_network

    cfg = TrainConfig(model=model, generator="resnet_6blocks", ngf=8, ndf=8, n_layers_d=2, pool_size=2, crop_size=32)
    cls = Pix2Pix if model == "pix2pix" else CycleGAN

    def run(ddp: bool) -> dict:
        torch.manual_seed(0)
        m = cls(cfg, make_spec("optical", 3), make_spec("optical", 3), torch.device("cpu"))
        if ddp:
            m.wrap_networks(lambda name, net: wrap_network(net, ddp=True))
            assert all(isinstance(n, DistributedDataParallel) for n in m.nets.values())
        for _ in range(3):
            m.set_input(_batch(3, 3))
            m.optimize_parameters()
        state = m.state_dict()["nets"]
        assert all(not k.startswith(("module.", "_orig_mod.")) for sd in state.values() for k in sd)
        return state

    bare, wrapped = run(False), run(True)
    for net in bare:
        for key in bare[net]:
            assert torch.equal(bare[net][key], wrapped[net][key]), (net, key)


def test_discriminator_features_run_through_ddps_forward(world_of_one):
    """The step asks discriminators for features as ``D(x, features=True)``: DDP's own forward, so
    their gradients sync; freezing takes a network out of its reducer and back."""
    from torch import nn

    from geogan.models.wrapping import set_frozen, unwrap, wrap_network

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3)

        def forward(self, x, features=False):
            y = self.conv(x)
            return [y, y.relu()] if features else y

    net = Net()
    ddp = wrap_network(net, ddp=True)
    for _ in range(2):  # a second step would fail if the first had left a reduction unfinished
        sum(f.sum() for f in ddp(torch.ones(1, 1, 5, 5), features=True)).backward()
    assert net.conv.weight.grad is not None and unwrap(ddp) is net
    set_frozen(ddp, True)
    assert not any(p.requires_grad for p in net.parameters()) and not ddp.require_backward_grad_sync
    set_frozen(ddp, False)
    assert ddp.require_backward_grad_sync


# --------------------------------------------------------------------------------------------
# the torchrun environment, read in one place
# --------------------------------------------------------------------------------------------
def test_job_place_reads_the_torchrun_environment_once_with_one_set_of_defaults():
    from geogan.errors import ConfigError
    from geogan.torchrun_env import JobPlace, job_place
    from geogan.trainer.distributed import Dist

    assert job_place({}) == JobPlace(1, 0, 0, 1, 0) and job_place({}).main and not job_place({}).distributed
    env = {"WORLD_SIZE": "8", "RANK": "5", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4", "GROUP_RANK": "1"}
    place = job_place(env)
    assert place == JobPlace(8, 5, 1, 4, 1) and place.distributed and not place.main
    dist = Dist(env)
    assert (dist.world, dist.rank, dist.local_rank, dist.place.local_world) == (8, 5, 1, 4)
    for bad, match in [({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is not below WORLD_SIZE=2"),
                       ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
                       ({"WORLD_SIZE": "2", "RANK": "-1"}, "must be >= 0"),
                       ({"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "2"}, "LOCAL_RANK=3")]:
        with pytest.raises(ConfigError, match=match):
            job_place(bad)


def test_a_ranks_own_error_is_its_own_even_when_it_mentions_nccl_or_gloo():
    """Only torch's DistError family (a peer gone or timed out) reads as another process's failure."""
    import torch.distributed as dist

    from geogan.trainer.distributed import is_collective_failure

    assert not is_collective_failure(RuntimeError("CUDA error: an illegal memory access (NCCL kernel)"))
    assert not is_collective_failure(RuntimeError("[gloo] something in this rank's own code"))
    assert is_collective_failure(dist.DistBackendError("Connection closed by peer"))
    from geogan.trainer.distributed import CollectiveFailure, _collective

    with pytest.raises(CollectiveFailure):  # gloo's plain RuntimeError inside a CPU-group message
        with _collective():
            raise RuntimeError("[pair.cc:553] Connection closed by peer")
    assert is_collective_failure(CollectiveFailure("x"))
    assert is_collective_failure(dist.DistNetworkError("timed out"))


def test_batch_norm_becomes_sync_batch_norm_with_the_same_parameters():
    from geogan.models.registry import build_generator
    from geogan.models.wrapping import sync_batch_norm

    net = build_generator("resnet_6blocks", 2, 3, ngf=4, norm="batch")
    params = [id(p) for p in net.parameters()]
    keys = list(net.state_dict())
    synced = sync_batch_norm(net)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())
    assert not any(type(m) is torch.nn.BatchNorm2d for m in synced.modules())
    assert [id(p) for p in synced.parameters()] == params  # the optimizer keeps stepping the same tensors
    assert list(synced.state_dict()) == keys  # checkpoints and model files keep their keys
