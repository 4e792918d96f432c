"""`python -m twostage_i2v batch`: jobs files, the manifest and resume, the local default and Ray.

The end-to-end runs go through the command line in subprocesses, as a user runs them, on
the small models: one Ray run with two workers in which one worker process is killed
(kill -9) while it runs a job, a rerun of it, and a run of the same jobs (plus one that
names a missing model) with the local default. Oracles: the workflow each video carries,
read back with `extract-workflow`; the files' own sha256; frames decoded with PyAV; the
actor's process as the kernel lists it (its title, set by Ray, says what it runs).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from twostage_i2v.headless.inprocess import REPO_ROOT
from twostage_i2v.workflow import jobs as jobs_mod
from twostage_i2v.workflow import manifest as manifest_mod

WORKFLOW = REPO_ROOT / "workflows" / "two_stage_i2v_480p.json"
SEED_KEY = "KSampler (Wan I2V).seed"  # by title
MOTION_KEY = "16.motion"  # by node id (Motion Prompt)
JOBS = [
    {"id": "girl-01", "set": {SEED_KEY: 11, MOTION_KEY: "she waves her hand slowly"}},
    {"id": "girl-02", "set": {SEED_KEY: 12, MOTION_KEY: "her hair sways in the wind"}},
    {"id": "girl-03", "set": {SEED_KEY: 13, "Motion Prompt (Wan I2V).motion": "she turns her head and smiles"}},
    {"id": "girl-04", "set": {SEED_KEY: 14, MOTION_KEY: "petals drift past, she blinks"}},
]
MISSING_MODEL = "wan_2.1_vae_not_installed.safetensors"
RUN_TIMEOUT = 1500


def write_jobs(path: Path, jobs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(j) + "\n" for j in jobs), encoding="utf-8")
    return path


def batch_cmd(jobs: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "twostage_i2v", "batch", str(jobs), "--workflow", str(WORKFLOW), "--out", str(out),
            "--small-models", *extra]


def run_cli(args: list[str], timeout: float = RUN_TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout)


def manifest_lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines() if line.strip()]


def snapshot(folder: Path) -> dict:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())}


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def extract(path: Path, prompt: bool = False) -> dict:
    args = [sys.executable, "-m", "twostage_i2v", "extract-workflow", str(path)] + (["--prompt"] if prompt else [])
    done = run_cli(args, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def widget(workflow: dict, node_id: int, index: int):
    return next(n for n in workflow["nodes"] if n["id"] == node_id)["widgets_values"][index]


def expected_files(ids) -> set[str]:
    ids = list(ids)
    return {f"{i}.mp4" for i in ids} | {f"{i}.png" for i in ids} | {"manifest.jsonl"}


def ensure_memory(gb: float) -> None:
    """Other processes share this machine: wait (bounded) for room before starting workers."""
    deadline = time.monotonic() + 600
    while True:
        with open("/proc/meminfo") as f:
            info = {line.split(":")[0]: int(line.split()[1]) for line in f}
        free = info["MemAvailable"] / 2**20
        if free >= gb or time.monotonic() > deadline:
            return
        time.sleep(15)


# -- the jobs file and the manifest, without ComfyUI -----------------------------------------

OBJECT_INFO = {
    "KSampler": {"input": {"required": {
        "model": ["MODEL"],
        "seed": ["INT", {"default": 0, "min": 0, "max": 2**64 - 1, "control_after_generate": True}],
        "steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
        "sampler_name": [["euler", "uni_pc"]]}},
        "input_order": {"required": ["model", "seed", "steps", "sampler_name"]},
        "output": ["LATENT"], "display_name": "KSampler", "output_node": False},
    "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["a.safetensors"]]}},
                               "output": ["MODEL"], "display_name": "Load Checkpoint", "output_node": False},
    "LoraLoaderModelOnly": {"input": {"required": {"model": ["MODEL"], "lora_name": [["l.safetensors"]],
                                                   "strength_model": ["FLOAT", {"default": 1.0, "min": -100,
                                                                                "max": 100}]}},
                            "output": ["MODEL"], "display_name": "LoraLoaderModelOnly", "output_node": False},
    "LoadImage": {"input": {"required": {"image": [["start.png"], {"image_upload": True}]}},
                  "output": ["IMAGE", "MASK"], "display_name": "Load Image", "output_node": False},
    "SaveLatent": {"input": {"required": {"samples": ["LATENT"], "filename_prefix": ["STRING", {"default": "x"}]}},
                   "output": [], "display_name": "Save Latent", "output_node": True},
}


def small_workflow() -> dict:
    nodes = [
        {"id": 1, "type": "CheckpointLoaderSimple", "mode": 0, "widgets_values": ["a.safetensors"],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [1]}]},
        {"id": 2, "type": "LoraLoaderModelOnly", "title": "Character LoRA", "mode": 4,
         "widgets_values": ["l.safetensors", 0.8], "inputs": [{"name": "model", "type": "MODEL", "link": 1}],
         "outputs": [{"name": "MODEL", "type": "MODEL", "links": [2]}]},
        {"id": 3, "type": "KSampler", "title": "KSampler (video)", "mode": 0, "widgets_values": [5, "fixed", 20, "euler"],
         "inputs": [{"name": "model", "type": "MODEL", "link": 2}],
         "outputs": [{"name": "LATENT", "type": "LATENT", "links": [3]}]},
        {"id": 4, "type": "SaveLatent", "mode": 0, "widgets_values": ["out/clip"],
         "inputs": [{"name": "samples", "type": "LATENT", "link": 3}]},
        {"id": 5, "type": "KSampler", "title": "twin", "mode": 0, "widgets_values": [1, "fixed", 20, "euler"],
         "inputs": [{"name": "model", "type": "MODEL", "link": None}], "outputs": []},
        {"id": 6, "type": "KSampler", "title": "twin", "mode": 0, "widgets_values": [1, "fixed", 20, "euler"],
         "inputs": [{"name": "model", "type": "MODEL", "link": None}], "outputs": []},
        {"id": 7, "type": "LoadImage", "mode": 0, "widgets_values": ["start.png", "image"], "outputs": []},
    ]
    links = [[1, 1, 0, 2, 0, "MODEL"], [2, 2, 0, 3, 0, "MODEL"], [3, 3, 0, 4, 0, "LATENT"]]
    return {"nodes": nodes, "links": links, "version": 0.4}


def problems_of(text: str, workflow: dict | None = None) -> list[str]:
    with pytest.raises(jobs_mod.JobsFileError) as err:
        parsed = jobs_mod.parse_jobs(text, "JOBS.jsonl")
        jobs_mod.resolve_jobs(parsed, workflow or small_workflow(), OBJECT_INFO, source="JOBS.jsonl")
    return err.value.problems


@pytest.mark.core
def test_parse_refuses_each_bad_line_with_its_number():
    text = "\n".join([
        '{"id": "a", "set": {}}',
        "{not json",
        '{"id": "A", "set": {}}',
        '["a list"]',
        '{"id": "../up", "set": {}}',
        '{"id": "b", "set": [1]}',
        '{"id": "c", "sets": {}}',
        "",
    ])
    problems = problems_of(text)
    assert problems[0].startswith("line 2: not valid JSON")
    assert problems[1].startswith("line 3: duplicate id 'A' (already used on line 1")
    assert problems[2].startswith("line 4: a job is a JSON object")
    assert problems[3].startswith("line 5: id '../up' is not usable")
    assert problems[4].startswith("line 6: 'set' must be an object")
    assert problems[5].startswith("line 7: unknown key(s) 'sets'")
    assert len(problems) == 6
    with pytest.raises(jobs_mod.JobsFileError, match="no jobs"):
        jobs_mod.parse_jobs("\n\n", "JOBS.jsonl")


@pytest.mark.core
def test_resolve_refuses_unknown_nodes_inputs_types_and_shared_titles():
    lines = [
        {"id": "j1", "set": {"Nope.seed": 1}},
        {"id": "j2", "set": {"KSampler (video).sede": 1}},
        {"id": "j3", "set": {"KSampler (video).seed": "seven"}},
        {"id": "j4", "set": {"3.steps": 0}},
        {"id": "j5", "set": {"3.sampler_name": "dpm"}},
        {"id": "j6", "set": {"twin.seed": 3}},
        {"id": "j7", "set": {"Character LoRA.strength_model": 0.5}},
        {"id": "j8", "set": {"3.enabled": "yes"}},
        {"id": "ok", "set": {"3.seed": 9.0}},
    ]
    problems = problems_of("".join(json.dumps(j) + "\n" for j in lines))
    text = "\n".join(problems)
    assert len(problems) == 8, text
    assert "line 1 (job 'j1'): 'Nope.seed': no node in the workflow has that title or id" in problems[0]
    assert "line 2 (job 'j2')" in problems[1] and "has no widget input 'sede'" in problems[1]
    assert "seed, steps, sampler_name" in problems[1]
    assert "line 3 (job 'j3')" in problems[2] and "'seven' is not an integer" in problems[2]
    assert "line 4 (job 'j4')" in problems[3] and "below the minimum 1" in problems[3]
    assert "line 5 (job 'j5')" in problems[4] and "'dpm' is not one of the choices" in problems[4]
    assert "line 6 (job 'j6')" in problems[5] and "nodes 5, 6 share that title" in problems[5]
    assert "line 7 (job 'j7')" in problems[6] and "bypassed or muted" in problems[6]
    assert '"2.enabled": true' in problems[6]
    assert "line 8 (job 'j8')" in problems[7] and "not true/false" in problems[7]


@pytest.mark.core
def test_apply_sets_values_enables_nodes_and_names_outputs_after_the_job(tmp_path):
    image = tmp_path / "still.png"
    image.write_bytes(b"\x89PNG fake bytes")
    line = {"id": "j1", "set": {"KSampler (video).seed": 9.0, "3.sampler_name": "uni_pc",
                                "Character LoRA.enabled": True, "Character LoRA.strength_model": 0.5,
                                "1.ckpt_name": "other.safetensors", "7.image": "still.png"}}
    [job] = jobs_mod.parse_jobs(json.dumps(line), "JOBS.jsonl")
    wf = small_workflow()
    before = json.dumps(wf)
    resolved = jobs_mod.resolve_job(job, wf, OBJECT_INFO, files_base=tmp_path)
    out = jobs_mod.apply_job(wf, OBJECT_INFO, resolved)
    assert json.dumps(wf) == before  # the base workflow is left as it was
    nodes = {n["id"]: n for n in out["nodes"]}
    assert nodes[3]["widgets_values"] == [9, "fixed", 20, "uni_pc"] and isinstance(nodes[3]["widgets_values"][0], int)
    assert nodes[2]["mode"] == 0 and nodes[2]["widgets_values"] == ["l.safetensors", 0.5]
    # A model name is left for the worker's ComfyUI to check (it alone knows its files).
    assert nodes[1]["widgets_values"] == ["other.safetensors"]
    # A local image travels with the job under a name made of its bytes.
    [(name, data)] = resolved.input_files.items()
    assert data == image.read_bytes() and name == jobs_mod.input_file_name(data, "still.png")
    assert nodes[7]["widgets_values"][0] == name
    assert nodes[4]["widgets_values"] == ["out/clip_j1"]
    # A job that sets the prefix keeps its own.
    [own] = jobs_mod.parse_jobs(json.dumps({"id": "j2", "set": {"4.filename_prefix": "mine"}}), "J")
    out2 = jobs_mod.apply_job(wf, OBJECT_INFO, jobs_mod.resolve_job(own, wf, OBJECT_INFO))
    assert next(n for n in out2["nodes"] if n["id"] == 4)["widgets_values"] == ["mine"]


@pytest.mark.core
def test_fingerprint_follows_values_workflow_variant_and_files():
    [a] = jobs_mod.parse_jobs('{"id": "a", "set": {"3.seed": 1}}', "J")
    [b] = jobs_mod.parse_jobs('{"id": "a", "set": {"3.seed": 2}}', "J")
    base = jobs_mod.job_fingerprint(a, b"wf", "small-models")
    assert base == jobs_mod.job_fingerprint(a, b"wf", "small-models")
    assert len({base, jobs_mod.job_fingerprint(b, b"wf", "small-models"),
                jobs_mod.job_fingerprint(a, b"wf2", "small-models"), jobs_mod.job_fingerprint(a, b"wf", "as-is"),
                jobs_mod.job_fingerprint(a, b"wf", "small-models", {"batch-1.png": b"x"})}) == 5


@pytest.mark.core
def test_manifest_resume_decisions_and_atomic_rewrite(tmp_path):
    m = manifest_mod.Manifest(tmp_path)
    (tmp_path / "a.mp4").write_bytes(b"video")
    rec = {"id": "a", "status": "done", "fingerprint": "f1",
           "outputs": [{"file": "a.mp4", "sha256": manifest_mod.sha256_bytes(b"video")}]}
    m.record(rec)
    m.record({"id": "b", "status": "failed", "fingerprint": "f2", "outputs": [], "message": "no model"})
    m.record(dict(rec, seconds=1.5))  # the same id again replaces its line
    lines = (tmp_path / "manifest.jsonl").read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines] == ["b", "a"] and json.loads(lines[1])["seconds"] == 1.5
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp file left

    m = manifest_mod.Manifest(tmp_path)
    decide = manifest_mod.decide
    assert decide(m.get("a"), "f1", tmp_path, False).run is False
    assert decide(m.get("a"), "f9", tmp_path, False).run is True  # the job changed
    assert decide(m.get("b"), "f2", tmp_path, False).run is False
    assert decide(m.get("b"), "f2", tmp_path, True).run is True  # --retry-failed
    assert decide(None, "f1", tmp_path, False).run is True
    assert m.vouches_for("a.mp4")
    (tmp_path / "a.mp4").write_bytes(b"edited")
    assert decide(m.get("a"), "f1", tmp_path, False).reason == "a.mp4 differs from what the batch wrote"
    assert not m.vouches_for("a.mp4")
    (tmp_path / "a.mp4").unlink()
    assert decide(m.get("a"), "f1", tmp_path, False).reason == "a.mp4 is missing"
    assert manifest_mod.kept_name(tmp_path, "a.mp4").name == "a.kept-1.mp4"


@pytest.mark.core
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path, monkeypatch):
    target = tmp_path / "a.mp4"
    target.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(manifest_mod.os, "replace", broken_replace)
    with pytest.raises(OSError):
        manifest_mod.write_atomic(target, b"new")
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4"]
    stale = tmp_path / ".a.mp4.tmp-12345"
    stale.write_bytes(b"half")
    assert manifest_mod.remove_stale_temps(tmp_path) == [stale] and not stale.exists()


@pytest.mark.core
def test_ray_is_an_optional_extra_pinned_alike():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    extra = project["project"]["optional-dependencies"]["ray"]
    listed = [line.strip() for line in (REPO_ROOT / "requirements-ray.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert listed == extra and extra[0].startswith("ray==")
    lock = (REPO_ROOT / "requirements" / "test-lock.txt").read_text().splitlines()
    assert extra[0] in lock
    assert all("ray" not in dep for dep in project["project"]["dependencies"])


@pytest.mark.core
def test_package_and_batch_verb_work_without_ray(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS[:1])
    code = (
        "import importlib.util, sys\n"
        "sys.modules['ray'] = None  # import ray now fails, as where the extra is not installed\n"
        f"spec = importlib.util.spec_from_file_location('pkg', {str(REPO_ROOT / '__init__.py')!r}, "
        f"submodule_search_locations=[{str(REPO_ROOT)!r}])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['pkg'] = m; spec.loader.exec_module(m)\n"
        "import twostage_i2v.headless.batch.runner, twostage_i2v.headless.batch.ray_runner\n"
        "from twostage_i2v.cli import main\n"
        f"sys.exit(main(['batch', {str(jobs)!r}, '--workflow', {str(WORKFLOW)!r}, '--out', "
        f"{str(tmp_path / 'out')!r}, '--ray', 'local']))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--ray needs Ray, an optional extra: pip install 'comfyui-twostage-i2v[ray]'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.core
def test_bad_job_lines_are_refused_before_anything_starts(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(JOBS[0]) + "\n" + '{"id": "girl-02", "set": {' + "\n" + json.dumps(JOBS[0]) + "\n")
    out = tmp_path / "out"
    done = run_cli(batch_cmd(bad, out, "--ray", "local", "--workers", "2"), timeout=120)
    assert done.returncode == 2
    assert "line 2: not valid JSON" in done.stderr
    assert "line 3: duplicate id 'girl-01' (already used on line 1" in done.stderr
    assert "Traceback" not in done.stderr and "Ray instance" not in done.stdout + done.stderr
    assert not out.exists()


# -- end to end, through the command line ----------------------------------------------------

@pytest.mark.comfy
@pytest.mark.slow
def test_unknown_nodes_inputs_and_wrong_types_are_refused_with_the_line(tmp_path):
    lines = [JOBS[0],
             {"id": "b", "set": {"No Such Node.seed": 1}},
             {"id": "c", "set": {"KSampler (Wan I2V).seeed": 1}},
             {"id": "d", "set": {SEED_KEY: "forty-two"}},
             {"id": "e", "set": {"Stage Bridge (still → Wan frame).frames": 99999}}]
    jobs = write_jobs(tmp_path / "jobs.jsonl", lines)
    out = tmp_path / "out"
    done = run_cli(batch_cmd(jobs, out))
    assert done.returncode == 2, done.stdout + done.stderr
    err = done.stderr
    assert "line 2 (job 'b'): 'No Such Node.seed': no node in the workflow has that title or id" in err
    assert "line 3 (job 'c')" in err and "has no widget input 'seeed'" in err
    assert "line 4 (job 'd')" in err and "'forty-two' is not an integer" in err
    assert "line 5 (job 'e')" in err and "99999 is above the maximum" in err
    assert "start " not in done.stdout and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == []  # nothing ran, nothing written


class RayRun:
    def __init__(self, out: Path, jobs: Path, stdout: str, stderr: str, returncode: int, killed: dict):
        self.out, self.jobs, self.stdout, self.stderr, self.returncode = out, jobs, stdout, stderr, returncode
        self.killed = killed  # {"worker", "pid", "job", "title"}
        self.host = socket.gethostname()


def _kill_busy_worker(proc: subprocess.Popen, lines: list[str], killed: dict) -> None:
    """Read the batch's output; when worker w1 runs its first job, kill its process (-9)."""
    pid = None
    for raw in proc.stdout:
        lines.append(raw)
        text = raw.strip()
        if text.startswith("[batch] worker w1 ready: pid "):
            pid = int(text.split("pid ")[1].split()[0])  # the actor's own os.getpid(), answered through Ray
        if pid and not killed and text.startswith("[batch] start ") and " on w1@" in text:
            job = text.split()[2]
            deadline = time.monotonic() + 120
            title = ""
            while time.monotonic() < deadline:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                if "BatchWorker.run" in title:
                    break
                time.sleep(0.2)
            time.sleep(3)  # well inside the job (the first one loads the models: tens of seconds)
            os.kill(pid, signal.SIGKILL)
            killed.update(worker="w1", pid=pid, job=job, title=title)


@pytest.fixture(scope="module")
def ray_run(tmp_path_factory, artifacts) -> RayRun:
    """4 jobs, --ray local --workers 2 --small-models; worker w1 is killed during its first job."""
    root = tmp_path_factory.mktemp("batch-ray")
    jobs = write_jobs(root / "jobs.jsonl", JOBS)
    out = root / "out"
    ensure_memory(18)
    proc = subprocess.Popen(batch_cmd(jobs, out, "--ray", "local", "--workers", "2"), cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines, killed, errors = [], {}, []
    stderr_reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)
    stderr_reader.start()
    try:
        _kill_busy_worker(proc, lines, killed)
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    stderr_reader.join(timeout=30)
    (artifacts / "batch-ray.log").write_text("".join(lines) + "\n--- stderr ---\n" + "".join(errors))
    return RayRun(out, jobs, "".join(lines), "".join(errors), proc.returncode, killed)


@pytest.mark.comfy
@pytest.mark.slow
def test_ray_batch_writes_every_job_once_with_its_own_workflow(ray_run):
    assert ray_run.returncode == 0, ray_run.stdout + ray_run.stderr
    ids = [j["id"] for j in JOBS]
    assert {p.name for p in ray_run.out.iterdir()} == expected_files(ids)  # no temp or partial file
    records = manifest_lines(ray_run.out)
    assert sorted(r["id"] for r in records) == sorted(ids) and all(r["status"] == "done" for r in records)
    for job, rec in zip(JOBS, sorted(records, key=lambda r: r["id"])):
        assert {o["file"] for o in rec["outputs"]} == {f"{job['id']}.mp4", f"{job['id']}.png"}
        for o in rec["outputs"]:
            assert manifest_mod.sha256_file(ray_run.out / o["file"]) == o["sha256"]
        seed, motion = job["set"][SEED_KEY], next(v for k, v in job["set"].items() if k.endswith(".motion"))
        for carrier in (ray_run.out / f"{job['id']}.mp4", ray_run.out / f"{job['id']}.png"):
            wf = extract(carrier)
            assert widget(wf, 19, 0) == seed and widget(wf, 16, 0) == motion
            prompt = extract(carrier, prompt=True)
            assert prompt["19"]["inputs"]["seed"] == seed and prompt["16"]["inputs"]["motion"] == motion
        frames = decoded(ray_run.out / f"{job['id']}.mp4")
        assert frames.shape == (9, 64, 64, 3) and frames.std() > 1  # the small run's clip, not a blank
    # Two different seeds give different clips (the values reached the sampler).
    assert not np.array_equal(decoded(ray_run.out / "girl-01.mp4"), decoded(ray_run.out / "girl-02.mp4"))
    assert {r["worker"].split("@")[0] for r in records} >= {"w2"}


@pytest.mark.comfy
@pytest.mark.slow
def test_a_killed_worker_loses_nothing(ray_run):
    killed = ray_run.killed
    assert killed, "worker w1 never ran a job:\n" + ray_run.stdout
    assert "BatchWorker.run" in killed["title"]  # the process killed was the actor, inside a job
    rec = next(r for r in manifest_lines(ray_run.out) if r["id"] == killed["job"])
    # Two attempts; three where Ray's own memory monitor also stopped a worker on a crowded machine.
    assert rec["status"] == "done" and rec["attempts"] in (2, 3) and not rec["worker"].startswith("w1@")
    assert f"w1@{ray_run.host} was lost while running {killed['job']}" in ray_run.stdout
    assert "retry 1 of 2" in ray_run.stdout and "starting worker w3 in place of w1" in ray_run.stdout
    done_lines = [line for line in ray_run.stdout.splitlines() if line.startswith("[batch] done ")]
    assert sorted(line.split()[2] for line in done_lines) == sorted(j["id"] for j in JOBS)  # each exactly once


@pytest.mark.comfy
@pytest.mark.slow
def test_rerun_writes_nothing_and_starts_no_worker(ray_run):
    before = snapshot(ray_run.out)
    t0 = time.monotonic()
    done = run_cli(batch_cmd(ray_run.jobs, ray_run.out, "--ray", "local", "--workers", "2"), timeout=300)
    seconds = time.monotonic() - t0
    assert done.returncode == 0, done.stdout + done.stderr
    assert "nothing to run: 4 done, 0 failed before" in done.stdout
    assert "Ray instance" not in done.stdout + done.stderr and " ready:" not in done.stdout
    assert snapshot(ray_run.out) == before
    print(f"rerun of a finished batch: {seconds:.1f} s")


@dataclass
class LocalRun:
    out: Path
    stopped_code: int  # the first run, stopped with Ctrl+C during its first job
    stopped_stdout: str
    stopped_files: dict
    final: subprocess.CompletedProcess  # the rerun that finishes the batch


@pytest.fixture(scope="module")
def local_run(ray_run, tmp_path_factory, artifacts) -> LocalRun:
    """The same four jobs with the local default (no --ray), plus one naming a missing model:
    stopped with Ctrl+C while its first job runs, then run again to the end. One torch thread,
    as each Ray worker had: torch's CPU kernels sum in an order that depends on the thread count."""
    root = tmp_path_factory.mktemp("batch-local")
    missing = {"id": "no-vae", "set": {SEED_KEY: 15, "Load Wan VAE.vae_name": MISSING_MODEL}}
    jobs = write_jobs(root / "jobs.jsonl", JOBS[:2] + [missing] + JOBS[2:])
    out = root / "out"
    ensure_memory(10)
    proc = subprocess.Popen(batch_cmd(jobs, out, "--threads", "1"), cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    errors = []
    threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True).start()
    lines = []
    try:
        for raw in proc.stdout:
            lines.append(raw)
            if raw.startswith("[batch] start ") and len([x for x in lines if x.startswith("[batch] start ")]) == 1:
                time.sleep(3)
                proc.send_signal(signal.SIGINT)  # Ctrl+C
        proc.wait(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    stopped_files = snapshot(out)
    final = run_cli(batch_cmd(jobs, out, "--threads", "1"))
    (artifacts / "batch-local.log").write_text("".join(lines) + "\n--- rerun ---\n" + final.stdout
                                               + "\n--- stderr ---\n" + final.stderr)
    return LocalRun(out, proc.returncode, "".join(lines), stopped_files, final)


@pytest.mark.comfy
@pytest.mark.slow
def test_ctrl_c_lets_the_running_job_finish_and_starts_no_other(local_run):
    assert local_run.stopped_code == 130, local_run.stopped_stdout
    out = local_run.stopped_stdout
    assert "Ctrl+C: no more jobs are started; waiting for 1 running job(s) to finish" in out
    assert [line.split()[2] for line in out.splitlines() if line.startswith("[batch] start ")] == ["girl-01"]
    assert set(local_run.stopped_files) == expected_files(["girl-01"])
    assert "1 done, 0 failed, 4 not run of 5" in out


@pytest.mark.comfy
@pytest.mark.slow
def test_a_missing_model_fails_that_job_only(local_run):
    done, out = local_run.final, local_run.out
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 of 5 job(s) already finished" in done.stdout  # resume after Ctrl+C
    records = {r["id"]: r for r in manifest_lines(out)}
    assert records["no-vae"]["status"] == "failed" and MISSING_MODEL in records["no-vae"]["message"]
    assert "Load Wan VAE" in records["no-vae"]["message"]
    assert records["no-vae"]["attempts"] == 1  # a user's mistake is not retried
    assert all(records[j["id"]]["status"] == "done" for j in JOBS)
    assert {p.name for p in out.iterdir()} == expected_files(j["id"] for j in JOBS)
    assert "FAILED no-vae on local@" in done.stdout
    after = snapshot(out)
    assert all(after[name] == local_run.stopped_files[name] for name in ("girl-01.mp4", "girl-01.png"))


@pytest.mark.comfy
@pytest.mark.slow
def test_local_default_gives_the_ray_outputs(local_run, ray_run):
    # ComfyUI's SaveVideo (PyAV's libx264) does not encode the first two frames bit-reproducibly
    # inside a ComfyUI process, even from identical tensors and metadata (checked: the same VAE
    # output saved four times gave two different files). The lossless first-frame PNG stands for
    # frame 0; the MP4 is compared from the frame after the encoder's first B-frame on.
    for job in JOBS:
        local, remote = decoded(local_run.out / f"{job['id']}.mp4"), decoded(ray_run.out / f"{job['id']}.mp4")
        assert local.shape == remote.shape
        assert np.abs(local[2:].astype(int) - remote[2:].astype(int)).max() <= 1, job["id"]
        png_local = np.asarray(Image.open(local_run.out / f"{job['id']}.png").convert("RGB"), dtype=int)
        png_remote = np.asarray(Image.open(ray_run.out / f"{job['id']}.png").convert("RGB"), dtype=int)
        assert np.abs(png_local - png_remote).max() <= 1, job["id"]
        assert extract(local_run.out / f"{job['id']}.mp4") == extract(ray_run.out / f"{job['id']}.mp4")
        assert extract(local_run.out / f"{job['id']}.mp4", prompt=True) == extract(ray_run.out / f"{job['id']}.mp4",
                                                                                 prompt=True)


@pytest.mark.comfy
@pytest.mark.slow
def test_missing_model_files_are_named_with_node_and_worker_before_any_job(tmp_path):
    base = tmp_path / "base"  # a ComfyUI base directory without the workflow's models
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS[:1])
    out = tmp_path / "out"
    args = [a for a in batch_cmd(jobs, out) if a != "--small-models"] + ["--base-dir", str(base)]
    done = run_cli(args)
    assert done.returncode == 2, done.stdout + done.stderr
    host = socket.gethostname()
    for line in (f"local@{host}: missing checkpoints/sd_xl_base_1.0.safetensors (node 1 CheckpointLoaderSimple)",
                 f"local@{host}: missing diffusion_models/wan2.1-i2v-14b-480p-Q4_K_M.gguf (node 11 "
                 "TwoStageI2V_WanI2VLoaderGGUF)",
                 f"local@{host}: missing vae/wan_2.1_vae.safetensors (node 14 VAELoader)"):
        assert line in done.stderr
    assert "your_character_lora" not in done.stderr  # the bypassed LoRA is not needed
    assert "start " not in done.stdout and list(out.iterdir()) == []


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.comfy
@pytest.mark.slow
@pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU (the GPU path of the Ray runner)")
def test_ray_worker_takes_a_gpu_and_runs_on_it(tmp_path):
    jobs = write_jobs(tmp_path / "jobs.jsonl", JOBS[:2])
    out = tmp_path / "out"
    done = run_cli(batch_cmd(jobs, out, "--ray", "local", "--workers", "1"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "GPU(s), one per worker; 1 worker(s)" in done.stdout
    ready = next(line for line in done.stdout.splitlines() if line.startswith("[batch] worker w1 ready:"))
    assert ", cuda (" in ready
    assert {p.name for p in out.iterdir()} == expected_files(j["id"] for j in JOBS[:2])
