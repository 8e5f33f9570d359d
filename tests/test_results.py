"""The results module: the detections type and the curve file, one writer and one reader."""
from __future__ import annotations

import numpy as np

from t3al.evaluate.results import Curve, Detections, read_curve, write_curve


def _curve(presence: np.ndarray | None = None) -> Curve:
    t = np.arange(4, dtype=np.float64) / 2
    return Curve("v1", t, np.array([0.1, 0.9, 0.8, 0.2], dtype=np.float32), "Jump", np.array([[0.5, 1.0]]),
                 ["Jump"], [0.75], {"Jump": np.array([0.1, 0.9, 0.8, 0.2], dtype=np.float32),
                                    "Swim": np.array([0.3, 0.2, 0.1, 0.0], dtype=np.float32)}, presence)


def test_a_written_curve_reads_back_the_same(tmp_path):
    write_curve(tmp_path / "v1.npz", _curve(np.array([0.9, 0.1])))
    curve = read_curve(tmp_path / "v1.npz")
    assert (curve.video, curve.pseudo_label, curve.labels) == ("v1", "Jump", ["Jump"])
    assert curve.timestamps.tolist() == [0.0, 0.5, 1.0, 1.5] and curve.segments.tolist() == [[0.5, 1.0]]
    assert curve.scores.tolist() == [0.75] and curve.presence.tolist() == [0.9, 0.1]
    assert list(curve.curves) == ["Jump", "Swim"] and np.allclose(curve.curves["Swim"], [0.3, 0.2, 0.1, 0.0])


def test_the_curve_file_holds_the_documented_arrays_with_their_dtypes(tmp_path):
    write_curve(tmp_path / "v1.npz", _curve())
    with np.load(tmp_path / "v1.npz") as data:
        assert data.files == ["timestamps", "similarity", "pseudo_label", "segments", "labels", "scores",
                              "curve_labels", "curves"]
        assert data["similarity"].dtype == np.float32 and data["curves"].shape == (2, 4)
        assert data["pseudo_label"].dtype.kind == data["labels"].dtype.kind == "U"
        assert data["scores"].dtype == np.float64


def test_the_evaluate_package_gives_the_results_modules_detections():
    from t3al.evaluate import Detections as exported

    assert exported is Detections
