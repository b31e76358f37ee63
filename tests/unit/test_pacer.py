from squall.engine.pacer import NS, ConstantPacer, PoissonPacer, make_pacer


def test_constant_is_exact_and_does_not_drift() -> None:
    p = ConstantPacer(rate=3.0)
    times = [p.next_send() for _ in range(3_000_001)]
    assert times[:4] == [0, 333_333_334, 666_666_667, 1_000_000_000]
    assert times[-1] == 1_000_000 * NS


def test_workers_interleave() -> None:
    # Two workers at 50/s each make one 100/s schedule: 0, 10 ms, 20 ms, ...
    a, b = make_pacer("constant", 100.0, 0, 2, 0), make_pacer("constant", 100.0, 1, 2, 0)
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


def _count_due(rate: float, workers: int, start_s: float, end_s: float) -> int:
    n = 0
    for w in range(workers):
        p = make_pacer("constant", rate, w, workers, 0)
        while (t := p.next_send()) < int(end_s * NS):
            n += t >= int(start_s * NS)
    return n


def test_every_split_sends_exactly_rate_times_duration() -> None:
    for rate in (2.0, 7.0, 10.0, 100.0, 333.0, 1000.0, 0.5):
        for workers in (1, 2, 3, 7):
            for warmup, duration in ((0.0, 1.0), (0.5, 1.0), (0.0, 3.0), (1.5, 10.0), (0.1, 2.0)):
                want = rate * duration
                if want.is_integer() and (rate * warmup).is_integer():
                    got = _count_due(rate, workers, warmup, warmup + duration)
                    assert got == int(want), (rate, workers, warmup, duration, got)


def test_gamma_mean_rate_and_burstiness() -> None:
    import itertools
    import statistics

    from squall.engine.pacer import GammaPacer

    for burstiness in (0.5, 1.0, 4.0):
        p = GammaPacer(rate=100.0, burstiness=burstiness, seed=3)
        times = [p.next_send() for _ in range(50_000)]
        gaps = [b - a for a, b in itertools.pairwise(times)]
        mean = statistics.fmean(gaps)
        assert abs(mean / 1e7 - 1) < 0.03  # 10 ms mean gap at 100/s
        cv2 = statistics.pvariance(gaps) / mean**2  # squared coefficient of variation = 1 / shape
        assert abs(cv2 * burstiness - 1) < 0.1
