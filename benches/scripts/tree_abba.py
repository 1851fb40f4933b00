#!/usr/bin/env python3
# The tree bench's ABBA logs (tree_abba.sh) pooled: docs/benchmarks.md,
# "Tree and checkpoints, sign38 round".
#
#   tree_abba.py LOG...   (names REGIME-STAMP-I-V.log, V = A after / B before)
#
# Per regime and binary, over every round of its runs: each variant's
# same-round ratio to tree off, of events/s and of CPU per event during the
# burst: median, quartiles, range and a bootstrap 95% interval of the
# median; the per-thread CPU; then after - before (the difference of the
# medians) with its bootstrap interval. Standard library only.
import re, sys, random, statistics as st, collections
R = re.compile(r'round (\d+) (tree off|tree on|tree \+ checkpoints)\s+(\d+) events/s\s+durable p99 ([\d.]+) ms\s+CPU ([\d.]+) µs/event\s+tree behind max (\d+) end (\d+) events\s+caught up after ([\d.]+) ms\s+close (\d+) ms\s+(\d+) checkpoints')
B = re.compile(r'CPU during the burst ([\d.]+) µs/event, after it .*? ([\d.-]+)$')
T = re.compile(r'threads, CPU.*?: (.*)$')
data = collections.defaultdict(list)
for f in sys.argv[1:]:
    name = f.rsplit('/', 1)[-1][:-4]
    regime, stamp, i, v = name.split('-')
    rounds = collections.defaultdict(dict); last = None
    for line in open(f):
        m = R.search(line)
        if m:
            rd, var = int(m.group(1)), m.group(2)
            rounds[rd][var] = dict(eps=float(m.group(3)), p99=float(m.group(4)), cpu=float(m.group(5)),
                                   behind=int(m.group(6)), cps=int(m.group(10)), threads={})
            last = rounds[rd][var]; continue
        m = B.search(line)
        if m and last is not None:
            last['burst'] = float(m.group(1)); last['after'] = float(m.group(2)); continue
        m = T.search(line)
        if m and last is not None:
            for part in m.group(1).split(', '):
                nm, vals = part.rsplit(' ', 1)
                last['threads'][nm] = float(vals.split('/')[0])
    for rd in sorted(rounds):
        data[(regime, v)].append(rounds[rd])
rng = random.Random(38)
def boot(v, n=4000):
    meds = sorted(st.median([rng.choice(v) for _ in v]) for _ in range(n))
    return meds[int(0.025 * n)], meds[int(0.975 * n) - 1]
def q(v):
    v = sorted(v); n = len(v)
    if n == 0: return 'n/a'
    qs = st.quantiles(v, n=4) if n > 1 else [v[0]] * 3
    lo, hi = boot(v)
    return f"{st.median(v):.1f} (q {qs[0]:.1f}-{qs[2]:.1f}; range {v[0]:.1f}-{v[-1]:.1f}; 95% CI {lo:.1f}-{hi:.1f}; n {n})"
def ratios(rounds, var, key):
    return [100 * x[var][key] / x['tree off'][key] for x in rounds if var in x and 'tree off' in x and key in x[var] and key in x['tree off']]
def diff(a, b, n=4000):
    d = sorted(st.median([rng.choice(a) for _ in a]) - st.median([rng.choice(b) for _ in b]) for _ in range(n))
    return st.median(a) - st.median(b), d[int(0.025 * n)], d[int(0.975 * n) - 1]
for (regime, v), rounds in sorted(data.items()):
    print(f"== {regime} {v}: {len(rounds)} rounds")
    for var in ['tree on', 'tree + checkpoints']:
        print(f"  {var:<20} events/s of off: {q(ratios(rounds, var, 'eps'))}")
        print(f"  {var:<20} burst CPU of off: {q(ratios(rounds, var, 'burst'))}")
    for var in ['tree off', 'tree on', 'tree + checkpoints']:
        xs = [x[var] for x in rounds if var in x]
        if not xs: continue
        th = collections.defaultdict(list)
        for x in xs:
            for k, val in x['threads'].items(): th[k].append(val)
        ths = ' '.join(f"{k}={st.median(val):.3f}({min(val):.3f}-{max(val):.3f})" for k, val in sorted(th.items()) if max(val) > 0.005)
        eps = sorted(x['eps'] for x in xs)
        print(f"  {var:<20} eps med {st.median(eps):.0f} ({eps[0]:.0f}-{eps[-1]:.0f}) p99 {st.median([x['p99'] for x in xs]):.1f} cpu {st.median([x['cpu'] for x in xs]):.2f} burst {st.median([x.get('burst', 0) for x in xs]):.3f} after {st.median([x.get('after', 0) for x in xs]):.3f} behind max {max(x['behind'] for x in xs)} cps {min(x['cps'] for x in xs)}-{max(x['cps'] for x in xs)}")
        print(f"     threads (median (range) µs/event): {ths}")
regimes = sorted({r for r, _ in data})
for regime in regimes:
    a, b = data.get((regime, 'A')), data.get((regime, 'B'))
    if not a or not b: continue
    print(f"== {regime}: after - before (points; bootstrap 95% CI of the difference of medians)")
    for var in ['tree on', 'tree + checkpoints']:
        for key in ['eps', 'burst']:
            ra, rb = ratios(a, var, key), ratios(b, var, key)
            if not ra or not rb: continue
            d, lo, hi = diff(ra, rb)
            print(f"  {var:<20} {key:<5}: {d:+.1f} ({lo:+.1f} to {hi:+.1f})")
    # Tree off itself, after / before (the unchanged variant: the sitting's drift between binaries)
    offa = [x['tree off']['eps'] for x in a if 'tree off' in x]; offb = [x['tree off']['eps'] for x in b if 'tree off' in x]
    print(f"  tree off events/s after/before medians: {st.median(offa)/st.median(offb):.3f}")
