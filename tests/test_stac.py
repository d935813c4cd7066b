"""Issue 23, STAC in and STAC out, on local STAC JSON built (with pystac) from the real BigEarthNet
patches in sample_data/bigearthnet/: Sentinel-1 Items with VV/VH assets, Sentinel-2 Items with one
asset per band file (B02, B03, B04, ... at 10/20/60 m).

Chips from S1 and S2 ItemCollections with --assets-a VV,VH --assets-b B04,B03,B02 → a tiny CycleGAN
(the asset keys recorded in the chips metadata and carried into the model file) → predict of an
ItemCollection into a folder: one output on its source's grid per Item, a STAC Item beside each
(bbox, source datetime, derived_from, projection fields, a data asset that resolves to the GeoTIFF)
and a collection.json that pystac reads back. Also: relative, absolute and file:// hrefs, URLs
resolved for GDAL, Catalog and Collection JSON as input, a missing asset key and a malformed item
each as one line (CLI exit 1, no traceback), --assets defaulting to the model's.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
import rasterio.warp
from click.testing import CliRunner

from conftest import TINY_TRAINING

pystac = pytest.importorskip("pystac")
torch = pytest.importorskip("torch")

from geogan import stac  # noqa: E402
from geogan.cli import cli  # noqa: E402
from geogan.errors import ConfigError, InputError, InputNotFoundError  # noqa: E402
from geogan.scenes import expand_scenes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent / "sample_data" / "bigearthnet"
S1 = sorted(p for p in (ROOT / "s1").iterdir() if p.is_dir()) if (ROOT / "s1").is_dir() else []
pytestmark = pytest.mark.skipif(len(S1) != 6, reason="the BigEarthNet sample patches are not in sample_data/")
PREDICT = ["--tile-size", "32", "--overlap", "8", "--device", "cpu"]


# ------------------------------------------------------------------------------------- STAC JSON

def _meta(patch: Path) -> dict:
    return json.loads(next(patch.glob("*_labels_metadata.json")).read_text())


def acquired(patch: Path) -> dt.datetime:
    """The patch's acquisition time (S1: acquisition_time, S2: acquisition_date), UTC."""
    meta = _meta(patch)
    text = meta.get("acquisition_time") or meta["acquisition_date"]
    return dt.datetime.fromisoformat(text.replace(" ", "T")).replace(tzinfo=dt.timezone.utc)


def s2_of(s1_patch: Path) -> Path:
    return ROOT / "s2" / _meta(s1_patch)["corresponding_s2_patch"]


def make_item(patch: Path, where: Path, *, absolute: bool = False) -> "pystac.Item":
    """A STAC Item of one BigEarthNet patch: one asset per band file (key: VV, VH, B04, ...), the
    patch's acquisition time; hrefs relative to ``where`` (the folder of the JSON) or absolute."""
    when = acquired(patch)
    with rasterio.open(next(patch.glob("*.tif"))) as ds:
        lon_lat = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
    box = {"type": "Polygon", "coordinates": [[[lon_lat[0], lon_lat[1]], [lon_lat[2], lon_lat[1]],
                                                [lon_lat[2], lon_lat[3]], [lon_lat[0], lon_lat[3]],
                                                [lon_lat[0], lon_lat[1]]]]}
    item = pystac.Item(id=patch.name, geometry=box, bbox=list(lon_lat), datetime=when,
                       properties={"platform": "sentinel-1a" if patch.name.startswith("S1") else "sentinel-2"})
    for tif in sorted(patch.glob("*.tif")):
        key = tif.stem.rsplit("_", 1)[1]
        href = str(tif) if absolute else os.path.relpath(tif, where)
        item.add_asset(key, pystac.Asset(href=href, media_type=pystac.MediaType.GEOTIFF, roles=["data"]))
    return item


def write_collection_json(path: Path, patches, *, absolute: bool = False) -> Path:
    """An ItemCollection (a saved search) of the patches' Items, written to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    items = [make_item(p, path.parent, absolute=absolute) for p in patches]
    path.write_text(json.dumps(pystac.ItemCollection(items).to_dict(transform_hrefs=False)))
    return path


def invoke(*args) -> "object":
    return CliRunner().invoke(cli, [str(a) for a in args])


def assert_one_line_error(result, *needles: str) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("geogan: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


# ----------------------------------------------------------------------------------- the chain

@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """S1 and S2 ItemCollections of five patches (hrefs relative to the JSON, in another folder than
    the data), chips with --assets-a VV,VH --assets-b B04,B03,B02, and a tiny CycleGAN; the sixth
    patch is held out for prediction."""
    root = tmp_path_factory.mktemp("stac")
    train = S1[:5]
    s1 = write_collection_json(root / "catalogue" / "s1.json", train)
    s2 = write_collection_json(root / "catalogue" / "s2.json", [s2_of(p) for p in train])
    res = invoke("chips", "--a", s1, "--b", s2, "--assets-a", "VV,VH", "--assets-b", "B04,B03,B02",
                 "--out", root / "chips", "--tile-size", 120, "--val-fraction", 0)
    assert res.exit_code == 0, res.output
    from geogan.trainer import train as train_model

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = Path(train_model(dict(TINY_TRAINING, data=str(root / "chips"), out=str(root / "run"))))
    finally:
        torch.set_num_threads(threads)
    return root, res, model


def test_chips_from_itemcollections_record_the_assets_and_the_model_carries_them(chain):
    root, res, model = chain
    meta = json.loads((root / "chips" / "geogan_chips.json").read_text())
    assert meta["assets"] == {"a": ["VV", "VH"], "b": ["B04", "B03", "B02"]}
    a, b = meta["domains"]["a"], meta["domains"]["b"]
    assert (a["kind"], a["units"], len(a["bands"])) == ("sar", "db", 2)
    assert (b["kind"], b["dtype"], len(b["bands"])) == ("optical", "uint16", 3)
    assert a["chips"]["train"] == 5 == b["chips"]["train"]
    # chips are named by the Item ids; the sources are the resolved asset files, in asset order
    names = sorted(p.name for p in (root / "chips" / "train_a").iterdir())
    assert names == sorted(f"{p.name}_r000000_c000000.tif" for p in S1[:5])
    first = a["sources"][0].split(",")
    assert [Path(f).name for f in first] == [f"{S1[0].name}_VV.tif", f"{S1[0].name}_VH.tif"]
    from geogan.modelfile import load_model

    m = load_model(model)
    assert m.training["assets"] == {"a": ["VV", "VH"], "b": ["B04", "B03", "B02"]}
    assert stac.trained_assets(m, "a2b") == ("VV", "VH") and stac.trained_assets(m, "b2a") == ("B04", "B03", "B02")


@pytest.fixture(scope="module")
def predicted(chain):
    """The held-out S1 patch and one trained on, as a test ItemCollection, predicted into a folder with
    no --assets (the model's VV,VH)."""
    root, _, model = chain
    test = write_collection_json(root / "test" / "s1_test.json", [S1[5], S1[0]])
    out = root / "pred"
    res = invoke("predict", model, test, f"{out}/", *PREDICT)
    return root, model, test, out, res


def test_predict_an_itemcollection_into_a_folder(predicted):
    root, model, test, out, res = predicted
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [f"{S1[5].name}.tif", f"{S1[5].name}.json", f"{S1[0].name}.tif", f"{S1[0].name}.json", "collection.json"])
    for patch in (S1[5], S1[0]):
        tif = out / f"{patch.name}.tif"
        with rasterio.open(tif) as o, rasterio.open(patch / f"{patch.name}_VV.tif") as src:
            assert (o.crs, o.transform, o.shape) == (src.crs, src.transform, src.shape)  # the source's grid
            assert (o.count, o.dtypes[0]) == (3, "uint16")
            assert o.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"  # COG by default for STAC


def test_each_output_has_its_stac_item(predicted):
    root, model, test, out, _ = predicted
    from geogan.modelfile import file_sha256

    patch = S1[5]
    item = pystac.Item.from_file(str(out / f"{patch.name}.json"))
    assert item.id == patch.name
    assert item.datetime == acquired(patch)  # the source item's datetime, not the prediction's
    with rasterio.open(out / f"{patch.name}.tif") as ds:
        west, south, east, north = rasterio.warp.transform_bounds(ds.crs, "EPSG:4326", *ds.bounds)
        assert item.properties["proj:code"] == f"EPSG:{ds.crs.to_epsg()}"
        raw = json.loads((out / f"{patch.name}.json").read_text())  # pystac >= 1.12 folds it into proj:code
        assert raw["properties"]["proj:epsg"] == ds.crs.to_epsg()  # v1's field too, for older readers
        from pystac.extensions.projection import ProjectionExtension

        if "v2" in ProjectionExtension.get_schema_uri():  # pystac >= 1.12 reads projection v2
            proj = ProjectionExtension.ext(item)
            assert (proj.code, proj.shape, proj.bbox) == (f"EPSG:{ds.crs.to_epsg()}", [120, 120], list(ds.bounds))
            assert proj.transform == list(ds.transform)[:6]
        assert item.properties["proj:shape"] == [ds.height, ds.width]
        assert item.properties["proj:transform"] == list(ds.transform)[:6]
        assert item.properties["proj:bbox"] == list(ds.bounds)
    assert item.bbox == pytest.approx([west, south, east, north], abs=1e-6)
    assert item.geometry["type"] == "Polygon"
    assert any("projection" in e for e in item.stac_extensions) and any("processing" in e for e in item.stac_extensions)
    # derived_from: the source item (here the ItemCollection file it came from)
    links = {ln.rel: ln for ln in item.links}
    assert Path(links["derived_from"].href) == test.resolve()
    assert item.properties["geogan:source_assets"] == ["VV", "VH"]
    # the model and geogan's version
    import geogan

    assert item.properties["processing:software"] == {"geogan": geogan.__version__}
    assert item.properties["geogan:model_file"] == model.name
    assert item.properties["geogan:model_sha256"] == file_sha256(model)
    # the data asset: the GeoTIFF beside it, a COG
    asset = item.assets["data"]
    assert Path(asset.get_absolute_href()) == out / f"{patch.name}.tif"
    assert asset.media_type == "image/tiff; application=geotiff; profile=cloud-optimized" and asset.roles == ["data"]
    # its bands named by the asset keys the model's target domain was trained with
    assert asset.extra_fields["bands"] == [{"name": k, "data_type": "uint16", "nodata": 0.0} for k in ("B04", "B03", "B02")]


def test_the_folder_has_a_collection_pystac_reads(predicted):
    root, _, _, out, _ = predicted
    collection = pystac.Collection.from_file(str(out / "collection.json"))
    items = sorted(collection.get_items(), key=lambda i: i.id)
    assert [i.id for i in items] == sorted([S1[5].name, S1[0].name])
    boxes = [i.bbox for i in items]
    extent = collection.extent.spatial.bboxes[0]
    assert extent == pytest.approx([min(b[0] for b in boxes), min(b[1] for b in boxes),
                                    max(b[2] for b in boxes), max(b[3] for b in boxes)])
    start, end = collection.extent.temporal.intervals[0]
    assert (start, end) == (min(i.datetime for i in items), max(i.datetime for i in items))
    for item in items:  # each item resolves through the collection, and its data to the GeoTIFF
        assert Path(item.assets["data"].get_absolute_href()).is_file()
        assert item.get_collection().id == collection.id


def test_a_rerun_keeps_the_outputs_and_rewrites_the_collection_with_every_item(predicted):
    root, model, test, out, _ = predicted
    more = write_collection_json(root / "test2" / "more.json", [S1[1]], absolute=True)
    res = invoke("predict", model, more, f"{out}/", *PREDICT)
    assert res.exit_code == 0, res.output
    collection = pystac.Collection.from_file(str(out / "collection.json"))
    assert sorted(i.id for i in collection.get_items()) == sorted([S1[5].name, S1[0].name, S1[1].name])
    before = (out / f"{S1[5].name}.json").read_bytes()
    res = invoke("predict", model, test, f"{out}/", *PREDICT)  # resumed: both outputs kept
    assert res.exit_code == 0 and "2 skipped" in res.stdout, res.output
    assert (out / f"{S1[5].name}.json").read_bytes() == before
    assert len(list(pystac.Collection.from_file(str(out / "collection.json")).get_items())) == 3


def test_single_output_from_a_stac_item_gets_its_item_and_the_folder_a_collection(chain, tmp_path):
    _, _, model = chain
    item = make_item(S1[5], tmp_path)
    path = tmp_path / "one_item.json"
    path.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))
    dst = tmp_path / "out" / "translated.tif"
    dst.parent.mkdir()
    res = invoke("predict", model, path, dst, *PREDICT, "--no-cog")
    assert res.exit_code == 0, res.output
    assert "translated.json: its STAC item, listed in" in res.stdout
    written = pystac.Item.from_file(str(tmp_path / "out" / "translated.json"))
    assert written.id == S1[5].name and written.assets["data"].media_type == "image/tiff; application=geotiff"
    assert [b["name"] for b in written.assets["data"].extra_fields["bands"]] == ["B04", "B03", "B02"]
    raw = json.loads((tmp_path / "out" / "translated.json").read_text())
    assert [ln["rel"] for ln in raw["links"]][0] == "derived_from" and Path(raw["links"][0]["href"]) == path.resolve()
    collection = pystac.Collection.from_file(str(tmp_path / "out" / "collection.json"))
    assert [i.id for i in collection.get_items()] == [S1[5].name]


def test_json_files_geogan_did_not_write_are_never_replaced(chain, tmp_path):
    _, _, model = chain
    test = write_collection_json(tmp_path / "in" / "t.json", [S1[5], S1[0]])
    out = tmp_path / "out"
    out.mkdir()
    (out / "collection.json").write_text('{"type": "Collection", "id": "mine"}')
    (out / f"{S1[0].name}.json").write_text('{"note": "my own notes"}')
    res = invoke("predict", model, test, f"{out}/", *PREDICT)
    assert res.exit_code == 1  # the scene whose item cannot be written counts as failed; its GeoTIFF is kept
    assert (out / "collection.json").read_text() == '{"type": "Collection", "id": "mine"}'
    assert (out / f"{S1[0].name}.json").read_text() == '{"note": "my own notes"}'
    assert (out / f"{S1[0].name}.tif").is_file() and (out / f"{S1[5].name}.json").is_file()
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("geogan: error: ")]
    assert len(errors) == 1 and "is not a STAC item geogan wrote" in errors[0], res.stderr
    assert "collection.json' exists and was not written by geogan: not replaced" in res.stderr


def test_explicit_assets_other_than_the_trained_ones_are_warned_about(chain, tmp_path):
    _, _, model = chain
    test = write_collection_json(tmp_path / "t.json", [S1[5]])
    res = invoke("predict", model, test, f"{tmp_path / 'o'}/", *PREDICT, "--assets", "VH,VV")
    assert res.exit_code == 0, res.output
    assert "asset keys VH,VV differ from the VV,VH the model was trained with" in res.stderr


def test_plain_raster_batches_are_catalogued_too(chain, tmp_path):
    _, _, model = chain
    scene = ",".join(str(S1[5] / f"{S1[5].name}_{pol}.tif") for pol in ("VV", "VH"))
    out = tmp_path / "plain"
    res = invoke("predict", model, scene, f"{out}/", *PREDICT)
    assert res.exit_code == 0, res.output
    tif = next(out.glob("*.tif"))
    item = pystac.Item.from_file(str(tif.with_suffix(".json")))
    assert item.id == tif.stem == S1[5].name  # the common prefix of the VV and VH file names
    assert "not a STAC Item" in item.properties["description"]  # the datetime is the prediction's, said
    assert not [ln for ln in item.links if ln.rel == "derived_from"]
    with rasterio.open(tif) as ds:
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") != "COG"  # plain inputs: as before
    assert (out / "collection.json").is_file()


# ----------------------------------------------------------------------------- reading, errors

def test_relative_absolute_and_file_url_hrefs_give_the_same_scene(tmp_path):
    rel = write_collection_json(tmp_path / "a" / "b" / "rel.json", [S1[0]])
    ab = write_collection_json(tmp_path / "abs.json", [S1[0]], absolute=True)
    d = json.loads(ab.read_text())
    for asset in d["features"][0]["assets"].values():
        asset["href"] = Path(asset["href"]).as_uri()
    url = tmp_path / "url.json"
    url.write_text(json.dumps(d))
    scenes = [expand_scenes(str(p), assets="VV,VH")[0] for p in (rel, ab, url)]
    expected = tuple(str(S1[0] / f"{S1[0].name}_{pol}.tif") for pol in ("VV", "VH"))
    assert all(s.parts == expected for s in scenes)
    assert all(s.name == S1[0].name and s.item.datetime.startswith("2017-06-13") for s in scenes)


def test_a_glob_of_item_files(tmp_path):
    for patch in S1[:3]:
        item = make_item(patch, tmp_path / "items")
        (tmp_path / "items").mkdir(exist_ok=True)
        (tmp_path / "items" / f"{patch.name}.json").write_text(json.dumps(item.to_dict(include_self_link=False)))
    scenes = expand_scenes(str(tmp_path / "items" / "*.json"), assets="VH")
    assert [s.name for s in scenes] == [p.name for p in S1[:3]]
    assert [s.parts for s in scenes] == [(str(p / f"{p.name}_VH.tif"),) for p in S1[:3]]
    with pytest.raises(InputNotFoundError, match="no file matches this pattern"):
        expand_scenes(str(tmp_path / "nothing" / "*.json"), assets="VH")


def test_hrefs_resolve_against_the_self_link_then_the_json_and_urls_become_gdal_paths():
    assert stac.gdal_path("B04.tif", "/data/items/x.json") == "/data/items/B04.tif"
    assert stac.gdal_path("../B04.tif", "/data/items/x.json") == "/data/B04.tif"
    assert stac.gdal_path("B04.tif", "https://host/cat/x.json") == "/vsicurl/https://host/cat/B04.tif"
    assert stac.gdal_path("https://host/a/B04.tif", "/x.json") == "/vsicurl/https://host/a/B04.tif"
    assert stac.gdal_path("s3://bucket/key/B04.tif", "/x.json") == "/vsis3/bucket/key/B04.tif"
    assert stac.gdal_path("gs://bucket/B04.tif", "/x.json") == "/vsigs/bucket/B04.tif"
    assert stac.gdal_path("file:///data/B04.tif", "/x.json") == "/data/B04.tif"
    assert stac.gdal_path("/vsizip/a.zip/B04.tif", "/x.json") == "/vsizip/a.zip/B04.tif"
    item = {"type": "Feature", "id": "x", "properties": {"datetime": "2020-01-01T00:00:00Z"}, "geometry": None,
            "links": [{"rel": "self", "href": "https://host/stac/items/x.json"}],
            "assets": {"VV": {"href": "./VV.tif"}}}
    scene = expand_scenes(item, assets=["VV"], check_exists=False)[0]
    assert scene.parts == ("/vsicurl/https://host/stac/items/VV.tif",)
    assert scene.item.href == "https://host/stac/items/x.json"  # what derived_from will point at


def test_a_catalog_and_a_collection_as_input(tmp_path):
    catalog = pystac.Catalog(id="bigearthnet", description="S1 patches")
    collection = pystac.Collection(id="s1", description="S1", extent=pystac.Extent(
        pystac.SpatialExtent([[-180, -90, 180, 90]]), pystac.TemporalExtent([[None, None]])))
    catalog.add_child(collection)
    for patch in S1[:3]:
        collection.add_item(make_item(patch, tmp_path, absolute=True))
    catalog.normalize_hrefs(str(tmp_path / "cat"))
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    for path in (tmp_path / "cat" / "catalog.json", tmp_path / "cat" / "s1" / "collection.json"):
        scenes = expand_scenes(str(path), assets="VV,VH")
        assert sorted(s.name for s in scenes) == sorted(p.name for p in S1[:3])
        assert all(s.item.href.endswith(f"{s.name}.json") and Path(s.item.href).is_file() for s in scenes)
    # and a pystac object in memory, through the API
    assert len(expand_scenes(pystac.Catalog.from_file(str(tmp_path / "cat" / "catalog.json")), assets="VH")) == 3
    # relative hrefs inside an item file of a catalog resolve against that item file
    moved = pystac.Catalog.from_file(str(tmp_path / "cat" / "catalog.json"))
    moved.make_all_asset_hrefs_relative()
    moved.normalize_hrefs(str(tmp_path / "cat2"))
    moved.save(catalog_type=pystac.CatalogType.SELF_CONTAINED)
    scenes = expand_scenes(str(tmp_path / "cat2" / "catalog.json"), assets="VV")
    assert sorted(s.parts[0] for s in scenes) == sorted(str(p / f"{p.name}_VV.tif") for p in S1[:3])


def test_a_missing_asset_key_names_the_item_and_its_keys(tmp_path):
    s1 = write_collection_json(tmp_path / "s1.json", S1[:2])
    with pytest.raises(InputError) as err:
        expand_scenes(str(s1), assets="VV,HH")
    assert str(err.value) == (f"'{s1}' item 1 ('{S1[0].name}'): has no asset 'HH' (it has: VH, VV)")
    s2 = write_collection_json(tmp_path / "s2.json", [s2_of(S1[0])])
    res = invoke("chips", "--a", s1, "--b", s2, "--assets-a", "VV,VH", "--assets-b", "B04,B03,B09",
                 "--out", tmp_path / "chips", "--tile-size", 64)
    assert_one_line_error(res, str(s2), "has no asset 'B09'", "B02, B03, B04")
    assert not (tmp_path / "chips").exists()


@pytest.mark.parametrize("breakage,needle", [
    (lambda d: d["features"][1].pop("assets"), "item 2 ('{id}'): STAC Item has no 'assets'"),
    (lambda d: d["features"][0]["properties"].pop("datetime"), "item 1 ('{id}'): STAC Item has no datetime"),
    (lambda d: d["features"][0]["properties"].update(datetime="yesterday"), "datetime 'yesterday' is not an ISO 8601"),
    (lambda d: d["features"][0]["assets"]["VV"].pop("href"), "asset 'VV' has no 'href'"),
    (lambda d: d["features"][0].update(type="Polygon"), "item 1: not a STAC Item (type 'Polygon'"),
    (lambda d: d.pop("features"), "ItemCollection has no 'features' list"),
    (lambda d: d.update(type="Unknown"), "not a STAC Item, ItemCollection, Catalog or Collection (type 'Unknown')"),
])
def test_a_malformed_item_is_one_line_naming_the_file(tmp_path, breakage, needle, chain):
    _, _, model = chain
    path = write_collection_json(tmp_path / "bad.json", S1[:2])
    d = json.loads(path.read_text())
    breakage(d)
    path.write_text(json.dumps(d))
    needle = needle.format(id=S1[1].name if "item 2" in needle else S1[0].name)
    with pytest.raises(InputError) as err:
        expand_scenes(str(path), assets="VV")
    assert str(err.value).startswith(f"'{path}'") and needle in str(err.value), str(err.value)
    res = invoke("predict", model, path, f"{tmp_path / 'out'}/", *PREDICT)
    assert_one_line_error(res, str(path), needle)
    assert not (tmp_path / "out").exists()


def test_broken_json_files_are_one_line(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text('{"type": "FeatureCollection", "features": [')
    with pytest.raises(InputError, match=r"'.*broken.json': not valid JSON \(line 1 column"):
        expand_scenes(str(bad), assets="VV")
    with pytest.raises(InputNotFoundError, match="no such file"):
        expand_scenes(str(tmp_path / "missing.json"), assets="VV")
    gone = write_collection_json(tmp_path / "gone.json", [S1[0]])
    d = json.loads(gone.read_text())
    d["features"][0]["assets"]["VV"]["href"] = "nowhere/VV.tif"
    gone.write_text(json.dumps(d))
    with pytest.raises(InputNotFoundError, match=r"asset 'VV': no such file '.*nowhere/VV.tif'"):
        expand_scenes(str(gone), assets="VV")


def test_asset_keys_are_needed_for_stac_and_only_for_stac(tmp_path, chain):
    s1 = write_collection_json(tmp_path / "s1.json", [S1[0]])
    with pytest.raises(ConfigError, match="needs the asset keys .* its first item has: VH, VV"):
        expand_scenes(str(s1))
    tif = str(S1[0] / f"{S1[0].name}_VV.tif")
    with pytest.raises(ConfigError, match="asset keys .VV. were given but no input is a STAC"):
        expand_scenes(tif, assets="VV")
    res = invoke("chips", "--a", s1, "--b", tif, "--out", tmp_path / "c", "--tile-size", 64)
    assert_one_line_error(res, "needs the asset keys", "--assets-a")


def test_a_model_without_recorded_assets_asks_for_them(tmp_path):
    from conftest import save_tiny_sar_to_rgb_model

    model = save_tiny_sar_to_rgb_model(tmp_path / "m.geogan")
    s1 = write_collection_json(tmp_path / "s1.json", [S1[0]])
    res = invoke("predict", model, s1, f"{tmp_path / 'o'}/", *PREDICT)
    assert_one_line_error(res, "needs the asset keys", "VH, VV")


def test_build_item_is_pure_and_handles_an_ungeoreferenced_output(tmp_path):
    from affine import Affine

    info = stac.OutputInfo(path=tmp_path / "x.tif", width=4, height=3, count=1, dtype="float32", nodata=float("nan"),
                           crs=None, transform=Affine.identity(), cog=False, tags={}, descriptions=(None,),
                           modified=dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    item = stac.build_item(info, None)
    assert item["geometry"] is None and "bbox" not in item and item["properties"]["proj:code"] is None
    assert item["properties"]["datetime"] == "2026-01-02T03:04:05Z"
    assert item["assets"]["data"]["bands"] == [{"data_type": "float32", "nodata": "nan"}]
    json.dumps(item, allow_nan=False)  # strict JSON


# ---------------------------------------------------------------- evaluate, the API, @list files

def write_item_json(path: Path, patch: Path) -> Path:
    """One STAC Item of ``patch`` as its own JSON file (hrefs relative to it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    item = make_item(patch, path.parent)
    path.write_text(json.dumps(item.to_dict(include_self_link=False, transform_hrefs=False)))
    return path


def test_evaluate_a_prediction_item_against_a_truth_item(predicted, tmp_path):
    """PREDICTION: the Item predict wrote (its data asset); TRUTH: the S2 Item, --assets B04,B03,B02 —
    the same scores as the GeoTIFF against the comma-joined band files."""
    from geogan.evaluate import evaluate_rasters

    _, _, _, out, _ = predicted
    s2 = s2_of(S1[5])
    truth = write_item_json(tmp_path / "truth" / "s2.json", s2)
    res = invoke("evaluate", out / f"{S1[5].name}.json", truth, "--assets", "B04,B03,B02", "--json")
    assert res.exit_code == 0, res.output
    got = json.loads(res.stdout)
    files = ",".join(str(s2 / f"{s2.name}_{k}.tif") for k in ("B04", "B03", "B02"))
    plain = evaluate_rasters(out / f"{S1[5].name}.tif", files).to_dict()
    for key in ("pixels", "mae", "rmse", "psnr", "ssim", "sam"):
        assert got[key] == plain[key], key
    assert got["truth"] == f"{truth} item {s2.name} (B04,B03,B02)"
    assert got["prediction"] == f"{out / S1[5].name}.json item {S1[5].name} (data)"
    # a 20 m band among the truth's assets is stacked onto the finest (10 m) grid, as for chips
    report = evaluate_rasters(out / f"{S1[5].name}.json", str(truth), assets=["B05", "B03", "B02"])
    assert report.pixels == 120 * 120 and len(report.bands) == 3


def test_evaluate_stac_errors_are_one_line_naming_the_file(predicted, tmp_path):
    _, _, _, out, _ = predicted
    pred = out / f"{S1[5].name}.json"
    s2 = s2_of(S1[5])
    truth = write_item_json(tmp_path / "s2.json", s2)
    assert_one_line_error(invoke("evaluate", pred, truth, "--assets", "B04,B03,B99"),
                          str(truth), "has no asset 'B99'", "B02, B03, B04")
    assert_one_line_error(invoke("evaluate", pred, truth), str(truth), "needs the asset keys", "B04")
    both = write_collection_json(tmp_path / "both.json", [s2, s2_of(S1[0])])
    assert_one_line_error(invoke("evaluate", pred, both, "--assets", "B04,B03,B02"), str(both), "holds 2 STAC items")
    d = json.loads(truth.read_text())
    d.pop("assets")
    truth.write_text(json.dumps(d))
    assert_one_line_error(invoke("evaluate", pred, truth, "--assets", "B04"), str(truth), "STAC Item has no 'assets'")
    # a prediction Item without a data asset (not one predict wrote), and keys for a plain raster
    assert_one_line_error(invoke("evaluate", write_item_json(tmp_path / "s1.json", S1[5]), out / f"{S1[5].name}.tif"),
                          "s1.json", "has no asset 'data' (it has: VH, VV)")
    tif = out / f"{S1[5].name}.tif"
    assert_one_line_error(invoke("evaluate", tif, tif, "--assets", "B04"), "no input is a STAC")


def test_export_chips_takes_stac_inputs_and_asset_keys_like_the_cli(tmp_path):
    """The API: a STAC JSON path for A, a pystac ItemCollection for B, asset keys as a string and a list."""
    import geogan

    s1 = write_collection_json(tmp_path / "cat" / "s1.json", S1[:2])
    s2_items = pystac.ItemCollection([make_item(s2_of(p), tmp_path, absolute=True) for p in S1[:2]])
    summary = geogan.export_chips(str(s1), s2_items, tmp_path / "chips", assets_a="VV,VH",
                                  assets_b=["B04", "B03", "B02"], tile_size=120, val_fraction=0.0)
    assert summary.sources["a"] == [",".join(str(p / f"{p.name}_{k}.tif") for k in ("VV", "VH")) for p in S1[:2]]
    assert summary.counts["a"]["train"] == 2 == summary.counts["b"]["train"]
    meta = json.loads((tmp_path / "chips" / "geogan_chips.json").read_text())
    assert meta["assets"] == {"a": ["VV", "VH"], "b": ["B04", "B03", "B02"]}
    with pytest.raises(InputError, match=r"s1.json' item 1 .*has no asset 'HH' \(it has: VH, VV\)"):
        geogan.export_chips(str(s1), s2_items, tmp_path / "c2", assets_a="HH", assets_b="B04", tile_size=120)
    with pytest.raises(ConfigError, match="domain b input: asset keys .B04. were given but no input is a STAC"):
        geogan.export_chips(str(s1), str(s2_of(S1[0]) / f"{s2_of(S1[0]).name}_B04.tif"), tmp_path / "c3",
                            assets_a="VV", assets_b="B04", tile_size=120)
    assert not (tmp_path / "c2").exists() and not (tmp_path / "c3").exists()


def test_the_stac_writers_are_public_and_import_geogan_stays_lazy():
    import subprocess
    import sys

    import geogan

    assert geogan.write_item is stac.write_item and geogan.write_collection is stac.write_collection
    assert geogan.catalogue_output is stac.catalogue_output
    code = "import sys, geogan; print('pystac' in sys.modules, 'geogan.stac' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split() == ["False",
                                                                                                         "False"]


def test_a_list_file_line_may_be_a_stac_json(tmp_path):
    s1 = write_collection_json(tmp_path / "cat" / "s1.json", S1[:2])
    write_item_json(tmp_path / "items" / "a.json", S1[2])
    write_item_json(tmp_path / "items" / "b.json", S1[3])
    plain = ",".join(str(S1[4] / f"{S1[4].name}_{k}.tif") for k in ("VV", "VH"))
    listing = tmp_path / "scenes.txt"
    listing.write_text(f"# STAC and plain lines\ncat/s1.json\n{plain}\nitems/*.json\n")
    scenes = expand_scenes(f"@{listing}", assets="VV,VH")
    assert [s.name for s in scenes] == [p.name for p in (S1[0], S1[1], S1[4], S1[2], S1[3])]  # in the list's order
    assert [s.item is not None for s in scenes] == [True, True, False, True, True]
    assert scenes[0].parts == tuple(str(S1[0] / f"{S1[0].name}_{k}.tif") for k in ("VV", "VH"))
    assert scenes[0].item.href == str(s1)
    listing.write_text("cat/s1.json\nmissing.json\n")
    with pytest.raises(InputNotFoundError) as err:
        expand_scenes(f"@{listing}", assets="VV")
    assert str(err.value) == f"'{listing}' line 2: 'missing.json': no such file"
    listing.write_text("cat/s1.json\n")
    with pytest.raises(ConfigError, match="needs the asset keys .* its first item has: VH, VV"):
        expand_scenes(f"@{listing}")


def test_predict_a_list_of_stac_jsons_defaults_to_the_trained_keys(chain, tmp_path):
    _, _, model = chain
    write_item_json(tmp_path / "items" / "x.json", S1[5])
    (tmp_path / "scenes.txt").write_text("items/x.json\n")
    out = tmp_path / "out"
    res = invoke("predict", model, f"@{tmp_path / 'scenes.txt'}", f"{out}/", *PREDICT)
    assert res.exit_code == 0, res.output
    item = pystac.Item.from_file(str(out / f"{S1[5].name}.json"))
    assert item.properties["geogan:source_assets"] == ["VV", "VH"]
    assert (out / "collection.json").is_file()
