"""Ctrl-C and SIGTERM during `gene-ae embed` (issue 34): one line on stderr, exit 130 / 143, nothing
half-written in the user's folder. The input is a named pipe held open, so the process is surely mid-read
when the signal arrives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shared import REPO, tiny_index


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, data_dir: Path) -> Path:
    root = tmp_path_factory.mktemp("interrupt")
    (root / "one.fa").write_text(">a\n" + "ACGT" * 100 + "\n")
    return tiny_index(root, root / "one.fa")[0]


@pytest.mark.parametrize(
    "sig,code,word,blocked",
    [(signal.SIGINT, 130, "interrupted", False), (signal.SIGTERM, 143, "terminated", False),
     (signal.SIGINT, 130, "interrupted", True)],
)  # fmt: skip
def test_a_signal_mid_embed_is_one_line_and_leaves_nothing(ckpt, tmp_path, data_dir, sig, code, word, blocked) -> None:
    """Started as from a terminal: Ctrl-C and SIGTERM at their default actions (in full-suite runs the pytest
    process had SIGINT ignored by then, which a child inherits and Python respects: the embed never saw it).
    `blocked`: started with both blocked, as a parent's mask at fork can leave a child: taken back at start."""
    pipe = tmp_path / "genes.fa"
    os.mkfifo(pipe)
    out = tmp_path / "index"

    def mask() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})

    proc = subprocess.Popen([sys.executable, "-m", "gene_ae.cli", "embed", "--model", ckpt, "--input", pipe,
                             "--out", out], cwd=REPO, stderr=subprocess.PIPE, text=True, preexec_fn=mask)  # fmt: skip
    with open(pipe, "w") as writer:
        lam = (data_dir / "viruses" / "lambda_phage.fa").read_text().split("\n", 1)[1].replace("\n", "")
        # Four times a pipe's 64 KiB buffer: the flush returns only once the process has read most of it, so it has
        # started and is reading; the pipe stays open, so it waits for more.
        for i in range(170):
            start = i * 997 % (len(lam) - 1500)
            writer.write(f">r{i}\n{lam[start : start + 1500]}\n")
        writer.flush()
        proc.send_signal(sig)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGUSR1)  # every thread's stack on its stderr (gene_ae/cli), then stop it
            time.sleep(1)
            proc.kill()
            pytest.fail(f"{sig!r} not acted on in 30 s; the threads were at:\n{proc.communicate(timeout=60)[1]}")
        err = proc.communicate(timeout=60)[1]
    assert proc.returncode == code, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines[-1] == f"gene-ae embed: {word}; outputs are written whole or not at all"
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["genes.fa"]  # no index, no hidden temporary folder


def test_ctrl_c_during_threaded_work_returns_at_once() -> None:
    """in_threads (`gene-ae search --threads`, a genome's contigs): Ctrl-C while two items run returns at once, and
    the items not started never start. concurrent.futures' pool waited for the running items (5 s each here), so an
    interrupted search held the terminal until its running queries finished."""
    import threading

    from gene_ae.core.threads import in_threads

    assert threading.current_thread() is threading.main_thread()  # where Python delivers SIGINT
    release, started = threading.Event(), []

    def work(i: int) -> int:
        started.append(i)
        release.wait(5)
        return i

    # Python's own Ctrl-C handler for this test: an earlier test in this process (Ray, a CLI run) may have set another
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    begun = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            in_threads(work, list(range(6)), 2)
        took = time.monotonic() - begun
    finally:
        release.set()
        signal.signal(signal.SIGINT, before)
    assert took < 2.5, f"{took:.1f} s"
    time.sleep(0.2)  # the two running items end; nothing else starts
    assert sorted(started) == [0, 1]
    assert in_threads(lambda i: i * i, list(range(7)), 3) == [i * i for i in range(7)]

    def fails_on_1(i: int) -> int:
        if i == 1:
            raise ValueError("item 1")
        return i

    with pytest.raises(ValueError, match="item 1"):
        in_threads(fails_on_1, list(range(5)), 2)
