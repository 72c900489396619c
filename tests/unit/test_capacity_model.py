"""The capacity model scales measured per-call costs to a deployment (bench/capacity.py)."""

from typing import Any

from bench.capacity import Load, plan


def row(name: str, throughput: float, service_us: float, postgres_us: float) -> dict[str, Any]:
    batching = {"keys_per_transaction": 10.0, "requests_per_key": 2.0, "transactions": 1}
    return {
        "scenario": name,
        "throughput": throughput,
        "service_cpu_us_per_call": service_us,
        "postgres_cpu_us_per_call": postgres_us,
        "details": {"batching": batching},
    }


RESULTS = {
    "written_at": "then",
    "machine": {"git_commit": "abc"},
    "scenarios": [
        {
            "rows": [
                row("S2 hot pool", 1000, 600, 200),
                row("S3 64 pools uniform", 1200, 500, 300),
                row("S6 usage 1 company", 900, 600, 150),
                row("S6 usage 50 companies", 1100, 800, 400),
            ]
        }
    ],
}


def test_replicas_and_database_cores_scale_with_the_rates() -> None:
    lines = plan(
        RESULTS, Load(100, 5, allocations=2400, usage=600, import_rows=0, hottest_share=0.1)
    )
    text = "\n".join(lines)
    # 2,400 calls/s x 500 us = 1.2 cores: 1.2 / (1 core x 60 %) = 2 replicas
    assert "pool: 2,400 calls/s x 500 us = 1.20 cores -> 2 replicas" in text
    assert "credits: 600 calls/s x 800 us = 0.48 cores -> 2 replicas" in text
    # 2,400 x 300 us + 600 x 400 us = 0.96 cores of PostgreSQL -> 2 cores; 20 calls a commit
    assert "PostgreSQL: 0.96 cores of work -> 2 cores at 60%; 150 commits/s" in text


def test_the_first_bottleneck_is_a_hot_company_past_its_keys_ceiling() -> None:
    lines = plan(RESULTS, Load(10, 5, allocations=1500, usage=0, import_rows=0, hottest_share=0.9))
    assert lines[-1].startswith("first to run out: pool: the busiest company's key (135%")
