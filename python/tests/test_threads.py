"""Programs run in parallel from several threads (the GIL is released) and give the same
results as one after another."""

import threading

import numpy as np

import cimc


def test_threads_give_the_sequential_results(digits):
    model, calib, x, y = digits
    progs = [cimc.compile(model, calib=calib, target=t) for t in (None, "isaac")]
    want = [[p.run(x[k::4]) for k in range(4)] for p in progs]
    got = {}
    errors = []

    def work(i, k):
        try:
            for _ in range(3):
                got[(i, k)] = progs[i].run(x[k::4])
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i, k)) for i in range(2) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i in range(2):
        for k in range(4):
            assert got[(i, k)].tobytes() == want[i][k].tobytes()


def test_threads_compile_and_evaluate(digits):
    model, calib, x, y = digits
    results = [None] * 3

    def work(i):
        p = cimc.compile(model, calib=calib, wbits=4 + i)
        results[i] = p.eval(x, y)["correct"]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(3):
        assert results[i] == cimc.compile(model, calib=calib, wbits=4 + i).eval(x, y)["correct"]
