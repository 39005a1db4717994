"""The installed package carries its YAML catalogs (a plain `pip install .` works)."""

from __future__ import annotations

from pathlib import Path

import pytest

import calc
from calc.sources.catalog import catalog_dir, list_gpus, list_models

REPO = Path(__file__).resolve().parent.parent


def test_catalogs_are_found() -> None:
    assert (catalog_dir("model_configs") / "llama2-7b.yaml").is_file()
    assert (catalog_dir("hardware_specs") / "h100-sxm.yaml").is_file()
    assert len(list_models()) >= 21 and len(list_gpus()) >= 12


def test_installed_package_ships_catalogs_inside_it() -> None:
    package = Path(calc.__file__).resolve().parent
    if package.parent == REPO:
        pytest.skip("running from the source checkout (editable); CI installs the package and checks this")
    assert catalog_dir("model_configs") == package / "model_configs"
    assert (package / "hardware_specs" / "a800.yaml").is_file()
