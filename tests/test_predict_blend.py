"""The predictor's arithmetic as pure array code: tile grid, panels, row bands, the blender and the
final pixels, without threads or files (what the file-level tests of test_predict.py rely on)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from conftest import conv1x1, make_spec, scene
from geogan.bands import denormalize, normalize
from geogan.predict.grid import DevicePixels, RowBlender, TileGrid, blend_array, plan_panels, tile_span
from geogan.predict.stages import ArrayRecycler, Denormaliser, Normaliser
from geogan.tiling import blend_window, pad_reflect, seam_positions, tile_origins


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


def identity(x):
    return x


# --------------------------------------------------------------------------- the tiling maths and the plan

@pytest.mark.parametrize("tile,overlap", [(64, 16), (32, 0), (48, 20), (16, 7)])
def test_tile_grid_covers_the_scene_with_margin(tile, overlap):
    for length in list(range(1, 200)) + [1000, 4097]:
        origins = tile_origins(length, tile, overlap)
        assert origins[0] <= -(overlap // 2) or len(origins) == 1
        assert origins[-1] + tile >= length + overlap // 2
        assert all(b - a == tile - overlap for a, b in zip(origins, origins[1:]))
        for s in seam_positions(length, tile, overlap):
            assert 0 < s < length


@pytest.mark.parametrize("blend", ["hann", "linear"])
def test_blend_windows_sum_to_one_across_an_overlap(blend):
    t, o = 32, 12
    a, b = blend_window(t, o, blend), blend_window(t, o, blend)
    np.testing.assert_allclose(a[t - o:] + b[:o], 1.0)
    assert (a > 0).all() and a[o:t - o].min() == 1.0


def test_pad_reflect_falls_back_for_tiny_axes():
    a = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    out = pad_reflect(a, ((0, 0), (5, 7), (4, 9)))
    assert out.shape == (1, 14, 16)
    one = pad_reflect(np.ones((1, 1, 1), np.float32), ((0, 0), (3, 3), (3, 3)))
    assert one.shape == (1, 7, 7) and (one == 1).all()


@pytest.mark.parametrize("width,max_width,block", [(1000, 256, 64), (50_000, 8192, 256), (300, 8192, 256),
                                                    (513, 100, 16), (7, 4, 16)])
def test_panels_partition_the_columns_on_block_edges(width, max_width, block):
    grid = TileGrid.for_scene(64, width, 64, 16, "hann")
    panels = plan_panels(grid, max_width, block)
    assert panels[0].x0 == 0 and panels[-1].x1 == width
    assert all(a.x1 == b.x0 for a, b in zip(panels, panels[1:]))
    for p in panels:
        assert p.x0 % block == 0 and p.width > 0
        assert p.width <= max(max_width, block) + block  # rounding the edges to blocks moves them by < 1 block
        touching = [j for j, c in enumerate(grid.cols) if c < p.x1 and c + grid.tile > p.x0]
        assert list(range(p.j0, p.j1)) == touching
        # the padded read is exactly the span of its tiles
        assert p.pad_left + (p.read_x1 - p.read_x0) + p.pad_right == grid.cols[p.j1 - 1] + grid.tile - grid.cols[p.j0]
        for j in range(p.j0, p.j1):
            a, b, u0, u1 = tile_span(grid, p, j)
            assert 0 <= a < b <= p.width and b - a == u1 - u0


@pytest.mark.parametrize("height,tile,overlap", [(1, 16, 4), (5, 16, 7), (300, 64, 16), (1000, 48, 20), (97, 32, 0)])
def test_row_blocks_partition_the_rows(height, tile, overlap):
    grid = TileGrid.for_scene(height, 10, tile, overlap, "hann")
    rows = []
    for k in range(grid.n_row_blocks):
        g0, y0, y1 = grid.row_block(k)
        rows.extend(range(y0, y1))
        assert g0 == grid.rows[0] + k * grid.stride
    assert rows == list(range(height))


# --------------------------------------------------------------------------- exact results

SIZES = [(300, 410), (128, 128), (40, 50), (3, 5), (1, 1)]


@pytest.mark.parametrize("blend", ["hann", "linear", "none"])
@pytest.mark.parametrize("shape", SIZES)
@pytest.mark.parametrize("tile,overlap", [(64, 16), (48, 20), (32, 0)])
def test_identity_reproduces_the_array_everywhere(shape, blend, tile, overlap):
    x = scene(shape, lo=-1, hi=1)
    out = blend_array(x, identity, tile, overlap, blend, panel_width=64)
    np.testing.assert_allclose(out, x, rtol=2e-6, atol=1e-7)


def test_a_constant_output_stays_constant_across_every_overlap_and_corner():
    out = blend_array(scene((150, 210)), lambda t: torch.full_like(t, 0.375), 32, 12, "hann", panel_width=48)
    np.testing.assert_allclose(out, 0.375, rtol=1e-6)  # Σw·c / Σw: only float rounding


@pytest.mark.parametrize("blend", ["hann", "linear", "none"])
def test_per_pixel_network_changing_band_count(blend):
    conv = conv1x1(2, 3)
    x = scene((77, 130))
    with torch.no_grad():
        out = blend_array(x, conv, 32, 10, blend, panel_width=48)
    w = conv.weight.detach().numpy()[:, :, 0, 0].astype(np.float64)
    expected = np.einsum("oi,ihw->ohw", w, x.astype(np.float64)) + conv.bias.detach().numpy()[:, None, None]
    assert out.shape == (3, 77, 130)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("panel_width", [10_000, 48])
def test_none_blend_takes_each_pixel_from_the_tile_that_owns_it(panel_width):
    """A network that paints each tile a different constant: the output changes exactly at the seams,
    also where panels meet (a tile straddling two panels is translated in both, to the same value)."""

    def tile_id(t):
        # a value that depends only on the tile's content, so a tile translated twice paints alike
        return t.mean(dim=(1, 2, 3), keepdim=True).expand_as(t).clone()

    x = scene((100, 150), n=1, seed=4)
    out = blend_array(x, tile_id, 32, 12, "none", panel_width=panel_width)
    col_changes = sorted({int(c) + 1 for c in np.nonzero(np.diff(out[0], axis=1))[1]})
    row_changes = sorted({int(r) + 1 for r in np.nonzero(np.diff(out[0], axis=0))[0]})
    assert col_changes == seam_positions(150, 32, 12)
    assert row_changes == seam_positions(100, 32, 12)


def test_spatial_network_with_centre_crop_matches_whole_array_reflect_padding():
    """3x3 convolution (zero padding inside each tile): with blend none and overlap >= 2 every pixel,
    edges included, equals the convolution of the whole array with reflect padding."""
    conv = nn.Conv2d(1, 1, 3, padding=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(9, dtype=torch.float32).reshape(1, 1, 3, 3) / 40.0)
    x = scene((61, 83), n=1)
    with torch.no_grad():
        out = blend_array(x, conv, 24, 6, "none", panel_width=32)
        padded = torch.from_numpy(np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="reflect"))[None]
        ref = torch.nn.functional.conv2d(padded, conv.weight).numpy()[0]
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("blend", ["hann", "linear", "none"])
def test_panels_do_not_change_the_result(blend):
    """Each pixel sums the same tiles' terms in the same order whatever the panels: bit-identical
    (tiles go through the network one by one here: a convolution's rounding may depend on the batch)."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.InstanceNorm2d(4), nn.Tanh(), nn.Conv2d(4, 3, 3, padding=1))

    def one_by_one(t):
        return torch.cat([net(t[i:i + 1]) for i in range(t.shape[0])])

    x = scene((90, 333), lo=-1, hi=1)
    with torch.no_grad():
        whole = blend_array(x, one_by_one, 32, 8, blend, panel_width=100_000)
        for width in (16, 48, 64, 100):
            np.testing.assert_array_equal(blend_array(x, one_by_one, 32, 8, blend, panel_width=width), whole)


# --------------------------------------------------------------------------- the blender alone

@pytest.mark.parametrize("device", [None, "cpu"])
def test_the_row_blender_finishes_only_the_row_blocks_tiles_reached(device):
    grid = TileGrid.for_scene(100, 40, 32, 8, "hann")
    panel = plan_panels(grid, 1000, 16)[0]
    blender = RowBlender(grid, panel, 2, device)
    assert blender.finish(0)[2] is None  # nothing added
    ones = np.ones((2, 32, 32), np.float32) if device is None else torch.ones(2, 32, 32)
    blender.add(ones, 1, 0)
    assert blender.pending() == [1, 2]
    for r in range(grid.n_rows):  # every tile: Σw·c / Σw = c wherever tiles reached
        for j in range(panel.j0, panel.j1):
            if (r, j) != (1, 0):
                blender.add(ones, r, j)
    _, y0, y1 = grid.row_block(1)
    b0, b1, rows = blender.finish(1)
    assert (b0, b1) == (y0, y1) and tuple(rows.shape) == (2, y1 - y0, 40)
    np.testing.assert_allclose(np.asarray(rows), 1.0, rtol=1e-6)
    assert 1 not in blender.pending()


@pytest.mark.parametrize("skip", [(), ((0, 1), (2, 0), (2, 2)), "all-but-one"])
def test_the_host_blender_copies_first_terms_and_equals_zeroed_sums(skip):
    """On the host a row block is never zeroed: a pixel's first term is copied, later ones added.
    Bit for bit what adding every term to zeros gives (the device's way), including tiles that
    are skipped (no valid pixel: pixels no tile reached stay exactly 0) and panels cut mid-tile."""
    rng = np.random.default_rng(7)
    grid = TileGrid.for_scene(90, 100, 32, 10, "hann")
    for panel in plan_panels(grid, 48, 16):
        host, device = RowBlender(grid, panel, 3), RowBlender(grid, panel, 3, "cpu")
        tiles = [(r, j) for r in range(grid.n_rows) for j in range(panel.j0, panel.j1)]
        keep = tiles[:1] if skip == "all-but-one" else [t for t in tiles if t not in skip]
        for r, j in keep:
            y = rng.normal(size=(3, 32, 32)).astype(np.float32)
            host.add(y.copy(), r, j)
            device.add(torch.from_numpy(y.copy()), r, j)
        for k in range(grid.n_row_blocks):
            got, want = host.finish(k), device.finish(k)
            assert got[:2] == want[:2]
            if want[2] is None:
                assert got[2] is None
            else:
                np.testing.assert_array_equal(got[2], want[2].numpy())


def test_normalised_weights_sum_to_one_over_every_pixel_of_the_grid():
    """w / Σw of every tile, placed on the grid, sums to 1 at every pixel (edges and corners too)."""
    for blend in ("hann", "linear", "none"):
        grid = TileGrid.for_scene(70, 90, 32, 10, blend)
        total = np.zeros((grid.rows[-1] + 32 - grid.rows[0], grid.cols[-1] + 32 - grid.cols[0]))
        for r, a in enumerate(grid.rows):
            for j, c in enumerate(grid.cols):
                total[a - grid.rows[0]:a - grid.rows[0] + 32, c - grid.cols[0]:c - grid.cols[0] + 32] += \
                    grid.weights(r, j)
        np.testing.assert_allclose(total, 1.0, rtol=1e-6)


# --------------------------------------------------------------------------- final pixels on the device

@pytest.mark.parametrize("kind,dtype,nodata,units", [
    ("optical", "uint8", 0, None), ("optical", "uint8", 255, None), ("optical", "uint8", None, None),
    ("multispectral", "uint16", 0, None), ("dsm", "int16", -32768, None), ("generic", "int32", None, None),
    ("generic", "uint32", 0, None), ("dsm", "float32", -9999.0, None), ("generic", "float64", None, None),
    ("sar", "float32", None, "linear"), ("sar", "float32", 0.0, "amplitude"), ("sar", "float32", None, "db"),
])
def test_device_pixels_equal_the_numpy_denormalisation(kind, dtype, nodata, units):
    import dataclasses

    lo, hi = {"uint8": (0, 255), "uint16": (0, 4000), "int16": (-50, 900)}.get(dtype, (-3.0, 7.0))
    spec = dataclasses.replace(make_spec(kind, 3, dtype, nodata=nodata, lo=lo, hi=hi), units=units)
    rng = np.random.default_rng(1)
    y = (rng.standard_normal((3, 37, 41)) * 1.5).astype(np.float32)
    y[0, 0, :4] = [-1.0, 1.0, -1.0 - 2e-7, 0.0]  # the range's ends and beyond: clipping, nodata keep-off
    pixels = DevicePixels(spec)
    got = pixels.to_numpy(pixels(torch.from_numpy(y)))
    want = denormalize(y, spec)
    host = Denormaliser(spec)(y.copy(), np.ones(y.shape[1:], bool))  # the CPU writer's, in place
    assert host.dtype == want.dtype
    if kind == "sar" and units != "db":
        np.testing.assert_allclose(host, got, rtol=2e-7)  # numpy's and torch's exp may differ by one ulp
    else:
        np.testing.assert_array_equal(host, got)
    assert got.dtype == want.dtype == np.dtype(dtype)
    if kind == "sar" and units != "db":
        np.testing.assert_allclose(got, want, rtol=2e-7)  # exp may differ by one ulp
    else:
        np.testing.assert_array_equal(got, want)
    if nodata is not None and np.isfinite(nodata):
        assert not (got == nodata).any()


@pytest.mark.parametrize("kind,units", [("sar", "linear"), ("sar", "amplitude"), ("sar", "db"), ("optical", None),
                                        ("dsm", None)])
@pytest.mark.parametrize("holes", [True, False])
def test_the_readers_fused_normalisation_equals_normalize(kind, units, holes):
    """With invalid pixels, and with none (then nothing is zeroed: one pass less)."""
    rng = np.random.default_rng(5)
    spec = make_spec(kind, 2, "float32", lo=-40.0 if kind == "dsm" else 1.0, hi=900.0)
    data = (rng.random((2, 33, 47)) * (-30 if units == "db" else 2.0)).astype(np.float32)
    if units != "db":
        data += np.float32(1e-3)  # positive: valid power or amplitude
    if holes:
        data[0, 0, :3] = [np.nan, np.inf, 0.0]
    valid = (rng.random((33, 47)) > (0.2 if holes else -1.0)) & np.isfinite(data).all(axis=0)  # as valid_mask
    want = normalize(data, spec, valid, units=units)
    got = Normaliser(spec, units)(data.copy(), valid)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-6)
    assert (got[:, ~valid] == 0).all()


def test_the_writers_denormalisation_puts_nodata_where_the_input_was_invalid():
    spec = make_spec("optical", 3, "uint8", nodata=0, lo=0, hi=255)
    y = np.zeros((3, 4, 5), np.float32)
    valid = np.ones((4, 5), bool)
    valid[1, 2] = False
    out = Denormaliser(spec)(y, valid)
    assert out.dtype == np.uint8 and (out[:, 1, 2] == 0).all() and (np.delete(out.reshape(3, -1), 7, 1) == 128).all()


def test_the_writers_denormalisation_into_a_callers_array_equals_its_own():
    spec = make_spec("optical", 3, "uint8", nodata=0, lo=0, hi=255)
    y = np.random.default_rng(2).uniform(-1.2, 1.2, (3, 6, 7)).astype(np.float32)
    valid = np.ones((6, 7), bool)
    valid[2, 3] = False
    want = Denormaliser(spec)(y.copy(), valid)
    stage = np.full((3, 10, 7), 77, np.uint8)
    got = Denormaliser(spec)(y.copy(), valid, out=stage[:, 2:8])
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(stage[:, 2:8], want)
    assert (stage[:, :2] == 77).all() and (stage[:, 8:] == 77).all()


def test_the_array_recycler_reuses_only_arrays_nothing_refers_to():
    arrays = ArrayRecycler()
    a = arrays.empty((2, 5, 6))
    b = arrays.empty((2, 5, 6))
    assert a is not b and a.shape == (2, 5, 6) and a.dtype == np.float32
    a_id = id(a)
    view = a[1, 2:]
    del a
    assert id(arrays.empty((2, 5, 6))) != a_id  # a view still refers to it
    del view
    c = arrays.empty((2, 5, 6))
    assert id(c) == a_id  # free again: the same memory
    tensor = torch.from_numpy(c)
    del c
    assert id(arrays.empty((2, 5, 6))) != a_id  # a tensor made from it holds it
    del tensor
    other = arrays.empty((2, 5, 6), np.uint8)  # another dtype: another array; the free ones are let go
    assert other.dtype == np.uint8
    assert len(arrays._arrays) == 2 and any(x is b for x in arrays._arrays)  # b is still in use: kept
