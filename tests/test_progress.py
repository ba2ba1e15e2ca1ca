"""Progress display without a terminal: one line per tenth of the work, a final line, no bar."""

import io

from robustmri.progress import LineProgress, progress_bar


def test_line_progress_logs_each_tenth_and_the_end() -> None:
    stream = io.StringIO()
    bar = LineProgress(total=100, desc="train x", unit="step", stream=stream)
    for _ in range(100):
        bar.set_postfix({"loss": "0.5"})
        bar.update(1)
    bar.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 10  # 10..90 % and the final 100/100
    assert lines[0].startswith("train x: 10/100 (10%)")
    assert lines[-1].startswith("train x: 100/100 (100%)") and "[loss=0.5]" in lines[-1]


def test_line_progress_resumed_counts_from_initial() -> None:
    stream = io.StringIO()
    bar = LineProgress(total=10, initial=6, desc="d", stream=stream)
    bar.update(4)
    bar.close()
    assert stream.getvalue().splitlines() == [stream.getvalue().splitlines()[-1]]
    assert "10/10" in stream.getvalue()


def test_progress_bar_iterates_and_disabled_is_silent(capsys) -> None:  # type: ignore[no-untyped-def]
    assert list(progress_bar(range(5), desc="quiet", enabled=False)) == [0, 1, 2, 3, 4]
    assert list(progress_bar(range(5), desc="loud")) == [0, 1, 2, 3, 4]  # pytest's stderr is no tty
    err = capsys.readouterr().err
    assert "quiet" not in err and "loud: 5/5 (100%)" in err
