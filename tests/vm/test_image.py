"""The cached Debian base image: built once, then reused by key."""

from __future__ import annotations

import json
import threading

import pytest

from dockyard_resources.vm import image
from tests.fixtures.vm import test_suite

pytestmark = pytest.mark.vm


def test_image_key_follows_the_builder_inputs() -> None:
    assert image.image_key("trixie") != image.image_key("bookworm")
    assert image.image_key("trixie") == image.image_key("trixie")
    assert "docker-cli" in image.package_list("trixie")
    assert "docker-cli" not in image.package_list("bookworm")  # bookworm's docker.io has it
    with pytest.raises(image.ImageBuildError, match="not supported"):
        image.image_key("sid")


def test_second_ensure_image_reuses_the_cache() -> None:
    first = image.ensure_image(test_suite())
    raw_mtime = first.raw.stat().st_mtime_ns
    second = image.ensure_image(test_suite())
    assert second.built is False
    assert second.build_id == first.build_id
    assert second.raw.stat().st_mtime_ns == raw_mtime
    assert second.directory.name == image.image_key(test_suite())


def test_concurrent_callers_share_one_image() -> None:
    results: list[image.BaseImage] = []
    threads = [
        threading.Thread(target=lambda: results.append(image.ensure_image(test_suite())))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({r.build_id for r in results}) == 1
    assert sum(r.built for r in results) <= 1


def test_image_holds_what_the_runner_and_standins_need() -> None:
    base = image.ensure_image(test_suite())
    manifest = json.loads((base.directory / "build.json").read_text())
    installed = {line.split("=", 1)[0] for line in manifest["packages"]}
    assert set(image.package_list(test_suite())) <= installed
    assert base.kernel.stat().st_size > 1_000_000
    assert base.initrd.stat().st_size > 1_000_000
    debs = {deb.name.split("_", 1)[0] for deb in base.debs.glob("*.deb")}
    expected = {"docker.io", "containerd", "runc", "tini"}
    if test_suite() == "trixie":
        expected.add("docker-cli")
    assert expected <= debs
