"""Public API hygiene, errors, progress, raster I/O helpers, config loading and the model file."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import geogan
from geogan import errors
from geogan.config import TrainConfig, from_mapping, load_yaml
from geogan.progress import CallbackProgress, QgisFeedbackProgress, as_progress, check_cancelled
from geogan.raster import atomic_output, check_output_path, open_raster, parse_bands


def test_all_lists_exactly_the_public_names():
    import types

    public = {n for n in dir(geogan) if not n.startswith("_") and not isinstance(getattr(geogan, n), types.ModuleType)}
    public -= {"annotations", "Any"}
    assert set(geogan.__all__) - {"__version__"} == public
    for name in geogan.__all__:
        assert getattr(geogan, name) is not None


def test_import_is_cheap_and_silent():
    code = ("import logging, sys; root = list(logging.getLogger().handlers); import geogan; "
            "print(sorted(m for m in ('torch','rasterio','numpy') if m in sys.modules), "
            "logging.getLogger().handlers == root, "
            "[type(h).__name__ for h in logging.getLogger('geogan').handlers])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    # Nothing heavy, nothing printed, and logging left to the application (a NullHandler only).
    assert out.stdout.strip() == "[] True ['NullHandler']" and out.stderr == ""


def test_errors_are_also_builtins_under_one_root():
    assert issubclass(errors.InputNotFoundError, FileNotFoundError)
    assert issubclass(errors.RasterError, OSError)
    assert issubclass(errors.ConfigError, ValueError)
    for cls in (errors.InputError, errors.OutputError, errors.ConfigError, errors.BandMismatchError,
                errors.ModelFileError, errors.CheckpointError, errors.DeviceError, errors.Cancelled):
        assert issubclass(cls, errors.GeoganError)


class FakeClock:
    """Stands in for time.monotonic: the throttle sees only the time a test sets."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_adapters():
    seen = []
    p = as_progress(lambda d, t, m: seen.append((d, t, m)))
    p.update(1, 4, "x")
    assert seen == [(1, 4, "x")] and not p.cancelled()

    class Feedback:
        def __init__(self):
            self.progress, self.text, self.stop = [], [], False

        def setProgress(self, v):
            self.progress.append(v)

        def setProgressText(self, t):
            self.text.append(t)

        def isCanceled(self):
            return self.stop

    clock = FakeClock()
    fb = Feedback()
    q = QgisFeedbackProgress(fb, clock=clock)
    q.update(0, 4, "start")
    clock.now = 1.0
    q.update(1, 4, "tile 1")  # within TEXT_INTERVAL (2 s) of the last text: not another log line
    clock.now = 3.5
    q.update(2, 4, "tile 2")  # past it: shown
    q.update(3, 4, "tile 3")  # within the interval again: withheld
    q.update(4, 4, "done")  # a phase's last message always shows, even within the interval
    q.update(4, 4, "done")  # ... once; and the same percent is not sent twice
    assert fb.progress == [0.0, 25.0, 50.0, 75.0, 100.0] and fb.text == ["start", "tile 2", "done"]
    q.update(1, 3, "next phase")  # a new total: its first message shows at once, at any time
    assert fb.progress[-1] == pytest.approx(100 / 3) and fb.text[-1] == "next phase"
    fb.stop = True
    with pytest.raises(errors.Cancelled):
        check_cancelled(q, "translation")
    with pytest.raises(TypeError):
        as_progress(42)
    assert not CallbackProgress().cancelled()


def test_open_raster_errors_name_the_file(tmp_path, make_raster):
    with pytest.raises(errors.InputNotFoundError, match="nope.tif"):
        open_raster(tmp_path / "nope.tif")
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"not a tiff at all")
    with pytest.raises(errors.RasterError, match="junk.tif.*not a readable raster"):
        open_raster(junk)
    plain = make_raster("plain.tif", np.zeros((1, 8, 8), np.uint8), crs=None)
    with pytest.raises(errors.RasterError, match="not georeferenced"):
        open_raster(plain)
    with open_raster(plain, require_georeference=False) as ds:
        assert ds.count == 1


def test_pixel_size_and_area_of_a_rotated_grid(make_raster):
    """10 m pixels on a grid rotated by 30° are 10 x 10 m, not the cos 30° terms (8.66 m)."""
    from affine import Affine

    from geogan.raster import open_raster, resolution

    rotated = Affine.translation(500000.0, 5000000.0) * Affine.rotation(30) * Affine.scale(10.0, -10.0)
    path = make_raster("rot.tif", np.ones((1, 8, 8), np.float32), transform=rotated)
    with open_raster(path) as ds:
        assert resolution(ds) == pytest.approx((10.0, 10.0))


def test_parse_bands():
    assert parse_bands(None, 3, "x.tif") == [1, 2, 3]
    assert parse_bands("3,2, 1", 3, "x.tif") == [3, 2, 1]
    for bad in ("0", "4", "1,1", "a,b"):
        with pytest.raises(errors.BandMismatchError, match="x.tif"):
            parse_bands(bad, 3, "x.tif")


def test_atomic_output_leaves_nothing_on_failure(tmp_path):
    dst = tmp_path / "out.tif"
    with pytest.raises(RuntimeError):
        with atomic_output(dst) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(dst) as tmp:
        tmp.write_bytes(b"whole")
    assert dst.read_bytes() == b"whole" and list(tmp_path.iterdir()) == [dst]
    umask = os.umask(0)
    os.umask(umask)
    assert dst.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's private 0600


def test_check_output_path(tmp_path):
    src = tmp_path / "in.tif"
    src.write_bytes(b"x")
    with pytest.raises(errors.OutputError, match="same as the input"):
        check_output_path(src, overwrite=True, inputs=[src])
    with pytest.raises(errors.OutputError, match="already exists"):
        check_output_path(src)
    with pytest.raises(errors.OutputError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "o.tif")
    assert check_output_path(tmp_path / "o.tif") == tmp_path / "o.tif"


def test_check_output_path_refuses_a_read_only_directory(readonly_dir):
    # A real read-only mount: as root (CI) a chmod'ed directory would still be writable.
    with pytest.raises(errors.OutputError, match="readonly.*is not writable"):
        check_output_path(readonly_dir / "o.tif")


def test_fault_filesystems_fail_like_real_ones(small_fs, make_readonly_dir, tmp_path):
    """The conftest fixtures other tests rely on: ENOSPC on the small filesystem (and space
    given back when the filler goes), EROFS in the read-only directory, for root too."""
    import errno

    from conftest import fill_up

    full = small_fs(64)
    assert os.statvfs(full).f_blocks * os.statvfs(full).f_frsize == 64 * 1024
    with pytest.raises(OSError) as info:
        (full / "big").write_bytes(b"x" * 128 * 1024)
    assert info.value.errno == errno.ENOSPC
    (full / "big").unlink()
    filler = fill_up(full, leave_bytes=8 * 1024)
    (full / "small").write_bytes(b"x" * 4 * 1024)
    with pytest.raises(OSError, match="No space left"):
        (full / "more").write_bytes(b"x" * 16 * 1024)
    filler.unlink()
    (full / "more").write_bytes(b"x" * 16 * 1024)  # the disk freed up again

    ro = make_readonly_dir({"kept.tif": b"old"})
    assert (ro / "kept.tif").read_bytes() == b"old"
    for write in (lambda: (ro / "new.tif").write_bytes(b"x"), lambda: (ro / "kept.tif").write_bytes(b"y"),
                  lambda: os.rename(ro / "kept.tif", ro / "moved.tif")):
        with pytest.raises(OSError) as info:
            write()
        assert info.value.errno == errno.EROFS
    assert not os.access(ro, os.W_OK) and sorted(p.name for p in ro.iterdir()) == ["kept.tif"]


def test_the_wheel_ships_the_licence_and_py_typed(tmp_path):
    """Build the wheel from a copy of the sources (nothing written into the checkout)."""
    import configparser
    import shutil
    import zipfile
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.cfg", "pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "geogan", src / "geogan", ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True)
    if done.returncode != 0 and "No module named" in done.stderr:
        pytest.skip(f"cannot build a wheel here: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "dist").glob("geogan-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        assert "geogan/py.typed" in names
        licence = [n for n in names if n.endswith(".dist-info/licenses/LICENSE") or n.endswith(".dist-info/LICENSE")]
        assert licence and zf.read(licence[0]) == (root / "LICENSE").read_bytes()
        meta = zf.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(root / "setup.cfg")
    assert f"Version: {geogan.__version__}\n" in meta and "License: MIT\n" in meta
    assert f"Author-email: {cfg['metadata']['author_email']}\n" in meta
    assert "Requires-Dist: torch>=2.3\n" in meta  # torch.amp.GradScaler("cuda")
    assert "Copyright (c) 2026 the geogan developers" in (root / "LICENSE").read_text()


def test_config_rejects_unknown_keys_and_bad_values(tmp_path):
    with pytest.raises(errors.ConfigError, match="lambda_cycel"):
        from_mapping(TrainConfig, {"lambda_cycel": 5}, "cfg.yaml")
    with pytest.raises(errors.ConfigError, match="batch_size"):
        from_mapping(TrainConfig, {"batch_size": "four"}, "cfg.yaml")
    with pytest.raises(errors.ConfigError, match="model"):
        from_mapping(TrainConfig, {"model": "stylegan"}, "cfg.yaml")
    with pytest.raises(errors.ConfigError, match="lr"):
        from_mapping(TrainConfig, {"lr": -1.0}, "cfg.yaml")
    assert from_mapping(TrainConfig, {"lr": 1}, "cfg.yaml").lr == 1.0
    with pytest.raises(errors.ConfigError, match="lr: expected a number, got 'fast'"):
        from_mapping(TrainConfig, {"lr": "fast"}, "cfg.yaml")
    exponent = tmp_path / "exponent.yaml"
    exponent.write_text("lr: 5e-4\nlambda_l1: 1E+2\n")  # strings to PyYAML (YAML 1.1), numbers to users
    cfg = from_mapping(TrainConfig, load_yaml(exponent), "exponent.yaml")
    assert (cfg.lr, cfg.lambda_l1) == (5e-4, 100.0)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(errors.ConfigError, match="bad.yaml.*not valid YAML"):
        load_yaml(bad)


# --- model file ---------------------------------------------------------------------------

def _tiny_model():
    import torch
    from geogan.bands import BandStats, DomainSpec
    from geogan.modelfile import TranslationModel
    from geogan.models.registry import build_generator

    torch.manual_seed(0)

    def spec(kind, dtype, n):
        st = tuple(BandStats(band=i + 1, count=1, mean=0, std=1, min=0, max=200, p2=1, p98=180,
                             **({"p2_db": -25.0, "p98_db": -3.0} if kind == "sar" else {})) for i in range(n))
        return DomainSpec(kind=kind, bands=tuple(range(1, n + 1)), dtype=dtype, nodata=0, stats=st)

    domains = {"a": spec("sar", "float32", 2), "b": spec("optical", "uint8", 3)}
    gens = {"a2b": build_generator("resnet_6blocks", 2, 3, ngf=4), "b2a": build_generator("resnet_6blocks", 3, 2, ngf=4)}
    arch = {"model": "cyclegan", "generator": "resnet_6blocks", "ngf": 4, "dropout": False, "size_multiple": 4}
    return TranslationModel(domains, gens, arch, {"epochs": 1})


def test_model_file_round_trips_and_loads_with_weights_only(tmp_path):
    import torch
    from geogan.modelfile import load_model, save_model

    model = _tiny_model()
    path = save_model(model, tmp_path / "m.geogan")
    assert torch.load(path, weights_only=True)["format"] == "geogan-model"
    again = load_model(path)
    x = np.random.default_rng(0).gamma(2, 0.05, (2, 16, 16)).astype(np.float32)
    out = model.translate(x, "a2b")
    assert out.dtype == np.uint8 and out.shape == (3, 16, 16)
    np.testing.assert_array_equal(again.translate(x, "a2b"), out)
    assert again.domains == model.domains and again.training == {"epochs": 1}
    with pytest.raises(errors.ModelFileError, match="cannot translate"):
        again.translate(x, "c2d")


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_model_file_never_runs_embedded_code(tmp_path, monkeypatch):
    import torch

    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.geogan"
    torch.save({"format": "geogan-model", "payload": _Evil()}, evil)
    from geogan.modelfile import load_model

    with pytest.raises(errors.ModelFileError, match="evil.geogan"):
        load_model(evil)
    assert not (tmp_path / "pwned").exists()


def test_model_file_refuses_missing_corrupt_foreign_and_newer(tmp_path):
    import torch
    from geogan.modelfile import load_model, model_payload

    with pytest.raises(errors.ModelFileError) as exc:
        load_model(tmp_path / "none.geogan")
    assert isinstance(exc.value, FileNotFoundError)
    corrupt = tmp_path / "corrupt.geogan"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(errors.ModelFileError, match="corrupt.geogan"):
        load_model(corrupt)
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(errors.ModelFileError, match="not a geogan model"):
        load_model(foreign)
    newer = tmp_path / "newer.geogan"
    payload = model_payload(_tiny_model())
    payload["format_version"] = 99
    torch.save(payload, newer)
    with pytest.raises(errors.ModelFileError, match="newer"):
        load_model(newer)
    broken = tmp_path / "broken.geogan"
    payload = model_payload(_tiny_model())
    payload["generators"]["a2b"] = {"nonsense": torch.zeros(1)}
    torch.save(payload, broken)
    with pytest.raises(errors.ModelFileError, match="inconsistent"):
        load_model(broken)


def test_read_window_keeps_stored_values_under_an_internal_mask(make_raster):
    from rasterio.windows import Window

    from geogan.raster import read_window, valid_mask

    data = np.arange(1, 65, dtype=np.uint16).reshape(1, 8, 8)
    mask = np.ones((8, 8), bool)
    mask[2:4, 2:4] = False
    path = make_raster("masked.tif", data, mask=mask)
    with open_raster(path) as ds:
        got, masks = read_window(ds, [1], Window(0, 0, 8, 8))
        np.testing.assert_array_equal(got, data)  # values under the mask are not overwritten
        np.testing.assert_array_equal(valid_mask(ds, got, masks, "optical"), mask)
        outside, outside_masks = read_window(ds, [1], Window(-2, -2, 4, 4), boundless=True)
        assert (outside_masks[0, :2, :] == 0).all() and outside[0, 2, 2] == data[0, 0, 0]


@pytest.mark.parametrize("shape", [(2, 8, 5, 7), (1, 16, 1, 1), (1, 4, 2, 9)])
def test_resize_convolution_at_low_resolution_equals_upsample_pad_conv(shape):
    """ResizeConv2d computes nearest x2 -> reflect pad 1 -> 3x3 conv from the input's four phases:
    the same values and gradients (to float rounding) as the three layers it replaces, edges and
    1-pixel inputs included, and it takes their state dict (model files made before it load)."""
    import torch
    from torch import nn
    from geogan.models.generators import ResizeConv2d

    torch.manual_seed(0)
    n, cin, h, w = shape
    layer = ResizeConv2d(cin, 3)
    plain = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.ReflectionPad2d(1), nn.Conv2d(cin, 3, 3))
    nn.init.normal_(plain[2].weight)
    nn.init.normal_(plain[2].bias)
    layer.load_state_dict(plain[2].state_dict())
    assert list(layer.state_dict()) == ["weight", "bias"]
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    layer, plain = layer.double(), plain.double()
    got, want = layer(x), plain(x)
    assert got.shape == want.shape == (n, 3, 2 * h, 2 * w)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    g_got = torch.autograd.grad(got.square().sum(), [x, layer.weight, layer.bias])
    g_want = torch.autograd.grad(want.square().sum(), [x, plain[2].weight, plain[2].bias])
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("name,size", [("resnet_6blocks", 32), ("resnet_skip_6blocks", 32), ("unet_128", 128)])
def test_resize_upsampling_generators_keep_shapes_and_round_trip(tmp_path, name, size):
    import torch
    from geogan.modelfile import TranslationModel, load_model, save_model
    from geogan.models.registry import build_generator

    torch.manual_seed(0)
    net = build_generator(name, 2, 3, ngf=4, upsample="resize")
    assert not any(isinstance(m, torch.nn.ConvTranspose2d) for m in net.modules())
    assert net(torch.zeros(1, 2, size, size)).shape == (1, 3, size, size)
    base = _tiny_model()
    model = TranslationModel(base.domains, {"a2b": net}, {**base.architecture, "generator": name, "upsample": "resize"})
    again = load_model(save_model(model, tmp_path / "resize.geogan"))
    x = np.random.default_rng(0).gamma(2, 0.05, (2, size, size)).astype(np.float32)
    np.testing.assert_array_equal(again.translate(x, "a2b"), model.translate(x, "a2b"))
    with pytest.raises(errors.ConfigError, match="upsampling"):
        build_generator(name, 2, 3, upsample="bicubic")


# ------------------------------------------------------------------------- devices and precision

class _FakeDevice:
    type = "cuda"


@pytest.mark.parametrize("capability,expected", [((7, 0), "fp16"), ((7, 5), "fp16"), ((8, 0), "bf16"), ((9, 0), "bf16")])
def test_auto_precision_is_bf16_only_where_native(monkeypatch, capability, expected):
    import torch

    from geogan.devices import choose_precision

    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # says yes even when emulated
    assert choose_precision("auto", _FakeDevice()) == expected
    if expected == "fp16":
        with pytest.raises(errors.ConfigError, match="not native"):
            choose_precision("bf16", _FakeDevice())


def test_precision_on_the_cpu():
    import torch

    from geogan.devices import choose_precision

    cpu = torch.device("cpu")
    assert choose_precision("auto", cpu) is None and choose_precision(False, cpu) is None
    assert choose_precision("bf16", cpu) == "bf16"
    with pytest.raises(errors.ConfigError, match="fp16 needs a CUDA device"):
        choose_precision("fp16", cpu)
    with pytest.raises(errors.ConfigError, match="is not one of"):
        choose_precision("fp8", cpu)


def test_devices_that_do_not_exist_are_one_line(monkeypatch):
    import torch

    from geogan.devices import resolve_device
    from geogan.errors import DeviceError

    assert resolve_device("cpu").type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError, match=r"'cuda:7' requested but only 2 CUDA device\(s\) exist"):
        resolve_device("cuda:7")
    with pytest.raises(DeviceError, match="unknown device"):
        resolve_device("gpu0")
