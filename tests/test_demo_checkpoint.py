"""The demo's tiny checkpoint lives in a private per-user folder, built once under a lock and
renamed into place complete. Costs under a second (the build itself is replaced by a stand-in)."""
import os
import stat
import threading
import time

import pytest

from dynin_rt import demo


@pytest.fixture
def demo_root(tmp_path, monkeypatch):
    root = tmp_path / "demo"
    monkeypatch.setenv("DYNIN_RT_DEMO_DIR", str(root))
    builds = []

    def fake_build(directory):  # slow enough for the other thread to arrive while it runs
        builds.append(directory)
        time.sleep(0.2)
        with open(os.path.join(directory, "config.json"), "w") as f:
            f.write("{}")
        return directory

    monkeypatch.setattr(demo, "build_checkpoint", fake_build)
    return root, builds


def test_built_once_privately_by_concurrent_callers(demo_root):
    root, builds = demo_root
    got = []
    threads = [threading.Thread(target=lambda: got.append(demo.demo_checkpoint())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(builds) == 1 and len(set(got)) == 1 and len(got) == 3
    path = got[0]
    assert os.path.dirname(path) == str(root) and os.path.isfile(os.path.join(path, "config.json"))
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert not [n for n in os.listdir(root) if ".tmp-" in n]  # the build folder was renamed, not copied
    assert demo.demo_checkpoint() == path and len(builds) == 1


def test_a_failed_build_leaves_nothing_behind(demo_root, monkeypatch):
    root, _ = demo_root

    def broken(directory):
        raise OSError("disk full")

    monkeypatch.setattr(demo, "build_checkpoint", broken)
    with pytest.raises(OSError, match="disk full"):
        demo.demo_checkpoint()
    assert sorted(os.listdir(root)) == [demo.DEMO_CHECKPOINT + ".lock"]


def test_a_folder_others_can_write_is_refused(demo_root, tmp_path):
    root, builds = demo_root
    root.mkdir(mode=0o700)
    os.chmod(root, 0o777)
    with pytest.raises(PermissionError, match="others cannot write"):
        demo.demo_checkpoint()
    os.chmod(root, 0o700)
    os.rmdir(root)
    (tmp_path / "elsewhere").mkdir(mode=0o700)
    os.symlink(tmp_path / "elsewhere", root)  # a link planted at the path: not the user's own folder
    with pytest.raises(PermissionError, match="must be a folder"):
        demo.demo_checkpoint()
    assert not builds
