"""Training end to end on a handful of images, checkpoint/resume, the export's parity, and the ONNX→torch loader."""

import dataclasses
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from models.fetch import model_path  # noqa: E402
from models.training.nets import CYDRAL_FEATURE_NODE, OnnxGraphModule, build_multihead_from_cydral  # noqa: E402
from tests.conftest import UTKFACE, shared_file  # noqa: E402


def _session(path):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def cydral_paths():
    return model_path("cydral_age", download=False), model_path("cydral_gender", download=False)


@pytest.mark.parametrize(("index", "size"), [(0, 64), (1, 32)])
def test_loader_reproduces_cydral_onnx(cydral_paths, index, size):
    path = cydral_paths[index]
    x = (np.random.default_rng(index).random((3, 3, size, size), dtype=np.float32) - 0.5)
    expected = _session(path).run(None, {"images": x})[0]
    with torch.no_grad():
        actual = OnnxGraphModule(path)(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-5)


def test_age_features_match_between_onnxruntime_and_torch(cydral_paths):
    from models.training.train import age_trunk_features

    chips = np.random.default_rng(0).integers(0, 255, (3, 64, 64, 3), dtype=np.uint8)
    from models.training.nets import to_input

    with torch.no_grad():
        expected = OnnxGraphModule(cydral_paths[0], output=CYDRAL_FEATURE_NODE)(to_input(torch.from_numpy(chips)))
    np.testing.assert_allclose(age_trunk_features(cydral_paths[0], chips), expected.numpy(), atol=1e-4)


def test_denormal_mask_reads_bits_even_with_flush_denormal():
    from models.training.nets import denormal_mask, zero_denormals_

    values = np.array([0.0, 1e-39, -3e-45, 1.2e-38, 1.0, -2.5, np.inf], np.float32)
    expected = [False, True, True, False, False, False, False]
    torch.set_flush_denormal(True)
    try:
        assert denormal_mask(values).tolist() == expected  # a value comparison would see 0 here
        module = torch.nn.Linear(7, 1)
        with torch.no_grad():
            module.weight.copy_(torch.from_numpy(values.reshape(1, 7)))
        assert zero_denormals_(module) == 2
        assert not denormal_mask(module.weight.detach().numpy()).any()
        assert module.weight[0, 4] == 1.0
    finally:
        torch.set_flush_denormal(False)


def test_loader_zeroes_cydral_denormals(cydral_paths):
    from models.training.nets import denormal_mask
    from models.training.train import count_denormal_weights

    assert count_denormal_weights(cydral_paths[0]) > 1000  # the published file carries thousands
    trunk = OnnxGraphModule(cydral_paths[0], output=CYDRAL_FEATURE_NODE)
    assert not any(denormal_mask(p.detach().numpy()).any() for p in trunk.parameters())


def test_age_trunk_frozen_or_trainable(cydral_paths):
    frozen = build_multihead_from_cydral(*cydral_paths, freeze_age_trunk=True)
    tuned = build_multihead_from_cydral(*cydral_paths, freeze_age_trunk=False)
    assert not any(p.requires_grad for p in frozen.age_trunk.parameters())
    assert all(p.requires_grad for p in tuned.age_trunk.parameters())
    assert all(p.requires_grad for p in frozen.gender_trunk.parameters())


def test_loader_rejects_unknown_output(cydral_paths):
    with pytest.raises(ValueError, match="not a tensor"):
        OnnxGraphModule(cydral_paths[0], output="no_such_node")


def test_multihead_starts_at_cydral(cydral_paths):
    net = build_multihead_from_cydral(*cydral_paths).eval()
    x = np.random.default_rng(1).random((4, 3, 64, 64), dtype=np.float32) - 0.5
    with torch.no_grad():
        _, age, gender_logit = net(torch.from_numpy(x))
        pooled = torch.nn.functional.avg_pool2d(torch.from_numpy(x), 2).numpy()
    cydral_age = _session(cydral_paths[0]).run(None, {"images": x})[0] @ np.r_[0.25, np.arange(1, 81)]
    p_female = _session(cydral_paths[1]).run(None, {"images": pooled})[0][:, 0]
    np.testing.assert_allclose(age.numpy(), cydral_age, atol=0.1)
    np.testing.assert_allclose(torch.sigmoid(gender_logit).numpy(), p_female, atol=1e-4)


def test_tiny_training_resume_and_export(tmp_path):
    shared_file("data", "utkface", "UTKFace")
    from export.torch_onnx import PARITY_TOLERANCE_FP16, PARITY_TOLERANCE_FP32, export_with_parity
    from models.registry import Trained, get_spec
    from models.training.train import OUTPUT_NAMES, TrainConfig, count_denormal_weights, export, predict_chips, train

    config = TrainConfig(data=str(UTKFACE), cache=str(tmp_path / "cache"), run_dir=str(tmp_path / "run"),
                         out_dir=str(tmp_path / "out"), epochs=1, batch_size=8, limit=24, threads=1, ema=0.9)
    start = build_multihead_from_cydral(*(model_path(n, download=False) for n in ("cydral_age", "cydral_gender")))
    model, summary = train(config)
    assert len(summary["history"]) == 1 and (tmp_path / "run" / "last.pt").is_file()
    # Denormal flushing is process-wide; train() switches it off again (else value tests miss denormals).
    assert (np.array([1e-39, 0.0], np.float32) != 0).tolist() == [True, False]
    # The age trunk is fine-tuned (not frozen) by default.
    assert any(not torch.equal(a, b) for a, b in zip(model.age_trunk.parameters(), start.age_trunk.parameters()))
    assert np.isfinite(summary["history"][0]["loss_total"])
    # Resume: extends to 2 epochs, training only the second one.
    longer = dataclasses.replace(config, epochs=2)
    model, summary = train(longer, resume=True)
    assert [entry["epoch"] for entry in summary["history"]] == [1, 2]
    with pytest.raises(ValueError, match="different settings"):
        train(dataclasses.replace(config, lr=0.5), resume=True)
    with pytest.raises(ValueError, match="no checkpoint"):
        train(dataclasses.replace(config, run_dir=str(tmp_path / "empty")), resume=True)

    onnx_path = tmp_path / "out" / "m.onnx"
    difference = export_with_parity(model, onnx_path, 64, OUTPUT_NAMES)
    assert difference < PARITY_TOLERANCE_FP32
    exported = onnx.load(str(onnx_path))
    path, _, _, _ = export(model, longer)
    assert count_denormal_weights(path) == 0
    assert [o.name for o in exported.graph.output] == list(OUTPUT_NAMES)
    assert exported.opset_import[0].version == 17
    # Weights-only fp16: half the file, same interface, within its own tolerance.
    half_path = tmp_path / "out" / "m16.onnx"
    assert export_with_parity(model, half_path, 64, OUTPUT_NAMES, fp16=True) < PARITY_TOLERANCE_FP16
    assert half_path.stat().st_size < 0.6 * onnx_path.stat().st_size

    # The export decodes through the runtime wrapper like the torch model's own outputs.
    from stream.classify import MultiHeadClassifier
    from stream.types import AGE_GROUP_PROBS, AGE_YEARS, P_FEMALE

    spec = dataclasses.replace(get_spec("utk_multihead"), sources=(Trained(str(onnx_path)),), input_size=(64, 64),
                               alignment="dlib_chip")
    classifier = MultiHeadClassifier(spec, _session(onnx_path))
    chips = np.random.default_rng(2).integers(0, 255, (5, 64, 64, 3), dtype=np.uint8)
    out = classifier.predict(chips)
    expected = predict_chips(model, chips)
    np.testing.assert_allclose(out[AGE_YEARS], expected["age"], atol=1e-3)
    np.testing.assert_allclose(out[P_FEMALE], expected["p_female"], atol=1e-4)
    np.testing.assert_allclose(out[AGE_GROUP_PROBS], expected["group_probs"], atol=1e-4)


def test_bad_export_sample():
    from export.torch_onnx import export_onnx

    with pytest.raises(ValueError, match="sample"):
        export_onnx(torch.nn.Identity(), torch.zeros(3, 8, 8), ["y"])


class _TinyHeads(torch.nn.Module):
    """Not flip-symmetric: (group_logits (n,8), age (n,), gender_logit (n,)) from the flattened chip."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = torch.nn.Linear(3 * 8 * 8, 10)

    def forward(self, x):
        out = self.linear(x.flatten(1))
        return out[:, :8], out[:, 8] * 10 + 40, out[:, 9]


def test_flip_average_is_mirror_invariant_and_averages_probabilities():
    from models.training.nets import FlipAverage

    net = _TinyHeads().eval()
    tta = FlipAverage(net).eval()
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        group, age, gender = tta(x)
        mirrored = tta(x.flip(3))
        a, b = net(x), net(x.flip(3))
    for left, right in zip((group, age, gender), mirrored):
        assert torch.allclose(left, right, atol=1e-5)
    assert group.shape == (3, 8) and age.shape == (3,) and gender.shape == (3,)
    expected = (torch.softmax(a[0], 1) + torch.softmax(b[0], 1)) / 2
    assert torch.allclose(torch.softmax(group, 1), expected, atol=1e-5)
    assert torch.allclose(age, (a[1] + b[1]) / 2, atol=1e-4)
    assert torch.allclose(torch.sigmoid(gender), (torch.sigmoid(a[2]) + torch.sigmoid(b[2])) / 2, atol=1e-5)


def test_weight_average_follows_the_weights_with_lag():
    from models.training.train import WeightAverage

    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(0.0)
        net.bias.fill_(0.0)
    average = WeightAverage(net, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(1.0)
        net.bias.fill_(1.0)
    average.update(net)  # 0.5 * 0 + 0.5 * 1
    average.update(net)  # 0.5 * 0.5 + 0.5 * 1
    averaged = average.averaged(net)
    assert torch.allclose(averaged.weight, torch.full((1, 2), 0.75))
    assert torch.equal(net.weight, torch.ones(1, 2))  # the live model is untouched
    restored = WeightAverage(net, decay=0.5)
    restored.load_state_dict(average.state_dict())
    assert torch.allclose(restored.averaged(net).bias, torch.tensor([0.75]))
    with pytest.raises(ValueError, match="ema"):
        WeightAverage(net, decay=1.0)


def test_multihead_takes_larger_chips(cydral_paths):
    # The age trunk is fully convolutional and the gender trunk's input is pooled to 32x32 at any chip size.
    net = build_multihead_from_cydral(*cydral_paths).eval()
    with torch.no_grad():
        group_logits, age, gender_logit = net(torch.zeros(2, 3, 96, 96))
    assert group_logits.shape == (2, 8) and age.shape == (2,) and gender_logit.shape == (2,)


def test_distillation_trains_members_once_then_the_student(tmp_path):
    shared_file("data", "utkface", "UTKFace")
    from models.training.train import TrainConfig, member_config, train

    config = TrainConfig(data=str(UTKFACE), cache=str(tmp_path / "cache"), run_dir=str(tmp_path / "run"),
                         out_dir=str(tmp_path / "out"), epochs=1, batch_size=8, limit=24, threads=1, teachers=2)
    # One member alone (what a parallel process runs): its own folder, and nothing else trained.
    member, summary = train(dataclasses.replace(config, member=2))
    second = tmp_path / "run" / "member2" / "last.pt"
    assert second.is_file() and not (tmp_path / "run" / "last.pt").exists()
    stamp = second.stat().st_mtime_ns
    model, summary = train(config)
    assert len(summary["members"]) == 2 and (tmp_path / "run" / "member1" / "last.pt").is_file()
    assert second.stat().st_mtime_ns == stamp  # the finished member was taken as it was, not trained again
    assert {"loss_kd_group", "loss_kd_age", "loss_kd_gender"} <= set(summary["history"][0])
    # Members differ in their random start; the split (and so the validation faces) is the same.
    first_state = torch.load(tmp_path / "run" / "member1" / "last.pt", weights_only=False)
    second_state = torch.load(second, weights_only=False)
    assert not torch.equal(first_state["model"]["group_head.0.weight"], second_state["model"]["group_head.0.weight"])
    assert member_config(config, 1).kd_weight == member_config(dataclasses.replace(config, kd_weight=5.0), 1).kd_weight
    assert member_config(config, 1).teachers == 0


def test_distillation_terms_vanish_when_the_student_agrees():
    from models.training.train import TrainConfig, class_weights, loss_terms, member_targets

    torch.manual_seed(0)
    n = 6
    out = {"group_logits": torch.randn(n, 8), "age_logits": torch.randn(n, 101), "age": torch.rand(n) * 80,
           "gender_logit": torch.randn(n)}
    age, group, gender = torch.randint(0, 90, (n,)), torch.randint(0, 8, (n,)), torch.randint(0, 2, (n,))
    weights = torch.ones(8)
    config = TrainConfig(kd_weight=2.0)
    own = {"group_probs": torch.softmax(out["group_logits"], 1), "age_probs": torch.softmax(out["age_logits"], 1),
           "p_female": torch.sigmoid(out["gender_logit"])}
    plain = loss_terms(out, age, group, gender, weights, config)
    agreeing = loss_terms(out, age, group, gender, weights, config, own)
    assert "kd_group" not in plain
    assert float(agreeing["kd_group"]) == pytest.approx(0.0, abs=1e-6)
    assert float(agreeing["kd_age"]) == pytest.approx(0.0, abs=1e-6)
    other = {k: v.flip(0) for k, v in own.items()}
    disagreeing = loss_terms(out, age, group, gender, weights, config, other)
    assert float(disagreeing["kd_group"]) > 0.01 and float(disagreeing["total"]) > float(agreeing["total"])

    # The members' targets are their mean probabilities.
    class Fixed(torch.nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.shift = shift

        def forward_train(self, x):
            return {key: value + self.shift for key, value in out.items()}

    targets = member_targets([Fixed(0.0), Fixed(1.0)], torch.zeros(n, 3, 4, 4))
    expected = (torch.sigmoid(out["gender_logit"]) + torch.sigmoid(out["gender_logit"] + 1)) / 2
    assert torch.allclose(targets["p_female"], expected)
    assert torch.allclose(targets["group_probs"].sum(1), torch.ones(n))

    groups = np.array([0] * 90 + [7] * 10)
    assert torch.allclose(class_weights(groups, 0.0), torch.ones(8))
    rare_over_common = class_weights(groups, 0.5)
    assert float(rare_over_common[7] / rare_over_common[0]) == pytest.approx(3.0, rel=1e-5)


def test_card_record_round_trip_and_retrain_command(tmp_path):
    from pathlib import Path

    from models.training.train import TrainConfig, load_export_record, main, retrain_command, save_export_record

    assert main(["--card-only", "--out-dir", str(tmp_path)]) == 2  # nothing exported there yet
    weights = tmp_path / "utk_multihead.onnx"
    weights.write_bytes(b"onnx")
    run = TrainConfig(epochs=18, teachers=4, class_weight_power=0.0, flip_tta=True, data="/elsewhere/UTKFace",
                      run_dir="/tmp/x", out_dir="/gpu/out")
    save_export_record(weights, run, {"history": [], "n_train": 1}, 2.5e-5)
    path, loaded, summary, difference = load_export_record(TrainConfig(out_dir=str(tmp_path), data="/here"))
    assert path == weights and difference == 2.5e-5 and summary["n_train"] == 1
    assert (loaded.epochs, loaded.teachers, loaded.data, Path(loaded.out_dir)) == (18, 4, "/here", tmp_path)
    command = retrain_command(loaded)
    assert command.startswith("python -m models.training.train --data ../shared/data/utkface/UTKFace")
    assert "--epochs 18" in command and "--teachers 4" in command and "--class-weight-power 0.0" in command
    assert "--flip-tta" in command and "run-dir" not in command and "--lr" not in command


def test_dlib_backbone_with_descriptor_teacher_trains_and_exports(tmp_path):
    shared_file("data", "utkface", "UTKFace")
    from models.registry import Trained, get_spec
    from models.training.train import TrainConfig, build_model, export, main, predict_chips, save_export_record, train
    from stream.classify import MultiHeadClassifier
    from stream.types import AGE_YEARS, P_FEMALE

    config = TrainConfig(data=str(UTKFACE), cache=str(tmp_path / "cache"), run_dir=str(tmp_path / "run"),
                         out_dir=str(tmp_path / "out"), epochs=1, batch_size=8, limit=24, threads=1,
                         backbone="dlib", size=112, descriptor_teacher=0.5, fp16=True)
    start = build_model(config)
    assert start.gender_trunk is None and start.gender_hidden is None
    model, summary = train(config)
    assert {"loss_kd_group", "loss_kd_age", "loss_kd_gender"} <= set(summary["history"][0])
    assert any(not torch.equal(a, b) for a, b in zip(model.age_trunk.parameters(), start.age_trunk.parameters()))
    # The teacher's targets were cached beside the chips (with the descriptors), for the next run.
    cached = np.load(tmp_path / "cache" / "descriptor_targets_seed0.npz")
    assert cached["group_probs"].shape == (24, 8) and (tmp_path / "cache" / "dlib_descriptors.npy").is_file()
    assert (tmp_path / "cache" / "chips_dlib_chip_025_112.npy").is_file()
    path, sha256, difference, _ = export(model, config)
    spec = dataclasses.replace(get_spec("utk_multihead"), sources=(Trained(str(path)),), input_size=(112, 112))
    classifier = MultiHeadClassifier(spec, _session(path))
    assert classifier.chip_size == 112 and classifier.template == "dlib_chip_025"
    chips = np.random.default_rng(3).integers(0, 255, (4, 112, 112, 3), dtype=np.uint8)
    out, expected = classifier.predict(chips), predict_chips(model, chips)
    np.testing.assert_allclose(out[AGE_YEARS], expected["age"], atol=0.5)  # fp16 weights
    np.testing.assert_allclose(out[P_FEMALE], expected["p_female"], atol=0.02)

    # Re-export those weights (read back from the file) int8, averaged with the descriptor heads at 120x120.
    save_export_record(path, config, summary, difference)
    again = tmp_path / "again"
    common = ["--data", str(UTKFACE), "--cache", config.cache, "--run-dir", config.run_dir, "--limit", "24",
              "--out-dir", str(again), "--no-card"]
    assert main([*common, "--from-weights", str(path), "--int8", "--ensemble-size", "120"]) == 0
    record = json.loads((again / "utk_multihead.train.json").read_text())
    assert record["config"]["int8"] and record["config"]["ensemble_size"] == 120 and record["config"]["epochs"] == 1
    assert record["summary"]["reexported_from"] == {"file": "utk_multihead.onnx", "sha256": sha256}
    assert record["summary"]["int8_check"]["gender_agreement"] >= 0.98
    assert (tmp_path / "cache" / "dlib_descriptors_120.npy").is_file()
    quantized = onnx.load(str(again / "utk_multihead.onnx"))
    assert any(init.data_type == onnx.TensorProto.INT8 for init in quantized.graph.initializer)
    assert [d.dim_value for d in quantized.graph.input[0].type.tensor_type.shape.dim][1:] == [3, 120, 120]
    spec = dataclasses.replace(spec, sources=(Trained(str(again / "utk_multihead.onnx")),), input_size=(120, 120))
    faces = MultiHeadClassifier(spec, _session(again / "utk_multihead.onnx")).predict(
        np.load(tmp_path / "cache" / "chips_dlib_chip_025_120.npy")[:6])
    assert np.all((faces[AGE_YEARS] > 0) & (faces[AGE_YEARS] < 100)) and np.all(np.isfinite(faces[P_FEMALE]))
    # An int8 file holds no float weights to start from; the Cydral backbone has no descriptor ensemble.
    assert main([*common, "--from-weights", str(again / "utk_multihead.onnx")]) == 2


def test_build_model_rejects_what_a_backbone_cannot_take():
    from models.training.train import TrainConfig, build_model

    with pytest.raises(ValueError, match="size 112"):
        build_model(TrainConfig(backbone="dlib", size=64))
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model(TrainConfig(backbone="resnet50"))


def test_descriptor_ensemble_needs_the_dlib_backbone():
    from models.training.train import TrainConfig, deploy_graph

    config = TrainConfig(backbone="cydral", ensemble_size=136)
    with pytest.raises(ValueError, match="--backbone dlib"):
        deploy_graph(torch.nn.Identity(), config)  # type: ignore[arg-type]
