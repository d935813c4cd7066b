"""translate_raster through files and threads: the same results as the pure blending
(test_predict_blend.py) across panels, strips and read workers, grids and nodata kept, atomic
output, COG, every bad input, and a real (tiny) ResNet run."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from conftest import make_spec, scene, write_raster
from geogan import errors
from geogan.bands import DomainSpec, denormalize, normalize
from geogan.modelfile import TranslationModel, save_model
from geogan.models.generators import ResnetGenerator
from geogan.predict import PredictionResult, tile_origins, translate_raster
from geogan.predict.grid import blend_array


# --------------------------------------------------------------------------- helpers

class Identity(nn.Module):
    def forward(self, x):
        return x


def identity_model(spec: DomainSpec, multiple: int = 4) -> TranslationModel:
    return TranslationModel({"a": spec, "b": spec}, {"a2b": Identity()},
                            {"model": "pix2pix", "generator": "identity", "size_multiple": multiple})


def expected_conv1x1(conv: nn.Conv2d, x: np.ndarray) -> np.ndarray:
    w = conv.weight.detach().numpy()[:, :, 0, 0].astype(np.float64)
    b = conv.bias.detach().numpy().astype(np.float64)
    return np.einsum("oi,ihw->ohw", w, x.astype(np.float64)) + b[:, None, None]


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.profile, ds


def leftovers(directory, keep):
    return sorted(p.name for p in directory.iterdir() if p.name not in keep)


# --------------------------------------------------------------------------- exact results

@pytest.mark.parametrize("blend", ["hann", "linear", "none"])
@pytest.mark.parametrize("shape,tile,overlap", [((300, 410), 64, 16), ((40, 50), 48, 20), ((3, 5), 32, 0),
                                                ((1, 1), 32, 8)])
def test_identity_reproduces_the_scene_everywhere(tmp_path, shape, blend, tile, overlap):
    spec = make_spec()
    data = scene(shape)
    src = write_raster(tmp_path / "in.tif", data)
    result = translate_raster(identity_model(spec), src, tmp_path / "out.tif", blend=blend, tile_size=tile,
                              overlap=overlap, batch_size=3, device="cpu", panel_width=64)
    out, profile, _ = read(result)
    assert out.dtype == np.float32 and out.shape == data.shape
    np.testing.assert_allclose(out, data, rtol=2e-6, atol=1e-7)
    assert isinstance(result, PredictionResult) and os.fspath(result) == str(tmp_path / "out.tif")


@pytest.mark.parametrize("blend", ["hann", "none"])
@pytest.mark.parametrize("workers", [1, 4])
def test_the_pipeline_equals_the_pure_blending_across_panels_and_read_workers(tmp_path, monkeypatch, blend, workers):
    """Files, threads, panels, batches spanning rows and panels, block-aligned writes: the same numbers
    as blending the whole normalised array in memory, then denormalising it."""
    import geogan.predict.stages as stages

    monkeypatch.setattr(stages.os, "cpu_count", lambda: workers)
    torch.manual_seed(0)
    a, b = make_spec("sar", 2), make_spec("generic", 3, "float32", lo=-5.0, hi=5.0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 1))
    model = TranslationModel({"a": a, "b": b}, {"a2b": net}, {"generator": "x", "size_multiple": 4})
    data = (10 ** (scene((333, 290), lo=-20, hi=0) / 10)).astype(np.float32)
    src = write_raster(tmp_path / "in.tif", data)
    out, _, _ = read(translate_raster(model, src, tmp_path / "o.tif", tile_size=32, overlap=8, batch_size=5,
                                      blend=blend, panel_width=64, device="cpu"))
    with torch.no_grad():
        expected = denormalize(blend_array(normalize(data, a), net, 32, 8, blend, panel_width=64), b)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_the_linear_driver_equals_blend_array_on_random_scenes_tiles_and_overlaps(tmp_path, seed):
    """Random shapes (narrower and shorter than a tile too), tile sizes, overlaps, blends, panel widths
    and batch sizes, with nodata holes and a nodata border: a 3x3 network (it sees across seams) gives,
    through files and threads, the numbers of blend_array on the same normalised array; nodata where
    the input was invalid."""
    rng = np.random.default_rng(seed)
    tile = int(rng.choice([16, 24, 32, 48]))
    overlap = int(rng.integers(0, tile // 2))
    shape = (int(rng.integers(1, 160)), int(rng.integers(1, 200)))
    blend = str(rng.choice(["hann", "linear", "none"]))
    panel_width, batch = int(rng.choice([16, 48, 4096])), int(rng.integers(1, 9))
    torch.manual_seed(seed)
    a, b = make_spec("sar", 2), make_spec("generic", 3, "float32", lo=-5.0, hi=5.0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 3, 1))
    model = TranslationModel({"a": a, "b": b}, {"a2b": net}, {"generator": "x", "size_multiple": 4})
    data = (10 ** (scene(shape, lo=-20, hi=0, seed=seed) / 10)).astype(np.float32)
    h, w = shape
    data[:, rng.integers(0, h):rng.integers(0, h) + 9, rng.integers(0, w):rng.integers(0, w) + 13] = 0.0
    data[:, :, :int(rng.integers(0, max(1, w // 3)))] = 0.0  # a nodata border: tiles without a valid pixel
    valid = (data > 0).all(axis=0)
    if not valid.any():
        data[:, 0, -1], valid[0, -1] = 0.5, True
    src = write_raster(tmp_path / "in.tif", data, nodata=0.0)
    out, _, _ = read(translate_raster(model, src, tmp_path / "o.tif", tile_size=tile, overlap=overlap,
                                      batch_size=batch, blend=blend, panel_width=panel_width, device="cpu"))
    with torch.no_grad():
        expected = denormalize(blend_array(normalize(data, a, valid), net, tile, overlap, blend,
                                           panel_width=panel_width), b)
    np.testing.assert_allclose(out[:, valid], expected[:, valid], rtol=1e-5, atol=1e-5)
    assert np.isnan(out[:, ~valid]).all()


@pytest.mark.parametrize("kind,dtype", [("optical", "uint8"), ("generic", "float32"), ("sar", "float32")])
def test_the_gpu_paths_logic_on_the_cpu_gives_the_same_output(tmp_path, monkeypatch, kind, dtype):
    """Final pixels made next to the network (DevicePixels) and short batches run at full size, as on
    CUDA, against the CPU path: the same output (SAR: to float rounding of exp)."""
    import geogan.predict.scene as core
    from geogan.predict.scene import ScenePipeline

    class GpuLike(ScenePipeline):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, device_pixels=True, full_batches=True, **kwargs)

    spec = make_spec(kind, 2, dtype, nodata=0 if dtype == "uint8" else None, lo=10 if dtype == "uint8" else 0.1,
                     hi=240 if dtype == "uint8" else 0.9)
    data = scene((150, 97), lo=0.05, hi=0.95) if kind != "optical" else scene((150, 97), lo=1, hi=255).round()
    data = data.astype(np.float32)
    data[:, 10:20, 30:60] = np.nan
    src = write_raster(tmp_path / "in.tif", data)
    opts = dict(tile_size=32, overlap=8, batch_size=7, panel_width=64)
    plain = read(translate_raster(identity_model(spec), src, tmp_path / "cpu.tif", **opts))[0]
    monkeypatch.setattr(core, "ScenePipeline", GpuLike)
    gpu_like = read(translate_raster(identity_model(spec), src, tmp_path / "gpu.tif", **opts))[0]
    if kind == "sar":
        np.testing.assert_allclose(gpu_like, plain, rtol=1e-6)
    else:
        np.testing.assert_array_equal(gpu_like, plain)


@pytest.mark.parametrize("blend", ["hann", "none"])
def test_uint8_identity_is_exact_after_rounding(tmp_path, blend):
    spec = make_spec("optical", 3, "uint8", nodata=0, lo=20, hi=230)
    rng = np.random.default_rng(3)
    data = rng.integers(1, 256, size=(3, 150, 97)).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", data, nodata=0)
    out, profile, _ = read(translate_raster(identity_model(spec), src, tmp_path / "o.tif", tile_size=32,
                                            overlap=12, blend=blend))
    assert profile["dtype"] == "uint8" and profile["nodata"] == 0
    np.testing.assert_array_equal(out, data)


def test_sar_in_linear_power_round_trips_through_db(tmp_path):
    spec = make_spec("sar", 2)
    data = (10 ** (scene((90, 70), lo=-25, hi=3) / 10)).astype(np.float32)
    src = write_raster(tmp_path / "in.tif", data)
    out, _, _ = read(translate_raster(identity_model(spec), src, tmp_path / "o.tif", tile_size=32, overlap=8))
    np.testing.assert_allclose(out, data, rtol=1e-5)


def test_spatial_network_with_centre_crop_matches_whole_scene_reflect_padding(tmp_path):
    """3x3 convolution (zero padding inside each tile): with blend none and overlap >= 2 every pixel,
    edges included, equals the convolution of the whole scene with reflect padding; a nodata pixel
    (-9999) enters its neighbours only as the neutral 0."""
    spec = make_spec("generic", 1, "float32", nodata=-9999.0)
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3) / 40.0)
    model = TranslationModel({"a": spec, "b": spec}, {"a2b": conv}, {"generator": "c", "size_multiple": 1})
    data = scene((61, 83), n=1)
    data[0, 30, 40] = -9999.0
    src = write_raster(tmp_path / "in.tif", data, nodata=-9999.0)
    out, profile, _ = read(translate_raster(model, src, tmp_path / "o.tif", tile_size=24, overlap=6, blend="none"))
    valid = data[0] != -9999.0
    norm = normalize(data, spec, valid)
    padded = torch.from_numpy(np.pad(norm, ((0, 0), (1, 1), (1, 1)), mode="reflect"))[None]
    ref = torch.nn.functional.conv2d(padded, conv.weight).detach().numpy()[0]
    expected = denormalize(ref, spec)
    assert profile["nodata"] == -9999.0 and out[0, 30, 40] == -9999.0
    np.testing.assert_allclose(out[:, valid], expected[:, valid], rtol=1e-5, atol=1e-5)
    assert np.abs(out[0, 29:32, 39:42][valid[29:32, 39:42]]).max() < 10  # no -9999 leaking


# --------------------------------------------------------------------------- grids and nodata

@pytest.mark.parametrize("crs,origin,res", [("EPSG:4326", (12.5, 48.2), 0.0001),
                                            ("EPSG:3035", (4321000.0, 3210000.0), 20.0),
                                            ("EPSG:32633", (500000.0, 5000000.0), 10.0)])
def test_output_grid_equals_input_grid(tmp_path, crs, origin, res):
    spec = make_spec()
    src = write_raster(tmp_path / "in.tif", scene((70, 90)), crs=crs, origin=origin, res=res)
    result = translate_raster(identity_model(spec), src, tmp_path / "o.tif", tile_size=32, overlap=8)
    with rasterio.open(src) as a, rasterio.open(result) as b:
        assert (b.width, b.height, b.crs, b.transform) == (a.width, a.height, a.crs, a.transform)
        assert b.profile["tiled"] and b.compression is not None


def test_nodata_value_mask_nan_and_non_positive_sar_become_output_nodata(tmp_path):
    spec = make_spec("sar", 2)
    data = (10 ** (scene((80, 90), lo=-20, hi=0) / 10)).astype(np.float32)
    mask = np.ones((80, 90), bool)
    mask[10:20, 10:30] = False            # internal mask
    data[0, 50, 50] = np.nan              # NaN
    data[1, 60, 5] = 0.0                  # SAR power <= 0
    data[0, 70, 80] = -1.0
    src = write_raster(tmp_path / "in.tif", data, mask=mask)
    out, profile, _ = read(translate_raster(identity_model(spec), src, tmp_path / "o.tif", tile_size=32, overlap=8))
    invalid = ~mask
    invalid[50, 50] = invalid[60, 5] = invalid[70, 80] = True
    assert np.isnan(profile["nodata"])
    assert np.isnan(out[:, invalid]).all()
    np.testing.assert_allclose(out[:, ~invalid], data[:, ~invalid], rtol=1e-5)


def test_target_nodata_from_spec_and_defaults_per_dtype(tmp_path):
    a = make_spec("generic", 1, "float32", nodata=-5.0)
    for dtype, nd in (("uint8", 0), ("uint16", 0), ("int16", -32768), ("float32", None)):
        b = make_spec("optical", 1, dtype, lo=10, hi=200)
        model = TranslationModel({"a": a, "b": b}, {"a2b": Identity()}, {"generator": "x"})
        data = scene((20, 20), n=1)
        data[0, 3, 4] = -5.0
        out, profile, _ = read(translate_raster(model, write_raster(tmp_path / f"i{dtype}.tif", data, nodata=-5.0),
                                                tmp_path / f"o{dtype}.tif", tile_size=16, overlap=4))
        assert profile["dtype"] == dtype
        if nd is None:
            assert np.isnan(profile["nodata"]) and np.isnan(out[0, 3, 4])
        else:
            assert profile["nodata"] == nd and out[0, 3, 4] == nd
            assert (np.delete(out.ravel(), 3 * 20 + 4) != nd).all()


def test_fully_invalid_tiles_are_skipped_and_written_as_nodata(tmp_path):
    spec = make_spec("generic", 1, nodata=-1.0)
    data = scene((64, 200), n=1)
    data[:, :, :120] = -1.0
    calls = []

    class Counting(nn.Module):
        def forward(self, x):
            calls.append(x.shape[0])
            return x

    model = TranslationModel({"a": spec, "b": spec}, {"a2b": Counting()}, {"generator": "x"})
    result = translate_raster(model, write_raster(tmp_path / "i.tif", data, nodata=-1.0), tmp_path / "o.tif",
                              tile_size=32, overlap=8)
    out, _, _ = read(result)
    assert result.tiles_translated < result.tiles and sum(calls) == result.tiles_translated
    assert (out[:, :, :120] == -1.0).all()
    np.testing.assert_allclose(out[:, :, 120:], data[:, :, 120:], rtol=2e-6, atol=1e-7)


# --------------------------------------------------------------------------- atomic output, progress, cancel

class Exploding(nn.Module):
    def __init__(self, after: int):
        super().__init__()
        self.after, self.calls = after, 0

    def forward(self, x):
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("boom")
        return x


@pytest.mark.parametrize("cog", [False, True])
def test_failure_mid_scene_leaves_nothing(tmp_path, cog):
    spec = make_spec()
    src = write_raster(tmp_path / "in.tif", scene((200, 200)))
    model = TranslationModel({"a": spec, "b": spec}, {"a2b": Exploding(after=3)}, {"generator": "x"})
    with pytest.raises(RuntimeError, match="boom"):
        translate_raster(model, src, tmp_path / "out.tif", tile_size=32, overlap=8, batch_size=2, cog=cog)
    assert leftovers(tmp_path, {"in.tif"}) == []


def test_failure_keeps_an_existing_output_untouched(tmp_path):
    spec = make_spec()
    src = write_raster(tmp_path / "in.tif", scene((100, 100)))
    (tmp_path / "out.tif").write_bytes(b"old")
    model = TranslationModel({"a": spec, "b": spec}, {"a2b": Exploding(after=1)}, {"generator": "x"})
    with pytest.raises(RuntimeError):
        translate_raster(model, src, tmp_path / "out.tif", tile_size=32, overlap=8, overwrite=True)
    assert (tmp_path / "out.tif").read_bytes() == b"old"
    assert leftovers(tmp_path, {"in.tif", "out.tif"}) == []


def test_progress_counts_tiles_and_cancel_stops_within_a_batch(tmp_path, one_torch_thread):
    """(With one torch thread the network runs one batch at a time; with N, the N batches in flight
    when the cancel comes are the last.)"""
    spec = make_spec()
    src = write_raster(tmp_path / "in.tif", scene((200, 230)))
    seen = []
    translate_raster(identity_model(spec), src, tmp_path / "a.tif", tile_size=32, overlap=8,
                     progress=lambda d, t, m: seen.append((d, t)))
    total = len(tile_origins(200, 32, 8)) * len(tile_origins(230, 32, 8))
    assert seen[0] == (0, total) and seen[-1] == (total, total)

    class CancelAfter:
        def __init__(self):
            self.updates = 0

        def update(self, done, total, message=""):
            self.updates += 1

        def cancelled(self):
            return self.updates >= 3

    net = Exploding(after=10 ** 9)
    model = TranslationModel({"a": spec, "b": spec}, {"a2b": net}, {"generator": "x"})
    with pytest.raises(errors.Cancelled):
        translate_raster(model, src, tmp_path / "b.tif", tile_size=32, overlap=8, batch_size=4,
                         progress=CancelAfter())
    assert net.calls == 2  # the batch during which cancel was asked is the last one
    assert leftovers(tmp_path, {"in.tif", "a.tif"}) == []


def test_cog_output_is_a_valid_cloud_optimized_geotiff(tmp_path):
    spec = make_spec("optical", 3, "uint8", nodata=0, lo=20, hi=230)
    rng = np.random.default_rng(1)
    data = rng.integers(1, 256, size=(3, 600, 700)).astype(np.uint8)
    src = write_raster(tmp_path / "in.tif", data, nodata=0)
    result = translate_raster(identity_model(spec), src, tmp_path / "o.tif", tile_size=128, overlap=32,
                              batch_size=16, cog=True)
    with rasterio.open(result) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.overviews(1) and ds.profile["tiled"]
        assert ds.block_shapes[0] == (512, 512)
        np.testing.assert_array_equal(ds.read(), data)
    assert leftovers(tmp_path, {"in.tif", "o.tif"}) == []


# --------------------------------------------------------------------------- bad input

@pytest.fixture
def small(tmp_path):
    spec = make_spec()
    return identity_model(spec), write_raster(tmp_path / "in.tif", scene((40, 40)))


def test_bad_model_files(tmp_path, small):
    _, src = small
    with pytest.raises(errors.ModelFileError, match="no such model file"):
        translate_raster(tmp_path / "missing.geogan", src, tmp_path / "o.tif")
    (tmp_path / "junk.geogan").write_bytes(b"\x00garbage")
    with pytest.raises(errors.ModelFileError, match="junk.geogan"):
        translate_raster(tmp_path / "junk.geogan", src, tmp_path / "o.tif")
    torch.save({"hello": 1}, tmp_path / "other.geogan")
    with pytest.raises(errors.ModelFileError, match="not a geogan model"):
        translate_raster(tmp_path / "other.geogan", src, tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()


def test_direction_the_model_does_not_have(tmp_path, small):
    model, src = small
    with pytest.raises(errors.ModelFileError, match="cannot translate 'b2a' \\(it has: a2b\\)"):
        translate_raster(model, src, tmp_path / "o.tif", direction="b2a")


def test_band_count_mismatch_says_what_the_model_expects(tmp_path):
    model = identity_model(make_spec("sar", 2))
    src = write_raster(tmp_path / "three.tif", scene((30, 30), n=3))
    with pytest.raises(errors.BandMismatchError) as info:
        translate_raster(model, src, tmp_path / "o.tif")
    assert str(info.value) == f"model expects 2 band(s) (sar: bands 1,2); '{src}' has 3 — use --bands"
    out = translate_raster(model, src, tmp_path / "o.tif", bands="3,1", tile_size=16, overlap=4)
    data = scene((30, 30), n=3)
    np.testing.assert_allclose(read(out)[0], data[[2, 0]], rtol=1e-5)
    with pytest.raises(errors.BandMismatchError, match="--bands names 1"):
        translate_raster(model, src, tmp_path / "p.tif", bands="2")
    with pytest.raises(errors.BandMismatchError, match="do not exist"):
        translate_raster(model, src, tmp_path / "p.tif", bands="1,4")


def test_model_band_subset_is_picked_from_a_wider_input(tmp_path):
    spec = DomainSpec(kind="multispectral", bands=(4, 2), dtype="float32", nodata=None,
                      stats=make_spec(n=2).stats)
    data = scene((30, 30), n=5)
    src = write_raster(tmp_path / "five.tif", data)
    out = translate_raster(identity_model(spec), src, tmp_path / "o.tif", tile_size=16, overlap=4)
    np.testing.assert_allclose(read(out)[0], data[[3, 1]], rtol=1e-5)


def test_ungeoreferenced_input_needs_the_flag(tmp_path, caplog):
    model = identity_model(make_spec())
    data = scene((30, 30))
    src = write_raster(tmp_path / "plain.tif", data, crs=None)
    with pytest.raises(errors.RasterError, match="not georeferenced.*--allow-ungeoreferenced"):
        translate_raster(model, src, tmp_path / "o.tif")
    assert not (tmp_path / "o.tif").exists()
    with caplog.at_level(logging.WARNING, logger="geogan"):
        out = translate_raster(model, src, tmp_path / "o.tif", allow_ungeoreferenced=True, tile_size=16, overlap=4)
    assert "no CRS or geotransform" in caplog.text
    arr, profile, _ = read(out)
    assert profile["crs"] is None
    np.testing.assert_allclose(arr, data, rtol=1e-6)


def test_output_path_checks(tmp_path, small):
    model, src = small
    with pytest.raises(errors.OutputError, match="same as the input"):
        translate_raster(model, src, src, overwrite=True)
    (tmp_path / "exists.tif").write_bytes(b"x")
    with pytest.raises(errors.OutputError, match="already exists"):
        translate_raster(model, src, tmp_path / "exists.tif")
    translate_raster(model, src, tmp_path / "exists.tif", overwrite=True, tile_size=16, overlap=4)
    assert read(tmp_path / "exists.tif")[0].shape == (2, 40, 40)
    with pytest.raises(errors.OutputError, match="does not exist"):
        translate_raster(model, src, tmp_path / "nodir" / "o.tif")


def test_unwritable_output_directory(small, readonly_dir):
    # A read-only mount (conftest): as root, which CI runs as, a chmod'ed directory is writable.
    model, src = small
    with pytest.raises(errors.OutputError, match="not writable"):
        translate_raster(model, src, readonly_dir / "o.tif")
    assert list(readonly_dir.iterdir()) == []


@pytest.mark.parametrize("tile,overlap,match", [(30, 4, "not a positive multiple of 4"),
                                                 (32, 16, "does not fit"), (32, -1, "does not fit"),
                                                 (0, 0, "not a positive multiple")])
def test_tiling_that_does_not_fit_the_generator(tmp_path, small, tile, overlap, match):
    model, src = small
    with pytest.raises(errors.ConfigError, match=match):
        translate_raster(model, src, tmp_path / "o.tif", tile_size=tile, overlap=overlap)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA present")
def test_cuda_without_cuda_is_a_device_error(tmp_path, small):
    model, src = small
    with pytest.raises(errors.DeviceError, match="no CUDA"):
        translate_raster(model, src, tmp_path / "o.tif", device="cuda")
    with pytest.raises(errors.DeviceError):
        translate_raster(model, src, tmp_path / "o.tif", device="tpu")


def test_warns_on_resolution_and_statistics_unlike_training(tmp_path, caplog):
    model = identity_model(make_spec())
    src = write_raster(tmp_path / "coarse.tif", scene((40, 40), lo=50.0, hi=60.0), res=20.0)
    with caplog.at_level(logging.WARNING, logger="geogan"):
        translate_raster(model, src, tmp_path / "o.tif", tile_size=16, overlap=4)
    assert "differs by more than 10%" in caplog.text
    assert "looks unlike the training data" in caplog.text
    caplog.clear()
    ok = write_raster(tmp_path / "ok.tif", scene((40, 40)), res=10.5)
    with caplog.at_level(logging.WARNING, logger="geogan"):
        translate_raster(model, ok, tmp_path / "p.tif", tile_size=16, overlap=4)
    assert caplog.text == ""


def test_sar_in_db_given_to_a_linear_model_is_converted_with_a_warning(tmp_path, caplog):
    model = identity_model(make_spec("sar", 2))
    db = scene((40, 40), lo=-25, hi=-1)
    src = write_raster(tmp_path / "db.tif", db)
    with caplog.at_level(logging.WARNING, logger="geogan"):
        result = translate_raster(model, src, tmp_path / "o.tif", tile_size=16, overlap=4)
    assert "SAR in dB" in caplog.text and "trained on linear power; converting" in caplog.text
    assert result.units == "db"
    # the identity model writes the model's units: linear power of the same backscatter
    np.testing.assert_allclose(read(result)[0], 10 ** (db / 10), rtol=1e-5)


# --------------------------------------------------------------------------- a real network

@pytest.mark.parametrize("blend", ["hann", "linear", "none"])
def test_tiny_resnet_end_to_end(tmp_path, blend):
    torch.manual_seed(0)
    a, b = make_spec("sar", 2), make_spec("optical", 3, "uint8", nodata=0, lo=10, hi=240)
    net = ResnetGenerator(2, 3, ngf=4, n_blocks=1)
    model = TranslationModel({"a": a, "b": b}, {"a2b": net}, {"generator": "resnet", "size_multiple": 4})
    data = (10 ** (scene((90, 75), lo=-20, hi=0) / 10)).astype(np.float32)
    data[:, :10, :10] = 0.0
    src = write_raster(tmp_path / "in.tif", data, nodata=0.0)
    out, profile, _ = read(translate_raster(model, src, tmp_path / "o.tif", tile_size=32, overlap=8, blend=blend))
    invalid = (data <= 0).any(axis=0)
    assert out.shape == (3, 90, 75) and profile["dtype"] == "uint8"
    assert (out[:, invalid] == 0).all() and (out[:, ~invalid] != 0).all()
    assert len(np.unique(out)) > 10


def test_model_file_path_round_trip(tmp_path):
    from geogan.models.registry import build_generator

    torch.manual_seed(0)
    a, b = make_spec("sar", 2), make_spec("optical", 3, "uint8", nodata=0, lo=10, hi=240)
    net = build_generator("resnet_6blocks", 2, 3, ngf=4)
    arch = {"model": "cyclegan", "generator": "resnet_6blocks", "ngf": 4, "dropout": False, "size_multiple": 4}
    model = TranslationModel({"a": a, "b": b}, {"a2b": net, "b2a": build_generator("resnet_6blocks", 3, 2, ngf=4)},
                             arch)
    path = save_model(model, tmp_path / "m.geogan")
    data = (10 ** (scene((40, 44), lo=-20, hi=0) / 10)).astype(np.float32)
    src = write_raster(tmp_path / "in.tif", data)
    r1 = translate_raster(path, src, tmp_path / "a.tif", tile_size=32, overlap=8)
    r2 = translate_raster(model, src, tmp_path / "b.tif", tile_size=32, overlap=8)
    np.testing.assert_array_equal(read(r1)[0], read(r2)[0])
    back = translate_raster(path, r1, tmp_path / "c.tif", direction="b2a", tile_size=32, overlap=8)
    assert read(back)[0].shape == (2, 40, 44)


def test_write_failure_is_an_output_error_and_leaves_nothing(tmp_path, monkeypatch):
    import geogan.predict.stages as writer

    real, calls = writer.Denormaliser.__call__, []

    def disk_full(self, y, valid, out=None):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")
        return real(self, y, valid, out=out)

    monkeypatch.setattr(writer.Denormaliser, "__call__", disk_full)
    src = write_raster(tmp_path / "in.tif", scene((120, 60)))
    with pytest.raises(errors.OutputError, match="out.tif'.*writing failed.*No space left"):
        translate_raster(identity_model(make_spec()), src, tmp_path / "out.tif", tile_size=32, overlap=8)
    assert leftovers(tmp_path, {"in.tif"}) == []


@pytest.mark.parametrize("blend", ["hann", "none"])
def test_several_read_workers_keep_strips_in_order(tmp_path, monkeypatch, blend):
    import geogan.predict.stages as stages

    monkeypatch.setattr(stages.os, "cpu_count", lambda: 4)  # 4 chunk readers
    spec = make_spec("sar", 2)
    data = (10 ** (scene((333, 97), lo=-20, hi=0) / 10)).astype(np.float32)
    data[:, 100:140, 20:30] = 0.0
    src = write_raster(tmp_path / "in.tif", data, nodata=0.0)
    out, _, _ = read(translate_raster(identity_model(spec), src, tmp_path / "o.tif", tile_size=32, overlap=8,
                                      batch_size=5, blend=blend))
    valid = (data > 0).all(axis=0)
    np.testing.assert_allclose(out[:, valid], data[:, valid], rtol=1e-5)
    assert np.isnan(out[:, ~valid]).all()


def test_output_gets_ordinary_file_permissions(tmp_path):
    src = write_raster(tmp_path / "in.tif", scene((20, 20)))
    out = translate_raster(identity_model(make_spec()), src, tmp_path / "o.tif", tile_size=16, overlap=4)
    mask = os.umask(0)
    os.umask(mask)
    assert (os.stat(out).st_mode & 0o777) == (0o666 & ~mask)


def test_read_failure_is_a_raster_error_and_leaves_nothing(tmp_path, monkeypatch):
    import geogan.predict.stages as reader

    real, calls = reader.Normaliser.__call__, []

    def flaky(self, data, valid):
        calls.append(1)
        if len(calls) > 1:  # the second row chunk (256 rows each here): a failure mid-scene
            raise OSError(5, "Input/output error")
        return real(self, data, valid)

    monkeypatch.setattr(reader.Normaliser, "__call__", flaky)
    src = write_raster(tmp_path / "in.tif", scene((300, 40)))
    with pytest.raises(errors.RasterError, match="in.tif'.*reading failed.*Input/output error"):
        translate_raster(identity_model(make_spec()), src, tmp_path / "out.tif", tile_size=32, overlap=8)
    assert leftovers(tmp_path, {"in.tif"}) == []


def test_on_the_cpu_a_resnet_generator_translates_tile_by_tile_whatever_the_batch(tmp_path):
    """The ResNet generators' wide convolutions are faster for single images on the CPU (NNPACK),
    so the predictor sends a batch's tiles through them one by one: the pixels are then the same
    for every batch size, bit for bit. A network without such layers gets whole batches."""
    from geogan.predict.scene import Translator

    torch.manual_seed(0)
    net = ResnetGenerator(2, 3, ngf=16, n_blocks=1).eval()
    wide = Translator(net, torch.device("cpu"), None, False, 3, 32, "m", "a2b")
    narrow = Translator(nn.Conv2d(2, 3, 1), torch.device("cpu"), None, False, 3, 32, "m", "a2b")
    assert wide.one_by_one and not narrow.one_by_one
    a, b = make_spec("sar", 2), make_spec("generic", 3, "float32", lo=-5.0, hi=5.0)
    model = TranslationModel({"a": a, "b": b}, {"a2b": net}, {"generator": "resnet", "size_multiple": 4})
    src = write_raster(tmp_path / "in.tif", (10 ** (scene((90, 120), lo=-20, hi=0) / 10)).astype(np.float32))
    outs = [read(translate_raster(model, src, tmp_path / f"o{batch}.tif", tile_size=32, overlap=8,
                                  batch_size=batch, device="cpu"))[0] for batch in (1, 3, 8)]
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_a_scene_refused_after_its_reader_began_leaves_no_reader_behind(tmp_path, monkeypatch):
    """The reader starts decoding before the units are told; a refusal then stops it: no thread
    waits for units that never come, and nothing is written."""
    import threading

    from geogan.predict import scene as scene_module

    def refuse(*args, **kwargs):
        raise errors.RasterError("in.tif: refused for the test")

    monkeypatch.setattr(scene_module, "input_units", refuse)
    src = write_raster(tmp_path / "in.tif", scene((300, 200)))
    with pytest.raises(errors.RasterError, match="refused for the test"):
        translate_raster(identity_model(make_spec()), src, tmp_path / "out.tif", tile_size=32, overlap=8)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("geogan-read")]
    assert leftovers(tmp_path, {"in.tif"}) == []


def test_a_reader_begun_before_the_units_reads_what_one_given_them_reads(tmp_path):
    from geogan.predict.grid import TileGrid, plan_panels
    from geogan.predict.stages import UNITS_PENDING, PipelineState, StripReader
    from geogan.scenes import as_scene

    data = (10 ** (scene((150, 90), lo=-20, hi=0) / 10)).astype(np.float32)
    data[:, 5:9, 3:7] = 0.0
    src = as_scene(write_raster(tmp_path / "in.tif", data, nodata=0.0))
    spec, grid = make_spec("sar", 2), TileGrid.for_scene(150, 90, 32, 8, "hann")
    panels = plan_panels(grid, 64, 16)

    def strips(reader):  # the chunks stay referenced here, so none is reused while compared
        return [(s.panel.index, s.row, s.valid, [(c.y0, c.valid, c.data) for c in s.chunks or []])
                for s in reader.strips(panels, PipelineState())]

    early = StripReader(src, [1, 2], spec, UNITS_PENDING, grid, 2, chunk_rows=16)
    early.begin(panels[0])
    early.set_units("linear")
    got, want = strips(early), strips(StripReader(src, [1, 2], spec, "linear", grid, 2, chunk_rows=16))
    assert len(got) == len(want) == grid.n_rows * len(panels)
    for (p, r, valid, chunks), (p2, r2, valid2, chunks2) in zip(got, want):
        assert (p, r) == (p2, r2)
        np.testing.assert_array_equal(valid, valid2)
        assert [c[0] for c in chunks] == [c[0] for c in chunks2]
        for (_, v, d), (_, v2, d2) in zip(chunks, chunks2):
            np.testing.assert_array_equal(v, v2)
            np.testing.assert_array_equal(d, d2)
