"""Reference solution of the coding lab (lessons/04-write-your-own-schedule/my_schedules.py).

It lives in the tests, not in the lesson folder: the tests grade it as a learner's file
(``pplab exercise check schedule-lab --file tests/schedule_lab_solution.py``) and inject it
into the lesson's notebook. Written from the papers' descriptions and the lab's two limits,
without pplab, which the lab's guard keeps out of reach anyway.
"""

LEARNER = "reference"


def gpipe(p, m):
    """All forwards, then all backwards."""
    return {r: [f"{r}F{mb}" for mb in range(m)] + [f"{r}B{mb}" for mb in range(m)]
            for r in range(p)}


def one_f_one_b(p, m, k):
    """min(p-1-r, k-1) warm-up forwards (at most k in flight), then F and B in turn, then the
    backwards left."""
    orders = {}
    for r in range(p):
        warmup = min(p - 1 - r, k - 1, m)
        order = [f"{r}F{mb}" for mb in range(warmup)]
        for j in range(m - warmup):
            order += [f"{r}F{warmup + j}", f"{r}B{j}"]
        orders[r] = order + [f"{r}B{mb}" for mb in range(m - warmup, m)]
    return orders


def zb_h1(p, m, d):
    """1F1B's forwards; I where 1F1B runs B; rank r keeps up to min(r, d) W's pending."""
    orders = {}
    for r in range(p):
        warmup = min(p - 1 - r, m)
        order = [f"{r}F{mb}" for mb in range(warmup)]
        pending = []
        for mb in range(m):
            if warmup + mb < m:
                order.append(f"{r}F{warmup + mb}")
            order.append(f"{r}I{mb}")
            pending.append(mb)
            if len(pending) > min(r, d):
                order.append(f"{r}W{pending.pop(0)}")
        orders[r] = order + [f"{r}W{mb}" for mb in pending]
    return orders
