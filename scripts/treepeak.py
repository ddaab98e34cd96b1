#!/usr/bin/env python3
"""Runs a command and measures it as a whole process tree: wall time, CPU time of the
command and every descendant, and the peak of the SUM of their resident memory
(sampled every 20 ms from /proc), plus the largest single process.

    scripts/treepeak.py OUT.json [--cgroup MIB] -- command args...
Prints the figures as JSON on stderr (stdout stays the command's) and writes them to
OUT.json. Exits with the command's code.

--cgroup MIB runs the command in a memory cgroup of that limit (root; v2 where its memory
controller is enabled, else v1), as Cloud Run limits a container: put the command's work
folder on a tmpfs (/dev/shm) and its files are charged too, as Cloud Run charges /tmp.
Adds the group's peak and whether the OOM killer fired.
"""
import json
import os
import resource
import subprocess
import sys
import threading
import time


def children_of():
    parents = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            parents.setdefault(ppid, []).append(int(entry))
        except (OSError, ValueError):
            pass
    return parents


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Cgroup:
    V1, V2 = "/sys/fs/cgroup/memory", "/sys/fs/cgroup"

    def __init__(self, limit_mib):
        self.limit_mib = limit_mib
        controllers = ""
        try:
            with open(f"{self.V2}/cgroup.subtree_control") as f:
                controllers = f.read()
        except OSError:
            pass
        self.v2 = "memory" in controllers.split()
        self.dir = f"{self.V2 if self.v2 else self.V1}/treepeak-{os.getpid()}"
        os.mkdir(self.dir)
        limit = str(limit_mib * 1024 * 1024)
        self.write("memory.max" if self.v2 else "memory.limit_in_bytes", limit)

    def write(self, name, value):
        with open(f"{self.dir}/{name}", "w") as f:
            f.write(value)

    def read(self, name):
        try:
            with open(f"{self.dir}/{name}") as f:
                return f.read()
        except OSError:
            return ""

    def enter(self):
        self.write("cgroup.procs", str(os.getpid()))

    def figures(self):
        peak = self.read("memory.peak" if self.v2 else "memory.max_usage_in_bytes").strip() or "0"
        events = self.read("memory.events" if self.v2 else "memory.oom_control")
        oom = next((int(l.split()[1]) for l in events.splitlines() if l.startswith("oom_kill ")), 0)
        return {"cgroup_limit_mib": self.limit_mib, "cgroup_peak_mib": round(int(peak) / 1048576, 1), "oom_kills": oom}

    def remove(self):
        if not self.v2:
            try:
                self.write("memory.force_empty", "0")
            except OSError:
                pass
        for _ in range(50):
            try:
                os.rmdir(self.dir)
                return
            except OSError:
                time.sleep(0.1)


def main():
    out, command = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    options = sys.argv[2:sys.argv.index("--")]
    group = Cgroup(int(options[options.index("--cgroup") + 1])) if "--cgroup" in options else None
    started = time.perf_counter()
    process = subprocess.Popen(command, preexec_fn=group.enter if group else None)
    peak = {"tree_kib": 0, "single_kib": 0, "processes": 0}

    def sample():
        while process.poll() is None:
            tree = children_of()
            pending, total, single, count = [process.pid], 0, 0, 0
            while pending:
                pid = pending.pop()
                kib = rss_kib(pid)
                total, single, count = total + kib, max(single, kib), count + 1
                pending.extend(tree.get(pid, []))
            if total > peak["tree_kib"]:
                peak.update(tree_kib=total, processes=count)
            peak["single_kib"] = max(peak["single_kib"], single)
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    sampler.join()
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    figures = {
        "command": " ".join(os.path.basename(command[0]) if i == 0 else a for i, a in enumerate(command)),
        "exit_code": code,
        "wall_s": round(wall, 2),
        "cpu_user_s": round(usage.ru_utime, 2),
        "cpu_system_s": round(usage.ru_stime, 2),
        "peak_rss_tree_mib": round(peak["tree_kib"] / 1024, 1),
        "processes_at_tree_peak": peak["processes"],
        "peak_rss_single_process_mib": round(peak["single_kib"] / 1024, 1),
    }
    if group:
        figures.update(group.figures())
        group.remove()
    print(json.dumps(figures, indent=2), file=sys.stderr)
    with open(out, "w") as f:
        json.dump(figures, f, indent=2)
    sys.exit(code)


if __name__ == "__main__":
    main()
