from squall.engine.pacer import NS, ConstantPacer, PoissonPacer, make_pacer


def test_constant_is_exact_and_does_not_drift() -> None:
    p = ConstantPacer(rate=3.0)
    times = [p.next_send() for _ in range(3_000_001)]
    assert times[:4] == [0, 333_333_333, 666_666_666, 1_000_000_000]
    assert times[-1] == 1_000_000 * NS


def test_workers_interleave() -> None:
    # Two workers at 50/s each make one 100/s schedule: 0, 10 ms, 20 ms, ...
    a, b = make_pacer("constant", 50.0, 0, 2, 0), make_pacer("constant", 50.0, 1, 2, 0)
    merged = sorted([a.next_send() for _ in range(50)] + [b.next_send() for _ in range(50)])
    assert merged == [i * 10_000_000 for i in range(100)]


def test_poisson_rate_and_repeatability() -> None:
    p = PoissonPacer(rate=1000.0, seed=7)
    times = [p.next_send() for _ in range(100_000)]
    assert times == sorted(times)
    assert abs(times[-1] / NS - 100.0) < 2.0  # 100k arrivals at 1000/s take ~100 s
    q = PoissonPacer(rate=1000.0, seed=7)
    assert [q.next_send() for _ in range(100)] == times[:100]
    r = make_pacer("poisson", 1000.0, 1, 2, 7)
    assert [r.next_send() for _ in range(100)] != times[:100]
