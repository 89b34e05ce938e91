"""`python -m harness bench` end to end on a tiny slice, and the FLOP floor on hand-checkable cases."""
from __future__ import annotations

import json
import socket

import datasets
import pytest
import torch

from harness.run.bench import Floor, median_figures
from kinds import get_kind
from kinds.base import matmul_parameters
from harness.cli import main
from harness.run.models import load_model, load_tokenizer
from tasks.base import get_task


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a network connection (e.g. to the Hugging Face Hub) fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] or kwargs}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.mark.parametrize("task, model", [("ner", "tiny-bert"), ("summarization", "tiny-bert2bert")])
def test_bench_compares_trainer_and_harness_offline(task, model, tmp_path, data_dir, capsys, no_network):
    out = tmp_path / "bench.json"
    main(["bench", "--task", task, "--model", model, "--max-train", "32", "--max-eval", "8", "--epochs", "1",
          "--batch-size", "16", "--data-dir", str(data_dir), "--json", str(out), "--seeds", "1,2"])
    printed = capsys.readouterr().out
    for row in ("Trainer (random)", "Trainer (group_by_length)", "harness", "harness ÷ Trainer (random)",
                "(best)", "FLOPs per epoch", "seeds [1, 2]"):
        assert row in printed
    result = json.loads(out.read_text())
    assert result["command"].startswith(f"python -m harness bench --task {task} --preset default --model {model}")
    assert result["command"].endswith("--seeds 1,2")
    assert result["date"] and result["versions"]["transformers"] and result["device_name"]
    names = [t["name"] for t in result["trainer_configs"]]
    assert names[:2] == ["trainer", "trainer_grouped"] and result["best_trainer"] in names
    assert ("trainer_grouped_bf16" in names) == result["cpu_bf16"]  # bf16 offered where the CPU has it
    harness = result["systems"]["harness"]
    for name in ("harness", *names):
        figures = result["systems"][name]
        assert figures["train_samples"] == 32 and figures["train_samples_per_second"] > 0
        assert figures["wall_seconds"] >= figures["train_seconds"] > 0
        assert figures["peak_gpu_memory_bytes"] is None  # CPU
        assert len(figures["test_metric_per_seed"]) == 2 and figures["test_metric_sd"] is not None
        assert figures["test_metric"] == pytest.approx(sum(figures["test_metric_per_seed"]) / 2)
        assert figures["flops_per_second"] == pytest.approx(result["floor"]["flops_per_epoch"] / figures["train_seconds"])
        assert sorted(result["measurements"][name]) == ["1", "2"]  # one measurement per seed (JSON keys)
    for name in names:
        trainer, ratio = result["systems"][name], result["ratio_harness_to"][name]
        assert ratio["train_samples_per_second"] == pytest.approx(
            harness["train_samples_per_second"] / trainer["train_samples_per_second"])
        assert ratio["wall_speedup"] == pytest.approx(trainer["wall_seconds"] / harness["wall_seconds"])
        assert ratio["quality_gap"] == pytest.approx(harness["test_metric"] - trainer["test_metric"])
    assert result["ratio_harness_to_best_trainer"] == result["ratio_harness_to"][result["best_trainer"]]
    assert result["floor"]["tokens"] > 32
    assert len(result["floor"]["work"]) == (2 if task == "summarization" else 1)  # seq2seq: encoder and decoder


def test_systems_keeps_only_the_named_ones(tmp_path, data_dir, capsys, no_network):
    """`--systems harness` measures the harness alone (no Trainer row, no ratio); an unknown name is refused."""
    out = tmp_path / "bench.json"
    main(["bench", "--task", "ner", "--model", "tiny-bert", "--max-train", "16", "--max-eval", "8", "--epochs", "1",
          "--batch-size", "16", "--data-dir", str(data_dir), "--json", str(out), "--systems", "harness",
          "--precision", "bf16"])
    printed = capsys.readouterr().out
    assert "harness" in printed and "Trainer" not in printed
    result = json.loads(out.read_text())
    assert list(result["systems"]) == ["harness"] and result["trainer_configs"] == []
    assert result["ratio_harness_to"] == {} and result["best_trainer"] is None
    assert result["settings"]["precision"] == "bf16" and result["command"].endswith("--systems harness")
    with pytest.raises(SystemExit, match="unknown system.*harnes.*trainer_grouped"):
        main(["bench", "--task", "ner", "--model", "tiny-bert", "--data-dir", str(data_dir), "--systems", "harnes"])


def test_a_stopped_bench_resumes_from_its_journal(tmp_path, data_dir, capsys, monkeypatch, no_network):
    """Each finished measurement is on disk at once; a bench stopped part-way writes no JSON; a rerun
    with other settings is refused naming the line; the rerun with the same settings measures only
    what is missing; the journal goes once every measurement in it is used, and not before."""
    from harness.run import bench as bench_module

    calls: list[tuple[str, int]] = []
    stop_at = [3]

    def measure(system: str, cfg) -> dict:
        if len(calls) == stop_at[0]:
            raise KeyboardInterrupt
        calls.append((system, cfg.seed))
        n = len(calls)
        return {"train_samples": 16, "train_seconds": float(n), "wall_seconds": n + 1.0,
                "peak_gpu_memory_bytes": None, "test_metric": 50.0 + n, "load_average": 0.5}

    monkeypatch.setattr(bench_module, "run_harness", lambda cfg, source, device: measure("harness", cfg))
    monkeypatch.setattr(bench_module, "run_trainer", lambda cfg, source, device, config: measure(config.name, cfg))
    out, journal = tmp_path / "bench.json", tmp_path / "bench.json.partial.jsonl"

    def bench(*extra: str, max_train: str = "16") -> None:
        main(["bench", "--task", "ner", "--model", "tiny-bert", "--max-train", max_train, "--max-eval", "8",
              "--epochs", "1", "--batch-size", "16", "--data-dir", str(data_dir), "--json", str(out),
              "--systems", "harness,trainer", *extra])

    with pytest.raises((KeyboardInterrupt, SystemExit)):
        bench("--seeds", "1,2")  # harness 1, trainer 1, harness 2, then stopped
    assert not out.exists() and calls == [("harness", 1), ("trainer", 1), ("harness", 2)]
    journaled = [json.loads(line)["system"] for line in journal.read_text().splitlines()]
    assert journaled == ["harness", "trainer", "harness"]
    with journal.open("a") as f:
        f.write('{"system": "trainer", "se')  # killed mid-write
    with pytest.raises(SystemExit, match=r"partial.jsonl, line 1: measured with another settings.max_train"):
        bench("--seeds", "1,2", max_train="32")

    stop_at[0] = None
    bench("--seeds", "1")  # both of seed 1 are in the journal: nothing runs, the journal stays for seed 2
    assert len(calls) == 3 and "bench.json.partial.jsonl kept: it holds 1 measurement(s)" in capsys.readouterr().out
    assert json.loads(out.read_text())["systems"]["harness"]["test_metric_per_seed"] == [51.0]
    assert len(journal.read_text().splitlines()) == 3  # the cut line was dropped

    bench("--seeds", "1,2")
    assert calls[3:] == [("trainer", 2)] and not journal.exists()
    result = json.loads(out.read_text())
    assert result["systems"]["harness"]["test_metric_per_seed"] == [51.0, 53.0]
    assert result["systems"]["trainer"]["test_metric_per_seed"] == [52.0, 54.0]
    assert [(p["system"], p["seed"]) for p in result["provenance"]] == [
        ("harness", 1), ("trainer", 1), ("harness", 2), ("trainer", 2)]
    assert all(p["date"] and "git_commit" in p for p in result["provenance"])


def test_the_grouped_trainer_batches_by_length(tmp_path, data_dir):
    """The 'group_by_length' configuration really reaches the Trainer's sampler: its batches pad less."""
    from transformers import Trainer, TrainingArguments

    from harness.run.bench import trainer_configs

    grouped = next(c for c in trainer_configs(torch.device("cpu")) if c.name == "trainer_grouped")
    args = TrainingArguments(output_dir=str(tmp_path), train_sampling_strategy=grouped.sampling, use_cpu=True,
                             per_device_train_batch_size=4, report_to="none")
    rows = datasets.Dataset.from_dict({"input_ids": [[1] * n for n in (2, 40, 3, 39, 4, 38, 5, 37)]})
    sampler = Trainer(model=torch.nn.Linear(1, 1), args=args, train_dataset=rows)._get_train_sampler()
    assert type(sampler).__name__ == "LengthGroupedSampler"


def test_repeated_measurements_report_each_figures_median():
    runs = [{"train_seconds": s, "peak_gpu_memory_bytes": None} for s in (3.0, 1.0, 2.0)]
    assert median_figures(runs) == {"train_seconds": 2.0, "peak_gpu_memory_bytes": None}


def test_matmul_parameters_of_tiny_bert_by_hand():
    """2 layers, hidden 32, FFN 64: per layer Q, K, V, O 4·(32·32+32) and FFN (32·64+64)+(64·32+32);
    the tagging head 32·9+9. Embeddings (and LayerNorm) do no matrix products."""
    task = get_task("ner")
    model = load_model("tiny-bert", task, load_tokenizer("tiny-bert"))
    per_layer = 4 * (32 * 32 + 32) + (32 * 64 + 64) + (64 * 32 + 32)
    assert matmul_parameters(model) == 2 * per_layer + 32 * 9 + 9 == 17129
    rows = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3], [1, 2, 3, 4, 5]], "labels": [[0, 0, 0], [0] * 5]})
    floor = Floor(tuple(get_kind("tagging").work(model, rows)))
    assert floor == Floor(work=((17129, 8),))
    assert floor.flops_per_epoch == 6 * 17129 * 8


class _ToySeq2Seq(torch.nn.Module):
    """Encoder: one 4→4 linear layer (20 parameters). Decoder: an embedding tied to a bias-free 4→10
    output projection (40 parameters, counted once, as the projection)."""

    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(4, 4)
        self.embed = torch.nn.Embedding(10, 4)
        self.head = torch.nn.Linear(4, 10, bias=False)
        self.head.weight = self.embed.weight

    def get_encoder(self) -> torch.nn.Module:
        return self.encoder


def test_encoder_decoder_floor_counts_each_side_at_its_own_tokens():
    rows = datasets.Dataset.from_dict({"input_ids": [[1, 2, 3], [1, 2, 3, 4, 5]], "labels": [[7, 8], [9, 8]]})
    floor = Floor(tuple(get_kind("seq2seq").work(_ToySeq2Seq(), rows)))
    assert floor == Floor(work=((20, 8), (40, 4)))
    assert floor.flops_per_epoch == 6 * (20 * 8 + 40 * 4) == 1920
