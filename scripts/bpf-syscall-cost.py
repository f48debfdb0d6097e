"""Kernel-side cost per call of the agent's tracked-syscall programs, for agent builds compared.

    python3 scripts/bpf-syscall-cost.py AGENT [AGENT...] [--calls N] [--rounds R]

As root, with bpftool (Debian's `bpftool` package). Each round starts each agent in turn
(`standalone --events --output /dev/null`), enables `kernel.bpf_stats_enabled`, runs two loops
(write-opens of one file; mknod, chmod, rename and unlink of new files) and reads the run time
and count of that agent's `sys_enter_tracked` and `sys_exit_tracked` (found through its own
file descriptors, so another agent running on the host does not mix in). Prints each run and
the median per agent. The counts include other processes' calls made during the loop.
"""
import argparse
import glob
import json
import os
import statistics
import subprocess
import tempfile
import time

PROGRAMS = ("sys_enter_tracked", "sys_exit_tracked")
LOOPS = ("write-open", "chmod/rename/unlink")


def own_programs(pid):
    ids = set()
    for f in glob.glob(f"/proc/{pid}/fdinfo/*"):
        try:
            with open(f) as fd:
                ids.update(int(line.split()[1]) for line in fd if line.startswith("prog_id:"))
        except OSError:
            pass
    return ids


def stats(ids):
    out = {}
    for p in json.loads(subprocess.check_output(["bpftool", "-j", "prog", "show"])):
        if p["id"] in ids and p.get("name") in PROGRAMS:
            out[p["name"]] = (p.get("run_time_ns", 0), p.get("run_cnt", 0))
    return out


def loop(name, d, calls):
    if name == "write-open":
        p = os.path.join(d, "open-file-with-a-typical-name.txt")
        for _ in range(calls):
            os.close(os.open(p, os.O_WRONLY | os.O_CREAT, 0o644))
        os.unlink(p)
    else:
        for i in range(calls // 3):
            p = os.path.join(d, f"file-{i:06}")
            os.mknod(p, 0o100644)
            os.chmod(p, 0o600)
            os.rename(p, p + ".renamed")
            os.unlink(p + ".renamed")


def measure(agent, calls):
    a = subprocess.Popen(
        [agent, "standalone", "--events", "--output", "/dev/null", "--metrics-addr", "off"],
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while len(stats(own_programs(a.pid))) < len(PROGRAMS):
            if time.monotonic() > deadline or a.poll() is not None:
                raise SystemExit(f"{agent}: programs not loaded")
            time.sleep(0.5)
        ids = own_programs(a.pid)
        out = {}
        with tempfile.TemporaryDirectory(prefix="pg-cost-") as d:
            for name in LOOPS:
                before = stats(ids)
                loop(name, d, calls)
                after = stats(ids)
                for prog in PROGRAMS:
                    ns = after[prog][0] - before[prog][0]
                    n = after[prog][1] - before[prog][1]
                    out[(name, prog)] = ns / max(1, n)
        return out
    finally:
        a.terminate()
        a.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("agents", nargs="+")
    ap.add_argument("--calls", type=int, default=60000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
        f.write("1")
    runs = {a: [] for a in args.agents}
    try:
        for r in range(args.rounds):
            for agent in args.agents:
                m = measure(agent, args.calls)
                runs[agent].append(m)
                print(f"round {r + 1} {agent}: " + ", ".join(
                    f"{name} {prog} {ns:.0f} ns" for (name, prog), ns in m.items()))
    finally:
        with open("/proc/sys/kernel/bpf_stats_enabled", "w") as f:
            f.write("0")
    print()
    for agent, ms in runs.items():
        print(f"median {agent}:")
        for name in LOOPS:
            cells = [f"{prog} {statistics.median(m[(name, prog)] for m in ms):.0f} ns/call"
                     for prog in PROGRAMS]
            print(f"  {name:<20} " + "  ".join(cells))


if __name__ == "__main__":
    main()
