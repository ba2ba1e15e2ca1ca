"""The claims tables: paired differences with intervals (known answers), pairs found from model.json,
the teacher's warp share from training logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robustmri.report import build_report
from robustmri.report.claims import claim_pairs, claims_table, teacher_table


def _frame(effects: dict[str, tuple[float, float, float]], seeds=(0, 1), n_subjects: int = 6, jitter: float = 0.0) -> pd.DataFrame:
    """Slice rows: model -> (clean, corrupted, attacked) PSNR offsets on a per-subject base."""
    rng = np.random.default_rng(0)
    base = rng.normal(20.0, 2.0, n_subjects)
    cells = [("clean", "clean", 0), ("gaussian_noise", "noise", 2), ("gaussian_blur", "image", 2),
             ("pgd_linf", "adversarial", 2), ("random_linf", "adversarial", 2)]
    rows = []
    for model, (c, k, a) in effects.items():
        for seed in seeds:
            for j in range(n_subjects):
                for pert, fam, sev in cells:
                    off = c if pert == "clean" else (a if pert == "pgd_linf" else (-1.0 if pert == "random_linf" else k))
                    for sl in range(2):
                        psnr = base[j] + off + (jitter * (seed - 0.5) if model == "wrapped" else 0.0)
                        rows.append({"model": model, "direction": "t1->t2", "seed": seed, "perturbation": pert, "family": fam,
                                     "severity": sev, "subject": f"s{j}", "slice": sl, "psnr": psnr, "ssim": 0.5,
                                     "mae": 0.1, "nmse": 0.1, "protocol": "robustmri"})
    return pd.DataFrame(rows)


def test_constant_effects_give_exact_differences_and_degenerate_intervals():
    # wrapped: +1 dB clean, +3 dB corrupted (base - 4 -> -1), +0.5 dB attacked (base - 6 -> -5.5)
    frame = _frame({"base": (0.0, -4.0, -6.0), "wrapped": (1.0, -1.0, -5.5)})
    t = claims_table(frame, [("base", "wrapped", "any generator")])
    row = "wrapped vs base"
    get = lambda k: t.cells[("t1->t2", row, k)]  # noqa: E731
    assert get("clean").mean == pytest.approx(1.0) and (get("clean").low, get("clean").high) == pytest.approx((1.0, 1.0))
    assert get("corrupted").mean == pytest.approx(3.0)
    assert get("attacked").mean == pytest.approx(0.5)  # the random control is not an attack cell
    assert get("drop_corrupted").mean == pytest.approx(-2.0)  # loses 2 dB less to corruptions
    assert get("drop_attacked").mean == pytest.approx(0.5)  # and 0.5 dB more to attacks
    assert get("first_clean").mean == pytest.approx(get("second_clean").mean - 1.0)
    md = t.to_markdown()
    assert "+1.00 [+1.00, +1.00]" in md and "-2.00 [-2.00, -2.00]" in md
    csv = pd.read_csv(pd.io.common.StringIO(t.to_csv()))
    assert csv.loc[0, "drop_corrupted_ci_low"] == pytest.approx(-2.0)


def test_disagreeing_seeds_widen_the_interval():
    # wrapped's two seeds sit at -1 and +1 around the base (+0 on average): the interval spans zero
    frame = _frame({"base": (0.0, -4.0, -6.0), "wrapped": (0.0, -4.0, -6.0)}, jitter=2.0)
    c = claims_table(frame, [("base", "wrapped", "x")]).cells[("t1->t2", "wrapped vs base", "clean")]
    assert c.mean == pytest.approx(0.0, abs=1e-9)
    assert c.low < -0.5 and c.high > 0.5


def test_claim_pairs_come_from_model_json_and_skip_what_was_not_run():
    info = {
        "pix2pix": {"model": {"name": "pix2pix", "size": "tiny", "options": {}}},
        "resvit": {"model": {"name": "resvit", "size": "tiny", "options": {}}},
        "kd_attack:full": {"model": {"name": "kd_attack", "size": "tiny", "options": {"generator": "pix2pix", "variant": "full"}}},
        "resvit+kd_attack": {"model": {"name": "kd_attack", "size": "tiny", "options": {"generator": "resvit", "variant": "full"}}},
        "reggan+kd_attack": {"model": {"name": "kd_attack", "size": "tiny", "options": {"generator": "reggan", "variant": "full"}}},
        "kd_attack:g_attack": {"model": {"name": "kd_attack", "size": "tiny", "options": {"generator": "pix2pix", "variant": "g_attack"}}},
        "kd_attack:g_noise": {"model": {"name": "kd_attack", "size": "tiny", "options": {"generator": "pix2pix", "variant": "g_noise"}}},
    }
    pairs = claim_pairs(list(info), info, "pix2pix")
    got = {(a, b) for a, b, _ in pairs}
    assert ("pix2pix", "kd_attack:full") in got and ("resvit", "resvit+kd_attack") in got
    assert not any(b == "reggan+kd_attack" for _, b in got)  # no plain reggan was run
    assert ("pix2pix", "kd_attack:g_attack") in got  # the reference plays g_only
    assert ("kd_attack:g_noise", "kd_attack:g_attack") in got
    assert not any(a == "kd_attack:g_pgd" for a, _ in got)


def _log(path: Path, rows: list[dict]) -> None:
    path.mkdir(parents=True)
    path.joinpath("log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_teacher_table_reports_the_warp_share(tmp_path: Path):
    root = tmp_path
    for tag, label in (("kd_attack-full", "kd_attack:full"),):
        (root / "cells" / tag / "t1_to_t2" / "s0").mkdir(parents=True)
        (root / "cells" / tag / "t1_to_t2" / "s0" / "model.json").write_text(json.dumps({"label": label}))
    early = [{"step": s, "T/l1_synth": 0.5, "T/l1_warp": 0.5, "T/l1": 0.5} for s in range(1, 7)]
    late = [{"step": s, "T/l1_synth": 0.10, "T/l1_warp": 0.08, "T/l1": 0.06} for s in range(7, 9)]
    _log(root / "runs" / "kd_attack-full__t1_to_t2__s0", [{"step": 0, "G/loss": 1.0}] + early + late)
    _log(root / "runs" / "kd_attack-full__t1_to_t2__s1", [{"step": s, "T/l1_synth": 0.1, "T/l1_warp": 0.06, "T/l1": 0.06} for s in range(8)])
    _log(root / "runs" / "pix2pix__t1_to_t2__s0", [{"step": 1, "loss_G_l1": 0.2}])
    t = teacher_table(root)
    assert t.rows == [("t1->t2", "kd_attack:full")]  # the label comes from model.json; pix2pix has no teacher
    share = t.cells[("t1->t2", "kd_attack:full", "warp_share")]
    assert share.mean == pytest.approx((50.0 + 100.0) / 2) and share.n == 2  # last quarter only: 50 %, and 100 %
    assert teacher_table(tmp_path / "nothing") is None


def test_the_report_writes_the_claims_and_teacher_tables(tmp_path: Path):
    root = tmp_path / "results"
    frame = _frame({"pix2pix": (0.0, -4.0, -6.0), "kd_attack:full": (1.0, -1.0, -5.5)})
    frame.to_csv(root.mkdir(parents=True) or root / "results.csv", index=False)
    (root / "manifest.json").write_text(json.dumps({"suite": "s", "reference_model": "pix2pix", "models": ["pix2pix", "kd_attack:full"]}))
    for tag, model in (("pix2pix", {"name": "pix2pix", "size": "tiny", "options": {}}),
                       ("kd_attack-full", {"name": "kd_attack", "size": "tiny", "options": {"generator": "pix2pix", "variant": "full"}})):
        d = root / "cells" / tag / "t1_to_t2" / "s0"
        d.mkdir(parents=True)
        (d / "model.json").write_text(json.dumps({"label": tag.replace("-", ":"), "model": model}))
    _log(root / "runs" / "kd_attack-full__t1_to_t2__s0", [{"step": 1, "T/l1_synth": 0.1, "T/l1_warp": 0.07, "T/l1": 0.07}])
    build_report(root)
    tables = root / "report" / "tables"
    claims = (tables / "claims.md").read_text()
    assert "kd_attack:full vs pix2pix" in claims and "+1.00 [+1.00, +1.00]" in claims
    assert "100.0" in (tables / "teacher.md").read_text()
