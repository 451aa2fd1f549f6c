"""``dynin-rt demo``: every task end to end on a tiny random checkpoint built on the spot.

Random weights give noise, not answers: the demo shows that every path runs, how fast the runtime is
next to the PyTorch reference on the same weights, and that both produce the same tokens.
"""
from __future__ import annotations

import os
import shutil
import stat
import sys
import tempfile
import time

# Bumped when the tiny checkpoint's contents change (testing/ writers), so an old one is not reused.
DEMO_CHECKPOINT = "checkpoint-1"


def build_checkpoint(directory: str) -> str:
    """The tiny backbone (release vocabulary and token layout) with small MAGVIT-v2 and EMOVA
    tokenizers beside it, in the official layouts."""
    from .testing import write_backbone, write_emova, write_magvit

    if not os.path.isfile(os.path.join(directory, "emova_speech_tokenizer_hf", "config.json")):
        write_backbone(directory)
        write_magvit(os.path.join(directory, "magvitv2"), ch=32)
        write_emova(os.path.join(directory, "emova_speech_tokenizer_hf"), small=True)
    return directory


def demo_dir() -> str:
    """The demo's own folder: $DYNIN_RT_DEMO_DIR, default ~/.cache/dynin_rt_demo."""
    return os.environ.get("DYNIN_RT_DEMO_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "dynin_rt_demo")


def private_dir(path: str) -> str:
    """``path``, created 0700 when missing; a one-line error unless it is a real folder of this user
    that nobody else can write (others could swap the checkpoint under a running demo)."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
        raise PermissionError(f"{path} must be a folder of yours that others cannot write (the demo keeps its "
                              "checkpoint there): remove it, or set DYNIN_RT_DEMO_DIR")
    return path


def demo_checkpoint() -> str:
    """The tiny checkpoint, built once per user in :func:`demo_dir`: under a lock, into a temporary
    folder renamed when complete, so demos running at once share one finished copy and none reads a
    half-written one."""
    from .export_cache import _locked

    root = private_dir(demo_dir())
    path = os.path.join(root, DEMO_CHECKPOINT)
    if os.path.isdir(path):  # only ever renamed into place complete
        return path
    with _locked(path + ".lock"):
        if os.path.isdir(path):  # another process built it while we waited
            return path
        tmp = tempfile.mkdtemp(prefix=f"{DEMO_CHECKPOINT}.tmp-", dir=root)
        try:
            build_checkpoint(tmp)
            os.rename(tmp, path)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return path


def run(out_dir: str, checkpoint: str | None = None, reference: bool = True, log=print, tasks=None) -> list[dict]:
    """Every registered task (or ``tasks``, names or specs) on the runtime and the reference; each
    result saved under its spec's ``output_file``. Returns the benchmark rows."""
    from . import load
    from .bench import format_table, load_reference, run_all, write_reports
    from .tasks import registry

    os.makedirs(out_dir, exist_ok=True)
    t0 = time.perf_counter()
    ckpt = checkpoint or demo_checkpoint()
    log(f"dynin_rt demo: checkpoint {ckpt} ({time.perf_counter() - t0:.1f}s to prepare)")
    if "DYNIN_RT_CACHE" not in os.environ:  # the demo's exports stay out of the user's cache
        os.environ["DYNIN_RT_CACHE"] = os.path.join(private_dir(demo_dir()), "cache")
    model = load(ckpt, progress=False)
    ref = load_reference(model) if reference else None
    media_dir = os.path.join(out_dir, "inputs")
    os.makedirs(media_dir, exist_ok=True)
    rows = run_all(model, tasks=tasks, reference=ref, repeats=1, media_dir=media_dir)
    files = [registry.get(row["task"]).output_file for row in rows]
    for row, name in zip(rows, files):
        row["result"].save(os.path.join(out_dir, name))
    write_reports(rows, json_path=os.path.join(out_dir, "timings.json"))
    log(f"\nruntime: {model.backend} ({model.dtype}); per task, the C++ runtime vs the PyTorch reference on the same weights:")
    log(format_table(rows))
    log(f"\noutputs in {out_dir}: " + " ".join(files) + " (inputs in inputs/)")
    log(
        "These weights are random, so the text, image and speech are noise: the demo checks that every task runs end\n"
        "to end and agrees with the reference. For real outputs, download snu-aidas/Dynin-Omni with its tokenizers\n"
        "(snu-aidas/magvitv2, snu-aidas/emova_speech_tokenizer_hf) into one folder and run:\n"
        "  dynin-rt generate PATH/Dynin-Omni \"Explain diffusion LMs\" --out answer.txt"
    )
    return rows


def add_arguments(parser) -> None:
    """The options of ``dynin-rt demo``."""
    parser.add_argument("--out", default="demo_out", help="folder for the outputs, one per task")
    parser.add_argument("--checkpoint", default=None, help="use this checkpoint instead of a tiny random one")
    parser.add_argument("--task", default="all", help="all, or a comma list of task names")
    parser.add_argument("--no-reference", action="store_true", help="skip the PyTorch reference runs")


def command(args) -> int:
    """Run the demo; non-zero when a task's tokens differ from the reference's."""
    from .tasks import registry

    rows = run(args.out, args.checkpoint, reference=not args.no_reference, tasks=registry.parse_list(args.task))
    return 0 if all(r.get("identical_to_reference") is not False for r in rows) else 1


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="dynin-rt demo", description=__doc__)
    add_arguments(parser)
    return command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
