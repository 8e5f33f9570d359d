"""t3al-evaluate says what it scores as given though it is rarely meant (issue 25)."""
from __future__ import annotations

from click.testing import CliRunner

from t3al.evaluate.cli import main as evaluate_main


def test_detections_outside_their_video_are_scored_with_a_note(tmp_path):
    from t3al.manifests import Manifest

    manifest = Manifest("toy", ["A"], {"v": {"subset": "test", "duration": 20.0, "fps": 10.0}},
                        [{"video": "v", "start": 0.0, "end": 10.0, "label": "A"}], {}, [0.5])
    manifest.save(tmp_path / "manifest.json")
    dets = tmp_path / "d.csv"
    dets.write_text("video-id,t-start,t-end,score,label\nv,-2,10,0.9,A\nv,15,25,0.5,A\nv,12,18,0.4,A\n")
    result = CliRunner().invoke(evaluate_main, [str(dets), "-g", str(tmp_path / "manifest.json")])
    assert result.exit_code == 0, result.output
    assert ("note: 1 detection(s) start before 0 s and 1 end after their video's duration; they are scored as "
            "given (clip them to the video if that is not meant)") in result.output
    dets.write_text("video-id,t-start,t-end,score,label\nv,0,10,0.9,A\n")
    assert "note: " not in CliRunner().invoke(evaluate_main, [str(dets), "-g", str(tmp_path / "manifest.json")]).output
