"""fer-eval on generated data in both layouts with a model trained for two epochs by fer-train: every figure in
the JSON report recomputed from the per-sample predictions, confusion matrices summing to the sample counts,
class-set mapping (8-class model on 7-class data, data classes the model lacks) and sequences without a neutral
frame."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from eval_helpers import class_folder_data, official_data
from fer_ros.tools import evaluate
from fer_ros.tools.eval_data import Sample, prepare
from fer_ros.tools.eval_report import score, write_outputs
from fer_ros.classes import CKPLUS7, CKPLUS8, NEUTRAL

pytest.importorskip("onnxruntime")


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    rc = evaluate.main([*map(str, argv), "--no-progress"])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def check_level(rep: dict, samples: list[dict], names: list[str], misses: list[dict] = ()) -> None:
    """Every figure of one level against a direct computation from its samples and misses (a miss is the answer
    "not found", a wrong one)."""
    known = [s for s in samples if s["true_label"] in names]
    missed = [m for m in misses if m["true_label"] in names]
    both = [*known, *({**m, "pred_label": "not found"} for m in missed)]
    assert rep["count"] == len(both) and rep["scored"] == len(known) and rep["missed"] == len(missed)
    cm = np.asarray(rep["confusion_matrix"])
    assert cm.sum() == len(both)
    assert rep["pred_names"] == [*names, "not found"]
    rows = rep["class_names"]
    assert rows == [n for n in names if any(s["true_label"] == n for s in both)]
    for i, r in enumerate(rows):
        for j, p in enumerate(rep["pred_names"]):
            assert cm[i, j] == sum(s["true_label"] == r and s["pred_label"] == p for s in both)
    correct = [s["true_label"] == s["pred_label"] for s in both]
    assert rep["accuracy"] == pytest.approx(np.mean(correct))
    assert rep["accuracy_on_faces_found"] == pytest.approx(np.mean([s["true_label"] == s["pred_label"]
                                                                    for s in known]))
    for r in rows:
        of_r = [s for s in both if s["true_label"] == r]
        assert rep["support"][r] == len(of_r)
        assert rep["recall"][r] == pytest.approx(np.mean([s["pred_label"] == r for s in of_r]))
    assert "not found" not in rep["precision"]
    for p in names:
        called = [s for s in known if s["pred_label"] == p]
        if called:
            assert rep["precision"][p] == pytest.approx(np.mean([s["true_label"] == p for s in called]))
        else:
            assert rep["precision"][p] is None
    assert rep["balanced_accuracy"] == pytest.approx(np.mean([rep["recall"][r] for r in rows]))
    for s in known:  # each prediction is the argmax of its own scores
        assert s["pred_label"] == names[int(np.argmax(s["probs"]))]
        assert sum(s["probs"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.parametrize("layout", ["class_folders", "ckplus_official"])
def test_report_figures_match_samples(base, model8, tmp_path, capsys, layout):
    data = class_folder_data(base) if layout == "class_folders" else official_data(base)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "--model", model8, "--data", data, "--out", out)
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    names = list(CKPLUS8)
    assert rep["data"]["layout"] == layout
    assert rep["model"]["manifest"]["class_names"] == names
    assert rep["data"]["labelled_sequences"] == 9
    samples = rep["samples"]
    seq = [s for s in samples if s["kind"] in ("sequence", "neutral")]
    frames = [s for s in samples if s["kind"] == "frame"]
    neutral = [s for s in samples if s["kind"] == "neutral"]
    assert len([s for s in seq if s["kind"] == "sequence"]) == 9
    # the official layout adds one unlabelled sequence per subject: its first frame is a neutral sample
    assert len(neutral) == (9 if layout == "class_folders" else 12) == rep["data"]["neutral_frames"]
    check_level(rep["sequence_level"], seq, names)
    if layout == "class_folders":
        assert len(frames) == 27  # 3 labelled frames per sequence
        check_level(rep["frame_level"], frames, names)
        # the newest-frame window of each sequence's last frame is the sequence sample itself
        last = {s["key"].split("/")[0]: s for s in frames if s["newest"] == next(
            q["newest"] for q in seq if q["key"] == s["key"].split("/")[0] and q["kind"] == "sequence")}
        for s in seq:
            if s["kind"] == "sequence":
                np.testing.assert_allclose(last[s["key"]]["probs"], s["probs"], atol=1e-6)
    else:  # the release labels the last frame of a sequence alone: no frame level
        assert frames == [] and rep["frame_level"] is None
    called = sum(s["pred_label"] == "neutral" for s in neutral)
    assert rep["neutral"]["called_neutral"] == called
    assert rep["neutral"]["share_called_neutral"] == pytest.approx(called / len(neutral))
    emo = [s for s in seq if s["true_label"] != "neutral"]
    assert rep["emotions"]["count"] == 9
    assert rep["emotions"]["accuracy"] == pytest.approx(np.mean([s["pred_label"] == s["true_label"] for s in emo]))
    within = [names[int(np.argmax(np.asarray(s["probs"])[:7]))] == s["true_label"] for s in emo]
    assert rep["emotions"]["accuracy_without_neutral_class"] == pytest.approx(np.mean(within))
    # model classes missing from the data: restricted accuracy over the data's classes
    o = rep["sequence_level"]["over_data_classes"]
    assert o["classes"] == ["anger", "happy", "surprise", "neutral"]
    idx = [names.index(c) for c in o["classes"]]
    direct = [names[idx[int(np.argmax(np.asarray(s["probs"])[idx]))]] == s["true_label"] for s in seq]
    assert o["accuracy"] == pytest.approx(np.mean(direct))
    assert rep["class_mapping"]["not_in_data"] == ["contempt", "disgust", "fear", "sadness"]
    # outputs: PNGs, CSV with one row per sample, summary line printed last
    assert (out / "confusion_matrix.png").stat().st_size > 2000
    assert (out / "confusion_matrix_frames.png").exists() == (layout == "class_folders")
    assert len((out / "predictions.csv").read_text().strip().splitlines()) == len(samples) + 1
    acc = rep["sequence_level"]["accuracy"]
    assert stdout.strip().splitlines()[-1] == f"accuracy {acc:.3f} on {len(seq)} sequences (4 classes)"
    assert rep["summary"] == stdout.strip().splitlines()[-1]


def test_8class_model_on_7class_data(base, model8, tmp_path, capsys):
    """No neutral samples: the data has 3 emotion classes; a neutral prediction is a miss, and the accuracy of
    the model restricted to the data's classes is reported too."""
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "--model", model8, "--data", class_folder_data(base), "--out", out,
                              "--no-neutral-samples", "--no-frame-level")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["frame_level"] is None
    seq = rep["samples"]
    assert {s["kind"] for s in seq} == {"sequence"} and len(seq) == 9
    assert all(s["has_neutral"] for s in seq)  # neutral frames still serve as references
    r = rep["sequence_level"]
    check_level(r, seq, list(CKPLUS8))
    assert r["class_names"] == ["anger", "happy", "surprise"]
    assert "neutral" not in rep["class_mapping"]["not_in_data"] and rep["class_mapping"]["not_scored"] == ["neutral"]
    idx = [CKPLUS8.index(c) for c in ("anger", "happy", "surprise")]
    direct = [CKPLUS8[idx[int(np.argmax(np.asarray(s["probs"])[idx]))]] == s["true_label"] for s in seq]
    assert r["over_data_classes"]["accuracy"] == pytest.approx(np.mean(direct))
    assert np.asarray(r["over_data_classes"]["confusion_matrix"]).sum() == 9
    assert stdout.strip().splitlines()[-1] == f"accuracy {r['accuracy']:.3f} on 9 sequences (3 classes)"


def _sample(true, pred_probs, names, has_neutral=True, kind="sequence"):
    probs = np.asarray(pred_probs, np.float64)
    return Sample(kind=kind, key="S1_1", subject="1", true_label=true, newest="x.png",
                           has_neutral=has_neutral, probs=list(probs), pred_label=names[int(np.argmax(probs))])


def test_score_neutral_predictions_are_misses_on_7class_data():
    names = list(CKPLUS8)

    def onehot(winner, runner_up):
        p = np.full(8, 0.01)
        p[names.index(winner)] = 0.6
        p[names.index(runner_up)] = 0.3
        return p / p.sum()

    samples = [_sample("happy", onehot("happy", "anger"), names),
               _sample("happy", onehot("neutral", "happy"), names),      # miss; restricted: happy
               _sample("anger", onehot("neutral", "surprise"), names),   # miss; restricted: surprise (miss)
               _sample("surprise", onehot("surprise", "neutral"), names, has_neutral=False)]
    rep = score(samples, names)
    assert rep["accuracy"] == pytest.approx(2 / 4)
    assert rep["predicted"]["neutral"] == 2
    assert rep["precision"]["neutral"] == pytest.approx(0.0)
    assert rep["over_data_classes"]["accuracy"] == pytest.approx(3 / 4)
    assert rep["with_neutral_reference"] == {"count": 3, "accuracy": pytest.approx(1 / 3)}
    assert rep["without_neutral_reference"] == {"count": 1, "accuracy": 1.0}


def test_a_data_class_whose_faces_were_all_missed_is_still_one_of_the_data_s():
    names = list(CKPLUS8)
    p = np.full(8, 0.05)
    p[names.index("fear")], p[names.index("surprise")] = 0.3, 0.35  # surprise first, fear second
    samples = [_sample("fear", p / p.sum(), names), _sample("happy", np.eye(8)[names.index("happy")], names)]
    # the data also holds surprise faces, none of them found: the model may still answer surprise
    rep = score(samples, names, data_classes=["fear", "happy", "surprise"])
    o = rep["over_data_classes"]
    assert o["classes"] == ["fear", "happy", "surprise"] and "surprise" not in o["left_out"]
    assert o["accuracy"] == pytest.approx(1 / 2)  # fear read as surprise stays a miss
    assert score(samples, names)["over_data_classes"]["accuracy"] == pytest.approx(1.0)  # without: forced to fear


def test_score_data_class_unknown_to_a_7class_model():
    names = list(CKPLUS7)
    p = np.full(7, 0.1)
    p[names.index("happy")] = 0.4
    samples = [_sample("happy", p, names), _sample("neutral", p, names), _sample("neutral", p, names),
               _sample("boredom", p, names)]
    rep = score(samples, names)
    assert rep["count"] == 1 and rep["accuracy"] == 1.0
    assert np.asarray(rep["confusion_matrix"]).sum() == 1
    assert rep["unknown_classes"] == {"boredom": {"count": 1, "predicted": {"happy": 1}},
                                      "neutral": {"count": 2, "predicted": {"happy": 2}}}


def _report(samples: list[Sample], names: list[str], frame_level: bool) -> dict:
    """The parts of build_report's report that write_outputs reads."""
    frames = [replace(s, kind="frame") for s in samples]
    return {"model": {"manifest": {"name": "m"}}, "data": {"root": "/data/ck"},
            "sequence_level": score(samples, names), "frame_level": score(frames, names) if frame_level else None,
            "samples": [asdict(s) for s in samples]}


def test_a_second_run_into_the_same_folder_leaves_no_plot_of_the_first(tmp_path):
    names = list(CKPLUS8)
    samples = [_sample("happy", np.eye(8)[names.index("happy")], names)]
    write_outputs(_report(samples, names, frame_level=True), samples, names, tmp_path)
    assert (tmp_path / "confusion_matrix.png").exists() and (tmp_path / "confusion_matrix_frames.png").exists()
    outputs = write_outputs(_report(samples, names, frame_level=False), samples, names, tmp_path)
    assert "frame_level_png" not in outputs and not (tmp_path / "confusion_matrix_frames.png").exists()
    assert (tmp_path / "confusion_matrix.png").exists()


def test_report_json_writes_non_finite_numbers_as_null(tmp_path):
    names = list(CKPLUS8)
    good = _sample("happy", np.eye(8)[names.index("happy")], names)
    broken = replace(good, key="S2_1", probs=[float("nan")] + [0.0] * 7)
    report = _report([good], names, frame_level=False)
    report["samples"] = [asdict(good), asdict(broken)]
    write_outputs(report, [good, broken], names, tmp_path)

    def refuse(constant):
        raise ValueError(f"report.json holds {constant}, which is not JSON")
    written = json.loads((tmp_path / "report.json").read_text(), parse_constant=refuse)
    assert written["samples"][1]["probs"][:2] == [None, 0.0] and written["samples"][0]["probs"] == good.probs


def test_unknown_label_folder_is_reported(base, model8, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(class_folder_data(base), data)
    shutil.copytree(data / "happy", data / "boredom")  # same sequences, a label the model does not know
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "--model", model8, "--data", data, "--out", out, "--no-frame-level")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert rep["class_mapping"]["unknown_to_model"] == ["boredom"]
    unk = rep["sequence_level"]["unknown_classes"]["boredom"]
    assert unk["count"] == 3 and sum(unk["predicted"].values()) == 3
    assert rep["sequence_level"]["count"] == 18  # 9 labelled + 9 neutral; boredom is not in the accuracy
    assert "boredom (3 sequences)" in stdout and "unknown to the model" in stdout


def test_sequences_without_neutral_frame(base, model8, tmp_path, capsys):
    from synth_data import write_class_folder_dataset
    data = tmp_path / "data"
    write_class_folder_dataset(data, ("anger", "happy"), (10, 11), missing_neutral=[(10, 1), (11, 2)],
                               sequence_length=4)
    # by default they borrow the first frame of the subject's nearest other sequence (S010_002, S011_001)
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "--model", model8, "--data", data, "--out", out, "--no-neutral-samples")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    assert all(s["has_neutral"] for s in rep["samples"])
    assert rep["data"]["sequences_neutral_borrowed"] == 2 and rep["data"]["sequences_without_neutral"] == 0
    assert rep["sequence_level"]["with_neutral_reference"]["count"] == 4
    assert "2 labelled sequences lack their own neutral first frame" in stdout
    # --own-neutral-only: scored without a reference
    out = tmp_path / "own"
    rc, stdout, err = run_cli(capsys, "--model", model8, "--data", data, "--out", out, "--no-neutral-samples",
                              "--own-neutral-only")
    assert rc == 0, err
    rep = json.loads((out / "report.json").read_text())
    seq = [s for s in rep["samples"] if s["kind"] == "sequence"]
    assert sorted(s["key"] for s in seq if not s["has_neutral"]) == ["S010_001", "S011_002"]
    assert rep["data"]["sequences_without_neutral"] == 2 and rep["data"]["sequences_neutral_borrowed"] == 0
    r = rep["sequence_level"]
    assert r["without_neutral_reference"]["count"] == 2 and r["with_neutral_reference"]["count"] == 2
    assert r["without_neutral_reference"]["accuracy"] == pytest.approx(
        np.mean([s["pred_label"] == s["true_label"] for s in seq if not s["has_neutral"]]))
    assert "2 labelled sequences have no usable neutral frame" in stdout


def test_no_neutral_reference_means_geo_valid_zero(base, model8):
    """A sequence without a neutral frame gets the node's input: zero difference image and geo_valid 0."""
    from fer_ros.training.data.datasets import load_dataset
    from fer_ros.manifest import load_manifest
    ds = load_dataset(class_folder_data(base), frames=3, with_neutral_sequences=False)
    ds.sequences[0].neutral = None
    data = prepare(ds, load_manifest(model8), None, frame_level=False, progress=False)
    assert data.valid[0] == 0.0 and not data.geos[0].any()
    assert np.all(data.valid[1:] == 1.0)
    assert not data.samples[0].has_neutral and data.counts["sequences_without_neutral"] == 1
    # the model's clip input (lbp+gray_norm+delta_norm): LBP codes / 255, the standardised gray level, then each
    # frame's change from the neutral crop
    assert data.clips.shape[1:] == (3, 3, 32, 32)
    assert 0.0 <= data.clips[:, 0].min() and data.clips[:, 0].max() <= 1.0
    assert -1.0 <= data.clips[:, 1:].min() and data.clips[:, 1:].max() <= 1.0
    assert not data.clips[0, 2, -1].any()  # no neutral reference: the newest frame shows no change
    assert any(data.clips[i, 2, -1].any() for i in range(1, len(data.clips)))


def test_ferplus_and_kdef_folders_scored_together_with_misses_and_references(base, model8, tmp_path, capsys):
    """Two --data folders: one report each; the FER+ folder is scored on its held-out split (FER2013Valid), a photo
    without a face there is a miss of the headline; KDEF's neutral photos are compared with the other session's
    and the report says so."""
    import cv2

    from synth_data import write_ferplus_dataset, write_kdef_dataset
    fer, kdef = tmp_path / "fer", tmp_path / "kdef"
    write_ferplus_dataset(fer)
    cv2.imwrite(str(fer / "FER2013Valid" / "fer0000009.png"), np.full((48, 48), 90, np.uint8))  # no face in it
    write_kdef_dataset(kdef, actors=(("F", 1), ("M", 2)), missing=("BM02NES",))
    out = tmp_path / "out"
    rc, stdout, err = run_cli(capsys, "--model", model8, "--data", fer, "--data", kdef, "--out", out,
                              "--no-frame-level")
    assert rc == 0, err
    fer_rep = json.loads((out / "fer" / "report.json").read_text())
    kdef_rep = json.loads((out / "kdef" / "report.json").read_text())
    assert {s["key"].split("/")[0] for s in fer_rep["samples"]} == {"FER2013Valid"}
    assert [m["file"] for m in fer_rep["misses"]] == ["FER2013Valid/fer0000009.png"]
    assert fer_rep["headline"]["samples"] == 4 and fer_rep["headline"]["missed"] == 1
    assert all(s["reference"] == "self" for s in fer_rep["samples"])  # no other moment of an anonymous face
    assert fer_rep["data"]["neutral_frames"] == fer_rep["neutral"]["frames"] == 1  # the neutral photo
    neutral = [s for s in kdef_rep["samples"] if s["kind"] == "neutral"]
    assert len(neutral) == 3
    assert kdef_rep["references"]["neutral"] == {"other": 2, "self": 1}  # AM02NES has no B photo to go with
    refs = {s["key"]: s["reference"] for s in kdef_rep["samples"] if s["kind"] == "sequence"}
    assert {k for k, r in refs.items() if r == "other"} == {"BM02ANS", "BM02HAS", "BM02SUS"}  # AM02NES stands in
    assert {r for k, r in refs.items() if not k.startswith("BM02")} == {"own"}
    lines = stdout.splitlines()
    assert lines.index("== fer ==") < lines.index("== kdef ==")
    assert "neutral samples: 2 compared with another neutral image of the same subject, 1 only with themselves" \
        in stdout
    summaries = [l for l in lines if l.startswith("accuracy ")]
    assert len(summaries) == 2 and summaries[0].endswith("(4 classes; 1 face not found, counted as a miss)")


def _fake_dataset(labels: list[str]):
    """The parts of a Dataset that build_report reads: one sequence per label, subject "1"."""
    from types import SimpleNamespace
    return SimpleNamespace(sequences=[SimpleNamespace(label=l, subject="1") for l in labels], root=Path("/data/ck"),
                           layout="class_folders", subjects=lambda: ["1"], neutral_frames={}, skipped=[])


def test_every_figure_counts_a_face_not_found_as_wrong(tmp_path, monkeypatch):
    """4 samples scored (3 right) and 4 faces not found, 2 of them the only fear faces: every figure counts the
    misses as wrong answers, in a "not found" column; the accuracy on the faces found stands beside."""
    from types import SimpleNamespace

    from fer_ros import plots
    from fer_ros.tools.eval_data import Miss
    from fer_ros.tools.eval_report import build_report, format_report
    names = list(CKPLUS8)
    hot = {n: np.eye(8)[names.index(n)] for n in names}
    samples = [_sample("happy", hot["happy"], names), _sample("happy", hot["happy"], names),
               _sample("anger", hot["happy"], names), _sample("neutral", hot["neutral"], names, kind="neutral"),
               _sample("happy", hot["happy"], names, kind="frame")]
    misses = [Miss("S1_4", "happy", "happy/a.png", "no_face"), Miss("S1_5", "fear", "fear/b.png", "no_face"),
              Miss("S1_6", "fear", "fear/c.png", "no_face", has_neutral=True, reference="own"),
              Miss("S1_7", "neutral", "neutral/d.png", "no_face", kind="neutral"),
              Miss("S1_4/f", "happy", "happy/a.png", "no_face", kind="frame")]
    ds = _fake_dataset(["happy", "happy", "anger", "neutral", "happy", "fear", "fear", "neutral"])
    rep = build_report(samples, names, ds, {"images": 9}, SimpleNamespace(to_json=lambda: '{"name": "m"}'),
                       tmp_path, "onnxruntime", misses)
    assert rep["headline"] == {"accuracy": 3 / 8, "samples": 8, "scored": 4, "missed": 4,
                               "missed_by_class": {"happy": 1, "fear": 2, "neutral": 1},
                               "accuracy_on_faces_found": 3 / 4}
    r = rep["sequence_level"]
    assert r["class_names"] == ["anger", "fear", "happy", "neutral"]  # fear: every face missed, still a row
    assert r["pred_names"] == [*names, "not found"]
    assert [row[-1] for row in r["confusion_matrix"]] == [0, 2, 1, 1]
    assert (r["count"], r["correct"], r["scored"], r["missed"]) == (8, 3, 4, 4)
    assert r["accuracy"] == 3 / 8 and r["accuracy_on_faces_found"] == 3 / 4
    assert r["support"] == {"anger": 1, "fear": 2, "happy": 3, "neutral": 2}
    assert r["recall"] == {"anger": 0.0, "fear": 0.0, "happy": pytest.approx(2 / 3), "neutral": 0.5}
    assert r["balanced_accuracy"] == pytest.approx((0 + 0 + 2 / 3 + 1 / 2) / 4)
    assert r["precision"]["happy"] == pytest.approx(2 / 3) and "not found" not in r["precision"]
    assert r["predicted"]["not found"] == 4
    assert r["over_data_classes"]["accuracy"] == 3 / 8
    assert r["with_neutral_reference"] == {"count": 5, "accuracy": 3 / 5}  # the 4 scored and one fear miss
    assert r["without_neutral_reference"] == {"count": 3, "accuracy": 0.0}
    f = rep["frame_level"]
    assert (f["count"], f["accuracy"], f["recall"]) == (2, 0.5, {"happy": 0.5})
    assert [m["key"] for m in rep["frame_misses"]] == ["S1_4/f"] and len(rep["misses"]) == 4
    # the 6 emotion faces: happy, happy, anger (read as happy) scored, happy and two fear not found
    assert rep["emotions"] == {"count": 6, "missed": 3, "accuracy": 2 / 6, "accuracy_without_neutral_class": 2 / 6}
    assert rep["neutral"] == {"frames": 2, "missed": 1, "called_neutral": 1, "share_called_neutral": 0.5}
    lines = format_report(rep)
    assert "sequence-level: accuracy 0.375 on 8 (4 not found, counted as wrong), balanced 0.292" in lines
    assert "sequence-level: accuracy 0.750 on the 4 faces found" in lines
    assert "neutral frames called neutral: 1/2 (0.500; 1 not found, not called neutral)" in lines
    titles = []
    save = plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (titles.append(fig.axes[0].get_title()), save(fig, path))[1])
    write_outputs(rep, samples, names, tmp_path)
    assert titles[0] == "m on ck (sequence level): 8 samples, accuracy 0.375 (4 not found, counted as wrong)"
    written = json.loads((tmp_path / "report.json").read_text())
    assert written["sequence_level"]["confusion_matrix"] == r["confusion_matrix"]
    assert written["summary"] == "accuracy 0.375 on 8 sequences (4 classes; 4 faces not found, counted as misses)"


def test_the_misses_of_classes_the_model_lacks_are_not_said_to_count(tmp_path):
    """A 7-class model: of three faces not found, the happy one counts as a miss of the headline; the neutral and
    boredom ones are named on a line of their own, left out of the accuracy, as the headline leaves them out."""
    from types import SimpleNamespace

    from fer_ros.tools.eval_data import Miss
    from fer_ros.tools.eval_report import build_report, format_report, summary_line
    names = list(CKPLUS7)
    samples = [_sample("happy", np.eye(7)[names.index("happy")], names)]
    misses = [Miss("S1_2", "happy", "happy/a.png", "no_face"), Miss("S1_3", "boredom", "boredom/b.png", "no_face"),
              Miss("S1_4", "neutral", "neutral/c.png", "unreadable", kind="neutral")]
    rep = build_report(samples, names, _fake_dataset(["happy", "happy", "boredom", "neutral"]), {"images": 4},
                       SimpleNamespace(to_json=lambda: "{}"), tmp_path, "onnxruntime", misses)
    assert rep["headline"]["missed"] == 1
    lines = format_report(rep)
    assert "1 samples not scored, counted as misses (1 no face found): happy/a.png (all in report.json)" in lines
    assert ("2 samples of classes the model lacks not scored, left out of the accuracy (1 no face found, "
            "1 unreadable image): boredom/b.png, neutral/c.png (all in report.json)") in lines
    assert sum("counted as misses" in line for line in lines) == 1
    assert summary_line(rep) == "accuracy 0.500 on 2 sequences (1 classes; 1 face not found, counted as a miss)"


def test_non_finite_scores_are_misses_with_a_warning():
    """The model's scores for one of three samples are NaN: that sample is a miss (not a prediction of the first
    class), listed and warned about; the headline is 1 right of 3."""
    from types import SimpleNamespace

    from fer_ros.tools.eval_data import PreparedData, predict
    from fer_ros.tools.eval_report import build_report, format_report, summary_line
    names = list(CKPLUS8)
    rows = np.stack([np.eye(8)[0], np.full(8, np.nan), np.eye(8)[0]]).astype(np.float32)  # anger, NaN, anger
    engine = SimpleNamespace(predict=lambda clips, geos, valid: rows[:len(clips)])
    samples = [Sample("sequence", f"S1_{i}", "1", t, f"{t}/{i}.png", True) for i, t in
               enumerate(["anger", "anger", "happy"])]
    data = PreparedData(samples, np.zeros((3, 1)), np.zeros((3, 1)), np.ones(3), {"images": 3})
    predict(engine, data, names, progress=False)
    assert [s.key for s in data.samples] == ["S1_0", "S1_2"]
    assert [(m.key, m.reason, m.file) for m in data.misses] == [("S1_1", "non_finite_scores", "anger/1.png")]
    assert data.counts["non_finite_scores"] == 1
    rep = build_report(data.samples, names, _fake_dataset(["anger", "anger", "happy"]), data.counts,
                       SimpleNamespace(to_json=lambda: "{}"), Path("/m"), "x", data.misses)
    assert rep["headline"]["accuracy"] == 1 / 3 and rep["headline"]["missed"] == 1
    assert rep["sequence_level"]["recall"] == {"anger": 0.5, "happy": 0.0}
    assert any(l.startswith("warning: the model gave non-finite scores for 1 samples") for l in format_report(rep))
    assert summary_line(rep) == "accuracy 0.333 on 3 sequences (2 classes; 1 with non-finite scores, counted as a miss)"


def test_a_reference_without_a_face_gives_way_to_the_nearest_other_neutral_frame(base, model8, tmp_path):
    """Subject 10's neutral frame of sequence 2 has no face: sequence 2 is compared with sequence 1's (nearest,
    the earlier on a tie), the neutral samples of sequences 1 and 3 with each other's, as if the data said so."""
    import cv2

    from fer_ros.manifest import load_manifest
    from fer_ros.tools.eval_data import open_dataset
    from synth_data import write_class_folder_dataset
    data = tmp_path / "data"
    write_class_folder_dataset(data, ("anger", "happy", "surprise"), (10,), sequence_length=4)
    neutral = {n: data / "neutral" / f"S010_00{n}_00000001.png" for n in (1, 2, 3)}
    cv2.imwrite(str(neutral[2]), np.full((96, 96), 90, np.uint8))
    manifest = load_manifest(model8)
    ds = open_dataset(data, manifest.window_length)
    got = prepare(ds, manifest, None, frame_level=False, progress=False)
    refs = {(s.kind, s.key): (s.reference, s.has_neutral) for s in got.samples}
    assert refs == {("sequence", "S010_001"): ("own", True), ("sequence", "S010_002"): ("other", True),
                    ("sequence", "S010_003"): ("own", True), ("neutral", "S010_001"): ("other", True),
                    ("neutral", "S010_003"): ("other", True)}
    assert [(m.kind, m.key) for m in got.misses] == [("neutral", "S010_002")]
    assert got.counts["references_replaced"] == {"other": 3, "self": 0}
    # the same inputs as data whose references were those frames
    said = open_dataset(data, manifest.window_length)
    chosen = {("happy", "002"): neutral[1], ("neutral", "001"): neutral[3], ("neutral", "003"): neutral[1]}
    for s in said.sequences:
        s.neutral = chosen.get((s.label, s.sequence), s.neutral)
    want = prepare(said, manifest, None, frame_level=False, progress=False)
    assert [s.key for s in want.samples] == [s.key for s in got.samples]
    np.testing.assert_array_equal(want.clips, got.clips)
    np.testing.assert_array_equal(want.geos, got.geos)


def test_a_kdef_neutral_photo_whose_reference_has_no_face_is_its_own(model8, tmp_path):
    """BF01NES has no face: AF01NES has no other neutral photo left and is compared with itself; BF01HAS is compared
    with AF01NES."""
    import cv2

    from fer_ros.manifest import load_manifest
    from fer_ros.tools.eval_data import open_dataset
    from synth_data import write_kdef_dataset
    data = tmp_path / "kdef"
    write_kdef_dataset(data, actors=(("F", 1),), expressions=("happy", "neutral"))
    cv2.imwrite(str(data / "BF01NES.jpg"), np.full((160, 160, 3), 90, np.uint8))
    manifest = load_manifest(model8)
    got = prepare(open_dataset(data, manifest.window_length), manifest, None, frame_level=False, progress=False)
    assert {s.key: s.reference for s in got.samples} == {"AF01HAS": "own", "AF01NES": "self", "BF01HAS": "other"}
    assert got.counts["references_replaced"] == {"other": 1, "self": 1}
    assert [m.key for m in got.misses] == ["BF01NES"]


def test_data_folders_of_one_name_are_named_as_fer_train_names_them(tmp_path):
    from fer_ros.training.data.samples import Source, dataset_names as train_names
    roots = [tmp_path / "a" / "data", tmp_path / "b" / "data", tmp_path / "c" / "data2"]
    names = evaluate.dataset_names(roots)
    assert names == ["data", "data3", "data2"]
    assert names == train_names([Source(r) for r in roots])


def test_the_summary_line_names_each_reason_for_a_miss(tmp_path):
    """An unreadable image is named as one in the last line, as in the lines above it, apart from the faces not
    found and the non-finite scores."""
    from types import SimpleNamespace

    from fer_ros.tools.eval_data import Miss
    from fer_ros.tools.eval_report import build_report, format_report, summary_line
    names = list(CKPLUS8)
    samples = [_sample("happy", np.eye(8)[names.index("happy")], names)]

    def report(misses):
        return build_report(samples, names, _fake_dataset(["happy"] * (1 + len(misses))), {"images": 4},
                            SimpleNamespace(to_json=lambda: "{}"), tmp_path, "onnxruntime", misses)
    rep = report([Miss("S1_2", "happy", "happy/broken.png", "unreadable")])
    assert "1 samples not scored, counted as misses (1 unreadable image): happy/broken.png (all in report.json)" \
        in format_report(rep)
    assert summary_line(rep) == "accuracy 0.500 on 2 sequences (1 classes; 1 unreadable image, counted as a miss)"
    rep = report([Miss("S1_2", "happy", "happy/a.png", "no_face"), Miss("S1_3", "happy", "happy/b.png", "no_face"),
                  Miss("S1_4", "happy", "happy/c.png", "unreadable"),
                  Miss("S1_5", "happy", "happy/d.png", "non_finite_scores")])
    assert summary_line(rep) == ("accuracy 0.200 on 5 sequences (1 classes; 2 faces not found, 1 unreadable image, "
                                 "1 with non-finite scores, counted as misses)")


@pytest.mark.parametrize("layout", ["ferplus", "class_folders"])
def test_neutral_images_left_out_as_samples_are_still_the_data_s(tmp_path, layout):
    """--no-neutral-samples: the data's neutral images and subjects are counted as without it, and neutral is a
    data class not scored, not one the data lacks; the figures are those of the samples scored."""
    from types import SimpleNamespace

    from synth_data import write_ferplus_dataset
    from fer_ros.tools.eval_data import neutral_images, open_dataset
    from fer_ros.tools.eval_report import build_report, format_report, summary_line
    root = tmp_path / "fer"
    if layout == "ferplus":
        write_ferplus_dataset(root)
    else:
        root = class_folder_data(tmp_path)
    names = list(CKPLUS8)
    full, ds = open_dataset(root, 3), open_dataset(root, 3, neutral_samples=False)
    assert NEUTRAL not in {s.label for s in ds.sequences}
    assert neutral_images(ds) == neutral_images(full) and neutral_images(ds)
    samples = [_sample(s.label, np.eye(8)[names.index("happy")], names) for s in ds.sequences]
    rep = build_report(samples, names, ds, {"images": 4, "neutral_frames": len(neutral_images(ds))},
                       SimpleNamespace(to_json=lambda: "{}"), tmp_path, "onnxruntime")
    assert rep["data"]["subjects"] == len(full.subjects())
    cm = rep["class_mapping"]
    assert cm["data_classes"] == ["anger", "happy", "neutral", "surprise"]
    assert cm["not_in_data"] == ["contempt", "disgust", "fear", "sadness"] and cm["not_scored"] == ["neutral"]
    lines = format_report(rep)
    assert "model classes absent from the data (predicting them is wrong): contempt, disgust, fear, sadness" in lines
    assert "data classes not scored (--no-neutral-samples; predicting them is wrong): neutral" in lines
    assert rep["sequence_level"]["over_data_classes"]["left_out"] == [*cm["not_in_data"], "neutral"]
    assert summary_line(rep).endswith(f"on {len(samples)} sequences (3 classes)")
