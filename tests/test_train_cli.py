"""``geogan train`` on the command line (click's CliRunner): options, config files, one-line errors."""
from __future__ import annotations

import pytest
import yaml

torch = pytest.importorskip("torch")
from click.testing import CliRunner  # noqa: E402

from conftest import make_chips  # noqa: E402

from geogan.cli import cli  # noqa: E402

TINY_YAML = dict(ngf=8, ndf=8, n_layers_d=2, generator="resnet_6blocks", crop_size=32, epochs=1, epochs_decay=0,
                 batch_size=2, pool_size=2, device="cpu", amp=False)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_train_command_with_config_and_overrides(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=2)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(dict(TINY_YAML, epochs=5)))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(config), "--data", str(chips), "--out", str(out), "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.output and (out / "model.geogan").exists()
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["data"] == str(chips) and saved["amp"] == "off"
    assert saved["generator"] == "resnet_6blocks"


def test_train_command_errors_are_one_line(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=2, paired=True)
    config = tmp_path / "bad.yaml"
    config.write_text("ngff: 3\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["train", str(config), "--data", str(chips), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "ngff" in result.output and "Traceback" not in result.output
    # unet_256 cannot take 32-pixel crops: the error says so (the default generator would fit them).
    unet = tmp_path / "unet.yaml"
    unet.write_text("generator: unet_256\n")
    result = runner.invoke(cli, ["train", str(unet), "--data", str(chips), "--out", str(tmp_path / "o"),
                                 "--model", "pix2pix", "--crop-size", "32"])
    assert result.exit_code == 1 and "multiple of 256" in result.output
    result = runner.invoke(cli, ["train", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "chips" in result.output
    result = runner.invoke(cli, ["train", "--data", str(chips), "--out", str(tmp_path / "o2"), "--crop-size", "32",
                                 "--device", "cuda:7"])
    assert result.exit_code == 1 and "cuda" in result.output.lower() and "Traceback" not in result.output
    assert len([l for l in result.output.splitlines() if l.startswith("geogan: error")]) == 1
    assert not (tmp_path / "o2").exists()


def test_resume_without_a_checkpoint_starts_the_run_and_says_so(tmp_path):
    chips = make_chips(tmp_path / "chips", n_train=2)
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(TINY_YAML))
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", str(config), "--data", str(chips), "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    assert "geogan: warning:" in result.output and "no checkpoint yet" in result.output
    assert (out / "model.geogan").exists()


def test_train_command_help_lists_the_options():
    result = CliRunner().invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    for option in ("--data", "--out", "--epochs", "--batch-size", "--device", "--resume", "torchrun"):
        assert option in result.output
