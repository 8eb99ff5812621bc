"""Refactors change no number (issue 27): the claims table and every power-law fit, recomputed from the records the
committed store held when they were frozen, equal the frozen copy (``tests/data/frozen_answers.json``).

Records never change (a record is named by the hash of its cell), so the view below, the frozen hashes copied into a
fresh store, is the store as it was. To freeze anew after a change of the answers that is meant (a new rule, a new
table): ``python tests/test_frozen.py`` rewrites both files from the committed store.
"""

import json
import math
import os
import shutil
import sys
from pathlib import Path


DATA = Path(__file__).resolve().parent / "data"
HASHES, ANSWERS = DATA / "frozen_store_hashes.txt", DATA / "frozen_answers.json"
EXPERIMENTS = ("power_law", "sharpness", "input_layer", "late_lr")


def answers() -> dict:
    """The claims table and the fits of the store ``MILR_RESULTS`` points at, as plain JSON values."""
    from milr_core import sharpness_tables, tables
    from milr_core.claims import claims_table
    from milr_core.experiments import run_experiment

    frames = {name: run_experiment(name, "paper", compute=False) for name in EXPERIMENTS}
    fits = {
        "power law": tables.fits_table(frames["power_law"]),
        "product form": tables.product_form_table(frames["power_law"]),
        "sharpness exponents": tables.exponents_table(frames["sharpness"], ["lambda_1", "lambda_1_eff"]),
        "late contrast": sharpness_tables.late_contrast(frames["late_lr"]),
    }
    plain = lambda frame: json.loads(frame.to_json(orient="records", double_precision=12))  # noqa: E731
    return {"claims": plain(claims_table("paper", compute=False)), **{k: plain(v) for k, v in fits.items()}}


def same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(same, a, b))
    return a == b


def frozen_view(folder: Path, hashes: list[str]) -> None:
    """A store at ``folder / "paper"`` holding exactly the committed records named by ``hashes``."""
    from milr_core.repository import committed_store

    store = folder / "paper"
    store.mkdir(parents=True)
    source = committed_store("paper")
    for cell_hash in hashes:
        shutil.copyfile(source / f"{cell_hash}.json", store / f"{cell_hash}.json")


def test_claims_and_fits_equal_their_frozen_copy(tmp_path, monkeypatch):
    frozen_view(tmp_path, HASHES.read_text().split())
    monkeypatch.setenv("MILR_RESULTS", str(tmp_path))
    frozen = json.loads(ANSWERS.read_text())
    now = answers()
    for key in frozen:
        assert same(now[key], frozen[key]), f"{key} differs from its frozen copy"


if __name__ == "__main__":  # freeze anew, from the records git tracks in the committed store
    import subprocess
    import tempfile

    root = DATA.parent.parent
    sys.path.insert(0, str(root))
    listed = subprocess.run(["git", "ls-files", "results/paper"], cwd=root, capture_output=True, text=True, check=True)
    hashes = sorted(Path(line).stem for line in listed.stdout.split() if line.endswith(".json"))
    with tempfile.TemporaryDirectory() as folder:
        frozen_view(Path(folder), hashes)
        os.environ["MILR_RESULTS"] = folder
        ANSWERS.write_text(json.dumps(answers(), indent=0, sort_keys=True) + "\n")
    HASHES.write_text("\n".join(hashes) + "\n")
    print(f"froze the answers of {len(hashes)} committed records into {ANSWERS.name}", file=sys.stderr)
