"""The Kubernetes and compose files parse, and their squall commands and shard counts agree."""

from pathlib import Path

import yaml

from squall.cli import app

ROOT = Path(__file__).resolve().parents[2]


def test_indexed_job_shards_match_its_completions() -> None:
    job = yaml.safe_load((ROOT / "deploy/kubernetes/shards-job.yaml").read_text())
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    container = spec["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert int(env["SHARDS"]) == spec["completions"] == spec["parallelism"]
    args = container["args"]
    assert args[0] in {c.name or c.callback.__name__ for c in app.registered_commands}
    assert args[args.index("--shard") + 1] == "$(JOB_COMPLETION_INDEX)/$(SHARDS)"
    assert args[args.index("-o") + 1].startswith("/results/")
    merge = yaml.safe_load((ROOT / "deploy/kubernetes/merge-job.yaml").read_text())
    assert (
        "squall merge /results/shard-*.json" in merge["spec"]["template"]["spec"]["containers"][0]["args"][0]
    )


def test_compose_runs_two_shards_then_merges() -> None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = doc["services"]
    shards = [services[s]["command"] for s in ("shard0", "shard1")]
    assert [c[c.index("--shard") + 1] for c in shards] == ["0/2", "1/2"]
    assert set(services["merge"]["depends_on"]) == {"shard0", "shard1"}
    assert services["mock"]["command"][0] == "mock"
