"""One conformance suite over every classifier adapter (sklearn's check_estimator idea), plus card errors,
query counting, record fitting and a training smoke test."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import torch

from ecglens.classifiers import load_classifier, models_dir
from ecglens.classifiers.base import Classifier, QueryCounter, follows_record_leads, input_samples
from ecglens.classifiers.card import ModelCard, card_path_for
from ecglens.classifiers.fit import fit_record, input_leads, windows
from ecglens.classifiers.http import ClassifierServer, HttpClassifier
from ecglens.classifiers.resnet import ResNet1d
from ecglens.classifiers.train import export_onnx, export_torchscript
from ecglens.ecg import Ecg
from ecglens.errors import ClassifierError, QueryBudgetExceeded

CLASSES = ["normal", "ventricular ectopy", "supraventricular ectopy", "atrial fibrillation/flutter"]
ADAPTERS = ["builtin", "torchscript_logits", "softmax_logits", "onnx", "http"]


def _card(name: str, **changes) -> dict:
    card = {"name": name, "classes": CLASSES, "sampling_rate": 360, "leads": ["MLII", "V1"], "window_s": 10}
    card.update(changes)
    return card


@pytest.fixture(scope="module")
def builtin():
    return load_classifier("builtin", device="cpu")


@pytest.fixture(scope="module")
def raw_net(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    """A freshly initialised (seeded) network saved as TorchScript answering logits."""
    torch.manual_seed(3)
    net = ResNet1d(widths=(8, 8, 8)).eval()
    path = tmp_path_factory.mktemp("raw") / "raw.pt"
    export_torchscript(net, path)
    return path, net


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory, raw_net) -> Path:
    """The seeded 2-lead ResNet1d of `raw_net` exported to ONNX, under the same card as its TorchScript file (the
    built-in's rhythm features use TorchScript-only operators, cummax among them)."""
    _, net = raw_net
    path = tmp_path_factory.mktemp("onnx") / "raw.onnx"
    export_onnx(net, path, torch.zeros(1, 2, 3600))
    card_path_for(path).write_text(json.dumps(_card("raw", output="logits", multilabel=True, input_scale=2.0)))
    return path


@pytest.fixture(scope="module")
def server(builtin):
    with ClassifierServer(builtin) as srv:
        yield srv


@pytest.fixture(scope="module")
def adapters(builtin, raw_net, onnx_path, server, tmp_path_factory) -> dict[str, Classifier]:
    raw_path, _ = raw_net
    # The same network under two cards: multilabel logits (scaled input) and mutually exclusive logits.
    (card_path_for(raw_path)).write_text(json.dumps(_card("raw", output="logits", multilabel=True, input_scale=2.0)))
    other = tmp_path_factory.mktemp("softmax") / "softmax.json"
    other.write_text(json.dumps(_card("softmax", output="logits", multilabel=False)))
    return {
        "builtin": builtin,
        "torchscript_logits": load_classifier(str(raw_path), device="cpu", batch_size=7),
        "softmax_logits": load_classifier(raw_path, card=other, device="cpu"),
        "onnx": load_classifier(onnx_path, device="cpu", threads=1),
        "http": load_classifier(server.url, retries=0),
    }


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    """Ten 10-s, 2-lead strips in mV: simulated sinus rhythm with different rates and noise."""
    import neurokit2 as nk

    rng = np.random.default_rng(7)
    rows = []
    for i in range(10):
        ecg = nk.ecg_simulate(duration=10, sampling_rate=360, heart_rate=55 + 6 * i, random_state=i)
        rows.append(np.stack([ecg, -0.5 * ecg]) + rng.normal(0, 0.02, (2, 3600)))
    return np.asarray(rows, dtype=np.float32)


@pytest.mark.parametrize("name", ADAPTERS)
def test_adapter_satisfies_the_classifier_protocol(adapters, name):
    clf = adapters[name]
    assert isinstance(clf, Classifier)
    assert clf.class_names == tuple(CLASSES)
    assert clf.lead_names == ("MLII", "V1") and clf.sampling_rate == 360 and input_samples(clf) == 3600
    assert set(clf.thresholds) == set(CLASSES)


@pytest.mark.parametrize("name", ADAPTERS)
def test_predict_proba_is_rows_by_classes_in_unit_interval(adapters, batch, name):
    probs = adapters[name].predict_proba(batch)
    assert probs.shape == (10, 4)
    assert np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()


@pytest.mark.parametrize("name", ADAPTERS)
def test_predict_proba_is_deterministic_and_independent_of_batching(adapters, batch, name):
    clf = adapters[name]
    whole = clf.predict_proba(batch)
    np.testing.assert_array_equal(whole, clf.predict_proba(batch))
    one_by_one = np.concatenate([clf.predict_proba(row) for row in batch])  # 2-D input = one strip
    np.testing.assert_allclose(one_by_one, whole, atol=1e-5)


@pytest.mark.parametrize("name", ADAPTERS)
def test_wrong_input_shape_is_a_classifier_error(adapters, name):
    shape = r"\[n, leads, 3600\]" if follows_record_leads(adapters[name]) else r"\[n, 2, 3600\]"
    with pytest.raises(ClassifierError, match=shape):
        adapters[name].predict_proba(np.zeros((3, 2, 1000), np.float32))


def test_multilabel_logits_become_independent_sigmoids_of_scaled_input(adapters, raw_net, batch):
    _, net = raw_net
    with torch.inference_mode():
        logits = net(torch.from_numpy(batch * 2.0)).numpy()  # the card's input_scale is 2
    probs = adapters["torchscript_logits"].predict_proba(batch)
    np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), atol=1e-5)
    assert np.abs(probs.sum(axis=1) - 1).max() > 1e-3  # not a distribution over classes


def test_exclusive_logits_become_a_softmax_summing_to_one(adapters, raw_net, batch):
    _, net = raw_net
    with torch.inference_mode():
        logits = net(torch.from_numpy(batch)).numpy().astype(np.float64)
    probs = adapters["softmax_logits"].predict_proba(batch)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-9)
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(probs, expected / expected.sum(1, keepdims=True), atol=1e-5)


def test_builtin_is_multilabel_with_calibrated_thresholds(builtin):
    assert builtin.multilabel is True
    assert builtin.card.output == "probabilities"
    assert all(0 < t < 1 for t in builtin.thresholds.values())


def test_onnx_export_agrees_with_torchscript(adapters, batch):
    np.testing.assert_allclose(
        adapters["onnx"].predict_proba(batch), adapters["torchscript_logits"].predict_proba(batch), atol=1e-4
    )


def test_http_endpoint_agrees_with_the_model_it_serves(adapters, batch):
    np.testing.assert_allclose(
        adapters["http"].predict_proba(batch), adapters["builtin"].predict_proba(batch), atol=1e-6
    )
    assert adapters["http"].card.name == adapters["builtin"].card.name


def test_large_batches_are_answered_in_chunks(adapters, batch):
    clf = adapters["torchscript_logits"]  # batch_size 7: 10 rows are two forward calls
    big = np.concatenate([batch, batch[::-1]])
    probs = clf.predict_proba(big)
    np.testing.assert_allclose(probs[10:], probs[:10][::-1], atol=1e-6)


def test_cpu_forwards_are_split_to_a_sample_budget_with_the_same_answers(raw_net, batch, monkeypatch):
    from ecglens.classifiers import torchscript

    raw_path, _ = raw_net
    clf = load_classifier(str(raw_path), device="cpu")
    whole = clf.predict_proba(batch)  # 10 rows x 2 leads x 3600: one forward under the default budget
    module, seen = clf.module, []

    def forward(x):
        seen.append(int(x.shape[0]))
        return module(x)

    monkeypatch.setattr(clf, "module", forward)
    monkeypatch.setattr(torchscript, "CPU_FORWARD_SAMPLES", 3 * 2 * 3600)  # room for 3 rows
    split = clf.predict_proba(batch)
    assert seen == [3, 3, 3, 1]
    np.testing.assert_allclose(split, whole, atol=1e-6, rtol=0)


def test_query_counter_counts_rows_and_enforces_the_budget(adapters, batch):
    counter = QueryCounter(adapters["builtin"], budget=15)
    counter.predict_proba(batch)
    counter.predict_proba(batch[0])
    assert (counter.queries, counter.calls, counter.remaining) == (11, 2, 4)
    with pytest.raises(QueryBudgetExceeded):
        counter.predict_proba(batch[:5])
    assert counter.queries == 11  # the refused call was not forwarded
    assert isinstance(counter, Classifier) and counter.card is adapters["builtin"].card


def _model_with_card(tmp_path: Path, raw_net, card_text: str | None) -> Path:
    path = tmp_path / "m.pt"
    path.write_bytes(raw_net[0].read_bytes())
    if card_text is not None:
        card_path_for(path).write_text(card_text)
    return path


def test_missing_card_is_an_error_naming_the_card(tmp_path, raw_net):
    path = _model_with_card(tmp_path, raw_net, None)
    with pytest.raises(ClassifierError, match=r"m\.json: model card not found"):
        load_classifier(path)


def test_card_with_bad_json_is_an_error_naming_the_card(tmp_path, raw_net):
    path = _model_with_card(tmp_path, raw_net, "{not json")
    with pytest.raises(ClassifierError, match=r"m\.json: unreadable model card"):
        load_classifier(path)


def test_card_missing_a_field_is_an_error_naming_card_and_field(tmp_path, raw_net):
    card = _card("m")
    del card["window_s"]
    path = _model_with_card(tmp_path, raw_net, json.dumps(card))
    with pytest.raises(ClassifierError, match=r"m\.json: model card lacks window_s"):
        load_classifier(path)


def test_card_with_a_wrong_value_is_an_error_naming_the_card(tmp_path, raw_net):
    path = _model_with_card(tmp_path, raw_net, json.dumps(_card("m", sampling_rate="fast")))
    with pytest.raises(ClassifierError, match=r"m\.json"):
        load_classifier(path)


def test_unreadable_model_file_is_an_error_naming_it(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a model")
    card_path_for(path).write_text(json.dumps(_card("broken")))
    with pytest.raises(ClassifierError, match=r"broken\.onnx: not a loadable ONNX model"):
        load_classifier(path)
    pt = tmp_path / "broken.pt"
    pt.write_bytes(b"not a model")
    card_path_for(pt).write_text(json.dumps(_card("broken")))
    with pytest.raises(ClassifierError, match=r"broken\.pt: not a loadable TorchScript model"):
        load_classifier(pt)


def test_unknown_spec_and_missing_file_are_errors(tmp_path):
    with pytest.raises(ClassifierError, match="unknown classifier spec"):
        load_classifier(str(tmp_path / "model.h5"))
    with pytest.raises(ClassifierError, match="model file not found"):
        load_classifier(str(tmp_path / "absent.pt"))
    with pytest.raises(ClassifierError, match="not found"):
        load_classifier("no_such_model")


def test_builtin_lives_in_models_dir():
    assert (models_dir() / "builtin.pt").exists() and card_path_for(models_dir() / "builtin.pt").exists()


class _Flaky(BaseHTTPRequestHandler):
    """Answers 503 to the first `fail` POSTs, then a fixed probability row per input."""

    fail = 2
    seen = 0

    def do_GET(self):  # noqa: N802
        body = json.dumps(_card("flaky", multilabel=True)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):  # noqa: N802
        n = len(json.loads(self.rfile.read(int(self.headers["Content-Length"])))["inputs"])
        type(self).seen += 1
        if type(self).seen <= type(self).fail:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = json.dumps({"probabilities": [[0.1, 0.2, 0.3, 0.4]] * n}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_http_classifier_retries_unavailable_endpoint_with_backoff(batch):
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/predict"
        clf = HttpClassifier(url, retries=3, backoff_s=0.01)
        np.testing.assert_allclose(clf.predict_proba(batch[:3]), [[0.1, 0.2, 0.3, 0.4]] * 3)
        assert _Flaky.seen == 3
        _Flaky.fail, _Flaky.seen = 10, 0
        with pytest.raises(ClassifierError, match=r"no answer after 2 attempts \(HTTP 503\)"):
            HttpClassifier(url, retries=1, backoff_s=0.01).predict_proba(batch[:1])
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_http_classifier_reports_refused_connection_and_bad_request(server, batch):
    with pytest.raises(ClassifierError, match="no answer after"):
        HttpClassifier(
            "http://127.0.0.1:9", card=ModelCard(**_card("x")), retries=1, backoff_s=0.01, timeout_s=2
        ).predict_proba(batch[:1])
    # The server refuses a wrongly shaped input with 400; the client says so at once.
    remote = HttpClassifier(server.url, card=ModelCard(**_card("x", window_s=5)), retries=0)
    with pytest.raises(ClassifierError, match="HTTP 400"):
        remote.predict_proba(np.zeros((1, 2, 1800), np.float32))


def _twelve_lead_500hz() -> Ecg:
    rng = np.random.default_rng(1)
    leads = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
    t = np.arange(5000) / 500
    signal = np.stack([np.sin(2 * np.pi * (1 + k) * t) for k in range(12)]) + rng.normal(0, 0.01, (12, 5000))
    return Ecg(signal=signal, fs=500, leads=leads)


def test_fit_record_resamples_500hz_12_lead_with_ii_for_mlii(adapters):
    fixed = adapters["torchscript_logits"]  # a card with fixed leads MLII, V1
    fitted = fit_record(_twelve_lead_500hz(), fixed)
    assert fitted.fs == 360 and fitted.leads == ("MLII", "V1") and fitted.signal.shape == (2, 3600)
    # II (2 Hz sine) becomes MLII and V1 (7 Hz sine) stays V1, resampled without changing their frequency.
    t360 = np.arange(3600) / 360
    assert np.corrcoef(fitted.signal[0, 100:-100], np.sin(2 * np.pi * 2 * t360)[100:-100])[0, 1] > 0.99
    assert np.corrcoef(fitted.signal[1, 100:-100], np.sin(2 * np.pi * 7 * t360)[100:-100])[0, 1] > 0.99
    assert fixed.predict_proba(fitted.signal).shape == (1, 4)


def test_builtin_takes_all_twelve_leads_of_a_500hz_record(builtin):
    ecg = _twelve_lead_500hz()
    fitted = fit_record(ecg, builtin)
    assert fitted.fs == 360 and fitted.leads == ecg.leads and fitted.signal.shape == (12, 3600)
    assert input_leads(ecg, builtin) == ecg.leads
    t360 = np.arange(3600) / 360
    assert np.corrcoef(fitted.signal[11, 100:-100], np.sin(2 * np.pi * 12 * t360)[100:-100])[0, 1] > 0.99
    assert builtin.predict_proba(fitted.signal).shape == (1, 4)


def test_builtin_card_states_its_lead_rule(builtin):
    assert builtin.card.lead_rule == "any" and follows_record_leads(builtin)
    assert follows_record_leads(QueryCounter(builtin))
    by_set = builtin.card.metrics["ds2_by_lead_set"]
    assert {"MLII+V1", "MLII", "V1 (second lead)"} <= set(by_set)
    assert by_set["MLII+V1"] == builtin.card.metrics["ds2"]


@pytest.mark.parametrize("n_leads", [1, 2, 3, 12])
def test_builtin_answers_any_number_of_leads(builtin, batch, n_leads):
    rows = np.concatenate([batch, -batch, 0.5 * batch, batch[:, ::-1], batch, batch, batch], axis=1)[:, :n_leads]
    probs = builtin.predict_proba(np.ascontiguousarray(rows))
    assert probs.shape == (10, 4) and np.isfinite(probs).all() and (probs >= 0).all() and (probs <= 1).all()


def test_builtin_is_unchanged_by_lead_order_and_lead_gain(builtin, batch):
    x = np.concatenate([batch, 0.7 * batch[:, :1]], axis=1)  # 3 leads
    base = builtin.predict_proba(x)
    np.testing.assert_allclose(builtin.predict_proba(np.ascontiguousarray(x[:, [2, 0, 1]])), base, atol=1e-4)
    scaled = x * np.asarray([3.0, 0.5, 1.7], np.float32)[None, :, None]  # each lead normalised to its amplitude
    np.testing.assert_allclose(builtin.predict_proba(scaled), base, atol=1e-4)


def test_builtin_depends_on_every_lead(builtin, batch):
    x = np.concatenate([batch, batch], axis=1).copy()
    base = builtin.predict_proba(x)
    for lead in range(4):
        y = x.copy()
        y[:, lead, 1000:2000] += np.random.default_rng(lead).normal(0, 0.3, (10, 1000)).astype(np.float32)
        assert np.abs(builtin.predict_proba(y) - base).max() > 1e-3


def test_builtin_refuses_inputs_without_leads_or_of_another_length(builtin):
    with pytest.raises(ClassifierError, match=r"\[n, leads, 3600\]"):
        builtin.predict_proba(np.zeros((2, 0, 3600), np.float32))
    with pytest.raises(ClassifierError, match=r"\[n, leads, 3600\]"):
        builtin.predict_proba(np.zeros((2, 3, 3599), np.float32))


def test_card_lead_rule_must_be_known():
    assert ModelCard(**_card("x")).lead_rule == "fixed"
    with pytest.raises(ClassifierError, match="lead_rule"):
        ModelCard(**_card("x", lead_rule="some"))


def test_windows_of_a_30_minute_record_cover_it(builtin):
    rng = np.random.default_rng(2)
    ecg = Ecg(signal=rng.normal(0, 0.1, (2, 30 * 60 * 360 + 100)).astype(np.float32), fs=360, leads=("MLII", "V1"))
    batch, starts = windows(ecg, builtin)
    assert batch.shape == (181, 2, 3600)  # 180 full windows + one aligned to the end
    assert starts[:2] == [0.0, 10.0] and starts[-1] == pytest.approx((ecg.n_samples - 3600) / 360)
    np.testing.assert_array_equal(batch[1], ecg.signal[:, 3600:7200])


def test_training_smoke_run_exports_a_loadable_model(tmp_path):
    from ecglens.classifiers.train import Span, TrainConfig, save_model, train_classifier
    from ecglens.datasets.mitdb import MitdbRecord

    rng = np.random.default_rng(0)

    def record(name: str, v_every: int) -> MitdbRecord:
        beats = np.arange(180, 60 * 360, 300)
        symbols = np.where(np.arange(len(beats)) % v_every == 0, "V", "N")
        signal = rng.normal(0, 0.05, (2, 60 * 360)).astype(np.float32)
        signal[:, beats] += np.where(symbols == "V", 2.0, 1.0)[None]
        return MitdbRecord(
            name, signal, 360.0, ("MLII", "V1"), ("MLII", "V1"), beats, symbols, np.asarray([0]), np.asarray(["N"])
        )

    recs = [record("a", 7), record("b", 11)]
    config = TrainConfig(epochs=2, steps_per_epoch=2, batch_size=8, threads=1)
    result = train_classifier(
        [Span(recs[0], 0, recs[0].n_samples)], [Span(recs[1], 0, recs[1].n_samples)], config, log=None
    )
    card = save_model(result, tmp_path / "smoke.pt", None)
    assert card.multilabel and len(result.history) == 2
    clf = load_classifier(tmp_path / "smoke.pt", device="cpu")
    assert clf.predict_proba(recs[1].signal[:, :3600]).shape == (1, 4)


def test_anylead_training_smoke_run_exports_a_loadable_any_lead_model(tmp_path):
    from ecglens.classifiers.train import Span, export_torchscript
    from ecglens.classifiers.train_anylead import AnyLeadConfig, build_anylead_card, train_anylead
    from ecglens.datasets.mitdb import MitdbRecord

    rng = np.random.default_rng(0)

    def record(name: str, v_every: int) -> MitdbRecord:
        beats = np.arange(180, 60 * 360, 300)
        symbols = np.where(np.arange(len(beats)) % v_every == 0, "V", "N")
        signal = rng.normal(0, 0.05, (2, 60 * 360)).astype(np.float32)
        signal[:, beats] += np.where(symbols == "V", 2.0, 1.0)[None]
        return MitdbRecord(
            name, signal, 360.0, ("MLII", "V1"), ("MLII", "V1"), beats, symbols, np.asarray([0]), np.asarray(["N"])
        )

    recs = [record("a", 7), record("b", 11)]
    config = AnyLeadConfig(epochs=2, steps_per_epoch=2, batch_size=8, lead_counts=((1, 0.5), (3, 0.5)))
    result = train_anylead(
        [Span(recs[0], 0, recs[0].n_samples)], [Span(recs[1], 0, recs[1].n_samples)], config, log=None
    )
    assert len(result.history) == 2 and set(result.val_metrics) == {"MLII+V1", "MLII", "second lead"}
    export_torchscript(result.model, tmp_path / "smoke.pt")
    build_anylead_card("smoke", result, None).save(tmp_path / "smoke.json")
    clf = load_classifier(tmp_path / "smoke.pt", device="cpu")
    assert follows_record_leads(clf)
    for leads in (1, 2, 5):
        assert clf.predict_proba(np.tile(recs[1].signal[:1, :3600], (leads, 1))).shape == (1, 4)


def test_default_anylead_network_is_the_committed_builtins():
    # The default recipe reproduces models/builtin.pt: its weights load into the default network, same outputs.
    from ecglens.classifiers.anylead import AnyLeadNet
    from ecglens.classifiers.train import Calibrated
    from ecglens.classifiers.train_anylead import fold_batch_norm

    committed = torch.jit.load(str(models_dir() / "builtin.pt")).eval()
    net = Calibrated(fold_batch_norm(AnyLeadNet(4)), [1.0] * 4, [0.0] * 4).eval()
    net.load_state_dict(committed.state_dict(), strict=True)
    x = torch.from_numpy(np.random.default_rng(0).normal(0, 0.3, (3, 2, 3600)).astype(np.float32))
    with torch.no_grad():
        torch.testing.assert_close(net(x), committed(x), atol=1e-5, rtol=0)


def test_anylead_local_prematurity_flags_a_premature_beat_at_any_rate():
    from ecglens.classifiers.anylead import N_RR_FEATURES, AnyLeadNet

    net = AnyLeadNet(4)
    t = 900  # 10 s at 90 Hz
    for rr in (45, 90):  # 120 and 60 bpm
        steady = torch.zeros(2, t, dtype=torch.bool)
        steady[:, torch.arange(20, t, rr)] = True
        beats = steady.clone()
        k = 20 + 4 * rr
        beats[1, k] = False
        beats[1, k - int(0.4 * rr)] = True  # one beat 40% early, then a compensatory pause
        features, tracks = net.rhythm(beats)
        assert features.shape == (2, N_RR_FEATURES) and tracks.shape == (2, 3, t)
        regular, premature = features[0], features[1]
        assert abs(float(regular[12])) < 1e-6 and float(regular[13]) == 0.0  # local prematurity: none
        assert float(premature[10]) < -0.3 and float(premature[11]) < -0.5 and float(premature[12]) < -0.4
        assert float(premature[13]) > 0 and float(premature[14]) > 0.5  # one premature beat, a long pause after
        assert float(tracks[1, 2].min()) < -0.4 and float(tracks[0, 2].abs().max()) < 1e-6


def test_operating_thresholds_come_from_held_out_patients_and_negatives_where_positives_are_separated():
    from ecglens.classifiers.train_anylead import operating_thresholds

    rng = np.random.default_rng(0)
    n = 4000
    held = np.arange(n) < 3000
    y = np.zeros((n, 2), np.float32)
    y[:, 0] = rng.random(n) < 0.3
    y[~held, 1] = rng.random((~held).sum()) < 0.5  # class 1: positives only in the trained-on tails
    p = np.zeros((n, 2))
    # class 0: easy in the tails (trained on), overlapping in the held-out patients
    p[:, 0] = np.where(held, 0.4 * y[:, 0] + 0.6 * rng.random(n), 0.8 * y[:, 0] + 0.1 * rng.random(n))
    p[:, 1] = np.where(y[:, 1] > 0, 0.9, 0.5 * rng.random(n) ** 4)  # separated; held-out negatives mostly low
    t = operating_thresholds(p, y, held, ["a", "b"], specificity=0.99)
    assert 0.35 < t["a"] < 0.65  # the held-out patients' Youden point, not the tails' (about 0.1 to 0.8)
    negatives = p[held, 1]
    assert t["b"] == pytest.approx(np.quantile(negatives, 0.99)) and t["b"] < 0.9


@pytest.mark.realdata
@pytest.mark.slow
def test_builtin_reproduces_its_card_ds2_figures(builtin, tmp_path):
    from ecglens.classifiers.train import ds2_metrics
    from tests.conftest import shared_path

    data = shared_path("mitdb")
    fresh = ds2_metrics(builtin, data, cache_dir=tmp_path)
    card = builtin.card.metrics["ds2"]
    for cls in CLASSES:
        assert fresh[cls]["auc"] == pytest.approx(card[cls]["auc"], abs=2e-3)
        assert fresh[cls]["sensitivity"] == pytest.approx(card[cls]["sensitivity"], abs=2e-3)
    # Issue 17's targets: V >= 0.985 and AF >= 0.90 hold (0.993, 0.908; see the card); S (0.824) misses 0.90.
    assert fresh["ventricular ectopy"]["auc"] >= 0.985 and fresh["atrial fibrillation/flutter"]["auc"] >= 0.90


@pytest.mark.parametrize("leads, fs", [(("ECG",), 250.0), (("I", "II"), 200.0), (("V5", "lead ii", "aVF"), 500.0)])
def test_builtin_explains_records_of_any_lead_set_on_their_own_leads(builtin, leads, fs):
    import neurokit2 as nk

    from ecglens import explain

    ecg = nk.ecg_simulate(duration=12, sampling_rate=int(fs), heart_rate=70, random_state=3)
    signal = np.stack([(1.0 - 0.4 * k) * ecg for k in range(len(leads))]).astype(np.float32)
    record = Ecg(signal=signal, fs=fs, leads=leads, name="any-leads")
    result = explain(record, builtin, query_budget=30, seed=0)
    names = input_leads(record, builtin)
    assert len(names) == len(leads) and result.queries <= 30
    assert result.saliency.shape == (len(leads), 3600)
    assert result.segments and {s.lead for s in result.segments} <= set(names)


def _beat_head_trees(n_features: int, seed: int = 0):
    from sklearn.ensemble import HistGradientBoostingClassifier

    from ecglens.classifiers.beat_rhythm import TreeEnsemble

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3000, n_features))
    y = (x[:, 0] + 0.5 * x[:, 1] * x[:, 2] + 0.3 * rng.normal(size=3000)) > 0.8
    model = HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=7, early_stopping=False, random_state=0)
    model.fit(x, y)
    return model, TreeEnsemble.from_sklearn(model), x


def test_tree_ensemble_as_tensors_answers_as_sklearn():
    model, trees, x = _beat_head_trees(5)
    with torch.no_grad():
        mine = trees(torch.from_numpy(x[:500].astype(np.float32))).numpy()
    np.testing.assert_allclose(mine, model.decision_function(x[:500]), atol=1e-4)


def test_beat_features_flag_a_premature_beat_at_any_rate_and_lead_count():
    from ecglens.classifiers.beat_rhythm import FEATURE_NAMES, BeatFeatures

    feats = BeatFeatures(90.0)
    t = 900
    for rr in (45, 90):  # 120 and 60 bpm
        for leads in (1, 3):
            beats = torch.zeros(1, t, dtype=torch.bool)
            beats[0, torch.arange(20, t, rr)] = True
            k = 20 + 4 * rr
            beats[0, k] = False
            beats[0, k - int(0.4 * rr)] = True  # one beat 40% early
            z = torch.zeros(1, leads, t)
            z[:, :, beats[0]] = 1.0
            f, scored, pos = feats(z, beats)
            premature = int((pos[0] == k - int(0.4 * rr)).nonzero()[0, 0])
            assert bool(scored[0, premature]) and not bool(scored[0, 0])
            row = dict(zip(FEATURE_NAMES, f[0, premature].tolist()))
            assert row["log rr_pre/median"] < -0.4 and row["log rr_pre/rr_prev"] < -0.4
            assert row["log rr_post/rr_pre"] > 0.5  # the pause after it
            assert row["qrs correlation"] > 0.9  # same shape as the median beat
            steady = dict(zip(FEATURE_NAMES, f[0, 2].tolist()))
            assert abs(steady["log rr_pre/median"]) < 1e-5


def test_beat_head_model_scripts_for_any_lead_set_and_keeps_the_other_classes():
    from ecglens.classifiers.anylead import AnyLeadNet
    from ecglens.classifiers.beat_rhythm import N_BEAT_FEATURES, WithBeatHead
    from ecglens.classifiers.train import Calibrated
    from ecglens.classifiers.train_anylead import fold_batch_norm

    torch.manual_seed(0)
    base = Calibrated(fold_batch_norm(AnyLeadNet(4)), [1.0] * 4, [0.0] * 4).eval()
    _, trees, _ = _beat_head_trees(N_BEAT_FEATURES)
    head = torch.jit.script(WithBeatHead(base, trees, 0.5).eval())
    rng = np.random.default_rng(0)
    for leads in (1, 2, 12):
        x = torch.from_numpy(rng.normal(0, 0.3, (3, leads, 3600)).astype(np.float32))
        with torch.no_grad():
            out, ref = head(x), base(x)
        assert out.shape == (3, 4) and bool(((out >= 0) & (out <= 1)).all())
        torch.testing.assert_close(out[:, [0, 1, 3]], ref[:, [0, 1, 3]])


def test_anylead_beat_head_recipe_from_a_trained_base_exports_a_loadable_model(tmp_path):
    from ecglens.classifiers.anylead import AnyLeadNet
    from ecglens.classifiers.train import Calibrated, Span, export_torchscript
    from ecglens.classifiers.train_anylead import (
        AnyLeadConfig,
        build_anylead_card,
        fold_batch_norm,
        load_base,
        train_anylead,
    )
    from ecglens.datasets.mitdb import MitdbRecord

    rng = np.random.default_rng(1)

    def record(name: str, a_every: int) -> MitdbRecord:
        beats = np.arange(180, 120 * 360, 300)
        symbols = np.where((np.arange(len(beats)) % a_every == 0) & (beats < 60 * 360), "A", "N")
        beats = np.where(symbols == "A", beats - 120, beats)  # premature, same shape; none in the second minute
        signal = rng.normal(0, 0.05, (2, 120 * 360)).astype(np.float32)
        signal[:, beats] += 1.0
        return MitdbRecord(
            name, signal, 360.0, ("MLII", "V1"), ("MLII", "V1"), beats, symbols, np.asarray([0]), np.asarray(["N"])
        )

    torch.manual_seed(0)
    base = Calibrated(fold_batch_norm(AnyLeadNet(4)), [1.0] * 4, [0.0] * 4).eval()
    export_torchscript(base, tmp_path / "base.pt")
    recs = [record("a", 7), record("b", 5)]
    spans = [Span(r, 0, r.n_samples) for r in recs]
    result = train_anylead(
        spans[:1], spans[1:], AnyLeadConfig(beat_head=True), log=None, base=load_base(tmp_path / "base.pt")
    )
    assert hasattr(result.model, "trees")
    assert result.val_metrics["MLII+V1"]["supraventricular ectopy"]["auc"] > 0.9  # premature beats are found
    export_torchscript(result.model, tmp_path / "head.pt")
    card = build_anylead_card("head", result, None)
    assert "beat head" in card.architecture
    card.save(tmp_path / "head.json")
    clf = load_classifier(tmp_path / "head.pt", device="cpu")
    for leads in (1, 3):
        assert clf.predict_proba(np.tile(recs[1].signal[:1, :3600], (leads, 1))).shape == (1, 4)
    # load_base takes the network back out of a file with a beat head
    again = load_base(tmp_path / "head.pt")
    x = torch.from_numpy(recs[1].signal[None, :, :3600].copy())
    with torch.no_grad():
        torch.testing.assert_close(again(x), base(x))
